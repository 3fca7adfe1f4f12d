//! Reads a file through std, so its component imports `wasi:filesystem`; the
//! host must refuse or sandbox it.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let _ = std::hint::black_box(std::fs::read_to_string("/etc/passwd"));
    Ok(())
}
