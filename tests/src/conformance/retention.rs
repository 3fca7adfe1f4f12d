//! Conformance: retention (`sighost::retention`, ARCHITECTURE.md §8). A
//! pass prunes finished work past its state's retention, signals once
//! nothing of theirs is left, and never pending work; a pruned directive's
//! idempotency key still dedupes.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sighost::retention::{self, PassReport, Retention, RetentionPolicy};
use sighost::store::{
    Decision, DeliveryFilter, DeliveryState, DirectiveDecision, DirectiveState, FinishOutcome,
    PruneCursor, PruneKind, PruneRule, SignalFilter, Store, StoreError, TenantScope,
};

use super::*;

fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

/// A pass at `now` with `retention`, without pauses.
fn prune(store: &dyn Store, retention: &Retention, now: DateTime<Utc>) -> PassReport {
    let report = retention::run_pass(store, retention, now, || true, |_, _| {}).expect("prune");
    assert!(!report.skipped && !report.interrupted, "{report:?}");
    report
}

fn deleted(report: &PassReport, kind: PruneKind) -> u64 {
    report.deleted.get(&kind.name()).copied().unwrap_or(0)
}

/// `count` signals of "acme", each with one delivery, emitted at `at(seconds)`
/// and finished then as `decision`.
fn finished_work(store: &dyn Store, count: usize, seconds: i64, decision: Decision) {
    for _ in 0..count {
        emit(
            store,
            new_signal("acme", "test.happened"),
            vec![target("h")],
            at(seconds),
        );
    }
    run_due(store, at(seconds), |_| Some(decision.clone()));
}

/// Runs every due directive to `decision`.
fn run_directives(store: &dyn Store, decision: DirectiveDecision, now: DateTime<Utc>) {
    for d in claim_directives(store, "r", now) {
        assert!(
            store
                .finish_directive(&d.id, d.attempt, "r", &decision, now)
                .expect("finish directive"),
            "lease held"
        );
    }
}

/// One more delivery, newer than the others: the newest is kept whatever
/// its state (see `never_gives_the_id_of_a_pruned_delivery_again`).
fn a_newer_delivery(store: &dyn Store) {
    emit(
        store,
        new_signal("ops", "test.later"),
        vec![target("h.later")],
        at(1000),
    );
}

pub fn prunes_finished_deliveries_past_their_retention_and_never_pending_work(store: &dyn Store) {
    let by_state = deliveries_in_every_state(store);
    a_newer_delivery(store);
    let retention = Retention::default();
    let early = prune(store, &retention, at(1) + hours(23));
    assert_eq!(early.total(), 0, "nothing is past its retention: {early:?}");

    // A day on, completed and canceled go; discarded stays its 7 days.
    let day = prune(store, &retention, at(1) + hours(25));
    assert_eq!(
        deleted(&day, PruneKind::Deliveries(DeliveryState::Completed)),
        1
    );
    assert_eq!(
        deleted(&day, PruneKind::Deliveries(DeliveryState::Canceled)),
        1
    );
    assert_eq!(day.total(), 2, "{day:?}");
    let week = prune(store, &retention, at(1) + hours(7 * 24 + 1));
    assert_eq!(week.total(), 1, "the discarded one: {week:?}");

    let left: std::collections::HashSet<DeliveryState> =
        all_deliveries(store).iter().map(|d| d.state).collect();
    let pending = std::collections::HashSet::from([
        DeliveryState::Available,
        DeliveryState::Running,
        DeliveryState::Retryable,
    ]);
    assert_eq!(left, pending, "pending work is never pruned, however old");
    for state in PruneKind::FINISHED_DELIVERIES {
        let id = by_state[&state].id;
        assert!(
            store.attempts(id).expect("attempts").is_empty(),
            "the attempts of the {state:?} delivery went with it"
        );
    }
    assert!(
        !store
            .attempts(by_state[&DeliveryState::Retryable].id)
            .expect("attempts")
            .is_empty(),
        "a pending delivery keeps its attempts"
    );
    assert_eq!(
        all_signals(store).len(),
        2,
        "the signal stays while its pending deliveries do"
    );
}

