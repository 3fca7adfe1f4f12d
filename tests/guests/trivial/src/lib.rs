//! Requests one `bench.noop` directive and succeeds: the cheapest complete
//! delivery, used by the benchmarks to measure the host's own overhead.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    directive("bench.noop")
        .payload(&serde_json::json!({ "n": 1 }))
        .request(&signal)?;
    Ok(())
}
