//! Retention: finished work is deleted on a schedule, so that a store's size
//! follows its traffic rather than its age (ARCHITECTURE.md §8, "Retention").
//!
//! - Deliveries that completed, were canceled or discarded, and directives
//!   that succeeded, were canceled or failed, go once they have been
//!   finished for as long as their state's retention says (River's
//!   defaults: 24 h, and 7 days for what failed, which an operator may want
//!   to look at). A delivery's attempts go with it. Pending work (available,
//!   running, retryable deliveries; requested and running directives) is
//!   never pruned, however old.
//! - A signal goes once it is older than the signals' retention *and* no
//!   delivery or directive of its own is left. Its dedupe key goes with it:
//!   the deduplication window of emits is the signal's life, at least the
//!   signals' retention.
//! - A pruned directive leaves its idempotency key behind (with its name and
//!   a digest of its payload) for `directive_keys`: a handler that asks for
//!   that key again within it (a late retry, a replay) gets a duplicate, or a
//!   conflict, exactly as if the directive were still there, and no second
//!   side effect.
//!
//! Each tenant may have retention of its own (`[retention.tenants.ID]`).
//! Deletes run in batches of [`Retention::batch_size`] rows, one transaction
//! each, with a pause between them so the hot path's writes interleave;
//! on PostgreSQL each batch's transaction takes an advisory lock, so one
//! process of a cluster prunes at a time and the others skip their pass.
//! SQLite then gives the freed pages back to the file system, a few at a
//! time ([`Store::reclaim_space`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{
    DeliveryState, DirectiveState, PruneCursor, PruneKind, PruneRule, Store, StoreResult,
    TenantScope,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long each kind of finished row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Completed deliveries.
    pub completed: Duration,
    /// Succeeded directives.
    pub succeeded: Duration,
    /// Canceled deliveries and directives.
    pub canceled: Duration,
    /// Discarded deliveries.
    pub discarded: Duration,
    /// Failed directives.
    pub failed: Duration,
    /// Signals, once nothing of theirs is left.
    pub signals: Duration,
    /// The idempotency keys of pruned directives.
    pub directive_keys: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            completed: DAY,
            succeeded: DAY,
            canceled: DAY,
            discarded: 7 * DAY,
            failed: 7 * DAY,
            signals: DAY,
            directive_keys: 7 * DAY,
        }
    }
}

impl RetentionPolicy {
    /// How long rows of `kind` are kept.
    pub fn keep(&self, kind: PruneKind) -> Duration {
        match kind {
            PruneKind::Deliveries(DeliveryState::Completed) => self.completed,
            PruneKind::Deliveries(DeliveryState::Discarded) => self.discarded,
            PruneKind::Directives(DirectiveState::Succeeded) => self.succeeded,
            PruneKind::Directives(DirectiveState::Failed) => self.failed,
            PruneKind::Deliveries(_) | PruneKind::Directives(_) => self.canceled,
            PruneKind::Signals => self.signals,
            PruneKind::DirectiveKeys => self.directive_keys,
        }
    }
}

/// Retention as a host runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Whether `sighost run` prunes (on by default).
    pub enabled: bool,
    pub policy: RetentionPolicy,
    /// Tenants with retention of their own.
    pub tenants: BTreeMap<String, RetentionPolicy>,
    /// Between the starts of two passes.
    pub interval: Duration,
    /// Rows a batch looks at, in one transaction.
    pub batch_size: u32,
    /// Between two batches.
    pub pause: Duration,
    /// Free pages given back to the file system per step.
    pub reclaim_pages: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            enabled: true,
            policy: RetentionPolicy::default(),
            tenants: BTreeMap::new(),
            interval: Duration::from_secs(60),
            batch_size: 1_000,
            pause: Duration::from_millis(20),
            reclaim_pages: 2_048,
        }
    }
}

/// Every kind, in the order a pass prunes them: work first, then the
/// signals that work held, then the keys of directives pruned long ago.
fn kinds() -> impl Iterator<Item = PruneKind> {
    PruneKind::FINISHED_DELIVERIES
        .into_iter()
        .map(PruneKind::Deliveries)
        .chain(
            PruneKind::FINISHED_DIRECTIVES
                .into_iter()
                .map(PruneKind::Directives),
        )
        .chain([PruneKind::Signals, PruneKind::DirectiveKeys])
}

