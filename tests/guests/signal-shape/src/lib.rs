//! The one-parameter `(signal)` shape: echoes what it received so the host's
//! shape detection can be checked.

use sighost_sdk::{HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal) -> Result<(), HandlerError> {
    directive("shape.signal")
        .payload(&serde_json::json!({ "tenant": signal.tenant, "signal_id": signal.id }))
        .request(&signal)?;
    Ok(())
}
