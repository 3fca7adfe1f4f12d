//! Restart: how long the real `sighost run` takes from spawn to "sighost is
//! running" with N handlers in its directory — compiling each from scratch
//! (empty data directory) or taking it from the compiled-code cache (the
//! same data directory again) — and its resident memory once they are loaded.
//!
//! The N handlers are N distinct components: the trivial guest with a custom
//! section naming its copy appended, so neither wasmtime's cache nor anything
//! else can share the work between copies.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use sighost_tests::guest;

/// How long one start may take: compiling 1,000 handlers takes about a
/// minute here.
const START_DEADLINE: Duration = Duration::from_secs(600);

/// One start of the host.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub seconds: f64,
    pub rss_mib: f64,
}

/// A handlers directory with `count` distinct copies of the trivial guest.
pub struct Fleet {
    root: PathBuf,
}

impl Fleet {
    pub fn new(count: usize) -> Self {
        sighost_tests::sighost_binary(); // built now, not inside a timed start
        let root = std::env::temp_dir().join(format!(
            "sighost-bench-restart{count}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let handlers = root.join("handlers");
        std::fs::create_dir_all(&handlers).expect("handlers dir");
        let bytes = std::fs::read(guest("trivial")).expect("trivial guest built by build.rs");
        for i in 0..count {
            let path = handlers.join(format!("h{i:04}"));
            std::fs::write(path.with_extension("wasm"), distinct_copy(&bytes, i)).expect("copy");
            std::fs::write(
                path.with_extension("toml"),
                "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n",
            )
            .expect("manifest");
        }
        Self { root }
    }

    /// Removes the data directory: the next start compiles everything.
    pub fn forget_cache(&self) {
        let _ = std::fs::remove_dir_all(self.root.join("data"));
    }

    /// Starts `sighost run`, waits until it is running, reads its resident
    /// memory, and stops it.
    pub fn start(&self, expected_handlers: usize) -> Start {
        crate::durable::settle();
        let started = Instant::now();
        let mut child = crate::durable::sighost_command()
            .arg("--data-dir")
            .arg(self.root.join("data"))
            .args(["run", "--listen", "", "--handlers"])
            .arg(self.root.join("handlers"))
            .env("SIGHOST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sighost run");
        // Lines are read on a thread so that a host that hangs while loading
        // fails the suite at the deadline instead of stalling it.
        let stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let line = line.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = started + START_DEADLINE;
        let ready = loop {
            let failure = match line_rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Ok(line)) if line.contains("sighost is running") => break line,
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => format!("reading its stderr failed: {error}"),
                Err(RecvTimeoutError::Timeout) => {
                    format!("not running {START_DEADLINE:?} after its start")
                }
                Err(RecvTimeoutError::Disconnected) => "exited before it was running".to_owned(),
            };
            // Never leave a host behind: the panic ends the suite.
            let _ = child.kill();
            let _ = child.wait();
            panic!("sighost run {failure}");
        };
        let seconds = started.elapsed().as_secs_f64();
        let rss_mib = resident_kib(child.id()) as f64 / 1024.0;
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            ready.contains(&format!("handlers={expected_handlers}")),
            "expected {expected_handlers} handlers loaded: {ready}"
        );
        // Let the killed process's memory go back before the next start.
        std::thread::sleep(Duration::from_millis(200));
        Start { seconds, rss_mib }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `bytes` with a custom section that makes it copy number `i`. A custom
/// section (id 0) may follow the others in a component as in a core module.
fn distinct_copy(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = b"sighost-bench-copy";
    let data = i.to_le_bytes();
    let mut section = leb128(name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(&data);
    let mut copy = bytes.to_vec();
    copy.push(0);
    copy.extend(leb128(section.len()));
    copy.extend(section);
    copy
}

fn leb128(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// VmRSS of a process, from /proc.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}
