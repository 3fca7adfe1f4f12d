//! One conformance suite for the store contract (`sighost::store::Store`, ARCHITECTURE.md §8),
//! run against every implementation, as River does for its drivers.
//!
//! Each test is a plain function taking `&dyn Store` (or a [`TestDatabase`]
//! when it needs two handles on one database, as two host processes would
//! have); [`store_conformance_tests!`](crate::store_conformance_tests) stamps
//! out one `#[test]` per function for an implementation:
//!
//! ```ignore
//! sighost_tests::store_conformance_tests!(SqliteDatabase::fresh());
//! ```
//!
//! The expression is evaluated once per test and must yield a fresh, empty
//! database that implements [`TestDatabase`].
//!
//! Time is a parameter of every store method: the tests pin it with [`at`]
//! and never sleep. They hold an implementation only to what the contract
//! (the `Store` docs and ARCHITECTURE.md) says; where it is silent about order or
//! boundaries, they compare sets and stay off the boundary.

use sighost::fair::Claim;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sighost::sandbox::RequestedDirective;
use sighost::signal::EntityRef;
use sighost::store::{
    AttemptDetails, AttemptOutcome, ClaimedDelivery, Decision, Delivery, DeliveryFilter,
    DeliveryResult, DeliveryState, DeliveryTarget, Directive, DirectiveDecision, DirectiveFilter,
    DirectiveState, EmitStatus, Emitted, FinishOutcome, NewSignal, SignalFilter, Store, StoreError,
};

mod counts;
mod fair_share;
mod handler_registry;
mod retention;
pub use counts::*;
pub use fair_share::*;
pub use handler_registry::*;
pub use retention::*;

/// A database under test. Opening it twice gives two independent handles on
/// the same data, like two host processes.
pub trait TestDatabase {
    fn open(&self) -> Arc<dyn Store>;
}

/// Stamps out one `#[test]` per conformance test. `$database` is evaluated
/// in every test and must give a fresh, empty [`TestDatabase`](crate::conformance::TestDatabase).
#[macro_export]
macro_rules! store_conformance_tests {
    ($database:expr) => {
        $crate::store_conformance_tests!(@store $database;
            creates_a_tenant_and_reads_back_its_settings_and_packages,
            refuses_to_create_a_tenant_twice,
            refuses_tenant_settings_that_are_not_an_object_or_carry_a_secret,
            refuses_an_invalid_tenant_id,
            refuses_changes_to_an_unknown_tenant,
            records_a_handler_version_more_than_once,
            emits_a_signal_with_one_delivery_per_matching_target,
            skips_targets_whose_package_the_tenant_has_not_installed,
            refuses_a_signal_of_an_unknown_tenant_and_stores_nothing,
            stores_nothing_of_a_batch_whose_second_signal_has_an_unknown_tenant,
            returns_the_existing_signal_when_a_tenant_reuses_a_dedupe_key,
            dedupes_a_key_used_twice_in_one_batch,
            counts_causation_depth_from_the_causing_signal,
            treats_a_cause_of_another_tenant_exactly_like_an_unknown_one,
            claims_only_due_deliveries_up_to_the_limit,
            hands_each_claimed_delivery_its_own_tenants_settings_and_packages,
            does_not_claim_a_delivery_again_while_its_lease_holds,
            reclaims_a_delivery_whose_lease_expired_and_records_the_lost_attempt,
            keeps_a_delivery_whose_holder_extends_its_lease,
            keeps_a_directive_whose_runner_extends_its_lease,
            discards_a_delivery_whose_last_attempt_lost_its_lease,
            completes_a_delivery_and_writes_its_directives_with_the_deliverys_tenant,
            gives_directives_the_causation_depth_of_their_signal,
            retries_a_delivery_at_the_time_the_worker_chose,
            discards_a_delivery_and_keeps_its_error,
            snoozes_a_delivery_without_counting_the_attempt,
            resumes_the_snoozed_deliveries_of_a_handler_loaded_again,
            reports_each_handlers_deliveries_durations_and_recent_failures,
            drops_a_result_with_a_stale_attempt_and_changes_nothing,
            drops_a_result_from_another_worker_and_changes_nothing,
            drops_a_second_result_for_a_finished_delivery,
            counts_a_repeated_idempotency_key_with_the_same_payload_as_a_duplicate,
            discards_a_delivery_whose_directive_conflicts_and_writes_none_of_its_directives,
            treats_the_same_key_with_another_directive_name_as_a_conflict,
            retries_discarded_and_canceled_deliveries_with_a_fresh_attempt_budget,
            cancels_only_deliveries_that_are_not_running_or_finished,
            replays_signals_to_the_targets_the_tenant_has_installed,
            refuses_to_replay_an_unknown_signal_and_writes_nothing,
            claims_only_due_requested_directives_up_to_the_limit,
            fences_a_directive_result_by_attempt_and_worker,
            never_claims_a_succeeded_directive_again,
            brings_a_retried_directive_back_at_its_time_with_the_next_attempt,
            keeps_a_failed_directive_failed,
            cancels_only_requested_directives,
            reclaims_a_directive_whose_lease_expired,
            lists_signals_by_tenant_ids_name_time_range_and_limit,
            lists_deliveries_by_state_tenant_handler_signal_and_ids,
            lists_directives_by_tenant_state_name_and_signal,
            counts_deliveries_and_directives_by_state,
        );
        $crate::store_conformance_tests!(@store $database;
            claims_a_small_tenants_deliveries_within_its_first_share,
            claims_oldest_first_when_asked_to,
            shares_claims_by_weight,
            refuses_a_weight_out_of_bounds_or_for_an_unknown_tenant,
            charges_each_tenant_what_its_deliveries_cost,
            lifts_a_tenant_back_from_idle_to_the_clock,
            claims_a_small_tenants_directive_beside_another_tenants_backlog,
            reports_each_tenants_deliveries_and_recent_worker_time,
            keeps_a_tenants_limits_and_refuses_a_zero_cap,
            claims_no_more_than_a_tenants_max_running,
            runs_no_more_directives_of_a_tenant_than_its_max_running,
            claims_no_more_than_a_handlers_max_running_and_counts_no_attempt_for_the_rest,
            caps_a_handler_in_oldest_first_claims_too,
            fills_a_claim_past_a_capped_handlers_backlog,
            shares_a_capped_handlers_room_between_tenants,
            puts_a_retry_back_as_a_retry,
        );
        $crate::store_conformance_tests!(@store $database;
            keeps_each_hosts_registrations_and_replaces_only_its_own,
            refuses_to_register_for_another_host,
            forgets_a_handler_on_every_host_when_an_operator_removes_it,
            registers_the_same_handlers_twice_without_a_conflict,
        );
        $crate::store_conformance_tests!(@store $database;
            prunes_finished_deliveries_past_their_retention_and_never_pending_work,
            keeps_a_signal_while_anything_of_its_is_left_then_prunes_it,
            keeps_a_pruned_directives_key_so_a_repeat_is_a_duplicate_or_a_conflict,
            prunes_a_tenants_work_by_its_own_retention,
            prunes_in_batches_walking_past_the_rows_it_keeps,
            counts_what_a_pass_would_prune_without_deleting,
            never_gives_the_id_of_a_pruned_delivery_again,
            levels_off_over_simulated_days_and_never_prunes_pending_work,
            keeps_its_counts_right_through_every_change,
            reads_each_handlers_oldest_waiting_delivery,
        );
        $crate::store_conformance_tests!(@database $database;
            emits_one_signal_per_dedupe_key_when_two_processes_race,
            shares_one_schedule_between_two_processes,
            caps_a_handler_across_two_processes,
            shows_registrations_to_another_process,
        );
    };
    (@store $database:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let database = $database;
                $crate::conformance::$name(&*$crate::conformance::TestDatabase::open(&database));
            }
        )*
    };
    (@database $database:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let database = $database;
                $crate::conformance::$name(&database);
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Helpers.

/// How long the tests' claims hold; the tests step past it to expire them.
const LEASE: Duration = Duration::from_secs(60);
const LEASE_SECONDS: i64 = 60;

/// The tests' clock: `seconds` after a fixed instant.
pub fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000, 0).expect("a valid instant")
        + TimeDelta::seconds(seconds)
}

fn create_tenant(store: &dyn Store, id: &str) {
    store
        .create_tenant(id, json!({"region": "eu"}), at(0))
        .unwrap_or_else(|e| panic!("create tenant {id}: {e}"));
}

fn install(store: &dyn Store, tenant: &str, package: &str) {
    store
        .install_package(tenant, package)
        .unwrap_or_else(|e| panic!("install {package} for {tenant}: {e}"));
}

fn new_signal(tenant: &str, name: &str) -> NewSignal {
    NewSignal {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        payload: json!({"n": 1}),
        ..NewSignal::default()
    }
}

fn deduped(tenant: &str, key: &str) -> NewSignal {
    NewSignal {
        dedupe_key: Some(key.to_owned()),
        ..new_signal(tenant, "test.deduped")
    }
}

fn target(handler: &str) -> DeliveryTarget {
    DeliveryTarget {
        handler: handler.to_owned(),
        package: None,
        max_attempts: 10,
    }
}

fn packaged(handler: &str, package: &str) -> DeliveryTarget {
    DeliveryTarget {
        package: Some(package.to_owned()),
        ..target(handler)
    }
}

fn emit(
    store: &dyn Store,
    signal: NewSignal,
    targets: Vec<DeliveryTarget>,
    now: DateTime<Utc>,
) -> Emitted {
    let mut emitted = store.emit(&[(signal, targets)], now).expect("emit");
    assert_eq!(emitted.len(), 1, "one result per signal");
    emitted.remove(0)
}

fn claim(store: &dyn Store, worker: &str, now: DateTime<Utc>) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(&Claim::new(worker, 100, LEASE), now)
        .expect("claim deliveries")
}

fn claim_one(store: &dyn Store, worker: &str, now: DateTime<Utc>) -> ClaimedDelivery {
    let mut claimed = claim(store, worker, now);
    assert_eq!(
        claimed.len(),
        1,
        "expected one due delivery, claimed {claimed:?}"
    );
    claimed.remove(0)
}

