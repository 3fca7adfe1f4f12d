//! Requests `payments.refund`, which its manifest does not allow, and
//! propagates the refusal: the allow-list must hold.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    directive("payments.refund").request(&signal)?;
    Ok(())
}
