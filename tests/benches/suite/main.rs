//! The benchmark suite: every figure of BENCHMARKS.md, each beside a peer
//! measured in the same run on the same machine.
//!
//! ```text
//! cargo bench -p sighost-tests --bench suite                  # everything; writes BENCHMARKS.md
//! cargo bench -p sighost-tests --bench suite -- sqlite fanout # some sections; prints the report
//! cargo bench -p sighost-tests --bench suite -- --runs 1      # one run per figure instead of 3
//! ```
//!
//! Sections: `invoke`, `sqlite`, `postgres`, `latency`, `fanout`, `restart`,
//! `sleepers`, `compile`, `fairness`, `ingest`, `languages`, `soak`, `counts`. Progress
//! goes to stderr; the report (Markdown) to stdout, and to BENCHMARKS.md at
//! the workspace root when every section ran (or to `--out <file>`).

mod compile;
mod counts;
mod durable;
mod fairness;
mod fanout;
mod ingest;
mod invoke;
mod languages;
mod machine;
mod peers;
mod restart;
mod sleepers;
mod soak;
mod stats;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use durable::{Backend, DRAIN};
use sighost_tests::postgres::FreshDatabase;
use stats::{Runs, number};

const SECTIONS: [&str; 13] = [
    "invoke",
    "sqlite",
    "postgres",
    "latency",
    "fanout",
    "restart",
    "sleepers",
    "compile",
    "fairness",
    "ingest",
    "languages",
    "soak",
    "counts",
];
/// How long a peer may drain before its rate is taken over that window.
const PEER_WINDOW_SECS: u64 = 20;
const LATENCY_SECS: u64 = 10;
const FANOUT_SIGNALS: usize = 10_000;
/// Queue depth of the peer's run with its own default settings.
const DEFAULTS_QUEUED: usize = 100_000;

struct Options {
    runs: usize,
    sections: Vec<String>,
    out: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        runs: 3,
        sections: Vec::new(),
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {} // cargo bench passes it to every bench binary
            "--runs" => {
                options.runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--runs takes a positive number"));
            }
            "--out" => {
                options.out = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--out takes a file"))
                        .into(),
                );
            }
            section if SECTIONS.contains(&section) => options.sections.push(arg),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if options.sections.is_empty() {
        options.sections = SECTIONS.iter().map(|s| s.to_string()).collect();
        options
            .out
            .get_or_insert_with(|| sighost_tests::workspace_root().join("BENCHMARKS.md"));
    }
    options
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: cargo bench -p sighost-tests --bench suite -- [--runs N] [--out FILE] [{}]...",
        SECTIONS.join("|")
    );
    std::process::exit(2)
}

fn main() {
    let options = options();
    let started = Instant::now();
    // Build what the sections run now, not inside a timed measurement.
    let wants = |name: &str| options.sections.iter().any(|s| s == name);
    if ["sqlite", "postgres", "restart", "ingest"]
        .iter()
        .any(|s| wants(s))
    {
        sighost_tests::sighost_binary();
    }
    if wants("sqlite") || wants("postgres") {
        peers::build();
    }
    let mut report = header(&options);
    // The steady rates the durable sections measured; the latency section
    // runs at half of them (and measures them itself when they are missing).
    let mut steady = Steady::default();
    // Bare wasmtime's µs per call, when the invoke section ran first.
    let mut bare_invoke_us = None;
    for section in &options.sections {
        eprintln!(
            "== {section} ({:.0} s into the suite)",
            started.elapsed().as_secs_f64()
        );
        let text = match section.as_str() {
            "invoke" => invoke_section(options.runs, &mut bare_invoke_us),
            "sqlite" => durable_section(Backend::Sqlite, options.runs, &mut steady, bare_invoke_us),
            "postgres" => {
                durable_section(Backend::Postgres, options.runs, &mut steady, bare_invoke_us)
            }
            "latency" => latency_section(options.runs, &mut steady),
            "fanout" => fanout_section(options.runs),
            "restart" => restart_section(options.runs),
            "sleepers" => sleepers_section(options.runs),
            "compile" => compile_section(options.runs),
            "fairness" => fairness_section(options.runs),
            "ingest" => ingest::ingest_section(options.runs),
            "languages" => languages_section(options.runs),
            "soak" => soak::soak_section(),
            "counts" => counts::counts_section(options.runs),
            _ => unreachable!("checked in options()"),
        };
        print!("{text}");
        report.push_str(&text);
    }
    let _ = writeln!(
        report,
        "\n_The whole suite took {:.1} minutes._",
        started.elapsed().as_secs_f64() / 60.0
    );
    if let Some(out) = &options.out {
        std::fs::write(out, &report).expect("write the report");
        eprintln!("wrote {}", out.display());
    }
}

