//! A cluster on PostgreSQL: three real `sighost run` processes share one
//! database while one of them at a time is SIGKILLed mid-run and restarted,
//! several times. Afterwards:
//!
//! - every (signal, handler) pair has exactly one delivery, completed;
//! - every pair has exactly one directive: none missing, none written twice;
//! - no delivery ran in two processes at once while its lease was valid.
//!
//! What the last point can honestly be checked with. The store records an
//! attempt when a worker's result is accepted (its lease still held) and a
//! `lease_expired` attempt when the rescuer takes a delivery back from a
//! worker whose lease ran out; a result that comes too late is dropped, and a
//! killed process reports nothing. A run that happened while another held a
//! valid lease leaves no row of its own, so it cannot be seen directly.
//! What can be seen is that claims were serial: a claim only takes a
//! delivery that is not running, so if every claim (the delivery's `attempt`
//! counts them) ended in exactly one recorded attempt (its own result, or
//! the rescuer's `lease_expired` once its lease was over), then each claim
//! began after the one before it ended, and no two leases of one delivery
//! were ever valid at once. The test checks that the attempts of each
//! delivery are numbered 1..=attempt with none missing, that only the last is
//! a result (`ok`) and the others are `lease_expired`, and, on the clock of
//! this one machine, that each attempt was recorded as ended before the next
//! one's handler started: `finished_at(n) <= started_at(n + 1)` (for a
//! result, its run `[started_at, started_at + duration]` lies before
//! `finished_at`). A late run of a process whose lease had expired may well
//! overlap the next one; that is allowed, and why executors get idempotency
//! keys.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::json;
use sighost::store::{Attempt, Delivery, DeliveryFilter, DeliveryState, NewSignal, StoreLocation};
use sighost::{HostConfig, Sighost};
use sighost_tests::postgres::FreshDatabase;
use sighost_tests::{example_handler, guest, sighost_binary};

const PROCESSES: usize = 3;
const KILLS: usize = 6;
/// Emitted between kills, so that each kill finds work in progress.
const SIGNALS_PER_ROUND: usize = 1000;
const ROUNDS: usize = KILLS;
const HANDLERS: usize = 2;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sighost-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// One `sighost run` of the cluster, in a directory of its own (its compiled
/// code cache, its logs, its executor log).
struct Node {
    dir: PathBuf,
    child: Child,
    starts: usize,
}

impl Node {
    fn start(dir: PathBuf, url: &str, handlers: &Path) -> Self {
        std::fs::create_dir_all(&dir).expect("node dir");
        let child = spawn(&dir, url, handlers, 0);
        let node = Self {
            dir,
            child,
            starts: 1,
        };
        node.wait_until_running();
        node
    }

    /// Kills the node and starts it again, and waits until the new process
    /// runs: a restart that is killed again while it still loads its
    /// handlers (slow on a busy machine: loading runs at low priority) would
    /// never take part.
    fn kill_and_restart(&mut self, url: &str, handlers: &Path) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        self.child = spawn(&self.dir, url, handlers, self.starts);
        self.starts += 1;
        self.wait_until_running();
    }

    fn wait_until_running(&self) {
        let log = self.dir.join(format!("run-{}.log", self.starts - 1));
        sighost_tests::host_helpers::wait_for("a node to start", |last| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            *last = text.lines().last().unwrap_or_default().to_owned();
            text.contains("sighost is running").then_some(())
        });
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        let status = self.child.wait().expect("reap");
        assert!(
            status.success(),
            "a graceful stop exits 0; see {}",
            self.dir.display()
        );
    }
}

fn spawn(dir: &Path, url: &str, handlers: &Path, start: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("run-{start}.log"))).expect("log file");
    Command::new(sighost_binary())
        .current_dir(dir)
        .args(["--data-dir", dir.to_str().expect("utf-8 path")])
        .args(["--store", url])
        .args(["run", "--listen", "", "--handlers"])
        .arg(handlers)
        .args(["--lease-ms", "5000", "--fast-retries", "--directive-log"])
        .arg(dir.join("executed.jsonl"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sighost run")
}

fn handlers_dir() -> PathBuf {
    let handlers = temp_dir("cluster-handlers");
    std::fs::copy(guest("trivial"), handlers.join("noop.wasm")).expect("copy guest");
    std::fs::write(
        handlers.join("noop.toml"),
        "subscriptions = ['cluster.*']\ndirectives = ['bench.noop']\n",
    )
    .expect("manifest");
    let audit = example_handler("audit-trail");
    std::fs::copy(&audit, handlers.join("audit-trail.wasm")).expect("copy example");
    std::fs::copy(
        audit.with_extension("toml"),
        handlers.join("audit-trail.toml"),
    )
    .expect("copy manifest");
    handlers
}

fn emit_round(host: &Sighost, round: usize) {
    let signals = (0..SIGNALS_PER_ROUND)
        .map(|i| NewSignal {
            tenant: "org_cluster".into(),
            name: "cluster.tested".into(),
            payload: json!({"round": round, "i": i}),
            ..NewSignal::default()
        })
        .collect();
    host.emit_batch(signals).expect("emit");
}

fn completed(host: &Sighost) -> usize {
    host.store()
        .deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Completed),
            ..DeliveryFilter::default()
        })
        .expect("list")
        .len()
}

