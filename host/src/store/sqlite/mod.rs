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
//! `run` works) take turns with it at the write lock through a [`Turnstile`];
//! SQLite alone would let a busy host starve them.
//!
//! Durability: `synchronous = NORMAL` by default, which WAL makes safe
//! against a process crash (nothing committed is lost when sighost is
//! killed); on power loss the last transactions may roll back. `FULL` is one
//! setting away ([`SqliteOptions::synchronous_full`]).

mod queries;

pub use queries::FromSqliteRow;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};

use super::*;

const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("fair_share.sql"),
    include_str!("handler_registry.sql"),
    include_str!("retention.sql"),
    include_str!("counts.sql"),
    include_str!("attempt_details.sql"),
    include_str!("queue_lag.sql"),
];

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

/// The store on SQLite: the contract over [`Sqlite`].
pub type SqliteStore = SqlStore<Sqlite>;

/// The SQLite dialect: its connections.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    /// The one connection that writes; see the module docs.
    writer: Mutex<Connection>,
    /// Reads for listings and status, beside the writer thanks to WAL.
    reader: Mutex<Connection>,
    turnstile: Turnstile,
    /// Copies the WAL back into the database off the commit path.
    _checkpointer: Checkpointer,
}

/// How long a write waits for the write lock before it fails with
/// "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting write tries the lock again.
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// SQLite's own busy handler sleeps longer the longer it waits, up to
/// 100 ms a try, so a process waiting for the write lock rarely tries in
/// the gap between two of a busy host's transactions: a CLI emit waited
/// 11 s (measured, against a process committing back to back). Every
/// sighost connection tries every millisecond instead, for `BUSY_TIMEOUT`
/// by the clock (a loaded machine oversleeps), and writes take a turn at
/// the turnstile below. SQLite calls it with the tries so far, 0 first.
fn retry_every_millisecond(tries: i32) -> bool {
    thread_local! {
        static WAITING_SINCE: std::cell::Cell<Instant> = std::cell::Cell::new(Instant::now());
    }
    let now = Instant::now();
    if tries == 0 {
        WAITING_SINCE.set(now);
    }
    if now.duration_since(WAITING_SINCE.get()) >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

/// A lock file beside the database (`<database>-turnstile`) that each
/// sighost write holds while it begins its transaction: a process waiting
/// for the write lock holds it, so the process that has the write lock
/// cannot begin its next transaction until the waiter has begun its own.
/// Two processes take turns, each waiting at most one transaction of the
/// other's; with more, the lock file is not a queue, and a waiter may lose
/// the race for it to another. A client that is not sighost does not take
/// it. Where the file cannot be opened or locked, writes go without turns,
/// as SQLite alone would have them.
#[derive(Debug)]
struct Turnstile(Option<std::fs::File>);

impl Turnstile {
    fn open(database: &Path) -> Self {
        let mut path = database.as_os_str().to_owned();
        path.push("-turnstile");
        let path = PathBuf::from(path);
        // Read access is all a lock needs: another user may have created it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            // Keep the first error: the fallback's (not found) says less.
            .or_else(|error| std::fs::File::open(&path).map_err(|_| error));
        match file {
            Ok(file) => Self(Some(file)),
            Err(error) => {
                tracing::warn!(
                    file = %path.display(), %error,
                    "cannot open the write turnstile: this process's writes do not take turns \
                     with other processes' (a busy one may keep them waiting)"
                );
                Self(None)
            }
        }
    }

    /// `BEGIN IMMEDIATE` on `connection`, in turn.
    fn begin<'c>(&self, connection: &'c mut Connection) -> StoreResult<rusqlite::Transaction<'c>> {
        let _turn = self.take();
        Ok(connection.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// The turnstile, held until the turn drops. A process that holds it
    /// waits for the write lock, which is bounded; past `BUSY_TIMEOUT` (a
    /// process stopped while holding it) or where the file system cannot
    /// lock, the write goes without a turn.
    fn take(&self) -> Option<Turn<'_>> {
        let file = self.0.as_ref()?;
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match file.try_lock() {
                Ok(()) => return Some(Turn(file)),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(BUSY_RETRY)
                }
                Err(_) => return None,
            }
        }
    }
}