fn header(options: &Options) -> String {
    let mut text = String::from("# sighost benchmarks\n\n");
    let _ = writeln!(
        text,
        "Generated by `cargo bench -p sighost-tests --bench suite` on {} UTC. Each figure is \
         the median of {} runs with the lowest and highest in brackets, unless it says \
         otherwise. Peers run in the same suite, on the same machine, one after another \
         (never at the same time); before each measurement the suite runs `sync` and a PostgreSQL \
         CHECKPOINT and waits a second, so one measurement's disk write-back does not land in \
         the next.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        options.runs
    );
    for (key, value) in machine::describe() {
        let _ = writeln!(text, "- {key}: {value}");
    }
    text
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

fn invoke_section(runs: usize, bare_invoke_us: &mut Option<f64>) -> String {
    // More rounds than runs elsewhere: a round is cheap.
    let rounds = (runs * 2 + 1).max(5);
    let result = invoke::run(rounds);
    let bare_tuned_us = result.bare_tuned_us();
    *bare_invoke_us = Some(bare_tuned_us);
    let mut text = String::from("\n## 1. Invocation overhead\n\n");
    let _ = writeln!(
        text,
        "A trivial handler (reads the signal, requests one directive): fresh instance, call, \
         directive. Time per call in µs, median of {rounds} rounds of {} calls.\n",
        invoke::CALLS_PER_ROUND
    );
    text.push_str("| how | µs per call | sighost / this |\n|---|---|---|\n");
    for (i, (name, runs)) in result.rows.iter().enumerate() {
        let _ = writeln!(
            text,
            "| {name} | {} | {:.2}× |",
            runs.show(2),
            result.ratio(i)
        );
    }
    let ratio = result.rows[0].1.median() / bare_tuned_us;
    let _ = writeln!(
        text,
        "\nsighost / bare wasmtime with the same pool tuning: **{ratio:.2}×** (goal ≤ 1.3×: {}). \
         Every wasmtime row calls the component in wasmtime's async mode (a fiber per call, WASI \
         linked asynchronously), as sighost must for its wall-clock limit to hold while a guest \
         waits in a host call. sighost does per call what the bare embedding skips: the epoch \
         deadline and the timer beside it, the memory limiter and its peak, captured and \
         redacted output, the directive checks (name, size, key, payload JSON), and the context \
         built from the delivery. The native row runs the handler's Rust code under the SDK's \
         test harness: no sandbox at all.",
        goal(ratio <= 1.3)
    );
    text
}

fn languages_section(runs: usize) -> String {
    let rows = languages::run(runs);
    let mut text = String::from("\n## 11. The same handler in Rust, TypeScript and Python\n\n");
    let _ = writeln!(
        text,
        "The forum summarizer examples (`handlers/forum-summarizer{{,-ts,-py}}`, the TypeScript \
         one built with each of the JavaScript SDK's engines), built from source by the tests' \
         build: each reads its tenant's settings and packages, parses the \
         payload and requests one directive. First load: compile and pre-instantiate with no \
         compiled-code cache ({runs} runs). Per delivery: fresh instance, call, directive, in \
         µs, {} calls a round; bare wasmtime runs the same component with the pool tuned as \
         sighost's. Deliveries/s: one or two threads invoking at once for a second.\n",
        languages::CALLS
    );
    text.push_str(
        "| handler | size | first load | sighost µs per delivery | bare wasmtime µs | \
         sighost / bare | deliveries/s, 1 thread | 2 threads |\n|---|---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        let _ = writeln!(
            text,
            "| {} | {:.1} MB | {} s | {} | {} | {:.2}× | {} | {} |",
            row.language,
            row.bytes as f64 / 1e6,
            row.first_load_s.show(2),
            row.sighost_us.show(0),
            row.bare_us.show(0),
            row.sighost_us.median() / row.bare_us.median(),
            row.one_thread_per_s.show(0),
            row.two_threads_per_s.show(0),
        );
    }
    // The goal is the other languages' (a JS or Python delivery close to
    // what its runtime costs bare); the Rust row is there to compare with.
    let ratio = |row: &languages::Row| row.sighost_us.median() / row.bare_us.median();
    let worst = rows[1..].iter().map(ratio).fold(0.0, f64::max);
    let best_us = |prefix: &str| {
        rows.iter()
            .filter(|row| row.language.starts_with(prefix))
            .map(|row| row.sighost_us.median())
            .fold(f64::INFINITY, f64::min)
    };
    let (javascript_us, python_us) = (best_us("TypeScript"), best_us("Python"));
    let _ = writeln!(
        text,
        "\nsighost / bare wasmtime, worst of TypeScript and Python: **{worst:.2}×** (goal ≤ 1.3×: \
         {}). Absolute goals, toward ≤ 150 µs (JavaScript, the faster engine: {javascript_us:.0} \
         µs) and ≤ 500 µs (Python: {python_us:.0} µs) per delivery: {} and {}; the bare wasmtime \
         column is what the runtime itself costs.",
        goal(worst <= 1.3),
        goal(javascript_us <= 150.0),
        goal(python_us <= 500.0),
    );
    text
}

