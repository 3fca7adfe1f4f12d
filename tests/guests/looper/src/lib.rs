//! Spins forever, so the host's time limit (fuel or epoch interruption) must
//! be what ends the invocation.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let mut counter: u64 = 0;
    loop {
        // black_box keeps the otherwise side-effect-free loop from being
        // optimized away.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
