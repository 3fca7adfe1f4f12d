use sha2::{Digest, Sha256};

use crate::{HandlerError, Signal};

/// Starts a directive request; finish it with [`Directive::request`].
pub fn directive(name: impl Into<String>) -> Directive {
    Directive {
        name: name.into(),
        payload: Ok("{}".to_owned()),
        idempotency_key: None,
        scheduled_at: None,
    }
}

/// A directive being built. The payload defaults to `{}`, the key to
/// [`default_idempotency_key`], the schedule to "now".
#[derive(Debug, Clone)]
pub struct Directive {
    pub(crate) name: String,
    /// A serialization failure is kept until `request`, so the builder chains.
    pub(crate) payload: Result<String, String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) scheduled_at: Option<String>,
}

impl Directive {
    /// The payload: anything that serializes to a JSON object.
    pub fn payload<T: serde::Serialize + ?Sized>(mut self, payload: &T) -> Self {
        self.payload = serde_json::to_string(payload).map_err(|e| e.to_string());
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The earliest time the directive may run, RFC 3339.
    pub fn scheduled_at(mut self, at: impl Into<String>) -> Self {
        self.scheduled_at = Some(at.into());
        self
    }

    /// Asks the host for this directive on behalf of `signal`'s tenant. The
    /// host answers at once; the directive is written only if the delivery
    /// completes.
    pub fn request(self, signal: &Signal) -> Result<Receipt, DirectiveError> {
        let payload = self
            .payload
            .map_err(|e| DirectiveError::Invalid(format!("payload does not serialize: {e}")))?;
        let idempotency_key = match self.idempotency_key {
            Some(key) => key,
            None => default_idempotency_key(
                &signal.tenant,
                &signal.id,
                crate::testing::current_handler_name(),
                &self.name,
            ),
        };
        let request = Request {
            name: self.name,
            payload,
            idempotency_key,
            scheduled_at: self.scheduled_at,
        };
        #[cfg(target_family = "wasm")]
        return crate::guest::request_directive(request);
        #[cfg(not(target_family = "wasm"))]
        return crate::testing::record_request(request);
    }
}

/// A finished request, as it crosses to the host (or the native harness).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub name: String,
    pub payload: String,
    pub idempotency_key: String,
    pub scheduled_at: Option<String>,
}

/// The key a directive gets unless it sets its own: lowercase hex SHA-256 over
/// tenant, signal id, handler name and directive name, joined by NUL bytes.
pub fn default_idempotency_key(
    tenant: &str,
    signal_id: &str,
    handler: &str,
    directive: &str,
) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in [tenant, signal_id, handler, directive].iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// A new directive, written when the delivery completes.
    Accepted,
    /// This invocation already requested the same key with the same payload.
    Duplicate,
}

/// The host's answer to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub directive_id: String,
    pub status: ReceiptStatus,
}

/// Why the host refused a directive request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveError {
    NotPermitted(String),
    Invalid(String),
    TooLarge(String),
    SecretDetected(String),
    LimitExceeded(String),
    Conflict(String),
}

impl std::fmt::Display for DirectiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, message) = match self {
            Self::NotPermitted(m) => ("not permitted", m),
            Self::Invalid(m) => ("invalid", m),
            Self::TooLarge(m) => ("too large", m),
            Self::SecretDetected(m) => ("secret detected", m),
            Self::LimitExceeded(m) => ("limit exceeded", m),
            Self::Conflict(m) => ("conflict", m),
        };
        write!(f, "directive refused ({kind}): {message}")
    }
}

impl std::error::Error for DirectiveError {}

/// A refused directive fails the delivery permanently when propagated with `?`:
/// the same code and signal would be refused again on every retry.
impl From<DirectiveError> for HandlerError {
    fn from(error: DirectiveError) -> Self {
        HandlerError::Permanent(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors every SDK runs (`wit/cases/default-keys.json`), computed
    /// apart from any SDK, so a change to the default key, which would make
    /// retried and replayed deliveries ask for new directives instead of
    /// deduplicating, or make one language disagree with another, fails here.
    #[test]
    fn the_default_key_is_sha256_of_the_parts_joined_by_nul() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../wit/cases/default-keys.json"))
                .expect("the cases are JSON");
        let cases = cases["cases"].as_array().expect("a list of cases");
        assert!(!cases.is_empty());
        for case in cases {
            let part = |field: &str| case[field].as_str().expect(field);
            assert_eq!(
                default_idempotency_key(
                    part("tenant"),
                    part("signal_id"),
                    part("handler"),
                    part("directive")
                ),
                part("key"),
                "{case}"
            );
        }
    }
}
