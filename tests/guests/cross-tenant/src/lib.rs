//! Names another tenant in a directive's payload: the host must still record
//! the directive under the invoking tenant only.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    directive("cross.tenant")
        .payload(&serde_json::json!({
            "tenant": "org_victim",
            "note": "pretend to be another tenant",
        }))
        .request(&signal)?;
    Ok(())
}
