//! The store contract (ARCHITECTURE.md §8): everything sighost keeps durably, behind
//! one trait, implemented once over a dialect of SQL per database.
//!
//! - [`dialect`]: [`SqlStore`], the contract implemented once, and what a
//!   dialect provides ([`Dialect`], [`Verbs`]);
//! - [`sql`]: the SQL both databases run as it is (column lists, listings,
//!   operator actions, the handler registry);
//! - [`sqlite`], [`postgres`]: the two dialects, each with its statements
//!   in `queries.rs` and its schema and migrations beside them.
//!
//! The contract is synchronous: the hot path runs on worker threads (the
//! sandbox is synchronous too, see `sandbox/mod.rs`), and the async HTTP
//! front end calls it through `spawn_blocking`. Every method that depends on
//! the time takes `now`, so tests can pin it and so one clock (the caller's)
//! decides scheduling.
//!
//! Leaky spots, documented where they leak:
//! - Leases are fenced by `(delivery id, attempt, worker)`: a worker whose
//!   lease expired and whose delivery was claimed again cannot record a
//!   result for it ([`FinishOutcome::LeaseLost`]).
//! - Deliveries are created at emit time for the handlers registered *then*
//!   (`crate::registry`); a handler added later sees only new signals, or old
//!   ones through replay.

pub mod dialect;
pub mod postgres;
pub mod sql;
pub mod sqlite;

pub use dialect::{Dialect, Record, SqlStore, Verbs};

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::signal::{EntityRef, Signal};
use crate::wake::Wake;

/// Which database a host keeps its state in. SQLite is the default; a
/// PostgreSQL URL lets many host processes share one database.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// An SQLite file (by default `<data dir>/sighost.db`).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database shared by every host process of a cluster.
    Postgres(postgres::PostgresOptions),
}

impl StoreLocation {
    /// `postgres://…` or `postgresql://…` is PostgreSQL (see
    /// [`postgres::PostgresOptions::from_url`]); `sqlite://PATH`,
    /// `sqlite:PATH` or a bare path is an SQLite file.
    pub fn parse(url: &str) -> StoreResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(postgres::PostgresOptions::from_url(url)?));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if let Some((scheme, _)) = path.split_once("://") {
            // Only the scheme: the rest may carry a password.
            return Err(StoreError::Invalid(format!(
                "a store is postgres://… or sqlite://PATH (or a file path), not {scheme}://…"
            )));
        }
        if path.is_empty() {
            return Err(StoreError::Invalid("the store URL is empty".into()));
        }
        Ok(Self::Sqlite(path.into()))
    }

    /// Opens (creating and migrating if needed) the store.
    pub fn open(&self, now: DateTime<Utc>) -> StoreResult<Arc<dyn Store>> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(
                sqlite::SqliteOptions::new(path),
                now,
            )?),
            Self::Postgres(options) => {
                Arc::new(postgres::PostgresStore::open(options.clone(), now)?)
            }
        })
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown tenant {0:?}; create it first (sighost tenants create)")]
    UnknownTenant(String),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("no {kind} with id {id:?}")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    /// A JSON object, handed to handlers as `context.settings`.
    pub settings: serde_json::Value,
    /// Its share of the workers beside other tenants with work (`fair.rs`):
    /// a tenant of weight 2 gets twice the worker time of one of weight 1.
    pub weight: u32,
    /// What an operator capped; nothing by default.
    #[serde(default)]
    pub limits: TenantLimits,
    /// Sorted.
    pub packages: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Caps an operator sets on one tenant (ARCHITECTURE.md §4, "Fair share");
/// `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Deliveries held at once (claimed or running), across every host
    /// process; directive executions likewise.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// Deliveries waiting to run (available or retryable): an emit that
    /// would pass it is refused.
    #[serde(default)]
    pub max_pending: Option<u64>,
    /// Signals a second, per host process.
    #[serde(default)]
    pub max_emit_per_s: Option<u32>,
}

/// A signal as emitted, before the store gives it an id and timestamps.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewSignal {
    pub tenant: String,
    pub name: String,
    pub payload: serde_json::Value,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub dedupe_key: Option<String>,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub causation_id: Option<String>,
    #[serde(default)]
    pub actor: Option<EntityRef>,
    #[serde(default)]
    pub subject: Option<EntityRef>,
    #[serde(default)]
    pub source: Option<String>,
}