fn cutoff(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

impl Retention {
    /// The rules of a pass at `now`. Signals are pruned tenant by tenant
    /// (their index is by tenant); the rest in one walk for the tenants on
    /// the default policy and one per tenant with its own.
    pub fn rules(&self, now: DateTime<Utc>, tenants: &[String]) -> Vec<PruneRule> {
        let own: Vec<String> = self.tenants.keys().cloned().collect();
        let mut rules = Vec::new();
        for kind in kinds() {
            let rule = |tenants: TenantScope, policy: &RetentionPolicy| PruneRule {
                kind,
                older_than: cutoff(now, policy.keep(kind)),
                tenants,
            };
            if kind == PruneKind::Signals {
                for tenant in tenants {
                    let policy = self.tenants.get(tenant).unwrap_or(&self.policy);
                    rules.push(rule(TenantScope::Only(tenant.clone()), policy));
                }
                continue;
            }
            rules.push(rule(TenantScope::AllBut(own.clone()), &self.policy));
            for (tenant, policy) in &self.tenants {
                rules.push(rule(TenantScope::Only(tenant.clone()), policy));
            }
        }
        rules
    }
}

/// What a pass deleted, by kind ([`PruneKind::name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub deleted: BTreeMap<String, u64>,
    /// Bytes given back to the file system.
    pub reclaimed_bytes: u64,
    /// Another process of the cluster was pruning: this pass did nothing.
    pub skipped: bool,
    /// Stopped before its end (the host is shutting down).
    pub interrupted: bool,
}

impl PassReport {
    pub fn total(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// Runs one pass at `now`: every rule, batch by batch, calling `pause`
/// between two batches (it returns false to stop the pass) and
/// `progress(kind, deleted so far)` after each.
pub fn run_pass(
    store: &dyn Store,
    retention: &Retention,
    now: DateTime<Utc>,
    mut pause: impl FnMut() -> bool,
    mut progress: impl FnMut(PruneKind, u64),
) -> StoreResult<PassReport> {
    let tenants: Vec<String> = store.tenants()?.into_iter().map(|t| t.id).collect();
    let mut report = PassReport::default();
    for rule in retention.rules(now, &tenants) {
        let mut cursor = PruneCursor::START;
        loop {
            let Some(batch) = store.prune_batch(&rule, cursor, retention.batch_size, now)? else {
                report.skipped = true;
                return Ok(report);
            };
            let deleted = report.deleted.entry(rule.kind.name()).or_default();
            *deleted += batch.deleted;
            if batch.deleted > 0 {
                progress(rule.kind, *deleted);
            }
            if batch.examined < u64::from(retention.batch_size) {
                break;
            }
            cursor = batch.next;
            if !pause() {
                report.interrupted = true;
                return Ok(report);
            }
        }
    }
    report.deleted.retain(|_, n| *n > 0);
    store.fold_counts()?;
    if report.total() > 0 {
        loop {
            let reclaimed = store.reclaim_space(retention.reclaim_pages)?;
            report.reclaimed_bytes += reclaimed;
            if reclaimed == 0 {
                break;
            }
            if !pause() {
                report.interrupted = true;
                break;
            }
        }
    }
    Ok(report)
}

/// What a pass at `now` would delete, by kind. Signals are counted as they
/// are now: those held only by work this pass would prune go in the pass,
/// but are not counted here.
pub fn dry_run(
    store: &dyn Store,
    retention: &Retention,
    now: DateTime<Utc>,
) -> StoreResult<BTreeMap<String, u64>> {
    let tenants: Vec<String> = store.tenants()?.into_iter().map(|t| t.id).collect();
    let mut counts: BTreeMap<String, u64> = kinds().map(|k| (k.name(), 0)).collect();
    for rule in retention.rules(now, &tenants) {
        *counts.entry(rule.kind.name()).or_default() += store.count_prunable(&rule)?;
    }
    Ok(counts)
}

/// Parses a retention time as the configuration writes it: a whole number
/// and a unit, `s`, `m`, `h` or `d` (`"24h"`, `"7d"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = match unit {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => HOUR,
        "d" => DAY,
        _ => {
            return Err(format!(
                "{text:?} is not a time: write a whole number and s, m, h or d (\"24h\", \"7d\")"
            ));
        }
    };
    let number: u32 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a time: the number is missing or too large"))?;
    if number == 0 {
        return Err(format!("{text:?}: a retention time must be positive"));
    }
    Ok(unit * number)
}