/// A result as the worker reports it, with plausible measurements.
pub fn result(
    claimed: &ClaimedDelivery,
    worker: &str,
    decision: Decision,
    now: DateTime<Utc>,
) -> DeliveryResult {
    let (outcome, error) = match &decision {
        Decision::Complete(_) => (AttemptOutcome::Ok, None),
        Decision::Retry { .. } => (
            AttemptOutcome::Transient,
            Some("transient: upstream busy".to_owned()),
        ),
        Decision::Discard => (
            AttemptOutcome::Permanent,
            Some("permanent: bad input".to_owned()),
        ),
        Decision::Snooze { .. } => (AttemptOutcome::Released, None),
    };
    let directive_count = match &decision {
        Decision::Complete(directives) => directives.len() as u32,
        _ => 0,
    };
    DeliveryResult {
        delivery_id: claimed.delivery.id,
        handler: claimed.delivery.handler.clone(),
        tenant: claimed.delivery.tenant.clone(),
        attempt: claimed.delivery.attempt,
        worker: worker.to_owned(),
        decision,
        handler_digest: "sha256:0123abcd".to_owned(),
        outcome,
        error,
        started_at: now,
        duration: Duration::from_micros(1500),
        fuel: Some(4321),
        directive_count,
        output: "ran\n".to_owned(),
        details: AttemptDetails::default(),
    }
}

fn finish(store: &dyn Store, result: DeliveryResult, now: DateTime<Utc>) -> FinishOutcome {
    let mut outcomes = store
        .finish_deliveries(&[result], now)
        .expect("finish deliveries");
    assert_eq!(outcomes.len(), 1, "one outcome per result");
    outcomes.remove(0)
}

/// Claims everything due as worker "w" and finishes each delivery with what
/// `decide` says; `None` leaves it running.
fn run_due(
    store: &dyn Store,
    now: DateTime<Utc>,
    decide: impl Fn(&ClaimedDelivery) -> Option<Decision>,
) -> Vec<(ClaimedDelivery, Option<FinishOutcome>)> {
    claim(store, "w", now)
        .into_iter()
        .map(|claimed| {
            let outcome = decide(&claimed)
                .map(|decision| finish(store, result(&claimed, "w", decision, now), now));
            (claimed, outcome)
        })
        .collect()
}

fn delivery(store: &dyn Store, id: i64) -> Delivery {
    let mut found = store
        .deliveries(&DeliveryFilter {
            ids: vec![id],
            ..DeliveryFilter::default()
        })
        .expect("list deliveries");
    assert_eq!(found.len(), 1, "delivery {id}");
    found.remove(0)
}

fn all_deliveries(store: &dyn Store) -> Vec<Delivery> {
    store
        .deliveries(&DeliveryFilter::default())
        .expect("list deliveries")
}

fn all_signals(store: &dyn Store) -> Vec<sighost::Signal> {
    store
        .signals(&SignalFilter::default())
        .expect("list signals")
}

fn all_directives(store: &dyn Store) -> Vec<Directive> {
    store
        .directives(&DirectiveFilter::default())
        .expect("list directives")
}

fn directive_by_key(store: &dyn Store, tenant: &str, key: &str) -> Directive {
    let found: Vec<Directive> = store
        .directives(&DirectiveFilter {
            tenant: Some(tenant.to_owned()),
            ..DirectiveFilter::default()
        })
        .expect("list directives")
        .into_iter()
        .filter(|d| d.idempotency_key == key)
        .collect();
    assert_eq!(found.len(), 1, "directive {key} of {tenant}: {found:?}");
    found.into_iter().next().expect("one directive")
}

/// A directive as the sandbox accepts it, with a fresh id.
pub fn requested(tenant: &str, key: &str, payload: Value) -> RequestedDirective {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    RequestedDirective {
        id: format!("dir_{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        tenant: tenant.to_owned(),
        name: "mail.send".to_owned(),
        payload,
        idempotency_key: key.to_owned(),
        scheduled_at: None,
    }
}

/// Emits a signal of `tenant`, claims its one delivery and completes it with
/// `directives` at `now`. Returns the delivery.
fn complete_with(
    store: &dyn Store,
    tenant: &str,
    directives: Vec<RequestedDirective>,
    now: DateTime<Utc>,
) -> Delivery {
    emit(
        store,
        new_signal(tenant, "test.happened"),
        vec![target("h.directives")],
        now,
    );
    let claimed = claim_one(store, "w", now);
    let outcome = finish(
        store,
        result(&claimed, "w", Decision::Complete(directives), now),
        now,
    );
    assert!(
        matches!(outcome, FinishOutcome::Completed { .. }),
        "{outcome:?}"
    );
    delivery(store, claimed.delivery.id)
}

fn claim_directives(store: &dyn Store, worker: &str, now: DateTime<Utc>) -> Vec<Directive> {
    store
        .claim_directives(&Claim::new(worker, 100, LEASE), now)
        .expect("claim directives")
        .into_iter()
        .map(|claimed| claimed.directive)
        .collect()
}

fn claim_one_directive(store: &dyn Store, worker: &str, now: DateTime<Utc>) -> Directive {
    let mut claimed = claim_directives(store, worker, now);
    assert_eq!(
        claimed.len(),
        1,
        "expected one due directive, claimed {claimed:?}"
    );
    claimed.remove(0)
}

fn directive(store: &dyn Store, id: &str) -> Directive {
    let mut found = store
        .directives(&DirectiveFilter {
            ids: vec![id.to_owned()],
            ..DirectiveFilter::default()
        })
        .expect("list directives");
    assert_eq!(found.len(), 1, "directive {id}");
    found.remove(0)
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> String) -> BTreeSet<String> {
    items.iter().map(id).collect()
}

fn signal_ids(signals: &[sighost::Signal]) -> BTreeSet<String> {
    ids(signals, |s| s.id.clone())
}

/// One delivery in each state, of one signal of a new tenant "ops", each
/// with the handler named after its state (`h.available`, ...). The running
/// one is held by worker "w" until `at(1 + LEASE_SECONDS)`; the retryable one
/// is due at `at(1000)`. Nothing else may be due at `at(1)`.
fn deliveries_in_every_state(store: &dyn Store) -> HashMap<DeliveryState, Delivery> {
    create_tenant(store, "ops");
    let targets = DeliveryState::ALL
        .iter()
        .map(|s| target(&format!("h.{}", s.as_str())))
        .collect();
    emit(store, new_signal("ops", "test.happened"), targets, at(0));
    let finished = run_due(store, at(1), |claimed| {
        match claimed.delivery.handler.as_str() {
            "h.running" => None,
            "h.retryable" => Some(Decision::Retry { at: at(1000) }),
            "h.completed" => Some(Decision::Complete(Vec::new())),
            "h.discarded" => Some(Decision::Discard),
            _ => Some(Decision::Snooze { at: at(1) }),
        }
    });
    assert_eq!(finished.len(), DeliveryState::ALL.len());
    let canceled = store
        .cancel_deliveries(
            &DeliveryFilter {
                handler: Some("h.canceled".into()),
                ..DeliveryFilter::default()
            },
            at(1),
        )
        .expect("cancel");
    assert_eq!(canceled, 1);
    let of_ops = DeliveryFilter {
        tenant: Some("ops".into()),
        ..DeliveryFilter::default()
    };
    let by_state: HashMap<DeliveryState, Delivery> = store
        .deliveries(&of_ops)
        .expect("list")
        .into_iter()
        .map(|d| (d.state, d))
        .collect();
    for state in DeliveryState::ALL {
        assert_eq!(by_state[&state].handler, format!("h.{}", state.as_str()));
    }
    by_state
}

// ---------------------------------------------------------------------------
// Tenants.

pub fn creates_a_tenant_and_reads_back_its_settings_and_packages(store: &dyn Store) {
    let created = store
        .create_tenant(
            "org_acme",
            json!({"region": "eu", "limits": {"seats": 5}}),
            at(0),
        )
        .expect("create");
    assert_eq!(created.id, "org_acme");
    assert_eq!(
        created.settings,
        json!({"region": "eu", "limits": {"seats": 5}})
    );
    assert!(created.packages.is_empty());
    assert_eq!(created.created_at, at(0));
    assert_eq!(
        store.tenant("org_acme").expect("read"),
        Some(created.clone())
    );
    assert_eq!(store.tenant("org_other").expect("read"), None);

    assert_eq!(install_and_read(store, "forum"), ["forum"]);
    assert_eq!(
        install_and_read(store, "billing"),
        ["billing", "forum"],
        "packages are sorted"
    );
    assert_eq!(
        install_and_read(store, "forum"),
        ["billing", "forum"],
        "installing twice is harmless"
    );
    let tenant = store
        .uninstall_package("org_acme", "forum")
        .expect("uninstall");
    assert_eq!(tenant.packages, ["billing"]);

    let tenant = store
        .set_settings("org_acme", json!({"region": "us"}))
        .expect("set settings");
    assert_eq!(tenant.settings, json!({"region": "us"}));
    let read = store.tenant("org_acme").expect("read").expect("exists");
    assert_eq!(read.settings, json!({"region": "us"}));
    assert_eq!(read.packages, ["billing"]);
    assert_eq!(read.created_at, at(0));

    store
        .create_tenant("org_beta", json!({}), at(1))
        .expect("create");
    let listed: Vec<String> = store
        .tenants()
        .expect("tenants")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["org_acme".into(), "org_beta".into()])
    );

    fn install_and_read(store: &dyn Store, package: &str) -> Vec<String> {
        let returned = store
            .install_package("org_acme", package)
            .expect("install")
            .packages;
        let read = store
            .tenant("org_acme")
            .expect("read")
            .expect("exists")
            .packages;
        assert_eq!(returned, read);
        read
    }
}

pub fn refuses_to_create_a_tenant_twice(store: &dyn Store) {
    store
        .create_tenant("acme", json!({"plan": "pro"}), at(0))
        .expect("create");
    let again = store.create_tenant("acme", json!({"plan": "free"}), at(1));
    assert!(
        matches!(&again, Err(StoreError::TenantExists(id)) if id == "acme"),
        "{again:?}"
    );
    let tenant = store.tenant("acme").expect("read").expect("exists");
    assert_eq!(
        tenant.settings,
        json!({"plan": "pro"}),
        "the first one is untouched"
    );
    assert_eq!(tenant.created_at, at(0));
}

pub fn refuses_tenant_settings_that_are_not_an_object_or_carry_a_secret(store: &dyn Store) {
    for settings in [
        json!([1, 2]),
        json!("eu"),
        json!(null),
        json!({"api_key": "x"}),
        json!({"smtp": {"password": "x"}}),
    ] {
        let created = store.create_tenant("acme", settings.clone(), at(0));
        assert!(
            matches!(created, Err(StoreError::Invalid(_))),
            "{settings}: {created:?}"
        );
    }
    assert_eq!(
        store.tenant("acme").expect("read"),
        None,
        "nothing was created"
    );

    create_tenant(store, "acme");
    let set = store.set_settings("acme", json!({"api_key": "x"}));
    assert!(matches!(set, Err(StoreError::Invalid(_))), "{set:?}");
    let set = store.set_settings("acme", json!(["eu"]));
    assert!(matches!(set, Err(StoreError::Invalid(_))), "{set:?}");
    assert_eq!(
        store
            .tenant("acme")
            .expect("read")
            .expect("exists")
            .settings,
        json!({"region": "eu"})
    );
}