/// A handler a signal may be delivered to, as the emitter's registry sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryTarget {
    pub handler: String,
    /// Only tenants with this package installed get the delivery.
    pub package: Option<String>,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmitStatus {
    /// A new signal, with its deliveries.
    Created,
    /// The tenant already had a signal with this dedupe key; nothing was written.
    Existing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    pub status: EmitStatus,
    pub signal: Signal,
    /// Deliveries created by this emit (0 when `Existing`).
    pub deliveries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its scheduled time, then for a worker.
    Available,
    /// Held by a worker under a lease.
    Running,
    /// Failed, waiting for its retry.
    Retryable,
    Completed,
    /// Permanent error or attempts exhausted; kept for an operator.
    Discarded,
    Canceled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 6] = [
        Self::Available,
        Self::Running,
        Self::Retryable,
        Self::Completed,
        Self::Discarded,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Running => "running",
            Self::Retryable => "retryable",
            Self::Completed => "completed",
            Self::Discarded => "discarded",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> StoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| StoreError::Invalid(format!("unknown delivery state {text:?}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub signal_id: String,
    pub tenant: String,
    pub handler: String,
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempt: u32,
    pub max_attempts: u32,
    pub scheduled_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// Digest of the code that ran the last attempt.
    pub handler_digest: Option<String>,
    pub inserted_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How an attempt ended, as its record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Ok,
    /// The handler returned a transient error.
    Transient,
    /// The handler returned a permanent error.
    Permanent,
    Trap,
    Timeout,
    MemoryExceeded,
    FuelExhausted,
    /// The host could not run the handler.
    HostError,
    /// Put back unrun (shutdown, handler not loaded, lease too short); not
    /// stored as an attempt.
    Released,
    /// The worker holding the lease stopped before finishing.
    LeaseExpired,
    /// The handler's directives conflicted with ones already written.
    Conflict,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 11] = [
        Self::Ok,
        Self::Transient,
        Self::Permanent,
        Self::Trap,
        Self::Timeout,
        Self::MemoryExceeded,
        Self::FuelExhausted,
        Self::HostError,
        Self::Released,
        Self::LeaseExpired,
        Self::Conflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::MemoryExceeded => "memory_exceeded",
            Self::FuelExhausted => "fuel_exhausted",
            Self::HostError => "host_error",
            Self::Released => "released",
            Self::LeaseExpired => "lease_expired",
            Self::Conflict => "conflict",
        }
    }

    pub fn parse(text: &str) -> StoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| StoreError::Invalid(format!("unknown attempt outcome {text:?}")))
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads as its stored name: `attempt.outcome == "ok"`.
impl PartialEq<&str> for AttemptOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A directive a handler requested and the sandbox accepted, to be written
/// when its delivery completes.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedDirective {
    /// Assigned at request time and returned in the receipt.
    pub id: String,
    /// Always the invoking tenant: the guest has no way to name another.
    pub tenant: String,
    pub name: String,
    /// A JSON object.
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// A version of a handler: the digest of its code, and when a host first
/// loaded it under that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerVersion {
    pub digest: String,
    pub first_seen_at: DateTime<Utc>,
}

/// A handler as one host has it: what an emit from any client needs to
/// target it (`registry.rs`), and what `sighost handlers` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRegistration {
    /// The host that has it (`Sighost::host_id`).
    pub host: String,
    pub handler: String,
    /// The digest of the version that host runs; `None` when it runs none
    /// (its file failed to load there).
    pub digest: Option<String>,
    pub subscriptions: Vec<String>,
    pub package: Option<String>,
    pub max_attempts: u32,
    /// Why the file as it is on that host does not load, if it does not.
    pub load_error: Option<String>,
    pub registered_at: DateTime<Utc>,
}

/// What an attempt's record keeps of the sandbox's report beyond its
/// outcome and timings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptDetails {
    /// Whether the guest's output was cut at the output limit.
    #[serde(default)]
    pub output_truncated: bool,
    /// The largest linear memory the guest reached, in bytes; `None` when
    /// it did not run.
    #[serde(default)]
    pub peak_memory_bytes: Option<u64>,
    /// The directive requests the sandbox refused, each with why
    /// (`kind: message`), the first 16 of them.
    #[serde(default)]
    pub refused_directives: Vec<String>,
}