pub fn never_gives_the_id_of_a_pruned_delivery_again(store: &dyn Store) {
    create_tenant(store, "acme");
    finished_work(store, 3, 0, Decision::Complete(Vec::new()));
    let before: Vec<i64> = all_deliveries(store).iter().map(|d| d.id).collect();
    let report = prune(store, &Retention::default(), at(0) + hours(25));
    assert_eq!(
        deleted(&report, PruneKind::Deliveries(DeliveryState::Completed)),
        2,
        "all but the newest"
    );
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0) + hours(26),
    );
    let newest = all_deliveries(store).iter().map(|d| d.id).max();
    let highest_before = before.iter().copied().max();
    assert!(newest > highest_before, "{newest:?} after {before:?}");
    let report = prune(store, &Retention::default(), at(0) + hours(26));
    assert_eq!(
        deleted(&report, PruneKind::Deliveries(DeliveryState::Completed)),
        1,
        "the one kept as the newest goes once a newer one exists"
    );
    assert_eq!(all_deliveries(store).len(), 1, "the new one, pending");
}

pub fn keeps_a_signal_while_anything_of_its_is_left_then_prunes_it(store: &dyn Store) {
    create_tenant(store, "acme");
    let now = at(0);
    let emitted = emit(store, deduped("acme", "order-1"), vec![target("h")], now);
    let claimed = claim_one(store, "w", now);
    // A newer delivery, left pending: the newest is never pruned.
    emit(
        store,
        new_signal("acme", "test.later"),
        vec![target("h")],
        now + hours(1),
    );
    let directives = vec![requested("acme", "mail-1", json!({"to": "a"}))];
    finish(
        store,
        result(&claimed, "w", Decision::Complete(directives), now),
        now,
    );
    let retention = Retention::default();

    // The delivery goes; its directive has not run, so the signal stays.
    let report = prune(store, &retention, now + hours(25));
    assert_eq!(
        deleted(&report, PruneKind::Deliveries(DeliveryState::Completed)),
        1
    );
    assert_eq!(deleted(&report, PruneKind::Signals), 0, "{report:?}");
    assert_eq!(
        all_signals(store).len(),
        2,
        "this one, and the pending one's"
    );
    let again = emit(
        store,
        deduped("acme", "order-1"),
        vec![target("h")],
        now + hours(25),
    );
    assert_eq!(
        again.status,
        EmitStatus::Existing,
        "its dedupe key still holds"
    );

    // Once the directive ran and its day passed, the signal goes too, in the
    // same pass: work first, then what it held.
    run_directives(
        store,
        DirectiveDecision::Succeeded(json!({})),
        now + hours(26),
    );
    let report = prune(store, &retention, now + hours(51));
    assert_eq!(
        deleted(&report, PruneKind::Directives(DirectiveState::Succeeded)),
        1
    );
    assert_eq!(deleted(&report, PruneKind::Signals), 1, "{report:?}");
    assert_eq!(all_signals(store).len(), 1, "the pending one's");
    assert!(all_directives(store).is_empty());

    let replay = store.replay(
        &[(emitted.signal.id.clone(), vec![target("h")])],
        now + hours(52),
    );
    assert!(
        matches!(replay, Err(StoreError::NotFound { kind: "signal", .. })),
        "a pruned signal cannot be replayed: {replay:?}"
    );
    let fresh = emit(
        store,
        deduped("acme", "order-1"),
        vec![target("h")],
        now + hours(52),
    );
    assert_eq!(
        fresh.status,
        EmitStatus::Created,
        "the dedupe window is the signal's life"
    );
}

