//! peer-bench: throughput of the apalis job queue (apalis 1.0.0 with
//! apalis-sqlite 1.0.0 or apalis-postgres 1.0.0) on no-op native jobs, so that
//! sighost's benchmark report can print it beside its own figures.
//!
//! ```text
//! peer-bench sqlite   --db <file>  --queued <N> --window-secs <S> [--concurrency <C>]
//! peer-bench postgres --url <url>  --queued <N> --window-secs <S> [--concurrency <C>]
//! ```
//! Tuning only (not part of the report's contract): `--batch <B>` (jobs a
//! worker fetches per poll), `--enqueue-chunk <K>` (jobs per `push_bulk`) and
//! `--lock-tasks <true|false>`; the defaults are in `SQLITE_DEFAULTS` and
//! `POSTGRES_DEFAULTS`.
//!
//! What it does: enqueue N jobs with `push_bulk` (no worker running), then
//! start C apalis workers whose handler only counts, and time from their start
//! until the database holds all N as `Done` (or the window closes). Progress
//! goes to stderr, one JSON line to stdout.
//!
//! `--concurrency` is the number of apalis workers. A worker is one future
//! that fetches a batch (one transaction), runs its jobs inside that future and
//! writes their acks in one transaction before it fetches again. A no-op job
//! finishes on its first poll, so a per-worker in-flight limit
//! (`WorkerBuilderExt::concurrency`: tried 1, 32, 100,000) changed nothing
//! beyond noise; more workers is what overlaps the database round trips.
//!
//! # apalis-sqlite's two scans (why the SQLite defaults look odd)
//! - The ack (`queries/task/ack.sql`, `UPDATE Jobs … FROM json_each(?)`) is
//!   planned as: every row with `lock_by = <this worker>` (done ones too:
//!   `lock_by` is never cleared) × a re-parse of the batch's JSON. Its cost
//!   grows with the jobs that worker has already done, so one worker's drain
//!   rate falls as it runs (quadratic overall), and a long ack holds the write
//!   lock for seconds (sqlx's 5 s busy timeout then kills other workers with
//!   "database is locked"; hence a 60 s one). Spreading the jobs over many
//!   workers keeps each worker's share small, hence 256 workers. `ANALYZE`
//!   after the enqueue did not change the plan.
//! - The lock (`lock_tasks = true`, `queries/task/lock.sql`) is planned as a
//!   walk over every Pending/Queued/Failed job: ~0.14 s per batch with 1M
//!   queued. Hence `lock_tasks = false` for SQLite.
//!
//! # Tuning record (drain jobs/s; 2-core machine shared with other builds and
//! # tests, so ±30 % noise; "cut" = the 20 s window ended the run)
//! SQLite, N = 20,000, lock_tasks = true unless said:
//!
//! | workers | batch 10 | batch 100         | batch 1000 |
//! |---------|----------|-------------------|------------|
//! | 1       |          | 495 cut           | 450 cut    |
//! | 2       |          | 500–700 cut       |            |
//! | 8       |          | 1,014             |            |
//! | 32      | 3,005    | 2,318             | 1,045      |
//! | 64      | 2,886    | 3,245             | 600 cut    |
//! | 128     | 3,453    | 4,404 (lock off: 4,544) | 1,630 |
//! | 256     | 3,312    | 3,806             |            |
//!
//! SQLite, batch 50, lock off, N = 20,000: 1 → 515 cut, 2 → 630 cut,
//! 8 → 1,344, 32 → 2,952, 128 → 5,896, 256 → 2,733 (worker start-up shows at
//! this N). N = 100,000 (30 s window): 64/b50 → 2,286 cut, 128/b50 → 3,136 cut,
//! 256/b50 → 4,882–5,294, 512/b50 → 5,178, 256/b20 → 5,028, 512/b20 → 5,445;
//! lock on: 256/b50 → 3,025 cut, 256/b100 → 3,410. Chosen: 256 workers,
//! batch 50, lock off.
//!
//! PostgreSQL (lock_tasks on/off made no difference: 40.0k/39.0k, 40.4k/39.5k):
//!
//! | N       | workers × batch → drain/s                                        |
//! |---------|------------------------------------------------------------------|
//! | 20,000  | 1×100 6.4k, 1×1000 17.6k, 2×100 9.9k, 2×1000 24.0k, 8×100 19.4k, |
//! |         | 8×1000 26.4k–32.7k, 32×100 14.9k, 32×1000 21.8k                  |
//! | 100,000 | 2×1000 15.0k, 4×1000 21.4k, 8×1000 23.3k, 8×500 16.1k,            |
//! |         | 2×5000 26.9k–28.6k, 4×5000 30.3k–40.4k, 8×5000 29.6k–31.8k,       |
//! |         | 4×10000 31.2k–31.5k, 8×2000 31.5k–31.8k                          |
//!
//! Chosen: 4 workers, batch 5000.
//!
//! Enqueue (`push_bulk` chunk → jobs/s): SQLite, N = 100,000: 10 → 19–21k,
//! 30 → 23–25k, 100 → 38–42k, 300 → 32k, 1000 → 31–32k, 10,000 → 18–20k,
//! 100,000 → 18k. PostgreSQL, N = 200,000: 1000 → 37k, 2000 → 52k,
//! 5000 → 62k, 10,000 → 91–106k, 20,000 → 104k, 100,000 → 98k.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Deserialize, Serialize};
use sqlx::{
    Connection, PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::{sync::watch, task::JoinSet};

/// Versions as resolved in bench/peers/Cargo.lock (pinned with `=` in Cargo.toml).
const APALIS_VERSION: &str = "1.0.0";
const SQLITE_CRATE: &str = "apalis-sqlite 1.0.0";
const POSTGRES_CRATE: &str = "apalis-postgres 1.0.0";

/// Defaults, the best of the tuning runs above.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Number of apalis workers (`--concurrency`).
    workers: usize,
    /// Jobs a worker fetches per poll (`Config::batch_size`).
    batch: usize,
    /// Jobs per `push_bulk` call, each one transaction: SQLite runs one
    /// prepared INSERT per row in it (100-job calls were the fastest),
    /// PostgreSQL one `INSERT … SELECT unnest(…)` for the lot.
    enqueue_chunk: usize,
    /// `Config::lock_tasks`: mark each job Running before it runs. Off for
    /// SQLite, where apalis-sqlite's lock UPDATE walks every pending job (see
    /// the top); jobs stay safe without it (a fetched job is `Queued` with
    /// `lock_by` set, and orphan recovery re-enqueues `Queued` jobs too).
    /// apalis-postgres skips the lock of a job whose ack is in the same batch,
    /// so the setting changes nothing there; it keeps apalis's default.
    lock_tasks: bool,
}

