//! What one invocation produced.

use std::time::Duration;

use super::directives::RequestedDirective;

/// How an invocation ended. Everything but `Ok` and `Permanent` is worth a
/// retry: a timeout or a trap may come from a load spike or a transient bug,
/// and the retry policy caps how often (ARCHITECTURE.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The handler returned `transient(message)`.
    Transient(String),
    /// The handler returned `permanent(message)`: never retried.
    Permanent(String),
    /// The guest trapped (panic, stack overflow, unreachable, …).
    Trap(String),
    /// The wall-clock budget ran out.
    Timeout,
    /// The guest tried to grow its memory past the cap.
    MemoryExceeded,
    /// The fuel budget ran out.
    FuelExhausted,
    /// The host could not run the handler at all (for example every pooled
    /// instance slot is in use).
    HostError(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// Whether the delivery may be tried again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Permanent(_))
    }

    /// A one-line description for logs and the delivery's error column.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Transient(m) => format!("transient error: {m}"),
            Outcome::Permanent(m) => format!("permanent error: {m}"),
            Outcome::Trap(m) => format!("trap: {m}"),
            Outcome::Timeout => "timeout: the wall-clock budget ran out".into(),
            Outcome::MemoryExceeded => "memory limit exceeded".into(),
            Outcome::FuelExhausted => "fuel budget exhausted".into(),
            Outcome::HostError(m) => format!("host error: {m}"),
        }
    }
}

/// Measurements of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub wall_time: Duration,
    /// Fuel consumed, when fuel metering is on.
    pub fuel_consumed: Option<u64>,
    /// The largest linear memory size the guest reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Accepted directive requests, including those of a failed attempt.
    pub directive_count: u32,
    /// Refused directive requests.
    pub refused_directives: u32,
    /// Why, for the first 16 (`directives::MAX_REFUSALS_KEPT`).
    pub refusals: Vec<String>,
    /// Guest stdout and stderr, interleaved, bounded and redacted.
    pub output: String,
    pub output_truncated: bool,
}

/// The result of [`Sandbox::invoke`](super::Sandbox::invoke).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub outcome: Outcome,
    /// Accepted requests, to be written when the delivery completes; always
    /// empty unless the outcome is `Ok`.
    pub directives: Vec<RequestedDirective>,
    pub report: Report,
}
