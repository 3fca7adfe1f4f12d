//! A group of threads that stop together: the delivery workers are one, the
//! directive runner another. Stopping sets a flag the loops check and rings
//! the bell they wait on, then joins every thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::wake::Wake;

#[derive(Debug)]
pub struct ThreadGroup {
    /// What the group is, for the log line of a thread that panicked.
    what: &'static str,
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    /// The bell the group's idle loops wait on.
    wake: Arc<Wake>,
}

impl ThreadGroup {
    pub fn new(what: &'static str, wake: Arc<Wake>) -> Self {
        Self {
            what,
            threads: Vec::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            wake,
        }
    }

    /// The flag the group's loops check; set once shutdown begins.
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        self.threads
            .push(std::thread::Builder::new().name(name.to_owned()).spawn(f)?);
        Ok(())
    }

    /// Asks every thread to stop and waits until each has.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify();
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!(group = self.what, "a thread panicked before shutdown");
            }
        }
    }
}
