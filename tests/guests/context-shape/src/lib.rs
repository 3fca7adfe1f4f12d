//! The two-parameter `(signal, context)` shape: echoes what it received so the
//! host's shape detection and context passing can be checked.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, context: Context) -> Result<(), HandlerError> {
    directive("shape.context")
        .payload(&serde_json::json!({
            "tenant": context.tenant,
            "attempt": context.attempt,
            "signal_id": signal.id,
        }))
        .request(&signal)?;
    Ok(())
}
