//! Conformance: the counts `status` and `/metrics` read (`Store::stats`) are
//! kept as the data changes; after every kind of change they say what the
//! rows say.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde_json::json;
use sighost::retention::{self, Retention};
use sighost::store::{
    Decision, DeliveryFilter, DeliveryState, DirectiveDecision, DirectiveFilter, LeasesRescued,
    QueueStats, Store,
};

use super::*;

type ByState = BTreeMap<String, u64>;

fn nonzero<S: Copy>(counts: &[(S, u64)], name: fn(S) -> &'static str) -> ByState {
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (name(*s).to_owned(), *n))
        .collect()
}

/// What the stats say, and what the rows say, in one shape: totals of
/// deliveries and directives by state, deliveries by handler and by tenant.
fn counts_of_stats(stats: &QueueStats) -> Vec<(String, ByState)> {
    let mut shape = vec![
        (
            "deliveries".to_owned(),
            nonzero(&stats.deliveries, DeliveryState::as_str),
        ),
        (
            "directives".to_owned(),
            nonzero(&stats.directives, DirectiveState::as_str),
        ),
    ];
    for h in &stats.handlers {
        let states = nonzero(&h.deliveries, DeliveryState::as_str);
        if !states.is_empty() {
            shape.push((format!("handler {}", h.handler), states));
        }
    }
    for t in &stats.tenants {
        let states = nonzero(&t.deliveries, DeliveryState::as_str);
        if !states.is_empty() {
            shape.push((format!("tenant {}", t.tenant), states));
        }
    }
    shape.sort();
    shape
}

fn counts_of_rows(store: &dyn Store) -> Vec<(String, ByState)> {
    let deliveries = store
        .deliveries(&DeliveryFilter::default())
        .expect("deliveries");
    let directives = store
        .directives(&DirectiveFilter::default())
        .expect("directives");
    let mut groups: BTreeMap<String, ByState> = BTreeMap::new();
    groups.insert("deliveries".into(), ByState::new());
    groups.insert("directives".into(), ByState::new());
    for d in &deliveries {
        let state = d.state.as_str().to_owned();
        for group in [
            "deliveries".to_owned(),
            format!("handler {}", d.handler),
            format!("tenant {}", d.tenant),
        ] {
            *groups
                .entry(group)
                .or_default()
                .entry(state.clone())
                .or_default() += 1;
        }
    }
    for d in &directives {
        *groups
            .entry("directives".into())
            .or_default()
            .entry(d.state.as_str().to_owned())
            .or_default() += 1;
    }
    groups.into_iter().collect()
}

fn check(store: &dyn Store, step: &str) {
    let stats = store.stats().expect("stats");
    assert_eq!(
        counts_of_stats(&stats),
        counts_of_rows(store),
        "after {step}: the kept counts (left) differ from the rows (right)"
    );
}

