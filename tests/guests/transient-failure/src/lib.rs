//! Requests a `flaky.done` directive, then fails transiently; exercises
//! retries and proves that a failed attempt leaves no directive behind.
//!
//! Options:
//! - `succeed_on_attempt = n`: fail every attempt before the n-th (never
//!   succeed if unset and `fail_percent` is unset);
//! - `fail_percent = p`, `seed = s`: fail only the first attempt, and only for
//!   about p% of signals, picked by a hash of the signal id and the seed, so
//!   several copies of this guest (different seeds) fail different signals.
//!   The seed and the attempt go into the directive's key, so each copy
//!   writes its own, and a directive written by any attempt but the one that
//!   completed would show up as a second row.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options = serde_json::from_str::<serde_json::Value>(&context.options).unwrap_or_default();
    let seed = options["seed"].as_u64();
    let mut request = directive("flaky.done").payload(&serde_json::json!({ "signal": signal.id }));
    if let Some(seed) = seed {
        request = request.idempotency_key(format!("{}:{seed}:{}", signal.id, context.attempt));
    }
    request.request(&signal)?;

    if let Some(percent) = options["fail_percent"].as_u64() {
        let fails = context.attempt == 1 && fnv1a(&signal.id, seed.unwrap_or(0)) % 100 < percent;
        return match fails {
            true => Err(HandlerError::transient("upstream unavailable")),
            false => Ok(()),
        };
    }
    match options["succeed_on_attempt"].as_u64() {
        Some(n) if u64::from(context.attempt) >= n => Ok(()),
        _ => Err(HandlerError::transient("upstream unavailable")),
    }
}

/// FNV-1a over the text and the seed: stable across runs and hosts.
fn fnv1a(text: &str, seed: u64) -> u64 {
    text.bytes()
        .chain(seed.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}