/// One attempt of a delivery, kept whatever its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub delivery_id: i64,
    pub attempt: u32,
    pub worker: String,
    pub handler_digest: String,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_us: u64,
    pub fuel: Option<u64>,
    pub directive_count: u32,
    pub output: String,
    #[serde(flatten)]
    pub details: AttemptDetails,
    pub finished_at: DateTime<Utc>,
}

/// A delivery a worker holds, with what it needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub signal: Signal,
    pub settings: serde_json::Value,
    pub packages: Vec<String>,
    /// What the fair claim charged its tenant for it in advance, in
    /// nanoseconds of worker time (`fair.rs`); settled once it ran.
    pub charged_ns: i64,
    /// Its tenant's weight when it was claimed.
    pub weight: u32,
}

/// A directive a runner holds, with what its claim charged (`fair.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDirective {
    pub directive: Directive,
    /// What the fair claim charged its tenant for it in advance, in
    /// nanoseconds of runner time; settled once it ran.
    pub charged_ns: i64,
    /// Its tenant's weight when it was claimed.
    pub weight: u32,
}

impl ClaimedDirective {
    /// A directive just leased, before the claim charged it.
    pub fn new(directive: Directive) -> Self {
        Self {
            directive,
            charged_ns: 0,
            weight: crate::fair::DEFAULT_WEIGHT,
        }
    }
}

/// What a worker decided for a delivery it ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Mark completed and write these directives, atomically.
    Complete(Vec<RequestedDirective>),
    /// Try again at this time.
    Retry { at: DateTime<Utc> },
    /// Give up; kept as discarded.
    Discard,
    /// Put back without counting the attempt (its handler is not loaded
    /// here), to be looked at again at this time.
    Snooze { at: DateTime<Utc> },
}

/// A finished attempt, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryResult {
    pub delivery_id: i64,
    /// The delivery's handler and tenant, for the host's own use (turns by
    /// tenant, `/metrics`); the store goes by its own row.
    pub handler: String,
    pub tenant: String,
    /// The attempt number the claim gave; fences late results.
    pub attempt: u32,
    pub worker: String,
    pub decision: Decision,
    pub handler_digest: String,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    /// When the handler started: the end of the emit→start latency.
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub fuel: Option<u64>,
    pub directive_count: u32,
    pub output: String,
    pub details: AttemptDetails,
}

