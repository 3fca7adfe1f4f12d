//! Conformance: fair share between tenants (`sighost::fair`, ARCHITECTURE.md
//! §4 "Fair share"). Claims are planned by the same rule on every store; these
//! tests hold each store to it with pinned time and reported costs.

use std::collections::BTreeMap;

use sighost::fair::{Claim, ClaimOrder, INITIAL_COST_NS, TenantCost};
use sighost::store::{ClaimedDelivery, NewSignal, Store, StoreError};

use super::{LEASE, TestDatabase, at, create_tenant, new_signal, target};

/// `count` signals of `tenant`, each with one delivery to handler `h`.
fn backlog(store: &dyn Store, tenant: &str, count: usize, seconds: i64) {
    let batch: Vec<(NewSignal, _)> = (0..count)
        .map(|_| (new_signal(tenant, "test.backlog"), vec![target("h")]))
        .collect();
    for chunk in batch.chunks(2_000) {
        store.emit(chunk, at(seconds)).expect("emit a backlog");
    }
}

fn claim_fairly(
    store: &dyn Store,
    limit: usize,
    costs: &[TenantCost],
    seconds: i64,
) -> Vec<ClaimedDelivery> {
    let claim = Claim {
        costs,
        ..Claim::new("w", limit, LEASE)
    };
    store.claim_deliveries(&claim, at(seconds)).expect("claim")
}

/// How many of the claimed deliveries each tenant got.
fn per_tenant(claimed: &[ClaimedDelivery]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in claimed {
        *counts.entry(c.delivery.tenant.clone()).or_default() += 1;
    }
    counts
}

fn got(counts: &BTreeMap<String, usize>, tenant: &str) -> usize {
    counts.get(tenant).copied().unwrap_or(0)
}

/// What a host would report for `claimed` of `tenant` if each took `busy_ns`.
fn ran(claimed: &[ClaimedDelivery], tenant: &str, busy_ns: i64) -> TenantCost {
    let mine: Vec<_> = claimed
        .iter()
        .filter(|c| c.delivery.tenant == tenant)
        .collect();
    TenantCost {
        tenant: tenant.to_owned(),
        runs: mine.len() as u64,
        busy_ns: busy_ns * mine.len() as i64,
        charged_ns: mine.iter().map(|c| c.charged_ns).sum(),
    }
}

pub fn claims_a_small_tenants_deliveries_within_its_first_share(store: &dyn Store) {
    create_tenant(store, "big");
    create_tenant(store, "small");
    backlog(store, "big", 10_000, 0);
    backlog(store, "small", 10, 1);
    let claimed = claim_fairly(store, 256, &[], 2);
    let counts = per_tenant(&claimed);
    assert_eq!(
        got(&counts, "small"),
        10,
        "every one of small's, behind 10,000 older ones of big: {counts:?}"
    );
    assert_eq!(got(&counts, "big"), 246, "big takes the rest: {counts:?}");
}

pub fn claims_oldest_first_when_asked_to(store: &dyn Store) {
    create_tenant(store, "big");
    create_tenant(store, "small");
    backlog(store, "big", 300, 0);
    backlog(store, "small", 10, 1);
    let claim = Claim {
        order: ClaimOrder::OldestFirst,
        ..Claim::new("w", 100, LEASE)
    };
    let claimed = store.claim_deliveries(&claim, at(2)).expect("claim");
    assert_eq!(per_tenant(&claimed), BTreeMap::from([("big".into(), 100)]));
}

pub fn shares_claims_by_weight(store: &dyn Store) {
    create_tenant(store, "heavy");
    create_tenant(store, "light");
    assert_eq!(
        store.tenant("light").expect("read").map(|t| t.weight),
        Some(1),
        "weight 1 unless set"
    );
    assert_eq!(store.set_weight("heavy", 3).expect("weight").weight, 3);
    backlog(store, "heavy", 1_000, 0);
    backlog(store, "light", 1_000, 0);
    let counts = per_tenant(&claim_fairly(store, 100, &[], 1));
    assert_eq!(
        (got(&counts, "heavy"), got(&counts, "light")),
        (75, 25),
        "3 : 1"
    );
}

pub fn refuses_a_weight_out_of_bounds_or_for_an_unknown_tenant(store: &dyn Store) {
    create_tenant(store, "acme");
    for weight in [0, sighost::fair::MAX_WEIGHT + 1] {
        assert!(
            matches!(
                store.set_weight("acme", weight),
                Err(StoreError::Invalid(_))
            ),
            "weight {weight}"
        );
    }
    assert!(matches!(
        store.set_weight("nobody", 2),
        Err(StoreError::UnknownTenant(_))
    ));
    assert_eq!(
        store.tenant("acme").expect("read").map(|t| t.weight),
        Some(1)
    );
}

