//! Helpers for the tests that run a whole host (`tests/fanout.rs`): a scratch
//! directory, a host configuration with fast retries, handlers installed under
//! a name of the test's choosing with a manifest, waiting on the store, and an
//! in-process executor that counts its calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sighost::retry::RetryPolicy;
use sighost::runner::{Executor, ExecutorError, Executors};
use sighost::store::Directive;
use sighost::{HostConfig, Sighost};

/// How long a test waits for the host to reach a state before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A fresh, empty directory no other test (or test run) uses.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sighost-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<scratch>/<name>`, created.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.path.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A host configuration on `data_dir` that retries within milliseconds and
/// polls every 10 ms, with at most `max_attempts` attempts by default for
/// deliveries and directives alike. No executors are set: a test names its own.
pub fn fast_config(data_dir: &Path, max_attempts: u32) -> HostConfig {
    let mut config = HostConfig::new(data_dir);
    config.workers.threads = 2;
    config.workers.retry = RetryPolicy::fast(max_attempts);
    config.workers.poll_interval = Duration::from_millis(10);
    config.runner.retry = RetryPolicy::fast(max_attempts);
    config.runner.poll_interval = Duration::from_millis(10);
    config.executors = Executors::new();
    config
}

/// Copies the component `wasm` into `dir` as `<name>.wasm` with `manifest` as
/// its `<name>.toml` sidecar; returns the path of the copy.
pub fn install(dir: &Path, name: &str, wasm: &Path, manifest: &str) -> PathBuf {
    let target = dir.join(format!("{name}.wasm"));
    std::fs::copy(wasm, &target)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", wasm.display(), target.display()));
    let sidecar = dir.join(format!("{name}.toml"));
    std::fs::write(&sidecar, manifest)
        .unwrap_or_else(|e| panic!("write {}: {e}", sidecar.display()));
    target
}

/// Opens a host with `config` and loads every handler of `handlers`, failing
/// the test if one does not load.
pub fn open_host(config: HostConfig, handlers: &Path) -> Sighost {
    let host = Sighost::open(config).expect("the host opens its store");
    let errors = host
        .load_handlers_dir(handlers)
        .expect("the handlers dir is readable");
    assert!(errors.is_empty(), "handlers failed to load: {errors:?}");
    host
}

/// How many deliveries of `host` are in `state`.
pub fn deliveries_in(host: &Sighost, state: sighost::store::DeliveryState) -> usize {
    host.store()
        .deliveries(&sighost::store::DeliveryFilter {
            state: Some(state),
            ..Default::default()
        })
        .expect("deliveries")
        .len()
}

/// `count` signals named `name` for `tenant`, payloads `{"i": 0}`, `{"i": 1}`, …
pub fn numbered_signals(tenant: &str, name: &str, count: usize) -> Vec<sighost::store::NewSignal> {
    (0..count)
        .map(|i| sighost::store::NewSignal {
            tenant: tenant.into(),
            name: name.into(),
            payload: serde_json::json!({ "i": i }),
            ..Default::default()
        })
        .collect()
}

/// Polls `check` every 20 ms until it returns `Some`, for at most
/// [`PATIENCE`]; then fails the test naming `what` and the last state seen,
/// which `check` reports through `last`.
pub fn wait_for<T>(what: &str, check: impl FnMut(&mut String) -> Option<T>) -> T {
    wait_for_within(PATIENCE, what, check)
}

/// [`wait_for`] with another patience, for work whose size, not its
/// promise, decides how long it takes.
pub fn wait_for_within<T>(
    patience: Duration,
    what: &str,
    mut check: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + patience;
    let mut last = String::new();
    loop {
        if let Some(value) = check(&mut last) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {patience:?} waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An in-process executor that counts its calls per directive id, fails the
/// first `fail_first` calls of each directive with a retryable error, and
/// returns `{"call": n}` on success.
#[derive(Debug, Default)]
pub struct CountingExecutor {
    fail_first: u32,
    calls: Mutex<HashMap<String, u32>>,
    /// Every directive it was handed, in call order.
    seen: Mutex<Vec<Directive>>,
}

impl CountingExecutor {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// One whose every directive fails its first `n` calls.
    pub fn failing_first(n: u32) -> Arc<Self> {
        Arc::new(Self {
            fail_first: n,
            ..Self::default()
        })
    }

    /// Calls made for the directive `id`.
    pub fn calls(&self, id: &str) -> u32 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Calls made, for every directive.
    pub fn total_calls(&self) -> u32 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// The directives it was handed, in call order.
    pub fn seen(&self) -> Vec<Directive> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Executors that send each of `names` here.
    pub fn for_names(self: &Arc<Self>, names: &[&str]) -> Executors {
        names.iter().fold(Executors::new(), |executors, name| {
            executors.with(*name, self.clone() as Arc<dyn Executor>)
        })
    }
}

impl Executor for CountingExecutor {
    fn execute(&self, directive: &Directive) -> Result<serde_json::Value, ExecutorError> {
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let count = calls.entry(directive.id.clone()).or_insert(0);
            *count += 1;
            *count
        };
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(directive.clone());
        if call <= self.fail_first {
            return Err(ExecutorError::Retryable(format!(
                "scripted failure {call} of {}",
                self.fail_first
            )));
        }
        Ok(serde_json::json!({ "call": call }))
    }
}