/// What became of one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Completed {
        directives_created: u32,
        duplicates: u32,
    },
    Retrying,
    Discarded,
    Snoozed,
    /// A directive's idempotency key exists with another payload: the
    /// delivery is discarded with that reason and none of its directives is
    /// written (never guess which one is right).
    Conflict {
        key: String,
    },
    /// The lease expired and another worker holds the delivery now; this
    /// result was dropped.
    LeaseLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectiveState {
    Requested,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl DirectiveState {
    pub const ALL: [DirectiveState; 5] = [
        Self::Requested,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> StoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| StoreError::Invalid(format!("unknown directive state {text:?}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Directive {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    pub state: DirectiveState,
    pub signal_id: String,
    pub delivery_id: i64,
    pub handler: String,
    pub scheduled_at: DateTime<Utc>,
    /// Executor attempts started so far.
    pub attempt: u32,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
    /// Causation depth of the signal that led to it.
    pub depth: u32,
    pub inserted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the runner decided for a directive it ran.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectiveDecision {
    Succeeded(serde_json::Value),
    Retry { at: DateTime<Utc>, error: String },
    Failed(String),
}

/// Which signals to list or replay. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalFilter {
    pub tenant: Option<String>,
    pub ids: Vec<String>,
    pub name: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryFilter {
    pub tenant: Option<String>,
    pub state: Option<DeliveryState>,
    pub handler: Option<String>,
    pub signal_id: Option<String>,
    pub ids: Vec<i64>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectiveFilter {
    pub tenant: Option<String>,
    pub state: Option<DirectiveState>,
    pub name: Option<String>,
    pub signal_id: Option<String>,
    pub ids: Vec<String>,
    pub limit: Option<u32>,
}

/// What `sighost status` and `/metrics` show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    pub deliveries: Vec<(DeliveryState, u64)>,
    pub directives: Vec<(DirectiveState, u64)>,
    /// Per handler, sorted by name.
    pub handlers: Vec<HandlerStats>,
    /// Per tenant with deliveries, sorted by id.
    pub tenants: Vec<TenantStats>,
    /// The newest failed attempts, newest first, at most [`RECENT_FAILURES`].
    pub recent_failures: Vec<Attempt>,
}

/// See [`Store::leases_rescued`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeasesRescued {
    pub deliveries: u64,
    pub directives: u64,
}

/// How many failed attempts [`QueueStats::recent_failures`] keeps.
pub const RECENT_FAILURES: u32 = 10;
/// How many of the newest attempts the per-handler durations and the
/// per-tenant worker time are taken from.
pub const RECENT_ATTEMPTS: u32 = 1_000;

/// One handler's deliveries by state, and how long its recent attempts took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandlerStats {
    pub handler: String,
    pub deliveries: Vec<(DeliveryState, u64)>,
    /// Among the newest [`RECENT_ATTEMPTS`] attempts of every handler.
    pub recent_attempts: u64,
    pub mean_duration_us: u64,
    pub max_duration_us: u64,
    /// When its oldest available or retryable delivery was due: how far
    /// behind the handler is (its queue lag) once that is past.
    #[serde(default)]
    pub oldest_waiting: Option<DateTime<Utc>>,
}

impl HandlerStats {
    /// How long its oldest due delivery has waited at `now`: zero when
    /// nothing waits or nothing is due yet.
    pub fn lag(&self, now: DateTime<Utc>) -> Duration {
        self.oldest_waiting
            .and_then(|oldest| (now - oldest).to_std().ok())
            .unwrap_or_default()
    }
}

/// One tenant's deliveries by state, and its part of the recent worker time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantStats {
    pub tenant: String,
    pub deliveries: Vec<(DeliveryState, u64)>,
    /// Among the newest [`RECENT_ATTEMPTS`] attempts of every tenant.
    pub recent_attempts: u64,
    /// Their summed durations: how much worker time the tenant had lately.
    pub recent_duration_us: u64,
}

/// What retention prunes (`crate::retention`): finished work of one state,
/// signals that nothing of theirs holds any more, or the idempotency keys
/// kept after their directives went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PruneKind {
    /// Deliveries of a finished state, with their attempts, by `finished_at`.
    Deliveries(DeliveryState),
    /// Directives of a finished state, by when they finished; each leaves
    /// its idempotency key behind ([`PruneKind::DirectiveKeys`]).
    Directives(DirectiveState),
    /// Signals by `inserted_at`, once no delivery or directive of theirs is
    /// left.
    Signals,
    /// The keys of pruned directives, by when their directive was pruned.
    DirectiveKeys,
}

impl PruneKind {
    /// The states retention may prune: never pending work.
    pub const FINISHED_DELIVERIES: [DeliveryState; 3] = [
        DeliveryState::Completed,
        DeliveryState::Discarded,
        DeliveryState::Canceled,
    ];
    pub const FINISHED_DIRECTIVES: [DirectiveState; 3] = [
        DirectiveState::Succeeded,
        DirectiveState::Failed,
        DirectiveState::Canceled,
    ];

    /// As `sighost prune` prints it: `deliveries.completed`, `signals`.
    pub fn name(self) -> String {
        match self {
            Self::Deliveries(state) => format!("deliveries.{}", state.as_str()),
            Self::Directives(state) => format!("directives.{}", state.as_str()),
            Self::Signals => "signals".into(),
            Self::DirectiveKeys => "directive_keys".into(),
        }
    }
}

/// Which tenants a prune rule covers: every tenant but those with
/// retention of their own, or one of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    AllBut(Vec<String>),
    Only(String),
}

/// Rows of `kind` in `tenants` whose time is before `older_than`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRule {
    pub kind: PruneKind,
    pub older_than: DateTime<Utc>,
    pub tenants: TenantScope,
}

/// How far a pass through a rule's rows has got: the time and key of the
/// last row it looked at. Rows are looked at in (time, key) order, so a pass
/// is one walk however many rows it keeps (a signal still held, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCursor {
    pub at: DateTime<Utc>,
    pub key: i64,
}

