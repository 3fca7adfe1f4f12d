//! The clustered store: one PostgreSQL database shared by many host
//! processes on many machines (ARCHITECTURE.md §8).
//!
//! # Layout
//! - `mod.rs`: options, opening and migrating, the [`Dialect`]: connections
//!   and transactions for [`SqlStore`];
//! - `queries.rs`: the SQL, as the dialect's [`Verbs`];
//! - `schema.sql`: the tables (types are explained there);
//! - `pool.rs`: a bounded pool of connections;
//! - `listener.rs`: the LISTEN thread behind [`Store::watch`].
//!
//! # Why the synchronous `postgres` crate
//! The store contract is synchronous and runs on worker threads, like
//! rusqlite's. Measured on this 2-core machine against the local server,
//! inserting 100,000 rows in transactions of 1,000 (the figures of three
//! runs, with other builds running beside them):
//!
//! | client, statement shape                         | rows/s         |
//! |-------------------------------------------------|----------------|
//! | `postgres`, one INSERT per row                  | 15k–32k        |
//! | `tokio-postgres` via `block_on`, one per row    | 11k–12k        |
//! | `tokio-postgres`, the batch's INSERTs pipelined | 65k–81k        |
//! | `postgres`, one `unnest` INSERT per batch       | 350k–420k      |
//! | `tokio-postgres`, one `unnest` INSERT per batch | 270k–360k      |
//!
//! Round trips decide, not the client: driving tokio-postgres from our
//! threads costs a hop to the runtime and back on every statement, and its
//! pipelining, the one thing it does that the synchronous client cannot, is
//! still five times slower than sending a whole batch as arrays in one
//! statement, which both clients do equally well. So the SQL here works in
//! batches (`unnest` of arrays, data-modifying CTEs), and the client is the
//! simpler one, with no runtime of ours to manage.
//!
//! # Concurrency
//! Every write is one transaction at READ COMMITTED. Claims take rows with
//! `FOR UPDATE SKIP LOCKED`, so processes never wait on each other's claims
//! and never claim the same row; the rescue of expired leases does the
//! same. Leases are fenced by `(id, attempt, worker)` as in SQLite: a worker
//! whose lease expired and was rescued cannot record a result.
//!
//! # Running a cluster
//! - Every process needs `pool_size + 1` connections (the pool and the
//!   LISTEN thread); `max_connections` must cover all processes and the
//!   operators' sessions.
//! - Leases compare times taken on different machines: a claim writes
//!   `leased_until` from the claimer's clock, the rescuer of another process
//!   compares it with its own. Clock skew eats into the lease (and shifts
//!   when a scheduled delivery becomes due), so keep clocks in sync (NTP)
//!   to well within the lease (five minutes by default). The contract takes
//!   `now` from the caller on purpose (tests pin it), so the database's
//!   clock is not used.
//! - A dead process's deliveries wait for their lease to expire, then the
//!   next claim of any process rescues them: duplicate work after a crash is
//!   bounded by what the dead process held, and delayed by the lease at most.
//! - Each delivery row is updated twice on its way (claim, finish): keep
//!   autovacuum on so the partial indexes of the queue stay small.
//!
//! # Leaky spots
//! - PostgreSQL text cannot hold the NUL character. Text the guest wrote
//!   (captured output, error messages, idempotency keys) has it replaced by
//!   U+FFFD, so a guest cannot make a batch of completions fail; text the
//!   caller gives to emit with a NUL is refused ([`StoreError::Invalid`]).
//!   JSON documents are unaffected (`\u0000` stays an escape in JSON).
//! - The tables have plain names (`signals`, `deliveries`, ...): give
//!   sighost a database of its own, or a schema of its own with
//!   `?options=-csearch_path%3Dsighost` in the URL.

mod listener;
mod pool;
mod queries;

pub use queries::FromPgRow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::postgres::{Row, Statement, types::ToSql};
use chrono::{DateTime, Utc};

use super::*;
use listener::Listener;
use pool::Pool;

const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("fair_share.sql"),
    include_str!("handler_registry.sql"),
    include_str!("retention.sql"),
    include_str!("counts.sql"),
    include_str!("attempt_details.sql"),
    include_str!("queue_lag.sql"),
    include_str!("counts_summed.sql"),
];

/// The key of the advisory lock that every sighost process takes while it
/// migrates, so that several starting at once apply each migration once.
const MIGRATION_LOCK: i64 = 0x0073_6967_686f_7374; // "sighost" in ASCII

