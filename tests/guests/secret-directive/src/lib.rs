//! Requests a directive whose payload carries an API key and propagates the
//! refusal, so the host's secret detection turns into a permanent failure.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    directive("leak.secret")
        .payload(&serde_json::json!({ "api_key": "sk_live_0123456789abcdef" }))
        .request(&signal)?;
    Ok(())
}