pub fn refuses_an_invalid_tenant_id(store: &dyn Store) {
    let too_long = "a".repeat(129);
    for id in [
        "",
        "has space",
        "a/b",
        "ünï",
        "semi;colon",
        too_long.as_str(),
    ] {
        let created = store.create_tenant(id, json!({}), at(0));
        assert!(
            matches!(created, Err(StoreError::Invalid(_))),
            "{id:?}: {created:?}"
        );
    }
    assert!(store.tenants().expect("tenants").is_empty());
    store
        .create_tenant(&"a".repeat(128), json!({}), at(0))
        .expect("128 characters are fine");
    store
        .create_tenant("Org_1.eu-west", json!({}), at(0))
        .expect("letters, digits, _ - . are fine");
}

pub fn refuses_changes_to_an_unknown_tenant(store: &dyn Store) {
    let set = store.set_settings("ghost", json!({}));
    assert!(
        matches!(&set, Err(StoreError::UnknownTenant(id)) if id == "ghost"),
        "{set:?}"
    );
    let installed = store.install_package("ghost", "forum");
    assert!(
        matches!(&installed, Err(StoreError::UnknownTenant(id)) if id == "ghost"),
        "{installed:?}"
    );
    let uninstalled = store.uninstall_package("ghost", "forum");
    assert!(
        matches!(&uninstalled, Err(StoreError::UnknownTenant(id)) if id == "ghost"),
        "{uninstalled:?}"
    );
    assert!(store.tenants().expect("tenants").is_empty());
}

pub fn records_a_handler_version_more_than_once(store: &dyn Store) {
    store
        .record_handler_version("greeter", "sha256:aa", at(0))
        .expect("record");
    store
        .record_handler_version("greeter", "sha256:aa", at(1))
        .expect("record again");
    store
        .record_handler_version("greeter", "sha256:bb", at(2))
        .expect("record a new version");
    store
        .record_handler_version("other", "sha256:aa", at(3))
        .expect("the same code under another name");
    let versions: Vec<(String, DateTime<Utc>)> = store
        .handler_versions("greeter")
        .expect("versions")
        .into_iter()
        .map(|v| (v.digest, v.first_seen_at))
        .collect();
    assert_eq!(
        versions,
        [("sha256:aa".into(), at(0)), ("sha256:bb".into(), at(2))],
        "each version once, with the time it was first seen"
    );
    assert!(
        store
            .handler_versions("nobody")
            .expect("versions")
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// Emit.

pub fn emits_a_signal_with_one_delivery_per_matching_target(store: &dyn Store) {
    create_tenant(store, "acme");
    let occurred = at(-30) + TimeDelta::microseconds(123_456);
    let signal = NewSignal {
        tenant: "acme".into(),
        name: "forum.thread.created".into(),
        payload: json!({"thread": 7, "title": "hello"}),
        metadata: Some(json!({"ip_country": "fr"})),
        dedupe_key: Some("thread-7".into()),
        occurred_at: Some(occurred),
        correlation_id: Some("corr_1".into()),
        causation_id: None,
        actor: Some(EntityRef {
            kind: "user".into(),
            id: "u1".into(),
        }),
        subject: Some(EntityRef {
            kind: "thread".into(),
            id: "7".into(),
        }),
        source: Some("tests".into()),
    };
    let now = at(5);
    let emitted = emit(
        store,
        signal.clone(),
        vec![
            target("h.one"),
            DeliveryTarget {
                max_attempts: 3,
                ..target("h.two")
            },
        ],
        now,
    );
    assert_eq!(emitted.status, EmitStatus::Created);
    assert_eq!(emitted.deliveries, 2);
    let stored = &emitted.signal;
    assert!(!stored.id.is_empty());
    assert_eq!(
        (
            stored.tenant.as_str(),
            stored.name.as_str(),
            &stored.payload,
            &stored.metadata
        ),
        (
            "acme",
            "forum.thread.created",
            &signal.payload,
            &json!({"ip_country": "fr"})
        )
    );
    assert_eq!(stored.dedupe_key, signal.dedupe_key);
    assert_eq!(stored.occurred_at, occurred, "microseconds survive");
    assert_eq!(stored.correlation_id, signal.correlation_id);
    assert_eq!(stored.actor, signal.actor);
    assert_eq!(stored.subject, signal.subject);
    assert_eq!(stored.source, signal.source);
    assert_eq!(stored.inserted_at, now);
    assert_eq!(
        all_signals(store),
        std::slice::from_ref(&emitted.signal),
        "listed as returned"
    );
    assert_eq!(
        store
            .signal_depth(&stored.tenant, &stored.id)
            .expect("depth"),
        Some(0)
    );

    let mut deliveries = all_deliveries(store);
    deliveries.sort_by(|a, b| a.handler.cmp(&b.handler));
    assert_eq!(deliveries.len(), 2);
    for (delivery, (handler, max_attempts)) in deliveries.iter().zip([("h.one", 10), ("h.two", 3)])
    {
        assert_eq!(delivery.signal_id, stored.id);
        assert_eq!(delivery.tenant, "acme");
        assert_eq!(delivery.handler, handler);
        assert_eq!(delivery.state, DeliveryState::Available);
        assert_eq!(delivery.attempt, 0);
        assert_eq!(delivery.max_attempts, max_attempts);
        assert_eq!(delivery.scheduled_at, now);
        assert_eq!(delivery.inserted_at, now);
        assert_eq!(
            (
                &delivery.last_error,
                &delivery.handler_digest,
                delivery.finished_at
            ),
            (&None, &None, None)
        );
    }

    let bare = emit(store, new_signal("acme", "test.bare"), Vec::new(), at(6));
    assert_eq!(bare.deliveries, 0);
    assert_eq!(
        bare.signal.metadata,
        json!({}),
        "metadata is always an object"
    );
    assert_eq!(
        bare.signal.occurred_at,
        at(6),
        "occurred_at defaults to now"
    );
}

pub fn skips_targets_whose_package_the_tenant_has_not_installed(store: &dyn Store) {
    create_tenant(store, "acme");
    install(store, "acme", "forum");
    let emitted = emit(
        store,
        new_signal("acme", "forum.thread.created"),
        vec![
            target("h.core"),
            packaged("h.forum", "forum"),
            packaged("h.billing", "billing"),
        ],
        at(0),
    );
    assert_eq!(emitted.deliveries, 2);
    let handlers: BTreeSet<String> = all_deliveries(store)
        .into_iter()
        .map(|d| d.handler)
        .collect();
    assert_eq!(
        handlers,
        BTreeSet::from(["h.core".into(), "h.forum".into()])
    );
}

pub fn refuses_a_signal_of_an_unknown_tenant_and_stores_nothing(store: &dyn Store) {
    create_tenant(store, "acme");
    let emitted = store.emit(
        &[(new_signal("ghost", "test.happened"), vec![target("h")])],
        at(0),
    );
    assert!(
        matches!(&emitted, Err(StoreError::UnknownTenant(id)) if id == "ghost"),
        "{emitted:?}"
    );
    assert!(all_signals(store).is_empty());
    assert!(all_deliveries(store).is_empty());
}

pub fn stores_nothing_of_a_batch_whose_second_signal_has_an_unknown_tenant(store: &dyn Store) {
    create_tenant(store, "acme");
    let batch = [
        (deduped("acme", "first"), vec![target("h")]),
        (new_signal("ghost", "test.happened"), vec![target("h")]),
    ];
    let emitted = store.emit(&batch, at(0));
    assert!(
        matches!(&emitted, Err(StoreError::UnknownTenant(id)) if id == "ghost"),
        "{emitted:?}"
    );
    assert!(
        all_signals(store).is_empty(),
        "the first signal was rolled back"
    );
    assert!(all_deliveries(store).is_empty());
    let again = emit(store, deduped("acme", "first"), vec![target("h")], at(1));
    assert_eq!(
        again.status,
        EmitStatus::Created,
        "its dedupe key was not taken either"
    );
}

pub fn returns_the_existing_signal_when_a_tenant_reuses_a_dedupe_key(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    let first = emit(store, deduped("acme", "order-1"), vec![target("h")], at(0));
    assert_eq!((first.status, first.deliveries), (EmitStatus::Created, 1));

    let again = NewSignal {
        payload: json!({"n": 2}),
        ..deduped("acme", "order-1")
    };
    let second = emit(store, again, vec![target("h"), target("h.other")], at(10));
    assert_eq!(second.status, EmitStatus::Existing);
    assert_eq!(second.deliveries, 0);
    assert_eq!(second.signal, first.signal, "the signal as first stored");
    assert_eq!(all_signals(store).len(), 1);
    assert_eq!(all_deliveries(store).len(), 1);

    let other = emit(store, deduped("beta", "order-1"), vec![target("h")], at(20));
    assert_eq!(
        (other.status, other.deliveries),
        (EmitStatus::Created, 1),
        "keys are per tenant"
    );
    assert_ne!(other.signal.id, first.signal.id);
    assert_eq!(all_signals(store).len(), 2);
}

pub fn dedupes_a_key_used_twice_in_one_batch(store: &dyn Store) {
    create_tenant(store, "acme");
    let batch = [
        (deduped("acme", "k"), vec![target("h")]),
        (deduped("acme", "k"), vec![target("h")]),
    ];
    let emitted = store.emit(&batch, at(0)).expect("emit");
    let statuses: Vec<EmitStatus> = emitted.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [EmitStatus::Created, EmitStatus::Existing]);
    assert_eq!(emitted[0].signal.id, emitted[1].signal.id);
    assert_eq!(all_signals(store).len(), 1);
    assert_eq!(all_deliveries(store).len(), 1);
}

pub fn counts_causation_depth_from_the_causing_signal(store: &dyn Store) {
    create_tenant(store, "acme");
    let root = emit(store, new_signal("acme", "test.root"), Vec::new(), at(0)).signal;
    let caused_by = |cause: &str| NewSignal {
        causation_id: Some(cause.to_owned()),
        ..new_signal("acme", "test.caused")
    };
    let child = emit(store, caused_by(&root.id), Vec::new(), at(1)).signal;
    let grandchild = emit(store, caused_by(&child.id), Vec::new(), at(2)).signal;
    let orphan = emit(store, caused_by("no-such-signal"), Vec::new(), at(3)).signal;
    assert_eq!(child.causation_id.as_deref(), Some(root.id.as_str()));
    let depth = |id: &str| store.signal_depth("acme", id).expect("depth");
    assert_eq!(depth(&root.id), Some(0));
    assert_eq!(depth(&child.id), Some(1));
    assert_eq!(depth(&grandchild.id), Some(2));
    assert_eq!(depth(&orphan.id), Some(0), "an unknown cause adds nothing");
    assert_eq!(depth("no-such-signal"), None);
}

pub fn treats_a_cause_of_another_tenant_exactly_like_an_unknown_one(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    let root = emit(store, new_signal("beta", "test.root"), Vec::new(), at(0)).signal;
    let child = emit(
        store,
        NewSignal {
            causation_id: Some(root.id.clone()),
            ..new_signal("beta", "test.caused")
        },
        Vec::new(),
        at(1),
    )
    .signal;
    // acme names beta's signal as its cause: its depth is 0, as for an id
    // nobody has, and asking acme's depth of beta's signal finds nothing.
    let borrowed = emit(
        store,
        NewSignal {
            causation_id: Some(child.id.clone()),
            ..new_signal("acme", "test.caused")
        },
        Vec::new(),
        at(2),
    )
    .signal;
    assert_eq!(
        store.signal_depth("acme", &borrowed.id).expect("depth"),
        Some(0)
    );
    assert_eq!(store.signal_depth("acme", &child.id).expect("depth"), None);
    assert_eq!(
        store.signal_depth("beta", &child.id).expect("depth"),
        Some(1)
    );
}

pub fn emits_one_signal_per_dedupe_key_when_two_processes_race(database: &dyn TestDatabase) {
    const KEYS: usize = 50;
    let (one, two) = (database.open(), database.open());
    create_tenant(&*one, "acme");
    let start = Barrier::new(2);
    let race = |store: &dyn Store| -> Vec<Emitted> {
        (0..KEYS)
            .map(|i| {
                start.wait();
                emit(
                    store,
                    deduped("acme", &format!("key-{i}")),
                    vec![target("h")],
                    at(i as i64),
                )
            })
            .collect()
    };
    let (mine, theirs) = std::thread::scope(|scope| {
        let mine = scope.spawn(|| race(&*one));
        let theirs = scope.spawn(|| race(&*two));
        (
            mine.join().expect("first process"),
            theirs.join().expect("second process"),
        )
    });
    for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
        let created = [a, b]
            .iter()
            .filter(|e| e.status == EmitStatus::Created)
            .count();
        assert_eq!(
            created, 1,
            "key-{i}: one created, one existing: {a:?} {b:?}"
        );
        assert_eq!(a.signal.id, b.signal.id, "key-{i}: both see the one signal");
        assert_eq!(a.deliveries + b.deliveries, 1, "key-{i}");
    }
    for store in [&one, &two] {
        let signals = all_signals(&**store);
        assert_eq!(signals.len(), KEYS, "one signal row per key");
        let keys: BTreeSet<Option<String>> = signals.into_iter().map(|s| s.dedupe_key).collect();
        assert_eq!(keys.len(), KEYS);
        assert_eq!(all_deliveries(&**store).len(), KEYS);
    }
}

