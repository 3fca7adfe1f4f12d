//! The peer a user would pick instead: apalis, with its SQLite and PostgreSQL
//! backends, running no-op native jobs. It lives in `bench/peers`, a
//! workspace of its own (its sqlx links a SQLite of its own, which cannot
//! share a build with rusqlite's), built here on first use.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// Builds `peer-bench` (once per suite).
pub fn build() {
    binary();
}

/// `peer-bench`, built in release mode under `target/peers`.
fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            eprintln!("building the apalis peer (bench/peers) …");
            sighost_tests::cargo_build(&[
                "--release",
                "--manifest-path",
                "bench/peers/Cargo.toml",
                "--target-dir",
                "target/peers",
            ]);
            sighost_tests::workspace_root().join("target/peers/release/peer-bench")
        })
        .clone()
}

/// One run of the peer: what its JSON line says.
#[derive(Debug, Clone)]
pub struct PeerRun {
    pub per_s: f64,
    pub enqueue_per_s: f64,
    pub done: u64,
    pub seconds: f64,
    pub window_cut: bool,
    pub version: String,
    pub notes: String,
}

/// Where the peer keeps its jobs.
pub enum PeerStore<'a> {
    Sqlite,
    /// A fresh, empty database.
    Postgres(&'a str),
}

/// How the peer is configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tuning {
    /// The best settings found on this machine (see bench/peers/src/main.rs).
    Best,
    /// apalis's own defaults: one worker, batches of 10, tasks locked.
    Defaults,
}

pub fn run(store: PeerStore<'_>, queued: usize, window_secs: u64, tuning: Tuning) -> PeerRun {
    let mut command = Command::new(binary());
    crate::durable::settle();
    let scratch;
    match store {
        PeerStore::Sqlite => {
            scratch =
                std::env::temp_dir().join(format!("sighost-bench-apalis-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).expect("scratch dir");
            command
                .arg("sqlite")
                .arg("--db")
                .arg(scratch.join("apalis.db"));
        }
        PeerStore::Postgres(url) => {
            scratch = PathBuf::new();
            command.args(["postgres", "--url", url]);
        }
    }
    let output = command
        .args(["--queued", &queued.to_string()])
        .args(["--window-secs", &window_secs.to_string()])
        .args(match tuning {
            Tuning::Best => &[][..],
            Tuning::Defaults => &[
                "--concurrency",
                "1",
                "--batch",
                "10",
                "--lock-tasks",
                "true",
            ],
        })
        .stderr(Stdio::inherit())
        .output()
        .expect("run peer-bench");
    if !scratch.as_os_str().is_empty() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    assert!(output.status.success(), "peer-bench failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().expect("peer-bench printed its result");
    let result: Value = serde_json::from_str(line).expect("peer-bench prints one JSON line");
    let number = |key: &str| {
        result[key]
            .as_f64()
            .unwrap_or_else(|| panic!("peer-bench result lacks {key}: {line}"))
    };
    PeerRun {
        per_s: number("per_s"),
        enqueue_per_s: number("enqueue_per_s"),
        done: number("done") as u64,
        seconds: number("seconds"),
        window_cut: result["window_cut"].as_bool().unwrap_or(false),
        version: result["backend_crate"].as_str().unwrap_or("?").to_owned(),
        notes: result["notes"].as_str().unwrap_or("").to_owned(),
    }
}
