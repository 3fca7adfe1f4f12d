//! When a failed attempt runs again (ARCHITECTURE.md §4): `base + unit × 2^attempt`
//! plus up to `jitter` of that, as Oban does. With the defaults the first retry
//! comes after about 17 s and the ninth after about 9 minutes.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub unit: Duration,
    /// Fraction of the backoff added at random, so retries of a burst spread out.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_secs(15),
            unit: Duration::from_secs(1),
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// A policy for tests and demos: retries after milliseconds.
    pub fn fast(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            base: Duration::ZERO,
            unit: Duration::from_millis(1),
            jitter: 0.1,
        }
    }

    /// The delay before the retry that follows failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .unit
            .saturating_mul(1u32.checked_shl(attempt.min(24)).unwrap_or(u32::MAX));
        let delay = self.base.saturating_add(exponential);
        delay.saturating_add(delay.mul_f64(self.jitter * fastrand::f64()))
    }

    /// When to retry after failed attempt `attempt`, or `None` when the budget
    /// `max_attempts` is spent.
    pub fn next_attempt_at(
        &self,
        attempt: u32,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        (attempt < max_attempts).then(|| now + self.backoff(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_from_the_base_with_bounded_jitter() {
        let policy = RetryPolicy::default();
        for attempt in 1..=9 {
            let floor = Duration::from_secs(15 + (1 << attempt));
            let delay = policy.backoff(attempt);
            assert!(
                delay >= floor && delay <= floor.mul_f64(1.1),
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn stops_when_the_budget_is_spent() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        // After attempt 2 of 3: 15 s + 4 s, plus at most 10% of that.
        let at = policy.next_attempt_at(2, 3, now).expect("a third attempt");
        let delay = (at - now).to_std().expect("in the future");
        assert!(
            delay >= Duration::from_secs(19) && delay <= Duration::from_secs(19).mul_f64(1.1),
            "{delay:?}"
        );
        assert_eq!(policy.next_attempt_at(3, 3, now), None);
        assert_eq!(policy.next_attempt_at(4, 3, now), None);
    }
}
