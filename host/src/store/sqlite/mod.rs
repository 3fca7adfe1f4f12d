//! The embedded store: one SQLite file, WAL, no set-up.
//!
//! We use rusqlite rather than sqlx: the store contract is synchronous and
//! runs on worker threads, and rusqlite calls SQLite directly on the calling
//! thread, where sqlx's SQLite driver ships every statement to a background
//! thread over a channel and back. Measured on this 2-core machine (a
//! throwaway program, three rounds each, WAL and `synchronous = NORMAL`,
//! 100,000 single-row INSERTs into a table shaped like `deliveries`, in
//! transactions of 1,000): rusqlite 1.4–1.8 million rows/s, sqlx 0.8 with
//! tokio 23–35 thousand rows/s. The hot path is made of exactly such small
//! statements.
//!
//! Concurrency: SQLite has one writer at a time, so writes go through one
//! connection behind a mutex and every write is a batch in one `BEGIN
//! IMMEDIATE` transaction; reads use a second connection, which WAL lets run
//! beside the writer. Other processes on the same file (a CLI `emit` while
//! `run` works) wait on SQLite's busy timeout.
//!
//! Durability: `synchronous = NORMAL` by default, which WAL makes safe
//! against a process crash (nothing committed is lost when sighost is
//! killed); on power loss the last transactions may roll back. `FULL` is one
//! setting away ([`SqliteOptions::synchronous_full`]).

mod queries;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};

use super::*;

const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("fair_share.sql")];

/// How to open the database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// `synchronous = FULL`: survive power loss, at the cost of an fsync per
    /// commit.
    pub synchronous_full: bool,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous_full: false,
        }
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// The one connection that writes; see the module docs.
    writer: Mutex<Connection>,
    /// Reads for listings and status, beside the writer thanks to WAL.
    reader: Mutex<Connection>,
    /// Copies the WAL back into the database off the commit path.
    _checkpointer: Checkpointer,
}

/// How often the checkpointer runs. Often, because each checkpoint ends in
/// an fsync that stalls the writer's WAL appends while it lasts, and a small
/// checkpoint syncs quickly. Measured on this machine (emit→start at half the
/// maximum rate, `./scripts/bench.sh latency`): p99 3.4 ms every
/// 5 ms, 7.4 ms every 20 ms, 12.5 ms every 100 ms, 15 ms every second. An
/// idle database makes it a no-op.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(5);