/// A held turnstile, let go when dropped (a failed `BEGIN` too).
struct Turn<'f>(&'f std::fs::File);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
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
    let mut connection = Connection::open(&options.path).map_err(|e| {
        StoreError::Database(format!(
            "cannot open {}: {}",
            options.path.display(),
            why_not_writable(&options.path).unwrap_or_else(|| describe(&e))
        ))
    })?;
    connection.busy_handler(Some(retry_every_millisecond))?;
    // Pages that retention frees go back to the file system in steps
    // (`Store::reclaim_space`). Takes effect only on a new database, before
    // its first table; an older one is converted by `sighost prune --vacuum`.
    connection.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // The WAL is reused from its start once checkpointed; past this size it
    // is also truncated back, so a burst does not leave a large file behind.
    connection.pragma_update(None, "journal_size_limit", 64 << 20)?;
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

fn migrate(
    connection: &mut Connection,
    turnstile: &Turnstile,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let tx = turnstile.begin(connection)?;
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

/// A connection the SQLite verbs (`queries.rs`) run on: the reader, or the
/// writer's open transaction.
#[derive(Debug)]
pub struct SqliteConn<'c>(&'c Connection);

impl SqliteStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(options: SqliteOptions, now: DateTime<Utc>) -> StoreResult<Self> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // After the first connection, whose failure names an unwritable
        // directory as such.
        let mut writer = open_connection(&options)?;
        let turnstile = Turnstile::open(&options.path);
        migrate(&mut writer, &turnstile, now)?;
        let auto_vacuum: i64 = writer.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if auto_vacuum == 0 {
            tracing::info!(
                database = %options.path.display(),
                "this database predates retention: the space pruning frees is reused, not \
                 given back to the file system, until `sighost prune --vacuum` (host stopped)"
            );
        }
        let reader = open_connection(&options)?;
        let checkpointer = Checkpointer::start(open_connection(&options)?)?;
        Ok(SqlStore::new(Sqlite {
            turnstile,
            path: options.path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            _checkpointer: checkpointer,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.dialect.path
    }
}

impl Dialect for Sqlite {
    type Conn<'c> = SqliteConn<'c>;
    type Sql = SqliteConn<'static>;

    fn read<T>(&self, f: impl FnOnce(&mut SqliteConn<'_>) -> StoreResult<T>) -> StoreResult<T> {
        f(&mut SqliteConn(&lock(&self.reader)))
    }

    fn write<T>(&self, f: impl FnOnce(&mut SqliteConn<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut connection = lock(&self.writer);
        let tx = self.turnstile.begin(&mut connection)?;
        let value = f(&mut SqliteConn(&tx))?;
        tx.commit()?;
        Ok(value)
    }

    /// Every write goes through the one writer, a statement alone too.
    fn alone<T>(&self, f: impl FnOnce(&mut SqliteConn<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.write(f)
    }

    /// `auto_vacuum` changes only with a VACUUM, which cannot run in a
    /// transaction.
    fn vacuum(&self) -> StoreResult<bool> {
        lock(&self.writer).execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
        Ok(true)
    }

    /// Rescue and claim in one transaction: the writer is taken once, and
    /// a failed claim undoes its rescue.
    fn claim<T>(
        &self,
        rescue: impl FnOnce(&mut SqliteConn<'_>) -> StoreResult<u64>,
        claim: impl FnOnce(&mut SqliteConn<'_>) -> StoreResult<T>,
    ) -> (u64, StoreResult<T>) {
        match self.write(|c| Ok((rescue(c)?, claim(c)?))) {
            Ok((rescued, claimed)) => (rescued, Ok(claimed)),
            Err(error) => (0, Err(error)),
        }
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
