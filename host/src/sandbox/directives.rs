//! `request-directive`: the only door out of the sandbox (ARCHITECTURE.md §5).
//!
//! Every request is checked at once and answered with a receipt or a
//! `directive-error` value; a refused request is an answer, not a trap. Accepted
//! requests are only buffered here: the caller writes them when the delivery
//! completes, in the same transaction, so a failed attempt leaves none behind.

use chrono::{DateTime, Utc};

use super::bindings::types::{DirectiveError, DirectiveRequest, Receipt, ReceiptStatus};
use crate::rules::{DirectiveMatch, match_directive};
use crate::secrets::find_secret;
use crate::signal::check_name;
pub use crate::store::RequestedDirective;

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The requests of one invocation.
#[derive(Debug)]
pub(crate) struct DirectiveBuffer {
    tenant: String,
    /// The handler manifest's allow-list.
    allowed: std::sync::Arc<[String]>,
    max_count: u32,
    max_payload_bytes: usize,
    pub accepted: Vec<RequestedDirective>,
    pub refused: u32,
    /// Why the first [`MAX_REFUSALS_KEPT`] refused requests were refused.
    pub refusals: Vec<String>,
}

/// How many refusals an attempt's record keeps, each cut to
/// [`MAX_REFUSAL_BYTES`]: a guest looping on bad requests must not fill it.
pub const MAX_REFUSALS_KEPT: usize = 16;
pub const MAX_REFUSAL_BYTES: usize = 256;

