//! Panics on every delivery, so the host must turn a guest trap into a failed
//! delivery rather than crash.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    panic!("handler panicked on purpose")
}
