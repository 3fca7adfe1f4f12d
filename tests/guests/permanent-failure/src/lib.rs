//! Always fails permanently, so the host must discard the delivery without
//! retrying.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("payload can never be processed"))
}
