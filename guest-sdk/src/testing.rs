//! A native test harness: run a handler function with `cargo test` on the host
//! target, no wasm involved, and look at the directives it requested.
//!
//! The harness checks what a handler author can get wrong in the handler itself:
//! directive names outside the allow-list you give it, and the same key
//! requested twice (duplicate with the same payload, conflict with another).
//! Size, secret and count limits are the host's to enforce; `sighost check`
//! and the host's own tests cover those.

use std::cell::{Cell, RefCell};

use crate::directive::Request;
use crate::{Context, DirectiveError, HandlerError, Receipt, ReceiptStatus, Signal};

thread_local! {
    /// The handler running on this thread; default keys are derived from it.
    static HANDLER_NAME: Cell<&'static str> = const { Cell::new("") };
    /// The requests of the harness run in progress on this thread, if any.
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

pub(crate) fn current_handler_name() -> &'static str {
    HANDLER_NAME.with(Cell::get)
}

pub(crate) fn set_handler_name(name: &'static str) {
    HANDLER_NAME.with(|n| n.set(name));
}

struct Recorder {
    allowed: Option<Vec<String>>,
    requested: Vec<RequestedDirective>,
}

/// A directive the handler requested during a harness run.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedDirective {
    pub name: String,
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    pub scheduled_at: Option<String>,
}