/// The key of the advisory lock a prune batch's transaction takes, so that
/// one process of a cluster prunes at a time (`crate::retention`).
pub const PRUNE_LOCK: i64 = 0x7072_756e_6520_7368; // "prune sh"

/// NOTIFY channels: deliveries became due (emit, replay, operator retry);
/// directives were written (completions).
const DELIVERIES_CHANNEL: &str = "sighost_deliveries";
const DIRECTIVES_CHANNEL: &str = "sighost_directives";

/// Connections per store by default: the fetcher, the completer, the
/// directive runner, emitters and operator reads, with room to spare.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq-style URL (`postgres://user:password@host:5432/db?...`) or
    /// key=value string, as the `postgres` crate parses it.
    pub url: String,
    /// Connections this store keeps open at most.
    pub pool_size: usize,
}

impl PostgresOptions {
    /// Options from a URL. A `pool_size=N` query parameter sets
    /// [`Self::pool_size`] (and is taken out of the URL, since PostgreSQL
    /// does not know it); the default is [`DEFAULT_POOL_SIZE`].
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let Some((base, query)) = url.split_once('?') else {
            return Ok(Self {
                url: url.to_owned(),
                pool_size: DEFAULT_POOL_SIZE,
            });
        };
        let mut pool_size = DEFAULT_POOL_SIZE;
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.strip_prefix("pool_size=") {
                Some(n) => {
                    pool_size = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "pool_size in the store URL must be a positive integer, not {n:?}"
                        ))
                    })?;
                }
                None => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(Self { url, pool_size })
    }
}

/// Never prints the password of the URL.
impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The URL with the password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The store on PostgreSQL: the contract over [`Postgres`].
pub type PostgresStore = SqlStore<Postgres>;

/// The PostgreSQL dialect: its pool of connections and its listener.
#[derive(Debug)]
pub struct Postgres {
    pool: Arc<Pool>,
    /// Started by the first `watch`; stops when the store is dropped.
    listener: Mutex<Option<Listener>>,
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        use ::postgres::error::SqlState;
        match e.code() {
            Some(code)
                if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                    || *code == SqlState::UNTRANSLATABLE_CHARACTER =>
            {
                StoreError::Invalid(format!(
                    "PostgreSQL cannot store this text (a NUL character?): {}",
                    describe(&e)
                ))
            }
            _ => StoreError::Database(describe(&e)),
        }
    }
}

/// An error with the server's message and SQLSTATE, which the `postgres`
/// crate's `Display` leaves out ("db error").
fn describe(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{} [{}]{detail}", db.message(), db.code().code())
        }
        None => {
            // Connection errors keep their cause (refused, timed out, ...) in the source chain.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// A connection the PostgreSQL verbs (`queries.rs`) run on, in a
/// transaction or not, with its prepared statements.
///
/// `query`, `execute`, ... prepare their SQL once per connection, so they
/// are for fixed SQL text; SQL built from filters goes through `c` directly.
pub struct Db<'a> {
    c: &'a mut ::postgres::Client,
    statements: &'a mut HashMap<String, Statement>,
}

impl std::fmt::Debug for Db<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("closed", &self.c.is_closed())
            .field("statements", &self.statements.len())
            .finish()
    }
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Db<'_> {
    fn statement(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.c.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn query(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        Ok(self.c.query(&statement, params)?)
    }

    pub fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql)?;
        Ok(self.c.query_opt(&statement, params)?)
    }

    pub fn execute(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        Ok(self.c.execute(&statement, params)?)
    }
}

