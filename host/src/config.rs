//! The host's configuration file, `sighost.toml`.
//!
//! Every key is optional: with no file at all the host runs on the defaults
//! of the README (SQLite in `./data`, handlers from `./handlers`, the HTTP API
//! on 127.0.0.1:8080). Unknown keys and values of the wrong type are errors
//! that name the key and the file, so a misspelt setting never goes silently
//! unused. Relative paths in a file are relative to the file's directory.
//!
//! ```toml
//! data_dir = "./data"            # SQLite database and compiled-code cache
//! # store = "postgres://…"       # another store instead of SQLite in data_dir
//! handlers_dir = "./handlers"    # the drop-in directory of handler modules
//!
//! [limits]                       # host defaults; manifests may override some
//! memory_mib = 64
//! timeout_ms = 2000
//! # fuel = 10_000_000            # off unless set
//! signal_payload_kib = 256
//! directive_payload_kib = 64
//! directives_per_invocation = 64
//! output_kib = 64
//! causation_depth = 16
//!
//! [sandbox]                      # the instance pool, sized at start
//! max_instances = 64             # instances alive at once (all handlers)
//! max_memory_mib = 256           # a pool slot's memory: the most a manifest may give
//! max_core_instances_per_component = 16
//! max_memories_per_component = 2
//! max_tables_per_component = 8
//! max_table_elements = 20_000
//! load_timeout_ms = 2000         # a load's start function, whatever the manifest says
//!
//! [workers]                      # delivery workers
//! threads = 4                    # default: one per core
//! max_waiting = 32               # invocations suspended in host calls, beyond threads
//! batch_size = 256
//! lease_ms = 10_000             # extended by a heartbeat while held
//! poll_interval_ms = 200
//! max_attempts = 10
//! fast_retries = false           # retry after milliseconds (demos, tests)
//! claim_order = "fair"           # deliveries and directives shared fairly between tenants;
//!                                # "oldest_first" only to compare
//!
//! [runner]                       # directive runner
//! threads = 2
//! lease_ms = 10_000             # extended by a heartbeat while held
//! max_attempts = 10
//! fast_retries = false
//! lifecycle_signals = false      # emit directive.started|succeeded|failed
//!
//! [executors."mail.send"]        # one table per directive name
//! type = "command"
//! program = "/usr/local/bin/send-mail"
//!
//! [executors."*"]                # every directive name without its own
//! type = "log"                   # default: log to stdout as JSON lines
//! path = "directives.jsonl"
//!
//! [retention]                  # finished work is deleted after (s, m, h or d):
//! enabled = true
//! completed = "24h"              # completed deliveries
//! succeeded = "24h"              # succeeded directives
//! canceled = "24h"               # canceled deliveries and directives
//! discarded = "7d"               # discarded deliveries
//! failed = "7d"                  # failed directives
//! signals = "24h"                # signals, once nothing of theirs is left
//! directive_keys = "7d"          # pruned directives' idempotency keys
//! interval = "1m"                # between two passes
//! batch_size = 1000              # rows a batch looks at, one transaction each
//! pause_ms = 20                  # between two batches
//! [retention.tenants.org_acme]   # a tenant's own; unset keys as above
//! completed = "1h"
//!
//! [metrics]                      # GET /metrics
//! tenant_labels = false          # label per-handler series by tenant too
//!
//! [http]
//! enabled = true
//! listen = "127.0.0.1:8080"      # "" disables the API too
//! header_timeout_ms = 10_000     # headers of a request, and idle between requests
//! body_timeout_ms = 30_000       # the body of a request
//! max_connections = 1024         # served at once; more wait to be accepted
//! max_batch_signals = 1000       # signals in one POST /v1/signals batch
//! max_batch_bytes = 4_194_304    # the body of a batch
//!
//! [tokens]
//! admin = "…"                    # or SIGHOST_ADMIN_TOKEN
//! [tokens.tenants]               # tenant id → its token (or a list, to rotate)
//! org_acme = "…"                 # or SIGHOST_TENANT_TOKENS="org_acme=… org_beta=…"
//!
//! [logging]
//! format = "text"                # or "json"
//! level = "info"                 # a tracing filter: "info,sighost=debug"
//! ```
//!
//! The catch-all executor is keyed `"*"` rather than `default` because
//! `default` is a valid directive name and `*` never is; it reads like the
//! catch-all subscription pattern.
//!
//! Tokens are keyed by tenant, not by token, because TOML keys show up in
//! error messages and the token would with them. Tokens from the environment
//! are added to the file's (`SIGHOST_ADMIN_TOKEN` replaces the file's admin
//! token), so none has to be written in a file. No token is ever printed: the
//! [`Debug`] of [`TokensSection`] shows tenant ids only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::host::HostConfig;
use crate::limits::LimitOverrides;
use crate::metrics::MetricsConfig;
use crate::retention::{Retention, RetentionPolicy, parse_duration};
use crate::retry::RetryPolicy;
use crate::runner::Executors;
use crate::runner::executors::{ExecutorConfig, LogExecutor, build};
use crate::sandbox::SandboxConfig;

