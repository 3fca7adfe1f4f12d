//! End-to-end durable throughput: signals are emitted in batches, each fanned
//! out to one trivial wasm handler that requests one directive, until every
//! delivery is completed and every directive committed (the directive runner
//! is off: this measures the delivery path, not an executor).
//!
//! - [`steady`]: deliveries/s while a feeder keeps 500–1,500 deliveries
//!   pending, emit included;
//! - [`queued`]: `n` signals emitted first, then the rate at which one or more
//!   host processes drain the first `DRAIN` of them;
//! - [`latency`]: emit → handler-start p50/p99 with signals emitted at a
//!   steady pace; latency = attempt start − signal insert;
//! - [`store_only`]: the same claims, completions and directives with no
//!   sandbox: the rate the store alone sustains for the path's writes.

use sighost::fair::Claim;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sighost::store::{Decision, DeliveryResult, FinishOutcome, NewSignal};
use sighost::{HostConfig, Sighost};
use sighost_tests::postgres::FreshDatabase;
use sighost_tests::{conformance, guest};

use crate::stats::percentile;

const STEADY_TOTAL: usize = 100_000;
/// A deep queue's rate is measured over its first `DRAIN` deliveries.
pub const DRAIN: usize = 200_000;
const BATCH: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    /// A fresh database per measurement on the local server.
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A handler file the measurement loads: a test guest under a name, with its
/// manifest.
pub struct HandlerFile {
    pub guest: &'static str,
    pub name: String,
    pub manifest: String,
}

/// The trivial guest as `noop`, subscribed to `bench.*`.
pub fn noop() -> Vec<HandlerFile> {
    vec![HandlerFile {
        guest: "trivial",
        name: "noop".into(),
        manifest: "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n".into(),
    }]
}

/// Lets the machine settle between measurements: flushes what earlier ones
/// left in the page cache and waits a moment, so their write-back (hundreds
/// of MB after a deep queue) does not land in the next one's timing.
/// PostgreSQL writes its dirty buffers back too: a CHECKPOINT does it now.
pub fn settle() {
    let _ = Command::new("sync").status();
    if let Ok(mut server) =
        postgres::Client::connect(&sighost_tests::postgres::base_url(), postgres::NoTls)
    {
        let _ = server.batch_execute("CHECKPOINT");
    }
    std::thread::sleep(Duration::from_secs(1));
}

/// `sighost` as a child process that sees none of the caller's `SIGHOST_*`
/// settings (a config file or store of the user's own).
pub fn sighost_command() -> Command {
    let mut command = Command::new(sighost_tests::sighost_binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SIGHOST_") {
            command.env_remove(key);
        }
    }
    command
}

/// One measurement's directory, store and database.
pub struct Setup {
    pub dir: PathBuf,
    store: String,
    /// Dropped, with the database, when the measurement ends.
    database: Option<FreshDatabase>,
}