/// A thread running a pass every [`Retention::interval`], first at start.
#[derive(Debug)]
pub struct Pruner {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pruner {
    pub fn start(
        store: Arc<dyn Store>,
        retention: Retention,
        metrics: Arc<crate::metrics::Metrics>,
        clock: fn() -> DateTime<Utc>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("sighost-prune".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    // Waits `time` unless stopped; false once stopped.
                    let wait = |time: Duration| {
                        let (stopped, bell) = &*stop;
                        let guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
                        let (guard, _) = bell
                            .wait_timeout_while(guard, time, |stopped| !*stopped)
                            .unwrap_or_else(|p| p.into_inner());
                        !*guard
                    };
                    loop {
                        let started = std::time::Instant::now();
                        // Counted batch by batch, as each commits: a pass
                        // that fails later has still deleted these.
                        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
                        let pass = run_pass(
                            &*store,
                            &retention,
                            clock(),
                            || wait(retention.pause),
                            |kind, deleted_so_far| {
                                let counted = counted.entry(kind.name()).or_default();
                                metrics.pruned(&kind.name(), deleted_so_far - *counted);
                                *counted = deleted_so_far;
                            },
                        );
                        match pass {
                            Ok(report) if report.total() > 0 => tracing::info!(
                                deleted = ?report.deleted,
                                reclaimed_bytes = report.reclaimed_bytes,
                                took_ms = started.elapsed().as_millis() as u64,
                                "pruned finished work past its retention"
                            ),
                            Ok(report) if report.skipped => {
                                tracing::debug!("another process is pruning; skipped this pass")
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "pruning failed; trying again next pass")
                            }
                        }
                        if !wait(retention.interval.saturating_sub(started.elapsed())) {
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops at the end of the current batch; returns once the thread is done.
    pub fn stop(mut self) {
        self.signal_stop();
    }

    fn signal_stop(&mut self) {
        let (stopped, bell) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        bell.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_with_a_unit_and_refuses_others() {
        assert_eq!(parse_duration("24h"), Ok(DAY));
        assert_eq!(parse_duration("7d"), Ok(7 * DAY));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        for bad in ["", "24", "h", "1.5h", "-1d", "1w", "0h", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_pass_has_a_rule_per_kind_and_own_tenant_and_signals_per_tenant() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let mut retention = Retention::default();
        let short = RetentionPolicy {
            completed: HOUR,
            ..RetentionPolicy::default()
        };
        retention.tenants.insert("small".into(), short);
        let rules = retention.rules(now, &["big".into(), "small".into()]);
        let completed: Vec<&PruneRule> = rules
            .iter()
            .filter(|r| r.kind == PruneKind::Deliveries(DeliveryState::Completed))
            .collect();
        assert_eq!(completed.len(), 2);
        assert_eq!(
            completed[0].tenants,
            TenantScope::AllBut(vec!["small".into()])
        );
        assert_eq!(completed[0].older_than, now - TimeDelta::hours(24));
        assert_eq!(completed[1].tenants, TenantScope::Only("small".into()));
        assert_eq!(completed[1].older_than, now - TimeDelta::hours(1));
        let signals: Vec<&TenantScope> = rules
            .iter()
            .filter(|r| r.kind == PruneKind::Signals)
            .map(|r| &r.tenants)
            .collect();
        assert_eq!(
            signals,
            [
                &TenantScope::Only("big".into()),
                &TenantScope::Only("small".into())
            ]
        );
        let last_work = rules
            .iter()
            .rposition(|r| matches!(r.kind, PruneKind::Deliveries(_) | PruneKind::Directives(_)));
        let first_signal = rules.iter().position(|r| r.kind == PruneKind::Signals);
        assert!(
            last_work < first_signal,
            "signals go after the work that held them"
        );
    }
}
