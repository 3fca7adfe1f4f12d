//! Sleeps inside a host call (`wasi:clocks` timer, through std's sleep) for
//! `sleep_ms` of its manifest's options (default 60 s), then succeeds. The
//! host's wall-clock limit must end it while it waits, and while it waits it
//! must hold no thread that other deliveries need.

use std::time::Duration;

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options: serde_json::Value = context.options()?;
    let sleep_ms = options["sleep_ms"].as_u64().unwrap_or(60_000);
    std::thread::sleep(Duration::from_millis(sleep_ms));
    Ok(())
}