/// The file the CLI reads when no `--config` is given, if it exists.
pub const DEFAULT_FILE: &str = "sighost.toml";

/// The key of the executor for directive names that have none of their own.
pub const CATCH_ALL_EXECUTOR: &str = "*";

/// Environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "SIGHOST_ADMIN_TOKEN";

/// Environment variable holding tenant tokens: `tenant=token` pairs separated
/// by whitespace or commas.
pub const TENANT_TOKENS_ENV: &str = "SIGHOST_TENANT_TOKENS";

/// A token shorter than this is refused: it could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the configuration cannot be used. Each message names where the bad
/// setting came from (the file, or the environment variable) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole configuration file. See the module documentation for the keys.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A store URL (e.g. `postgres://…`), passed through unchanged to what
    /// opens the store; SQLite under `data_dir` when absent.
    pub store: Option<String>,
    pub handlers_dir: PathBuf,
    pub limits: LimitsSection,
    pub sandbox: SandboxSection,
    pub workers: WorkersSection,
    pub runner: RunnerSection,
    pub retention: RetentionSection,
    pub metrics: MetricsConfig,
    /// Directive name (or [`CATCH_ALL_EXECUTOR`]) → how it is performed.
    pub executors: BTreeMap<String, ExecutorConfig>,
    pub http: HttpSection,
    pub tokens: TokensSection,
    pub logging: LoggingSection,
    /// The file this came from, for error messages; `None` for the defaults.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// Written by hand so that printing the configuration never prints the store
/// URL, which may carry a password.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("store", &self.store.as_ref().map(|_| "<redacted>"))
            .field("handlers_dir", &self.handlers_dir)
            .field("limits", &self.limits)
            .field("sandbox", &self.sandbox)
            .field("workers", &self.workers)
            .field("runner", &self.runner)
            .field("retention", &self.retention)
            .field("metrics", &self.metrics)
            .field("executors", &self.executors)
            .field("http", &self.http)
            .field("tokens", &self.tokens)
            .field("logging", &self.logging)
            .field("file", &self.file)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            store: None,
            handlers_dir: PathBuf::from("./handlers"),
            limits: LimitsSection::default(),
            sandbox: SandboxSection::default(),
            workers: WorkersSection::default(),
            runner: RunnerSection::default(),
            retention: RetentionSection::default(),
            metrics: MetricsConfig::default(),
            executors: BTreeMap::new(),
            http: HttpSection::default(),
            tokens: TokensSection::default(),
            logging: LoggingSection::default(),
            file: None,
        }
    }
}

/// `[limits]`: the host's defaults; a key left out keeps the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub memory_mib: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub signal_payload_kib: Option<usize>,
    pub directive_payload_kib: Option<usize>,
    pub directives_per_invocation: Option<u32>,
    pub output_kib: Option<usize>,
    pub causation_depth: Option<u32>,
}

/// `[sandbox]`: the instance pool. Its slots are reserved for the maximum,
/// so raise these only as far as your handlers need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    pub max_instances: Option<u32>,
    pub max_memory_mib: Option<u64>,
    pub max_core_instances_per_component: Option<u32>,
    pub max_memories_per_component: Option<u32>,
    pub max_tables_per_component: Option<u32>,
    pub max_table_elements: Option<usize>,
    pub load_timeout_ms: Option<u64>,
}

/// `[workers]`: the delivery workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    pub threads: Option<usize>,
    pub max_waiting: Option<usize>,
    pub batch_size: Option<usize>,
    pub lease_ms: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub fast_retries: bool,
    pub claim_order: Option<crate::fair::ClaimOrder>,
}

/// `[runner]`: the directive runner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSection {
    pub threads: Option<usize>,
    pub lease_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub fast_retries: bool,
    #[serde(default)]
    pub lifecycle_signals: bool,
}

/// The most rows a prune batch may look at (`retention.batch_size`).
pub const MAX_PRUNE_BATCH: u32 = 5_000;

/// `[retention]`: what the host prunes (`crate::retention`). Times are a
/// whole number and a unit: `"90s"`, `"30m"`, `"24h"`, `"7d"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub enabled: Option<bool>,
    pub completed: Option<String>,
    pub succeeded: Option<String>,
    pub canceled: Option<String>,
    pub discarded: Option<String>,
    pub failed: Option<String>,
    pub signals: Option<String>,
    pub directive_keys: Option<String>,
    pub interval: Option<String>,
    pub batch_size: Option<u32>,
    pub pause_ms: Option<u64>,
    /// Tenant id → its own times; a key it leaves out is the section's.
    #[serde(default)]
    pub tenants: BTreeMap<String, RetentionTimes>,
}

/// `[retention.tenants.ID]`: a tenant's own retention times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionTimes {
    pub completed: Option<String>,
    pub succeeded: Option<String>,
    pub canceled: Option<String>,
    pub discarded: Option<String>,
    pub failed: Option<String>,
    pub signals: Option<String>,
    pub directive_keys: Option<String>,
}