// ---------------------------------------------------------------------------
// Claims.

pub fn claims_only_due_deliveries_up_to_the_limit(store: &dyn Store) {
    create_tenant(store, "acme");
    let due: BTreeSet<String> = (0..3)
        .map(|_| {
            emit(
                store,
                new_signal("acme", "test.due"),
                vec![target("h")],
                at(0),
            )
            .signal
            .id
        })
        .collect();
    // Due before the first claims' leases (until at(70)) expire.
    let later = emit(
        store,
        new_signal("acme", "test.later"),
        vec![target("h")],
        at(50),
    )
    .signal;

    let first = store
        .claim_deliveries(&Claim::new("w", 2, LEASE), at(10))
        .expect("claim");
    assert_eq!(first.len(), 2, "at most the limit");
    let rest = store
        .claim_deliveries(&Claim::new("w", 10, LEASE), at(10))
        .expect("claim");
    assert_eq!(rest.len(), 1, "only what is due");
    let claimed: Vec<&ClaimedDelivery> = first.iter().chain(&rest).collect();
    assert_eq!(
        claimed
            .iter()
            .map(|c| c.signal.id.clone())
            .collect::<BTreeSet<_>>(),
        due
    );
    for c in &claimed {
        assert_eq!(c.delivery.state, DeliveryState::Running);
        assert_eq!(c.delivery.attempt, 1);
        assert_eq!(c.delivery.signal_id, c.signal.id);
        assert_eq!(delivery(store, c.delivery.id).state, DeliveryState::Running);
        assert_eq!(delivery(store, c.delivery.id).attempt, 1);
    }
    assert!(
        store
            .claim_deliveries(&Claim::new("w", 10, LEASE), at(49))
            .expect("claim")
            .is_empty()
    );
    let now_due = store
        .claim_deliveries(&Claim::new("w", 10, LEASE), at(50))
        .expect("claim");
    assert_eq!(now_due.len(), 1, "due when scheduled_at = now");
    assert_eq!(now_due[0].signal, later);
    assert!(
        store
            .claim_deliveries(&Claim::new("w", 0, LEASE), at(200))
            .expect("claim")
            .is_empty(),
        "limit 0"
    );
}

pub fn hands_each_claimed_delivery_its_own_tenants_settings_and_packages(store: &dyn Store) {
    store
        .create_tenant("acme", json!({"greeting": "hello"}), at(0))
        .expect("create");
    store
        .create_tenant("beta", json!({"greeting": "hej"}), at(0))
        .expect("create");
    install(store, "acme", "forum");
    install(store, "acme", "billing");
    let acme = emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    )
    .signal;
    let beta = emit(
        store,
        new_signal("beta", "test.happened"),
        vec![target("h")],
        at(0),
    )
    .signal;
    let claimed = claim(store, "w", at(1));
    assert_eq!(claimed.len(), 2);
    for c in claimed {
        match c.delivery.tenant.as_str() {
            "acme" => {
                assert_eq!(c.signal, acme);
                assert_eq!(c.settings, json!({"greeting": "hello"}));
                assert_eq!(c.packages, ["billing", "forum"]);
            }
            "beta" => {
                assert_eq!(c.signal, beta);
                assert_eq!(c.settings, json!({"greeting": "hej"}));
                assert!(c.packages.is_empty());
            }
            other => panic!("a delivery of {other}"),
        }
    }
}

pub fn does_not_claim_a_delivery_again_while_its_lease_holds(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w1", at(0));
    assert!(claim(store, "w2", at(1)).is_empty());
    assert!(claim(store, "w2", at(LEASE_SECONDS - 1)).is_empty());
    let held = delivery(store, claimed.delivery.id);
    assert_eq!((held.state, held.attempt), (DeliveryState::Running, 1));
    assert!(
        store
            .attempts(claimed.delivery.id)
            .expect("attempts")
            .is_empty()
    );
}

pub fn keeps_a_delivery_whose_holder_extends_its_lease(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w1", at(0));
    let held = [(claimed.delivery.id, claimed.delivery.attempt)];
    let until = at(3 * LEASE_SECONDS);
    assert_eq!(
        store
            .extend_delivery_leases("w2", &held, until)
            .expect("extend"),
        0,
        "only the holder extends"
    );
    assert_eq!(
        store
            .extend_delivery_leases("w1", &[(claimed.delivery.id, 7)], until)
            .expect("extend"),
        0,
        "only the attempt it holds"
    );
    assert_eq!(
        store
            .extend_delivery_leases("w1", &held, until)
            .expect("extend"),
        1
    );
    assert!(
        claim(store, "w2", at(2 * LEASE_SECONDS)).is_empty(),
        "past the first lease, still held"
    );
    let rescued = claim_one(store, "w2", at(3 * LEASE_SECONDS + 1));
    assert_eq!(
        rescued.delivery.attempt, 2,
        "rescued once the extension ran out"
    );
}

pub fn keeps_a_directive_whose_runner_extends_its_lease(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({}))],
        at(0),
    );
    let first = claim_one_directive(store, "r1", at(0));
    let held = [(first.id.clone(), first.attempt)];
    assert_eq!(
        store
            .extend_directive_leases("r2", &held, at(3 * LEASE_SECONDS))
            .expect("extend"),
        0
    );
    assert_eq!(
        store
            .extend_directive_leases("r1", &held, at(3 * LEASE_SECONDS))
            .expect("extend"),
        1
    );
    assert!(claim_directives(store, "r2", at(2 * LEASE_SECONDS)).is_empty());
    let second = claim_one_directive(store, "r2", at(3 * LEASE_SECONDS + 1));
    assert_eq!(second.attempt, 2);
}

pub fn reclaims_a_delivery_whose_lease_expired_and_records_the_lost_attempt(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let first = claim_one(store, "w1", at(0));
    let second = claim_one(store, "w2", at(LEASE_SECONDS + 1));
    assert_eq!(second.delivery.id, first.delivery.id);
    assert_eq!(second.delivery.attempt, 2);
    assert_eq!(second.delivery.state, DeliveryState::Running);

    let attempts = store.attempts(first.delivery.id).expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let lost = &attempts[0];
    assert_eq!(
        (lost.attempt, lost.worker.as_str(), lost.outcome.as_str()),
        (1, "w1", "lease_expired")
    );
    assert_eq!(lost.delivery_id, first.delivery.id);
    assert!(lost.error.is_some());

    let outcome = finish(
        store,
        result(&second, "w2", Decision::Complete(Vec::new()), at(62)),
        at(62),
    );
    assert!(
        matches!(outcome, FinishOutcome::Completed { .. }),
        "{outcome:?}"
    );
    let attempts = store.attempts(first.delivery.id).expect("attempts");
    let outcomes: Vec<(u32, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "lease_expired"), (2, "ok")]);
}

pub fn discards_a_delivery_whose_last_attempt_lost_its_lease(store: &dyn Store) {
    create_tenant(store, "acme");
    let last_try = DeliveryTarget {
        max_attempts: 1,
        ..target("h")
    };
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![last_try],
        at(0),
    );
    let claimed = claim_one(store, "w1", at(0));
    let later = at(LEASE_SECONDS + 1);
    assert!(claim(store, "w2", later).is_empty(), "no attempt left");
    let discarded = delivery(store, claimed.delivery.id);
    assert_eq!(discarded.state, DeliveryState::Discarded);
    assert_eq!(discarded.attempt, 1);
    assert!(discarded.last_error.is_some());
    assert!(discarded.finished_at.is_some());
    let attempts = store.attempts(claimed.delivery.id).expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "lease_expired");
    assert!(
        claim(store, "w2", at(10_000)).is_empty(),
        "and it stays discarded"
    );
}

// ---------------------------------------------------------------------------
// Finish.

