//! The store conformance suite (`sighost_tests::conformance`) against
//! PostgreSQL, each test on a fresh database of its own.
//!
//! The server is the one of `SIGHOST_TEST_POSTGRES` (a URL naming a
//! maintenance database the test user may create databases from), by default
//! `postgres://postgres@127.0.0.1:5432/postgres`. A test that cannot reach it
//! fails, saying so: a store suite that skips would pass without testing.

use sighost::fair::Claim;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sighost::sandbox::RequestedDirective;
use sighost::store::postgres::{PostgresOptions, PostgresStore};
use sighost::store::{
    Decision, DeliveryResult, DeliveryTarget, FinishOutcome, NewSignal, Store, StoreError,
};
use sighost::wake::Wake;
use sighost_tests::conformance::{TestDatabase, at};
use sighost_tests::postgres::{FreshDatabase, admin, with_database};

/// A fresh database per test (see `sighost_tests::postgres`).
struct PostgresDatabase(FreshDatabase);

impl PostgresDatabase {
    fn fresh() -> Self {
        Self(FreshDatabase::new("sighost_test"))
    }
}

impl TestDatabase for PostgresDatabase {
    /// Every call is a new store with its own connections, as another
    /// process would have.
    fn open(&self) -> Arc<dyn Store> {
        let options = PostgresOptions::from_url(&self.0.url).expect("a valid URL");
        Arc::new(PostgresStore::open(options, at(0)).expect("open the PostgreSQL store"))
    }
}

sighost_tests::store_conformance_tests!(PostgresDatabase::fresh());

// ---------------------------------------------------------------------------
// What only PostgreSQL does: several processes, LISTEN/NOTIFY, its text type.

fn signal(tenant: &str) -> NewSignal {
    NewSignal {
        tenant: tenant.into(),
        name: "test.happened".into(),
        payload: json!({"n": 1}),
        ..NewSignal::default()
    }
}

fn target(handler: &str) -> DeliveryTarget {
    DeliveryTarget {
        handler: handler.into(),
        package: None,
        max_attempts: 10,
    }
}

fn completion(
    claimed: &sighost::store::ClaimedDelivery,
    directives: Vec<RequestedDirective>,
    output: &str,
) -> DeliveryResult {
    DeliveryResult {
        delivery_id: claimed.delivery.id,
        handler: claimed.delivery.handler.clone(),
        tenant: claimed.delivery.tenant.clone(),
        attempt: claimed.delivery.attempt,
        worker: "w".into(),
        directive_count: directives.len() as u32,
        decision: Decision::Complete(directives),
        handler_digest: "sha256:00".into(),
        outcome: sighost::store::AttemptOutcome::Ok,
        error: None,
        started_at: at(1),
        duration: Duration::from_millis(1),
        fuel: None,
        output: output.into(),
        details: Default::default(),
    }
}

/// Waits for `wake` at most `limit`; true if it rang.
fn rings_within(wake: &Wake, limit: Duration) -> bool {
    let start = Instant::now();
    wake.wait(limit);
    start.elapsed() < limit
}

#[test]
fn wakes_another_process_when_deliveries_become_due_and_directives_are_written() {
    let database = PostgresDatabase::fresh();
    let (watcher, worker) = (database.open(), database.open());
    let (deliveries, directives) = (Arc::new(Wake::default()), Arc::new(Wake::default()));
    watcher
        .watch(deliveries.clone(), directives.clone())
        .expect("watch");
    worker
        .create_tenant("acme", json!({}), at(0))
        .expect("tenant");
    assert!(
        !rings_within(&deliveries, Duration::from_millis(300)),
        "nothing due yet"
    );

    worker
        .emit(&[(signal("acme"), vec![target("h")])], at(0))
        .expect("emit");
    assert!(
        rings_within(&deliveries, Duration::from_secs(5)),
        "an emit in another process rings the deliveries bell"
    );

    let claimed = worker
        .claim_deliveries(&Claim::new("w", 10, Duration::from_secs(60)), at(1))
        .expect("claim");
    let directive = RequestedDirective {
        id: "dir_1".into(),
        tenant: "acme".into(),
        name: "mail.send".into(),
        payload: json!({}),
        idempotency_key: "k".into(),
        scheduled_at: None,
    };
    let outcomes = worker
        .finish_deliveries(&[completion(&claimed[0], vec![directive], "")], at(2))
        .expect("finish");
    assert!(matches!(outcomes[0], FinishOutcome::Completed { .. }));
    assert!(
        rings_within(&directives, Duration::from_secs(5)),
        "written directives ring the directives bell"
    );
}

