//! Keeps the CPU busy for `busy_us` of its manifest's options (default
//! 300 ms), then succeeds: a delivery that is still in flight while the host
//! swaps in a new version of its handler, and the costly tenant of the
//! benchmarks' fair-share section.

use std::time::{Duration, Instant};

use sighost_sdk::{Context, HandlerError, Signal, handler};

const DEFAULT_BUSY: Duration = Duration::from_millis(300);

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options: serde_json::Value = context.options()?;
    let busy = options["busy_us"]
        .as_u64()
        .map_or(DEFAULT_BUSY, Duration::from_micros);
    // Busy, not sleeping: a loop checks that the host's epoch-based timeout
    // leaves a handler within its limit alone, and it costs worker time.
    let started = Instant::now();
    while started.elapsed() < busy {
        std::hint::spin_loop();
    }
    Ok(())
}
