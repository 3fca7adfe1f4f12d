//! Fair share between tenants: a noisy neighbour's backlog, and a neighbour
//! whose deliveries cost 50× the CPU (ARCHITECTURE.md §4, "Fair share").
//!
//! - [`small_tenant`]: tenant B emits 10 signals every 20 ms for a few
//!   seconds; B's emit→completion latency (the delivery's finish minus the
//!   signal's insert), on an idle host or beside tenant A's backlog;
//! - [`drain`]: two tenants' backlogs drained, fairly or oldest first;
//! - [`cost`]: both tenants backlogged throughout, A's handler spinning 50×
//!   as long as B's; each tenant's share of the worker time (the attempts'
//!   durations) over a fixed window. B's handler spins too (100 µs): with
//!   the trivial handler (~10 µs) half of two cores would be 100,000
//!   deliveries/s, beyond what the store completes, so B's share would
//!   measure the store's ceiling, not the schedule.

use std::time::{Duration, Instant};

use serde_json::json;
use sighost::fair::ClaimOrder;
use sighost::store::NewSignal;
use sighost::{HostConfig, Sighost};

use crate::durable::{Backend, HandlerFile, Probe, Setup, wait_until};
use crate::stats::percentile;

/// B's signals: `SMALL_PER_TICK` every `TICK`, for `SMALL_SECONDS`.
const SMALL_PER_TICK: usize = 10;
const TICK: Duration = Duration::from_millis(20);
pub const SMALL_SECONDS: u64 = 3;
/// What the cost case's handlers spin per delivery: B's, and A's 50× that.
pub const CHEAP_BUSY_US: u64 = 100;
pub const COSTLY_BUSY_US: u64 = 50 * CHEAP_BUSY_US;
/// How long the cost case runs once both tenants are busy.
const COST_WINDOW: Duration = Duration::from_secs(6);

fn handlers() -> Vec<HandlerFile> {
    vec![
        HandlerFile {
            guest: "trivial",
            name: "noop".into(),
            manifest: "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n".into(),
        },
        HandlerFile {
            guest: "slow",
            name: "cheap".into(),
            manifest: format!(
                "subscriptions = ['cheap.*']\n[options]\nbusy_us = {CHEAP_BUSY_US}\n"
            ),
        },
        HandlerFile {
            guest: "slow",
            name: "costly".into(),
            manifest: format!(
                "subscriptions = ['costly.*']\n[options]\nbusy_us = {COSTLY_BUSY_US}\n"
            ),
        },
    ]
}

fn signals(tenant: &str, name: &str, n: usize, offset: usize) -> Vec<NewSignal> {
    (0..n)
        .map(|i| NewSignal {
            tenant: tenant.into(),
            name: name.into(),
            payload: json!({ "i": offset + i }),
            ..NewSignal::default()
        })
        .collect()
}

fn host(setup: &Setup, order: ClaimOrder) -> Sighost {
    let host = setup.host_with(|config: &mut HostConfig| config.workers.claim_order = order);
    for tenant in ["org_a", "org_b"] {
        host.store()
            .create_tenant(tenant, json!({}), chrono::Utc::now())
            .expect("tenant");
    }
    host
}

/// `n` signals of `tenant` named `name`, emitted in batches.
fn backlog(host: &Sighost, tenant: &str, name: &str, n: usize) {
    for offset in (0..n).step_by(10_000) {
        host.emit_batch(signals(tenant, name, 10_000.min(n - offset), offset))
            .expect("emit a backlog");
    }
}

/// B's emit→completion latencies, and how many of A's deliveries were still
/// pending when B's last had finished.
pub struct SmallTenant {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Where B's time went: emit → handler start, and handler start →
    /// completion recorded, p99 each.
    pub to_start_p99_ms: f64,
    pub start_to_done_p99_ms: f64,
    pub a_pending_after: i64,
}

