//! HTTP ingest: `sighost run` (SQLite, one trivial handler, the workers
//! running) taking signals from a closed-loop load generator built here:
//! `CONNECTIONS` keep-alive clients, each sending its next request when the
//! last is answered, for `SECONDS`. One signal per request, then batches of
//! `BATCH`; beside them, in the same run, the library's emit on the same
//! store and the store alone.

use std::fmt::Write as _;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::durable::{Backend, HandlerFile, Setup, noop, sighost_command};
use crate::stats::{Runs, percentile};

const CONNECTIONS: usize = 64;
const SECONDS: u64 = 10;
const BATCH: usize = 100;
const TOKEN: &str = "bench-ingest-token-0001";

/// One burst's result.
struct Burst {
    signals_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `sighost run` serving the API, with its workers on.
struct Server {
    child: Child,
    setup: Setup,
    url: String,
}

impl Server {
    fn start(handlers: &[HandlerFile]) -> Self {
        let setup = Setup::new(Backend::Sqlite, "ingest", handlers);
        // The tenant and its handlers exist before the server starts.
        drop(setup.host());
        let config = setup.dir.join("sighost.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[tokens.tenants]\norg_bench = \"{TOKEN}\"\n\
                 [logging]\nformat = \"json\"\n"
            ),
        )
        .expect("config");
        let log = setup.dir.join("run.log");
        let child = sighost_command()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(setup.dir.join("data"))
            .args(["run", "--handlers"])
            .arg(setup.dir.join("handlers"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn sighost run");
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let listening = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|e| e["fields"]["message"] == "HTTP API listening");
            if let Some(event) = listening {
                break event["fields"]["addr"].as_str().expect("addr").to_owned();
            }
            assert!(Instant::now() < deadline, "the API never listened: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            setup,
            url: format!("http://{addr}/v1/signals"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CONNECTIONS` clients posting `body(n)` for `SECONDS`; each request
/// carries `per_request` signals.
fn burst(url: &str, per_request: usize, body: impl Fn(usize) -> String + Sync) -> Burst {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let per_client: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|client| {
                let (stop, body) = (&stop, &body);
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build()
                        .into();
                    let mut latencies_us = Vec::new();
                    let mut n = client * 1_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let answer = agent
                            .post(url)
                            .header("Authorization", &format!("Bearer {TOKEN}"))
                            .content_type("application/json")
                            .send(body(n));
                        match answer {
                            Ok(response) if response.status().is_success() => {}
                            other => panic!("the API refused a bench request: {other:?}"),
                        }
                        latencies_us.push(sent.elapsed().as_micros() as i64);
                        n += per_request;
                    }
                    latencies_us
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(SECONDS));
        stop.store(true, Ordering::Relaxed);
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<i64> = per_client.into_iter().flatten().collect();
    latencies.sort_unstable();
    Burst {
        signals_per_s: (latencies.len() * per_request) as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50) as f64 / 1000.0,
        p99_ms: percentile(&latencies, 0.99) as f64 / 1000.0,
    }
}

fn one_signal(n: usize) -> String {
    json!({"name": "bench.ingested", "payload": {"n": n}}).to_string()
}

fn batch_of_signals(n: usize) -> String {
    Value::Array(
        (n..n + BATCH)
            .map(|i| json!({"name": "bench.ingested", "payload": {"n": i}}))
            .collect(),
    )
    .to_string()
}

/// The library's emit on the same store while the server runs, in batches
/// of `BATCH`, for `SECONDS`.
fn library_emit(setup: &Setup) -> f64 {
    let host = setup.host();
    let started = Instant::now();
    let mut emitted = 0;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        host.emit_batch(crate::durable::named_batch("bench.library", BATCH, emitted))
            .expect("emit");
        emitted += BATCH;
    }
    emitted as f64 / started.elapsed().as_secs_f64()
}

pub fn ingest_section(runs: usize) -> String {
    let handlers = noop();
    let mut single = Vec::new();
    let mut batched = Vec::new();
    let mut library = Vec::new();
    for run in 1..=runs {
        let server = Server::start(&handlers);
        let one = burst(&server.url, 1, one_signal);
        eprintln!(
            "  one per request: run {run}/{runs}: {:.0}/s p50 {:.2} ms p99 {:.2} ms",
            one.signals_per_s, one.p50_ms, one.p99_ms
        );
        let many = burst(&server.url, BATCH, batch_of_signals);
        eprintln!(
            "  batches of {BATCH}: run {run}/{runs}: {:.0}/s p99 {:.2} ms",
            many.signals_per_s, many.p99_ms
        );
        let lib = library_emit(&server.setup);
        eprintln!("  library emit: run {run}/{runs}: {lib:.0}/s");
        single.push(one);
        batched.push(many);
        library.push(lib);
        drop(server);
    }
    let runs_of = |values: Vec<f64>| Runs::from_values(values);
    let single_rate = runs_of(single.iter().map(|b| b.signals_per_s).collect());
    let single_p50 = runs_of(single.iter().map(|b| b.p50_ms).collect());
    let single_p99 = runs_of(single.iter().map(|b| b.p99_ms).collect());
    let batched_rate = runs_of(batched.iter().map(|b| b.signals_per_s).collect());
    let batched_p99 = runs_of(batched.iter().map(|b| b.p99_ms).collect());
    let library = Runs::from_values(library);
    let mut text = String::new();
    let _ = writeln!(text, "\n## 10. HTTP ingest, SQLite\n");
    let _ = writeln!(
        text,
        "`sighost run` (one trivial handler, its workers running, so the backlog may grow during a \
         burst) taking `POST /v1/signals` from a closed-loop load generator in this suite: \
         {CONNECTIONS} keep-alive connections, each sending its next request when the last is \
         answered, for {SECONDS} s. Single-signal requests are group-committed by the host. The \
         library's emit runs on the same store right after, in batches of {BATCH}, with the \
         server still running.\n"
    );
    let _ = writeln!(text, "| mode | signals/s | p50 | p99 | goal |");
    let _ = writeln!(text, "|---|---|---|---|---|");
    let _ = writeln!(
        text,
        "| one signal per request | {} | {} ms | {} ms | ≥ 20,000/s, p99 ≤ 20 ms: {} |",
        single_rate.show(0),
        single_p50.show(2),
        single_p99.show(2),
        met(single_rate.median() >= 20_000.0 && single_p99.median() <= 20.0)
    );
    let _ = writeln!(
        text,
        "| batches of {BATCH} | {} | | {} ms per batch | ≥ 100,000/s: {} |",
        batched_rate.show(0),
        batched_p99.show(2),
        met(batched_rate.median() >= 100_000.0)
    );
    let _ = writeln!(
        text,
        "| library emit (batches of {BATCH}), same store | {} | | | context |",
        library.show(0)
    );
    let _ = writeln!(
        text,
        "\n- One signal per request reaches {:.0}% of the library's rate in this run.",
        100.0 * single_rate.median() / library.median()
    );
    text
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}
