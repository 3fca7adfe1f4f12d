//! The same handler in Rust, TypeScript (on the SDK's two JavaScript
//! engines) and Python (the forum summarizer examples, built from source by
//! build.rs), side by side in one run:
//!
//! - first load: compiling and pre-instantiating the component with no
//!   compiled-code cache, as a host does the first time it sees the file;
//! - per delivery: `Sandbox::invoke` (fresh instance, call, one directive),
//!   beside bare wasmtime running the same component with the pool tuned as
//!   sighost's, so the ratio is what the sandbox adds for that runtime;
//! - throughput with one and with two threads invoking at once (this
//!   machine has two cores), to show whether a second worker helps.

use std::time::Instant;

use serde_json::json;
use sighost::sandbox::{Handler, Manifest, Sandbox, SandboxConfig};
use sighost_tests::{delivery, example_handler, signal};

use crate::invoke::{BareCall, bare_tuned, measure_async};
use crate::stats::Runs;

pub const EXAMPLES: [(&str, &str); 4] = [
    ("Rust", "forum-summarizer"),
    ("TypeScript (componentize-js)", "forum-summarizer-ts"),
    ("TypeScript (QuickJS)", "forum-summarizer-ts-quickjs"),
    ("Python (componentize-py)", "forum-summarizer-py"),
];

/// Deliveries per round: a Python delivery takes milliseconds.
pub const CALLS: u32 = 300;

pub struct Row {
    pub language: &'static str,
    pub bytes: usize,
    pub first_load_s: Runs,
    pub sighost_us: Runs,
    pub bare_us: Runs,
    pub one_thread_per_s: Runs,
    pub two_threads_per_s: Runs,
}

fn load(sandbox: &Sandbox, name: &str, bytes: &[u8]) -> Handler {
    let path = example_handler(name);
    let manifest = Manifest::for_module(&path).expect("the example's manifest");
    sandbox
        .load_bytes(name, bytes, manifest, name)
        .expect("the example loads")
}

fn bare_call() -> BareCall {
    BareCall::new(
        "forum.thread.created",
        &thread().to_string(),
        r#"{"max_words":120}"#,
        r#"{"auto_summaries":true}"#,
        &["forum"],
    )
}

fn thread() -> serde_json::Value {
    json!({"thread_id": "t1", "title": "Hello"})
}

/// Deliveries per second with `threads` threads invoking at once, each on
/// its own current-thread runtime, for about a second.
fn throughput(sandbox: &Sandbox, handler: &Handler, threads: usize) -> f64 {
    let signal = signal("org_acme", "forum.thread.created", thread());
    let delivery = delivery(json!({"auto_summaries": true}), &["forum"]);
    let window = std::time::Duration::from_secs(1);
    let started = Instant::now();
    let done: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("runtime");
                    let mut calls = 0u64;
                    while started.elapsed() < window {
                        let run = runtime.block_on(sandbox.invoke(handler, &signal, &delivery));
                        assert!(run.outcome.is_ok() && run.directives.len() == 1);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    done as f64 / started.elapsed().as_secs_f64()
}

pub fn run(runs: usize) -> Vec<Row> {
    crate::durable::settle();
    let rounds = (runs * 2 + 1).max(5);
    EXAMPLES
        .iter()
        .map(|&(language, name)| {
            eprintln!("  {language} …");
            let bytes = std::fs::read(example_handler(name)).expect("built by build.rs");
            let first_load_s = Runs::collect("first load s", runs, || {
                let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
                let started = Instant::now();
                load(&sandbox, name, &bytes);
                started.elapsed().as_secs_f64()
            });
            let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
            let handler = load(&sandbox, name, &bytes);
            let signal = signal("org_acme", "forum.thread.created", thread());
            let delivery = delivery(json!({"auto_summaries": true}), &["forum"]);
            let sighost_us = measure_async(rounds, CALLS, || async {
                let run = sandbox.invoke(&handler, &signal, &delivery).await;
                assert!(
                    run.outcome.is_ok() && run.directives.len() == 1,
                    "{name}: {:?} {}",
                    run.outcome,
                    run.report.output
                );
            });
            let bare_us = bare_tuned(&bytes, rounds, CALLS, &bare_call());
            let one_thread_per_s =
                Runs::collect("1 thread /s", runs, || throughput(&sandbox, &handler, 1));
            let two_threads_per_s =
                Runs::collect("2 threads /s", runs, || throughput(&sandbox, &handler, 2));
            Row {
                language,
                bytes: bytes.len(),
                first_load_s,
                sighost_us,
                bare_us,
                one_thread_per_s,
                two_threads_per_s,
            }
        })
        .collect()
}
