//! Shared helpers of the end-to-end tests and benchmarks: where the components
//! built by `build.rs` are, and how to make signals and sandboxes for them.

use std::path::{Path, PathBuf};

use sighost::sandbox::{DeliveryContext, Sandbox, SandboxConfig};
use sighost::signal::Signal;

pub mod conformance;
pub mod postgres;

pub mod failing_store;
pub mod host_helpers;
pub mod server;
pub mod soak;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

pub use generated::{GUESTS, HANDLERS};

fn find(list: &[(&str, &str)], name: &str) -> PathBuf {
    let (_, path) = list
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no component named {name}; see build.rs"));
    PathBuf::from(path)
}

/// The Python of the tests' virtualenv, with the packages of
/// `tests/requirements.txt` (`scripts/prepare.sh`, which `scripts/test.sh`
/// runs, makes it under the target directory).
pub fn test_python() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .expect("test binary lives in target/<profile>/deps");
    let python = target.join("test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with ./scripts/test.sh, which makes it",
        python.display()
    );
    python
}

/// A client script of `tests/clients/`.
pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// The built test guest `tests/guests/<name>`.
pub fn guest(name: &str) -> PathBuf {
    find(GUESTS, name)
}

/// The built example handler `handlers/<name>.wasm`.
pub fn example_handler(name: &str) -> PathBuf {
    find(HANDLERS, name)
}

/// A sandbox with the default limits and a quick epoch tick.
pub fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).expect("sandbox")
}

/// A signal of `tenant` with a fixed id and times.
pub fn signal(tenant: &str, name: &str, payload: serde_json::Value) -> Signal {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .expect("valid time")
        .with_timezone(&chrono::Utc);
    Signal {
        id: format!("sig_{tenant}_1"),
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        payload,
        metadata: serde_json::json!({}),
        dedupe_key: None,
        occurred_at: at,
        correlation_id: Some("corr_1".to_owned()),
        causation_id: None,
        actor: None,
        subject: None,
        source: Some("tests".to_owned()),
        inserted_at: at,
    }
}

/// A first attempt for a tenant with these settings and packages.
pub fn delivery(settings: serde_json::Value, packages: &[&str]) -> DeliveryContext {
    DeliveryContext {
        attempt: 1,
        max_attempts: 10,
        settings,
        packages: packages.iter().map(|p| p.to_string()).collect(),
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the cargo that runs us with `args` in the workspace root, and fails
/// the caller if the build fails.
pub fn cargo_build(args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .arg("build")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run cargo build {args:?}: {e}"));
    assert!(status.success(), "cargo build {args:?} failed");
}

/// The `sighost` binary, built on first use by the same cargo that runs the
/// tests (it is another package's binary, so cargo does not build it for us).
pub fn sighost_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Tests run in the profile they were built with; build the binary in it too.
            let profile_dir = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent()?.parent().map(|p| p.to_path_buf()))
                .expect("test binary lives in target/<profile>/deps");
            let mut args = vec!["-p", "sighost", "--bin", "sighost"];
            if profile_dir.ends_with("release") {
                args.push("--release");
            }
            cargo_build(&args);
            profile_dir.join("sighost")
        })
        .clone()
}

/// After a run that had `expected` (signal, handler) pairs to deliver: every
/// pair has exactly one delivery, completed, and exactly one directive, with
/// unique idempotency keys — none missing, none twice. Returns the deliveries
/// and directives for the caller's own checks.
pub fn assert_each_pair_completed_once(
    store: &dyn sighost::store::Store,
    expected: usize,
) -> (
    Vec<sighost::store::Delivery>,
    Vec<sighost::store::Directive>,
) {
    use sighost::store::{DeliveryFilter, DeliveryState, DirectiveFilter};
    use std::collections::HashSet;

    let deliveries = store
        .deliveries(&DeliveryFilter::default())
        .expect("deliveries");
    assert_eq!(
        deliveries.len(),
        expected,
        "one delivery per (signal, handler)"
    );
    let pairs: HashSet<(&str, &str)> = deliveries
        .iter()
        .map(|d| (d.signal_id.as_str(), d.handler.as_str()))
        .collect();
    assert_eq!(pairs.len(), expected, "no pair has two deliveries");
    assert!(
        deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Completed)
    );

    let directives = store
        .directives(&DirectiveFilter::default())
        .expect("directives");
    assert_eq!(
        directives.len(),
        expected,
        "one directive per pair: none missing, none twice"
    );
    let per_pair: HashSet<(&str, &str)> = directives
        .iter()
        .map(|d| (d.signal_id.as_str(), d.handler.as_str()))
        .collect();
    assert_eq!(per_pair, pairs, "every pair has its directive");
    let keys: HashSet<&str> = directives
        .iter()
        .map(|d| d.idempotency_key.as_str())
        .collect();
    assert_eq!(keys.len(), expected, "idempotency keys are unique");
    (deliveries, directives)
}

/// Waits (up to five minutes) until every delivery completed and `expected`
/// directives all succeeded; fails with the queue's state otherwise.
pub fn wait_until_all_done(store: &dyn sighost::store::Store, expected: usize) {
    use sighost::store::{DeliveryState, DirectiveState};

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let stats = store.stats().expect("stats");
        let deliveries_done = stats
            .deliveries
            .iter()
            .all(|(s, _)| *s == DeliveryState::Completed);
        let directives_done = stats
            .directives
            .iter()
            .all(|(s, _)| *s == DirectiveState::Succeeded);
        let directives: u64 = stats.directives.iter().map(|(_, n)| n).sum();
        if deliveries_done && directives_done && directives as usize == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not finish: {stats:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