#[test]
fn keeps_listening_after_its_connection_is_cut() {
    let database = PostgresDatabase::fresh();
    let (watcher, emitter) = (database.open(), database.open());
    let (deliveries, directives) = (Arc::new(Wake::default()), Arc::new(Wake::default()));
    watcher
        .watch(deliveries.clone(), directives.clone())
        .expect("watch");
    emitter
        .create_tenant("acme", json!({}), at(0))
        .expect("tenant");

    let cut = admin()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND query LIKE 'LISTEN%'",
            &[&database.0.name],
        )
        .expect("terminate the LISTEN connection");
    assert_eq!(cut, 1, "one LISTEN connection");
    assert!(
        rings_within(&deliveries, Duration::from_secs(10)),
        "reconnecting rings every bell, for what may have been missed"
    );
    emitter
        .emit(&[(signal("acme"), vec![target("h")])], at(0))
        .expect("emit");
    assert!(
        rings_within(&deliveries, Duration::from_secs(5)),
        "heard on the new connection"
    );
}

#[test]
fn migrates_once_when_several_processes_start_together() {
    let database = PostgresDatabase::fresh();
    let stores: Vec<Arc<dyn Store>> = std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4).map(|_| scope.spawn(|| database.open())).collect();
        opening
            .into_iter()
            .map(|t| t.join().expect("opened"))
            .collect()
    });
    stores[0]
        .create_tenant("acme", json!({}), at(0))
        .expect("tenant");
    assert!(stores[3].tenant("acme").expect("read").is_some());
    let row = admin_of(&database)
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT version) FROM sighost_schema_migrations",
            &[],
        )
        .expect("count");
    let (rows, versions): (i64, i64) = (row.get(0), row.get(1));
    // schema.sql, fair_share.sql, handler_registry.sql, retention.sql,
    // counts.sql, attempt_details.sql, queue_lag.sql and counts_summed.sql,
    // each applied once.
    assert_eq!((rows, versions), (8, 8));
}

fn admin_of(database: &PostgresDatabase) -> postgres::Client {
    postgres::Client::connect(&database.0.url, postgres::NoTls).expect("connect")
}

#[test]
fn replaces_nul_in_guest_output_and_refuses_it_in_emitted_text() {
    let database = PostgresDatabase::fresh();
    let store = database.open();
    store
        .create_tenant("acme", json!({}), at(0))
        .expect("tenant");
    let refused = store.emit(
        &[(
            NewSignal {
                dedupe_key: Some("a\0b".into()),
                ..signal("acme")
            },
            vec![],
        )],
        at(0),
    );
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );

    let with_nul = NewSignal {
        payload: json!({"text": "a\u{0}b"}),
        ..signal("acme")
    };
    let emitted = store
        .emit(&[(with_nul, vec![target("h")])], at(0))
        .expect("JSON keeps \\u0000 as an escape");
    let claimed = store
        .claim_deliveries(&Claim::new("w", 10, Duration::from_secs(60)), at(1))
        .expect("claim");
    assert_eq!(claimed[0].signal, emitted[0].signal);
    let outcomes = store
        .finish_deliveries(&[completion(&claimed[0], vec![], "x\0y")], at(2))
        .expect("a guest's NUL never fails the batch");
    assert!(matches!(outcomes[0], FinishOutcome::Completed { .. }));
    let attempts = store.attempts(claimed[0].delivery.id).expect("attempts");
    assert_eq!(attempts[0].output, "x\u{FFFD}y");
}