impl PruneCursor {
    /// Before every row.
    pub const START: PruneCursor = PruneCursor {
        at: DateTime::<Utc>::UNIX_EPOCH,
        key: i64::MIN,
    };
}

/// What one batch of a rule did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBatch {
    /// Rows looked at: the pass is over when fewer than the limit.
    pub examined: u64,
    pub deleted: u64,
    /// Where the next batch starts.
    pub next: PruneCursor,
}

/// Deliveries of one handler and tenant in one state: a row of the stores'
/// `GROUP BY handler, tenant, state`.
pub type StateCount = (String, String, DeliveryState, u64);

/// The newest attempts of one handler and tenant: their count, summed and
/// longest duration (µs).
pub type RecentAttempts = (String, String, u64, u64, u64);

impl QueueStats {
    /// Takes the kept counts (`sql::queue_counts`): the totals of both
    /// queues by state, and returns the deliveries' per-(handler, tenant,
    /// state) counts for [`QueueStats::add_breakdowns`].
    pub fn add_counts(&mut self, rows: Vec<sql::CountRow>) -> StoreResult<Vec<StateCount>> {
        fn add<S: PartialEq>(totals: &mut Vec<(S, u64)>, state: S, n: u64) {
            match totals.iter_mut().find(|(s, _)| *s == state) {
                Some((_, total)) => *total += n,
                None => totals.push((state, n)),
            }
        }
        let mut breakdown = Vec::new();
        for row in rows {
            // A count back at zero is a state with no rows: not listed.
            let n = u64::try_from(row.n).unwrap_or(0);
            if n == 0 {
                continue;
            }
            match row.queue.as_str() {
                "deliveries" => {
                    let state = DeliveryState::parse(&row.state)?;
                    add(&mut self.deliveries, state, n);
                    breakdown.push((row.group, row.tenant, state, n));
                }
                "directives" => {
                    add(&mut self.directives, DirectiveState::parse(&row.state)?, n);
                }
                other => {
                    return Err(StoreError::Database(format!(
                        "a count of an unknown queue {other:?}"
                    )));
                }
            }
        }
        self.deliveries.sort_by_key(|(s, _)| *s as u8);
        self.directives.sort_by_key(|(s, _)| *s as u8);
        Ok(breakdown)
    }

    /// Folds per-(handler, tenant, state) counts and per-(handler, tenant)
    /// recent attempts into [`QueueStats::handlers`] and
    /// [`QueueStats::tenants`]; shared by the stores' `stats`.
    pub fn add_breakdowns(&mut self, counts: Vec<StateCount>, recent: Vec<RecentAttempts>) {
        use std::collections::BTreeMap;
        let mut handlers: BTreeMap<String, HandlerStats> = BTreeMap::new();
        let mut tenants: BTreeMap<String, TenantStats> = BTreeMap::new();
        fn add(by_state: &mut Vec<(DeliveryState, u64)>, state: DeliveryState, count: u64) {
            match by_state.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += count,
                None => by_state.push((state, count)),
            }
        }
        for (handler, tenant, state, count) in counts {
            let h = handlers
                .entry(handler.clone())
                .or_insert_with(|| HandlerStats {
                    handler,
                    ..HandlerStats::default()
                });
            add(&mut h.deliveries, state, count);
            let t = tenants
                .entry(tenant.clone())
                .or_insert_with(|| TenantStats {
                    tenant,
                    ..TenantStats::default()
                });
            add(&mut t.deliveries, state, count);
        }
        let mut total_us: BTreeMap<String, u64> = BTreeMap::new();
        for (handler, tenant, attempts, sum_us, max_us) in recent {
            let h = handlers
                .entry(handler.clone())
                .or_insert_with(|| HandlerStats {
                    handler: handler.clone(),
                    ..HandlerStats::default()
                });
            h.recent_attempts += attempts;
            h.max_duration_us = h.max_duration_us.max(max_us);
            *total_us.entry(handler).or_default() += sum_us;
            let t = tenants
                .entry(tenant.clone())
                .or_insert_with(|| TenantStats {
                    tenant,
                    ..TenantStats::default()
                });
            t.recent_attempts += attempts;
            t.recent_duration_us += sum_us;
        }
        for h in handlers.values_mut() {
            h.deliveries.sort_by_key(|(s, _)| *s as u8);
            h.mean_duration_us = total_us
                .get(&h.handler)
                .copied()
                .unwrap_or(0)
                .checked_div(h.recent_attempts)
                .unwrap_or(0);
        }
        for t in tenants.values_mut() {
            t.deliveries.sort_by_key(|(s, _)| *s as u8);
        }
        self.handlers = handlers.into_values().collect();
        self.tenants = tenants.into_values().collect();
    }
}

