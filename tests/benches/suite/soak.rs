//! Weeks of traffic through the store with retention on: a pinned clock
//! advances a day at a time, each day's 200,000 deliveries run (claims,
//! results, directives executed) and the day ends with a prune pass, as the
//! host's pruner would run it (`sighost_tests::soak`). Reported per
//! simulated day: the database's size, the rows kept, what the prune
//! deleted and how long it took. One run: it is a trajectory, not a rate.

use std::fmt::Write as _;
use std::time::Instant;

use sighost::retention::Retention;
use sighost::store::Store;
use sighost::store::postgres::{PostgresOptions, PostgresStore};
use sighost::store::sqlite::{SqliteOptions, SqliteStore};
use sighost_tests::conformance::at;
use sighost_tests::postgres::FreshDatabase;
use sighost_tests::soak;

use crate::stats::number;

pub const DELIVERIES_PER_DAY: u64 = 200_000;
/// Two weeks: the longest default retention (7 days) passes, and the week
/// after shows the plateau. A day takes 1.5 to 2 minutes here, most of it the
/// directive runner's results, one transaction each; 30 days would be an
/// hour of the suite.
const SQLITE_DAYS: u32 = 14;
/// On PostgreSQL the directive runner's results are one commit each (a
/// batched runner is issue work still open), which makes a 200,000-a-day
/// month take hours here: ten days of a tenth of it show the same plateau.
const POSTGRES_DAYS: u32 = 10;
const POSTGRES_PER_DAY: u64 = 20_000;

struct Day {
    figures: soak::SoakDay,
    /// The database, and beside it its write-ahead log (SQLite).
    bytes: u64,
    log_bytes: u64,
    /// The day's work (emit, claims, results, directives), and its prune.
    work_s: f64,
    prune_s: f64,
}

/// Runs the days on `store`, reading its size with `size` after each.
fn soak(
    label: &str,
    store: &dyn Store,
    days: u32,
    per_day: u64,
    mut size: impl FnMut() -> (u64, u64),
) -> Vec<Day> {
    soak::prepare(store);
    let retention = Retention::default();
    (0..days)
        .map(|day| {
            let started = Instant::now();
            let figures = soak::run_day(store, &retention, day, per_day);
            let took = started.elapsed().as_secs_f64();
            let prune_s = figures.prune_took.as_secs_f64();
            let (bytes, log_bytes) = size();
            let day = Day {
                bytes,
                log_bytes,
                work_s: took - prune_s,
                prune_s,
                figures,
            };
            eprintln!(
                "  {label} day {}: {} MiB, {} deliveries kept, pruned {} in {:.1} s",
                day.figures.day,
                day.bytes >> 20,
                day.figures.deliveries,
                day.figures.pruned.total(),
                day.prune_s
            );
            day
        })
        .collect()
}

fn table(days: &[Day]) -> String {
    let mut text = String::from(
        "| day | database (MiB) | its WAL (MiB) | deliveries kept | of which pending | directives kept | pruned rows | prune (s) | the day's work (s) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for d in days {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            d.figures.day + 1,
            number((d.bytes as f64) / f64::from(1 << 20), 1),
            number((d.log_bytes as f64) / f64::from(1 << 20), 1),
            number(d.figures.deliveries as f64, 0),
            number(d.figures.pending as f64, 0),
            number(d.figures.directives as f64, 0),
            number(d.figures.pruned.total() as f64, 0),
            d.prune_s,
            d.work_s
        );
    }
    text
}

/// Whether every pending delivery made was still there at the end.
fn nothing_pending_lost(days: &[Day]) -> bool {
    let made: u64 = days.iter().map(|d| d.figures.retried).sum();
    days.last().is_some_and(|d| d.figures.pending == made)
}

pub fn soak_section() -> String {
    let dir = std::env::temp_dir().join(format!("sighost-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("sighost.db");
    let sqlite = SqliteStore::open(SqliteOptions::new(&file), at(0)).expect("open SQLite");
    let with_wal = |path: &std::path::Path| {
        let len = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        (len(path), len(&path.with_extension("db-wal")))
    };
    let sqlite_days = soak("sqlite", &sqlite, SQLITE_DAYS, DELIVERIES_PER_DAY, || {
        with_wal(&file)
    });
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);

    let database = FreshDatabase::new("sighost_bench_soak");
    let options = PostgresOptions::from_url(&database.url).expect("a URL");
    let postgres = PostgresStore::open(options, at(0)).expect("open PostgreSQL");
    let mut admin = postgres::Client::connect(&database.url, postgres::NoTls).expect("connect");
    let postgres_days = soak(
        "postgres",
        &postgres,
        POSTGRES_DAYS,
        POSTGRES_PER_DAY,
        || {
            // A simulated day lasts half a minute here: autovacuum, which in
            // a real day would have run many times, is done by hand.
            admin.batch_execute("VACUUM").expect("vacuum");
            let size = admin
                .query_one("SELECT pg_database_size(current_database())", &[])
                .map(|row| row.get::<_, i64>(0).max(0) as u64)
                .unwrap_or(0);
            (size, 0)
        },
    );
    drop(postgres);
    drop(database);

    let mut text = String::from("\n## 12. Weeks with retention\n\n");
    let _ = writeln!(
        text,
        "A pinned clock advances one day at a time; each day {} deliveries (two handlers per \
         signal, every signal with a dedupe key) are claimed and finished through the store — \
         one in fifty discarded, one in fifty put in a retry far in the future (pending for \
         the whole run), the rest completed with one directive, which the runner's claims \
         execute (one in twenty fails) — and the day ends with a prune pass at the default \
         retention (completed and succeeded 24 h, discarded and failed 7 days, pruned \
         directives' keys 7 days), as `sighost run` does every minute. The size is the \
         database file (SQLite; its WAL apart, whose size follows the checkpointer more than \
         the data) or `pg_database_size` (PostgreSQL), after the \
         day's prune. No wasm runs: this is the store's own.\n",
        number(DELIVERIES_PER_DAY as f64, 0)
    );
    let level = |days: &[Day], from: usize| {
        let (a, b) = (days[from].bytes as f64, days[days.len() - 1].bytes as f64);
        format!(
            "{} MiB on day {} and {} MiB on day {}",
            number(a / f64::from(1 << 20), 1),
            from + 1,
            number(b / f64::from(1 << 20), 1),
            days.len()
        )
    };
    let _ = writeln!(
        text,
        "### SQLite, {SQLITE_DAYS} days\n\n{}\nOnce the longest retention has passed the size \
         levels off: {}. Every pending delivery is still there at the end: {}.\n",
        table(&sqlite_days),
        level(&sqlite_days, 8),
        if nothing_pending_lost(&sqlite_days) {
            "yes"
        } else {
            "**no**"
        }
    );
    let _ = writeln!(
        text,
        "### PostgreSQL, {POSTGRES_DAYS} days at {} deliveries a day\n\n{}\nAfter the week: {}. Every pending delivery \
         is still there at the end: {}. PostgreSQL's size is what autovacuum has made reusable, \
         not given back: its files do not shrink without `VACUUM FULL`. A plain `VACUUM` runs \
         after each day's prune, standing for the autovacuum runs of a real day.\n",
        number(POSTGRES_PER_DAY as f64, 0),
        table(&postgres_days),
        level(&postgres_days, 7),
        if nothing_pending_lost(&postgres_days) {
            "yes"
        } else {
            "**no**"
        }
    );
    text
}