/// One durable row: sighost's and the peer's rate at one queue depth.
struct DepthRow {
    queued: usize,
    sighost: Runs,
    sighost_emit: Runs,
    peer: Runs,
    peer_enqueue: Runs,
    peer_cut: bool,
}

impl DepthRow {
    /// sighost's median over the peer's.
    fn ratio(&self) -> f64 {
        self.sighost.median() / self.peer.median()
    }
}

/// Median steady rate (deliveries/s, ~1k pending) per store, once measured.
#[derive(Default)]
struct Steady {
    sqlite: Option<Runs>,
    postgres: Option<Runs>,
}

impl Steady {
    fn get(&mut self, backend: Backend, runs: usize) -> Runs {
        let slot = match backend {
            Backend::Sqlite => &mut self.sqlite,
            Backend::Postgres => &mut self.postgres,
        };
        slot.get_or_insert_with(|| {
            eprintln!("{}: steady queue (~1k pending) …", backend.name());
            Runs::collect("steady deliveries/s", runs, || durable::steady(backend))
        })
        .clone()
    }
}

fn durable_section(
    backend: Backend,
    runs: usize,
    steady: &mut Steady,
    bare_invoke_us: Option<f64>,
) -> String {
    let (section_number, depths, peer_name): (&str, &[usize], &str) = match backend {
        Backend::Sqlite => ("2", &[1_000, 100_000, 1_000_000], "apalis-sqlite"),
        Backend::Postgres => ("3", &[1_000, 100_000], "apalis-postgres"),
    };
    let store = backend.name();
    let steady_rate = steady.get(backend, runs);
    let mut rows = Vec::new();
    let mut peer_info = PeerInfo::default();
    for &queued in depths {
        eprintln!("{store}: sighost with {queued} queued …");
        let mut emits = Vec::new();
        let sighost = Runs::collect(
            &format!("sighost {queued} queued, deliveries/s"),
            runs,
            || {
                let drain = durable::queued(backend, queued, 1);
                emits.push(drain.emit_per_s);
                drain.per_s
            },
        );
        eprintln!("{store}: {peer_name} with {queued} queued …");
        let (peer, peer_enqueue, peer_cut) =
            peer_runs(backend, queued, peers::Tuning::Best, runs, &mut peer_info);
        rows.push(DepthRow {
            queued,
            sighost,
            sighost_emit: Runs::from_values(emits),
            peer,
            peer_enqueue,
            peer_cut,
        });
    }
    eprintln!("{store}: {peer_name} with its default settings, {DEFAULTS_QUEUED} queued …");
    let (peer_defaults, _, defaults_cut) = peer_runs(
        backend,
        DEFAULTS_QUEUED,
        peers::Tuning::Defaults,
        runs,
        &mut PeerInfo::default(),
    );
    let PeerInfo {
        version: peer_version,
        notes: peer_notes,
    } = peer_info;
    let worst_ratio = rows
        .iter()
        .map(DepthRow::ratio)
        .fold(f64::INFINITY, f64::min);
    // The store alone is measured at the deepest queue: the shallow rows
    // mostly measure start-up, on either side.
    let deepest = rows.last().expect("rows");
    let workers = sighost::worker::WorkerConfig::default();
    eprintln!("{store}: the store alone, {} queued …", deepest.queued);
    let store_alone = Runs::collect("store alone, deliveries/s", runs, || {
        durable::store_only(backend, deepest.queued, workers.threads)
    });
    let two_processes = (backend == Backend::Postgres).then(|| {
        eprintln!("{store}: two host processes, 100000 queued …");
        Runs::collect("sighost 2 processes, deliveries/s", runs, || {
            durable::queued(backend, 100_000, 2).per_s
        })
    });
    let mut text = format!("\n## {section_number}. Durable throughput, {store}\n\n");
    let _ = writeln!(
        text,
        "sighost: signal → one trivial wasm handler → one directive committed, end to end. \
         {peer_name} ({peer_version}): a no-op native job, acknowledged. The queue is filled \
         first; the clock starts before the workers do. sighost's rate is over the whole queue \
         or its first {} deliveries, whichever is fewer; the peer's until the queue is empty \
         or {PEER_WINDOW_SECS} s have passed (marked \"window\" where the window ended it). \
         With 1k queued either side is done in tens of milliseconds, so that row mostly \
         measures how fast workers start.\n",
        number(DRAIN as f64, 0)
    );
    text.push_str(
        "| queued | sighost deliveries/s | peer jobs/s | sighost / peer | sighost emit signals/s | peer enqueue jobs/s |\n|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        let _ = writeln!(
            text,
            "| {} | {} | {}{} | {:.1}× | {} | {} |",
            number(row.queued as f64, 0),
            row.sighost,
            row.peer,
            if row.peer_cut { " (window)" } else { "" },
            row.ratio(),
            row.sighost_emit,
            row.peer_enqueue,
        );
    }
    let flat = rows.last().expect("rows").sighost.median() / rows[0].sighost.median();
    let _ = writeln!(
        text,
        "\n- sighost with about 1k pending while a feeder emits (emit and work at once): **{}** deliveries/s.",
        steady_rate
    );
    let _ = writeln!(
        text,
        "- sighost / {peer_name}, the lowest of the rows: **{worst_ratio:.1}×**. Context, not a \
         goal: the peer runs a no-op job, where sighost runs a fresh wasm instance per delivery \
         and writes the delivery, its attempt and its directive."
    );
    let _ = writeln!(
        text,
        "- sighost at the deepest queue / at 1k queued: {flat:.2} (flat is 1.0)."
    );
    let _ = writeln!(
        text,
        "- The ceilings: the store alone, with no sandbox ({} threads, each claiming a batch of \
         {} and completing it with one directive per delivery in one transaction), sustains \
         **{store_alone}** deliveries/s with {} queued (the deepest row): the rate its writes \
         allow. sighost's whole path, with the wasm on the same cores, reaches {} there, {:.0}% \
         of it; the rest of the cores goes to the sandbox and the host.{}",
        workers.threads,
        workers.batch_size,
        number(deepest.queued as f64, 0),
        deepest.sighost,
        100.0 * deepest.sighost.median() / store_alone.median(),
        bare_invoke_us.map_or(String::new(), |us| format!(
            " Bare wasmtime's instantiate-and-call alone takes {us:.2} µs (section 1): on {} \
             cores, at most {} calls/s with nothing else running.",
            workers.threads,
            number(workers.threads as f64 * 1e6 / us, 0)
        )),
    );
    let _ = writeln!(
        text,
        "- {peer_name} with apalis's defaults for workers, batch and locking (one worker, \
         batches of 10, tasks locked; the other settings as in the table's runs), {} queued: \
         {peer_defaults} jobs/s{}; sighost / that: {:.1}×. The table's peer figures use the \
         best settings found for this machine instead.",
        number(DEFAULTS_QUEUED as f64, 0),
        if defaults_cut { " (window)" } else { "" },
        rows.iter()
            .find(|r| r.queued == DEFAULTS_QUEUED)
            .map_or(f64::NAN, |r| r.sighost.median() / peer_defaults.median()),
    );
    if let Some(two) = &two_processes {
        let _ = writeln!(
            text,
            "- two sighost processes (this one and a `sighost run`) on one database, 100k queued: **{two}** deliveries/s (goal ≥ 10,000: {}).",
            goal(two.median() >= 10_000.0)
        );
    }
    let caveats = match backend {
        Backend::Sqlite => {
            "apalis-sqlite's settings were tuned here for its best rate (the tuning runs and \
             their figures are in bench/peers/src/main.rs): its ack query reads every job the \
             acking worker has ever done, so one worker slows down as it runs; 256 workers keep \
             each one's share small. Its lock step (marking a job running) is off, because that \
             query walks every pending job; sighost's claim does set a lease on every delivery"
        }
        Backend::Postgres => {
            "apalis-postgres commits everything with the server's synchronous_commit = on; \
             sighost commits its claims with synchronous_commit = off (a lost claim is fenced \
             out, see the README) and its emits and completions with it on. The peer's \
             settings (workers, batch) were tuned here for its best rate (see \
             bench/peers/src/main.rs). No 1M row: sighost's deep-queue figure on PostgreSQL \
             is the 100k one"
        }
    };
    let _ = writeln!(
        text,
        "\nFairness. Work per item: sighost instantiates a wasm component, runs the sandbox's \
         checks, and per delivery writes an attempt row and a directive row besides claiming \
         and completing it; the peer's job does nothing and its ack is the only write after \
         the fetch. {caveats}. Peer configuration: {peer_notes}. Both use {}.",
        match backend {
            Backend::Sqlite => "one SQLite file in WAL mode with synchronous = NORMAL",
            Backend::Postgres => "the same PostgreSQL server, a fresh database per run",
        }
    );
    text
}