/// A thread with its own connection running passive checkpoints, so that no
/// commit of the hot path stalls on copying the WAL into the database (a
/// checkpoint of a busy queue takes tens of milliseconds). Passive
/// checkpoints never block the writer or the readers.
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(connection: Connection) -> StoreResult<Self> {
        let stop = std::sync::Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("sighost-checkpoint".into())
            .spawn({
                let stop = stop.clone();
                let mut failures = CheckpointFailures::default();
                move || loop {
                    let (stopped, bell) = &*stop;
                    let guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) = bell
                        .wait_timeout_while(guard, CHECKPOINT_INTERVAL, |stopped| !*stopped)
                        .unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        return;
                    }
                    drop(guard);
                    match connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => failures.recovered(),
                        Err(error) => failures.failed(&describe(&error)),
                    }
                }
            })
            .map_err(|e| {
                StoreError::Database(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

/// Failed checkpoints, logged once per interval: a failing disk fails 200
/// of them a second.
#[derive(Default)]
struct CheckpointFailures {
    /// Since the last log line, and when that was.
    count: u64,
    logged_at: Option<std::time::Instant>,
}

impl CheckpointFailures {
    const LOG_INTERVAL: Duration = Duration::from_secs(10);

    fn failed(&mut self, error: &str) {
        self.count += 1;
        if self
            .logged_at
            .is_none_or(|at| at.elapsed() >= Self::LOG_INTERVAL)
        {
            tracing::warn!(%error, failures = self.count, "WAL checkpoints failing; retrying");
            self.count = 0;
            self.logged_at = Some(std::time::Instant::now());
        }
    }

    fn recovered(&mut self) {
        if self.logged_at.take().is_some() {
            tracing::info!("WAL checkpoints work again");
            self.count = 0;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, bell) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        bell.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(describe(&e))
    }
}

/// SQLite's error, named as what it is for an operator: a full disk, an I/O
/// error, a read-only file, rather than SQLite's terse text alone.
fn describe(error: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    let rusqlite::Error::SqliteFailure(failure, _) = error else {
        return error.to_string();
    };
    let what = match failure.code {
        ErrorCode::DiskFull => "the disk holding the database is full",
        ErrorCode::SystemIoFailure => "an I/O error on the database file (the disk is failing?)",
        ErrorCode::ReadOnly => "the database is read-only (the file or its directory)",
        ErrorCode::CannotOpen => "the database file cannot be opened",
        // SQLite says so after I/O errors too, with the file intact.
        ErrorCode::DatabaseCorrupt => {
            "SQLite reads the database as malformed (this can follow an I/O error; check the \
             disk, then `PRAGMA integrity_check`)"
        }
        _ => return error.to_string(),
    };
    format!("{what}: {error}")
}

fn lock(connection: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves SQLite itself consistent (an open
    // transaction is rolled back when its guard drops), so keep going.
    connection.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn open_connection(options: &SqliteOptions) -> StoreResult<Connection> {
    let connection = Connection::open(&options.path).map_err(|e| {
        StoreError::Database(format!(
            "cannot open {}: {}",
            options.path.display(),
            why_not_writable(&options.path).unwrap_or_else(|| describe(&e))
        ))
    })?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(
        None,
        "synchronous",
        if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints are the checkpointer thread's job (see `Checkpointer`); a
    // commit checkpoints itself only if the WAL passes ~200 MiB, which means
    // the checkpointer has fallen far behind.
    connection.pragma_update(None, "wal_autocheckpoint", 50_000)?;
    // 16 MiB of page cache per connection: the hot end of the queue. Larger
    // caches cost more at every commit (SQLite walks the whole cache when it
    // truncates it), and the OS page cache holds the rest of the file.
    connection.pragma_update(None, "cache_size", -16384)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// Why the database at `path` cannot be written, when its directory is the
/// reason (SQLite only says "unable to open database file").
fn why_not_writable(path: &Path) -> Option<String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let probe = dir.join(".sighost-write-probe");
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!(
            "the data directory {} cannot be written ({e}); sighost keeps its database there",
            dir.display()
        )),
    }
}

fn migrate(connection: &mut Connection, now: DateTime<Utc>) -> StoreResult<()> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let applied: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if applied > MIGRATIONS.len() as i64 {
        return Err(StoreError::Database(format!(
            "the database is at schema version {applied}, newer than this sighost knows ({}); \
             upgrade sighost",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![index as i64 + 1, micros(now)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(options: SqliteOptions, now: DateTime<Utc>) -> StoreResult<Self> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = open_connection(&options)?;
        migrate(&mut writer, now)?;
        let reader = open_connection(&options)?;
        let checkpointer = Checkpointer::start(open_connection(&options)?)?;
        Ok(Self {
            path: options.path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            _checkpointer: checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut connection = lock(&self.writer);
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        f(&lock(&self.reader))
    }
}

impl Store for SqliteStore {
    fn create_tenant(
        &self,
        id: &str,
        settings: serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Tenant> {
        check_tenant_id(id)?;
        check_settings(&settings)?;
        self.write(|tx| queries::create_tenant(tx, id, &settings, now))
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.read(|c| queries::tenant(c, id))
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(queries::tenants)
    }

    fn set_settings(&self, id: &str, settings: serde_json::Value) -> StoreResult<Tenant> {
        check_settings(&settings)?;
        self.write(|tx| queries::set_settings(tx, id, &settings))
    }

    fn set_weight(&self, id: &str, weight: u32) -> StoreResult<Tenant> {
        let weight = crate::fair::check_weight(weight)?;
        self.write(|tx| queries::set_weight(tx, id, weight))
    }

    fn set_limits(&self, id: &str, limits: TenantLimits) -> StoreResult<Tenant> {
        let limits = crate::fair::check_limits(limits)?;
        self.write(|tx| queries::set_limits(tx, id, &limits))
    }

    fn pending_deliveries(&self, tenant: &str, cap: u64) -> StoreResult<u64> {
        self.read(|c| queries::pending_deliveries(c, tenant, cap))
    }

    fn install_package(&self, id: &str, package: &str) -> StoreResult<Tenant> {
        crate::signal::check_name(package)
            .map_err(|e| StoreError::Invalid(format!("package: {e}")))?;
        self.write(|tx| queries::install_package(tx, id, package))
    }

    fn uninstall_package(&self, id: &str, package: &str) -> StoreResult<Tenant> {
        self.write(|tx| queries::uninstall_package(tx, id, package))
    }

    fn record_handler_version(
        &self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write(|tx| queries::record_handler_version(tx, name, digest, now))
    }

    fn handler_versions(&self, name: &str) -> StoreResult<Vec<HandlerVersion>> {
        self.read(|c| queries::handler_versions(c, name))
    }

    fn resume_handler(&self, name: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(|tx| queries::resume_handler(tx, name, now))
    }

    fn emit(
        &self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>> {
        self.write(|tx| queries::emit(tx, batch, now))
    }

    fn signals(&self, filter: &SignalFilter) -> StoreResult<Vec<Signal>> {
        self.read(|c| queries::signals(c, filter))
    }

    fn signal_depth(&self, tenant: &str, id: &str) -> StoreResult<Option<u32>> {
        self.read(|c| queries::signal_depth(c, tenant, id))
    }

    fn claim_deliveries(
        &self,
        claim: &crate::fair::Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.write(|tx| queries::claim_deliveries(tx, claim, now))
    }

    fn finish_deliveries(
        &self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>> {
        self.write(|tx| {
            results
                .iter()
                .map(|r| queries::finish_delivery(tx, r, now))
                .collect()
        })
    }

    fn extend_delivery_leases(
        &self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write(|tx| queries::extend_delivery_leases(tx, worker, held, until))
    }

    fn extend_directive_leases(
        &self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write(|tx| queries::extend_directive_leases(tx, worker, held, until))
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        self.read(|c| queries::deliveries(c, filter))
    }

    fn attempts(&self, delivery_id: i64) -> StoreResult<Vec<Attempt>> {
        self.read(|c| queries::attempts(c, delivery_id))
    }

    fn retry_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(|tx| queries::retry_deliveries(tx, filter, now))
    }

    fn cancel_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(|tx| queries::cancel_deliveries(tx, filter, now))
    }

    fn replay(
        &self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write(|tx| queries::replay(tx, batch, now))
    }

    fn claim_directives(
        &self,
        claim: &crate::fair::Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDirective>> {
        self.write(|tx| queries::claim_directives(tx, claim, now))
    }

    fn finish_directive(
        &self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.write(|tx| queries::finish_directive(tx, id, attempt, worker, decision, now))
    }

    fn directives(&self, filter: &DirectiveFilter) -> StoreResult<Vec<Directive>> {
        self.read(|c| queries::directives(c, filter))
    }

    fn cancel_directives(&self, filter: &DirectiveFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(|tx| queries::cancel_directives(tx, filter, now))
    }

    fn stats(&self) -> StoreResult<QueueStats> {
        self.read(queries::stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn storage_faults_are_named_as_what_they_are() {
        let full = describe(&failure(rusqlite::ffi::SQLITE_FULL));
        assert!(
            full.starts_with("the disk holding the database is full"),
            "{full}"
        );
        let io = describe(&failure(rusqlite::ffi::SQLITE_IOERR));
        assert!(io.starts_with("an I/O error on the database file"), "{io}");
        let read_only = describe(&failure(rusqlite::ffi::SQLITE_READONLY));
        assert!(
            read_only.starts_with("the database is read-only"),
            "{read_only}"
        );
        let busy = describe(&failure(rusqlite::ffi::SQLITE_BUSY));
        assert!(!busy.contains("disk"), "others keep SQLite's words: {busy}");
    }
}
