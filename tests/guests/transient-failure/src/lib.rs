//! Requests a `flaky.done` directive, then fails transiently until the attempt
//! named by its `succeed_on_attempt` option (never, if unset): exercises retries
//! and proves that a failed attempt leaves no directive behind.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    directive("flaky.done")
        .payload(&serde_json::json!({ "signal": signal.id }))
        .request(&signal)?;
    let succeed_on = serde_json::from_str::<serde_json::Value>(&context.options)
        .ok()
        .and_then(|o| o["succeed_on_attempt"].as_u64());
    match succeed_on {
        Some(n) if u64::from(context.attempt) >= n => Ok(()),
        _ => Err(HandlerError::transient("upstream unavailable")),
    }
}
