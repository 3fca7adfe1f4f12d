//! Requests a directive with a ~100 KiB payload and propagates the refusal,
//! so the host's size limit turns into a permanent failure.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    directive("big.payload")
        .payload(&serde_json::json!({ "blob": "x".repeat(100_000) }))
        .request(&signal)?;
    Ok(())
}