fn migrate(client: &mut ::postgres::Client, now: DateTime<Utc>) -> StoreResult<()> {
    let mut tx = client.transaction()?;
    // Held until commit: a second process starting now waits here, then
    // finds the migrations applied.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // "relation already exists, skipping" on every start is not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sighost_schema_migrations \
         (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)",
    )?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM sighost_schema_migrations",
            &[],
        )?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i32;
    if applied > known {
        return Err(StoreError::Database(format!(
            "the database is at schema version {applied}, newer than this sighost knows \
             ({known}); upgrade sighost"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO sighost_schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&(index as i32 + 1), &now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl PostgresStore {
    /// Connects, applies pending migrations (safe when several processes
    /// start at once), and keeps up to `options.pool_size` connections.
    pub fn open(options: PostgresOptions, now: DateTime<Utc>) -> StoreResult<Self> {
        let mut config: ::postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "not a PostgreSQL URL ({}): {e}",
                redact(&options.url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            // So operators can tell sighost's connections apart in pg_stat_activity.
            config.application_name("sighost");
        }
        let pool = Arc::new(Pool::new(config, options.pool_size));
        migrate(&mut pool.get()?.client, now)?;
        Ok(SqlStore::new(Postgres {
            pool,
            listener: Mutex::new(None),
        }))
    }
}

impl Postgres {
    /// Runs `f` in a transaction opened by `begin` on a pooled connection.
    /// The transaction is plain SQL on the connection, so that verbs see one
    /// connection type whether in a transaction or not; an error or a panic
    /// in `f` rolls it back (see [`Open`]).
    fn transaction<T>(
        &self,
        begin: &str,
        f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut connection = self.pool.get()?;
        let pool::Connection { client, statements } = &mut *connection;
        // The guard first: a `begin` batch that fails halfway (its BEGIN
        // ran, its SET did not) leaves a transaction to roll back too.
        let mut open = Open {
            db: Db {
                c: client,
                statements,
            },
            committed: false,
        };
        open.db.c.batch_execute(begin)?;
        let value = f(&mut open.db)?;
        open.db.c.batch_execute("COMMIT")?;
        open.committed = true;
        Ok(value)
    }
}

/// A transaction not yet committed: dropped (an error, a panic), it rolls
/// back, so the connection goes back to the pool outside any transaction.
struct Open<'a> {
    db: Db<'a>,
    committed: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // A connection that broke is not pooled again (`Pooled`'s drop).
            let _ = self.db.c.batch_execute("ROLLBACK");
        }
    }
}

impl Dialect for Postgres {
    type Conn<'c> = Db<'c>;
    type Sql = Db<'static>;

    /// A pooled connection outside any transaction.
    fn read<T>(&self, f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut connection = self.pool.get()?;
        let pool::Connection { client, statements } = &mut *connection;
        f(&mut Db {
            c: client,
            statements,
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.transaction("BEGIN", f)
    }

    /// One statement is atomic on its own: no transaction, no extra round
    /// trips.
    fn alone<T>(&self, f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.read(f)
    }

    /// The rescue is one statement, atomic without a transaction around it.
    /// The claim commits without waiting for the WAL flush: losing it in a
    /// database crash only makes the rows claimable again, and the fenced
    /// result of whoever ran them then finds its lease gone, so
    /// at-least-once holds. It saves an fsync on the way to every handler
    /// start (emit→start p99 under load: see the note on issue 5).
    fn claim<T>(
        &self,
        rescue: impl FnOnce(&mut Db<'_>) -> StoreResult<u64>,
        claim: impl FnOnce(&mut Db<'_>) -> StoreResult<T>,
    ) -> (u64, StoreResult<T>) {
        // The rescue commits on its own: it counts even if the claim fails.
        let rescued = match self.read(rescue) {
            Ok(rescued) => rescued,
            Err(error) => return (0, Err(error)),
        };
        let claimed = self.transaction("BEGIN; SET LOCAL synchronous_commit TO OFF", claim);
        (rescued, claimed)
    }

    /// LISTENs on its own connection in a thread of its own (started by the
    /// first call) and rings these bells on every NOTIFY; see `listener.rs`.
    fn watch(&self, deliveries: Arc<Wake>, directives: Arc<Wake>) -> StoreResult<()> {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.is_none() {
            *listener = Some(Listener::start(self.pool.clone())?);
        }
        if let Some(listener) = listener.as_ref() {
            listener.add(deliveries, directives);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_pool_size_out_of_the_url() {
        let options = PostgresOptions::from_url("postgres://u@h/db?pool_size=3&sslmode=disable")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.pool_size, 3);
        assert_eq!(options.url, "postgres://u@h/db?sslmode=disable");
        let options = PostgresOptions::from_url("postgres://u@h/db?pool_size=2")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (options.url.as_str(), options.pool_size),
            ("postgres://u@h/db", 2)
        );
        let options =
            PostgresOptions::from_url("postgres://u@h/db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.pool_size, 8, "the README's default");
        assert!(PostgresOptions::from_url("postgres://u@h/db?pool_size=0").is_err());
    }

    #[test]
    fn never_prints_the_password() {
        let options = PostgresOptions::from_url("postgres://sighost:hunter2@db:5432/sighost")
            .unwrap_or_else(|e| panic!("{e}"));
        let printed = format!("{options:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://sighost:***@db:5432/sighost"),
            "{printed}"
        );
    }
}