/// Transactions are plain SQL on a pooled connection (`Postgres::transaction`):
/// one that fails halfway must roll back and give the connection back outside
/// any transaction, or the next borrower's writes would join it.
#[test]
fn a_failed_transaction_rolls_back_and_leaves_its_connection_usable() {
    let database = PostgresDatabase::fresh();
    let url = format!("{}?pool_size=1", database.0.url);
    let options = PostgresOptions::from_url(&url).expect("a valid URL");
    let store = PostgresStore::open(options, at(0)).expect("open");
    store
        .create_tenant("acme", json!({}), at(0))
        .expect("tenant");
    // The server refuses the second signal's key (a NUL) inside the
    // transaction: neither signal stays.
    let failed = store.emit(
        &[
            (signal("acme"), vec![target("h")]),
            (
                NewSignal {
                    dedupe_key: Some("a\0b".into()),
                    ..signal("acme")
                },
                vec![target("h")],
            ),
        ],
        at(0),
    );
    assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
    assert!(
        store
            .signals(&Default::default())
            .expect("the one connection reads again")
            .is_empty(),
        "a failed emit writes nothing"
    );
    store
        .emit(&[(signal("acme"), vec![target("h")])], at(1))
        .expect("the one connection writes again");
    let mut other = admin_of(&database);
    let committed = other
        .query_one("SELECT COUNT(*) FROM signals", &[])
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(committed, 1, "the second emit committed on its own");
}

#[test]
fn replaces_the_database_of_a_url() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres?sslmode=disable", "t1"),
        "postgres://u@h:5432/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "t1"), "postgres://u@h/t1");
}

#[test]
fn prunes_from_one_process_at_a_time() {
    use sighost::store::{PruneCursor, PruneKind, PruneRule, TenantScope};
    let database = PostgresDatabase::fresh();
    let store = database.open();
    let rule = PruneRule {
        kind: PruneKind::Signals,
        older_than: at(1),
        tenants: TenantScope::AllBut(Vec::new()),
    };
    let mut other = admin_of(&database);
    let mut pruning = other.transaction().expect("begin");
    pruning
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&sighost::store::postgres::PRUNE_LOCK],
        )
        .expect("take the prune lock");
    let batch = store
        .prune_batch(&rule, PruneCursor::START, 10, at(1))
        .expect("a batch");
    assert_eq!(batch, None, "another process holds the turn");
    pruning.rollback().expect("end the other prune");
    let batch = store
        .prune_batch(&rule, PruneCursor::START, 10, at(1))
        .expect("a batch");
    assert!(batch.is_some(), "the turn is free again: {batch:?}");
}

#[test]
fn folds_the_counts_of_connections_gone_and_keeps_them_right() {
    let database = PostgresDatabase::fresh();
    {
        let gone = database.open();
        gone.create_tenant("acme", json!({}), at(0))
            .expect("tenant");
        let batch: Vec<_> = (0..3)
            .map(|_| (signal("acme"), vec![target("h")]))
            .collect();
        gone.emit(&batch, at(1)).expect("emit");
    }
    let mut admin = admin_of(&database);
    let slots = |admin: &mut postgres::Client| -> Vec<i32> {
        admin
            .query("SELECT DISTINCT slot FROM queue_counts ORDER BY slot", &[])
            .expect("slots")
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let written = slots(&mut admin);
    assert!(written.iter().all(|slot| *slot != 0), "{written:?}");
    // Its connections close as the store drops; wait until they are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&written],
            )
            .expect("activity")
            .get(0);
        if alive == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the old connections stay open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = database.open();
    let before = store.stats().expect("stats").deliveries;
    store.fold_counts().expect("fold");
    assert_eq!(slots(&mut admin), [0], "folded into slot 0");
    assert_eq!(store.stats().expect("stats").deliveries, before);
}

/// The rescue commits on its own, before the claim's transaction: a claim
/// that then fails still counts the leases it took back.
#[test]
fn counts_the_leases_a_rescue_took_back_when_its_claim_then_fails() {
    let database = PostgresDatabase::fresh();
    let store = database.open();
    store
        .create_tenant("acme", json!({}), at(0))
        .expect("tenant");
    store
        .emit(&[(signal("acme"), vec![target("h")])], at(0))
        .expect("emit");
    let lease = Duration::from_secs(10);
    let claimed = store
        .claim_deliveries(&Claim::new("w1", 10, lease), at(1))
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // The fair claim reads the schedule's clock row after the rescue.
    admin_of(&database)
        .batch_execute("DELETE FROM fair_clocks")
        .expect("break the claim");
    let failed = store.claim_deliveries(&Claim::new("w2", 10, lease), at(100));
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.leases_rescued().deliveries, 1);
    let rescued = store
        .deliveries(&Default::default())
        .expect("deliveries")
        .remove(0);
    assert_eq!(
        rescued.state,
        sighost::store::DeliveryState::Retryable,
        "the rescue committed: {rescued:?}"
    );
}