impl RetentionTimes {
    /// `base` with the times set here; errors name the key under `prefix`.
    fn apply(&self, prefix: &str, base: RetentionPolicy) -> Result<RetentionPolicy, String> {
        let mut policy = base;
        for (key, value, field) in [
            ("completed", &self.completed, &mut policy.completed),
            ("succeeded", &self.succeeded, &mut policy.succeeded),
            ("canceled", &self.canceled, &mut policy.canceled),
            ("discarded", &self.discarded, &mut policy.discarded),
            ("failed", &self.failed, &mut policy.failed),
            ("signals", &self.signals, &mut policy.signals),
            (
                "directive_keys",
                &self.directive_keys,
                &mut policy.directive_keys,
            ),
        ] {
            if let Some(text) = value {
                *field = parse_duration(text).map_err(|e| format!("`{prefix}.{key}`: {e}"))?;
            }
        }
        Ok(policy)
    }
}

impl RetentionSection {
    /// Retention as the host runs it.
    pub fn retention(&self) -> Result<Retention, String> {
        let mut retention = Retention::default();
        // The section's own times, read as a tenant's are (serde cannot
        // flatten them into a section that refuses unknown keys).
        let times = RetentionTimes {
            completed: self.completed.clone(),
            succeeded: self.succeeded.clone(),
            canceled: self.canceled.clone(),
            discarded: self.discarded.clone(),
            failed: self.failed.clone(),
            signals: self.signals.clone(),
            directive_keys: self.directive_keys.clone(),
        };
        retention.policy = times.apply("retention", retention.policy)?;
        for (tenant, times) in &self.tenants {
            crate::store::check_tenant_id(tenant)
                .map_err(|e| format!("`retention.tenants.{tenant}`: {e}"))?;
            let policy = times.apply(&format!("retention.tenants.{tenant}"), retention.policy)?;
            retention.tenants.insert(tenant.clone(), policy);
        }
        if let Some(enabled) = self.enabled {
            retention.enabled = enabled;
        }
        if let Some(text) = &self.interval {
            retention.interval =
                parse_duration(text).map_err(|e| format!("`retention.interval`: {e}"))?;
        }
        positive("retention.batch_size", self.batch_size)?;
        // A batch of directives binds five parameters a key kept; SQLite
        // takes 32,766 parameters a statement.
        if let Some(size) = self.batch_size.filter(|size| *size > MAX_PRUNE_BATCH) {
            return Err(format!(
                "`retention.batch_size` is {size}, above the {MAX_PRUNE_BATCH} a batch may hold"
            ));
        }
        if let Some(size) = self.batch_size {
            retention.batch_size = size;
        }
        if let Some(ms) = self.pause_ms {
            retention.pause = Duration::from_millis(ms);
        }
        Ok(retention)
    }
}

/// `[http]`: the HTTP API that `sighost run` serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub enabled: bool,
    /// `ip:port`; port 0 takes any free port (the address is logged). Empty
    /// disables the API.
    pub listen: String,
    /// How long a connection may take to send a request's headers, and stay
    /// idle between requests; then it is closed.
    pub header_timeout_ms: u64,
    /// How long a request may take to send its body.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Signals in one batch emit.
    pub max_batch_signals: usize,
    /// The body of a batch emit, in bytes.
    pub max_batch_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        let limits = crate::http::HttpLimits::default();
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            header_timeout_ms: limits.header_timeout.as_millis() as u64,
            body_timeout_ms: limits.body_timeout.as_millis() as u64,
            max_connections: limits.max_connections,
            max_batch_signals: limits.max_batch_signals,
            max_batch_bytes: limits.max_batch_bytes,
        }
    }
}

impl HttpSection {
    /// The timeouts and connection cap of `[http]`.
    pub fn limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_connections: self.max_connections,
            max_batch_signals: self.max_batch_signals,
            max_batch_bytes: self.max_batch_bytes,
        }
    }

    /// Where to listen, or `None` when the API is off.
    pub fn listen_addr(&self) -> Option<Result<SocketAddr, String>> {
        if !self.enabled || self.listen.is_empty() {
            return None;
        }
        Some(self.listen.parse().map_err(|_| {
            format!(
                "`http.listen` is {:?}; expected ip:port such as 127.0.0.1:8080, or \"\" to disable the API",
                self.listen
            )
        }))
    }
}

/// `[tokens]`: who may call the HTTP API.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensSection {
    /// The operator's token, for `/v1/admin/…`.
    pub admin: Option<String>,
    /// Tenant id → its token or tokens (several while one is being rotated).
    #[serde(default)]
    pub tenants: BTreeMap<String, OneOrMany>,
}

/// One token, or a list of them.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a token string or a list of token strings")]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Written by hand, like [`TokensSection`]'s, to never print a token.
impl std::fmt::Debug for OneOrMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted token(s)>", self.as_slice().len())
    }
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(token) => std::slice::from_ref(token),
            Self::Many(tokens) => tokens,
        }
    }
}

