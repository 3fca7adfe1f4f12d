//! Cross-process wake-ups: one thread per store LISTENs on its own
//! connection and rings the workers' [`Wake`]s when another process (or this
//! one) NOTIFYs that deliveries or directives became due.
//!
//! A notification is only a hint: workers still poll, so one lost while the
//! connection was down delays work by a poll interval at most. After a
//! reconnection every bell is rung once, for what may have been missed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use super::pool::Pool;
use super::{DELIVERIES_CHANNEL, DIRECTIVES_CHANNEL};
use crate::store::StoreResult;
use crate::wake::Wake;

/// How long one wait for notifications lasts; also how quickly the thread
/// notices that its store is gone.
const WAIT: Duration = Duration::from_millis(200);
/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The bells of every `watch` call on one store.
#[derive(Debug, Default)]
struct Bells {
    deliveries: Vec<Arc<Wake>>,
    directives: Vec<Arc<Wake>>,
}

impl Bells {
    fn ring(&self, channel: &str) {
        let wakes = match channel {
            DELIVERIES_CHANNEL => &self.deliveries,
            DIRECTIVES_CHANNEL => &self.directives,
            _ => return,
        };
        for wake in wakes {
            wake.notify();
        }
    }

    fn ring_all(&self) {
        for wake in self.deliveries.iter().chain(&self.directives) {
            wake.notify();
        }
    }
}

#[derive(Debug)]
pub(super) struct Listener {
    bells: Arc<Mutex<Bells>>,
    /// Tells the thread to stop. It is not joined: it notices within one
    /// `WAIT` and closes its connection, and a CLI command against
    /// PostgreSQL should not take that much longer to exit.
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// Connects and LISTENs before returning, so a NOTIFY committed after
    /// this call is heard; then hands the connection to a thread.
    pub(super) fn start(pool: Arc<Pool>) -> StoreResult<Self> {
        let client = listen(&pool)?;
        let bells = Arc::new(Mutex::new(Bells::default()));
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name("sighost-pg-listen".into())
            .spawn({
                let (bells, stop) = (bells.clone(), stop.clone());
                move || run(&pool, client, &bells, &stop)
            })
            .map_err(|e| {
                crate::store::StoreError::Database(format!("cannot start the LISTEN thread: {e}"))
            })?;
        Ok(Self { bells, stop })
    }

    pub(super) fn add(&self, deliveries: Arc<Wake>, directives: Arc<Wake>) {
        let mut bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        bells.deliveries.push(deliveries);
        bells.directives.push(directives);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn listen(pool: &Pool) -> StoreResult<Client> {
    let mut client = pool.connect()?;
    client.batch_execute(&format!(
        "LISTEN {DELIVERIES_CHANNEL}; LISTEN {DIRECTIVES_CHANNEL}"
    ))?;
    Ok(client)
}

fn run(pool: &Pool, mut client: Client, bells: &Mutex<Bells>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let heard = client.notifications().timeout_iter(WAIT).next();
        match heard {
            Ok(Some(notification)) => bells
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ring(notification.channel()),
            Ok(None) if !client.is_closed() => {}
            Ok(None) | Err(_) => match reconnect(pool, stop) {
                Some(fresh) => {
                    client = fresh;
                    bells.lock().unwrap_or_else(|p| p.into_inner()).ring_all();
                }
                None => return,
            },
        }
    }
}

/// Tries again with growing pauses until it succeeds or the store is gone.
fn reconnect(pool: &Pool, stop: &AtomicBool) -> Option<Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen(pool) {
            Ok(client) => {
                tracing::info!("LISTEN connection to PostgreSQL restored");
                return Some(client);
            }
            Err(error) => {
                tracing::warn!(%error, "LISTEN connection to PostgreSQL lost; workers poll until it is back");
            }
        }
        let resume = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < resume {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            std::thread::sleep(WAIT.min(backoff));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