const SQLITE_DEFAULTS: Tuning = Tuning {
    workers: 256,
    batch: 50,
    enqueue_chunk: 100,
    lock_tasks: false,
};
const POSTGRES_DEFAULTS: Tuning = Tuning {
    workers: 4,
    batch: 5000,
    enqueue_chunk: 10_000,
    lock_tasks: true,
};
/// How often an idle worker looks for new jobs. With every job enqueued before
/// the workers start it never matters here (a worker refetches at once while
/// fetches return jobs); it is set because without a poll strategy an idle
/// apalis worker only wakes on its 30-second heartbeat.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// sqlx's default of 5 s is too short: apalis-sqlite's ack UPDATE can hold the
/// write lock for seconds (see the note at the top), and a worker whose fetch
/// times out on the lock dies with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);
const QUEUE: &str = "peer-bench";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The job: a tiny serde struct, JSON-encoded by apalis.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Noop {
    n: u64,
}

/// The handler does nothing but count.
async fn noop(job: Noop, handled: Data<Arc<AtomicU64>>) -> Result<(), BoxDynError> {
    std::hint::black_box(job.n);
    handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[derive(Debug)]
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug)]
struct Args {
    target: Target,
    queued: u64,
    window: Duration,
    workers: usize,
    batch: usize,
    enqueue_chunk: usize,
    lock_tasks: bool,
}