pub fn small_tenant(backend: Backend, a_queued: usize) -> SmallTenant {
    let setup = Setup::new(backend, "fair-small", &handlers());
    let host = host(&setup, ClaimOrder::Fair);
    let mut probe = setup.probe();
    backlog(&host, "org_a", "bench.queued", a_queued);
    let workers = host.start_workers().expect("workers");
    let started = Instant::now();
    let mut next = started;
    let mut emitted = 0;
    while started.elapsed() < Duration::from_secs(SMALL_SECONDS) {
        host.emit_batch(signals("org_b", "bench.small", SMALL_PER_TICK, emitted))
            .expect("emit");
        emitted += SMALL_PER_TICK;
        next += TICK;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Each of B's deliveries writes one directive when it completes; they
    // are counted by the (tenant, key) index, not by scanning the queue.
    let b_done = "SELECT COUNT(*) FROM directives WHERE tenant = 'org_b'";
    let deadline = Instant::now() + Duration::from_secs(600);
    while probe.count(b_done) < emitted as i64 {
        assert!(Instant::now() < deadline, "B's deliveries did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
    let a_pending_after = probe.count(
        "SELECT COUNT(*) FROM deliveries WHERE tenant = 'org_a' \
         AND state IN ('available', 'retryable', 'running')",
    );
    workers.shutdown();
    let latencies = completion_latencies(&mut probe, "org_b", Span::EmitToDone);
    let to_start = completion_latencies(&mut probe, "org_b", Span::EmitToStart);
    let start_to_done = completion_latencies(&mut probe, "org_b", Span::StartToDone);
    let ms = |micros: i64| micros as f64 / 1000.0;
    SmallTenant {
        p50_ms: ms(percentile(&latencies, 0.5)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        to_start_p99_ms: ms(percentile(&to_start, 0.99)),
        start_to_done_p99_ms: ms(percentile(&start_to_done, 0.99)),
        a_pending_after,
    }
}

/// Which part of a delivery's life to measure.
#[derive(Clone, Copy)]
enum Span {
    EmitToDone,
    EmitToStart,
    StartToDone,
}

impl Span {
    /// (later, earlier) of signal `s`, delivery `d` and its first attempt `a`.
    fn ends(self) -> (&'static str, &'static str) {
        match self {
            Span::EmitToDone => ("d.finished_at", "s.inserted_at"),
            Span::EmitToStart => ("a.started_at", "s.inserted_at"),
            Span::StartToDone => ("d.finished_at", "a.started_at"),
        }
    }
}

/// `span` of `tenant`'s completed deliveries, µs, sorted.
fn completion_latencies(probe: &mut Probe, tenant: &str, span: Span) -> Vec<i64> {
    let (later, earlier) = span.ends();
    let from = "FROM deliveries d JOIN signals s ON s.id = d.signal_id \
                JOIN attempts a ON a.delivery_id = d.id AND a.attempt = 1";
    let mut latencies: Vec<i64> = match probe {
        Probe::Sqlite(c) => c
            .prepare(&format!(
                "SELECT {later} - {earlier} {from} WHERE d.tenant = ?1 AND d.state = 'completed'"
            ))
            .expect("query")
            .query_map([tenant], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("latencies"),
        Probe::Postgres(c) => c
            .query(
                &format!(
                    "SELECT (EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000000)::BIGINT \
                     {from} WHERE d.tenant = $1 AND d.state = 'completed'"
                ),
                &[&tenant],
            )
            .expect("latencies")
            .iter()
            .map(|row| row.get(0))
            .collect(),
    };
    latencies.sort_unstable();
    latencies
}

/// Deliveries/s draining the first half of two tenants' equal backlogs
/// (`each` apiece, emitted alternately in batches), claimed in `order`.
pub fn drain(backend: Backend, each: usize, order: ClaimOrder) -> f64 {
    let setup = Setup::new(backend, "fair-drain", &handlers());
    let host = host(&setup, order);
    let mut probe = setup.probe();
    for offset in (0..each).step_by(5_000) {
        for tenant in ["org_a", "org_b"] {
            host.emit_batch(signals(
                tenant,
                "bench.queued",
                5_000.min(each - offset),
                offset,
            ))
            .expect("emit");
        }
    }
    // Half of both backlogs; one directive per completed delivery.
    let target = each;
    let started = Instant::now();
    let workers = host.start_workers().expect("workers");
    wait_until(&mut probe, target);
    let per_s = target as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();
    per_s
}

/// Each tenant's worker time in the cost case.
pub struct Cost {
    /// B's share of the worker time, 0..1.
    pub b_share: f64,
    /// A's mean attempt over B's: how much costlier A's deliveries were.
    pub cost_ratio: f64,
    /// B's attempts per second in the window.
    pub b_per_s: f64,
}

pub fn cost(backend: Backend, order: ClaimOrder) -> Cost {
    let setup = Setup::new(backend, "fair-cost", &handlers());
    let host = host(&setup, order);
    let mut probe = setup.probe();
    // As many deliveries of each, emitted alternately, enough that neither
    // runs out within the window: oldest first then gives A 50× B's time.
    let each = 100_000;
    for offset in (0..each).step_by(1_000) {
        host.emit_batch(signals("org_a", "costly.work", 1_000, offset))
            .expect("emit A");
        host.emit_batch(signals("org_b", "cheap.work", 1_000, offset))
            .expect("emit B");
    }
    let workers = host.start_workers().expect("workers");
    // Measure a window once both are busy, by the attempts that started in it.
    std::thread::sleep(Duration::from_secs(1));
    let from = chrono::Utc::now();
    std::thread::sleep(COST_WINDOW);
    let until = chrono::Utc::now();
    workers.shutdown();
    let pending = |probe: &mut Probe, tenant: &str| {
        probe.count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE tenant = '{tenant}' \
             AND state IN ('available', 'retryable')"
        ))
    };
    assert!(
        pending(&mut probe, "org_a") > 0 && pending(&mut probe, "org_b") > 0,
        "both tenants must stay backlogged throughout"
    );
    let (a_us, a_n) = worker_time(&mut probe, "org_a", from, until);
    let (b_us, b_n) = worker_time(&mut probe, "org_b", from, until);
    Cost {
        b_share: b_us / (a_us + b_us),
        cost_ratio: (a_us / a_n.max(1.0)) / (b_us / b_n.max(1.0)),
        b_per_s: b_n / (until - from).as_seconds_f64(),
    }
}

/// The summed durations (µs) and the count of `tenant`'s attempts started
/// between `from` and `until`.
fn worker_time(
    probe: &mut Probe,
    tenant: &str,
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> (f64, f64) {
    match probe {
        Probe::Sqlite(c) => c
            .query_row(
                "SELECT COALESCE(SUM(a.duration_us), 0), COUNT(*) FROM attempts a \
                 JOIN deliveries d ON d.id = a.delivery_id \
                 WHERE d.tenant = ?1 AND a.started_at >= ?2 AND a.started_at < ?3",
                rusqlite::params![tenant, from.timestamp_micros(), until.timestamp_micros()],
                |r| Ok((r.get::<_, i64>(0)? as f64, r.get::<_, i64>(1)? as f64)),
            )
            .expect("worker time"),
        Probe::Postgres(c) => {
            let row = c
                .query_one(
                    "SELECT COALESCE(SUM(a.duration_us), 0)::BIGINT, COUNT(*) FROM attempts a \
                     JOIN deliveries d ON d.id = a.delivery_id \
                     WHERE d.tenant = $1 AND a.started_at >= $2 AND a.started_at < $3",
                    &[&tenant, &from, &until],
                )
                .expect("worker time");
            (row.get::<_, i64>(0) as f64, row.get::<_, i64>(1) as f64)
        }
    }
}

/// What A's directives take in the executor (B's take nothing).
pub const SLOW_EXECUTOR: Duration = Duration::from_millis(20);
/// A's directives queued before B starts.
pub const A_DIRECTIVES: usize = 300;

/// An executor that waits [`SLOW_EXECUTOR`] for org_a's directives: a slow
/// endpoint of one tenant.
#[derive(Debug)]
struct SlowForA;

impl sighost::runner::Executor for SlowForA {
    fn execute(
        &self,
        directive: &sighost::store::Directive,
    ) -> Result<serde_json::Value, sighost::runner::ExecutorError> {
        if directive.tenant == "org_a" {
            std::thread::sleep(SLOW_EXECUTOR);
        }
        Ok(json!({}))
    }
}

/// B's directive latency (requested → succeeded), ms, while A's directives,
/// each 20 ms in a slow executor, are queued before B's: p50 and p99.
pub fn slow_executor(backend: Backend, order: ClaimOrder) -> (f64, f64) {
    let setup = Setup::new(backend, "fair-runner", &handlers());
    let host = setup.host_with(|config: &mut HostConfig| {
        config.workers.claim_order = order;
        config.runner.claim_order = order;
        config.executors =
            sighost::runner::Executors::new().with_fallback(std::sync::Arc::new(SlowForA));
    });
    let mut probe = setup.probe();
    for tenant in ["org_a", "org_b"] {
        host.store()
            .create_tenant(tenant, json!({}), chrono::Utc::now())
            .expect("tenant");
    }
    // A's directives first, written before the runner starts.
    host.emit_batch(signals("org_a", "bench.slow", A_DIRECTIVES, 0))
        .expect("emit A");
    let workers = host.start_workers().expect("workers");
    wait_until(&mut probe, A_DIRECTIVES);
    workers.shutdown();
    let running = host.start().expect("host");
    // B: 10 signals every 100 ms for a second, one directive each.
    for round in 0..10 {
        host.emit_batch(signals("org_b", "bench.small", 10, round * 10))
            .expect("emit B");
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = "SELECT COUNT(*) FROM directives WHERE tenant = 'org_b' AND state = 'succeeded'";
    let deadline = Instant::now() + Duration::from_secs(120);
    while probe.count(done) < 100 {
        assert!(Instant::now() < deadline, "B's directives did not run");
        std::thread::sleep(Duration::from_millis(5));
    }
    running.shutdown();
    let mut latencies: Vec<i64> = match &mut probe {
        Probe::Sqlite(c) => c
            .prepare(
                "SELECT updated_at - inserted_at FROM directives \
                 WHERE tenant = 'org_b' AND state = 'succeeded'",
            )
            .expect("query")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("latencies"),
        Probe::Postgres(c) => c
            .query(
                "SELECT (EXTRACT(EPOCH FROM (updated_at - inserted_at)) * 1000000)::BIGINT \
                 FROM directives WHERE tenant = 'org_b' AND state = 'succeeded'",
                &[],
            )
            .expect("latencies")
            .iter()
            .map(|row| row.get(0))
            .collect(),
    };
    latencies.sort_unstable();
    let ms = |micros: i64| micros as f64 / 1000.0;
    (
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    )
}