/// What a harness run produced.
#[derive(Debug)]
pub struct Run {
    pub result: Result<(), HandlerError>,
    /// Accepted requests, in order; duplicates are not repeated here.
    pub directives: Vec<RequestedDirective>,
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn record_request(request: Request) -> Result<Receipt, DirectiveError> {
    RECORDER.with(|recorder| {
        let mut recorder = recorder.borrow_mut();
        let Some(recorder) = recorder.as_mut() else {
            return Err(DirectiveError::Invalid(
                "directives can only be requested inside a handler invocation \
                 or a testing::Harness run"
                    .to_owned(),
            ));
        };
        if let Some(allowed) = &recorder.allowed
            && !allowed.contains(&request.name)
        {
            return Err(DirectiveError::NotPermitted(format!(
                "directive {} is not in the handler's allow-list",
                request.name
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&request.payload)
            .map_err(|e| DirectiveError::Invalid(format!("payload is not JSON: {e}")))?;
        let existing = recorder
            .requested
            .iter()
            .position(|d| d.idempotency_key == request.idempotency_key);
        if let Some(index) = existing {
            let earlier = &recorder.requested[index];
            if earlier.payload != payload || earlier.name != request.name {
                return Err(DirectiveError::Conflict(format!(
                    "idempotency key {} was already requested with another directive",
                    request.idempotency_key
                )));
            }
            return Ok(Receipt {
                directive_id: format!("test-directive-{}", index + 1),
                status: ReceiptStatus::Duplicate,
            });
        }
        recorder.requested.push(RequestedDirective {
            name: request.name,
            payload,
            idempotency_key: request.idempotency_key,
            scheduled_at: request.scheduled_at,
        });
        Ok(Receipt {
            directive_id: format!("test-directive-{}", recorder.requested.len()),
            status: ReceiptStatus::Accepted,
        })
    })
}

/// Builds signals and contexts for one handler and tenant, and runs the
/// handler function on them.
#[derive(Debug, Clone)]
pub struct Harness {
    handler_name: &'static str,
    tenant: String,
    settings: serde_json::Value,
    options: serde_json::Value,
    packages: Vec<String>,
    allowed: Option<Vec<String>>,
    attempt: u32,
    max_attempts: u32,
    next_signal: Cell<u64>,
}

impl Harness {
    /// `handler_name` is the name default idempotency keys are derived from:
    /// the handler crate's package name (`env!("CARGO_PKG_NAME")`).
    pub fn new(handler_name: &'static str, tenant: impl Into<String>) -> Self {
        Self {
            handler_name,
            tenant: tenant.into(),
            settings: serde_json::json!({}),
            options: serde_json::json!({}),
            packages: Vec::new(),
            allowed: None,
            attempt: 1,
            max_attempts: 10,
            next_signal: Cell::new(1),
        }
    }

    pub fn settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }

    pub fn options(mut self, options: serde_json::Value) -> Self {
        self.options = options;
        self
    }

    pub fn packages<I: IntoIterator<Item = S>, S: Into<String>>(mut self, packages: I) -> Self {
        self.packages = packages.into_iter().map(Into::into).collect();
        self
    }

    /// Refuse directive names outside this list, as a manifest would.
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.allowed = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn attempt(mut self, attempt: u32, max_attempts: u32) -> Self {
        self.attempt = attempt;
        self.max_attempts = max_attempts;
        self
    }

    /// A signal of this tenant with fresh id `sig_test_N` and fixed timestamps.
    pub fn signal(&self, name: &str, payload: serde_json::Value) -> Signal {
        let n = self.next_signal.get();
        self.next_signal.set(n + 1);
        Signal {
            id: format!("sig_test_{n}"),
            tenant: self.tenant.clone(),
            name: name.to_owned(),
            payload: payload.to_string(),
            metadata: "{}".to_owned(),
            dedupe_key: None,
            occurred_at: "2026-01-01T00:00:00Z".to_owned(),
            correlation_id: None,
            causation_id: None,
            actor: None,
            subject: None,
            source: None,
            inserted_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    /// The context the host would pass with `signal`.
    pub fn context(&self, signal: &Signal) -> Context {
        Context {
            tenant: self.tenant.clone(),
            signal_id: signal.id.clone(),
            signal_name: signal.name.clone(),
            correlation_id: signal.correlation_id.clone(),
            causation_id: signal.causation_id.clone(),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            options: self.options.to_string(),
            settings: self.settings.to_string(),
            packages: self.packages.clone(),
        }
    }

    pub fn run_tenant_handler(
        &self,
        signal: Signal,
        handler: fn(Signal, String, Context) -> Result<(), HandlerError>,
    ) -> Run {
        let context = self.context(&signal);
        self.record(|| handler(signal, self.tenant.clone(), context))
    }

    pub fn run_context_handler(
        &self,
        signal: Signal,
        handler: fn(Signal, Context) -> Result<(), HandlerError>,
    ) -> Run {
        let context = self.context(&signal);
        self.record(|| handler(signal, context))
    }

    pub fn run_signal_handler(
        &self,
        signal: Signal,
        handler: fn(Signal) -> Result<(), HandlerError>,
    ) -> Run {
        self.record(|| handler(signal))
    }

    fn record(&self, run: impl FnOnce() -> Result<(), HandlerError>) -> Run {
        set_handler_name(self.handler_name);
        RECORDER.with(|r| {
            *r.borrow_mut() = Some(Recorder {
                allowed: self.allowed.clone(),
                requested: Vec::new(),
            })
        });
        let result = run();
        let recorder = RECORDER.with(|r| r.borrow_mut().take());
        Run {
            result,
            directives: recorder.map(|r| r.requested).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::directive;

    /// Asks for `a.one` twice under one key (same payload), then for `a.two`
    /// under that key, then for a name off the allow-list; reports every
    /// answer through the error it returns.
    fn asks_for_everything(
        signal: Signal,
        _tenant: String,
        _context: Context,
    ) -> Result<(), HandlerError> {
        let first = directive("a.one")
            .payload(&json!({"n": 1}))
            .idempotency_key("k")
            .request(&signal);
        let again = directive("a.one")
            .payload(&json!({"n": 1}))
            .idempotency_key("k")
            .request(&signal);
        let other = directive("a.two")
            .payload(&json!({"n": 1}))
            .idempotency_key("k")
            .request(&signal);
        let forbidden = directive("b.three").payload(&json!({})).request(&signal);
        Err(HandlerError::permanent(format!(
            "{:?} | {:?} | {} | {}",
            first.map(|r| r.status),
            again.map(|r| r.status),
            matches!(other, Err(DirectiveError::Conflict(_))),
            matches!(forbidden, Err(DirectiveError::NotPermitted(_))),
        )))
    }

    /// The cases every implementation of the duplicate/conflict rule runs
    /// (the host's sandbox too): `wit/cases/directive-requests.json`.
    #[test]
    fn the_harness_answers_the_shared_directive_request_cases() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../wit/cases/directive-requests.json"))
                .expect("the cases are JSON");
        let harness = Harness::new("asker", "org_acme").allow(["mail.send", "task.create"]);
        for case in cases["cases"].as_array().expect("a list of cases") {
            let requests = case["requests"].as_array().expect("requests");
            let mut answers = Vec::new();
            harness.record(|| {
                for request in requests {
                    let text = |field: &str| request[field].as_str().expect(field).to_owned();
                    let answer = record_request(Request {
                        name: text("name"),
                        payload: text("payload"),
                        idempotency_key: text("key"),
                        scheduled_at: None,
                    });
                    answers.push(match answer {
                        Ok(receipt) if receipt.status == ReceiptStatus::Accepted => "accepted",
                        Ok(_) => "duplicate",
                        Err(DirectiveError::Conflict(_)) => "conflict",
                        Err(other) => panic!("{}: {other:?}", case["case"]),
                    });
                }
                Ok(())
            });
            let expected: Vec<&str> = requests
                .iter()
                .map(|r| r["expect"].as_str().expect("expect"))
                .collect();
            assert_eq!(answers, expected, "{}", case["case"]);
        }
    }

    #[test]
    fn the_harness_checks_the_allow_list_duplicates_and_conflicts() {
        let harness = Harness::new("asker", "org_acme").allow(["a.one", "a.two"]);
        let signal = harness.signal("test.happened", json!({}));
        let run = harness.run_tenant_handler(signal, asks_for_everything);
        assert_eq!(
            run.result,
            Err(HandlerError::permanent(
                "Ok(Accepted) | Ok(Duplicate) | true | true"
            ))
        );
        assert_eq!(run.directives.len(), 1, "the duplicate is not repeated");
        assert_eq!(run.directives[0].name, "a.one");
    }
}