impl Setup {
    pub fn new(backend: Backend, name: &str, handlers: &[HandlerFile]) -> Self {
        settle();
        let dir = std::env::temp_dir().join(format!("sighost-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("handlers")).expect("bench dir");
        for handler in handlers {
            let path = dir.join("handlers").join(&handler.name);
            std::fs::copy(guest(handler.guest), path.with_extension("wasm")).expect("copy guest");
            std::fs::write(path.with_extension("toml"), &handler.manifest).expect("manifest");
        }
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

    pub fn host(&self) -> Sighost {
        self.host_with(|_| {})
    }

    /// A host on this store with the bench's handlers loaded, after `tweak`
    /// has adjusted its configuration.
    pub fn host_with(&self, tweak: impl FnOnce(&mut HostConfig)) -> Sighost {
        let mut config = HostConfig::new(self.dir.join("data"));
        config.store = sighost::store::StoreLocation::parse(&self.store).expect("store url");
        config.workers.poll_interval = Duration::from_millis(50);
        tweak(&mut config);
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

    pub fn probe(&self) -> Probe {
        match &self.database {
            None => Probe::Sqlite(rusqlite::Connection::open(&self.store).expect("probe")),
            Some(_) => Probe::Postgres(Box::new(
                postgres::Client::connect(&self.store, postgres::NoTls).expect("probe"),
            )),
        }
    }

    /// A second host process working on the same store.
    fn second_process(&self) -> Child {
        sighost_command()
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
    named_batch("bench.happened", n, offset)
}

/// `n` signals named `name` for the bench tenant, numbered from `offset`.
pub fn named_batch(name: &str, n: usize, offset: usize) -> Vec<NewSignal> {
    (0..n)
        .map(|i| NewSignal {
            tenant: "org_bench".into(),
            name: name.into(),
            payload: json!({"i": offset + i}),
            ..NewSignal::default()
        })
        .collect()
}

/// A read-only view of the database for counting, beside the host's own.
pub enum Probe {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl Probe {
    pub fn count(&mut self, sql: &str) -> i64 {
        match self {
            Probe::Sqlite(c) => c.query_row(sql, [], |r| r.get(0)).expect(sql),
            Probe::Postgres(c) => c.query_one(sql, &[]).expect(sql).get(0),
        }
    }

    /// The newest directive's number: cheap to poll, but only an upper
    /// bound of the directives committed (a rolled-back insert leaves a gap,
    /// and commits from several connections land out of order).
    fn newest_directive(&mut self) -> usize {
        self.count("SELECT COALESCE(MAX(seq), 0) FROM directives") as usize
    }

    /// Directives committed so far: one per completed delivery here.
    fn committed(&mut self) -> usize {
        self.count("SELECT COUNT(*) FROM directives") as usize
    }

    /// Deliveries not finished, counted in one statement (one snapshot).
    pub fn pending(&mut self) -> usize {
        self.count(
            "SELECT COUNT(*) FROM deliveries WHERE state IN ('available', 'retryable', 'running')",
        ) as usize
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

/// Waits until `committed` directives are in the store: polls the cheap
/// upper bound, then confirms with a count (the clock stops at the count).
pub fn wait_until(probe: &mut Probe, committed: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut poll = |done: &mut dyn FnMut(&mut Probe) -> bool| {
        while !done(probe) {
            assert!(
                Instant::now() < deadline,
                "{committed} directives not committed in 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    poll(&mut |p| p.newest_directive() >= committed);
    poll(&mut |p| p.committed() >= committed);
}

/// Deliveries/s with about 1k pending, emit included.
pub fn steady(backend: Backend) -> f64 {
    let setup = Setup::new(backend, "steady", &noop());
    let host = setup.host();
    let mut probe = setup.probe();
    let workers = host.start_workers().expect("workers");
    let started = Instant::now();
    let mut emitted = 0;
    while emitted < STEADY_TOTAL {
        if probe.pending() < 1_000 {
            host.emit_batch(batch(BATCH, emitted)).expect("emit");
            emitted += BATCH;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    wait_until(&mut probe, STEADY_TOTAL);
    let rate = STEADY_TOTAL as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    rate
}

/// Emits `queued` signals in batches and lets their write-back finish before
/// the drain is timed; returns the emit rate (signals/s).
fn fill(host: &Sighost, queued: usize) -> f64 {
    let started = Instant::now();
    for offset in (0..queued).step_by(5_000) {
        host.emit_batch(batch(5_000.min(queued - offset), offset))
            .expect("emit");
        if offset > 0 && offset % 100_000 == 0 {
            eprintln!("    emitted {offset}/{queued}");
        }
    }
    let per_s = queued as f64 / started.elapsed().as_secs_f64();
    settle();
    per_s
}

/// Signals/s of emitting a queue, and deliveries/s of draining it.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub emit_per_s: f64,
    pub per_s: f64,
}

/// `queued` signals emitted first; then `processes` hosts (this one and
/// `sighost run` children) drain the first `DRAIN` of them.
pub fn queued(backend: Backend, queued: usize, processes: usize) -> Drain {
    let setup = Setup::new(backend, &format!("queued{processes}"), &noop());
    let host = setup.host();
    let mut probe = setup.probe();
    let emit_per_s = fill(&host, queued);
    let drain = DRAIN.min(queued);
    // The clock starts before any worker does, as the peer's does.
    let started = Instant::now();
    let mut others: Vec<Child> = (1..processes).map(|_| setup.second_process()).collect();
    let workers = host.start_workers().expect("workers");
    wait_until(&mut probe, drain);
    let per_s = drain as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    for child in &mut others {
        assert!(
            child.try_wait().expect("child status").is_none(),
            "a second `sighost run` exited during the drain"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    let working = probe.count("SELECT COUNT(DISTINCT worker) FROM attempts") as usize;
    assert_eq!(working, processes, "every host process ran deliveries");
    Drain { emit_per_s, per_s }
}

/// Emit → handler-start latency of one run, in ms, and the emit rate the
/// run achieved (signals/s).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub achieved: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Emit → start latency at `rate` signals/s for `seconds`.
pub fn latency(backend: Backend, rate: f64, seconds: u64) -> Latency {
    let setup = Setup::new(backend, "latency", &noop());
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
    let achieved = emitted as f64 / started.elapsed().as_secs_f64();
    wait_until(&mut probe, 1_000 + emitted);
    workers.shutdown();
    let latencies = probe.latencies(since);
    let ms = |micros: i64| micros as f64 / 1000.0;
    Latency {
        achieved,
        p50: ms(percentile(&latencies, 0.5)),
        p99: ms(percentile(&latencies, 0.99)),
        max: ms(*latencies.last().expect("some")),
    }
}

/// Deliveries/s of the store alone, for the same writes as the path without
/// the sandbox: `queued` signals emitted, then `threads` threads each claim a
/// batch, complete every delivery of it with one directive in one
/// transaction, and go again, until the first `DRAIN` are done.
pub fn store_only(backend: Backend, queued: usize, threads: usize) -> f64 {
    let setup = Setup::new(backend, "store-only", &noop());
    let host = setup.host();
    fill(&host, queued);
    let drain = DRAIN.min(queued);
    let claim_batch = sighost::worker::WorkerConfig::default().batch_size;
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let store = host.store();
                let worker = sighost::worker::worker_name();
                while done.load(Ordering::SeqCst) < drain {
                    let now = chrono::Utc::now();
                    let claimed = store
                        .claim_deliveries(
                            &Claim::new(&worker, claim_batch, Duration::from_secs(300)),
                            now,
                        )
                        .expect("claim");
                    if claimed.is_empty() {
                        return; // the other threads hold the rest
                    }
                    let results: Vec<DeliveryResult> = claimed
                        .iter()
                        .map(|c| {
                            let directive = conformance::requested(
                                &c.signal.tenant,
                                &c.signal.id,
                                json!({"signal": c.signal.id}),
                            );
                            conformance::result(
                                c,
                                &worker,
                                Decision::Complete(vec![directive]),
                                now,
                            )
                        })
                        .collect();
                    let outcomes = store
                        .finish_deliveries(&results, chrono::Utc::now())
                        .expect("finish");
                    let completed = FinishOutcome::Completed {
                        directives_created: 1,
                        duplicates: 0,
                    };
                    assert!(outcomes.iter().all(|o| *o == completed), "{outcomes:?}");
                    done.fetch_add(outcomes.len(), Ordering::SeqCst);
                }
            });
        }
    });
    done.into_inner() as f64 / started.elapsed().as_secs_f64()
}