pub fn completes_a_delivery_and_writes_its_directives_with_the_deliverys_tenant(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "evil");
    let emitted = emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h.mailer")],
        at(0),
    );
    let claimed = claim_one(store, "w", at(1));
    let plain = requested("acme", "welcome-u1", json!({"to": "u1"}));
    let later = RequestedDirective {
        scheduled_at: Some(at(500)),
        ..requested("evil", "reminder-u1", json!({"to": "u1", "in": "1d"}))
    };
    let started = at(1) + TimeDelta::microseconds(250);
    let finished_at = at(2);
    let report = DeliveryResult {
        delivery_id: claimed.delivery.id,
        handler: claimed.delivery.handler.clone(),
        tenant: claimed.delivery.tenant.clone(),
        attempt: claimed.delivery.attempt,
        worker: "w".into(),
        decision: Decision::Complete(vec![plain.clone(), later.clone()]),
        handler_digest: "sha256:feed".into(),
        outcome: AttemptOutcome::Ok,
        error: None,
        started_at: started,
        duration: Duration::from_micros(1_234),
        fuel: Some(98_765),
        directive_count: 2,
        output: "hello from the guest\n".into(),
        details: AttemptDetails {
            output_truncated: true,
            peak_memory_bytes: Some(1_179_648),
            refused_directives: vec![
                "not-permitted: the handler's manifest does not allow directive pay.out".into(),
                "too-large: payload of mail.send is 70000 bytes, the limit is 65536".into(),
            ],
        },
    };
    let outcome = finish(store, report, finished_at);
    assert_eq!(
        outcome,
        FinishOutcome::Completed {
            directives_created: 2,
            duplicates: 0
        }
    );

    let done = delivery(store, claimed.delivery.id);
    assert_eq!(done.state, DeliveryState::Completed);
    assert_eq!(done.attempt, 1);
    assert_eq!(done.finished_at, Some(finished_at));
    assert_eq!(done.handler_digest.as_deref(), Some("sha256:feed"));
    assert_eq!(done.last_error, None);

    let attempts = store.attempts(claimed.delivery.id).expect("attempts");
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(
        (attempt.delivery_id, attempt.attempt),
        (claimed.delivery.id, 1)
    );
    assert_eq!(
        (attempt.worker.as_str(), attempt.handler_digest.as_str()),
        ("w", "sha256:feed")
    );
    assert_eq!((attempt.outcome.as_str(), &attempt.error), ("ok", &None));
    assert_eq!(
        (attempt.started_at, attempt.finished_at),
        (started, finished_at)
    );
    assert_eq!(
        (attempt.duration_us, attempt.fuel, attempt.directive_count),
        (1_234, Some(98_765), 2)
    );
    assert_eq!(attempt.output, "hello from the guest\n");
    assert!(attempt.details.output_truncated);
    assert_eq!(attempt.details.peak_memory_bytes, Some(1_179_648));
    assert_eq!(attempt.details.refused_directives.len(), 2);
    assert!(attempt.details.refused_directives[0].starts_with("not-permitted: "));

    let written = all_directives(store);
    assert_eq!(written.len(), 2);
    for d in &written {
        assert_eq!(d.tenant, "acme", "always the delivery's tenant: {d:?}");
        assert_eq!(d.state, DirectiveState::Requested);
        assert_eq!(d.signal_id, emitted.signal.id);
        assert_eq!(d.delivery_id, claimed.delivery.id);
        assert_eq!(d.handler, "h.mailer");
        assert_eq!((d.attempt, d.depth), (0, 0));
        assert_eq!((&d.last_error, &d.result), (&None, &None));
        assert_eq!((d.inserted_at, d.updated_at), (finished_at, finished_at));
    }
    let first = directive(store, &plain.id);
    assert_eq!(
        (first.name.as_str(), &first.payload),
        ("mail.send", &plain.payload)
    );
    assert_eq!(first.idempotency_key, "welcome-u1");
    assert_eq!(
        first.scheduled_at, finished_at,
        "due at once when no time was asked for"
    );
    let second = directive(store, &later.id);
    assert_eq!(second.payload, later.payload);
    assert_eq!(second.scheduled_at, at(500));
    let evil = DirectiveFilter {
        tenant: Some("evil".into()),
        ..DirectiveFilter::default()
    };
    assert!(store.directives(&evil).expect("list").is_empty());
}

pub fn gives_directives_the_causation_depth_of_their_signal(store: &dyn Store) {
    create_tenant(store, "acme");
    let root = emit(store, new_signal("acme", "test.root"), Vec::new(), at(0)).signal;
    let caused = NewSignal {
        causation_id: Some(root.id.clone()),
        ..new_signal("acme", "test.caused")
    };
    emit(store, caused, vec![target("h")], at(0));
    let claimed = claim_one(store, "w", at(1));
    let outcome = finish(
        store,
        result(
            &claimed,
            "w",
            Decision::Complete(vec![requested("acme", "k", json!({}))]),
            at(1),
        ),
        at(1),
    );
    assert!(
        matches!(
            outcome,
            FinishOutcome::Completed {
                directives_created: 1,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(directive_by_key(store, "acme", "k").depth, 1);
}

pub fn retries_a_delivery_at_the_time_the_worker_chose(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w", at(1));
    let report = result(&claimed, "w", Decision::Retry { at: at(100) }, at(1));
    assert_eq!(finish(store, report, at(2)), FinishOutcome::Retrying);

    let waiting = delivery(store, claimed.delivery.id);
    assert_eq!(waiting.state, DeliveryState::Retryable);
    assert_eq!(waiting.scheduled_at, at(100));
    assert_eq!(
        waiting.last_error.as_deref(),
        Some("transient: upstream busy")
    );
    assert_eq!(waiting.finished_at, None);
    let attempts = store.attempts(claimed.delivery.id).expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].error.as_deref()),
        ("transient", Some("transient: upstream busy"))
    );

    assert!(claim(store, "w", at(99)).is_empty(), "not before its time");
    let again = claim_one(store, "w", at(100));
    assert_eq!(again.delivery.id, claimed.delivery.id);
    assert_eq!(again.delivery.attempt, 2);
}

pub fn discards_a_delivery_and_keeps_its_error(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w", at(1));
    assert_eq!(
        finish(
            store,
            result(&claimed, "w", Decision::Discard, at(1)),
            at(2)
        ),
        FinishOutcome::Discarded
    );
    let discarded = delivery(store, claimed.delivery.id);
    assert_eq!(discarded.state, DeliveryState::Discarded);
    assert_eq!(
        discarded.last_error.as_deref(),
        Some("permanent: bad input")
    );
    assert_eq!(discarded.finished_at, Some(at(2)));
    let attempts = store.attempts(claimed.delivery.id).expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("permanent: bad input"));
    assert!(
        claim(store, "w", at(100_000)).is_empty(),
        "kept, never claimed again on its own"
    );
}

pub fn snoozes_a_delivery_without_counting_the_attempt(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w", at(1));
    let snooze = result(&claimed, "w", Decision::Snooze { at: at(30) }, at(1));
    assert_eq!(finish(store, snooze, at(1)), FinishOutcome::Snoozed);
    let back = delivery(store, claimed.delivery.id);
    assert_eq!(back.state, DeliveryState::Available);
    assert_eq!(back.attempt, 0, "the attempt does not count");
    assert_eq!(back.scheduled_at, at(30));
    assert!(
        store
            .attempts(claimed.delivery.id)
            .expect("attempts")
            .is_empty()
    );

    assert!(claim(store, "w", at(29)).is_empty());
    let again = claim_one(store, "w", at(30));
    assert_eq!(again.delivery.attempt, 1);
}

pub fn reports_each_handlers_deliveries_durations_and_recent_failures(store: &dyn Store) {
    create_tenant(store, "acme");
    for _ in 0..2 {
        emit(
            store,
            new_signal("acme", "test.happened"),
            vec![target("good"), target("flaky")],
            at(0),
        );
    }
    // The good handler's two attempts take 1 ms and 3 ms.
    let mut good_durations = [1000, 3000].into_iter();
    for claimed in claim(store, "w", at(1)) {
        let result = if claimed.delivery.handler == "good" {
            let mut done = result(&claimed, "w", Decision::Complete(vec![]), at(1));
            done.duration = Duration::from_micros(good_durations.next().expect("two"));
            done
        } else {
            result(&claimed, "w", Decision::Retry { at: at(60) }, at(1))
        };
        finish(store, result, at(1));
    }
    let stats = store.stats().expect("stats");
    let names: Vec<&str> = stats.handlers.iter().map(|h| h.handler.as_str()).collect();
    assert_eq!(names, ["flaky", "good"], "sorted by name");
    let good = &stats.handlers[1];
    assert_eq!(good.deliveries, vec![(DeliveryState::Completed, 2)]);
    assert_eq!(
        (
            good.recent_attempts,
            good.mean_duration_us,
            good.max_duration_us
        ),
        (2, 2000, 3000)
    );
    assert_eq!(
        stats.handlers[0].deliveries,
        vec![(DeliveryState::Retryable, 2)]
    );
    assert_eq!(stats.recent_failures.len(), 2);
    assert_eq!(
        stats.recent_failures[0].error.as_deref(),
        Some("transient: upstream busy")
    );
}

pub fn resumes_the_snoozed_deliveries_of_a_handler_loaded_again(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h"), target("other")],
        at(0),
    );
    for claimed in claim(store, "w", at(1)) {
        let snooze = result(&claimed, "w", Decision::Snooze { at: at(60) }, at(1));
        assert_eq!(finish(store, snooze, at(1)), FinishOutcome::Snoozed);
    }
    assert_eq!(store.resume_handler("h", at(2)).expect("resume"), 1);
    let resumed = claim(store, "w", at(2));
    assert_eq!(resumed.len(), 1, "only h's delivery is due again");
    assert_eq!(resumed[0].delivery.handler, "h");
    assert_eq!(
        store.resume_handler("h", at(3)).expect("resume"),
        0,
        "a running one is not touched"
    );
}

// ---------------------------------------------------------------------------
// Fencing.

pub fn drops_a_result_with_a_stale_attempt_and_changes_nothing(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let stale = claim_one(store, "w1", at(0));
    let current = claim_one(store, "w2", at(LEASE_SECONDS + 1));
    let now = at(LEASE_SECONDS + 2);
    let before = delivery(store, stale.delivery.id);
    let attempts_before = store.attempts(stale.delivery.id).expect("attempts");

    let late = Decision::Complete(vec![requested("acme", "k", json!({}))]);
    for decision in [
        late,
        Decision::Retry { at: now },
        Decision::Discard,
        Decision::Snooze { at: now },
    ] {
        let outcome = finish(store, result(&stale, "w1", decision.clone(), now), now);
        assert_eq!(outcome, FinishOutcome::LeaseLost, "{decision:?}");
        // The right worker name with the old attempt is stale too.
        let outcome = finish(store, result(&stale, "w2", decision.clone(), now), now);
        assert_eq!(outcome, FinishOutcome::LeaseLost, "{decision:?}");
    }
    assert_eq!(delivery(store, stale.delivery.id), before);
    assert_eq!(
        store.attempts(stale.delivery.id).expect("attempts"),
        attempts_before
    );
    assert!(all_directives(store).is_empty());

    let outcome = finish(
        store,
        result(&current, "w2", Decision::Complete(Vec::new()), now),
        now,
    );
    assert!(
        matches!(outcome, FinishOutcome::Completed { .. }),
        "{outcome:?}"
    );
}

