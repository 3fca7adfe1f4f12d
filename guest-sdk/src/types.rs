use serde::de::DeserializeOwned;

/// Who or what a signal is about or was caused by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    pub kind: String,
    pub id: String,
}

/// An immutable, tenant-scoped fact, as the host delivered it.
///
/// `payload` and `metadata` are JSON objects kept as text; read them typed with
/// [`Signal::payload`] and [`Signal::metadata`]. Timestamps are RFC 3339, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub payload: String,
    pub metadata: String,
    pub dedupe_key: Option<String>,
    pub occurred_at: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: Option<EntityRef>,
    pub subject: Option<EntityRef>,
    pub source: Option<String>,
    pub inserted_at: String,
}

impl Signal {
    /// The payload, deserialized. A payload that does not fit `T` is a
    /// permanent error: retrying the same signal cannot fix it.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        parse_json(&self.payload, "payload", &self.name)
    }

    /// The metadata, deserialized; a mismatch is a permanent error.
    pub fn metadata<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        parse_json(&self.metadata, "metadata", &self.name)
    }
}

/// What a handler may know besides the signal: its own options and the invoking
/// tenant's settings and packages, nothing of any other tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub tenant: String,
    pub signal_id: String,
    pub signal_name: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The handler's manifest options: a JSON object as text.
    pub options: String,
    /// The tenant's settings: a JSON object as text.
    pub settings: String,
    /// The packages the tenant has installed.
    pub packages: Vec<String>,
}

impl Context {
    /// The tenant's settings, deserialized; a mismatch is a permanent error.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        parse_json(&self.settings, "tenant settings", &self.signal_name)
    }

    /// The handler's options, deserialized; a mismatch is a permanent error.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        parse_json(&self.options, "handler options", &self.signal_name)
    }

    /// One setting by JSON pointer (`/forum/auto_summaries`), if present.
    pub fn setting(&self, pointer: &str) -> Option<serde_json::Value> {
        let settings: serde_json::Value = serde_json::from_str(&self.settings).ok()?;
        settings.pointer(pointer).cloned()
    }

    pub fn has_package(&self, package: &str) -> bool {
        self.packages.iter().any(|p| p == package)
    }
}

/// How a handler fails. `Transient` is retried with backoff; `Permanent`
/// discards the delivery at once with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    Transient(String),
    Permanent(String),
}

impl HandlerError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(m) => write!(f, "transient: {m}"),
            Self::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

impl std::error::Error for HandlerError {}

fn parse_json<T: DeserializeOwned>(
    text: &str,
    what: &str,
    signal_name: &str,
) -> Result<T, HandlerError> {
    serde_json::from_str(text)
        .map_err(|e| HandlerError::Permanent(format!("{what} of {signal_name} does not fit: {e}")))
}