pub fn keeps_a_pruned_directives_key_so_a_repeat_is_a_duplicate_or_a_conflict(store: &dyn Store) {
    create_tenant(store, "acme");
    let now = at(0);
    let payload = json!({"to": "a", "n": 1});
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", payload.clone())],
        now,
    );
    run_directives(store, DirectiveDecision::Succeeded(json!({})), now);
    let retention = Retention::default();
    let report = prune(store, &retention, now + hours(25));
    assert_eq!(
        deleted(&report, PruneKind::Directives(DirectiveState::Succeeded)),
        1
    );
    assert!(all_directives(store).is_empty());

    // A late retry or a replay asks for the key again: no second side effect.
    let later = now + hours(26);
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        later,
    );
    let claimed = claim_one(store, "w", later);
    let same = vec![requested("acme", "k", json!({"n": 1, "to": "a"}))];
    let outcome = finish(
        store,
        result(&claimed, "w", Decision::Complete(same), later),
        later,
    );
    assert_eq!(
        outcome,
        FinishOutcome::Completed {
            directives_created: 0,
            duplicates: 1
        }
    );
    assert!(
        all_directives(store).is_empty(),
        "nothing was written again"
    );

    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        later,
    );
    let claimed = claim_one(store, "w", later);
    let other = vec![requested("acme", "k", json!({"to": "b", "n": 1}))];
    let outcome = finish(
        store,
        result(&claimed, "w", Decision::Complete(other), later),
        later,
    );
    assert_eq!(outcome, FinishOutcome::Conflict { key: "k".into() });

    // Past `directive_keys`, the key is free again.
    let free = now + hours(25 + 7 * 24 + 1);
    let report = prune(store, &retention, free);
    assert_eq!(deleted(&report, PruneKind::DirectiveKeys), 1, "{report:?}");
    let delivery = complete_with(store, "acme", vec![requested("acme", "k", payload)], free);
    assert_eq!(delivery.state, DeliveryState::Completed);
    assert_eq!(
        directive_by_key(store, "acme", "k").state,
        DirectiveState::Requested
    );
}

pub fn prunes_a_tenants_work_by_its_own_retention(store: &dyn Store) {
    // The small tenant's first: the newest delivery is never pruned.
    for tenant in ["small", "big"] {
        create_tenant(store, tenant);
        emit(
            store,
            new_signal(tenant, "test.happened"),
            vec![target("h")],
            at(0),
        );
    }
    run_due(store, at(0), |_| Some(Decision::Complete(Vec::new())));
    let mut retention = Retention::default();
    retention.tenants.insert(
        "small".into(),
        RetentionPolicy {
            completed: std::time::Duration::from_secs(3600),
            signals: std::time::Duration::from_secs(3600),
            ..RetentionPolicy::default()
        },
    );
    let report = prune(store, &retention, at(0) + hours(2));
    assert_eq!(
        deleted(&report, PruneKind::Deliveries(DeliveryState::Completed)),
        1
    );
    assert_eq!(deleted(&report, PruneKind::Signals), 1);
    let tenants: Vec<String> = all_deliveries(store)
        .into_iter()
        .map(|d| d.tenant)
        .collect();
    assert_eq!(tenants, ["big"], "only the small tenant's hour passed");
    let signals: Vec<String> = all_signals(store).into_iter().map(|s| s.tenant).collect();
    assert_eq!(signals, ["big"]);
}

