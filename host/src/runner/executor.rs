//! What performs a directive's side effect.

use crate::store::Directive;

/// Why an executor attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// Worth another attempt later (timeouts, 5xx, a non-zero exit).
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed as it stands (a 4xx answer, a malformed directive).
    #[error("{0}")]
    Permanent(String),
}

/// Performs one directive. Called at least once per directive: a crash
/// between the effect and the runner's record means a second call, so pass
/// `directive.idempotency_key` on to whatever you call.
///
/// Implement it to run directives in-process when sighost is used as a
/// library; the built-in ones are in [`super::executors`].
pub trait Executor: Send + Sync {
    /// Returns the result to record on the directive (a JSON value).
    fn execute(&self, directive: &Directive) -> Result<serde_json::Value, ExecutorError>;

    /// What kind of executor this is, for the `executor` label of
    /// `/metrics` (`webhook`, `command`, `log`).
    fn kind(&self) -> &'static str {
        "custom"
    }
}

/// The JSON document executors hand to the outside world: the directive as
/// a command reads it on stdin and a webhook receives it as its body.
pub fn directive_document(directive: &Directive) -> serde_json::Value {
    serde_json::json!({
        "id": directive.id,
        "tenant": directive.tenant,
        "name": directive.name,
        "payload": directive.payload,
        "idempotency_key": directive.idempotency_key,
        "signal_id": directive.signal_id,
        "handler": directive.handler,
        "attempt": directive.attempt,
        "scheduled_at": crate::signal::format_timestamp(directive.scheduled_at),
    })
}