/// Waits until at least `target` deliveries are completed; returns how many are.
fn wait_for_completed(host: &Sighost, target: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = completed(host);
        if done >= target {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {target} completed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Claims of one delivery were serial; see the module docs. Returns how
/// many of its attempts the rescuer recorded.
fn check_attempts(delivery: &Delivery, attempts: &[Attempt]) -> usize {
    let numbers: Vec<u32> = attempts.iter().map(|a| a.attempt).collect();
    let claims: Vec<u32> = (1..=delivery.attempt).collect();
    assert_eq!(
        numbers, claims,
        "delivery {}: every claim ended in exactly one recorded attempt: {attempts:?}",
        delivery.id
    );
    let (last, earlier) = attempts.split_last().expect("at least one attempt");
    assert_eq!(last.outcome, "ok", "delivery {}: {attempts:?}", delivery.id);
    assert!(
        earlier.iter().all(|a| a.outcome == "lease_expired"),
        "delivery {}: the trivial handlers never fail, so only a lost lease ends an attempt early: {attempts:?}",
        delivery.id
    );
    let ran_until = last.started_at + TimeDelta::microseconds(last.duration_us as i64);
    assert!(
        ran_until <= last.finished_at,
        "delivery {}: a result is recorded after its run: {last:?}",
        delivery.id
    );
    for pair in attempts.windows(2) {
        assert!(
            pair[0].finished_at <= pair[1].started_at,
            "delivery {}: attempt {} started before attempt {} ended: {pair:?}",
            delivery.id,
            pair[1].attempt,
            pair[0].attempt
        );
    }
    earlier.len()
}

#[test]
fn a_cluster_completes_every_delivery_once_while_its_processes_are_killed() {
    let database = FreshDatabase::new("sighost_cluster");
    let handlers = handlers_dir();
    let nodes_dir = temp_dir("cluster-nodes");

    // The test process emits and inspects; the nodes work.
    let mut config = HostConfig::new(nodes_dir.join("emitter"));
    config.store = StoreLocation::parse(&database.url).expect("store URL");
    let host = Sighost::open(config).expect("open the store");
    assert!(
        host.load_handlers_dir(&handlers)
            .expect("read handlers")
            .is_empty()
    );
    host.store()
        .create_tenant("org_cluster", json!({}), chrono::Utc::now())
        .expect("tenant");

    let mut nodes: Vec<Node> = (0..PROCESSES)
        .map(|i| {
            Node::start(
                nodes_dir.join(format!("node-{i}")),
                &database.url,
                &handlers,
            )
        })
        .collect();
    let mut completed_at_kill = Vec::new();
    for round in 0..ROUNDS {
        emit_round(&host, round);
        // Kill while this round is being worked on: once a tenth of it is
        // done, so the nodes are up and hold leases on the rest.
        let emitted = (round + 1) * SIGNALS_PER_ROUND * HANDLERS;
        let started = emitted - SIGNALS_PER_ROUND * HANDLERS * 9 / 10;
        completed_at_kill.push(wait_for_completed(&host, started));
        nodes[round % PROCESSES].kill_and_restart(&database.url, &handlers);
    }

    let expected = ROUNDS * SIGNALS_PER_ROUND * HANDLERS;
    sighost_tests::wait_until_all_done(host.store().as_ref(), expected);
    for node in nodes {
        node.stop();
    }

    let (deliveries, directives) =
        sighost_tests::assert_each_pair_completed_once(host.store().as_ref(), expected);

    let mut rescued = 0;
    let mut workers: HashMap<String, usize> = HashMap::new();
    for delivery in &deliveries {
        let attempts = host.store().attempts(delivery.id).expect("attempts");
        rescued += check_attempts(delivery, &attempts);
        let last = attempts.last().expect("an attempt");
        *workers.entry(last.worker.clone()).or_default() += 1;
    }
    assert!(
        rescued > 0,
        "the kills interrupted work that the rescuer took back; completed deliveries at \
         each kill: {completed_at_kill:?}"
    );
    assert!(
        workers.len() > PROCESSES,
        "every node and its restarts did work: {workers:?}"
    );

    // Executors run at least once per directive.
    let executed: HashSet<String> = (0..PROCESSES)
        .flat_map(|i| {
            let log = nodes_dir.join(format!("node-{i}/executed.jsonl"));
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter_map(|doc| doc["id"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        directives.iter().all(|d| executed.contains(&d.id)),
        "every directive was executed"
    );
    eprintln!(
        "{KILLS} kills; completed deliveries at each kill: {completed_at_kill:?}; \
         {rescued} attempts taken back by the rescuer; completions by worker: {workers:?}"
    );
    drop(host);
    let _ = std::fs::remove_dir_all(&nodes_dir);
    let _ = std::fs::remove_dir_all(&handlers);
}
