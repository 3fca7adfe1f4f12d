//! A small, bounded pool of PostgreSQL connections.
//!
//! Our own rather than r2d2: the store needs only "borrow a connection, give
//! it back, throw away broken ones, never open more than N", which is these
//! sixty lines, without a scheduler thread or another dependency.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use postgres::{Client, Config, NoTls, Statement};

use crate::store::{StoreError, StoreResult};

/// How long a caller waits for a connection when all are in use before
/// giving up with an error (a pool that small for the load is a setting to
/// change, not a reason to hang).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct Pool {
    config: Config,
    /// Connections open at most, idle or borrowed.
    size: usize,
    state: Mutex<State>,
    /// Rung when a connection is given back or closed.
    returned: Condvar,
}

/// A connection with the statements prepared on it: a statement prepared
/// once is executed in one round trip instead of two (parse, then bind).
pub(super) struct Connection {
    pub client: Client,
    /// SQL text → its prepared statement on this connection.
    pub statements: HashMap<String, Statement>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.client.is_closed())
            .field("statements", &self.statements.len())
            .finish()
    }
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Connection>,
    /// Idle plus borrowed.
    open: usize,
}

impl Pool {
    pub(super) fn new(config: Config, size: usize) -> Self {
        Self {
            config,
            size: size.max(1),
            state: Mutex::default(),
            returned: Condvar::new(),
        }
    }

    /// A new connection outside the pool (the LISTEN thread keeps its own).
    pub(super) fn connect(&self) -> StoreResult<Client> {
        self.config.connect(NoTls).map_err(|e| {
            StoreError::Database(format!(
                "cannot connect to PostgreSQL: {}",
                super::describe(&e)
            ))
        })
    }

    /// Borrows a connection: an idle one, a new one if fewer than `size` are
    /// open, or the next one given back.
    pub(super) fn get(&self) -> StoreResult<Pooled<'_>> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut state = self.lock();
        loop {
            if let Some(connection) = state.idle.pop() {
                if connection.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(self.lend(connection));
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(self.lend(Connection {
                        client,
                        statements: HashMap::new(),
                    })),
                    Err(error) => {
                        self.forget_one();
                        Err(error)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Database(format!(
                    "all {} PostgreSQL connections stayed busy for {}s; raise the pool size",
                    self.size,
                    CHECKOUT_TIMEOUT.as_secs()
                )));
            }
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lend(&self, connection: Connection) -> Pooled<'_> {
        Pooled {
            pool: self,
            connection: Some(connection),
        }
    }

    fn forget_one(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain fields, consistent between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A borrowed connection; goes back to the pool when dropped, unless it broke.
#[derive(Debug)]
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    connection: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if connection.client.is_closed() {
            // The server went away or the socket broke: the next borrower
            // opens a fresh connection instead.
            self.pool.forget_one();
            return;
        }
        self.pool.lock().idle.push(connection);
        self.pool.returned.notify_one();
    }
}
