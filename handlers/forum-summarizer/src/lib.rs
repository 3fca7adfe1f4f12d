//! Asks for a summary of each new forum thread, for tenants that have the
//! `forum` package installed and `auto_summaries` turned on in their settings.

use serde::Deserialize;
use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[derive(Deserialize)]
struct ThreadCreated {
    thread_id: String,
    title: String,
}

#[derive(Deserialize)]
struct Options {
    max_words: u32,
}

#[handler]
pub fn handle_signal(
    signal: Signal,
    _tenant: String,
    context: Context,
) -> Result<(), HandlerError> {
    let enabled = context.setting("/auto_summaries") == Some(serde_json::Value::Bool(true));
    if !enabled || !context.has_package("forum") {
        return Ok(()); // not applicable to this tenant
    }
    let thread: ThreadCreated = signal.payload()?;
    let options: Options = context.options()?;
    // The host keeps what a handler writes with its attempt (`sighost deliveries ID --json`).
    println!("summarizing thread {}", thread.thread_id);
    directive("forum.thread.summarize")
        .payload(&serde_json::json!({
            "thread_id": thread.thread_id,
            "title": thread.title,
            "max_words": options.max_words,
        }))
        .idempotency_key(format!("summarize:{}", thread.thread_id))
        .request(&signal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sighost_sdk::testing::Harness;

    fn harness() -> Harness {
        Harness::new(env!("CARGO_PKG_NAME"), "org_acme")
            .options(json!({ "max_words": 50 }))
            .allow(["forum.thread.summarize"])
    }

    #[test]
    fn requests_a_summary_when_the_tenant_turned_it_on() {
        let harness = harness()
            .settings(json!({ "auto_summaries": true }))
            .packages(["forum"]);
        let signal = harness.signal(
            "forum.thread.created",
            json!({ "thread_id": "t1", "title": "Hi" }),
        );
        let run = harness.run_tenant_handler(signal, handle_signal);
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.directives.len(), 1);
        assert_eq!(run.directives[0].idempotency_key, "summarize:t1");
        assert_eq!(run.directives[0].payload["max_words"], 50);
    }

    #[test]
    fn does_nothing_without_the_forum_package() {
        let harness = harness().settings(json!({ "auto_summaries": true }));
        let signal = harness.signal(
            "forum.thread.created",
            json!({ "thread_id": "t1", "title": "Hi" }),
        );
        let run = harness.run_tenant_handler(signal, handle_signal);
        assert_eq!(run.result, Ok(()));
        assert!(run.directives.is_empty());
    }

    #[test]
    fn a_malformed_payload_is_a_permanent_error() {
        let harness = harness()
            .settings(json!({ "auto_summaries": true }))
            .packages(["forum"]);
        let signal = harness.signal("forum.thread.created", json!({ "thread": 1 }));
        let run = harness.run_tenant_handler(signal, handle_signal);
        assert!(matches!(run.result, Err(HandlerError::Permanent(_))));
    }
}