pub fn charges_each_tenant_what_its_deliveries_cost(store: &dyn Store) {
    create_tenant(store, "costly");
    create_tenant(store, "cheap");
    backlog(store, "costly", 1_000, 0);
    backlog(store, "cheap", 1_000, 0);
    let first = claim_fairly(store, 100, &[], 1);
    let counts = per_tenant(&first);
    assert_eq!((got(&counts, "costly"), got(&counts, "cheap")), (50, 50));
    assert!(
        first.iter().all(|c| c.charged_ns == INITIAL_COST_NS),
        "charged the initial estimate in advance"
    );
    // costly's deliveries took 50× what cheap's did.
    let costs = [
        ran(&first, "costly", 50 * INITIAL_COST_NS),
        ran(&first, "cheap", INITIAL_COST_NS),
    ];
    let counts = per_tenant(&claim_fairly(store, 100, &costs, 2));
    assert!(
        got(&counts, "cheap") >= 95,
        "cheap catches up on the worker time costly used: {counts:?}"
    );
}

pub fn lifts_a_tenant_back_from_idle_to_the_clock(store: &dyn Store) {
    const TEN_MS: i64 = 10_000_000;
    create_tenant(store, "busy");
    create_tenant(store, "returning");
    backlog(store, "busy", 2_000, 0);
    backlog(store, "returning", 10, 0);
    // Both have work at first; returning's 10 all go in the first claim.
    let mut previous = claim_fairly(store, 100, &[], 1);
    assert_eq!(got(&per_tenant(&previous), "returning"), 10);
    // Then busy runs alone, 10 ms a delivery, its virtual time seconds
    // ahead of where returning stopped. The last claim is small, so that
    // little of busy's work is in flight when returning comes back.
    for (round, limit) in [100, 100, 100, 100, 100, 1].into_iter().enumerate() {
        let costs = [
            ran(&previous, "busy", TEN_MS),
            ran(&previous, "returning", TEN_MS),
        ];
        previous = claim_fairly(store, limit, &costs, 2 + round as i64);
        assert_eq!(
            per_tenant(&previous),
            BTreeMap::from([("busy".into(), limit)])
        );
    }
    backlog(store, "returning", 1_000, 10);
    let costs = [ran(&previous, "busy", TEN_MS)];
    let counts = per_tenant(&claim_fairly(store, 100, &costs, 11));
    // Kept where it stopped, returning would be owed seconds of worker time
    // and take the whole claim; lifted to the clock, it shares it.
    assert!(
        got(&counts, "busy") >= 5,
        "an idle tenant banks no credit: {counts:?}"
    );
    assert!(got(&counts, "returning") >= 50, "{counts:?}");
}

pub fn shares_one_schedule_between_two_processes(database: &dyn TestDatabase) {
    let (one, two) = (database.open(), database.open());
    create_tenant(&*one, "costly");
    create_tenant(&*one, "cheap");
    backlog(&*one, "costly", 1_000, 0);
    backlog(&*one, "cheap", 1_000, 0);
    let first = claim_fairly(&*one, 100, &[], 1);
    // The other process reports what the first one's deliveries cost, as if
    // it had run them: the schedule is the database's, not a process's.
    let costs = [
        ran(&first, "costly", 50 * INITIAL_COST_NS),
        ran(&first, "cheap", INITIAL_COST_NS),
    ];
    let counts = per_tenant(&claim_fairly(&*two, 100, &costs, 2));
    assert!(got(&counts, "cheap") >= 95, "{counts:?}");
    let counts = per_tenant(&claim_fairly(&*one, 100, &[], 3));
    assert!(
        got(&counts, "cheap") >= 95,
        "the first process sees the charges the second settled: {counts:?}"
    );
}