fn latency_section(runs: usize, steady: &mut Steady) -> String {
    let mut text = String::from("\n## 4. Latency\n\n");
    let _ = writeln!(
        text,
        "Emit → handler start while signals are emitted every 5 ms, for {LATENCY_SECS} s, at \
         half the store's steady rate (the ~1k-pending rate of sections 2 and 3, emit \
         included; the drain-only rates are higher, so this is about a third of those). \
         Latency is the attempt's start time minus the signal's insert time, over every \
         signal of the run. \"achieved\" is the emit rate the run reached. Milliseconds.\n"
    );
    text.push_str(
        "| store | target signals/s | achieved signals/s | p50 | p99 | max | goal |\n|---|---|---|---|---|---|---|\n",
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let half = steady.get(backend, runs).median() / 2.0;
        eprintln!("{}: latency at {half:.0} signals/s …", backend.name());
        let mut latencies = Vec::new();
        let p99 = Runs::collect("p99 emit→start ms", runs, || {
            let latency = durable::latency(backend, half, LATENCY_SECS);
            latencies.push(latency);
            latency.p99
        });
        let column = |pick: fn(&durable::Latency) -> f64| {
            Runs::from_values(latencies.iter().map(pick).collect())
        };
        let goal_ms = match backend {
            Backend::Sqlite => 5.0,
            Backend::Postgres => 10.0,
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | **{}** | {} | p99 < {goal_ms} ms: {} |",
            backend.name(),
            number(half, 0),
            column(|l| l.achieved),
            column(|l| l.p50).show(2),
            p99.show(2),
            column(|l| l.max).show(2),
            goal(p99.median() < goal_ms),
        );
    }
    text
}

