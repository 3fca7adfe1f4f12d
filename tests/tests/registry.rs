//! Fanout by the hosts' registry, through the real `sighost` binary: a
//! running host registers its handlers in the store, so a signal emitted by
//! any client reaches them, wherever that client runs and whether or not the
//! host is up at that moment; the emitting CLI loads no module.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sighost::store::{Delivery, DeliveryFilter, DeliveryState};
use sighost::{HostConfig, Sighost};
use sighost_tests::host_helpers::{Scratch, install, wait_for};
use sighost_tests::server::{Server, cli};
use sighost_tests::{guest, sighost_binary};

const TENANT: &str = "org_registry";

/// `sighost emit` run from `cwd`, a directory that is not the host's.
fn emit_from(cwd: &Path, data: &Path, name: &str) -> Output {
    Command::new(sighost_binary())
        .current_dir(cwd)
        .arg("--data-dir")
        .arg(data)
        .args(["emit", name, "{}", "--tenant", TENANT])
        .output()
        .expect("run sighost emit")
}

/// The answer's deliveries count.
fn deliveries_made(emitted: &Output) -> u64 {
    assert!(
        emitted.status.success(),
        "{}",
        String::from_utf8_lossy(&emitted.stderr)
    );
    let answer: Value = serde_json::from_slice(&emitted.stdout).expect("a JSON answer");
    answer["deliveries"].as_u64().expect("a count")
}

fn deliveries(data: &Path) -> Vec<Delivery> {
    let host = Sighost::open(HostConfig::new(data)).expect("open the store");
    host.store()
        .deliveries(&DeliveryFilter::default())
        .expect("deliveries")
}

fn wait_completed(data: &Path, count: usize) {
    wait_for("the deliveries to complete", |last| {
        let all = deliveries(data);
        *last = format!("{:?}", all.iter().map(|d| d.state).collect::<Vec<_>>());
        (all.len() == count && all.iter().all(|d| d.state == DeliveryState::Completed))
            .then_some(())
    });
}

/// `sighost handlers --json`, by handler name.
fn registered(data: &Path) -> std::collections::BTreeMap<String, Value> {
    let listed = cli(data, &["handlers", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .map(|row| (row["name"].as_str().unwrap_or_default().to_owned(), row))
        .collect()
}

#[test]
fn an_emit_from_anywhere_reaches_the_running_hosts_handlers_while_it_is_up_or_down() {
    let scratch = Scratch::new("registry-e2e");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    install(
        &handlers,
        "echo",
        &guest("trivial"),
        "subscriptions = ['registry.*']\ndirectives = ['bench.noop']\n",
    );
    std::fs::write(handlers.join("broken.wasm"), b"not a component").expect("write");
    // Another working directory, whose ./handlers (the default directory)
    // holds a handler no host runs: an emit from here must neither load it
    // nor deliver to it.
    let elsewhere = scratch.subdir("elsewhere");
    std::fs::create_dir_all(elsewhere.join("handlers")).expect("a handlers directory");
    install(
        &elsewhere.join("handlers"),
        "stray",
        &guest("trivial"),
        "subscriptions = ['registry.*']\ndirectives = ['bench.noop']\n",
    );
    let created = cli(&data, &["tenants", "create", TENANT]);
    assert!(created.status.success(), "{created:?}");

    let server = Server::start(&data, &handlers, "registry-1", 1);
    let rows = registered(&data);
    assert_eq!(
        rows["echo"]["subscriptions"],
        serde_json::json!(["registry.*"])
    );
    assert!(rows["echo"]["digest"].is_string(), "{rows:?}");
    assert!(
        rows["broken"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a valid WebAssembly component")),
        "{rows:?}"
    );
    assert!(!rows.contains_key("stray"), "{rows:?}");

    assert_eq!(
        deliveries_made(&emit_from(&elsewhere, &data, "registry.up")),
        1
    );
    wait_completed(&data, 1);
    assert!(
        deliveries(&data).iter().all(|d| d.handler == "echo"),
        "only the running host's handler"
    );

    // Stopped, the host keeps its handlers registered: an emit meanwhile
    // gets its delivery, and the host runs it when it is back.
    server.stop();
    assert_eq!(
        deliveries_made(&emit_from(&elsewhere, &data, "registry.down")),
        1
    );
    let server = Server::start(&data, &handlers, "registry-2", 1);
    wait_completed(&data, 2);

    // Removed from the only host that had it, a handler is no target.
    std::fs::remove_file(handlers.join("echo.wasm")).expect("remove the module");
    wait_for("the host to unregister echo", |last| {
        let rows = registered(&data);
        *last = format!("{:?}", rows.keys().collect::<Vec<_>>());
        (!rows.contains_key("echo")).then_some(())
    });
    let unheard = emit_from(&elsewhere, &data, "registry.gone");
    assert_eq!(deliveries_made(&unheard), 0);
    assert!(
        String::from_utf8_lossy(&unheard.stderr).contains("no handler registered"),
        "the emit says it reached no handler: {unheard:?}"
    );

    // An operator forgets a registration by name.
    let removed = cli(&data, &["handlers", "--remove", "broken"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(registered(&data).is_empty());
    let unknown = cli(&data, &["handlers", "--remove", "broken"]);
    assert!(!unknown.status.success(), "nothing to forget: {unknown:?}");
    server.stop();
}
