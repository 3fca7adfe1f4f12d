//! Months of traffic through a store in minutes: a pinned clock advances a
//! simulated day at a time, each day's signals are delivered and their
//! directives run, and retention prunes at the end of the day, as a host's
//! pruner would. Shared by the retention tests (a few days, a few thousand
//! rows) and the bench's soak section (30 days at 200,000 deliveries a day).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sighost::fair::Claim;
use sighost::retention::{self, PassReport, Retention};
use sighost::store::{
    Decision, DeliveryState, DeliveryTarget, DirectiveDecision, DirectiveState, NewSignal,
    QueueStats, Store,
};

use crate::conformance::{at, requested, result};

pub const TENANT: &str = "soak";

/// Every delivery that is retried waits this long: it stays pending for the
/// whole soak, and retention must never take it.
const FAR_RETRY_DAYS: i64 = 1_000;

/// What the store held at the end of a simulated day, after its prune.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakDay {
    pub day: u32,
    /// Rows of each kind, whatever their state.
    pub deliveries: u64,
    pub directives: u64,
    /// Deliveries waiting for their (far) retry: never prunable.
    pub pending: u64,
    /// Deliveries this day put in a far retry.
    pub retried: u64,
    /// What the day's prune deleted, and how long it took.
    pub pruned: PassReport,
    pub prune_took: std::time::Duration,
}

fn day_start(day: u32) -> DateTime<Utc> {
    at(0) + TimeDelta::days(i64::from(day))
}

fn total(counts: &[(impl PartialEq, u64)]) -> u64 {
    counts.iter().map(|(_, n)| n).sum()
}

fn count<S: PartialEq>(counts: &[(S, u64)], state: S) -> u64 {
    counts
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| *n)
}

/// Creates the soak's tenant; run once before the first day.
pub fn prepare(store: &dyn Store) {
    store
        .create_tenant(TENANT, json!({}), at(0))
        .expect("create the soak tenant");
}

/// Runs simulated day `day`: `deliveries` deliveries (two per signal), of
/// which one in fifty is discarded, one in fifty waits for a retry far in
/// the future and the rest complete with one directive each; of those, one
/// in twenty fails and the rest succeed. Then prunes at the day's end.
pub fn run_day(store: &dyn Store, retention: &Retention, day: u32, deliveries: u64) -> SoakDay {
    let start = day_start(day);
    let targets = vec![target("soak.a"), target("soak.b")];
    let signals: Vec<(NewSignal, Vec<DeliveryTarget>)> = (0..deliveries / 2)
        .map(|i| {
            let signal = NewSignal {
                tenant: TENANT.into(),
                name: "soak.happened".into(),
                payload: json!({"day": day, "i": i}),
                dedupe_key: Some(format!("{day}-{i}")),
                ..NewSignal::default()
            };
            (signal, targets.clone())
        })
        .collect();
    for chunk in signals.chunks(1_000) {
        store.emit(chunk, start).expect("emit the day's signals");
    }
    let worked = start + TimeDelta::seconds(1);
    let mut retried = 0;
    loop {
        let claimed = store
            .claim_deliveries(
                &Claim::new("soak", 1_000, std::time::Duration::from_secs(60)),
                worked,
            )
            .expect("claim");
        if claimed.is_empty() {
            break;
        }
        let results: Vec<_> = claimed
            .iter()
            .map(|c| {
                let decision = match c.delivery.id % 50 {
                    0 => Decision::Discard,
                    1 => {
                        retried += 1;
                        Decision::Retry {
                            at: worked + TimeDelta::days(FAR_RETRY_DAYS),
                        }
                    }
                    _ => Decision::Complete(vec![requested(
                        TENANT,
                        &format!("d-{}", c.delivery.id),
                        json!({"delivery": c.delivery.id}),
                    )]),
                };
                result(c, "soak", decision, worked)
            })
            .collect();
        store.finish_deliveries(&results, worked).expect("finish");
    }
    let executed = start + TimeDelta::seconds(2);
    loop {
        let claimed = store
            .claim_directives(
                &Claim::new("soak-runner", 1_000, std::time::Duration::from_secs(60)),
                executed,
            )
            .expect("claim directives");
        if claimed.is_empty() {
            break;
        }
        for (i, c) in claimed.iter().enumerate() {
            let d = &c.directive;
            let decision = if i % 20 == 0 {
                DirectiveDecision::Failed("soak: refused".into())
            } else {
                DirectiveDecision::Succeeded(json!({}))
            };
            store
                .finish_directive(&d.id, d.attempt, "soak-runner", &decision, executed)
                .expect("finish directive");
        }
    }
    let end = start + TimeDelta::hours(23);
    let started = std::time::Instant::now();
    let pruned = retention::run_pass(store, retention, end, || true, |_, _| {}).expect("prune");
    let prune_took = started.elapsed();
    let stats: QueueStats = store.stats().expect("stats");
    SoakDay {
        day,
        deliveries: total(&stats.deliveries),
        directives: total(&stats.directives),
        pending: count(&stats.deliveries, DeliveryState::Retryable)
            + count(&stats.deliveries, DeliveryState::Available),
        retried,
        pruned,
        prune_took,
    }
}

/// How many directives are in `state` now.
pub fn directives_in(store: &dyn Store, state: DirectiveState) -> u64 {
    count(&store.stats().expect("stats").directives, state)
}

fn target(handler: &str) -> DeliveryTarget {
    DeliveryTarget {
        handler: handler.into(),
        package: None,
        max_attempts: 10,
    }
}
