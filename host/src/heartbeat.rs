//! Leases kept alive by their holder.
//!
//! A claim leases work for [`crate::worker::WorkerConfig::lease`] (10 s by
//! default). While this process works on it — waiting in its queue, running
//! — a heartbeat thread extends the lease every third of that, so the lease
//! can be short and the work of a process that died is rescued within
//! seconds: at the first claim after its last lease ran out. Only live work
//! is kept alive: an entry leaves [`Held`] when its run ends, so a result the
//! store will not take is not held forever; if writing it outlasts the
//! lease, the work is rescued and runs again (at least once), and the late
//! write is fenced out.
//!
//! Leases compare times written by different machines: keep their clocks
//! within a few seconds of each other (NTP). The margin is the lease minus
//! one heartbeat interval, about 6.6 s with the defaults.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::health::StoreHealth;
use crate::store::StoreResult;

/// The work this process holds, by id: its attempt and when its lease ends.
#[derive(Debug)]
pub struct Held<K> {
    entries: Mutex<HashMap<K, (u32, DateTime<Utc>)>>,
}

impl<K> Default for Held<K> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Held<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (u32, DateTime<Utc>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, key: K, attempt: u32, leased_until: DateTime<Utc>) {
        self.lock().insert(key, (attempt, leased_until));
    }

    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// When the lease on `key` ends now, if this process holds it.
    pub fn leased_until(&self, key: &K) -> Option<DateTime<Utc>> {
        self.lock().get(key).map(|(_, until)| *until)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn snapshot(&self) -> Vec<(K, u32)> {
        self.lock()
            .iter()
            .map(|(key, (attempt, _))| (key.clone(), *attempt))
            .collect()
    }

    fn extended(&self, keys: &[(K, u32)], until: DateTime<Utc>) {
        let mut entries = self.lock();
        for (key, attempt) in keys {
            if let Some(entry) = entries.get_mut(key)
                && entry.0 == *attempt
            {
                entry.1 = until;
            }
        }
    }
}

/// How often the heartbeat extends leases: a third of the lease, so two
/// beats may fail before it runs out.
pub fn interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Extends the leases in `held` every [`interval`] until `stopping` is set
/// and nothing is held any more (work still running at shutdown keeps its
/// lease to the end). `extend` writes one beat for the keys, to `until`.
pub fn beat<K: Eq + Hash + Clone>(
    what: &str,
    held: &Held<K>,
    lease: Duration,
    clock: fn() -> DateTime<Utc>,
    stopping: &AtomicBool,
    health: &StoreHealth,
    extend: impl Fn(&[(K, u32)], DateTime<Utc>) -> StoreResult<u64>,
) {
    let every = interval(lease);
    let step = every.min(Duration::from_millis(50));
    let mut waited = Duration::ZERO;
    loop {
        if stopping.load(Ordering::SeqCst) && held.is_empty() {
            return;
        }
        std::thread::sleep(step);
        waited += step;
        if waited < every {
            continue;
        }
        waited = Duration::ZERO;
        let keys = held.snapshot();
        if keys.is_empty() {
            continue;
        }
        let until = clock() + lease;
        match extend(&keys, until) {
            Ok(_) => held.extended(&keys, until),
            Err(error) => {
                health.failed(what, &error.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_moves_the_lease_of_the_attempt_still_held() {
        let held: Held<i64> = Held::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let later = t0 + Duration::from_secs(30);
        held.insert(1, 1, t0);
        held.insert(2, 1, t0);
        held.remove(&2);
        held.extended(&[(1, 1), (2, 1)], later);
        assert_eq!(held.leased_until(&1), Some(later));
        assert_eq!(held.leased_until(&2), None, "no longer held");
        held.insert(1, 2, t0);
        held.extended(&[(1, 1)], later + Duration::from_secs(1));
        assert_eq!(held.leased_until(&1), Some(t0), "another attempt now");
    }
}
