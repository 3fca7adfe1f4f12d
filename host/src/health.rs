//! Whether the store takes writes, and how the writes that must land
//! (delivery results, directive results) are tried again.
//!
//! A result that cannot be written is kept aside ([`Refused`]) and retried
//! with backoff beside new work, never ahead of the results after it (so one
//! the store will never take holds back no other). The runner keeps a
//! directive's lease alive while its result waits, so a succeeded directive
//! is not run again just because its write failed; the completer lets go of
//! a delivery result once its lease has run out ([`Refused::expire`]), and
//! the rescue runs the delivery again. Once shutdown begins, they get at most
//! [`SHUTDOWN_GRACE`] more: what is still unwritten is left for the lease
//! rescue, which runs it again (executors are told to expect at-least-once
//! calls), and the host stops within a known bound even while its store
//! fails. Failures are logged once per [`LOG_INTERVAL`] with their count,
//! not once per try; `/readyz` reports a store that refuses writes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::StoreResult;

/// How long a stopping host keeps trying to write results.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a failing store is logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The state of writes to the store, shared by the workers, the runner and
/// the HTTP API.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    /// The latest failure: an idle host writes nothing, so a failure long
    /// past no longer says the store refuses writes now.
    last: Instant,
    failures: u64,
    last_error: String,
    logged_at: Instant,
    /// Failures since the last log line.
    unlogged: u64,
}

impl StoreHealth {
    /// Records a failed write of `what`, logging it if none was logged in
    /// the last [`LOG_INTERVAL`]; says whether it logged.
    pub fn failed(&self, what: &str, error: &str) -> bool {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match failing.as_mut() {
            None => {
                tracing::warn!(%error, "{what} failed; retrying until the store takes it");
                *failing = Some(Failing {
                    since: now,
                    last: now,
                    failures: 1,
                    last_error: error.to_owned(),
                    logged_at: now,
                    unlogged: 0,
                });
                true
            }
            Some(state) => {
                state.last = now;
                state.failures += 1;
                state.unlogged += 1;
                state.last_error = error.to_owned();
                if now.duration_since(state.logged_at) >= LOG_INTERVAL {
                    tracing::warn!(
                        %error,
                        failures = state.unlogged,
                        failing_for_s = now.duration_since(state.since).as_secs(),
                        "writes to the store keep failing; retrying"
                    );
                    state.logged_at = now;
                    state.unlogged = 0;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Records a write that went through.
    pub fn recovered(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = failing.take() {
            tracing::info!(
                failures = state.failures,
                failing_for_s = state.since.elapsed().as_secs(),
                "the store takes writes again"
            );
        }
    }

    /// What is wrong, while writes fail (the last failure within
    /// [`LOG_INTERVAL`]; refused writes are tried at least once a second), without
    /// the store's own words (they may describe the database; the log has
    /// them).
    pub fn failing(&self) -> Option<String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing
            .as_ref()
            .filter(|state| state.last.elapsed() < LOG_INTERVAL)
            .map(|state| {
                format!(
                    "the store has refused writes for {} s ({} failed writes); see the host's log",
                    state.since.elapsed().as_secs(),
                    state.failures,
                )
            })
    }

    /// The store's error of the last failed write, while writes fail.
    pub fn last_error(&self) -> Option<String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing.as_ref().map(|state| state.last_error.clone())
    }
}

/// Writes the store refused one at a time, tried again with backoff beside
/// new work instead of ahead of it: a write the store will never take (a
/// poison result) holds back nothing that comes after it. Once shutdown
/// begins they are tried for [`SHUTDOWN_GRACE`] more, then given up to the
/// lease rescue.
#[derive(Debug)]
pub struct Refused<T> {
    /// What was refused, with when it first was.
    items: Vec<(T, Instant)>,
    backoff: Duration,
    retry_at: Option<Instant>,
    give_up_at: Option<Instant>,
}

impl<T> Default for Refused<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            backoff: FIRST_BACKOFF,
            retry_at: None,
            give_up_at: None,
        }
    }
}