/// What the peer says of itself.
#[derive(Default)]
struct PeerInfo {
    version: String,
    notes: String,
}

/// `runs` runs of the peer: jobs/s, enqueue jobs/s, and whether the window
/// ended any run; `info` gets its version and notes.
fn peer_runs(
    backend: Backend,
    queued: usize,
    tuning: peers::Tuning,
    runs: usize,
    info: &mut PeerInfo,
) -> (Runs, Runs, bool) {
    let mut enqueues = Vec::new();
    let mut cut = false;
    let rate = Runs::collect(
        &format!("apalis {queued} queued, {tuning:?}, jobs/s"),
        runs,
        || {
            let database =
                (backend == Backend::Postgres).then(|| FreshDatabase::new("apalis_bench"));
            let store = match &database {
                None => peers::PeerStore::Sqlite,
                Some(db) => peers::PeerStore::Postgres(&db.url),
            };
            let run = peers::run(store, queued, PEER_WINDOW_SECS, tuning);
            enqueues.push(run.enqueue_per_s);
            cut |= run.window_cut;
            eprintln!(
                "    {} jobs done in {:.1} s{}",
                run.done,
                run.seconds,
                if run.window_cut { " (window)" } else { "" }
            );
            *info = PeerInfo {
                version: run.version,
                notes: run.notes,
            };
            run.per_s
        },
    );
    (rate, Runs::from_values(enqueues), cut)
}

fn fanout_section(runs: usize) -> String {
    let mut text = String::from("\n## 5. Fanout shape\n\n");
    let _ = writeln!(
        text,
        "{} signals, each to {} handlers; about {}% of the deliveries fail transiently on \
         their first attempt and are retried (millisecond backoff). Deliveries/s from the \
         workers' start until no delivery is left to run. A directive's key carries the \
         attempt, so a directive written by a failed attempt, or by a delivery run twice, \
         would be a row of its own: \"duplicate\" counts rows beyond one per (signal, \
         handler). The run also checks that every delivery completed with exactly one \
         successful attempt.\n",
        number(FANOUT_SIGNALS as f64, 0),
        fanout::HANDLERS,
        fanout::FAIL_PERCENT
    );
    text.push_str(
        "| store | deliveries | deliveries/s | retries | duplicate directives | missing directives |\n|---|---|---|---|---|---|\n",
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        eprintln!("{}: fanout …", backend.name());
        let mut results = Vec::new();
        let rate = Runs::collect("fanout deliveries/s", runs, || {
            let result = fanout::run(backend, FANOUT_SIGNALS);
            results.push(result);
            result.per_s
        });
        let retries = Runs::from_values(results.iter().map(|r| r.retries as f64).collect());
        let duplicates: usize = results.iter().map(|r| r.duplicate_directives).sum();
        let missing: usize = results.iter().map(|r| r.missing_directives).sum();
        let _ = writeln!(
            text,
            "| {} | {} | {rate} | {retries} | {duplicates} | {missing} |",
            backend.name(),
            number(results[0].deliveries as f64, 0),
        );
    }
    text.push_str(
        "\nDuplicates and missing directives are summed over all runs; both must be 0.\n",
    );
    text
}

