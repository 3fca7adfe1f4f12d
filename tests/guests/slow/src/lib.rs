//! Keeps the CPU busy for about 300 ms, then succeeds: a delivery that is
//! still in flight while the host swaps in a new version of its handler.

use std::time::{Duration, Instant};

use sighost_sdk::{Context, HandlerError, Signal, handler};

const BUSY: Duration = Duration::from_millis(300);

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    // Busy, not sleeping: a guest has no way to block, and a loop checks that
    // the host's epoch-based timeout leaves a handler within its limit alone.
    let started = Instant::now();
    while started.elapsed() < BUSY {
        std::hint::spin_loop();
    }
    Ok(())
}
