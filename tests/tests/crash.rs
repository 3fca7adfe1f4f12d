//! Crash safety of the embedded store: the real `sighost` binary is SIGKILLed
//! at random moments while it works, restarted each time, and in the end every
//! (signal, handler) pair has completed exactly once, with exactly one
//! directive each, none missing and none written twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sighost::store::NewSignal;
use sighost::{HostConfig, Sighost};
use sighost_tests::host_helpers::wait_for;
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

/// The first column of the first row of `sql`, on the test's own read-only
/// connection to the store.
fn count(data: &Path, sql: &str) -> usize {
    let db = rusqlite::Connection::open_with_flags(
        data.join("sighost.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let n: i64 = db.query_row(sql, [], |row| row.get(0)).expect(sql);
    n as usize
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

    // Each round kills a child that has started working: it waits for the
    // child's first completions, then kills it a moment later, while (most
    // times) work is still under way.
    let mut completed_at_kill = Vec::new();
    let mut interrupted = 0;
    for round in 0..KILLS {
        emit_round(&host, round);
        let before = count(
            &data,
            "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        );
        let mut child = start(&data, &handlers, round);
        wait_for("the child to complete deliveries", |last| {
            let now = count(
                &data,
                "SELECT count(*) FROM deliveries WHERE state = 'completed'",
            );
            *last = format!("{now} completed, {before} before it started");
            (now > before).then_some(())
        });
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..250)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let completed = count(
            &data,
            "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        );
        if completed < (round + 1) * SIGNALS_PER_ROUND * 2 {
            interrupted += 1;
        }
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

    // Most kills really interrupted work: the child had started completing
    // deliveries, and fewer had completed than had been emitted by then. And
    // the deliveries a killed child was running were rescued when their
    // lease ran out, which their attempts record.
    assert!(
        interrupted >= KILLS * 2 / 3,
        "only {interrupted} of {KILLS} kills interrupted work: {completed_at_kill:?}"
    );
    let rescued = count(
        &data,
        "SELECT count(*) FROM attempts WHERE outcome = 'lease_expired'",
    );
    assert!(
        rescued > 0,
        "no attempt was ever rescued from a killed child"
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
        "{KILLS} kills, {interrupted} interrupting work; completed deliveries at each kill: \
         {completed_at_kill:?}; {rescued} attempts rescued; executor calls: {} for {} directives",
        executed.lines().count(),
        directives.len()
    );
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&handlers);
}