fn sleepers_section(runs: usize) -> String {
    eprintln!("sleepers: {} good deliveries alone …", sleepers::GOOD);
    let alone = Runs::collect("good deliveries alone, s", runs, || sleepers::run(false).0);
    eprintln!("sleepers: beside {} sleeping guests …", sleepers::SLEEPERS);
    let mut all_asleep = true;
    let beside = Runs::collect("good deliveries beside sleepers, s", runs, || {
        let (seconds, asleep) = sleepers::run(true);
        all_asleep &= asleep;
        seconds
    });
    let ratio = beside.median() / alone.median();
    let mut text = String::from("\n## 7. Guests waiting in host calls\n\n");
    let _ = writeln!(
        text,
        "SQLite, default workers. {} deliveries of the trivial handler, from the workers' \
         start until all completed: alone, and with {} guests of another tenant, claimed \
         first, asleep in a `wasi:clocks` timer the whole time (each holds an invocation \
         slot, not a thread). Seconds, median of {runs} with the range.\n",
        number(sleepers::GOOD as f64, 0),
        sleepers::SLEEPERS
    );
    text.push_str("| good deliveries | seconds |\n|---|---|\n");
    let _ = writeln!(text, "| alone | {} |", alone.show(3));
    let _ = writeln!(
        text,
        "| beside {} sleepers | {} |",
        sleepers::SLEEPERS,
        beside.show(3)
    );
    let _ = writeln!(
        text,
        "\nBeside sleepers / alone: **{ratio:.2}×**; every sleeper was still asleep when the \
         good deliveries had finished: {}.",
        if all_asleep { "yes" } else { "**no**" }
    );
    text
}

