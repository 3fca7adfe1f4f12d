//! Asks `wasi:random` for 48 MiB in one call: bytes the host would allocate
//! outside the guest's memory cap. The host must refuse (trap) rather than
//! allocate them.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let bytes = wasi::random::random::get_random_bytes(48 << 20);
    std::hint::black_box(bytes);
    Ok(())
}