const USAGE: &str = "usage:
  peer-bench sqlite   --db <file path>     --queued <N> --window-secs <S> [--concurrency <C>]
  peer-bench postgres --url <postgres url> --queued <N> --window-secs <S> [--concurrency <C>]
  (tuning: [--batch <B>] [--enqueue-chunk <K>] [--lock-tasks <true|false>])";

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let kind = argv.next().ok_or("missing backend (sqlite or postgres)")?;
    let (mut db, mut url, mut queued, mut window) = (None, None, None, None);
    let (mut workers, mut batch, mut chunk, mut lock_tasks) = (None, None, None, None);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("bad value {value:?} for {flag}: {e}");
        match flag.as_str() {
            "--db" => db = Some(PathBuf::from(&value)),
            "--url" => url = Some(value),
            "--queued" => queued = Some(value.parse::<u64>().map_err(|e| bad(&e))?),
            "--window-secs" => window = Some(value.parse::<f64>().map_err(|e| bad(&e))?),
            "--concurrency" => workers = Some(value.parse().map_err(|e| bad(&e))?),
            "--batch" => batch = Some(value.parse().map_err(|e| bad(&e))?),
            "--lock-tasks" => lock_tasks = Some(value.parse().map_err(|e| bad(&e))?),
            "--enqueue-chunk" => chunk = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let target = match kind.as_str() {
        "sqlite" if url.is_none() => Target::Sqlite(db.ok_or("sqlite needs --db <file path>")?),
        "postgres" if db.is_none() => Target::Postgres(url.ok_or("postgres needs --url <url>")?),
        "sqlite" | "postgres" => return Err("--db is for sqlite, --url for postgres".into()),
        _ => return Err(format!("unknown backend {kind:?} (sqlite or postgres)")),
    };
    let default = match target {
        Target::Sqlite(_) => SQLITE_DEFAULTS,
        Target::Postgres(_) => POSTGRES_DEFAULTS,
    };
    let workers = workers.unwrap_or(default.workers);
    let batch = batch.unwrap_or(default.batch);
    let enqueue_chunk = chunk.unwrap_or(default.enqueue_chunk);
    let lock_tasks = lock_tasks.unwrap_or(default.lock_tasks);
    let queued = queued.ok_or("missing --queued <N>")?;
    let window = window.ok_or("missing --window-secs <S>")?;
    if queued == 0 || workers == 0 || batch == 0 || enqueue_chunk == 0 {
        return Err("--queued, --concurrency, --batch, --enqueue-chunk must be at least 1".into());
    }
    let window = Duration::try_from_secs_f64(window)
        .ok()
        .filter(|w| !w.is_zero())
        .ok_or("--window-secs must be a positive number")?;
    Ok(Args {
        target,
        queued,
        window,
        workers,
        batch,
        enqueue_chunk,
        lock_tasks,
    })
}

/// The database, for counting committed jobs behind apalis's back.
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// Jobs whose `Done` status is committed.
    async fn done(&self) -> Result<u64, Error> {
        self.count(true).await
    }

    /// Committed jobs: all of them, or only those `Done`.
    async fn count(&self, only_done: bool) -> Result<u64, Error> {
        let n: i64 = match (self, only_done) {
            (Db::Sqlite(pool), true) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'")
                    .fetch_one(pool)
                    .await?
            }
            (Db::Sqlite(pool), false) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM Jobs")
                    .fetch_one(pool)
                    .await?
            }
            (Db::Postgres(pool), true) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done'")
                    .fetch_one(pool)
                    .await?
            }
            (Db::Postgres(pool), false) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs")
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(n as u64)
    }
}

/// A fresh SQLite file with apalis's schema, and a pool on it.
async fn open_sqlite(path: &Path, connections: u32) -> Result<SqlitePool, Error> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove old {}: {e}", Path::new(&p).display()).into());
            }
            _ => {}
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Journal mode WAL and synchronous = NORMAL, as sighost's SQLite store
    // uses, set on every connection of the pool; temp_store = MEMORY as both
    // sighost and apalis's `setup` set it. The page cache is sighost's 16 MiB
    // per connection, not the 64,000 pages (250 MiB) `setup` gives its one
    // connection: with hundreds of pooled connections that would be tens of GiB.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .pragma("temp_store", "MEMORY")
        .pragma("cache_size", "-16384");
    // `setup` also runs `PRAGMA synchronous = OFF` on whichever pooled
    // connection it gets; run it on a throwaway one-connection pool so that
    // no connection the benchmark uses keeps that setting.
    let setup_pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    SqliteStorage::setup(&setup_pool)
        .await
        .map_err(|e| format!("apalis-sqlite setup failed: {e}"))?;
    setup_pool.close().await;
    Ok(SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await?)
}