/// Written by hand so that printing the configuration never prints a token.
impl std::fmt::Debug for TokensSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokensSection")
            .field("admin", &self.admin.as_ref().map(|_| "<redacted>"))
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokensSection {
    /// Every (tenant, token) pair.
    pub fn tenant_tokens(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tenants.iter().flat_map(|(tenant, tokens)| {
            tokens
                .as_slice()
                .iter()
                .map(move |token| (tenant.as_str(), token.as_str()))
        })
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    pub format: LogFormat,
    /// A `tracing` filter; `SIGHOST_LOG` overrides it.
    pub level: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Reads `path` (the defaults if `None`), then adds the tokens of the
    /// environment, then checks the whole.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = match path {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
        };
        config.with_env_tokens(|name| std::env::var(name).ok())
    }

    /// Parses and checks the text of `file`; relative paths are resolved
    /// against the file's directory.
    pub fn from_toml(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut config = parse(text, file)?;
        let base = file.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        config.file = Some(file.to_owned());
        config.check()?;
        Ok(config)
    }

    /// Adds the tokens of `SIGHOST_ADMIN_TOKEN` and `SIGHOST_TENANT_TOKENS`,
    /// looked up with `env`.
    pub fn with_env_tokens(
        mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if let Some(admin) = env(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty()) {
            self.tokens.admin = Some(admin);
        }
        if let Some(pairs) = env(TENANT_TOKENS_ENV) {
            for pair in pairs
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|p| !p.is_empty())
            {
                let Some((tenant, token)) = pair.split_once('=') else {
                    // The pair is not echoed: it may be a bare token.
                    return Err(invalid_env(
                        TENANT_TOKENS_ENV,
                        "expected tenant=token pairs separated by spaces or commas",
                    ));
                };
                let mut tokens = self
                    .tokens
                    .tenants
                    .remove(tenant)
                    .map(|t| t.as_slice().to_vec())
                    .unwrap_or_default();
                tokens.push(token.to_owned());
                self.tokens
                    .tenants
                    .insert(tenant.to_owned(), OneOrMany::Many(tokens));
            }
        }
        check_tokens(&self.tokens).map_err(|message| ConfigError::Invalid {
            origin: format!(
                "{} (with {ADMIN_TOKEN_ENV} and {TENANT_TOKENS_ENV})",
                self.origin()
            ),
            message,
        })?;
        Ok(self)
    }

    /// Where this configuration came from, for messages.
    pub fn origin(&self) -> String {
        match &self.file {
            Some(file) => file.display().to_string(),
            None => "the default configuration".into(),
        }
    }

    /// The sandbox, worker and runner settings of this file on top of the
    /// defaults of [`HostConfig::new`]. Executors are left at the default
    /// (log to stdout): build them with [`Config::executors`] where
    /// directives are executed, so other commands open no executor files.
    pub fn host_config(&self) -> HostConfig {
        let mut host = HostConfig::new(&self.data_dir);
        host.sandbox = self.sandbox_config(host.sandbox);
        self.apply_workers(&mut host);
        self.apply_runner(&mut host);
        // Checked when the file was read (`check_values`).
        host.retention = self.retention.retention().unwrap_or_default();
        host.metrics = self.metrics.clone();
        host
    }

    /// The sandbox settings with `[limits]` applied to `base`.
    pub fn sandbox_config(&self, mut base: SandboxConfig) -> SandboxConfig {
        let l = &self.limits;
        // The limits a handler's manifest may also set are applied the same
        // way as the manifest's; the host-wide ones after them.
        let shared = LimitOverrides {
            memory_mib: l.memory_mib,
            timeout_ms: l.timeout_ms,
            fuel: l.fuel,
            directive_payload_kib: l.directive_payload_kib,
            directives_per_invocation: l.directives_per_invocation,
            output_kib: l.output_kib,
        };
        base.limits = shared.apply(&base.limits);
        if let Some(kib) = l.signal_payload_kib {
            base.limits.signal_payload_bytes = kib.saturating_mul(1 << 10);
        }
        if let Some(depth) = l.causation_depth {
            base.limits.causation_depth = depth;
        }
        let p = &self.sandbox;
        if let Some(mib) = p.max_memory_mib {
            base.max_memory_bytes = mib.saturating_mul(1 << 20);
        }
        if let Some(instances) = p.max_instances {
            base.max_concurrent_instances = instances;
        }
        if let Some(ms) = p.load_timeout_ms {
            base.load_timeout = Duration::from_millis(ms);
        }
        let pool = &mut base.pool;
        if let Some(n) = p.max_core_instances_per_component {
            pool.core_instances_per_component = n;
        }
        if let Some(n) = p.max_memories_per_component {
            pool.memories_per_component = n;
        }
        if let Some(n) = p.max_tables_per_component {
            pool.tables_per_component = n;
        }
        if let Some(n) = p.max_table_elements {
            pool.table_elements = n;
        }
        // The pooled memory slots must hold the host's own limit.
        base.max_memory_bytes = base.max_memory_bytes.max(base.limits.memory_bytes);
        base
    }

    fn apply_workers(&self, host: &mut HostConfig) {
        let w = &self.workers;
        let workers = &mut host.workers;
        if let Some(threads) = w.threads {
            workers.threads = threads;
        }
        if let Some(waiting) = w.max_waiting {
            workers.max_waiting = waiting;
        }
        if let Some(size) = w.batch_size {
            workers.batch_size = size;
        }
        if let Some(ms) = w.lease_ms {
            workers.lease = Duration::from_millis(ms);
        }
        if let Some(ms) = w.poll_interval_ms {
            workers.poll_interval = Duration::from_millis(ms);
        }
        if let Some(order) = w.claim_order {
            workers.claim_order = order;
        }
        let max_attempts = w.max_attempts.unwrap_or(workers.retry.max_attempts);
        workers.retry = if w.fast_retries {
            RetryPolicy::fast(max_attempts)
        } else {
            RetryPolicy {
                max_attempts,
                ..workers.retry.clone()
            }
        };
    }

    fn apply_runner(&self, host: &mut HostConfig) {
        let r = &self.runner;
        let runner = &mut host.runner;
        if let Some(threads) = r.threads {
            runner.threads = threads;
        }
        if let Some(ms) = r.lease_ms {
            runner.lease = Duration::from_millis(ms);
        }
        let max_attempts = r.max_attempts.unwrap_or(runner.retry.max_attempts);
        runner.retry = if r.fast_retries {
            RetryPolicy::fast(max_attempts)
        } else {
            RetryPolicy {
                max_attempts,
                ..runner.retry.clone()
            }
        };
        runner.lifecycle_signals = r.lifecycle_signals;
        // One order for both queues: `[workers] claim_order`.
        if let Some(order) = self.workers.claim_order {
            runner.claim_order = order;
        }
    }

    /// Builds the executors of `[executors]`; the catch-all logs to stdout
    /// unless `"*"` says otherwise. Opens their files and checks their
    /// settings now, so a bad one stops start-up with its key named.
    pub fn executors(&self) -> Result<Executors, ConfigError> {
        let mut executors = Executors::new().with_fallback(Arc::new(LogExecutor::stdout()));
        for (name, config) in &self.executors {
            let executor = build(config).map_err(|message| ConfigError::Invalid {
                origin: self.origin(),
                message: format!("`executors.\"{name}\"`: {message}"),
            })?;
            executors = if name == CATCH_ALL_EXECUTOR {
                executors.with_fallback(executor)
            } else {
                executors.with(name.clone(), executor)
            };
        }
        Ok(executors)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.data_dir);
        resolve(&mut self.handlers_dir);
        for executor in self.executors.values_mut() {
            if let ExecutorConfig::Log(log) = executor
                && let Some(path) = &mut log.path
            {
                resolve(path);
            }
        }
    }

    /// What the types cannot say: positive counts, valid names and filters.
    fn check(&self) -> Result<(), ConfigError> {
        self.check_values().map_err(|message| ConfigError::Invalid {
            origin: self.origin(),
            message,
        })
    }

    fn check_values(&self) -> Result<(), String> {
        let l = &self.limits;
        positive("limits.memory_mib", l.memory_mib)?;
        positive("limits.timeout_ms", l.timeout_ms)?;
        positive("limits.fuel", l.fuel)?;
        positive("limits.signal_payload_kib", l.signal_payload_kib)?;
        positive("limits.directive_payload_kib", l.directive_payload_kib)?;
        positive("limits.output_kib", l.output_kib)?;
        positive("limits.causation_depth", l.causation_depth)?;
        let p = &self.sandbox;
        positive("sandbox.max_instances", p.max_instances)?;
        positive("sandbox.max_memory_mib", p.max_memory_mib)?;
        positive("sandbox.load_timeout_ms", p.load_timeout_ms)?;
        positive(
            "sandbox.max_core_instances_per_component",
            p.max_core_instances_per_component,
        )?;
        positive(
            "sandbox.max_memories_per_component",
            p.max_memories_per_component,
        )?;
        let w = &self.workers;
        positive("workers.threads", w.threads)?;
        // Every invocation in flight, running or waiting, holds an instance.
        let host = self.host_config();
        let in_flight = host.workers.threads + host.workers.max_waiting;
        let pool = host.sandbox.max_concurrent_instances as usize;
        if in_flight > pool {
            return Err(format!(
                "`workers.threads` + `workers.max_waiting` is {in_flight}, above the {pool} \
                 instances of the sandbox's pool; lower them or raise `sandbox.max_instances`"
            ));
        }
        positive("workers.batch_size", w.batch_size)?;
        positive("workers.lease_ms", w.lease_ms)?;
        positive("workers.poll_interval_ms", w.poll_interval_ms)?;
        positive("workers.max_attempts", w.max_attempts)?;
        let r = &self.runner;
        positive("runner.threads", r.threads)?;
        positive("runner.lease_ms", r.lease_ms)?;
        positive("runner.max_attempts", r.max_attempts)?;
        self.retention.retention()?;
        for name in self.executors.keys() {
            if name != CATCH_ALL_EXECUTOR {
                crate::signal::check_name(name).map_err(|e| {
                    format!("`executors.\"{name}\"`: not a directive name or \"*\": {e}")
                })?;
            }
        }
        let h = &self.http;
        positive("http.header_timeout_ms", Some(h.header_timeout_ms))?;
        positive("http.body_timeout_ms", Some(h.body_timeout_ms))?;
        positive("http.max_connections", Some(h.max_connections))?;
        positive("http.max_batch_signals", Some(h.max_batch_signals))?;
        positive("http.max_batch_bytes", Some(h.max_batch_bytes))?;
        if let Some(Err(message)) = self.http.listen_addr() {
            return Err(message);
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| format!("`logging.level` {:?}: {e}", self.logging.level))?;
        check_tokens(&self.tokens)
    }
}

