//! Records one audit entry per signal: the `(signal, context)` shape.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
pub fn handle_signal(signal: Signal, context: Context) -> Result<(), HandlerError> {
    directive("audit.record")
        .payload(&serde_json::json!({
            "signal_id": signal.id,
            "signal_name": signal.name,
            "attempt": context.attempt,
        }))
        .request(&signal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sighost_sdk::testing::Harness;

    #[test]
    fn records_one_entry_with_a_key_derived_from_the_signal() {
        let harness = Harness::new(env!("CARGO_PKG_NAME"), "org_acme");
        let signal = harness.signal("forum.thread.created", serde_json::json!({}));
        let expected_key = sighost_sdk::default_idempotency_key(
            "org_acme",
            &signal.id,
            "audit-trail",
            "audit.record",
        );
        let run = harness.run_context_handler(signal, handle_signal);
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.directives.len(), 1);
        assert_eq!(run.directives[0].idempotency_key, expected_key);
    }
}