pub fn keeps_its_counts_right_through_every_change(store: &dyn Store) {
    check(store, "nothing");
    create_tenant(store, "acme");
    let keys = ["a", "b", "c", "d"];
    let directives = keys
        .iter()
        .map(|k| requested("acme", k, json!({"k": k})))
        .collect();
    complete_with(store, "acme", directives, at(0));
    check(store, "a completion writing directives");
    deliveries_in_every_state(store);
    check(
        store,
        "emit, claim, complete, retry, discard, snooze, cancel",
    );

    let claimed = claim_directives(store, "r", at(3));
    assert_eq!(claimed.len(), 4);
    let decisions = [
        DirectiveDecision::Succeeded(json!({})),
        DirectiveDecision::Failed("no".into()),
        DirectiveDecision::Retry {
            at: at(100_000),
            error: "later".into(),
        },
    ];
    for (d, decision) in claimed.iter().zip(decisions) {
        store
            .finish_directive(&d.id, d.attempt, "r", &decision, at(3))
            .expect("finish directive");
    }
    check(
        store,
        "directives succeeded, failed, retried, one left running",
    );
    store
        .cancel_directives(
            &DirectiveFilter {
                tenant: Some("acme".into()),
                ..DirectiveFilter::default()
            },
            at(4),
        )
        .expect("cancel directives");
    check(store, "directives canceled");
    // The running directive's runner dies: rescued at the next claim.
    assert_eq!(store.leases_rescued(), LeasesRescued::default());
    claim_directives(store, "r2", at(4) + TimeDelta::seconds(LEASE_SECONDS + 1));
    check(store, "a directive's lease rescued");
    assert_eq!(
        store.leases_rescued(),
        LeasesRescued {
            deliveries: 0,
            directives: 1
        }
    );

    // A conflicting directive: the delivery's completion is undone to
    // discarded in the same transaction.
    complete_conflicting(store);
    check(store, "a completion discarded for a conflict");

    store
        .retry_deliveries(&DeliveryFilter::default(), at(5))
        .expect("retry");
    check(store, "an operator's retry");
    // The running delivery's worker dies: rescued at the next claim.
    let running = store
        .deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Running),
            ..DeliveryFilter::default()
        })
        .expect("running deliveries")
        .len() as u64;
    assert!(running > 0);
    claim(store, "w2", at(5) + TimeDelta::seconds(LEASE_SECONDS + 1));
    check(store, "a delivery's lease rescued and a claim");
    assert_eq!(
        store.leases_rescued(),
        LeasesRescued {
            deliveries: running,
            directives: 1
        }
    );

    let signal = all_signals(store).remove(0);
    store
        .replay(&[(signal.id, vec![target("h.replayed")])], at(6))
        .expect("replay");
    check(store, "a replay");

    run_due(store, at(6) + TimeDelta::seconds(2 * LEASE_SECONDS), |_| {
        Some(Decision::Complete(Vec::new()))
    });
    retention::run_pass(
        store,
        &Retention::default(),
        at(0) + TimeDelta::days(30),
        || true,
        |_, _| {},
    )
    .expect("prune");
    check(store, "a prune");
}

/// A delivery of "acme" asking for key "a" with another payload.
fn complete_conflicting(store: &dyn Store) {
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h.conflict")],
        at(4),
    );
    let claimed = claim(store, "w", at(4))
        .into_iter()
        .find(|c| c.delivery.handler == "h.conflict")
        .expect("the conflicting delivery");
    let directives = vec![requested("acme", "a", json!({"k": "other"}))];
    let outcome = finish(
        store,
        result(&claimed, "w", Decision::Complete(directives), at(4)),
        at(4),
    );
    assert!(
        matches!(outcome, FinishOutcome::Conflict { .. }),
        "{outcome:?}"
    );
}

/// Each handler's oldest waiting delivery, which the queue lag of
/// `/metrics` and status is taken from: due or not, available or
/// retryable; none once nothing of the handler waits.
pub fn reads_each_handlers_oldest_waiting_delivery(store: &dyn Store) {
    create_tenant(store, "acme");
    for (handler, seconds) in [("h.a", 2), ("h.a", 1), ("h.b", 3)] {
        emit(
            store,
            new_signal("acme", "test.happened"),
            vec![target(handler)],
            at(seconds),
        );
    }
    let oldest = |store: &dyn Store| -> Vec<(String, Option<DateTime<Utc>>)> {
        let stats = store.stats().expect("stats");
        stats
            .handlers
            .into_iter()
            .map(|h| (h.handler, h.oldest_waiting))
            .collect()
    };
    assert_eq!(
        oldest(store),
        [("h.a".into(), Some(at(1))), ("h.b".into(), Some(at(3)))]
    );
    let stats = store.stats().expect("stats");
    assert_eq!(
        stats.handlers[0].lag(at(11)),
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        stats.handlers[1].lag(at(0)),
        std::time::Duration::ZERO,
        "not due yet"
    );

    // h.a's oldest runs and fails: a retry in an hour is its oldest now.
    let claimed = claim(store, "w", at(1));
    assert_eq!(claimed.len(), 1, "only the delivery due at 1 s");
    let retry = Decision::Retry { at: at(3600) };
    finish(store, result(&claimed[0], "w", retry, at(1)), at(1));
    assert_eq!(
        oldest(store),
        [("h.a".into(), Some(at(2))), ("h.b".into(), Some(at(3)))]
    );
    // Everything runs: nothing of either waits.
    let claimed = claim(store, "w", at(4000));
    assert_eq!(claimed.len(), 3);
    assert_eq!(oldest(store), [("h.a".into(), None), ("h.b".into(), None)]);
}
