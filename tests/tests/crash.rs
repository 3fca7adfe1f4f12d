//! Crash safety of the embedded store: the real `sighost` binary is SIGKILLed
//! at random moments while it works, restarted each time, and in the end every
//! (signal, handler) pair has completed exactly once, with exactly one
//! directive each, none missing and none written twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sighost::store::{DeliveryFilter, DeliveryState, NewSignal};
use sighost::{HostConfig, Sighost};
use sighost_tests::{example_handler, guest, sighost_binary};

const KILLS: usize = 24;
/// Enough work that most kills land while deliveries are in progress.
const SIGNALS_PER_ROUND: usize = 1000;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sighost-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn start(data: &Path, handlers: &Path, round: usize) -> Child {
    let log = std::fs::File::create(data.join(format!("run-{round}.log"))).expect("log file");
    Command::new(sighost_binary())
        .args([
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "run",
            "--handlers",
        ])
        .arg(handlers)
        .args([
            "--listen",
            "",
            "--lease-ms",
            "1000",
            "--fast-retries",
            "--directive-log",
        ])
        .arg(data.join("executed.jsonl"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sighost run")
}

fn emit_round(host: &Sighost, round: usize) {
    let signals = (0..SIGNALS_PER_ROUND)
        .map(|i| NewSignal {
            tenant: "org_crash".into(),
            name: "crash.tested".into(),
            payload: json!({"round": round, "i": i}),
            ..NewSignal::default()
        })
        .collect();
    host.emit_batch(signals).expect("emit");
}

#[test]
fn every_delivery_completes_exactly_once_across_random_sigkills() {
    let data = temp_dir("crash-data");
    let handlers = temp_dir("crash-handlers");
    std::fs::copy(guest("trivial"), handlers.join("noop.wasm")).expect("copy guest");
    std::fs::write(
        handlers.join("noop.toml"),
        "subscriptions = ['crash.*']\ndirectives = ['bench.noop']\n",
    )
    .expect("manifest");
    std::fs::copy(
        example_handler("audit-trail"),
        handlers.join("audit-trail.wasm"),
    )
    .expect("copy example");
    std::fs::copy(
        example_handler("audit-trail").with_extension("toml"),
        handlers.join("audit-trail.toml"),
    )
    .expect("copy manifest");

    // The test process emits; the child processes work. Both use the same file.
    let host = Sighost::open(HostConfig::new(&data)).expect("open store");
    assert!(
        host.load_handlers_dir(&handlers)
            .expect("read handlers")
            .is_empty()
    );
    host.store()
        .create_tenant("org_crash", json!({}), chrono::Utc::now())
        .expect("tenant");

    let mut completed_at_kill = Vec::new();
    for round in 0..KILLS {
        emit_round(&host, round);
        let mut child = start(&data, &handlers, round);
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..600)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let completed = host
            .store()
            .deliveries(&DeliveryFilter {
                state: Some(DeliveryState::Completed),
                ..Default::default()
            })
            .expect("list")
            .len();
        completed_at_kill.push(completed);
    }

    // One last run, left to finish its work, then stopped gracefully.
    let mut child = start(&data, &handlers, KILLS);
    let expected = KILLS * SIGNALS_PER_ROUND * 2;
    sighost_tests::wait_until_all_done(host.store().as_ref(), expected);
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(
        child.wait().expect("reap").success(),
        "a graceful stop exits 0"
    );

    // Most kills really interrupted work: fewer deliveries had completed
    // than had been emitted by then.
    let interrupted = completed_at_kill
        .iter()
        .enumerate()
        .filter(|(round, completed)| **completed < (round + 1) * SIGNALS_PER_ROUND * 2)
        .count();
    assert!(
        interrupted >= KILLS * 2 / 3,
        "only {interrupted} of {KILLS} kills interrupted work: {completed_at_kill:?}"
    );

    let (_, directives) =
        sighost_tests::assert_each_pair_completed_once(host.store().as_ref(), expected);

    // Executors run at least once per directive; a kill between the effect and
    // its record may repeat one, which is why they get the idempotency key.
    let executed = std::fs::read_to_string(data.join("executed.jsonl")).expect("executor log");
    let executed_ids: HashSet<String> = executed
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|doc| doc["id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        directives.iter().all(|d| executed_ids.contains(&d.id)),
        "every directive was executed"
    );
    eprintln!(
        "{KILLS} kills; completed deliveries at each kill: {completed_at_kill:?}; \
         executor calls: {} for {} directives",
        executed.lines().count(),
        directives.len()
    );
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&handlers);
}
