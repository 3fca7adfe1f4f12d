//! What `/metrics`, `sighost status` and the admin status read
//! (`Store::stats`) with ten million deliveries in the store, beside the
//! `GROUP BY` over the queue they read before counts were kept; and what
//! keeping the counts costs the store's own throughput (the counting
//! triggers dropped from a second, otherwise identical database).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use sighost::fair::Claim;
use sighost::store::postgres::{PostgresOptions, PostgresStore};
use sighost::store::sqlite::{SqliteOptions, SqliteStore};
use sighost::store::{Decision, DeliveryTarget, NewSignal, Store};
use sighost_tests::conformance::{self, at};
use sighost_tests::postgres::FreshDatabase;

use crate::stats::{Runs, number};

const ROWS: u64 = 10_000_000;
const TENANTS: u64 = 20;
const HANDLERS: u64 = 10;
const SCRAPES: usize = 21;
/// Deliveries a throughput run drains.
const DRAIN: usize = 50_000;

const TRIGGERS: [(&str, &str); 6] = [
    ("deliveries_counted_in", "deliveries"),
    ("deliveries_counted_moved", "deliveries"),
    ("deliveries_counted_out", "deliveries"),
    ("directives_counted_in", "directives"),
    ("directives_counted_moved", "directives"),
    ("directives_counted_out", "directives"),
];

/// The per-(handler, tenant, state) count as it was read before counts
/// were kept: every row of the queue, at every scrape.
const OLD_BREAKDOWN: &str =
    "SELECT handler, tenant, state, COUNT(*) FROM deliveries GROUP BY handler, tenant, state";

/// Milliseconds per `stats()` over `SCRAPES` calls.
fn scrapes(store: &dyn Store) -> Runs {
    let _ = store.stats().expect("stats");
    Runs::from_values(
        (0..SCRAPES)
            .map(|_| {
                let started = Instant::now();
                let stats = store.stats().expect("stats");
                let took = started.elapsed().as_secs_f64() * 1000.0;
                assert!(!stats.handlers.is_empty());
                took
            })
            .collect(),
    )
}

/// Deliveries/s of one thread emitting `DRAIN` signals and then claiming and
/// completing them (one directive each), in batches, through `store`.
fn drain_rate(store: &dyn Store) -> f64 {
    store
        .create_tenant("bench", json!({}), at(0))
        .expect("tenant");
    let targets = vec![DeliveryTarget {
        handler: "h".into(),
        package: None,
        max_attempts: 10,
    }];
    let started = Instant::now();
    let signals: Vec<(NewSignal, Vec<DeliveryTarget>)> = (0..DRAIN)
        .map(|i| {
            let signal = NewSignal {
                tenant: "bench".into(),
                name: "bench.counted".into(),
                payload: json!({ "i": i }),
                ..NewSignal::default()
            };
            (signal, targets.clone())
        })
        .collect();
    for chunk in signals.chunks(1_000) {
        store.emit(chunk, at(1)).expect("emit");
    }
    let mut done = 0;
    while done < DRAIN {
        let claimed = store
            .claim_deliveries(&Claim::new("bench", 256, Duration::from_secs(300)), at(2))
            .expect("claim");
        assert!(!claimed.is_empty(), "{done} of {DRAIN} drained");
        let results: Vec<_> = claimed
            .iter()
            .map(|c| {
                let directive =
                    conformance::requested("bench", &c.signal.id, json!({"s": c.signal.id}));
                conformance::result(c, "bench", Decision::Complete(vec![directive]), at(2))
            })
            .collect();
        store.finish_deliveries(&results, at(2)).expect("finish");
        done += claimed.len();
    }
    DRAIN as f64 / started.elapsed().as_secs_f64()
}

struct Figures {
    fill_s: f64,
    scrape_ms: Runs,
    old_ms: Runs,
    with_counts: Runs,
    without_counts: Runs,
}

fn sqlite_figures(runs: usize) -> Figures {
    let dir = std::env::temp_dir().join(format!("sighost-bench-counts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = |name: &str| {
        let file = dir.join(name).join("sighost.db");
        let store = SqliteStore::open(SqliteOptions::new(&file), at(0)).expect("open SQLite");
        let raw = rusqlite::Connection::open(&file).expect("a raw connection");
        raw.busy_timeout(Duration::from_secs(60))
            .expect("busy timeout");
        (store, raw)
    };
    let (store, raw) = open("big");
    eprintln!(
        "  sqlite: inserting {} deliveries …",
        number(ROWS as f64, 0)
    );
    let started = Instant::now();
    raw.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
         INSERT INTO deliveries (signal_id, tenant, handler, state, max_attempts, scheduled_at, \
             depth, inserted_at, finished_at) \
         SELECT 'signal-' || (i / 2), 'tenant_' || (i % {TENANTS}), 'handler_' || (i % {HANDLERS}), \
             CASE WHEN i % 100 = 0 THEN 'available' WHEN i % 100 = 1 THEN 'discarded' \
                  ELSE 'completed' END, \
             10, 0, 0, 0, CASE WHEN i % 100 = 0 THEN NULL ELSE 0 END FROM n"
    ))
    .expect("fill");
    let fill_s = started.elapsed().as_secs_f64();
    let scrape_ms = scrapes(&store);
    let old_ms = Runs::collect("sqlite: the old GROUP BY, ms", runs, || {
        let started = Instant::now();
        let mut statement = raw.prepare(OLD_BREAKDOWN).expect("prepare");
        let groups = statement.query_map([], |_| Ok(())).expect("query").count();
        assert!(groups > 0);
        started.elapsed().as_secs_f64() * 1000.0
    });
    drop((store, raw));
    let (mut with_counts, mut without_counts) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (store, _raw) = open(&format!("with-{run}"));
        with_counts.push(drain_rate(&store));
        let (store, raw) = open(&format!("without-{run}"));
        for (trigger, _) in TRIGGERS {
            raw.execute_batch(&format!("DROP TRIGGER {trigger}"))
                .expect("drop a trigger");
        }
        without_counts.push(drain_rate(&store));
        eprintln!(
            "  sqlite: {:.0} deliveries/s with counts, {:.0} without",
            with_counts[run], without_counts[run]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Figures {
        fill_s,
        scrape_ms,
        old_ms,
        with_counts: Runs::from_values(with_counts),
        without_counts: Runs::from_values(without_counts),
    }
}

