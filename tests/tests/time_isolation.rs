//! Time isolation through the real `sighost` binary: no guest holds a
//! worker, the loader or a CLI command past its limit (`emit` loads no
//! module at all: `tests/tests/registry.rs`). Guests that wait in
//! a host call (a `wasi:clocks` timer) or in a core start function, beside
//! good handlers; what matters is that the good ones are never held back.
//! Each test waits for a condition with a deadline, never for a fixed time.

use std::path::Path;
use std::process::{Command, Stdio};

use chrono::Utc;
use serde_json::json;
use sighost::store::{Delivery, DeliveryFilter, DeliveryState};
use sighost::{HostConfig, Sighost};
use sighost_tests::host_helpers::{PATIENCE, Scratch, install, numbered_signals, wait_for};
use sighost_tests::server::{Server, error_about, field, message};
use sighost_tests::{guest, sighost_binary};
use wait_timeout::ChildExt;

/// Runs the CLI with `args` on `data`; fails the test if it has not ended
/// within [`PATIENCE`] (the hostile guests below wait 60 s).
fn cli_within_patience(data: &Path, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(sighost_binary())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sighost");
    match child.wait_timeout(PATIENCE).expect("wait for sighost") {
        Some(_) => child.wait_with_output().expect("its output"),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sighost {args:?} was still running after {PATIENCE:?}");
        }
    }
}

#[test]
fn check_refuses_a_start_function_that_loops_or_waits_within_the_load_budget() {
    let scratch = Scratch::new("time-check");
    let data = scratch.subdir("data");
    for hostile in ["busy-start", "sleepy-start"] {
        let file = scratch.path().join(format!("{hostile}.wasm"));
        std::fs::copy(guest(hostile), &file).expect("copy the component");
        let checked = cli_within_patience(&data, &["check", file.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(!checked.status.success(), "{hostile} must be refused");
        assert!(
            stderr.contains(&format!(
                "{hostile}.wasm: cannot be instantiated: timed out after 2000 ms while running \
                 its start function"
            )),
            "{hostile}: {stderr}"
        );
    }
}

#[test]
fn a_start_function_that_waits_holds_back_no_other_handler_dropped_in() {
    let scratch = Scratch::new("time-reload");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    // A load budget far beyond the time the good handler needs to load: it
    // must load while the hostile one still waits. Loaded one after the
    // other, in name order, it would wait 30 s behind it.
    let config = scratch.path().join("sighost.toml");
    std::fs::write(&config, "[sandbox]\nload_timeout_ms = 30000\n").expect("write config");
    let server = Server::start_configured(&data, &handlers, "run", 2, Some(&config));

    std::fs::copy(guest("sleepy-start"), handlers.join("a-sleepy.wasm")).expect("copy");
    install(
        &handlers,
        "b-good",
        &guest("trivial"),
        "directives = ['bench.noop']\n",
    );
    server.wait_for_log("the good handler to load", |line| {
        message(line) == "handler loaded" && field(line, "handler") == "b-good"
    });
    assert!(
        !server
            .log()
            .iter()
            .any(|line| error_about(line, &["a-sleepy.wasm"])),
        "the hostile file is still loading, beside the good one"
    );
}

/// Every delivery of `handler`.
fn deliveries(host: &Sighost, handler: &str) -> Vec<Delivery> {
    host.store()
        .deliveries(&DeliveryFilter {
            handler: Some(handler.into()),
            ..DeliveryFilter::default()
        })
        .expect("list deliveries")
}

#[test]
fn guests_sleeping_in_host_calls_hold_no_worker_from_good_traffic() {
    let scratch = Scratch::new("time-sleepers");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    install(
        &handlers,
        "sleeper",
        &guest("sleeper"),
        "subscriptions = ['sleep.*']\n[limits]\ntimeout_ms = 60000\n[options]\nsleep_ms = 60000\n",
    );
    install(
        &handlers,
        "good",
        &guest("trivial"),
        "subscriptions = ['work.*']\ndirectives = ['bench.noop']\n",
    );
    // The test's own side of the store: emits create deliveries for the
    // handlers of the directory, which the server runs.
    let host = Sighost::open(HostConfig::new(&data)).expect("open the store");
    let errors = host.load_handlers_dir(&handlers).expect("read handlers");
    assert!(errors.is_empty(), "{errors:?}");
    for tenant in ["org_sleepy", "org_busy"] {
        host.store()
            .create_tenant(tenant, json!({}), Utc::now())
            .expect("tenant");
    }
    // Two worker threads, twenty sleepers: before the async sandbox, two of
    // them held both threads for their whole 60 s.
    let server = Server::start(&data, &handlers, "run", 2);

    host.emit_batch(numbered_signals("org_sleepy", "sleep.now", 20))
        .expect("emit");
    wait_for("twenty sleepers to be running", |last| {
        let running = deliveries(&host, "sleeper")
            .iter()
            .filter(|d| d.state == DeliveryState::Running)
            .count();
        *last = format!("{running} running");
        (running == 20).then_some(())
    });
    for chunk in 0..10 {
        let batch = numbered_signals("org_busy", "work.now", 100);
        host.emit_batch(batch)
            .unwrap_or_else(|e| panic!("emit chunk {chunk}: {e}"));
    }
    wait_for("the thousand good deliveries to complete", |last| {
        let good = deliveries(&host, "good");
        let done = good
            .iter()
            .filter(|d| d.state == DeliveryState::Completed)
            .count();
        *last = format!("{done} of {} completed", good.len());
        (done == 1000).then_some(())
    });
    // Still asleep: none has finished an attempt, so none was cut short to
    // make room.
    for sleeper in deliveries(&host, "sleeper") {
        assert_eq!(sleeper.state, DeliveryState::Running, "{sleeper:?}");
        let attempts = host.store().attempts(sleeper.id).expect("attempts");
        assert!(attempts.is_empty(), "{attempts:?}");
    }
    drop(server); // killed: a graceful stop would wait for the sleepers
}
