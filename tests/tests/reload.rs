//! The handlers directory of a running `sighost run`, changed under it: a
//! handler swapped for another version, broken files dropped in, a handler
//! removed and put back, a file written slowly, and a restart that must find
//! its compiled code in the cache. The real binary, real components.
//!
//! The test process opens the same data directory through the library to
//! emit and to read the store; its own registry is loaded from the handlers
//! directory as it was at the start, which lets it create deliveries for a
//! handler the running host no longer has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sighost::reload::SCAN_INTERVAL;
use sighost::sandbox::digest;
use sighost::store::{Delivery, DeliveryFilter, DeliveryState, DirectiveFilter, NewSignal};
use sighost::{HostConfig, Sighost};
use sighost_tests::guest;
use sighost_tests::host_helpers::{Scratch, install, wait_for};
use sighost_tests::server::{Server, cli, error_about, field, loaded, message};

const TENANT: &str = "org_reload";
const MANIFEST: &str = "subscriptions = ['reload.*']\ndirectives = ['bench.noop']\n";

/// A host on the test's side of `data`, with `handlers` loaded as they are
/// now, and the test tenant.
fn library_host(data: &Path, handlers: &Path) -> Sighost {
    let host = Sighost::open(HostConfig::new(data)).expect("open the store");
    let errors = host.load_handlers_dir(handlers).expect("read handlers");
    assert!(errors.is_empty(), "{errors:?}");
    if host.store().tenant(TENANT).expect("tenant").is_none() {
        host.store()
            .create_tenant(TENANT, json!({}), Utc::now())
            .expect("create tenant");
    }
    host
}

fn emit(host: &Sighost, i: usize) {
    host.emit(NewSignal {
        tenant: TENANT.into(),
        name: "reload.tested".into(),
        payload: json!({ "i": i }),
        ..NewSignal::default()
    })
    .expect("emit");
}

fn deliveries(host: &Sighost, handler: &str) -> Vec<Delivery> {
    host.store()
        .deliveries(&DeliveryFilter {
            handler: Some(handler.into()),
            ..DeliveryFilter::default()
        })
        .expect("list deliveries")
}

fn wait_all_completed(host: &Sighost, handler: &str, count: usize) -> Vec<Delivery> {
    wait_for("every delivery to complete", |last| {
        let all = deliveries(host, handler);
        *last = format!("{:?}", all.iter().map(|d| d.state).collect::<Vec<_>>());
        (all.len() == count && all.iter().all(|d| d.state == DeliveryState::Completed))
            .then_some(all)
    })
}

fn wasm_digest(path: &Path) -> String {
    digest(&std::fs::read(path).expect("read component"))
}

/// When the running host first loaded this version of `name`.
fn first_seen(host: &Sighost, name: &str, digest: &str) -> DateTime<Utc> {
    host.store()
        .handler_versions(name)
        .expect("handler versions")
        .into_iter()
        .find(|v| v.digest == digest)
        .unwrap_or_else(|| panic!("version {digest} of {name} is recorded"))
        .first_seen_at
}

#[test]
fn a_swapped_handler_runs_new_deliveries_and_finishes_in_flight_ones_on_the_old_code() {
    let scratch = Scratch::new("reload-swap");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    // Version 1 takes 300 ms and requests nothing; version 2 requests a directive.
    let wasm = install(&handlers, "swap", &guest("slow"), MANIFEST);
    let (old, new) = (wasm_digest(&guest("slow")), wasm_digest(&guest("trivial")));
    let host = library_host(&data, &handlers);
    let server = Server::start(&data, &handlers, "run", 1);

    // Emit faster than one worker runs version 1, so that deliveries are in
    // flight and queued whenever the swap lands, however long it compiles.
    let mut emitted = 0;
    let mut swapped = false;
    let mut loaded_at = None;
    while loaded_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_millis(500)) {
        for _ in 0..4 {
            emit(&host, emitted);
            emitted += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
        if !swapped && emitted >= 8 {
            std::fs::copy(guest("trivial"), &wasm).expect("replace the module");
            swapped = true;
        }
        if loaded_at.is_none() && server.log().iter().any(|l| loaded(l, "swap", &new)) {
            loaded_at = Some(Instant::now());
        }
        assert!(emitted < 2000, "version 2 was never loaded");
    }

    let all = wait_all_completed(&host, "swap", emitted);
    let ran_old = all
        .iter()
        .filter(|d| d.handler_digest.as_deref() == Some(old.as_str()));
    let ran_new = all
        .iter()
        .filter(|d| d.handler_digest.as_deref() == Some(new.as_str()));
    let (ran_old, ran_new) = (ran_old.count(), ran_new.count());
    assert!(ran_old > 0 && ran_new > 0, "old {ran_old}, new {ran_new}");
    assert_eq!(
        ran_old + ran_new,
        emitted,
        "every delivery records one of the two"
    );
    eprintln!("{emitted} deliveries: {ran_old} on version 1, {ran_new} on version 2");
    let directives = host
        .store()
        .directives(&DirectiveFilter::default())
        .expect("directives");
    assert_eq!(
        directives.len(),
        ran_new,
        "only version 2 requests directives"
    );

    // A delivery that started before version 2 was swapped in finished on
    // version 1.
    let swapped_at = first_seen(&host, "swap", &new);
    assert!(first_seen(&host, "swap", &old) < swapped_at);
    let spanning = all.iter().find_map(|d| {
        let attempts = host.store().attempts(d.id).expect("attempts");
        attempts
            .into_iter()
            .find(|a| a.started_at < swapped_at && a.finished_at > swapped_at)
    });
    let spanning = spanning.expect("a delivery was in flight during the swap");
    assert_eq!(
        (spanning.handler_digest.as_str(), spanning.outcome.as_str()),
        (old.as_str(), "ok")
    );

    // And from now on, every new delivery runs version 2.
    emit(&host, emitted);
    let all = wait_all_completed(&host, "swap", emitted + 1);
    let last = all.iter().max_by_key(|d| d.id).expect("the last delivery");
    assert_eq!(last.handler_digest.as_deref(), Some(new.as_str()));
    server.stop();
}

