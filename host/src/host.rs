//! The library entry point: a [`Sighost`] owns a store, a sandbox and the
//! handler registry; [`Sighost::start`] runs delivery workers and the
//! directive runner until [`Running::shutdown`].
//!
//! ```no_run
//! use sighost::{HostConfig, Sighost, store::NewSignal};
//!
//! let host = Sighost::open(HostConfig::new("./data"))?;
//! for error in host.load_handlers_dir("./handlers".as_ref())? {
//!     eprintln!("not loaded: {error}");
//! }
//! host.create_tenant("org_acme", serde_json::json!({}))?;
//! let running = host.start()?;
//! host.emit(NewSignal {
//!     tenant: "org_acme".into(),
//!     name: "forum.thread.created".into(),
//!     payload: serde_json::json!({"thread_id": "t1", "title": "Hello"}),
//!     ..NewSignal::default()
//! })?;
//! running.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::emit::{EmitError, Emitter};
use crate::health::StoreHealth;
use crate::metrics::{Metrics, MetricsConfig};
use crate::registry::HandlerRegistry;
use crate::reload::{HandlerFiles, HandlerLoader, Watcher};
use crate::retention::{Pruner, Retention};
use crate::runner::executors::LogExecutor;
use crate::runner::{Executors, Runner, RunnerConfig, RunnerDeps};
use crate::sandbox::{LoadError, Sandbox, SandboxConfig, SandboxError};
use crate::store::{
    DeliveryTarget, Emitted, NewSignal, SignalFilter, Store, StoreError, StoreLocation,
};
use crate::wake::Wake;
use crate::worker::{WorkerConfig, WorkerDeps, Workers};

/// Everything a host is built from. `HostConfig::new(data_dir)` gives the
/// defaults of the README.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the SQLite database (`sighost.db`) and the compiled-code cache
    /// (`cache/`) live.
    pub data_dir: PathBuf,
    /// The database: `data_dir/sighost.db` unless set to another file or to
    /// PostgreSQL ([`StoreLocation::parse`] reads a `--store` URL).
    pub store: StoreLocation,
    pub sandbox: SandboxConfig,
    pub workers: WorkerConfig,
    pub runner: RunnerConfig,
    /// Directive name → executor; names without one go to the fallback,
    /// which by default logs the directive to stdout as a JSON line.
    pub executors: Executors,
    /// What `start` prunes, and when (`crate::retention`).
    pub retention: Retention,
    /// How `/metrics` labels its series (`crate::metrics`).
    pub metrics: MetricsConfig,
    pub clock: fn() -> DateTime<Utc>,
}

impl HostConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            store: StoreLocation::Sqlite(data_dir.join("sighost.db")),
            sandbox: SandboxConfig {
                cache_dir: Some(data_dir.join("cache")),
                ..SandboxConfig::default()
            },
            data_dir,
            workers: WorkerConfig::default(),
            runner: RunnerConfig::default(),
            executors: Executors::new().with_fallback(Arc::new(LogExecutor::stdout())),
            retention: Retention::default(),
            metrics: MetricsConfig::default(),
            clock: Utc::now,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("sighost.db")
    }
}