pub fn claims_a_small_tenants_directive_beside_another_tenants_backlog(store: &dyn Store) {
    create_tenant(store, "big");
    create_tenant(store, "small");
    let backlog = (0..50)
        .map(|i| super::requested("big", &format!("k{i}"), serde_json::json!({ "i": i })))
        .collect();
    super::complete_with(store, "big", backlog, at(0));
    super::complete_with(
        store,
        "small",
        vec![super::requested("small", "k", serde_json::json!({}))],
        at(1),
    );
    // A runner claims one directive at a time; small's comes within the
    // first two claims, not behind big's fifty older ones.
    let mut costs: Vec<TenantCost> = Vec::new();
    let mut tenants = Vec::new();
    for _ in 0..2 {
        let claim = Claim {
            costs: &costs,
            ..Claim::new("r", 1, LEASE)
        };
        let claimed = store.claim_directives(&claim, at(2)).expect("claim");
        assert_eq!(claimed.len(), 1);
        let c = &claimed[0];
        costs = vec![TenantCost {
            tenant: c.directive.tenant.clone(),
            runs: 1,
            busy_ns: c.charged_ns,
            charged_ns: c.charged_ns,
        }];
        tenants.push(c.directive.tenant.clone());
    }
    assert!(tenants.contains(&"small".to_owned()), "{tenants:?}");
    // Oldest first, it would be the 51st.
    let oldest = Claim {
        order: ClaimOrder::OldestFirst,
        ..Claim::new("r", 1, LEASE)
    };
    let next = store.claim_directives(&oldest, at(2)).expect("claim");
    assert_eq!(next[0].directive.tenant, "big");
}

pub fn reports_each_tenants_deliveries_and_recent_worker_time(store: &dyn Store) {
    use sighost::store::{Decision, DeliveryState};
    create_tenant(store, "t1");
    create_tenant(store, "t2");
    backlog(store, "t1", 2, 0);
    backlog(store, "t2", 1, 0);
    let claimed = claim_fairly(store, 10, &[], 1);
    assert_eq!(claimed.len(), 3);
    let mut t1_seen = 0;
    for c in &claimed {
        let (decision, micros) = match (c.delivery.tenant.as_str(), t1_seen) {
            ("t1", 0) => (Decision::Complete(vec![]), 1_000),
            ("t1", _) => (Decision::Retry { at: at(60) }, 3_000),
            _ => (Decision::Complete(vec![]), 500),
        };
        if c.delivery.tenant == "t1" {
            t1_seen += 1;
        }
        let mut result = super::result(c, "w", decision, at(1));
        result.duration = std::time::Duration::from_micros(micros);
        super::finish(store, result, at(1));
    }
    let stats = store.stats().expect("stats");
    let tenants: Vec<_> = stats
        .tenants
        .iter()
        .map(|t| {
            (
                t.tenant.as_str(),
                t.deliveries.clone(),
                t.recent_attempts,
                t.recent_duration_us,
            )
        })
        .collect();
    assert_eq!(
        tenants,
        vec![
            (
                "t1",
                vec![(DeliveryState::Retryable, 1), (DeliveryState::Completed, 1)],
                2,
                4_000
            ),
            ("t2", vec![(DeliveryState::Completed, 1)], 1, 500),
        ]
    );
    let h = &stats.handlers[0];
    assert_eq!(
        (
            h.handler.as_str(),
            h.recent_attempts,
            h.mean_duration_us,
            h.max_duration_us
        ),
        ("h", 3, 1_500, 3_000),
        "4,500 µs over three attempts; the longest 3,000"
    );
}

pub fn keeps_a_tenants_limits_and_refuses_a_zero_cap(store: &dyn Store) {
    use sighost::store::TenantLimits;
    create_tenant(store, "acme");
    assert_eq!(
        store.tenant("acme").expect("read").map(|t| t.limits),
        Some(TenantLimits::default()),
        "no limits unless set"
    );
    let limits = TenantLimits {
        max_running: Some(5),
        max_pending: Some(5_000_000_000),
        max_emit_per_s: Some(100),
    };
    assert_eq!(
        store.set_limits("acme", limits).expect("set").limits,
        limits
    );
    assert_eq!(
        store.tenant("acme").expect("read").map(|t| t.limits),
        Some(limits)
    );
    let zero = TenantLimits {
        max_running: Some(0),
        ..TenantLimits::default()
    };
    assert!(matches!(
        store.set_limits("acme", zero),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_limits("nobody", limits),
        Err(StoreError::UnknownTenant(_))
    ));
    // Replaced whole: an unset field is no limit.
    store
        .set_limits("acme", TenantLimits::default())
        .expect("clear");
    assert_eq!(
        store.tenant("acme").expect("read").map(|t| t.limits),
        Some(TenantLimits::default())
    );
}

