//! Requests a directive, then calls `exit(code)` (`wasi:cli/exit`) with the
//! `code` of its manifest's options (default 0) instead of returning.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options: serde_json::Value = context.options()?;
    let code = options["code"].as_i64().unwrap_or(0) as i32;
    directive("exit.before")
        .payload(&serde_json::json!({ "signal": signal.id }))
        .request(&signal)?;
    std::process::exit(code);
}
