//! A `sighost run` child process for the end-to-end tests, and reading
//! its JSON log lines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::host_helpers::{PATIENCE, wait_for_within};
use crate::sighost_binary;

/// A `sighost run` child process logging JSON lines to a file.
#[derive(Debug)]
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `sighost run` on `data` with `workers` delivery threads, fast
    /// retries and no HTTP API, and waits until it says it is running.
    pub fn start(data: &Path, handlers: &Path, label: &str, workers: usize) -> Self {
        Self::start_configured(data, handlers, label, workers, None)
    }

    /// [`Server::start`] reading the configuration file `config` too.
    pub fn start_configured(
        data: &Path,
        handlers: &Path,
        label: &str,
        workers: usize,
        config: Option<&Path>,
    ) -> Self {
        Self::start_within(PATIENCE, data, handlers, label, workers, config)
    }

    /// [`Server::start_configured`] waiting up to `patience` for the host to
    /// start: it loads its handlers first, and compiling a 12-18 MB
    /// JavaScript or Python component takes seconds even when nothing else
    /// runs.
    pub fn start_within(
        patience: Duration,
        data: &Path,
        handlers: &Path,
        label: &str,
        workers: usize,
        config: Option<&Path>,
    ) -> Self {
        let log = data.join(format!("{label}.log"));
        let mut command = Command::new(sighost_binary());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .arg("--data-dir")
            .arg(data)
            .args(["--log-json", "run", "--workers", &workers.to_string()])
            .args(["--fast-retries", "--handlers"])
            .arg(handlers)
            // Tests run side by side: no HTTP API, so no port to share.
            .args(["--listen", ""])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn sighost run");
        let server = Self { child, log };
        server.wait_for_log_within(patience, "the host to start", |line| {
            message(line) == "sighost is running"
        });
        server
    }

    /// Every JSON line logged so far.
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn wait_for_log(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_log_within(PATIENCE, what, matches)
    }

    /// [`Server::wait_for_log`] with another patience, for waits whose size
    /// (a large component to compile), not a promise, decides how long they
    /// take.
    pub fn wait_for_log_within(
        &self,
        patience: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for_within(patience, what, |last| {
            let log = self.log();
            *last = format!("{} log lines", log.len());
            log.into_iter().find(&matches)
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_none()
    }

    /// SIGKILL: the process dies where it is, leases held.
    pub fn kill(&mut self) {
        self.child.kill().expect("send SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, as an operator stops it; it must exit cleanly.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        let status = self.child.wait().expect("reap sighost run");
        assert!(status.success(), "a graceful stop exits 0: {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test must not leave the child running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

pub fn field<'a>(line: &'a Value, name: &str) -> &'a str {
    line["fields"][name].as_str().unwrap_or_default()
}

pub fn loaded(line: &Value, handler: &str, digest: &str) -> bool {
    message(line) == "handler loaded"
        && field(line, "handler") == handler
        && field(line, "digest") == digest
}

/// An ERROR line whose error mentions every one of `words`.
pub fn error_about(line: &Value, words: &[&str]) -> bool {
    line["level"] == "ERROR" && words.iter().all(|w| field(line, "error").contains(w))
}

/// Runs the `sighost` CLI on `data`.
pub fn cli(data: &Path, args: &[&str]) -> Output {
    Command::new(sighost_binary())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run sighost")
}