impl<T> Refused<T> {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Keeps `items` for a later try.
    pub fn add(&mut self, items: impl IntoIterator<Item = T>) {
        let now = Instant::now();
        self.items.extend(items.into_iter().map(|item| (item, now)));
        if !self.items.is_empty() && self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff);
        }
    }

    /// When the next try is due, if anything waits.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.items.is_empty())
    }

    /// If a try is due, tries each item with `write`, keeping those still
    /// refused for a later try with a longer backoff. Returns how many were
    /// written.
    pub fn retry(
        &mut self,
        what: &str,
        health: &StoreHealth,
        mut write: impl FnMut(&T) -> StoreResult<()>,
    ) -> usize {
        if self.retry_at().is_none_or(|at| Instant::now() < at) {
            return 0;
        }
        let before = self.items.len();
        self.items.retain(|(item, _)| match write(item) {
            Ok(()) => {
                health.recovered();
                false
            }
            Err(error) => {
                health.failed(what, &error.to_string());
                true
            }
        });
        if self.items.is_empty() {
            self.backoff = FIRST_BACKOFF;
            self.retry_at = None;
        } else {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            self.retry_at = Some(Instant::now() + self.backoff);
        }
        before - self.items.len()
    }

    /// While the host stops: once [`SHUTDOWN_GRACE`] has passed since it
    /// began to, drops what is still refused and returns it, for the lease
    /// rescue.
    pub fn give_up_if_stopping(&mut self, stopping: &AtomicBool) -> Vec<T> {
        if self.items.is_empty() || !stopping.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let give_up_at = *self
            .give_up_at
            .get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
        if Instant::now() < give_up_at {
            return Vec::new();
        }
        self.retry_at = None;
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(item, _)| item)
            .collect()
    }

    /// Drops and returns what was first refused longer than `age` ago: for
    /// results whose lease has run out, which the lease rescue runs again,
    /// so that a result the store never takes is not kept for the life of
    /// the process.
    pub fn expire(&mut self, age: Duration) -> Vec<T> {
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|(_, since)| since.elapsed() > age);
        self.items = kept;
        expired.into_iter().map(|(item, _)| item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_write_that_lands_ends_the_failure() {
        let health = StoreHealth::default();
        let mut refused = Refused::default();
        refused.add([1]);
        std::thread::sleep(FIRST_BACKOFF);
        refused.retry("a test write", &health, |_| {
            Err(StoreError::Database("disk full".into()))
        });
        assert!(health.failing().is_some());
        std::thread::sleep(FIRST_BACKOFF * 2);
        assert_eq!(refused.retry("a test write", &health, |_| Ok(())), 1);
        assert!(refused.is_empty());
        assert_eq!(health.failing(), None, "recovered");
    }

    #[test]
    fn gives_up_once_shutdown_has_waited_its_grace() {
        let health = StoreHealth::default();
        let stopping = AtomicBool::new(true);
        let mut refused = Refused::default();
        refused.add(["a result"]);
        let started = Instant::now();
        while refused.give_up_if_stopping(&stopping).is_empty() {
            std::thread::sleep(FIRST_BACKOFF);
            refused.retry("a test write", &health, |_| {
                Err(StoreError::Database("I/O error".into()))
            });
        }
        assert!(started.elapsed() >= SHUTDOWN_GRACE);
        assert!(refused.is_empty());
        let failing = health.failing().expect("still failing");
        assert!(
            failing.starts_with("the store has refused writes"),
            "{failing}"
        );
        assert_eq!(health.last_error().as_deref(), Some("database: I/O error"));
    }

    #[test]
    fn a_refused_write_is_tried_again_later_without_the_others() {
        let health = StoreHealth::default();
        let mut refused = Refused::default();
        let added = Instant::now();
        refused.add([1, 2, 3]);
        assert!(
            refused
                .retry_at()
                .is_some_and(|at| at >= added + FIRST_BACKOFF),
            "due after a backoff"
        );
        std::thread::sleep(FIRST_BACKOFF);
        let written = refused.retry("a test write", &health, |n| match n {
            2 => Err(StoreError::Database("poison".into())),
            _ => Ok(()),
        });
        assert_eq!((written, refused.len()), (2, 1));
        assert!(
            refused.retry_at().is_some_and(|at| at > Instant::now()),
            "backs off"
        );
        let stopping = AtomicBool::new(true);
        assert!(
            refused.give_up_if_stopping(&stopping).is_empty(),
            "the grace begins"
        );
        assert_eq!(refused.len(), 1);
    }

    #[test]
    fn a_failing_store_is_logged_once_per_interval_with_its_count() {
        let health = StoreHealth::default();
        let logged: Vec<bool> = (0..100)
            .map(|_| health.failed("a test write", "disk full"))
            .collect();
        assert!(logged[0], "the first failure is logged");
        assert_eq!(logged.iter().filter(|l| **l).count(), 1, "and no other");
        let failing = health.failing().expect("failing");
        assert!(failing.contains("(100 failed writes)"), "{failing}");
    }

    #[test]
    fn a_result_refused_longer_than_its_lease_is_let_go() {
        let mut refused = Refused::default();
        refused.add(["old"]);
        std::thread::sleep(Duration::from_millis(30));
        refused.add(["new"]);
        assert_eq!(refused.expire(Duration::from_millis(20)), ["old"]);
        assert_eq!(refused.len(), 1);
    }
}