pub fn claims_no_more_than_a_tenants_max_running(store: &dyn Store) {
    use sighost::store::{Decision, TenantLimits};
    create_tenant(store, "capped");
    create_tenant(store, "free");
    store
        .set_limits(
            "capped",
            TenantLimits {
                max_running: Some(3),
                ..TenantLimits::default()
            },
        )
        .expect("limits");
    backlog(store, "capped", 100, 0);
    backlog(store, "free", 100, 0);
    let first = claim_fairly(store, 50, &[], 1);
    let counts = per_tenant(&first);
    assert_eq!(
        (got(&counts, "capped"), got(&counts, "free")),
        (3, 47),
        "capped holds 3 at most; free takes the rest"
    );
    let counts = per_tenant(&claim_fairly(store, 50, &[], 2));
    assert_eq!(got(&counts, "capped"), 0, "still holding 3: {counts:?}");
    // One of capped's ends: room for one more.
    let done = first
        .iter()
        .find(|c| c.delivery.tenant == "capped")
        .expect("a capped delivery");
    super::finish(
        store,
        super::result(done, "w", Decision::Complete(vec![]), at(3)),
        at(3),
    );
    let counts = per_tenant(&claim_fairly(store, 50, &[], 4));
    assert_eq!(got(&counts, "capped"), 1, "{counts:?}");
    assert_eq!(
        store.pending_deliveries("capped", 1_000).expect("count"),
        96,
        "100, less the 4 claimed"
    );
    assert_eq!(
        store.pending_deliveries("capped", 10).expect("count"),
        10,
        "counted up to the cap"
    );
}

pub fn runs_no_more_directives_of_a_tenant_than_its_max_running(store: &dyn Store) {
    use sighost::store::TenantLimits;
    create_tenant(store, "capped");
    store
        .set_limits(
            "capped",
            TenantLimits {
                max_running: Some(2),
                ..TenantLimits::default()
            },
        )
        .expect("limits");
    let directives = (0..5)
        .map(|i| super::requested("capped", &format!("k{i}"), serde_json::json!({ "i": i })))
        .collect();
    super::complete_with(store, "capped", directives, at(0));
    let claimed = store
        .claim_directives(&Claim::new("r", 10, LEASE), at(1))
        .expect("claim");
    assert_eq!(claimed.len(), 2, "two at once");
    assert!(
        store
            .claim_directives(&Claim::new("r", 10, LEASE), at(1))
            .expect("claim")
            .is_empty()
    );
}

/// `count` signals of `tenant`, each with a delivery to `capped` and one to `free`.
fn two_handlers(store: &dyn Store, tenant: &str, count: usize) {
    let batch: Vec<(NewSignal, _)> = (0..count)
        .map(|_| {
            (
                new_signal(tenant, "test.capped"),
                vec![target("capped"), target("free")],
            )
        })
        .collect();
    store.emit(&batch, at(0)).expect("emit");
}

fn claim_capped(
    store: &dyn Store,
    worker: &str,
    order: ClaimOrder,
    cap: u32,
    seconds: i64,
) -> BTreeMap<String, usize> {
    let caps = [("capped".to_owned(), cap)];
    let claim = Claim {
        order,
        handler_caps: &caps,
        ..Claim::new(worker, 50, LEASE)
    };
    let mut counts = BTreeMap::new();
    for c in store.claim_deliveries(&claim, at(seconds)).expect("claim") {
        *counts.entry(c.delivery.handler.clone()).or_default() += 1;
    }
    counts
}

pub fn claims_no_more_than_a_handlers_max_running_and_counts_no_attempt_for_the_rest(
    store: &dyn Store,
) {
    use sighost::store::{DeliveryFilter, DeliveryState};
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    two_handlers(store, "acme", 10);
    two_handlers(store, "beta", 10);
    let counts = claim_capped(store, "w", ClaimOrder::Fair, 3, 1);
    assert_eq!(
        (got(&counts, "capped"), got(&counts, "free")),
        (3, 20),
        "capped holds 3 at most, of both tenants; free takes the rest"
    );
    // What the lease took past the cap went back untouched: no attempt.
    let waiting = store
        .deliveries(&DeliveryFilter {
            handler: Some("capped".into()),
            state: Some(DeliveryState::Available),
            ..DeliveryFilter::default()
        })
        .expect("deliveries");
    assert_eq!(waiting.len(), 17);
    assert!(
        waiting
            .iter()
            .all(|d| d.attempt == 0 && d.scheduled_at == at(0)),
        "{waiting:?}"
    );
    let counts = claim_capped(store, "w", ClaimOrder::Fair, 3, 2);
    assert_eq!(got(&counts, "capped"), 0, "still holding 3: {counts:?}");
    // Without the cap (another host's manifest, say), the rest are there.
    let counts = per_handler(&claim_fairly(store, 50, &[], 3));
    assert_eq!(got(&counts, "capped"), 17, "{counts:?}");
}