pub fn drops_a_result_from_another_worker_and_changes_nothing(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w1", at(0));
    let before = delivery(store, claimed.delivery.id);
    let now = at(5);
    let late = Decision::Complete(vec![requested("acme", "k", json!({}))]);
    for decision in [
        late,
        Decision::Retry { at: now },
        Decision::Discard,
        Decision::Snooze { at: now },
    ] {
        let outcome = finish(
            store,
            result(&claimed, "intruder", decision.clone(), now),
            now,
        );
        assert_eq!(outcome, FinishOutcome::LeaseLost, "{decision:?}");
    }
    assert_eq!(delivery(store, claimed.delivery.id), before);
    assert!(
        store
            .attempts(claimed.delivery.id)
            .expect("attempts")
            .is_empty(),
        "no attempt recorded"
    );
    assert!(all_directives(store).is_empty());

    let outcome = finish(
        store,
        result(&claimed, "w1", Decision::Complete(Vec::new()), now),
        now,
    );
    assert!(
        matches!(outcome, FinishOutcome::Completed { .. }),
        "{outcome:?}"
    );
    let attempts = store.attempts(claimed.delivery.id).expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].worker.as_str(), attempts[0].outcome.as_str()),
        ("w1", "ok"),
        "the holder's attempt"
    );
}

pub fn drops_a_second_result_for_a_finished_delivery(store: &dyn Store) {
    create_tenant(store, "acme");
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    );
    let claimed = claim_one(store, "w", at(0));
    let done = result(
        &claimed,
        "w",
        Decision::Complete(vec![requested("acme", "k1", json!({}))]),
        at(1),
    );
    assert!(matches!(
        finish(store, done, at(1)),
        FinishOutcome::Completed { .. }
    ));
    let before = delivery(store, claimed.delivery.id);
    let again = result(
        &claimed,
        "w",
        Decision::Complete(vec![requested("acme", "k2", json!({}))]),
        at(2),
    );
    assert_eq!(finish(store, again, at(2)), FinishOutcome::LeaseLost);
    let discard = result(&claimed, "w", Decision::Discard, at(2));
    assert_eq!(finish(store, discard, at(2)), FinishOutcome::LeaseLost);
    assert_eq!(delivery(store, claimed.delivery.id), before);
    assert_eq!(all_directives(store).len(), 1);
    assert_eq!(
        store.attempts(claimed.delivery.id).expect("attempts").len(),
        1
    );
}

// ---------------------------------------------------------------------------
// Idempotency.

pub fn counts_a_repeated_idempotency_key_with_the_same_payload_as_a_duplicate(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    let payload = json!({"to": "u1", "template": "welcome"});
    let first = complete_with(
        store,
        "acme",
        vec![requested("acme", "welcome-u1", payload.clone())],
        at(0),
    );

    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h.directives")],
        at(1),
    );
    let claimed = claim_one(store, "w", at(1));
    let same = Decision::Complete(vec![requested("acme", "welcome-u1", payload.clone())]);
    let outcome = finish(store, result(&claimed, "w", same, at(1)), at(1));
    assert_eq!(
        outcome,
        FinishOutcome::Completed {
            directives_created: 0,
            duplicates: 1
        }
    );
    assert_eq!(
        delivery(store, claimed.delivery.id).state,
        DeliveryState::Completed
    );

    let acme = DirectiveFilter {
        tenant: Some("acme".into()),
        ..DirectiveFilter::default()
    };
    let written = store.directives(&acme).expect("list");
    assert_eq!(written.len(), 1, "one row per key");
    assert_eq!(written[0].delivery_id, first.id, "the first one's");

    let other = complete_with(
        store,
        "beta",
        vec![requested("beta", "welcome-u1", json!({"to": "u9"}))],
        at(2),
    );
    assert_eq!(
        directive_by_key(store, "beta", "welcome-u1").delivery_id,
        other.id,
        "keys are per tenant"
    );
}

pub fn discards_a_delivery_whose_directive_conflicts_and_writes_none_of_its_directives(
    store: &dyn Store,
) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "taken", json!({"to": "u1"}))],
        at(0),
    );

    for _ in 0..3 {
        emit(
            store,
            new_signal("acme", "test.happened"),
            vec![target("h.directives")],
            at(1),
        );
    }
    let mut claimed = claim(store, "w", at(1));
    assert_eq!(claimed.len(), 3);
    claimed.sort_by_key(|c| c.delivery.id);
    let [before, conflicting, after] = [&claimed[0], &claimed[1], &claimed[2]];
    let results = [
        result(
            before,
            "w",
            Decision::Complete(vec![requested("acme", "before", json!({}))]),
            at(1),
        ),
        result(
            conflicting,
            "w",
            Decision::Complete(vec![
                requested("acme", "fresh-1", json!({})),
                requested("acme", "taken", json!({"to": "u2"})),
                requested("acme", "fresh-2", json!({})),
            ]),
            at(1),
        ),
        result(
            after,
            "w",
            Decision::Complete(vec![requested("acme", "after", json!({}))]),
            at(1),
        ),
    ];
    let outcomes = store.finish_deliveries(&results, at(2)).expect("finish");
    assert_eq!(
        outcomes,
        [
            FinishOutcome::Completed {
                directives_created: 1,
                duplicates: 0
            },
            FinishOutcome::Conflict {
                key: "taken".into()
            },
            FinishOutcome::Completed {
                directives_created: 1,
                duplicates: 0
            },
        ]
    );

    let discarded = delivery(store, conflicting.delivery.id);
    assert_eq!(discarded.state, DeliveryState::Discarded);
    let reason = discarded.last_error.unwrap_or_default();
    assert!(
        reason.contains("taken"),
        "the reason names the key: {reason:?}"
    );
    assert_eq!(
        store
            .attempts(conflicting.delivery.id)
            .expect("attempts")
            .len(),
        1,
        "the attempt is kept"
    );
    assert_eq!(
        delivery(store, before.delivery.id).state,
        DeliveryState::Completed
    );
    assert_eq!(
        delivery(store, after.delivery.id).state,
        DeliveryState::Completed
    );

    let keys: BTreeSet<String> = all_directives(store)
        .into_iter()
        .map(|d| d.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["taken".into(), "before".into(), "after".into()])
    );
    assert_eq!(
        directive_by_key(store, "acme", "taken").payload,
        json!({"to": "u1"}),
        "never overwritten"
    );
}

pub fn treats_the_same_key_with_another_directive_name_as_a_conflict(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({"to": "u1"}))],
        at(0),
    );
    emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h.directives")],
        at(1),
    );
    let claimed = claim_one(store, "w", at(1));
    let renamed = RequestedDirective {
        name: "sms.send".into(),
        ..requested("acme", "k", json!({"to": "u1"}))
    };
    let outcome = finish(
        store,
        result(&claimed, "w", Decision::Complete(vec![renamed]), at(1)),
        at(1),
    );
    assert_eq!(outcome, FinishOutcome::Conflict { key: "k".into() });
    assert_eq!(
        delivery(store, claimed.delivery.id).state,
        DeliveryState::Discarded
    );
    assert_eq!(all_directives(store).len(), 1);
}

// ---------------------------------------------------------------------------
// Operator actions.

pub fn retries_discarded_and_canceled_deliveries_with_a_fresh_attempt_budget(store: &dyn Store) {
    let before = deliveries_in_every_state(store);
    let untouchable = DeliveryFilter {
        ids: [
            DeliveryState::Available,
            DeliveryState::Running,
            DeliveryState::Completed,
        ]
        .iter()
        .map(|s| before[s].id)
        .collect(),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        store.retry_deliveries(&untouchable, at(5)).expect("retry"),
        0
    );
    for state in [
        DeliveryState::Available,
        DeliveryState::Running,
        DeliveryState::Completed,
    ] {
        assert_eq!(
            delivery(store, before[&state].id),
            before[&state],
            "{state:?} untouched"
        );
    }

    for state in [DeliveryState::Discarded, DeliveryState::Canceled] {
        let filter = DeliveryFilter {
            state: Some(state),
            ..DeliveryFilter::default()
        };
        assert_eq!(
            store.retry_deliveries(&filter, at(5)).expect("retry"),
            1,
            "{state:?}"
        );
        let old = &before[&state];
        let retried = delivery(store, old.id);
        assert_eq!(retried.state, DeliveryState::Available, "{state:?}");
        assert_eq!(retried.attempt, old.attempt, "{state:?}");
        assert_eq!(
            retried.max_attempts,
            old.attempt + old.max_attempts,
            "{state:?}: a fresh budget"
        );
        assert_eq!(retried.scheduled_at, at(5), "{state:?}");
        assert_eq!(retried.finished_at, None, "{state:?}");
    }

    let claimed = claim(store, "w", at(5));
    let attempts: HashMap<String, u32> = claimed
        .iter()
        .map(|c| (c.delivery.handler.clone(), c.delivery.attempt))
        .collect();
    assert_eq!(attempts.get("h.discarded"), Some(&2));
    assert_eq!(attempts.get("h.canceled"), Some(&1));
}

pub fn cancels_only_deliveries_that_are_not_running_or_finished(store: &dyn Store) {
    let before = deliveries_in_every_state(store);
    let elsewhere = DeliveryFilter {
        tenant: Some("beta".into()),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        store.cancel_deliveries(&elsewhere, at(5)).expect("cancel"),
        0,
        "the filter applies"
    );

    assert_eq!(
        store
            .cancel_deliveries(&DeliveryFilter::default(), at(5))
            .expect("cancel"),
        2
    );
    for state in [DeliveryState::Available, DeliveryState::Retryable] {
        let canceled = delivery(store, before[&state].id);
        assert_eq!(canceled.state, DeliveryState::Canceled, "{state:?}");
        assert_eq!(canceled.finished_at, Some(at(5)), "{state:?}");
    }
    for state in [
        DeliveryState::Running,
        DeliveryState::Completed,
        DeliveryState::Discarded,
        DeliveryState::Canceled,
    ] {
        assert_eq!(
            delivery(store, before[&state].id),
            before[&state],
            "{state:?} untouched"
        );
    }
    assert!(
        claim(store, "w2", at(10_000))
            .iter()
            .all(|c| c.delivery.handler == "h.running"),
        "canceled ones stay put"
    );
}