/// A tenant id: 1 to 128 characters of ASCII letters, digits, `_`, `-`, `.`.
pub fn check_tenant_id(id: &str) -> StoreResult<()> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a tenant id is 1 to 128 ASCII letters, digits, '_', '-' or '.'; {id:?} is not"
        )))
    }
}

/// Tenant settings are a JSON object without credentials: they are handed to
/// every handler the tenant runs.
pub fn check_settings(settings: &serde_json::Value) -> StoreResult<()> {
    if !settings.is_object() {
        return Err(StoreError::Invalid(
            "tenant settings must be a JSON object".into(),
        ));
    }
    if let Some(pointer) = crate::secrets::find_secret(settings) {
        return Err(StoreError::Invalid(format!(
            "tenant settings carry a credential at {pointer}; handlers see settings, so keep secrets out"
        )));
    }
    Ok(())
}

/// The store contract. Implemented once, by [`SqlStore`] over a dialect:
/// [`sqlite::SqliteStore`], [`postgres::PostgresStore`].
pub trait Store: Send + Sync + std::fmt::Debug {
    // Tenants.
    fn create_tenant(
        &self,
        id: &str,
        settings: serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Tenant>;
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    fn set_settings(&self, id: &str, settings: serde_json::Value) -> StoreResult<Tenant>;
    fn install_package(&self, id: &str, package: &str) -> StoreResult<Tenant>;
    fn uninstall_package(&self, id: &str, package: &str) -> StoreResult<Tenant>;

    /// Remembers that this code ran under this name (handler identity is
    /// name plus digest).
    fn record_handler_version(
        &self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// The versions of the handler `name` that ever ran, first seen first.
    fn handler_versions(&self, name: &str) -> StoreResult<Vec<HandlerVersion>>;

    /// Makes the deliveries put aside while no handler of this name was
    /// loaded (snoozed) due now, because one is loaded again. Returns how many.
    fn resume_handler(&self, name: &str, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Replaces the handlers `host` registered with `handlers` (each of
    /// which names `host`): the handlers a host has loaded, kept while it is
    /// stopped, so that emits from any client reach them.
    fn register_handlers(&self, host: &str, handlers: &[HandlerRegistration]) -> StoreResult<()>;
    /// Every host's registrations, by handler, then host.
    fn registered_handlers(&self) -> StoreResult<Vec<HandlerRegistration>>;
    /// Forgets the handler `name` on every host (an operator's removal).
    /// Returns how many registrations went.
    fn unregister_handler(&self, name: &str) -> StoreResult<u64>;
    /// Forgets every handler `host` registered (a host retired for good).
    /// Returns how many registrations went.
    fn unregister_host(&self, host: &str) -> StoreResult<u64>;

    // Signals.
    /// Inserts each signal with a delivery per matching target, one
    /// transaction per call: all of them or none. A dedupe key the tenant
    /// already used yields the existing signal, status `Existing`.
    fn emit(
        &self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>>;
    fn signals(&self, filter: &SignalFilter) -> StoreResult<Vec<Signal>>;
    /// Causation depth of the signal `id` of `tenant` (0 unless another
    /// caused it); `None` if the tenant has no such signal, whether or not
    /// another tenant has.
    fn signal_depth(&self, tenant: &str, id: &str) -> StoreResult<Option<u32>>;

    /// Sets a tenant's weight (`fair.rs`), from 1 to [`crate::fair::MAX_WEIGHT`].
    fn set_weight(&self, id: &str, weight: u32) -> StoreResult<Tenant>;
    /// Replaces a tenant's limits.
    fn set_limits(&self, id: &str, limits: TenantLimits) -> StoreResult<Tenant>;
    /// How many deliveries of `tenant` wait to run (available or retryable),
    /// counted up to `cap`.
    fn pending_deliveries(&self, tenant: &str, cap: u64) -> StoreResult<u64>;

    // Deliveries.
    /// Rescues expired leases, settles `claim.costs`, then leases up to
    /// `claim.limit` due deliveries (available or retryable and due) to
    /// `claim.worker`, starting a new attempt of each: shared fairly between
    /// tenants ([`crate::fair::claim`]) or oldest first, as `claim.order`
    /// says.
    fn claim_deliveries(
        &self,
        claim: &crate::fair::Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records results, one transaction for the whole batch.
    fn finish_deliveries(
        &self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>>;
    /// Extends to `until` the leases `worker` still holds on these
    /// deliveries (by id and attempt; still running), the heartbeat of a live
    /// host. Returns how many it still held.
    fn extend_delivery_leases(
        &self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64>;
    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>>;
    fn attempts(&self, delivery_id: i64) -> StoreResult<Vec<Attempt>>;
    /// Makes discarded (or canceled) deliveries available again with a fresh
    /// attempt budget. Returns how many were.
    fn retry_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Cancels deliveries not yet running or finished. Returns how many.
    fn cancel_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64>;
    /// New deliveries of the given signals to the given targets (already
    /// filtered by subscription). Returns how many were created.
    /// `batch` pairs a signal id with its targets.
    fn replay(
        &self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    // Directives.
    /// Rescues expired leases, settles `claim.costs`, then leases up to
    /// `claim.limit` due requested directives to `claim.worker`, starting an
    /// attempt of each: fairly between tenants, or oldest first, as
    /// `claim.order` says (as [`Store::claim_deliveries`]).
    fn claim_directives(
        &self,
        claim: &crate::fair::Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDirective>>;
    /// Records the result of one executor attempt, fenced by attempt and
    /// worker. Returns false when the lease was lost.
    fn finish_directive(
        &self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// [`Store::extend_delivery_leases`] for directives a runner executes.
    fn extend_directive_leases(
        &self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64>;
    fn directives(&self, filter: &DirectiveFilter) -> StoreResult<Vec<Directive>>;
    /// Cancels directives not yet running or finished. Returns how many.
    fn cancel_directives(&self, filter: &DirectiveFilter, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Queue depth and the recent attempts, read from counts kept as rows
    /// change (`counts.sql`), never from a scan of the queue.
    fn stats(&self) -> StoreResult<QueueStats>;
    /// Expired leases the claims made through this store object took back
    /// since it was opened (a counter of this process, for `/metrics`).
    fn leases_rescued(&self) -> LeasesRescued;

    // Retention (`crate::retention`).
    /// Deletes, in one transaction, the rows of `rule` among the next
    /// `limit` past `cursor`, with what goes with them (a delivery's attempts;
    /// a directive leaves its key behind). `None` when another process of
    /// the cluster is pruning: one prunes at a time.
    fn prune_batch(
        &self,
        rule: &PruneRule,
        cursor: PruneCursor,
        limit: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PruneBatch>>;
    /// How many rows `rule` would delete now (`sighost prune --dry-run`).
    fn count_prunable(&self, rule: &PruneRule) -> StoreResult<u64>;
    /// Gives up to `max_pages` free pages of the database back to the file
    /// system; returns how many bytes. SQLite keeps what deletes free for
    /// reuse unless asked; PostgreSQL's autovacuum does this itself (0).
    fn reclaim_space(&self, max_pages: u32) -> StoreResult<u64>;
    /// Folds the counts `stats` reads into as few rows as they can be (the
    /// slots of PostgreSQL connections gone, counts back at zero), if no
    /// other process of the cluster is pruning; retention runs it.
    fn fold_counts(&self) -> StoreResult<()>;
    /// Rewrites the whole database so that it gives freed pages back from
    /// now on (SQLite files created before retention); false where there is
    /// nothing to do. Blocks every writer while it runs: for a stopped host.
    fn vacuum(&self) -> StoreResult<bool>;

    /// Rings `deliveries` when another process may have made deliveries due,
    /// and `directives` likewise for directives (PostgreSQL: LISTEN/NOTIFY),
    /// so idle workers start within milliseconds. Stores that cannot hear
    /// other processes do nothing, and workers fall back to polling.
    fn watch(&self, deliveries: Arc<Wake>, directives: Arc<Wake>) -> StoreResult<()> {
        let _ = (deliveries, directives);
        Ok(())
    }
}