fn postgres_figures(runs: usize) -> Figures {
    let open = || {
        let database = FreshDatabase::new("sighost_bench_counts");
        let options = PostgresOptions::from_url(&database.url).expect("a URL");
        let store = PostgresStore::open(options, at(0)).expect("open PostgreSQL");
        let raw = postgres::Client::connect(&database.url, postgres::NoTls).expect("connect");
        (database, store, raw)
    };
    let (database, store, mut raw) = open();
    eprintln!(
        "  postgres: inserting {} deliveries …",
        number(ROWS as f64, 0)
    );
    let started = Instant::now();
    let chunk = 1_000_000;
    for first in (1..=ROWS).step_by(chunk as usize) {
        raw.batch_execute(&format!(
            "INSERT INTO deliveries (signal_id, tenant, handler, state, max_attempts, \
                 scheduled_at, depth, inserted_at, finished_at) \
             SELECT 'signal-' || (i / 2), 'tenant_' || (i % {TENANTS}), 'handler_' || (i % {HANDLERS}), \
                 CASE WHEN i % 100 = 0 THEN 'available' WHEN i % 100 = 1 THEN 'discarded' \
                      ELSE 'completed' END, \
                 10, now(), 0, now(), CASE WHEN i % 100 = 0 THEN NULL ELSE now() END \
             FROM generate_series({first}, {}) AS i",
            (first + chunk - 1).min(ROWS)
        ))
        .expect("fill");
    }
    raw.batch_execute("VACUUM ANALYZE deliveries")
        .expect("vacuum");
    let fill_s = started.elapsed().as_secs_f64();
    let scrape_ms = scrapes(&store);
    let old_ms = Runs::collect("postgres: the old GROUP BY, ms", runs, || {
        let started = Instant::now();
        let groups = raw.query(OLD_BREAKDOWN, &[]).expect("query").len();
        assert!(groups > 0);
        started.elapsed().as_secs_f64() * 1000.0
    });
    drop((store, raw, database));
    let (mut with_counts, mut without_counts) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (_database, store, _raw) = open();
        with_counts.push(drain_rate(&store));
        drop((store, _database));
        let (_database, store, mut raw) = open();
        for (trigger, table) in TRIGGERS {
            raw.batch_execute(&format!("DROP TRIGGER {trigger} ON {table}"))
                .expect("drop a trigger");
        }
        without_counts.push(drain_rate(&store));
        eprintln!(
            "  postgres: {:.0} deliveries/s with counts, {:.0} without",
            with_counts[run], without_counts[run]
        );
    }
    Figures {
        fill_s,
        scrape_ms,
        old_ms,
        with_counts: Runs::from_values(with_counts),
        without_counts: Runs::from_values(without_counts),
    }
}

pub fn counts_section(runs: usize) -> String {
    let sqlite = sqlite_figures(runs);
    let postgres = postgres_figures(runs);
    let mut text = String::from("\n## 13. Counts at ten million deliveries\n\n");
    let _ = writeln!(
        text,
        "`Store::stats`, which `/metrics`, `sighost status` and `GET /v1/admin/status` read, \
         with {} deliveries in the store ({TENANTS} tenants × {HANDLERS} handlers; 98% \
         completed, 1% discarded, 1% available), {SCRAPES} calls; beside it the per-handler, \
         per-tenant `GROUP BY` over the queue that the same figures took before counts were \
         kept. Then one thread's store-alone throughput (emit {}, claim and complete each with \
         one directive, batches of 256) on a fresh database with the counting triggers and on \
         one with them dropped, alternating.\n",
        number(ROWS as f64, 0),
        number(DRAIN as f64, 0)
    );
    text.push_str(
        "| store | fill (s) | `stats()` (ms) | old `GROUP BY` (ms) | deliveries/s with counts | without | cost |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, f) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
        let _ = writeln!(
            text,
            "| {name} | {:.0} | {} | {} | {} | {} | {:.0}% |",
            f.fill_s,
            f.scrape_ms.show(2),
            f.old_ms.show(0),
            f.with_counts.show(0),
            f.without_counts.show(0),
            (1.0 - f.with_counts.median() / f.without_counts.median()) * 100.0
        );
    }
    let _ = writeln!(
        text,
        "\nGoal ≤ 10 ms per scrape at ten million deliveries: SQLite {:.2} ms, PostgreSQL {:.2} ms \
         (medians).",
        sqlite.scrape_ms.median(),
        postgres.scrape_ms.median()
    );
    text
}