async fn open_postgres(url: &str, connections: u32) -> Result<PgPool, Error> {
    // One plain connection first: a pool only reports "timed out" when the
    // server is not there, this says why.
    let probe = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    probe.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    PostgresStorage::setup(&pool)
        .await
        .map_err(|e| format!("apalis-postgres setup failed: {e}"))?;
    Ok(pool)
}

/// Pushes `$n` jobs through `$sink` in `$chunk`-sized `push_bulk`
/// calls; evaluates to the seconds it took.
macro_rules! enqueue {
    ($sink:expr, $n:expr, $chunk:expr) => {{
        let start = Instant::now();
        let mut next = 0u64;
        while next < $n {
            let end = ($n).min(next + $chunk as u64);
            let jobs: Vec<Noop> = (next..end).map(|n| Noop { n }).collect();
            $sink
                .push_bulk(jobs)
                .await
                .map_err(|e| format!("enqueue failed: {e}"))?;
            next = end;
            if end % 100_000 == 0 {
                eprintln!("enqueued {end} ({:.1} s)", start.elapsed().as_secs_f64());
            }
        }
        start.elapsed().as_secs_f64()
    }};
}

/// Spawns `$workers` apalis workers, each on its own backend value made by
/// `$backend`, all stopping when `$stop` changes.
macro_rules! spawn_workers {
    ($set:expr, $workers:expr, $backend:expr, $handled:expr, $stop:expr) => {
        for i in 0..$workers {
            let worker = WorkerBuilder::new(format!("peer-bench-{i}"))
                .backend($backend)
                .data($handled.clone())
                .build(noop);
            let mut stop = $stop.clone();
            $set.spawn(worker.run_until(async move {
                let _ = stop.changed().await;
                Ok::<(), std::io::Error>(())
            }));
        }
    };
}

struct Outcome {
    enqueue_s: f64,
    done: u64,
    seconds: f64,
    window_cut: bool,
}