/// Deserializes, naming the key of any error and its place in the file.
fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: file.display().to_string(),
        message,
    };
    let deserializer = toml::de::Deserializer::parse(text)
        .map_err(|e| invalid(describe_toml_error(&e, text, None)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let key = (path != ".").then_some(path);
        invalid(describe_toml_error(e.inner(), text, key))
    })
}

/// `key `a.b`: message (line L, column C)`. The message is toml's own, without
/// its quote of the offending line: that line may hold a token.
fn describe_toml_error(error: &toml::de::Error, text: &str, key: Option<String>) -> String {
    let mut message = match key {
        Some(key) => format!("key `{key}`: {}", error.message().trim()),
        None => error.message().trim().to_owned(),
    };
    if let Some(span) = error.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        message.push_str(&format!(" (line {line}, column {column})"));
    }
    message
}

fn positive<T: Default + PartialEq>(key: &str, value: Option<T>) -> Result<(), String> {
    if value.is_some_and(|v| v == T::default()) {
        return Err(format!("`{key}` must be greater than 0"));
    }
    Ok(())
}

/// Tenant ids valid, tokens long enough, printable and used once: a token
/// shared by two tenants, or by a tenant and the operator, would make the
/// tenant it stands for a guess.
fn check_tokens(tokens: &TokensSection) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    if let Some(admin) = &tokens.admin {
        check_token(admin).map_err(|e| format!("`tokens.admin`: {e}"))?;
        seen.insert(admin.as_str());
    }
    for (tenant, token) in tokens.tenant_tokens() {
        crate::store::check_tenant_id(tenant)
            .map_err(|e| format!("`tokens.tenants.{tenant}`: {e}"))?;
        check_token(token).map_err(|e| format!("`tokens.tenants.{tenant}`: {e}"))?;
        if !seen.insert(token) {
            return Err(format!(
                "`tokens.tenants.{tenant}`: this token is also given to the admin or another tenant"
            ));
        }
    }
    Ok(())
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token must be at least {MIN_TOKEN_LEN} characters long"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn invalid_env(name: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: format!("environment variable {name}"),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::executors::LogConfig;

    fn parse_str(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("/etc/sighost/sighost.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn no_file_gives_the_defaults_of_the_design() {
        let config = Config::default();
        let host = config.host_config();
        assert_eq!(host.data_dir, PathBuf::from("./data"));
        assert_eq!(config.handlers_dir, PathBuf::from("./handlers"));
        // The README's Limits table, as literals: a changed default must
        // change the table too.
        let limits = &host.sandbox.limits;
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.timeout, Duration::from_secs(2));
        assert_eq!(limits.fuel, None);
        assert_eq!(limits.signal_payload_bytes, 256 << 10);
        assert_eq!(limits.directive_payload_bytes, 64 << 10);
        assert_eq!(limits.directives_per_invocation, 64);
        assert_eq!(limits.output_bytes, 64 << 10);
        assert_eq!(limits.causation_depth, 16);
        assert_eq!(host.sandbox.load_timeout, Duration::from_secs(2));
        assert_eq!(host.sandbox.max_concurrent_instances, 64);
        assert_eq!(host.sandbox.max_memory_bytes, 256 << 20);
        let pool = &host.sandbox.pool;
        assert_eq!(
            (
                pool.core_instances_per_component,
                pool.memories_per_component,
                pool.tables_per_component,
                pool.table_elements
            ),
            (16, 2, 8, 20_000)
        );
        assert_eq!(host.workers.max_waiting, 32);
        // The README's retry schedule: ten attempts, about 17 s to the first retry.
        let retry = &host.workers.retry;
        assert_eq!(
            (retry.max_attempts, retry.base, retry.unit, retry.jitter),
            (10, Duration::from_secs(15), Duration::from_secs(1), 0.1)
        );
        assert_eq!(
            config.http.listen_addr(),
            Some(Ok("127.0.0.1:8080".parse().expect("an address")))
        );
        let http = config.http.limits();
        assert_eq!(
            (http.max_batch_signals, http.max_batch_bytes),
            (1000, 4 << 20),
            "the README's batch bounds"
        );
        assert_eq!(config.logging.format, LogFormat::Text);
        assert!(config.executors().is_ok());
    }

    #[test]
    fn reads_retention_with_tenants_inheriting_the_sections_times() {
        let config = parse_str(
            r#"
            [retention]
            completed = "2h"
            discarded = "3d"
            batch_size = 50
            [retention.tenants.org_small]
            completed = "10m"
            "#,
        )
        .expect("parses");
        let retention = config.host_config().retention;
        assert!(retention.enabled, "on by default");
        assert_eq!(retention.policy.completed, Duration::from_secs(2 * 3600));
        assert_eq!(retention.policy.discarded, Duration::from_secs(3 * 86400));
        assert_eq!(retention.policy.succeeded, Duration::from_secs(86400));
        assert_eq!(retention.batch_size, 50);
        let small = retention.tenants["org_small"];
        assert_eq!(small.completed, Duration::from_secs(600));
        assert_eq!(
            small.discarded,
            Duration::from_secs(3 * 86400),
            "the section's"
        );
        for (text, key) in [
            (
                "[retention]\ncompleted = \"1 day\"",
                "`retention.completed`",
            ),
            (
                "[retention.tenants.a]\nfailed = \"0d\"",
                "`retention.tenants.a.failed`",
            ),
            ("[retention]\nbatch_size = 0", "retention.batch_size"),
            (
                "[retention]\nbatch_size = 5001",
                "`retention.batch_size` is 5001",
            ),
            (
                "[retention.tenants.\"bad id\"]\nfailed = \"1d\"",
                "`retention.tenants.bad id`",
            ),
        ] {
            let error = parse_str(text).expect_err(text);
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn an_empty_file_is_the_defaults_with_paths_beside_it() {
        let config = parse_str("").expect("parses");
        assert_eq!(config.data_dir, PathBuf::from("/etc/sighost/./data"));
        assert_eq!(
            config.handlers_dir,
            PathBuf::from("/etc/sighost/./handlers")
        );
        assert_eq!(config.limits, LimitsSection::default());
    }

    #[test]
    fn applies_every_section() {
        let config = parse_str(
            r#"
            data_dir = "/var/lib/sighost"
            store = "postgres://localhost/sighost"
            handlers_dir = "hs"
            [limits]
            memory_mib = 512
            timeout_ms = 250
            fuel = 1000
            signal_payload_kib = 8
            directive_payload_kib = 4
            directives_per_invocation = 3
            output_kib = 2
            causation_depth = 5
            [workers]
            threads = 3
            batch_size = 7
            lease_ms = 1500
            poll_interval_ms = 50
            max_attempts = 4
            fast_retries = true
            [runner]
            threads = 1
            lease_ms = 2500
            max_attempts = 6
            lifecycle_signals = true
            [executors."*"]
            type = "log"
            path = "all.jsonl"
            [http]
            listen = "0.0.0.0:9000"
            [logging]
            format = "json"
            level = "warn,sighost=debug"
            "#,
        )
        .expect("parses");
        assert_eq!(
            config.store.as_deref(),
            Some("postgres://localhost/sighost")
        );
        assert_eq!(config.handlers_dir, PathBuf::from("/etc/sighost/hs"));
        assert_eq!(
            config.executors["*"],
            ExecutorConfig::Log(LogConfig {
                path: Some("/etc/sighost/all.jsonl".into())
            })
        );
        let host = config.host_config();
        assert_eq!(host.data_dir, PathBuf::from("/var/lib/sighost"));
        let limits = &host.sandbox.limits;
        assert_eq!(limits.memory_bytes, 512 << 20);
        assert_eq!(host.sandbox.max_memory_bytes, 512 << 20);
        assert_eq!(limits.timeout, Duration::from_millis(250));
        assert_eq!(limits.fuel, Some(1000));
        assert_eq!(limits.signal_payload_bytes, 8 << 10);
        assert_eq!(limits.directive_payload_bytes, 4 << 10);
        assert_eq!(limits.directives_per_invocation, 3);
        assert_eq!(limits.output_bytes, 2 << 10);
        assert_eq!(limits.causation_depth, 5);
        assert_eq!(host.workers.threads, 3);
        assert_eq!(host.workers.batch_size, 7);
        assert_eq!(host.workers.lease, Duration::from_millis(1500));
        assert_eq!(host.workers.poll_interval, Duration::from_millis(50));
        assert_eq!(host.workers.retry, RetryPolicy::fast(4));
        assert_eq!(host.runner.threads, 1);
        assert_eq!(host.runner.lease, Duration::from_millis(2500));
        assert_eq!(host.runner.retry.max_attempts, 6);
        assert_eq!(host.runner.retry.base, RetryPolicy::default().base);
        assert!(host.runner.lifecycle_signals);
        assert_eq!(config.logging.format, LogFormat::Json);
    }

    #[test]
    fn names_an_unknown_key_and_the_file() {
        let error = parse_str("[limits]\nmemory_mb = 1\n").expect_err("refused");
        assert!(error.contains("/etc/sighost/sighost.toml"), "{error}");
        assert!(error.contains("memory_mb"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn names_the_whole_key_of_a_wrong_type() {
        let error = parse_str("[workers]\nthreads = \"many\"\n").expect_err("refused");
        assert!(error.contains("`workers.threads`"), "{error}");
        assert!(error.contains("/etc/sighost/sighost.toml"), "{error}");
    }

    #[test]
    fn names_an_unknown_key_inside_an_executor() {
        let error = parse_str("[executors.\"mail.send\"]\ntype = \"log\"\npaht = \"x\"\n")
            .expect_err("refused");
        assert!(error.contains("paht"), "{error}");
    }

    #[test]
    fn refuses_zero_counts_executor_keys_that_are_not_names_and_bad_addresses() {
        for (text, needle) in [
            ("[workers]\nbatch_size = 0", "workers.batch_size"),
            ("[executors.\"Mail Send\"]\ntype = \"log\"", "Mail Send"),
            ("[http]\nlisten = \"localhost\"", "http.listen"),
            ("[logging]\nlevel = \"[[\"", "logging.level"),
            ("[logging]\nformat = \"xml\"", "xml"),
        ] {
            let error = parse_str(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn an_empty_listen_address_or_enabled_false_turns_the_api_off() {
        assert_eq!(
            parse_str("[http]\nlisten = \"\"")
                .expect("parses")
                .http
                .listen_addr(),
            None
        );
        assert_eq!(
            parse_str("[http]\nenabled = false")
                .expect("parses")
                .http
                .listen_addr(),
            None
        );
    }

    #[test]
    fn reads_tokens_from_the_file_and_the_environment() {
        let config = parse_str(
            "[tokens]\nadmin = \"file-admin-token-0123\"\n[tokens.tenants]\norg_acme = \"acme-token-0123456789\"\norg_beta = [\"beta-old-0123456789\", \"beta-new-0123456789\"]\n",
        )
        .expect("parses")
        .with_env_tokens(|name| match name {
            ADMIN_TOKEN_ENV => Some("env-admin-token-0123".into()),
            TENANT_TOKENS_ENV => Some("org_acme=acme-second-0123456, org_gamma=gamma-0123456789abc".into()),
            _ => None,
        })
        .expect("valid tokens");
        assert_eq!(config.tokens.admin.as_deref(), Some("env-admin-token-0123"));
        let pairs: Vec<(&str, &str)> = config.tokens.tenant_tokens().collect();
        assert_eq!(
            pairs,
            vec![
                ("org_acme", "acme-token-0123456789"),
                ("org_acme", "acme-second-0123456"),
                ("org_beta", "beta-old-0123456789"),
                ("org_beta", "beta-new-0123456789"),
                ("org_gamma", "gamma-0123456789abc"),
            ]
        );
    }

    #[test]
    fn refuses_short_shared_and_malformed_tokens_without_printing_them() {
        let short = parse_str("[tokens.tenants]\norg_acme = \"shorty\"").expect_err("refused");
        assert!(
            short.contains("tokens.tenants.org_acme") && !short.contains("shorty"),
            "{short}"
        );
        let shared = parse_str(
            "[tokens]\nadmin = \"same-token-0123456789\"\n[tokens.tenants]\norg_acme = \"same-token-0123456789\"",
        )
        .expect_err("refused");
        assert!(!shared.contains("same-token"), "{shared}");
        let wrong_type = parse_str("[tokens]\nadmin = 1234567890123456789").expect_err("refused");
        assert!(wrong_type.contains("tokens.admin"), "{wrong_type}");
        let bare = Config::default()
            .with_env_tokens(|name| {
                (name == TENANT_TOKENS_ENV).then(|| "a-bare-token-0123456789".to_owned())
            })
            .expect_err("refused")
            .to_string();
        assert!(
            bare.contains(TENANT_TOKENS_ENV) && !bare.contains("a-bare-token"),
            "{bare}"
        );
    }

    #[test]
    fn never_prints_a_token_or_the_store_url_in_debug() {
        let config = parse_str(
            "store = \"postgres://u:s3cret@db/sighost\"\n[tokens]\nadmin = \"hunter2-hunter2-hunter2\"\n[tokens.tenants]\norg_acme = \"swordfish-swordfish\"",
        )
        .expect("parses");
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("hunter2")
                && !printed.contains("swordfish")
                && !printed.contains("s3cret"),
            "{printed}"
        );
        assert!(printed.contains("org_acme"));
    }

    #[test]
    fn builds_the_catch_all_and_named_executors_and_names_a_bad_one() {
        let config = parse_str("[executors.\"mail.send\"]\ntype = \"command\"\nprogram = \"\"")
            .expect("parses");
        let error = config.executors().expect_err("refused").to_string();
        assert!(error.contains("executors.\"mail.send\""), "{error}");
    }
}
