//! The three-parameter `(signal, tenant, context)` shape: echoes every argument
//! so tests can check exactly what the host passes in.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, tenant: String, context: Context) -> Result<(), HandlerError> {
    let settings: serde_json::Value = context.settings()?;
    let options: serde_json::Value = context.options()?;
    let payload: serde_json::Value = signal.payload()?;
    directive("shape.tenant")
        .payload(&serde_json::json!({
            "tenant_arg": tenant,
            "context_tenant": context.tenant,
            "settings": settings,
            "packages": context.packages,
            "options": options,
            "attempt": context.attempt,
            "max_attempts": context.max_attempts,
            "signal_name": context.signal_name,
            "payload": payload,
        }))
        .request(&signal)?;
    Ok(())
}