pub fn prunes_in_batches_walking_past_the_rows_it_keeps(store: &dyn Store) {
    create_tenant(store, "acme");
    // Old signals still held by a discarded delivery (7 days), then many
    // that nothing holds: a pass walks past the first to reach the rest.
    finished_work(store, 5, 0, Decision::Discard);
    finished_work(store, 23, 10, Decision::Complete(Vec::new()));
    let retention = Retention {
        batch_size: 4,
        ..Retention::default()
    };
    let now = at(10) + hours(25);
    let counted = retention::dry_run(store, &retention, now).expect("dry run");
    // All but the newest delivery, which stays until a newer one exists.
    assert_eq!(
        counted[&PruneKind::Deliveries(DeliveryState::Completed).name()],
        22
    );
    assert_eq!(
        counted[&PruneKind::Deliveries(DeliveryState::Discarded).name()],
        0
    );
    let mut batches = 0;
    let report = retention::run_pass(
        store,
        &retention,
        now,
        || {
            batches += 1;
            true
        },
        |_, _| {},
    )
    .expect("prune");
    assert_eq!(
        deleted(&report, PruneKind::Deliveries(DeliveryState::Completed)),
        22
    );
    assert_eq!(deleted(&report, PruneKind::Signals), 22, "{report:?}");
    assert!(
        batches >= 2 * (22 / 4),
        "batches of 4 rows: {batches} pauses"
    );
    assert_eq!(all_signals(store).len(), 6, "the held ones stay");
    assert_eq!(all_deliveries(store).len(), 6);

    // One batch looks at no more rows than asked, and says where to go on.
    let rule = PruneRule {
        kind: PruneKind::Signals,
        older_than: now,
        tenants: TenantScope::Only("acme".into()),
    };
    let batch = store
        .prune_batch(&rule, PruneCursor::START, 2, now)
        .expect("batch")
        .expect("the turn");
    assert_eq!((batch.examined, batch.deleted), (2, 0), "both held");
    let next = store
        .prune_batch(&rule, batch.next, 10, now)
        .expect("batch")
        .expect("the turn");
    assert_eq!(next.examined, 4, "the other four, not the first two again");
}

pub fn counts_what_a_pass_would_prune_without_deleting(store: &dyn Store) {
    deliveries_in_every_state(store);
    a_newer_delivery(store);
    let retention = Retention::default();
    let now = at(1) + hours(8 * 24);
    let counted = retention::dry_run(store, &retention, now).expect("dry run");
    for state in PruneKind::FINISHED_DELIVERIES {
        assert_eq!(
            counted[&PruneKind::Deliveries(state).name()],
            1,
            "{state:?}"
        );
    }
    assert_eq!(
        counted[&PruneKind::Signals.name()],
        0,
        "held by pending work"
    );
    assert_eq!(
        all_deliveries(store).len(),
        DeliveryState::ALL.len() + 1,
        "nothing deleted"
    );
    let report = prune(store, &retention, now);
    assert_eq!(report.total(), 3);
    let signals = store
        .signals(&SignalFilter::default())
        .expect("signals")
        .len();
    assert_eq!(signals, 2);
    let pending = store
        .deliveries(&DeliveryFilter::default())
        .expect("deliveries")
        .len();
    assert_eq!(pending, 4);
}

pub fn levels_off_over_simulated_days_and_never_prunes_pending_work(store: &dyn Store) {
    const PER_DAY: u64 = 400;
    crate::soak::prepare(store);
    let retention = Retention::default();
    let days: Vec<crate::soak::SoakDay> = (0..10)
        .map(|day| crate::soak::run_day(store, &retention, day, PER_DAY))
        .collect();
    let retried: u64 = days.iter().map(|d| d.retried).sum();
    let last = &days[9];
    assert!(retried > 0);
    assert_eq!(
        last.pending, retried,
        "every pending delivery is still there"
    );
    // Once the longest retention (7 days) has passed, what is kept levels
    // off: a day's completed work, a week of discarded and failed.
    let kept = |d: &crate::soak::SoakDay| (d.deliveries - d.pending, d.directives);
    let (deliveries, directives) = kept(last);
    let (before, directives_before) = kept(&days[8]);
    assert!(deliveries.abs_diff(before) <= PER_DAY / 50, "{days:#?}");
    assert!(
        directives.abs_diff(directives_before) <= PER_DAY / 20,
        "{days:#?}"
    );
    assert!(
        deliveries <= PER_DAY + 8 * PER_DAY / 50 + 1,
        "a day's deliveries and a week of discards: {days:#?}"
    );
    assert!(last.pruned.total() > PER_DAY, "{:?}", last.pruned);
}