pub fn replays_signals_to_the_targets_the_tenant_has_installed(store: &dyn Store) {
    create_tenant(store, "acme");
    install(store, "acme", "billing");
    let signal = emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h.core")],
        at(0),
    )
    .signal;
    run_due(store, at(1), |_| Some(Decision::Complete(Vec::new())));

    let targets = vec![
        target("h.core"),
        packaged("h.forum", "forum"),
        packaged("h.billing", "billing"),
    ];
    assert_eq!(
        store
            .replay(&[(signal.id.clone(), targets)], at(10))
            .expect("replay"),
        2
    );
    let of_signal = DeliveryFilter {
        signal_id: Some(signal.id.clone()),
        state: Some(DeliveryState::Available),
        ..DeliveryFilter::default()
    };
    let replayed = store.deliveries(&of_signal).expect("list");
    let handlers: BTreeSet<String> = replayed.iter().map(|d| d.handler.clone()).collect();
    assert_eq!(
        handlers,
        BTreeSet::from(["h.core".into(), "h.billing".into()])
    );
    for d in &replayed {
        assert_eq!(
            (d.tenant.as_str(), d.attempt, d.scheduled_at),
            ("acme", 0, at(10))
        );
    }
    assert_eq!(all_deliveries(store).len(), 3, "the first delivery is kept");
    let claimed = claim(store, "w", at(10));
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.signal == signal));
}

pub fn refuses_to_replay_an_unknown_signal_and_writes_nothing(store: &dyn Store) {
    create_tenant(store, "acme");
    let signal = emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h")],
        at(0),
    )
    .signal;
    let batch = [
        (signal.id.clone(), vec![target("h")]),
        ("no-such-signal".to_owned(), vec![target("h")]),
    ];
    let replayed = store.replay(&batch, at(1));
    assert!(
        matches!(&replayed, Err(StoreError::NotFound { id, .. }) if id == "no-such-signal"),
        "{replayed:?}"
    );
    assert_eq!(
        all_deliveries(store).len(),
        1,
        "the known signal got nothing either"
    );
}

// ---------------------------------------------------------------------------
// Directives.

pub fn claims_only_due_requested_directives_up_to_the_limit(store: &dyn Store) {
    create_tenant(store, "acme");
    let now = RequestedDirective {
        scheduled_at: Some(at(1)),
        ..requested("acme", "now", json!({}))
    };
    // Due before the first claims' leases (until at(62)) expire.
    let later = RequestedDirective {
        scheduled_at: Some(at(50)),
        ..requested("acme", "later", json!({}))
    };
    let directives = vec![
        now,
        requested("acme", "also-now", json!({})),
        requested("acme", "and-now", json!({})),
        later.clone(),
    ];
    complete_with(store, "acme", directives, at(1));

    let first: Vec<Directive> = store
        .claim_directives(&Claim::new("r", 2, LEASE), at(2))
        .expect("claim")
        .into_iter()
        .map(|claimed| claimed.directive)
        .collect();
    assert_eq!(first.len(), 2, "at most the limit");
    let rest = claim_directives(store, "r", at(2));
    assert_eq!(rest.len(), 1, "only the due ones");
    for d in first.iter().chain(&rest) {
        assert_ne!(d.idempotency_key, "later");
        assert_eq!((d.state, d.attempt), (DirectiveState::Running, 1));
        assert_eq!(directive(store, &d.id).state, DirectiveState::Running);
    }
    assert!(claim_directives(store, "r", at(49)).is_empty());
    let due = claim_one_directive(store, "r", at(50));
    assert_eq!(due.id, later.id, "due when scheduled_at = now");
}

pub fn fences_a_directive_result_by_attempt_and_worker(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({}))],
        at(0),
    );
    let claimed = claim_one_directive(store, "r1", at(1));
    let done = DirectiveDecision::Succeeded(json!({"message_id": "m1"}));
    assert!(
        !store
            .finish_directive(&claimed.id, 1, "r2", &done, at(2))
            .expect("finish"),
        "another runner"
    );
    assert!(
        !store
            .finish_directive(&claimed.id, 2, "r1", &done, at(2))
            .expect("finish"),
        "another attempt"
    );
    let held = directive(store, &claimed.id);
    assert_eq!(
        (held.state, held.attempt, &held.result),
        (DirectiveState::Running, 1, &None)
    );

    assert!(
        store
            .finish_directive(&claimed.id, 1, "r1", &done, at(3))
            .expect("finish")
    );
    let succeeded = directive(store, &claimed.id);
    assert_eq!(succeeded.state, DirectiveState::Succeeded);
    assert_eq!(succeeded.result, Some(json!({"message_id": "m1"})));
    assert_eq!(succeeded.updated_at, at(3));
}

pub fn never_claims_a_succeeded_directive_again(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({}))],
        at(0),
    );
    let claimed = claim_one_directive(store, "r", at(1));
    let done = DirectiveDecision::Succeeded(json!({}));
    assert!(
        store
            .finish_directive(&claimed.id, 1, "r", &done, at(2))
            .expect("finish")
    );
    assert!(claim_directives(store, "r", at(3)).is_empty());
    assert!(
        claim_directives(store, "r", at(100_000)).is_empty(),
        "not even after a lease would have expired"
    );
    assert!(
        !store
            .finish_directive(&claimed.id, 1, "r", &done, at(4))
            .expect("finish"),
        "nor finished twice"
    );
    assert_eq!(
        directive(store, &claimed.id).state,
        DirectiveState::Succeeded
    );
}

pub fn brings_a_retried_directive_back_at_its_time_with_the_next_attempt(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({}))],
        at(0),
    );
    let claimed = claim_one_directive(store, "r", at(1));
    let retry = DirectiveDecision::Retry {
        at: at(100),
        error: "smtp: 451 try later".into(),
    };
    assert!(
        store
            .finish_directive(&claimed.id, 1, "r", &retry, at(2))
            .expect("finish")
    );
    let waiting = directive(store, &claimed.id);
    assert_eq!(waiting.state, DirectiveState::Requested);
    assert_eq!(waiting.scheduled_at, at(100));
    assert_eq!(waiting.last_error.as_deref(), Some("smtp: 451 try later"));
    assert_eq!(waiting.attempt, 1);

    assert!(
        claim_directives(store, "r", at(99)).is_empty(),
        "not before its time"
    );
    let again = claim_one_directive(store, "r", at(100));
    assert_eq!((again.id.as_str(), again.attempt), (claimed.id.as_str(), 2));
}

pub fn keeps_a_failed_directive_failed(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({}))],
        at(0),
    );
    let claimed = claim_one_directive(store, "r", at(1));
    let failed = DirectiveDecision::Failed("smtp: 550 no such user".into());
    assert!(
        store
            .finish_directive(&claimed.id, 1, "r", &failed, at(2))
            .expect("finish")
    );
    let kept = directive(store, &claimed.id);
    assert_eq!(kept.state, DirectiveState::Failed);
    assert_eq!(kept.last_error.as_deref(), Some("smtp: 550 no such user"));
    assert!(claim_directives(store, "r", at(100_000)).is_empty());
    let canceled = store
        .cancel_directives(&DirectiveFilter::default(), at(3))
        .expect("cancel");
    assert_eq!(canceled, 0, "a failed directive is final");
}

pub fn cancels_only_requested_directives(store: &dyn Store) {
    create_tenant(store, "acme");
    let keys = ["running", "succeeded"].map(|k| requested("acme", k, json!({})));
    complete_with(store, "acme", keys.to_vec(), at(0));
    let claimed = claim_directives(store, "r", at(1));
    assert_eq!(claimed.len(), 2);
    let succeeded = claimed
        .iter()
        .find(|d| d.idempotency_key == "succeeded")
        .expect("claimed");
    let running = claimed
        .iter()
        .find(|d| d.idempotency_key == "running")
        .expect("claimed");
    let done = DirectiveDecision::Succeeded(json!({}));
    assert!(
        store
            .finish_directive(&succeeded.id, 1, "r", &done, at(2))
            .expect("finish")
    );
    let waiting = requested("acme", "requested", json!({}));
    let other = requested("acme", "other", json!({}));
    complete_with(store, "acme", vec![waiting.clone(), other.clone()], at(3));

    let elsewhere = DirectiveFilter {
        name: Some("sms.send".into()),
        ..DirectiveFilter::default()
    };
    assert_eq!(
        store.cancel_directives(&elsewhere, at(4)).expect("cancel"),
        0,
        "the filter applies"
    );
    let just_one = DirectiveFilter {
        ids: vec![waiting.id.clone()],
        ..DirectiveFilter::default()
    };
    assert_eq!(
        store.cancel_directives(&just_one, at(4)).expect("cancel"),
        1
    );
    assert_eq!(
        store
            .cancel_directives(&DirectiveFilter::default(), at(5))
            .expect("cancel"),
        1,
        "only 'other' is left"
    );

    let canceled = directive(store, &waiting.id);
    assert_eq!(
        (canceled.state, canceled.updated_at),
        (DirectiveState::Canceled, at(4))
    );
    assert_eq!(directive(store, &other.id).state, DirectiveState::Canceled);
    assert_eq!(directive(store, &running.id).state, DirectiveState::Running);
    assert_eq!(
        directive(store, &succeeded.id).state,
        DirectiveState::Succeeded
    );
    assert!(
        claim_directives(store, "r", at(6)).is_empty(),
        "canceled ones are never claimed"
    );
    assert!(
        store
            .finish_directive(&running.id, 1, "r", &done, at(7))
            .expect("finish"),
        "the running one finishes"
    );
}

pub fn reclaims_a_directive_whose_lease_expired(store: &dyn Store) {
    create_tenant(store, "acme");
    complete_with(
        store,
        "acme",
        vec![requested("acme", "k", json!({}))],
        at(0),
    );
    let first = claim_one_directive(store, "r1", at(0));
    assert!(
        claim_directives(store, "r2", at(LEASE_SECONDS - 1)).is_empty(),
        "the lease holds"
    );
    let second = claim_one_directive(store, "r2", at(LEASE_SECONDS + 1));
    assert_eq!((second.id.as_str(), second.attempt), (first.id.as_str(), 2));
    let done = DirectiveDecision::Succeeded(json!({}));
    assert!(
        !store
            .finish_directive(&first.id, 1, "r1", &done, at(62))
            .expect("finish"),
        "the old runner lost it"
    );
    assert!(
        store
            .finish_directive(&second.id, 2, "r2", &done, at(62))
            .expect("finish")
    );
}

// ---------------------------------------------------------------------------
// Listings and filters.