/// The id this host registers its handlers under: kept in `data_dir`, so
/// a restart is the same host (its registrations are replaced, not added
/// to). Processes that share a data directory share an id, and so one set
/// of registrations: give each host process a data directory of its own.
fn read_or_create_host_id(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    let file = data_dir.join("host-id");
    std::fs::create_dir_all(data_dir)?;
    let machine = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    let id = format!("{machine}-{}", &nonce[nonce.len() - 8..]);
    // Created only if absent, so that two processes starting together on
    // one directory end up with the one id that was written first.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
    {
        Ok(mut created) => {
            created.write_all(format!("{id}\n").as_bytes())?;
            created.sync_all()?;
            return Ok(id);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Another process may be writing it this instant.
    for _ in 0..50 {
        let written = std::fs::read_to_string(&file)?;
        if !written.trim().is_empty() {
            return Ok(written.trim().to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(std::io::Error::other(format!(
        "{} is empty: remove it, and the host makes a new id",
        file.display()
    )))
}

/// Why a host operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error("no handler named {0:?} is loaded")]
    UnknownHandler(String),
    #[error(
        "no signal with id {0:?}: it was never stored, or retention pruned it once nothing of \
         it was left (`[retention] signals`)"
    )]
    UnknownSignal(String),
    /// A bulk operator action (a filter without ids) that was not confirmed.
    #[error(
        "{action}: the filter names no ids and matches {matched}; confirm to act on all of them"
    )]
    Unconfirmed {
        action: &'static str,
        matched: crate::operations::Matched,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct Sighost {
    store: Arc<dyn Store>,
    sandbox: Arc<Sandbox>,
    registry: Arc<HandlerRegistry>,
    /// What became of each handler file loaded or tried, for operators and
    /// for the handlers-directory watcher.
    files: Arc<HandlerFiles>,
    emitter: Arc<Emitter>,
    /// Rung by emit for the delivery workers.
    wake: Arc<Wake>,
    /// Rung by the workers for the directive runner.
    directive_wake: Arc<Wake>,
    /// Failed result writes, for `/readyz` and the log.
    health: Arc<StoreHealth>,
    /// What this process did, for `/metrics`.
    metrics: Arc<Metrics>,
    /// This host's id in the store's handler registry, once it registers
    /// ([`Sighost::register`]).
    host_id: Arc<OnceLock<String>>,
    /// Shared by every loader of this host (`HandlerLoader::register`).
    registering: Arc<std::sync::Mutex<crate::reload::Unregistered>>,
    config: HostConfig,
}

/// The workers and runner of a started host.
#[derive(Debug)]
pub struct Running {
    workers: Workers,
    runner: Runner,
    pruner: Option<Pruner>,
}

impl Running {
    /// Stops claiming; finishes what is running; puts back what has not
    /// started; returns when every thread is done.
    pub fn shutdown(self) {
        if let Some(pruner) = self.pruner {
            pruner.stop();
        }
        self.workers.shutdown();
        self.runner.shutdown();
    }
}

impl Sighost {
    /// Opens the store of `config.store` (by default SQLite under
    /// `config.data_dir`) and builds the sandbox.
    pub fn open(config: HostConfig) -> Result<Self, HostError> {
        let store = config.store.open((config.clock)())?;
        Self::with_store(store, config)
    }

    /// A host on a store of your choosing.
    pub fn with_store(store: Arc<dyn Store>, config: HostConfig) -> Result<Self, HostError> {
        let sandbox = Arc::new(Sandbox::new(config.sandbox.clone())?);
        let registry = Arc::new(HandlerRegistry::new(config.workers.retry.max_attempts));
        let wake = Arc::new(Wake::default());
        let directive_wake = Arc::new(Wake::default());
        store.watch(wake.clone(), directive_wake.clone())?;
        let host_id = Arc::new(OnceLock::new());
        let emitter = Arc::new(Emitter::new(
            store.clone(),
            registry.clone(),
            config.sandbox.limits.clone(),
            wake.clone(),
            host_id.clone(),
        ));
        Ok(Self {
            store,
            sandbox,
            registry,
            files: Arc::default(),
            emitter,
            wake,
            directive_wake,
            health: Arc::default(),
            metrics: Arc::new(Metrics::new(&config.metrics)),
            host_id,
            registering: Arc::default(),
            config,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Whether the store takes this process's result writes.
    pub fn store_health(&self) -> &Arc<StoreHealth> {
        &self.health
    }

    /// What this process's workers, runner, pruner and API have done.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Tells this process's delivery workers that work may be due.
    pub(crate) fn wake_workers(&self) {
        self.wake.notify();
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn registry(&self) -> &Arc<HandlerRegistry> {
        &self.registry
    }

    pub fn emitter(&self) -> &Arc<Emitter> {
        &self.emitter
    }

    /// Every handler file loaded or tried, with its digest or its error.
    pub fn handler_files(&self) -> &Arc<HandlerFiles> {
        &self.files
    }

    fn loader(&self) -> HandlerLoader {
        HandlerLoader {
            sandbox: self.sandbox.clone(),
            store: self.store.clone(),
            registry: self.registry.clone(),
            files: self.files.clone(),
            host_id: self.host_id.clone(),
            registering: self.registering.clone(),
            clock: self.config.clock,
        }
    }

    /// Registers this host's handlers in the store, and from now on keeps
    /// them registered as they load, change and go, so that signals emitted
    /// by any client (the CLI, another host, the library) reach them. The
    /// registration outlives the process: a stopped or restarting host's
    /// handlers still get their deliveries. [`Sighost::start`] calls it.
    pub fn register(&self) -> Result<&str, HostError> {
        let id = match self.host_id.get() {
            Some(id) => id,
            None => {
                let id = read_or_create_host_id(&self.config.data_dir)?;
                self.host_id.get_or_init(|| id)
            }
        };
        self.loader().register()?;
        Ok(id)
    }

    /// This host's id in the store's handler registry, once registered.
    pub fn host_id(&self) -> Option<&str> {
        self.host_id.get().map(String::as_str)
    }

    /// Loads one handler file and its manifest, replacing any handler of
    /// the same name. On failure the previous version keeps running.
    pub fn load_handler(&self, wasm: &Path) -> Result<(), LoadError> {
        self.loader().load(wasm)
    }

    /// Loads every `*.wasm` in `dir` that is new or changed since the last
    /// call, and unloads those whose file is gone; returns the ones that
    /// failed, each naming its file. The others load whatever the failures.
    pub fn load_handlers_dir(&self, dir: &Path) -> Result<Vec<LoadError>, HostError> {
        Ok(self.loader().load_dir(dir)?)
    }

    /// Keeps the registry in step with `dir`, looking every `interval`
    /// (see [`crate::reload`]), until [`Watcher::stop`]. Load the directory
    /// first with [`Sighost::load_handlers_dir`].
    pub fn watch_handlers_dir(&self, dir: &Path, interval: Duration) -> Result<Watcher, HostError> {
        Ok(Watcher::start(self.loader(), dir.to_owned(), interval)?)
    }

    pub fn emit(&self, signal: NewSignal) -> Result<Emitted, EmitError> {
        self.emitter.emit(signal, (self.config.clock)())
    }

    pub fn emit_batch(&self, signals: Vec<NewSignal>) -> Result<Vec<Emitted>, EmitError> {
        self.emitter.emit_batch(signals, (self.config.clock)())
    }

    /// Delivers persisted signals again to the handlers registered now (only to
    /// `handler` if given), in batches, calling `progress(done, total)` after
    /// each. Safe to repeat: directives deduplicate by idempotency key. An
    /// empty filter, every signal of every tenant, must be `confirmed`.
    pub fn replay(
        &self,
        filter: &SignalFilter,
        handler: Option<&str>,
        confirmed: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<u64, HostError> {
        if let Some(name) = handler
            && !self.emitter.knows_handler(name)?
        {
            return Err(HostError::UnknownHandler(name.to_owned()));
        }
        let signals = self.store.signals(filter)?;
        if let Some(missing) = filter
            .ids
            .iter()
            .find(|id| !signals.iter().any(|s| &s.id == *id))
        {
            return Err(HostError::UnknownSignal(missing.clone()));
        }
        if *filter == SignalFilter::default() && !confirmed {
            return Err(HostError::Unconfirmed {
                action: "replay signals",
                matched: crate::operations::Matched::of(signals.iter().map(|s| s.tenant.as_str())),
            });
        }
        let mut created = 0;
        for (done, chunk) in signals.chunks(500).enumerate() {
            let batch: Vec<(String, Vec<DeliveryTarget>)> = chunk
                .iter()
                .map(|signal| {
                    let mut targets = self.emitter.targets_for(&signal.name)?;
                    targets.retain(|t| handler.is_none_or(|name| t.handler == name));
                    Ok((signal.id.clone(), targets))
                })
                .collect::<Result<_, StoreError>>()?;
            // Replays obey the tenants' pending quotas, chunk by chunk.
            self.emitter.check_caps(
                chunk
                    .iter()
                    .zip(&batch)
                    .map(|(signal, (_, targets))| (signal.tenant.as_str(), targets.len())),
                false,
            )?;
            created += self.store.replay(&batch, (self.config.clock)())?;
            progress((done * 500 + chunk.len()).min(signals.len()), signals.len());
        }
        if created > 0 {
            self.wake.notify();
        }
        Ok(created)
    }

    /// Registers the handlers ([`Sighost::register`]), then starts the
    /// delivery workers, the directive runner and, unless
    /// `config.retention` is off, the pruner.
    pub fn start(&self) -> Result<Running, HostError> {
        self.register()?;
        let workers = self.start_workers()?;
        let runner = Runner::start(
            RunnerDeps {
                store: self.store.clone(),
                emitter: self.emitter.clone(),
                executors: Arc::new(self.config.executors.clone()),
                wake: self.directive_wake.clone(),
                health: self.health.clone(),
                metrics: self.metrics.clone(),
                clock: self.config.clock,
            },
            self.config.runner.clone(),
        )?;
        let pruner = self
            .config
            .retention
            .enabled
            .then(|| {
                Pruner::start(
                    self.store.clone(),
                    self.config.retention.clone(),
                    self.metrics.clone(),
                    self.config.clock,
                )
            })
            .transpose()?;
        Ok(Running {
            workers,
            runner,
            pruner,
        })
    }

    /// Starts only the delivery workers: directives are committed but not
    /// executed (for hosts that leave execution to other processes, and for
    /// benchmarks of the delivery path).
    pub fn start_workers(&self) -> Result<Workers, HostError> {
        Ok(Workers::start(
            WorkerDeps {
                store: self.store.clone(),
                sandbox: self.sandbox.clone(),
                registry: self.registry.clone(),
                wake: self.wake.clone(),
                directive_wake: self.directive_wake.clone(),
                health: self.health.clone(),
                metrics: self.metrics.clone(),
                clock: self.config.clock,
            },
            self.config.workers.clone(),
        )?)
    }
}