fn fairness_section(runs: usize) -> String {
    use sighost::fair::ClaimOrder;
    let mut text = String::from("\n## 9. Fair share between tenants\n\n");
    let _ = writeln!(
        text,
        "Default workers, the trivial handler. **Noisy neighbour**: tenant B emits {} signals \
         every {} ms for {} s; B's emit→completion (the delivery's finish minus the signal's \
         insert), on an idle host and beside tenant A's backlog (emitted before the workers \
         start). \"A left\" is how much of A's backlog was still pending when B's last delivery \
         had finished. Milliseconds.\n",
        10,
        20,
        fairness::SMALL_SECONDS,
    );
    text.push_str(
        "| store | A queued | B p50 idle | B p99 idle | B p50 beside A | B p99 beside A | A left | goal: p99 ≤ 2× idle + 5 ms |\n|---|---|---|---|---|---|---|---|\n",
    );
    let stores = [(Backend::Sqlite, 1_000_000), (Backend::Postgres, 100_000)];
    let mut splits = Vec::new();
    for (backend, queued) in stores {
        eprintln!("{}: small tenant on an idle host …", backend.name());
        let mut idle = Vec::new();
        let idle_p99 = Runs::collect("B p99 idle, ms", runs, || {
            let small = fairness::small_tenant(backend, 0);
            idle.push(small.p50_ms);
            small.p99_ms
        });
        eprintln!("{}: small tenant beside {queued} queued …", backend.name());
        let (mut beside, mut left, mut to_start, mut to_done) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let beside_p99 = Runs::collect("B p99 beside A, ms", runs, || {
            let small = fairness::small_tenant(backend, queued);
            beside.push(small.p50_ms);
            left.push(small.a_pending_after as f64);
            to_start.push(small.to_start_p99_ms);
            to_done.push(small.start_to_done_p99_ms);
            small.p99_ms
        });
        splits.push(format!(
            "{}: emit → start p99 {} ms, start → completion recorded p99 {} ms",
            backend.name(),
            Runs::from_values(to_start).show(2),
            Runs::from_values(to_done).show(2)
        ));
        let limit = 2.0 * idle_p99.median() + 5.0;
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | **{}** | {} | {} ({} ms) |",
            backend.name(),
            number(queued as f64, 0),
            Runs::from_values(idle).show(2),
            idle_p99.show(2),
            Runs::from_values(beside).show(2),
            beside_p99.show(2),
            Runs::from_values(left).show(0),
            goal(beside_p99.median() <= limit),
            number(limit, 1),
        );
    }
    let _ = writeln!(
        text,
        "\nWhere B's time goes beside A (p99 of each part): {}.",
        splits.join("; ")
    );
    let _ = writeln!(
        text,
        "\n**Throughput**: two tenants with 100,000 queued each, emitted alternately; \
         deliveries/s draining the first 100,000, claimed fairly and oldest first.\n"
    );
    text.push_str("| store | fair | oldest first | fair ÷ oldest first | goal ≥ 0.9 |\n|---|---|---|---|---|\n");
    for (backend, _) in stores {
        eprintln!("{}: drain, fair and oldest first …", backend.name());
        let fair = Runs::collect("fair drain, deliveries/s", runs, || {
            fairness::drain(backend, 100_000, ClaimOrder::Fair)
        });
        let oldest = Runs::collect("oldest-first drain, deliveries/s", runs, || {
            fairness::drain(backend, 100_000, ClaimOrder::OldestFirst)
        });
        let ratio = fair.median() / oldest.median();
        let _ = writeln!(
            text,
            "| {} | {} | {} | {ratio:.2} | {} |",
            backend.name(),
            fair.show(0),
            oldest.show(0),
            goal(ratio >= 0.9)
        );
    }
    let _ = writeln!(
        text,
        "\n**Cost**: both tenants backlogged throughout, 100,000 deliveries each, emitted \
         alternately; A's handler spins {} µs per delivery, B's {} µs. \
         B's share of the worker time (the summed durations of the attempts started in a {} s \
         window), fairly and oldest first; \"A ÷ B per delivery\" is how much costlier A's \
         attempts measured. B spins rather than being the trivial handler: half of two cores \
         in ~10 µs deliveries would be 100,000 deliveries/s, beyond what the store completes \
         (section 2), so B's share would measure the store's ceiling, not the schedule.\n",
        fairness::COSTLY_BUSY_US,
        fairness::CHEAP_BUSY_US,
        6
    );
    text.push_str(
        "| store | B's share, fair | B's share, oldest first | A ÷ B per delivery | B deliveries/s, fair | goal: B ≥ 45% |\n|---|---|---|---|---|---|\n",
    );
    for (backend, _) in stores {
        eprintln!("{}: cost case …", backend.name());
        let (mut ratios, mut rates) = (Vec::new(), Vec::new());
        let fair = Runs::collect("B's share, fair, %", runs, || {
            let cost = fairness::cost(backend, ClaimOrder::Fair);
            ratios.push(cost.cost_ratio);
            rates.push(cost.b_per_s);
            100.0 * cost.b_share
        });
        let oldest = Runs::collect("B's share, oldest first, %", runs, || {
            100.0 * fairness::cost(backend, ClaimOrder::OldestFirst).b_share
        });
        let _ = writeln!(
            text,
            "| {} | **{} %** | {} % | {}× | {} | {} |",
            backend.name(),
            fair.show(1),
            oldest.show(1),
            Runs::from_values(ratios).show(0),
            Runs::from_values(rates).show(0),
            goal(fair.median() >= 45.0)
        );
    }
    let _ = writeln!(
        text,
        "\n**Directive runner**: tenant A's {} directives wait for an executor that takes {} ms \
         each (a slow endpoint; B's take nothing), queued before tenant B's; B then requests \
         100 directives over a second. B's directive latency (requested → succeeded), default \
         runner (2 threads), fairly and oldest first. Milliseconds.\n",
        fairness::A_DIRECTIVES,
        fairness::SLOW_EXECUTOR.as_millis()
    );
    text.push_str(
        "| store | B p50, fair | B p99, fair | B p50, oldest first | B p99, oldest first |\n|---|---|---|---|---|\n",
    );
    for (backend, _) in stores {
        eprintln!("{}: slow executor …", backend.name());
        let mut fair_p50 = Vec::new();
        let fair_p99 = Runs::collect("B's directive p99, fair, ms", runs, || {
            let (p50, p99) = fairness::slow_executor(backend, ClaimOrder::Fair);
            fair_p50.push(p50);
            p99
        });
        let mut oldest_p50 = Vec::new();
        let oldest_p99 = Runs::collect("B's directive p99, oldest first, ms", runs, || {
            let (p50, p99) = fairness::slow_executor(backend, ClaimOrder::OldestFirst);
            oldest_p50.push(p50);
            p99
        });
        let _ = writeln!(
            text,
            "| {} | {} | **{}** | {} | {} |",
            backend.name(),
            Runs::from_values(fair_p50).show(1),
            fair_p99.show(1),
            Runs::from_values(oldest_p50).show(0),
            oldest_p99.show(0),
        );
    }
    text
}

