//! Resource limits: the host's defaults, and a handler's overrides from its
//! manifest. Every limit of the README's "Limits" section lives here.

use std::time::Duration;

use serde::Deserialize;

/// The limits one invocation runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget of one invocation, enforced by epoch interruption.
    pub timeout: Duration,
    /// Fuel budget of one invocation; `None` leaves fuel metering off.
    pub fuel: Option<u64>,
    /// Largest signal payload accepted by emit, in bytes of JSON text.
    pub signal_payload_bytes: usize,
    /// Largest directive payload a handler may request, in bytes of JSON text.
    pub directive_payload_bytes: usize,
    /// Directives one invocation may request.
    pub directives_per_invocation: u32,
    /// Guest stdout and stderr kept per invocation; the rest is dropped.
    pub output_bytes: usize,
    /// How many signal→handler→directive→signal hops a chain may take.
    pub causation_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(2),
            fuel: None,
            signal_payload_bytes: 256 << 10,
            directive_payload_bytes: 64 << 10,
            directives_per_invocation: 64,
            output_bytes: 64 << 10,
            causation_depth: 16,
        }
    }
}

/// The `[limits]` table of a handler manifest. Each field left out keeps the
/// host's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub memory_mib: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub directive_payload_kib: Option<usize>,
    pub directives_per_invocation: Option<u32>,
    pub output_kib: Option<usize>,
}

impl LimitOverrides {
    /// The host's limits with these overrides applied. Sizes saturate rather
    /// than wrap, so an absurd value is refused by the host's maximum checks
    /// instead of turning into a tiny limit.
    pub fn apply(&self, host: &Limits) -> Limits {
        Limits {
            memory_bytes: self
                .memory_mib
                .map_or(host.memory_bytes, |m| m.saturating_mul(1 << 20)),
            timeout: self.timeout_ms.map_or(host.timeout, Duration::from_millis),
            fuel: self.fuel.or(host.fuel),
            directive_payload_bytes: self
                .directive_payload_kib
                .map_or(host.directive_payload_bytes, |k| k.saturating_mul(1 << 10)),
            directives_per_invocation: self
                .directives_per_invocation
                .unwrap_or(host.directives_per_invocation),
            output_bytes: self
                .output_kib
                .map_or(host.output_bytes, |k| k.saturating_mul(1 << 10)),
            ..host.clone()
        }
    }
}