#[test]
fn garbage_and_forbidden_imports_are_reported_and_the_other_handlers_keep_working() {
    let scratch = Scratch::new("reload-broken");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    let good = install(&handlers, "good", &guest("trivial"), MANIFEST);
    let good_digest = wasm_digest(&good);
    let host = library_host(&data, &handlers);
    let mut server = Server::start(&data, &handlers, "run", 1);

    let garbage = handlers.join("garbage.wasm");
    std::fs::write(&garbage, b"this is not a WebAssembly module").expect("write garbage");
    let sneaky = handlers.join("sneaky.wasm");
    std::fs::copy(guest("unknown-importer"), &sneaky).expect("copy unknown-importer");
    server.wait_for_log("the garbage to be reported", |l| {
        error_about(l, &["garbage.wasm", "not a valid WebAssembly component"])
    });
    server.wait_for_log("the forbidden import to be reported", |l| {
        error_about(l, &["sneaky.wasm", "acme:backdoor"])
    });
    assert!(
        server.is_running(),
        "broken modules do not take the host down"
    );

    // The good handler still runs, for a signal emitted through the CLI,
    // which finds it in the store's registry.
    let emitted = cli(&data, &["emit", "reload.tested", "{}", "--tenant", TENANT]);
    assert!(
        emitted.status.success(),
        "{}",
        String::from_utf8_lossy(&emitted.stderr)
    );
    let done = wait_all_completed(&host, "good", 1);
    assert_eq!(
        done[0].handler_digest.as_deref(),
        Some(good_digest.as_str())
    );

    // `sighost handlers` shows what the host registered: what loads, and
    // why the rest does not.
    let listed = cli(&data, &["handlers", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: BTreeMap<String, Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .map(|row| (row["name"].as_str().unwrap_or_default().to_owned(), row))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows["good"]["digest"], good_digest.as_str());
    assert_eq!(rows["good"]["subscriptions"], json!(["reload.*"]));
    assert_eq!(rows["good"]["error"], Value::Null);
    let host_id = std::fs::read_to_string(data.join("host-id")).expect("the host's id");
    assert_eq!(rows["good"]["host"], host_id.trim());
    let error = |name: &str| rows[name]["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error("garbage").contains("not a valid WebAssembly component"),
        "{}",
        error("garbage")
    );
    assert!(
        error("sneaky").contains("acme:backdoor"),
        "{}",
        error("sneaky")
    );
    assert_eq!(rows["sneaky"]["digest"], Value::Null);
    let table = cli(&data, &["handlers"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    for expected in [
        "good",
        &good_digest[..11],
        "garbage",
        "sneaky",
        "acme:backdoor",
    ] {
        assert!(
            table.contains(expected),
            "{expected} missing from:\n{table}"
        );
    }

    // `sighost check` refuses what the host refuses, naming the problem.
    for (file, problem) in [
        (&garbage, "not a valid WebAssembly component"),
        (&sneaky, "acme:backdoor"),
    ] {
        let checked = cli(&data, &["check", file.to_str().expect("utf-8 path")]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(!checked.status.success(), "{}", file.display());
        assert!(stderr.contains(problem), "{stderr}");
    }
    assert!(
        cli(&data, &["check", good.to_str().expect("utf-8 path")])
            .status
            .success()
    );

    // A broken new version of a running handler leaves the old one running.
    std::fs::write(&good, b"\0asm broken").expect("break the good handler");
    server.wait_for_log("the broken version to be reported", |l| {
        error_about(l, &["good.wasm"])
    });
    emit(&host, 1);
    let done = wait_all_completed(&host, "good", 2);
    assert!(
        done.iter()
            .all(|d| d.handler_digest.as_deref() == Some(good_digest.as_str())),
        "{done:?}"
    );
    server.stop();
}

#[test]
fn a_removed_handler_keeps_its_pending_deliveries_until_it_is_back() {
    let scratch = Scratch::new("reload-removed");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    let wasm = install(&handlers, "keeper", &guest("trivial"), MANIFEST);
    let host = library_host(&data, &handlers);
    let server = Server::start(&data, &handlers, "run", 1);

    std::fs::remove_file(&wasm).expect("remove the handler");
    server.wait_for_log("the removal to be noticed", |l| {
        message(l).starts_with("handler file removed") && field(l, "handler") == "keeper"
    });
    // Created by the test's host, which still has the handler: the running
    // host claims them, finds no handler and puts them back.
    for i in 0..3 {
        emit(&host, i);
    }
    // The running host looked at them and put them back for later, without
    // counting an attempt.
    let snoozed = wait_for("the running host to put the deliveries back", |last| {
        let pending = deliveries(&host, "keeper");
        *last = format!("{pending:?}");
        (pending.len() == 3
            && pending.iter().all(|d| {
                d.state == DeliveryState::Available
                    && d.attempt == 0
                    && d.scheduled_at > Utc::now() + chrono::Duration::seconds(30)
            }))
        .then_some(pending)
    });
    let snoozed_until: BTreeMap<i64, DateTime<Utc>> =
        snoozed.iter().map(|d| (d.id, d.scheduled_at)).collect();

    std::fs::copy(guest("trivial"), &wasm).expect("put the handler back");
    // Loading it again makes its snoozed deliveries due at once: they must
    // run long before their snooze (a minute) would have ended.
    let done = wait_all_completed(&host, "keeper", 3);
    for delivery in done {
        let attempts = host.store().attempts(delivery.id).expect("attempts");
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].outcome, "ok");
        assert!(
            attempts[0].started_at < snoozed_until[&delivery.id],
            "ran when the snooze ended, not when the handler came back: {attempts:?}"
        );
    }
    server.stop();
}

#[test]
fn a_module_still_being_written_is_loaded_once_complete() {
    let scratch = Scratch::new("reload-slow-write");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    let server = Server::start(&data, &handlers, "run", 1);

    // Written in 32 pieces 50 ms apart, over more than two scans: scans see
    // the file half-written, and every scan sees a new size, since a piece
    // lands well within each scan interval (a writer that paused for a whole
    // interval would look finished; that is the watcher's documented rule).
    let bytes = std::fs::read(guest("trivial")).expect("read component");
    let target = handlers.join("late.wasm");
    let mut file = std::fs::File::create(&target).expect("create");
    let started = Instant::now();
    let mut last_write = started;
    let mut longest_pause = Duration::ZERO;
    for piece in bytes.chunks(bytes.len().div_ceil(32)) {
        std::io::Write::write_all(&mut file, piece).expect("write a piece");
        longest_pause = longest_pause.max(last_write.elapsed());
        last_write = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(file);
    let writing = started.elapsed();
    assert!(
        writing > 2 * SCAN_INTERVAL,
        "the write took {writing:?}: no scan need have seen it half-done"
    );
    assert!(
        longest_pause < SCAN_INTERVAL,
        "this machine held the writer for {longest_pause:?}, a whole scan interval: \
         the test could not write the file the way it means to"
    );
    server.wait_for_log("the complete module to load", |l| {
        loaded(l, "late", &digest(&bytes))
    });
    let log = server.log();
    assert!(
        !log.iter().any(|l| l["level"] == "ERROR"),
        "a partial module was loaded: {log:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| message(l) == "handler loaded")
            .count(),
        1,
        "loaded once"
    );
    server.stop();
}

/// The compiled entries of the code cache (not its usage statistics or
/// temporary files, which have an extension), with their size and time.
fn compiled_entries(cache: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut entries = BTreeMap::new();
    let mut dirs = vec![cache.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read cache dir").flatten() {
            let path = entry.path();
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                dirs.push(path);
            } else if path.extension().is_none() {
                entries.insert(path, (meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    entries
}

#[test]
fn a_restart_loads_handlers_from_the_compiled_cache() {
    let scratch = Scratch::new("reload-cache");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    install(&handlers, "first", &guest("trivial"), MANIFEST);
    install(&handlers, "second", &guest("slow"), MANIFEST);

    Server::start(&data, &handlers, "run-1", 1).stop();
    let compiled = compiled_entries(&data.join("cache"));
    assert!(!compiled.is_empty(), "the first start fills the cache");

    let server = Server::start(&data, &handlers, "run-2", 1);
    for name in ["first", "second"] {
        server.wait_for_log("the handler to load", |l| {
            message(l) == "handler loaded" && field(l, "handler") == name
        });
    }
    server.stop();
    // A miss would have compiled again and written a new entry.
    assert_eq!(
        compiled_entries(&data.join("cache")),
        compiled,
        "the restart compiled nothing"
    );
}