fn compile_section(runs: usize) -> String {
    eprintln!("compile: {} deliveries alone …", compile::DELIVERIES);
    let mut seed = 0;
    let alone = Runs::collect("deliveries alone, s", runs, || compile::run(0, false).0);
    eprintln!("compile: beside a large compile …");
    let mut compiles = Vec::new();
    let beside = Runs::collect("deliveries beside a compile, s", runs, || {
        seed += 1;
        let (seconds, compiled) = compile::run(seed, true);
        compiles.extend(compiled);
        seconds
    });
    let compiles = Runs::from_values(compiles);
    let ratio = beside.median() / alone.median();
    let mut text = String::from("\n## 8. Deliveries while a large component compiles\n\n");
    let _ = writeln!(
        text,
        "SQLite, default workers. {} deliveries of the trivial handler, from the workers' \
         start until all completed: alone, and while the same host compiles a component of \
         40,000 functions (no compiled-code cache; the compile took {} s). Loading threads \
         and the compiler's thread pool run at nice 10. Seconds, median of {runs} with the \
         range.\n",
        number(compile::DELIVERIES as f64, 0),
        compiles.show(1)
    );
    text.push_str("| deliveries | seconds |\n|---|---|\n");
    let _ = writeln!(text, "| alone | {} |", alone.show(3));
    let _ = writeln!(text, "| while compiling | {} |", beside.show(3));
    let _ = writeln!(
        text,
        "\nWhile compiling / alone: **{ratio:.2}×** (a compile taking one of the two cores \
         from the workers would make it about 2×)."
    );
    text
}

fn restart_section(runs: usize) -> String {
    let hundred = restart::Fleet::new(100);
    eprintln!("restart: 100 handlers from scratch …");
    let cold = Runs::collect("100 handlers, no cache, s", runs, || {
        hundred.forget_cache();
        hundred.start(100).seconds
    });
    eprintln!("restart: 100 handlers from the compiled cache …");
    let mut rss_100 = Vec::new();
    let warm = Runs::collect("100 handlers, cached, s", runs, || {
        let start = hundred.start(100);
        rss_100.push(start.rss_mib);
        start.seconds
    });
    drop(hundred);
    let empty = restart::Fleet::new(0);
    let idle = Runs::collect("no handlers, s", runs, || empty.start(0).seconds);
    let rss_0 = Runs::collect("no handlers, RSS MiB", 1, || empty.start(0).rss_mib);
    drop(empty);
    eprintln!("restart: 1000 handlers (compiling them once) …");
    let thousand = restart::Fleet::new(1000);
    let first = thousand.start(1000).seconds;
    eprintln!("  compiled 1000 handlers in {first:.1} s");
    let mut rss_1000 = Vec::new();
    let warm_1000 = Runs::collect("1000 handlers, cached, s", runs, || {
        let start = thousand.start(1000);
        rss_1000.push(start.rss_mib);
        start.seconds
    });
    let rss_100 = Runs::from_values(rss_100);
    let rss_1000 = Runs::from_values(rss_1000);

    let mut text = String::from("\n## 6. Restart\n\n");
    text.push_str(
        "The real `sighost run`, from spawn until it logs \"sighost is running\" (store opened, \
         handlers loaded, workers started), with N distinct handler components in its \
         directory (the trivial guest, each copy made unique by a custom section). Resident \
         memory (VmRSS) read from /proc at that moment.\n\n",
    );
    text.push_str(
        "\"No cache\" starts on an empty data directory: no compiled code, and a new \
         database (creating it is the 0-handler start's few milliseconds). The 0-handler \
         memory figure is one run; the 1,000-handler compile is one run, as it fills the \
         cache the other 1,000-handler starts use.\n\n",
    );
    text.push_str("| handlers | start, no cache (s) | start, from the cache (s) | resident memory (MiB) |\n|---|---|---|---|\n");
    let _ = writeln!(text, "| 0 | — | {} | {} |", idle.show(3), rss_0.show(1));
    let _ = writeln!(
        text,
        "| 100 | {} | {} | {} |",
        cold.show(3),
        warm.show(3),
        rss_100.show(1)
    );
    let _ = writeln!(
        text,
        "| 1,000 | {first:.2} (one run) | {} | {} |",
        warm_1000.show(3),
        rss_1000.show(1)
    );
    let _ = writeln!(
        text,
        "\nFrom the cache, 100 handlers start {:.1}× faster than compiled from scratch; each \
         loaded handler costs about {:.2} MiB of resident memory ((1,000 − 100 handlers) / 900).",
        cold.median() / warm.median(),
        (rss_1000.median() - rss_100.median()) / 900.0
    );
    text
}