pub fn lists_signals_by_tenant_ids_name_time_range_and_limit(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    let s1 = emit(store, new_signal("acme", "test.x"), Vec::new(), at(0)).signal;
    let s2 = emit(store, new_signal("acme", "test.y"), Vec::new(), at(10)).signal;
    let s3 = emit(store, new_signal("acme", "test.x"), Vec::new(), at(20)).signal;
    let s4 = emit(store, new_signal("beta", "test.x"), Vec::new(), at(30)).signal;
    let list = |filter: SignalFilter| signal_ids(&store.signals(&filter).expect("list signals"));
    let set = |signals: &[&sighost::Signal]| {
        signals
            .iter()
            .map(|s| s.id.clone())
            .collect::<BTreeSet<_>>()
    };

    assert_eq!(list(SignalFilter::default()), set(&[&s1, &s2, &s3, &s4]));
    assert_eq!(
        list(SignalFilter {
            tenant: Some("acme".into()),
            ..SignalFilter::default()
        }),
        set(&[&s1, &s2, &s3])
    );
    assert_eq!(
        list(SignalFilter {
            ids: vec![s1.id.clone(), s4.id.clone()],
            ..SignalFilter::default()
        }),
        set(&[&s1, &s4])
    );
    assert_eq!(
        list(SignalFilter {
            name: Some("test.x".into()),
            ..SignalFilter::default()
        }),
        set(&[&s1, &s3, &s4])
    );
    assert_eq!(
        list(SignalFilter {
            since: Some(at(5)),
            until: Some(at(25)),
            ..SignalFilter::default()
        }),
        set(&[&s2, &s3])
    );
    assert_eq!(
        list(SignalFilter {
            since: Some(at(15)),
            ..SignalFilter::default()
        }),
        set(&[&s3, &s4])
    );
    assert_eq!(
        list(SignalFilter {
            until: Some(at(15)),
            ..SignalFilter::default()
        }),
        set(&[&s1, &s2])
    );
    let acme_x = SignalFilter {
        tenant: Some("acme".into()),
        name: Some("test.x".into()),
        ..SignalFilter::default()
    };
    assert_eq!(list(acme_x.clone()), set(&[&s1, &s3]));
    assert!(
        list(SignalFilter {
            tenant: Some("ghost".into()),
            ..SignalFilter::default()
        })
        .is_empty()
    );

    let limited = store
        .signals(&SignalFilter {
            limit: Some(2),
            ..SignalFilter::default()
        })
        .expect("list");
    assert_eq!(limited.len(), 2);
    let limited = store
        .signals(&SignalFilter {
            limit: Some(1),
            ..acme_x
        })
        .expect("list");
    assert_eq!(limited.len(), 1);
    assert!(
        set(&[&s1, &s3]).contains(&limited[0].id),
        "the limit applies after the filter"
    );
}

pub fn lists_deliveries_by_state_tenant_handler_signal_and_ids(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    let s1 = emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h1"), target("h2")],
        at(0),
    )
    .signal;
    let s2 = emit(
        store,
        new_signal("acme", "test.happened"),
        vec![target("h1")],
        at(0),
    )
    .signal;
    let s3 = emit(
        store,
        new_signal("beta", "test.happened"),
        vec![target("h1")],
        at(0),
    )
    .signal;
    let finished = run_due(store, at(1), |c| {
        Some(
            if c.delivery.signal_id == s1.id && c.delivery.handler == "h1" {
                Decision::Complete(Vec::new())
            } else {
                Decision::Snooze { at: at(1) }
            },
        )
    });
    assert_eq!(finished.len(), 4);
    let completed_id = finished
        .iter()
        .find(|(c, _)| c.delivery.signal_id == s1.id && c.delivery.handler == "h1")
        .map(|(c, _)| c.delivery.id)
        .expect("claimed");

    let list = |filter: DeliveryFilter| -> BTreeSet<(String, String)> {
        store
            .deliveries(&filter)
            .expect("list deliveries")
            .into_iter()
            .map(|d| (d.signal_id, d.handler))
            .collect()
    };
    let pair = |s: &sighost::Signal, h: &str| (s.id.clone(), h.to_owned());
    let filter = DeliveryFilter::default;
    assert_eq!(list(filter()).len(), 4);
    assert_eq!(
        list(DeliveryFilter {
            state: Some(DeliveryState::Completed),
            ..filter()
        }),
        BTreeSet::from([pair(&s1, "h1")])
    );
    assert_eq!(
        list(DeliveryFilter {
            state: Some(DeliveryState::Available),
            ..filter()
        }),
        BTreeSet::from([pair(&s1, "h2"), pair(&s2, "h1"), pair(&s3, "h1")])
    );
    assert!(
        list(DeliveryFilter {
            state: Some(DeliveryState::Running),
            ..filter()
        })
        .is_empty()
    );
    assert_eq!(
        list(DeliveryFilter {
            tenant: Some("beta".into()),
            ..filter()
        }),
        BTreeSet::from([pair(&s3, "h1")])
    );
    assert_eq!(
        list(DeliveryFilter {
            handler: Some("h2".into()),
            ..filter()
        }),
        BTreeSet::from([pair(&s1, "h2")])
    );
    assert_eq!(
        list(DeliveryFilter {
            signal_id: Some(s1.id.clone()),
            ..filter()
        }),
        BTreeSet::from([pair(&s1, "h1"), pair(&s1, "h2")])
    );
    assert_eq!(
        list(DeliveryFilter {
            ids: vec![completed_id],
            ..filter()
        }),
        BTreeSet::from([pair(&s1, "h1")])
    );
    assert_eq!(
        list(DeliveryFilter {
            tenant: Some("acme".into()),
            handler: Some("h1".into()),
            ..filter()
        }),
        BTreeSet::from([pair(&s1, "h1"), pair(&s2, "h1")])
    );
    let limited = store
        .deliveries(&DeliveryFilter {
            limit: Some(3),
            ..filter()
        })
        .expect("list");
    assert_eq!(limited.len(), 3);
    let limited = store
        .deliveries(&DeliveryFilter {
            tenant: Some("acme".into()),
            limit: Some(2),
            ..filter()
        })
        .expect("list");
    assert_eq!(limited.len(), 2);
    assert!(
        limited.iter().all(|d| d.tenant == "acme"),
        "the limit applies after the filter"
    );
}

pub fn lists_directives_by_tenant_state_name_and_signal(store: &dyn Store) {
    create_tenant(store, "acme");
    create_tenant(store, "beta");
    let sms = |key: &str| RequestedDirective {
        name: "sms.send".into(),
        ..requested("acme", key, json!({}))
    };
    let first = complete_with(
        store,
        "acme",
        vec![requested("acme", "a1", json!({})), sms("a2")],
        at(0),
    );
    complete_with(
        store,
        "acme",
        vec![requested("acme", "a3", json!({}))],
        at(1),
    );
    complete_with(
        store,
        "beta",
        vec![requested("beta", "b1", json!({}))],
        at(2),
    );
    let claimed = claim_directives(store, "r", at(3));
    assert_eq!(claimed.len(), 4);
    for d in &claimed {
        let decision = if d.idempotency_key == "a1" {
            DirectiveDecision::Succeeded(json!({}))
        } else {
            DirectiveDecision::Retry {
                at: at(3),
                error: "later".into(),
            }
        };
        assert!(
            store
                .finish_directive(&d.id, d.attempt, "r", &decision, at(3))
                .expect("finish")
        );
    }

    let list = |filter: DirectiveFilter| -> BTreeSet<String> {
        store
            .directives(&filter)
            .expect("list directives")
            .into_iter()
            .map(|d| d.idempotency_key)
            .collect()
    };
    let keys = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
    let filter = DirectiveFilter::default;
    assert_eq!(list(filter()), keys(&["a1", "a2", "a3", "b1"]));
    assert_eq!(
        list(DirectiveFilter {
            tenant: Some("acme".into()),
            ..filter()
        }),
        keys(&["a1", "a2", "a3"])
    );
    assert_eq!(
        list(DirectiveFilter {
            state: Some(DirectiveState::Succeeded),
            ..filter()
        }),
        keys(&["a1"])
    );
    assert_eq!(
        list(DirectiveFilter {
            state: Some(DirectiveState::Requested),
            ..filter()
        }),
        keys(&["a2", "a3", "b1"])
    );
    assert_eq!(
        list(DirectiveFilter {
            name: Some("sms.send".into()),
            ..filter()
        }),
        keys(&["a2"])
    );
    assert_eq!(
        list(DirectiveFilter {
            signal_id: Some(first.signal_id.clone()),
            ..filter()
        }),
        keys(&["a1", "a2"])
    );
    assert_eq!(
        list(DirectiveFilter {
            tenant: Some("acme".into()),
            state: Some(DirectiveState::Requested),
            name: Some("mail.send".into()),
            ..filter()
        }),
        keys(&["a3"])
    );
    let limited = store
        .directives(&DirectiveFilter {
            tenant: Some("acme".into()),
            limit: Some(2),
            ..filter()
        })
        .expect("list");
    assert_eq!(limited.len(), 2);
    assert!(
        limited.iter().all(|d| d.tenant == "acme"),
        "the limit applies after the filter"
    );
}

pub fn counts_deliveries_and_directives_by_state(store: &dyn Store) {
    let empty = store.stats().expect("stats");
    assert!(empty.deliveries.iter().all(|(_, n)| *n == 0), "{empty:?}");
    assert!(empty.directives.iter().all(|(_, n)| *n == 0), "{empty:?}");

    create_tenant(store, "acme");
    let keys = ["requested", "running", "succeeded", "failed", "canceled"];
    complete_with(
        store,
        "acme",
        keys.iter()
            .map(|k| requested("acme", k, json!({})))
            .collect(),
        at(0),
    );
    for d in claim_directives(store, "r", at(0)) {
        let decision = match d.idempotency_key.as_str() {
            "running" => continue,
            "succeeded" => DirectiveDecision::Succeeded(json!({})),
            "failed" => DirectiveDecision::Failed("no".into()),
            _ => DirectiveDecision::Retry {
                at: at(0),
                error: "later".into(),
            },
        };
        assert!(
            store
                .finish_directive(&d.id, d.attempt, "r", &decision, at(0))
                .expect("finish")
        );
    }
    let canceled = DirectiveFilter {
        ids: vec![directive_by_key(store, "acme", "canceled").id],
        ..DirectiveFilter::default()
    };
    assert_eq!(
        store.cancel_directives(&canceled, at(0)).expect("cancel"),
        1
    );
    deliveries_in_every_state(store);

    let stats = store.stats().expect("stats");
    let delivery_counts: HashMap<DeliveryState, u64> = stats
        .deliveries
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut expected: HashMap<DeliveryState, u64> =
        DeliveryState::ALL.into_iter().map(|s| (s, 1)).collect();
    expected.insert(DeliveryState::Completed, 2); // and the one that brought the directives
    assert_eq!(delivery_counts, expected);
    let directive_counts: HashMap<DirectiveState, u64> = stats
        .directives
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        directive_counts,
        DirectiveState::ALL.into_iter().map(|s| (s, 1)).collect()
    );
}
