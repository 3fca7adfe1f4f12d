//! End-to-end durable throughput: signals are emitted in batches, each fanned
//! out to one trivial wasm handler that requests one directive, until every
//! delivery is completed and every directive committed (the directive runner
//! is off: this measures the delivery path, not an executor).
//!
//! For each store (SQLite file; PostgreSQL on 127.0.0.1):
//! - deliveries/s with about 1k pending: a feeder keeps 500–1,500 deliveries
//!   pending while the workers drain, emit included;
//! - deliveries/s with a deep queue: `SIGHOST_BENCH_QUEUED` signals (default
//!   1,000,000 for SQLite, 200,000 for PostgreSQL) emitted first, then the
//!   rate over the first `DRAIN` of them;
//! - PostgreSQL only: the deep queue drained by two host processes (this one
//!   and a `sighost run` of the release binary);
//! - emit → handler-start latency p50/p99 at half the ~1k-pending rate:
//!   signals emitted at a steady pace, latency = attempt start − signal insert.
//!
//! Run: `cargo bench -p sighost-tests --bench durable [-- sqlite|postgres]`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sighost::store::NewSignal;
use sighost::{HostConfig, Sighost};
use sighost_tests::guest;
use sighost_tests::postgres::FreshDatabase;

const SHALLOW_TOTAL: usize = 100_000;
const DRAIN: usize = 200_000;
const BATCH: usize = 500;

#[derive(Clone)]
enum Backend {
    Sqlite,
    /// A fresh database per measurement on the local server.
    Postgres,
}

/// One measurement's directory, store and database.
struct Setup {
    dir: PathBuf,
    store: String,
    /// Dropped, with the database, when the measurement ends.
    database: Option<FreshDatabase>,
}

