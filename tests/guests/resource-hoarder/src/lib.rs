//! Creates timers (`subscribe-duration` pollables) in a loop and never drops
//! them, each an entry of the host's resource table: the host must stop it at
//! its own cap, not at wasmtime's default of a million.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    loop {
        let timer = wasi::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000);
        std::mem::forget(timer);
    }
}