pub fn caps_a_handler_in_oldest_first_claims_too(store: &dyn Store) {
    create_tenant(store, "acme");
    two_handlers(store, "acme", 10);
    let counts = claim_capped(store, "w", ClaimOrder::OldestFirst, 2, 1);
    assert_eq!(
        (got(&counts, "capped"), got(&counts, "free")),
        (2, 10),
        "{counts:?}"
    );
    let counts = claim_capped(store, "w", ClaimOrder::OldestFirst, 2, 2);
    assert_eq!(got(&counts, "capped"), 0, "{counts:?}");
}

pub fn caps_a_handler_across_two_processes(database: &dyn TestDatabase) {
    let (one, two) = (database.open(), database.open());
    create_tenant(&*one, "acme");
    two_handlers(&*one, "acme", 10);
    let counts = claim_capped(&*one, "w1", ClaimOrder::Fair, 4, 1);
    assert_eq!(got(&counts, "capped"), 4, "{counts:?}");
    let counts = claim_capped(&*two, "w2", ClaimOrder::Fair, 5, 2);
    assert_eq!(
        got(&counts, "capped"),
        1,
        "the other process sees what the first holds: {counts:?}"
    );
}

/// `count` signals of `tenant` at `seconds`, each with one delivery to `handler`.
fn to_handler(store: &dyn Store, tenant: &str, handler: &str, count: usize, seconds: i64) {
    let batch: Vec<(NewSignal, _)> = (0..count)
        .map(|_| (new_signal(tenant, "test.capped"), vec![target(handler)]))
        .collect();
    store.emit(&batch, at(seconds)).expect("emit");
}

pub fn fills_a_claim_past_a_capped_handlers_backlog(store: &dyn Store) {
    // The oldest 30 are the capped handler's; the claim still fills up with
    // the free handler's, behind them.
    create_tenant(store, "acme");
    to_handler(store, "acme", "capped", 30, 0);
    to_handler(store, "acme", "free", 10, 1);
    for order in [ClaimOrder::Fair, ClaimOrder::OldestFirst] {
        let caps = [("capped".to_owned(), 2)];
        let claim = Claim {
            order,
            handler_caps: &caps,
            ..Claim::new("w", 5, LEASE)
        };
        let claimed = store.claim_deliveries(&claim, at(2)).expect("claim");
        let counts = per_handler(&claimed);
        let expected = if order == ClaimOrder::Fair {
            (2, 3)
        } else {
            (0, 5)
        };
        assert_eq!(
            (got(&counts, "capped"), got(&counts, "free")),
            expected,
            "{order:?}: {counts:?}"
        );
    }
}

pub fn shares_a_capped_handlers_room_between_tenants(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    to_handler(store, "acme", "capped", 10, 0);
    to_handler(store, "beta", "capped", 10, 0);
    let caps = [("capped".to_owned(), 2)];
    let claim = Claim {
        handler_caps: &caps,
        ..Claim::new("w", 20, LEASE)
    };
    let claimed = store.claim_deliveries(&claim, at(1)).expect("claim");
    let counts = per_tenant(&claimed);
    assert_eq!(
        (got(&counts, "acme"), got(&counts, "beta")),
        (1, 1),
        "the room is shared, not the first tenant's: {counts:?}"
    );
}

pub fn puts_a_retry_back_as_a_retry(store: &dyn Store) {
    use sighost::store::{Decision, DeliveryFilter, DeliveryState};
    create_tenant(store, "acme");
    to_handler(store, "acme", "capped", 2, 0);
    for claimed in claim_fairly(store, 10, &[], 1) {
        super::finish(
            store,
            super::result(&claimed, "w", Decision::Retry { at: at(2) }, at(1)),
            at(1),
        );
    }
    // Both retries are due; the cap of 1 takes one and puts the other back.
    let caps = [("capped".to_owned(), 1)];
    let claim = Claim {
        handler_caps: &caps,
        ..Claim::new("w", 10, LEASE)
    };
    assert_eq!(
        store.claim_deliveries(&claim, at(3)).expect("claim").len(),
        1
    );
    let back = store
        .deliveries(&DeliveryFilter {
            handler: Some("capped".into()),
            state: Some(DeliveryState::Retryable),
            ..DeliveryFilter::default()
        })
        .expect("deliveries");
    assert_eq!(
        back.len(),
        1,
        "still a retry, with its one attempt behind it"
    );
    assert_eq!(back[0].attempt, 1);
}

/// How many of the claimed deliveries each handler got.
fn per_handler(claimed: &[ClaimedDelivery]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in claimed {
        *counts.entry(c.delivery.handler.clone()).or_default() += 1;
    }
    counts
}
