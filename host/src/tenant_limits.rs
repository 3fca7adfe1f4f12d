//! The caps an operator sets on a tenant's emits (ARCHITECTURE.md §4, "Fair
//! share"): signals a second, per host process, and deliveries waiting to run.
//! `max_running` is the claim's (`fair.rs`). Checked by the emitter before
//! anything is stored; every refusal is counted for `status`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::{Store, StoreResult, TenantLimits};

/// How long a tenant's limits are read from the store once and reused: an
/// operator's change reaches every emit within this.
const LIMITS_TTL: Duration = Duration::from_secs(1);

/// Why an emit was refused by a cap.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "tenant {tenant} emits at most {limit} signals a second (per host); try again in {} ms",
        retry_after.as_millis()
    )]
    RateLimited {
        tenant: String,
        limit: u32,
        retry_after: Duration,
    },
    #[error(
        "tenant {tenant} has {pending} deliveries waiting, and may have at most {limit}; \
         this emit would add {adding}"
    )]
    OverQuota {
        tenant: String,
        pending: u64,
        adding: u64,
        limit: u64,
    },
}

/// How often a tenant's emits were refused in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Refusals {
    pub rate_limited: u64,
    pub over_quota: u64,
}

/// A token bucket: `rate` tokens a second, holding at most one second's.
/// A batch costs a token per signal; one larger than a second's worth
/// passes when the bucket is full and leaves it in debt, so the average
/// rate holds whatever the batch size.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes `n` tokens, or says how long until there are enough.
    fn take(&mut self, n: usize, rate: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(rate.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = now;
        let needed = (n as f64).min(rate);
        if self.tokens >= needed {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - self.tokens) / rate))
        }
    }
}

/// The caps, checked per emit.
#[derive(Debug, Default)]
pub struct Caps {
    limits: Mutex<HashMap<String, (Instant, Option<TenantLimits>)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    refusals: Mutex<BTreeMap<String, Refusals>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters and buckets: consistent between statements, usable after a
    // panic elsewhere.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caps {
    /// A tenant's limits, from the store at most once per [`LIMITS_TTL`];
    /// `None` for an unknown tenant (the store refuses its emit).
    fn limits(&self, store: &dyn Store, tenant: &str) -> StoreResult<Option<TenantLimits>> {
        let now = Instant::now();
        if let Some((read_at, limits)) = lock(&self.limits).get(tenant)
            && now.duration_since(*read_at) < LIMITS_TTL
        {
            return Ok(*limits);
        }
        let limits = store.tenant(tenant)?.map(|t| t.limits);
        lock(&self.limits).insert(tenant.to_owned(), (now, limits));
        Ok(limits)
    }

    /// Checks an emit of `signals` signals creating up to `deliveries`
    /// deliveries for `tenant` against its caps; takes the rate's tokens
    /// when it passes.
    pub fn check(
        &self,
        store: &dyn Store,
        tenant: &str,
        signals: usize,
        deliveries: u64,
    ) -> StoreResult<Result<(), Refusal>> {
        let Some(limits) = self.limits(store, tenant)? else {
            return Ok(Ok(()));
        };
        if let Some(limit) = limits.max_pending {
            let pending = store.pending_deliveries(tenant, limit.saturating_add(1))?;
            if pending.saturating_add(deliveries) > limit {
                self.count(tenant, |r| r.over_quota += 1);
                return Ok(Err(Refusal::OverQuota {
                    tenant: tenant.to_owned(),
                    pending,
                    adding: deliveries,
                    limit,
                }));
            }
        }
        if let Some(rate) = limits.max_emit_per_s {
            let now = Instant::now();
            let taken = lock(&self.buckets)
                .entry(tenant.to_owned())
                .or_insert_with(|| Bucket {
                    tokens: f64::from(rate),
                    at: now,
                })
                .take(signals, rate, now);
            if let Err(retry_after) = taken {
                self.count(tenant, |r| r.rate_limited += 1);
                return Ok(Err(Refusal::RateLimited {
                    tenant: tenant.to_owned(),
                    limit: rate,
                    retry_after,
                }));
            }
        }
        Ok(Ok(()))
    }

    fn count(&self, tenant: &str, add: impl FnOnce(&mut Refusals)) {
        add(lock(&self.refusals).entry(tenant.to_owned()).or_default());
    }

    /// Refusals per tenant since this process started.
    pub fn refusals(&self) -> BTreeMap<String, Refusals> {
        lock(&self.refusals).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_seconds_tokens_and_says_when_more_come() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 10.0,
            at: start,
        };
        assert_eq!(bucket.take(10, 10, start), Ok(()));
        let wait = bucket.take(1, 10, start).expect_err("empty");
        assert_eq!(
            wait,
            Duration::from_millis(100),
            "one token a tenth of a second"
        );
        assert_eq!(
            bucket.take(5, 10, start + Duration::from_millis(500)),
            Ok(())
        );
        // Idle for a minute: still only a second's worth.
        let later = start + Duration::from_secs(60);
        assert_eq!(bucket.take(10, 10, later), Ok(()));
        assert!(bucket.take(1, 10, later).is_err());
    }

    #[test]
    fn a_batch_larger_than_a_second_leaves_the_bucket_in_debt() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 10.0,
            at: start,
        };
        assert_eq!(
            bucket.take(30, 10, start),
            Ok(()),
            "passes on a full bucket"
        );
        // 20 tokens owed: the next signal waits until one is there again.
        let wait = bucket.take(1, 10, start).expect_err("in debt");
        assert_eq!(wait, Duration::from_millis(2_100));
        assert!(bucket.take(1, 10, start + Duration::from_secs(2)).is_err());
        assert_eq!(
            bucket.take(1, 10, start + Duration::from_millis(2_100)),
            Ok(())
        );
    }
}