/// A refusal as the attempt's record keeps it: `kind: message`.
fn describe(error: &DirectiveError) -> String {
    let (kind, message) = match error {
        DirectiveError::NotPermitted(m) => ("not-permitted", m),
        DirectiveError::Invalid(m) => ("invalid", m),
        DirectiveError::TooLarge(m) => ("too-large", m),
        DirectiveError::SecretDetected(m) => ("secret-detected", m),
        DirectiveError::LimitExceeded(m) => ("limit-exceeded", m),
        DirectiveError::Conflict(m) => ("conflict", m),
    };
    // A message may quote the guest's own text (a schedule, a key).
    let mut text = crate::secrets::redact(&format!("{kind}: {message}")).into_owned();
    if text.len() > MAX_REFUSAL_BYTES {
        let mut cut = MAX_REFUSAL_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

impl DirectiveBuffer {
    pub fn new(
        tenant: String,
        allowed: std::sync::Arc<[String]>,
        max_count: u32,
        max_payload_bytes: usize,
    ) -> Self {
        Self {
            tenant,
            allowed,
            max_count,
            max_payload_bytes,
            accepted: Vec::new(),
            refused: 0,
            refusals: Vec::new(),
        }
    }

    pub fn request(&mut self, request: DirectiveRequest) -> Result<Receipt, DirectiveError> {
        let answer = self.check_and_buffer(request);
        if let Err(error) = &answer {
            self.refused += 1;
            if self.refusals.len() < MAX_REFUSALS_KEPT {
                self.refusals.push(describe(error));
            }
        }
        answer
    }

    fn check_and_buffer(&mut self, request: DirectiveRequest) -> Result<Receipt, DirectiveError> {
        let DirectiveRequest {
            name,
            payload,
            idempotency_key,
            scheduled_at,
        } = request;
        check_name(&name).map_err(DirectiveError::Invalid)?;
        if !self.allowed.contains(&name) {
            return Err(DirectiveError::NotPermitted(format!(
                "the handler's manifest does not allow directive {name}"
            )));
        }
        if idempotency_key.is_empty() || idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(DirectiveError::Invalid(format!(
                "an idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, this one is {}",
                idempotency_key.len()
            )));
        }
        if idempotency_key.contains('\0') {
            // PostgreSQL text cannot hold NUL and SQLite's can: refused here,
            // in the same words on both stores.
            return Err(DirectiveError::Invalid(
                "an idempotency key may not contain a NUL byte".into(),
            ));
        }
        if payload.len() > self.max_payload_bytes {
            return Err(DirectiveError::TooLarge(format!(
                "payload of {name} is {} bytes, the limit is {}",
                payload.len(),
                self.max_payload_bytes
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&payload)
            .map_err(|e| DirectiveError::Invalid(format!("payload of {name} is not JSON: {e}")))?;
        if !payload.is_object() {
            return Err(DirectiveError::Invalid(format!(
                "payload of {name} must be a JSON object"
            )));
        }
        if let Some(pointer) = find_secret(&payload) {
            return Err(DirectiveError::SecretDetected(format!(
                "payload of {name} carries a credential at {pointer}; pass a reference to it instead"
            )));
        }
        let scheduled_at = scheduled_at
            .map(|at| {
                DateTime::parse_from_rfc3339(&at)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| DirectiveError::Invalid(format!("scheduled-at {at:?}: {e}")))
            })
            .transpose()?;

        let earlier = self
            .accepted
            .iter()
            .find(|d| d.idempotency_key == idempotency_key);
        let held = earlier.map(|d| (d.name.as_str(), &d.payload));
        match (match_directive(held, &name, &payload), earlier) {
            (DirectiveMatch::Duplicate, Some(earlier)) => {
                return Ok(Receipt {
                    directive_id: earlier.id.clone(),
                    status: ReceiptStatus::Duplicate,
                });
            }
            (DirectiveMatch::Conflict, _) => {
                return Err(DirectiveError::Conflict(format!(
                    "idempotency key {idempotency_key:?} was already requested with another directive"
                )));
            }
            _ => {}
        }
        if self.accepted.len() >= self.max_count as usize {
            return Err(DirectiveError::LimitExceeded(format!(
                "a handler may request at most {} directives per invocation",
                self.max_count
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        self.accepted.push(RequestedDirective {
            id: id.clone(),
            tenant: self.tenant.clone(),
            name,
            payload,
            idempotency_key,
            scheduled_at,
        });
        Ok(Receipt {
            directive_id: id,
            status: ReceiptStatus::Accepted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> DirectiveBuffer {
        DirectiveBuffer::new("org_a".into(), vec!["mail.send".to_owned()].into(), 2, 64)
    }

    fn request(name: &str, payload: &str, key: &str) -> DirectiveRequest {
        DirectiveRequest {
            name: name.into(),
            payload: payload.into(),
            idempotency_key: key.into(),
            scheduled_at: None,
        }
    }

    #[test]
    fn accepts_then_reports_duplicates_and_conflicts() {
        let mut b = buffer();
        let first = b
            .request(request("mail.send", r#"{"to":"a"}"#, "k"))
            .expect("accepted");
        assert_eq!(first.status, ReceiptStatus::Accepted);
        let again = b
            .request(request("mail.send", r#"{ "to": "a" }"#, "k"))
            .expect("duplicate");
        assert_eq!(again.status, ReceiptStatus::Duplicate);
        assert_eq!(again.directive_id, first.directive_id);
        let clash = b.request(request("mail.send", r#"{"to":"b"}"#, "k"));
        assert!(matches!(clash, Err(DirectiveError::Conflict(_))));
        assert_eq!(b.accepted.len(), 1);
        assert_eq!(b.accepted[0].tenant, "org_a");
    }

    /// The cases every implementation of the duplicate/conflict rule runs
    /// (each SDK's harness too): `wit/cases/directive-requests.json`.
    #[test]
    fn answers_the_shared_directive_request_cases() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../../wit/cases/directive-requests.json"))
                .expect("the cases are JSON");
        for case in cases["cases"].as_array().expect("a list of cases") {
            let allowed = vec!["mail.send".to_owned(), "task.create".to_owned()];
            let mut b = DirectiveBuffer::new("org_a".into(), allowed.into(), 100, 4096);
            for (i, r) in case["requests"]
                .as_array()
                .expect("requests")
                .iter()
                .enumerate()
            {
                let text = |field: &str| r[field].as_str().expect(field);
                let answer = match b.request(request(text("name"), text("payload"), text("key"))) {
                    Ok(receipt) if matches!(receipt.status, ReceiptStatus::Accepted) => "accepted",
                    Ok(_) => "duplicate",
                    Err(DirectiveError::Conflict(_)) => "conflict",
                    Err(other) => panic!("{}: request {i}: {other:?}", case["case"]),
                };
                assert_eq!(answer, text("expect"), "{}: request {i}", case["case"]);
            }
        }
    }

    #[test]
    fn refuses_each_kind_of_bad_request() {
        let mut b = buffer();
        assert!(matches!(
            b.request(request("mail.drop", "{}", "k")),
            Err(DirectiveError::NotPermitted(_))
        ));
        assert!(matches!(
            b.request(request("Mail", "{}", "k")),
            Err(DirectiveError::Invalid(_))
        ));
        assert!(matches!(
            b.request(request("mail.send", "[1]", "k")),
            Err(DirectiveError::Invalid(_))
        ));
        assert!(matches!(
            b.request(request("mail.send", "{", "k")),
            Err(DirectiveError::Invalid(_))
        ));
        assert!(matches!(
            b.request(request("mail.send", "{}", "")),
            Err(DirectiveError::Invalid(_))
        ));
        let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(100));
        assert!(matches!(
            b.request(request("mail.send", &big, "k")),
            Err(DirectiveError::TooLarge(_))
        ));
        let secret = r#"{"password":"x"}"#;
        assert!(matches!(
            b.request(request("mail.send", secret, "k")),
            Err(DirectiveError::SecretDetected(_))
        ));
        assert_eq!(b.refused, 7);
        assert!(b.accepted.is_empty());
        let kinds: Vec<&str> = b
            .refusals
            .iter()
            .map(|r| r.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            [
                "not-permitted",
                "invalid",
                "invalid",
                "invalid",
                "invalid",
                "too-large",
                "secret-detected"
            ],
            "{:?}",
            b.refusals
        );
    }

    #[test]
    fn keeps_the_first_refusals_each_bounded() {
        let mut b = buffer();
        // The guest's own text in the reason: a schedule that is no time.
        let unparseable = DirectiveRequest {
            scheduled_at: Some("é".repeat(1000)),
            ..request("mail.send", "{}", "k")
        };
        for _ in 0..40 {
            let _ = b.request(unparseable.clone());
        }
        assert_eq!(b.refused, 40);
        assert_eq!(b.refusals.len(), MAX_REFUSALS_KEPT);
        assert!(
            b.refusals
                .iter()
                .all(|r| r.starts_with("invalid: scheduled-at")
                    && r.len() <= MAX_REFUSAL_BYTES
                    && r.len() > MAX_REFUSAL_BYTES - 4),
            "{:?}",
            b.refusals[0]
        );
    }

    #[test]
    fn stops_at_the_per_invocation_limit() {
        let mut b = buffer();
        b.request(request("mail.send", "{}", "1")).expect("first");
        b.request(request("mail.send", "{}", "2")).expect("second");
        assert!(matches!(
            b.request(request("mail.send", "{}", "3")),
            Err(DirectiveError::LimitExceeded(_))
        ));
    }
}