impl Setup {
    fn new(backend: &Backend, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sighost-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("handlers")).expect("bench dir");
        std::fs::copy(guest("trivial"), dir.join("handlers/noop.wasm")).expect("copy guest");
        std::fs::write(
            dir.join("handlers/noop.toml"),
            "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n",
        )
        .expect("manifest");
        let (store, database) = match backend {
            Backend::Sqlite => (dir.join("data/sighost.db").display().to_string(), None),
            Backend::Postgres => {
                let database = FreshDatabase::new("sighost_bench");
                (database.url.clone(), Some(database))
            }
        };
        Self {
            dir,
            store,
            database,
        }
    }

    fn host(&self) -> Sighost {
        let mut config = HostConfig::new(self.dir.join("data"));
        config.store = sighost::store::StoreLocation::parse(&self.store).expect("store url");
        config.workers.poll_interval = Duration::from_millis(50);
        let host = Sighost::open(config).expect("open");
        assert!(
            host.load_handlers_dir(&self.dir.join("handlers"))
                .expect("handlers")
                .is_empty()
        );
        if host
            .store()
            .tenant("org_bench")
            .expect("tenant lookup")
            .is_none()
        {
            host.store()
                .create_tenant("org_bench", json!({}), chrono::Utc::now())
                .expect("tenant");
        }
        host
    }

    fn probe(&self) -> Probe {
        match &self.database {
            None => Probe::Sqlite(rusqlite::Connection::open(&self.store).expect("probe")),
            Some(_) => Probe::Postgres(Box::new(
                postgres::Client::connect(&self.store, postgres::NoTls).expect("probe"),
            )),
        }
    }

    /// A second host process working on the same store.
    fn second_process(&self) -> Child {
        let binary = sighost_tests::sighost_binary();
        Command::new(binary)
            .args(["--store", &self.store, "--data-dir"])
            .arg(self.dir.join("data2"))
            .args(["run", "--listen", "", "--handlers"])
            .arg(self.dir.join("handlers"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sighost run")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn batch(n: usize, offset: usize) -> Vec<NewSignal> {
    (0..n)
        .map(|i| NewSignal {
            tenant: "org_bench".into(),
            name: "bench.happened".into(),
            payload: json!({"i": offset + i}),
            ..NewSignal::default()
        })
        .collect()
}

/// A read-only view of the database for counting, beside the host's own.
enum Probe {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl Probe {
    fn count(&mut self, sql: &str) -> i64 {
        match self {
            Probe::Sqlite(c) => c.query_row(sql, [], |r| r.get(0)).expect(sql),
            Probe::Postgres(c) => c.query_one(sql, &[]).expect(sql).get(0),
        }
    }

    /// Directives committed so far: one per completed delivery here.
    fn committed(&mut self) -> usize {
        self.count("SELECT COALESCE(MAX(seq), 0) FROM directives") as usize
    }

    /// Deliveries not finished; cheap through the partial indexes.
    fn pending(&mut self) -> usize {
        (self.count("SELECT COUNT(*) FROM deliveries WHERE state IN ('available', 'retryable')")
            + self.count("SELECT COUNT(*) FROM deliveries WHERE state = 'running'"))
            as usize
    }

    fn last_signal_seq(&mut self) -> i64 {
        self.count("SELECT COALESCE(MAX(seq), 0) FROM signals")
    }

    /// Emit → start latencies in microseconds, of signals after `since_seq`.
    fn latencies(&mut self, since_seq: i64) -> Vec<i64> {
        let mut latencies: Vec<i64> = match self {
            Probe::Sqlite(c) => c
                .prepare(
                    "SELECT a.started_at - s.inserted_at FROM signals s \
                     JOIN deliveries d ON d.signal_id = s.id JOIN attempts a ON a.delivery_id = d.id \
                     WHERE s.seq > ?1 AND a.attempt = 1",
                )
                .expect("query")
                .query_map([since_seq], |r| r.get(0))
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("latencies"),
            Probe::Postgres(c) => c
                .query(
                    "SELECT (EXTRACT(EPOCH FROM (a.started_at - s.inserted_at)) * 1000000)::BIGINT \
                     FROM signals s JOIN deliveries d ON d.signal_id = s.id \
                     JOIN attempts a ON a.delivery_id = d.id WHERE s.seq > $1 AND a.attempt = 1",
                    &[&since_seq],
                )
                .expect("latencies")
                .iter()
                .map(|row| row.get(0))
                .collect(),
        };
        latencies.sort_unstable();
        latencies
    }
}

fn wait_until(probe: &mut Probe, committed: usize) {
    while probe.committed() < committed {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Deliveries/s with about 1k pending, emit included.
fn shallow_queue(backend: &Backend) -> f64 {
    let setup = Setup::new(backend, "shallow");
    let host = setup.host();
    let mut probe = setup.probe();
    let workers = host.start_workers().expect("workers");
    let started = Instant::now();
    let mut emitted = 0;
    while emitted < SHALLOW_TOTAL {
        if probe.pending() < 1_000 {
            host.emit_batch(batch(BATCH, emitted)).expect("emit");
            emitted += BATCH;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    wait_until(&mut probe, SHALLOW_TOTAL);
    let rate = SHALLOW_TOTAL as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    rate
}

/// Emit rate, and deliveries/s while `processes` hosts drain a deep queue.
fn deep_queue(backend: &Backend, queued: usize, processes: usize) -> (f64, f64) {
    let setup = Setup::new(backend, &format!("deep{processes}"));
    let host = setup.host();
    let mut probe = setup.probe();
    let emit_started = Instant::now();
    for offset in (0..queued).step_by(5_000) {
        host.emit_batch(batch(5_000.min(queued - offset), offset))
            .expect("emit");
        if offset % 100_000 == 0 {
            eprintln!("  emitting: {offset}/{queued}");
        }
    }
    let emit_rate = queued as f64 / emit_started.elapsed().as_secs_f64();
    eprintln!("  emitted {queued} signals at {emit_rate:.0}/s");
    let drain = DRAIN.min(queued);
    let mut others: Vec<Child> = (1..processes).map(|_| setup.second_process()).collect();
    let workers = host.start_workers().expect("workers");
    let started = Instant::now();
    wait_until(&mut probe, drain);
    let rate = drain as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    for child in &mut others {
        let _ = child.kill();
        let _ = child.wait();
    }
    (emit_rate, rate)
}

/// Emit → start latency percentiles (µs) at `rate` signals/s for `seconds`.
fn latency(backend: &Backend, rate: f64, seconds: u64) -> (i64, i64, i64) {
    let setup = Setup::new(backend, "latency");
    let host = setup.host();
    let mut probe = setup.probe();
    let workers = host.start_workers().expect("workers");
    host.emit_batch(batch(1_000, 0)).expect("warm-up");
    wait_until(&mut probe, 1_000);
    let since = probe.last_signal_seq();
    let tick = Duration::from_millis(5);
    let per_tick = (rate * tick.as_secs_f64()).round().max(1.0) as usize;
    let started = Instant::now();
    let mut emitted = 0;
    let mut next = started;
    while started.elapsed() < Duration::from_secs(seconds) {
        host.emit_batch(batch(per_tick, emitted)).expect("emit");
        emitted += per_tick;
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    wait_until(&mut probe, 1_000 + emitted);
    workers.shutdown();
    let latencies = probe.latencies(since);
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99), *latencies.last().expect("some"))
}

fn report(backend: Backend, name: &str, default_queued: usize) {
    let queued: usize = std::env::var("SIGHOST_BENCH_QUEUED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_queued);
    println!("{name}: one trivial wasm handler, one directive per delivery");
    eprintln!("shallow queue: {SHALLOW_TOTAL} signals kept ~1k pending …");
    let shallow = shallow_queue(&backend);
    println!("  ~1k queued:            {shallow:>9.0} deliveries/s");
    eprintln!("deep queue: {queued} signals …");
    let (emit_rate, deep) = deep_queue(&backend, queued, 1);
    println!(
        "  {queued} queued:      {deep:>9.0} deliveries/s over the first {} (emit alone: {emit_rate:.0} signals/s)",
        DRAIN.min(queued)
    );
    println!("  deep / shallow:        {:>9.2}", deep / shallow);
    if matches!(backend, Backend::Postgres) {
        let (_, two) = deep_queue(&backend, queued, 2);
        println!(
            "  {queued} queued, 2 processes: {two:>9.0} deliveries/s ({:.2}x one)",
            two / deep
        );
    }
    let half = shallow / 2.0;
    eprintln!("latency at {half:.0} signals/s for 10 s …");
    let (p50, p99, max) = latency(&backend, half, 10);
    println!(
        "  emit→start at {half:.0}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0
    );
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("sqlite") {
        report(Backend::Sqlite, "SQLite", 1_000_000);
    }
    if wanted("postgres") {
        report(Backend::Postgres, "PostgreSQL", 200_000);
    }
}
