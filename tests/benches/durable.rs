//! End-to-end durable throughput on the embedded SQLite store: signals are
//! emitted in batches, each fanned out to one trivial wasm handler that
//! requests one directive, until every delivery is completed and every
//! directive committed (the directive runner is off: this measures the
//! delivery path, not an executor).
//!
//! - deliveries/s with about 1k signals queued: a feeder keeps 500–1,500
//!   deliveries pending while the workers drain;
//! - deliveries/s with 1M signals queued: 1M signals emitted first, then the
//!   time to drain the first `DRAIN` of them;
//! - emit → handler-start latency p50/p99 at half the 1k-queued rate: signals
//!   emitted at a steady pace, latency = attempt start − signal insert time.
//!
//! Run: `cargo bench -p sighost-tests --bench durable`.
//! `SIGHOST_BENCH_QUEUED` sets the deep queue (default 1000000).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sighost::store::NewSignal;
use sighost::{HostConfig, Sighost};
use sighost_tests::guest;

const SHALLOW_TOTAL: usize = 100_000;
const DRAIN: usize = 300_000;
const BATCH: usize = 500;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sighost-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("handlers")).expect("bench dir");
    dir
}

fn host(dir: &Path) -> Sighost {
    let handlers = dir.join("handlers");
    std::fs::copy(guest("trivial"), handlers.join("noop.wasm")).expect("copy guest");
    std::fs::write(
        handlers.join("noop.toml"),
        "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n",
    )
    .expect("manifest");
    let mut config = HostConfig::new(dir.join("data"));
    config.workers.poll_interval = Duration::from_millis(50);
    let host = Sighost::open(config).expect("open");
    assert!(
        host.load_handlers_dir(&handlers)
            .expect("handlers")
            .is_empty()
    );
    host.store()
        .create_tenant("org_bench", json!({}), chrono::Utc::now())
        .expect("tenant");
    host
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
struct Probe(rusqlite::Connection);

impl Probe {
    fn open(dir: &Path) -> Self {
        Self(rusqlite::Connection::open(dir.join("data/sighost.db")).expect("probe"))
    }

    /// Directives committed so far: one per completed delivery here.
    fn committed(&self) -> usize {
        self.0
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM directives", [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("count") as usize
    }

    /// Deliveries not finished; cheap through the partial indexes.
    fn pending(&self) -> usize {
        let due: i64 = self
            .0
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state IN ('available', 'retryable')",
                [],
                |r| r.get(0),
            )
            .expect("count");
        let running: i64 = self
            .0
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'running'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        (due + running) as usize
    }

    /// Emit → start latencies in microseconds, of signals inserted after `since_seq`.
    fn latencies(&self, since_seq: i64) -> Vec<i64> {
        let mut latencies: Vec<i64> = self
            .0
            .prepare(
                "SELECT a.started_at - s.inserted_at FROM signals s \
                 JOIN deliveries d ON d.signal_id = s.id JOIN attempts a ON a.delivery_id = d.id \
                 WHERE s.seq > ?1 AND a.attempt = 1",
            )
            .expect("query")
            .query_map([since_seq], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("latencies");
        latencies.sort_unstable();
        latencies
    }

    fn last_signal_seq(&self) -> i64 {
        self.0
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM signals", [], |r| {
                r.get(0)
            })
            .expect("seq")
    }
}

fn wait_until(probe: &Probe, committed: usize) {
    while probe.committed() < committed {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Deliveries/s with about 1k pending, emit included.
fn shallow_queue() -> f64 {
    let dir = fresh_dir("shallow");
    let host = host(&dir);
    let probe = Probe::open(&dir);
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
    wait_until(&probe, SHALLOW_TOTAL);
    let rate = SHALLOW_TOTAL as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

/// Emit rate and deliveries/s while draining a deep queue.
fn deep_queue(queued: usize) -> (f64, f64) {
    let dir = fresh_dir("deep");
    let host = host(&dir);
    let probe = Probe::open(&dir);
    let emit_started = Instant::now();
    for offset in (0..queued).step_by(5_000) {
        host.emit_batch(batch(5_000.min(queued - offset), offset))
            .expect("emit");
        if offset % 100_000 == 0 {
            eprint!("\r  emitting: {offset}/{queued}");
        }
    }
    let emit_rate = queued as f64 / emit_started.elapsed().as_secs_f64();
    eprintln!("\r  emitted {queued} signals at {emit_rate:.0}/s");
    let drain = DRAIN.min(queued);
    let workers = host.start_workers().expect("workers");
    let started = Instant::now();
    wait_until(&probe, drain);
    let rate = drain as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    (emit_rate, rate)
}

/// Emit → start latency percentiles (µs) at `rate` signals/s for `seconds`.
fn latency(rate: f64, seconds: u64) -> (i64, i64, i64) {
    let dir = fresh_dir("latency");
    let host = host(&dir);
    let probe = Probe::open(&dir);
    let workers = host.start_workers().expect("workers");
    // Warm up, then measure only what follows.
    host.emit_batch(batch(1_000, 0)).expect("warm-up");
    wait_until(&probe, 1_000);
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
    wait_until(&probe, 1_000 + emitted);
    workers.shutdown();
    let latencies = probe.latencies(since);
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let result = (at(0.5), at(0.99), *latencies.last().expect("some"));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() {
    let queued: usize = std::env::var("SIGHOST_BENCH_QUEUED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "durable end-to-end throughput, SQLite, one trivial wasm handler, one directive per delivery"
    );
    eprintln!("shallow queue: {SHALLOW_TOTAL} signals kept ~1k pending …");
    let shallow = shallow_queue();
    println!("  ~1k queued:      {shallow:>9.0} deliveries/s (goal >= 20000)");
    eprintln!("deep queue: {queued} signals …");
    let (emit_rate, deep) = deep_queue(queued);
    println!(
        "  {queued} queued: {deep:>9.0} deliveries/s over the first {} (emit alone: {emit_rate:.0} signals/s)",
        DRAIN.min(queued)
    );
    println!("  deep / shallow:  {:>9.2}", deep / shallow);
    let half = shallow / 2.0;
    eprintln!("latency at {half:.0} signals/s for 10 s …");
    let (p50, p99, max) = latency(half, 10);
    println!(
        "  emit→start at {half:.0}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 < 5 ms)",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0
    );
}