async fn run(args: &Args) -> Result<Outcome, Error> {
    let n = args.queued;
    let handled = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut workers = JoinSet::new();
    // One connection per worker, and two more: the monitor's counts, the sink.
    let connections = args.workers as u32 + 2;

    let (db, enqueue_s, start) = match &args.target {
        Target::Sqlite(path) => {
            let pool = open_sqlite(path, connections).await?;
            let config = apalis_sqlite::Config::default()
                .queue(QUEUE)
                .batch_size(args.batch)
                .lock_tasks(args.lock_tasks);
            let db = Db::Sqlite(pool.clone());
            check_empty(&db).await?;
            let mut sink = SqliteStorage::<Noop>::new(&pool).with_config(config.clone());
            let enqueue_s = enqueue!(sink, n, args.enqueue_chunk);
            let start = Instant::now();
            spawn_workers!(
                workers,
                args.workers,
                SqliteStorage::<Noop>::new(&pool)
                    .with_config(config.clone())
                    .poll_with_interval(POLL_INTERVAL),
                handled,
                stop_rx
            );
            (db, enqueue_s, start)
        }
        Target::Postgres(url) => {
            let pool = open_postgres(url, connections).await?;
            let config = apalis_postgres::Config::default()
                .queue(QUEUE)
                .batch_size(args.batch)
                .lock_tasks(args.lock_tasks);
            let db = Db::Postgres(pool.clone());
            check_empty(&db).await?;
            let mut sink = PostgresStorage::<Noop>::new(&pool).with_config(config.clone());
            let enqueue_s = enqueue!(sink, n, args.enqueue_chunk);
            let start = Instant::now();
            // Plain polling: `with_pubsub` (LISTEN/NOTIFY) only shortens the
            // wait of an idle worker, and these never idle while jobs remain.
            spawn_workers!(
                workers,
                args.workers,
                PostgresStorage::<Noop>::new(&pool)
                    .with_config(config.clone())
                    .poll_with_interval(POLL_INTERVAL),
                handled,
                stop_rx
            );
            (db, enqueue_s, start)
        }
    };
    eprintln!(
        "enqueued {n} jobs in {enqueue_s:.2} s ({:.0}/s); {} worker(s) started",
        n as f64 / enqueue_s,
        args.workers
    );

    // Watch the in-process counter every 2 ms; once every job has run, ask
    // the database until it has them all committed as Done.
    let deadline = start + args.window;
    let mut next_report = start + Duration::from_secs(1);
    let (done, seconds, window_cut) = loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if let Some(exit) = workers.try_join_next() {
            let why = match exit {
                Ok(Ok(())) => "stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(format!("a worker ended before the run did: {why}").into());
        }
        let now = Instant::now();
        if now >= deadline || handled.load(Ordering::Relaxed) >= n {
            // The count sees what was committed when the query began, so the
            // clock stops there, not when the (up to ~0.3 s) count returns.
            let seconds = start.elapsed().as_secs_f64();
            let done = db.done().await?;
            if done >= n || now >= deadline {
                break (done, seconds, done < n);
            }
        }
        if now >= next_report {
            let h = handled.load(Ordering::Relaxed);
            let s = now.duration_since(start).as_secs_f64();
            eprintln!("{s:5.1} s: {h} handled ({:.0}/s)", h as f64 / s);
            next_report += Duration::from_secs(1);
        }
    };

    // Stop the workers; they finish their in-flight jobs and write their acks.
    let _ = stop_tx.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(exit) = workers.join_next().await {
            if let Ok(Err(e)) = exit {
                eprintln!("worker stopped with an error: {e}");
            }
        }
    })
    .await;
    if stopped.is_err() {
        eprintln!("workers did not stop within 10 s; leaving them");
    }
    Ok(Outcome {
        enqueue_s,
        done,
        seconds,
        window_cut,
    })
}

/// The counts are only right on a database with no jobs of another run.
async fn check_empty(db: &Db) -> Result<(), Error> {
    match db.count(false).await? {
        0 => Ok(()),
        k => Err(format!("the database already holds {k} jobs; give an empty one").into()),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("peer-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peer-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match runtime.block_on(run(&args)) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("peer-bench: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Leave any worker that would not stop behind.
    runtime.shutdown_timeout(Duration::from_secs(1));

    let (peer, backend_crate, extra) = match args.target {
        Target::Sqlite(_) => (
            "apalis-sqlite",
            SQLITE_CRATE,
            "WAL, synchronous=NORMAL, temp_store=MEMORY, cache_size=16MiB, busy_timeout=60s on every pooled connection",
        ),
        Target::Postgres(_) => (
            "apalis-postgres",
            POSTGRES_CRATE,
            "server defaults (synchronous_commit=on); polling, not LISTEN/NOTIFY",
        ),
    };
    let notes = format!(
        "{} apalis worker(s) in one process on a tokio multi-thread runtime, each fetching up to {} jobs per poll \
         (one txn), lock_tasks={}, acks batched per drained event set (one txn), persist_results=true; \
         idle poll interval {} ms (never idle while jobs remain); enqueue via push_bulk in {}-job txns; \
         done = DB count of status='Done' once all jobs ran; {extra}",
        args.workers,
        args.batch,
        args.lock_tasks,
        POLL_INTERVAL.as_millis(),
        args.enqueue_chunk,
    );
    let line = serde_json::json!({
        "peer": peer,
        "apalis": APALIS_VERSION,
        "backend_crate": backend_crate,
        "queued": args.queued,
        "enqueue_per_s": round1(args.queued as f64 / outcome.enqueue_s),
        "done": outcome.done,
        "seconds": (outcome.seconds * 1000.0).round() / 1000.0,
        "per_s": round1(outcome.done as f64 / outcome.seconds),
        "window_cut": outcome.window_cut,
        "concurrency": args.workers,
        "notes": notes,
    });
    println!("{line}");
    ExitCode::SUCCESS
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
