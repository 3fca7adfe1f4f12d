//! The `sighost` command: run the host, emit signals, inspect and operate the
//! queue. Every subcommand reads the configuration file (`--config`, else
//! `./sighost.toml` if there is one, else the defaults; see
//! `sighost::config`) and works on the store it names; flags override the
//! file.

mod output;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use sighost::config::{LogFormat, LoggingSection};
use sighost::retry::RetryPolicy;
use sighost::signal::EntityRef;
use sighost::store::{
    DeliveryFilter, DeliveryState, DirectiveFilter, DirectiveState, EmitStatus, NewSignal,
    SignalFilter,
};
use sighost::{Config, HostConfig, Sighost};

#[derive(Parser, Debug)]
#[command(
    name = "sighost",
    version,
    about = "Host for sandboxed, multi-tenant signal handlers"
)]
struct Cli {
    /// The configuration file [default: ./sighost.toml if it exists].
    #[arg(long, global = true, env = "SIGHOST_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database lives [default: the file's data_dir, else ./data].
    #[arg(long, global = true, env = "SIGHOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store: postgres://… for many processes sharing one PostgreSQL
    /// database, or sqlite://PATH [default: the file's store, else SQLite in
    /// the data directory].
    #[arg(long, global = true, env = "SIGHOST_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the delivery workers and the directive runner until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Emit one signal.
    Emit(EmitArgs),
    /// Check a handler module before dropping it in: shape, imports, manifest.
    Check {
        /// The .wasm file; its manifest is the .toml beside it.
        file: PathBuf,
    },
    /// List the handlers the hosts registered in the store: what each host
    /// runs (digest, subscriptions) and the files that do not load there,
    /// with why. Loads nothing.
    Handlers {
        /// Forget this handler on every host: emits stop reaching it until a
        /// host that has it registers again (at its next start or change).
        #[arg(long, value_name = "NAME", conflicts_with = "remove_host")]
        remove: Option<String>,
        /// Forget every handler of a host retired for good (its id is in
        /// the HOST column).
        #[arg(long, value_name = "HOST")]
        remove_host: Option<String>,
        #[arg(long)]
        json: bool,
        /// No longer read: the list comes from the store.
        #[arg(long, hide = true)]
        handlers: Option<PathBuf>,
    },
    /// Manage tenants, their settings and installed packages.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// List signals.
    Signals {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// List deliveries, or show one with its attempts.
    Deliveries {
        /// Show this delivery and every attempt.
        id: Option<i64>,
        #[arg(long)]
        tenant: Option<String>,
        /// available, running, retryable, completed, discarded or canceled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        handler: Option<String>,
        #[arg(long)]
        signal: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// List directives.
    Directives {
        #[arg(long)]
        tenant: Option<String>,
        /// requested, running, succeeded, failed or canceled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Deliver persisted signals again to the handlers in the handlers directory.
    Replay(ReplayArgs),
    /// Make discarded deliveries run again, with a fresh attempt budget.
    Retry {
        /// Delivery ids. Without any, every discarded one matching the
        /// filters: the command says how many of which tenants and asks (or
        /// needs --yes).
        ids: Vec<i64>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        handler: Option<String>,
        /// Act on every match of a filter without ids, without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Cancel deliveries or directives that have not run yet.
    #[command(subcommand)]
    Cancel(CancelCommand),
    /// Delete the finished work past its retention now (`[retention]` of the
    /// configuration), as `run` does every `retention.interval`. Pending work
    /// is never deleted.
    Prune {
        /// Show how many rows of each kind would go, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// SQLite: rewrite a database created before retention so that it
        /// gives the space pruning frees back to the file system. Stop the
        /// host first; needs free disk the size of the database.
        #[arg(long, conflicts_with = "dry_run")]
        vacuum: bool,
    },
    /// Queue depth by state.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The drop-in directory of handler modules [default: the file's
    /// handlers_dir, else ./handlers].
    #[arg(long)]
    handlers: Option<PathBuf>,
    /// Threads running handlers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// How long a claimed delivery or directive stays leased, in milliseconds.
    #[arg(long)]
    lease_ms: Option<u64>,
    /// Retry failed deliveries after milliseconds instead of `15 s + 2^attempt s`
    /// (for demos and tests).
    #[arg(long)]
    fast_retries: bool,
    /// Emit directive.started|succeeded|failed signals.
    #[arg(long)]
    lifecycle_signals: bool,
    /// Append directives that have no executor of their own in the
    /// configuration to this JSON-lines file instead of stdout.
    #[arg(long)]
    directive_log: Option<PathBuf>,
    /// Where the HTTP API listens (ip:port; port 0 takes a free one, which
    /// is logged); "" turns the API off [default: the file's http.listen,
    /// else 127.0.0.1:8080].
    #[arg(long, env = "SIGHOST_LISTEN")]
    listen: Option<String>,
}

#[derive(clap::Args, Debug)]
struct EmitArgs {
    /// Signal name, e.g. forum.thread.created.
    #[arg(required_unless_present = "file")]
    name: Option<String>,
    /// The payload: a JSON object, or `-` to read it from stdin.
    #[arg(default_value = "{}")]
    payload: String,
    /// The tenant; with --file, of the lines that name none.
    #[arg(long, required_unless_present = "file")]
    tenant: Option<String>,
    /// Emit every line of this file (`-`: stdin), each a signal as JSON:
    /// `{"name": …, "payload": {…}, "tenant"?: …, "dedupe_key"?: …, …}`.
    /// Every line is checked before any is stored; then they are written in
    /// transactions of 1,000, with progress on stderr. Lines with dedupe
    /// keys make a re-run safe after a failure part way.
    #[arg(long, conflicts_with_all = ["name", "dedupe_key", "correlation_id", "causation_id", "actor", "subject"])]
    file: Option<PathBuf>,
    #[arg(long)]
    dedupe_key: Option<String>,
    #[arg(long)]
    correlation_id: Option<String>,
    #[arg(long)]
    causation_id: Option<String>,
    #[arg(long)]
    source: Option<String>,
    /// `type:id`, e.g. user:u_42.
    #[arg(long)]
    actor: Option<String>,
    /// `type:id`, e.g. thread:t_1.
    #[arg(long)]
    subject: Option<String>,
    /// No longer read: the targets are the handlers the hosts registered.
    #[arg(long, hide = true)]
    handlers: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    #[arg(long = "id")]
    ids: Vec<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// RFC 3339: signals inserted at or after.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339: signals inserted before.
    #[arg(long)]
    until: Option<String>,
    /// Only to this handler.
    #[arg(long)]
    handler: Option<String>,
    /// No longer read: the targets are the handlers the hosts registered.
    #[arg(long, hide = true)]
    handlers: Option<PathBuf>,
    /// With no filter at all (every signal of every tenant), replay without
    /// asking.
    #[arg(long)]
    yes: bool,
}

#[derive(Subcommand, Debug)]
enum TenantsCommand {
    /// Create a tenant.
    Create {
        id: String,
        /// Settings, a JSON object.
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replace a tenant's settings.
    Settings {
        id: String,
        settings: String,
    },
    /// Set a tenant's weight: its share of the workers beside other tenants
    /// with work (1 to 10000; every tenant starts at 1).
    Weight {
        id: String,
        weight: u32,
    },
    /// Replace a tenant's limits; a limit not given is no limit.
    Limits {
        id: String,
        /// Deliveries (and directive executions) held at once, across every
        /// host process.
        #[arg(long)]
        max_running: Option<u32>,
        /// Deliveries waiting to run; an emit or replay that would pass it
        /// is refused.
        #[arg(long)]
        max_pending: Option<u64>,
        /// Signals a second, per host process.
        #[arg(long)]
        max_emit_per_s: Option<u32>,
    },
    Install {
        id: String,
        package: String,
    },
    Uninstall {
        id: String,
        package: String,
    },
}

#[derive(Subcommand, Debug)]
enum CancelCommand {
    /// Cancel deliveries that have not run yet.
    Deliveries {
        /// Delivery ids. Without any, every one matching the filters: the
        /// command says how many of which tenants and asks (or needs --yes).
        ids: Vec<i64>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        handler: Option<String>,
        /// Act on every match of a filter without ids, without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Cancel directives that have not run yet.
    Directives {
        /// Directive ids. Without any, every one matching the filters: the
        /// command says how many of which tenants and asks (or needs --yes).
        ids: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Act on every match of a filter without ids, without asking.
        #[arg(long)]
        yes: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    // Logging is configured by the file, so the file's own errors go
    // straight to stderr.
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    };
    init_logging(&config.logging, cli.log_json);
    if let Err(error) = execute(cli, config) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

/// The configuration file, with the global flags on top of it.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let file = cli.config.clone().or_else(|| {
        let default = PathBuf::from(sighost::config::DEFAULT_FILE);
        default.is_file().then_some(default)
    });
    let mut config = Config::load(file.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(store) = &cli.store {
        config.store = Some(store.clone());
    }
    Ok(config)
}

/// `SIGHOST_LOG` overrides the file's level, `--log-json` its format. Colors
/// only on a terminal: a log file should not fill with escape codes.
fn init_logging(config: &LoggingSection, json_flag: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json_flag || config.format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn open(config: &Config) -> anyhow::Result<Sighost> {
    open_host(config, config.host_config())
}

/// Opens the store the configuration names, for a host built from `host`.
fn open_host(config: &Config, mut host: HostConfig) -> anyhow::Result<Sighost> {
    let mut place = format!("in {}", host.data_dir.display());
    if let Some(url) = &config.store {
        // The URL is not repeated: it may carry a password.
        host.store = sighost::store::StoreLocation::parse(url)
            .with_context(|| format!("{}: `store` (or --store)", config.origin()))?;
        place = "named by `store` (or --store)".into();
    }
    Sighost::open(host).with_context(|| format!("opening the store {place}"))
}

/// `sighost prune`: one pass now, or what it would delete, or a vacuum.
fn prune(config: &Config, dry_run: bool, vacuum: bool) -> anyhow::Result<()> {
    let host = open(config)?;
    let store = host.store();
    if vacuum {
        eprintln!("vacuuming: the database is rewritten whole, which takes a while");
        if store.vacuum()? {
            println!("vacuumed: freed space now goes back to the file system after each prune");
        } else {
            println!("nothing to do: this store gives space back by itself");
        }
        return Ok(());
    }
    let retention = &host.config().retention;
    let now = (host.config().clock)();
    if dry_run {
        let counts = sighost::retention::dry_run(&**store, retention, now)?;
        println!("would delete (signals: those nothing holds now):");
        for (kind, count) in &counts {
            println!("  {kind:<22} {count}");
        }
        return Ok(());
    }
    let report = sighost::retention::run_pass(
        &**store,
        retention,
        now,
        || {
            std::thread::sleep(retention.pause);
            true
        },
        |kind, deleted| eprint!("\rpruning {}: {deleted} deleted   ", kind.name()),
    )?;
    eprintln!();
    if report.skipped {
        bail!("another process of the cluster is pruning now; try again when it is done");
    }
    println!("deleted:");
    for (kind, count) in &report.deleted {
        println!("  {kind:<22} {count}");
    }
    println!(
        "{} rows; {} bytes given back to the file system",
        report.total(),
        report.reclaimed_bytes
    );
    Ok(())
}

/// The handlers directory: the flag's, else the configuration's.
fn handlers_dir<'a>(config: &'a Config, flag: Option<&'a Path>) -> &'a Path {
    flag.unwrap_or(&config.handlers_dir)
}

/// Signals a bulk emit writes in one transaction.
const EMIT_FILE_BATCH: usize = 1000;

/// `sighost emit --file`: every line checked, then written in batches.
fn emit_file(config: &Config, file: &Path, args: &EmitArgs) -> anyhow::Result<()> {
    let text = if file == Path::new("-") {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading stdin")?;
        input
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let host = open(config)?;
    let source = args.source.clone().unwrap_or_else(|| "cli".into());
    // Each item with its line number; blank lines are skipped.
    let (lines, items): (Vec<usize>, Vec<_>) = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            (
                index + 1,
                signal_of_line(line, args.tenant.as_deref(), &source),
            )
        })
        .unzip();
    let (signals, invalid) = match host.emitter().check_each(items)? {
        Ok(signals) => (signals, Vec::new()),
        Err(invalid) => (
            Vec::new(),
            invalid
                .into_iter()
                .map(|(position, error)| format!("line {}: {error}", lines[position]))
                .collect(),
        ),
    };
    if !invalid.is_empty() {
        let shown = invalid
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let more = invalid.len().saturating_sub(20);
        let more = if more > 0 {
            format!("\n… and {more} more")
        } else {
            String::new()
        };
        bail!(
            "{} of the file's lines are invalid; nothing was emitted:\n{shown}{more}",
            invalid.len()
        );
    }
    let total = signals.len();
    let (mut created, mut existing, mut deliveries) = (0u64, 0u64, 0u64);
    let mut done = 0;
    let mut batches = signals.into_iter().peekable();
    while batches.peek().is_some() {
        let batch: Vec<NewSignal> = batches.by_ref().take(EMIT_FILE_BATCH).collect();
        let count = batch.len();
        let emitted = loop {
            match host.emit_batch(batch.clone()) {
                // A tenant's emit rate paces the file rather than ending it.
                Err(sighost::emit::EmitError::Refused(
                    refusal @ sighost::tenant_limits::Refusal::RateLimited { retry_after, .. },
                )) => {
                    eprint!("\r{refusal}: waiting");
                    std::thread::sleep(retry_after);
                }
                other => {
                    break other.with_context(|| {
                        format!(
                            "emitting the signals after the first {done} (those are stored; \
                             with dedupe keys on every line, running the same file again is \
                             safe)"
                        )
                    })?;
                }
            }
        };
        for e in &emitted {
            match e.status {
                EmitStatus::Created => created += 1,
                EmitStatus::Existing => existing += 1,
            }
            deliveries += u64::from(e.deliveries);
        }
        done += count;
        eprint!("\remitting: {done}/{total} signals");
    }
    if total > 0 {
        eprintln!();
    }
    println!("{total} signals: {created} created, {existing} existing; {deliveries} deliveries");
    Ok(())
}

/// One line of `emit --file`: a signal in sighost's JSON form, its tenant
/// from the line or else from `--tenant`.
fn signal_of_line(line: &str, tenant: Option<&str>, source: &str) -> Result<NewSignal, String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    const FIELDS: [&str; 11] = [
        "tenant",
        "name",
        "payload",
        "metadata",
        "dedupe_key",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "actor",
        "subject",
        "source",
    ];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field {unknown:?}"));
    }
    if !object.contains_key("tenant") {
        let tenant = tenant.ok_or("no tenant: give the line one, or pass --tenant")?;
        object.insert("tenant".into(), tenant.into());
    }
    object
        .entry("payload")
        .or_insert_with(|| serde_json::json!({}));
    object.entry("source").or_insert_with(|| source.into());
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| e.to_string())
}

/// `--handlers` on a command that reads the store's registry instead.
fn ignored_handlers_flag(dir: Option<&Path>) {
    if let Some(dir) = dir {
        eprintln!(
            "note: --handlers {} is ignored: this command goes by the handlers the hosts \
             registered in the store (`sighost handlers`), and loads no module",
            dir.display()
        );
    }
}

fn load_handlers(host: &Sighost, dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "handlers directory does not exist; no handlers loaded");
        return Ok(());
    }
    let errors = host
        .load_handlers_dir(dir)
        .with_context(|| format!("reading handlers directory {}", dir.display()))?;
    for error in errors {
        tracing::error!(%error, "handler not loaded");
    }
    Ok(())
}

fn json_arg(text: &str, what: &str) -> anyhow::Result<serde_json::Value> {
    let text = if text == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading stdin")?;
        input
    } else {
        text.to_owned()
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

fn entity(arg: Option<String>, what: &str) -> anyhow::Result<Option<EntityRef>> {
    arg.map(|text| match text.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Ok(EntityRef {
            kind: kind.to_owned(),
            id: id.to_owned(),
        }),
        _ => bail!("--{what} takes type:id, e.g. user:u_42; got {text:?}"),
    })
    .transpose()
}

fn time_arg(arg: Option<String>, what: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    arg.map(|text| {
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("--{what} takes an RFC 3339 time like 2026-11-26T12:00:00Z"))
    })
    .transpose()
}

fn execute(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run(&config, args),
        Command::Emit(args) => {
            ignored_handlers_flag(args.handlers.as_deref());
            if let Some(file) = &args.file {
                return emit_file(&config, file, &args);
            }
            let payload = json_arg(&args.payload, "the payload")?;
            // The handlers the hosts registered in the store: none is loaded here.
            let host = open(&config)?;
            let emitted = host.emit(NewSignal {
                tenant: args.tenant.clone().unwrap_or_default(),
                name: args.name.clone().unwrap_or_default(),
                payload,
                dedupe_key: args.dedupe_key,
                correlation_id: args.correlation_id,
                causation_id: args.causation_id,
                source: args.source.or_else(|| Some("cli".into())),
                actor: entity(args.actor, "actor")?,
                subject: entity(args.subject, "subject")?,
                ..NewSignal::default()
            })?;
            println!("{}", serde_json::to_string(&emitted)?);
            if emitted.status == EmitStatus::Created && emitted.deliveries == 0 {
                eprintln!(
                    "note: no handler registered in the store subscribes to {} (or the tenant \
                     has not installed its package): the signal is stored without deliveries. \
                     A running host registers its handlers; `sighost handlers` lists them.",
                    emitted.signal.name
                );
            }
            Ok(())
        }
        Command::Check { file } => check(&config, &file),
        Command::Handlers {
            remove,
            remove_host,
            json,
            handlers,
        } => {
            ignored_handlers_flag(handlers.as_deref());
            let store = || open(&config).map(|host| host.store().clone());
            let (removed, what) = match (remove, remove_host) {
                (Some(name), _) => (
                    store()?.unregister_handler(&name)?,
                    format!("handler {name:?}"),
                ),
                (None, Some(host)) => (
                    store()?.unregister_host(&host)?,
                    format!("the handlers of host {host:?}"),
                ),
                (None, None) => return list_handlers(&config, json),
            };
            if removed == 0 {
                bail!("no registration of {what} to forget");
            }
            println!("{what}: {removed} registration(s) forgotten");
            Ok(())
        }
        Command::Tenants(command) => tenants(&config, command),
        Command::Signals {
            tenant,
            name,
            limit,
            json,
        } => {
            let host = open(&config)?;
            let signals = host.store().signals(&SignalFilter {
                tenant,
                name,
                limit: Some(limit),
                ..SignalFilter::default()
            })?;
            output::print(
                json,
                &signals,
                &["id", "tenant", "name", "inserted", "payload"],
                |s| {
                    vec![
                        s.id.clone(),
                        s.tenant.clone(),
                        s.name.clone(),
                        output::time(s.inserted_at),
                        output::cut(&s.payload.to_string(), 60),
                    ]
                },
            );
            Ok(())
        }
        Command::Deliveries {
            id,
            tenant,
            state,
            handler,
            signal,
            limit,
            json,
        } => {
            let host = open(&config)?;
            let filter = DeliveryFilter {
                tenant,
                state: state.as_deref().map(DeliveryState::parse).transpose()?,
                handler,
                signal_id: signal,
                ids: id.into_iter().collect(),
                limit: Some(limit),
            };
            let deliveries = host.store().deliveries(&filter)?;
            output::print(
                json,
                &deliveries,
                &[
                    "id",
                    "tenant",
                    "handler",
                    "state",
                    "attempt",
                    "signal",
                    "last error",
                ],
                |d| {
                    vec![
                        d.id.to_string(),
                        d.tenant.clone(),
                        d.handler.clone(),
                        d.state.as_str().into(),
                        format!("{}/{}", d.attempt, d.max_attempts),
                        d.signal_id.clone(),
                        output::cut(d.last_error.as_deref().unwrap_or(""), 60),
                    ]
                },
            );
            if let Some(id) = id {
                let attempts = host.store().attempts(id)?;
                println!();
                output::print(
                    json,
                    &attempts,
                    &[
                        "attempt",
                        "outcome",
                        "duration",
                        "fuel",
                        "memory",
                        "directives",
                        "refused",
                        "output",
                        "digest",
                        "error",
                    ],
                    |a| {
                        let d = &a.details;
                        vec![
                            a.attempt.to_string(),
                            a.outcome.to_string(),
                            format!("{:.3} ms", a.duration_us as f64 / 1000.0),
                            a.fuel.map(|f| f.to_string()).unwrap_or_default(),
                            d.peak_memory_bytes
                                .map(|b| format!("{:.1} MiB", b as f64 / f64::from(1 << 20)))
                                .unwrap_or_default(),
                            a.directive_count.to_string(),
                            d.refused_directives.len().to_string(),
                            if d.output_truncated { "cut" } else { "whole" }.into(),
                            output::cut(&a.handler_digest, 12),
                            output::cut(a.error.as_deref().unwrap_or(""), 60),
                        ]
                    },
                );
                if !json {
                    for a in attempts
                        .iter()
                        .filter(|a| !a.details.refused_directives.is_empty())
                    {
                        println!("\nattempt {} refused directive requests:", a.attempt);
                        for why in &a.details.refused_directives {
                            println!("  {why}");
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Directives {
            tenant,
            state,
            name,
            limit,
            json,
        } => {
            let host = open(&config)?;
            let directives = host.store().directives(&DirectiveFilter {
                tenant,
                state: state.as_deref().map(DirectiveState::parse).transpose()?,
                name,
                limit: Some(limit),
                ..DirectiveFilter::default()
            })?;
            output::print(
                json,
                &directives,
                &["id", "tenant", "name", "state", "attempt", "key", "payload"],
                |d| {
                    vec![
                        d.id.clone(),
                        d.tenant.clone(),
                        d.name.clone(),
                        d.state.as_str().into(),
                        d.attempt.to_string(),
                        output::cut(&d.idempotency_key, 24),
                        output::cut(&d.payload.to_string(), 50),
                    ]
                },
            );
            Ok(())
        }
        Command::Replay(args) => {
            ignored_handlers_flag(args.handlers.as_deref());
            let host = open(&config)?;
            let filter = SignalFilter {
                tenant: args.tenant,
                ids: args.ids,
                name: args.name,
                since: time_arg(args.since, "since")?,
                until: time_arg(args.until, "until")?,
                limit: None,
            };
            let created = confirmed_bulk(args.yes, |confirmed| {
                host.replay(
                    &filter,
                    args.handler.as_deref(),
                    confirmed,
                    |done, total| {
                        eprint!("\rreplaying: {done}/{total} signals");
                        if done == total {
                            eprintln!();
                        }
                    },
                )
            })?;
            println!("{created} deliveries created");
            Ok(())
        }
        Command::Retry {
            ids,
            tenant,
            handler,
            yes,
        } => {
            let host = open(&config)?;
            let filter = DeliveryFilter {
                tenant,
                handler,
                state: Some(DeliveryState::Discarded),
                ids,
                ..DeliveryFilter::default()
            };
            let count = confirmed_bulk(yes, |confirmed| host.retry_deliveries(&filter, confirmed))?;
            println!("{count} deliveries will run again");
            Ok(())
        }
        Command::Cancel(CancelCommand::Deliveries {
            ids,
            tenant,
            handler,
            yes,
        }) => {
            let host = open(&config)?;
            let filter = DeliveryFilter {
                ids,
                tenant,
                handler,
                ..DeliveryFilter::default()
            };
            let count =
                confirmed_bulk(yes, |confirmed| host.cancel_deliveries(&filter, confirmed))?;
            println!("{count} deliveries canceled");
            Ok(())
        }
        Command::Cancel(CancelCommand::Directives {
            ids,
            tenant,
            name,
            yes,
        }) => {
            let host = open(&config)?;
            let filter = DirectiveFilter {
                ids,
                tenant,
                name,
                ..DirectiveFilter::default()
            };
            let count =
                confirmed_bulk(yes, |confirmed| host.cancel_directives(&filter, confirmed))?;
            println!("{count} directives canceled");
            Ok(())
        }
        Command::Prune { dry_run, vacuum } => prune(&config, dry_run, vacuum),
        Command::Status { json } => {
            let host = open(&config)?;
            let stats = host.store().stats()?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                println!("deliveries:");
                for (state, count) in &stats.deliveries {
                    println!("  {:<10} {count}", state.as_str());
                }
                println!("directives:");
                for (state, count) in &stats.directives {
                    println!("  {:<10} {count}", state.as_str());
                }
                println!(
                    "\nhandlers (lag: how long the oldest due delivery has waited; durations \
                     over the newest attempts):"
                );
                let now = chrono::Utc::now();
                output::print(
                    false,
                    &stats.handlers,
                    &["handler", "deliveries", "lag", "attempts", "mean", "max"],
                    |h| {
                        let states: Vec<String> = h
                            .deliveries
                            .iter()
                            .map(|(s, n)| format!("{}={n}", s.as_str()))
                            .collect();
                        vec![
                            h.handler.clone(),
                            states.join(" "),
                            format!("{:.1} s", h.lag(now).as_secs_f64()),
                            h.recent_attempts.to_string(),
                            format!("{:.2} ms", h.mean_duration_us as f64 / 1000.0),
                            format!("{:.2} ms", h.max_duration_us as f64 / 1000.0),
                        ]
                    },
                );
                println!("\ntenants (worker time over the newest attempts):");
                let tenants: std::collections::HashMap<String, sighost::store::Tenant> = host
                    .tenants()?
                    .into_iter()
                    .map(|t| (t.id.clone(), t))
                    .collect();
                let recent_us: u64 = stats.tenants.iter().map(|t| t.recent_duration_us).sum();
                output::print(
                    false,
                    &stats.tenants,
                    &[
                        "tenant",
                        "weight",
                        "limits",
                        "deliveries",
                        "attempts",
                        "worker time",
                    ],
                    |t| {
                        let states: Vec<String> = t
                            .deliveries
                            .iter()
                            .map(|(s, n)| format!("{}={n}", s.as_str()))
                            .collect();
                        let share = 100.0 * t.recent_duration_us as f64 / recent_us.max(1) as f64;
                        let known = tenants.get(&t.tenant);
                        vec![
                            t.tenant.clone(),
                            known.map_or("-".into(), |k| k.weight.to_string()),
                            known.map_or("-".into(), |k| output::limits(&k.limits)),
                            states.join(" "),
                            t.recent_attempts.to_string(),
                            format!("{share:.0}%"),
                        ]
                    },
                );
                println!("\nrecent failures:");
                output::print(
                    false,
                    &stats.recent_failures,
                    &["delivery", "attempt", "outcome", "finished", "error"],
                    |a| {
                        vec![
                            a.delivery_id.to_string(),
                            a.attempt.to_string(),
                            a.outcome.to_string(),
                            output::time(a.finished_at),
                            output::cut(a.error.as_deref().unwrap_or(""), 70),
                        ]
                    },
                );
            }
            Ok(())
        }
    }
}

fn check(config: &Config, file: &Path) -> anyhow::Result<()> {
    // The host's limits, so a module that passes here loads in `run`; and its
    // compiled-code cache, so checking a 12 MB JavaScript handler again, or
    // running it after the check, does not compile it again.
    let mut sandbox = config.host_config().sandbox;
    if let Some(cache) = &sandbox.cache_dir
        && let Err(e) = std::fs::create_dir_all(cache)
    {
        // A check must work where the data directory is read-only, as
        // `sighost check` in a build pipeline may be: it only compiles again.
        eprintln!(
            "note: no compiled-code cache ({}: {e}); compiling from scratch",
            cache.display()
        );
        sandbox.cache_dir = None;
    }
    let sandbox = sighost::Sandbox::new(sandbox)?;
    let handler = sandbox.load_file(file)?;
    println!("{}: ok", file.display());
    println!("  name:          {}", handler.name);
    println!("  digest:        {}", handler.digest);
    println!("  shape:         {}", handler.shape.describe());
    println!(
        "  subscriptions: {}",
        handler.manifest.subscriptions.join(", ")
    );
    println!(
        "  package:       {}",
        handler
            .manifest
            .package
            .as_deref()
            .unwrap_or("(none: every tenant)")
    );
    println!(
        "  directives:    {}",
        handler.manifest.directives.join(", ")
    );
    Ok(())
}

/// One line of `sighost handlers`: a handler as one host registered it.
#[derive(Debug, serde::Serialize)]
struct HandlerRow {
    name: String,
    host: String,
    digest: Option<String>,
    subscriptions: Vec<String>,
    package: Option<String>,
    error: Option<String>,
    registered_at: DateTime<Utc>,
}

/// Reads the registry the hosts keep in the store; loads no module.
fn list_handlers(config: &Config, json: bool) -> anyhow::Result<()> {
    let host = open(config)?;
    let rows: Vec<HandlerRow> = host
        .store()
        .registered_handlers()?
        .into_iter()
        .map(|r| HandlerRow {
            name: r.handler,
            host: r.host,
            digest: r.digest,
            subscriptions: r.subscriptions,
            package: r.package,
            error: r.load_error,
            registered_at: r.registered_at,
        })
        .collect();
    output::print(
        json,
        &rows,
        &[
            "name",
            "host",
            "digest",
            "subscriptions",
            "package",
            "error",
        ],
        |r| {
            vec![
                r.name.clone(),
                r.host.clone(),
                output::cut(r.digest.as_deref().unwrap_or("-"), 12),
                r.subscriptions.join(","),
                r.package.clone().unwrap_or_default(),
                // Some wasmtime errors span lines; a table row must not.
                r.error
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        },
    );
    Ok(())
}

/// Runs a bulk operator action: at once with `--yes`; otherwise the action
/// says what a filter without ids matches, and the operator is asked on a
/// terminal. Without a terminal (a script) it refuses: a script says `--yes`.
fn confirmed_bulk(
    yes: bool,
    act: impl Fn(bool) -> Result<u64, sighost::HostError>,
) -> anyhow::Result<u64> {
    use std::io::{BufRead, IsTerminal, Write};
    match act(yes) {
        Err(sighost::HostError::Unconfirmed { action, matched }) => {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "{action}: the filter names no ids and matches {matched}; \
                     pass --yes to act on all of them"
                );
            }
            eprint!("{action}: the filter names no ids and matches {matched}. Go ahead? [y/N] ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if matches!(answer.trim(), "y" | "Y" | "yes") {
                Ok(act(true)?)
            } else {
                bail!("{action}: nothing done");
            }
        }
        other => Ok(other?),
    }
}

fn tenants(config: &Config, command: TenantsCommand) -> anyhow::Result<()> {
    let host = open(config)?;
    let tenant = match command {
        TenantsCommand::Create { id, settings } => {
            host.create_tenant(&id, json_arg(&settings, "the settings")?)?
        }
        TenantsCommand::Settings { id, settings } => {
            host.set_tenant_settings(&id, json_arg(&settings, "the settings")?)?
        }
        TenantsCommand::Weight { id, weight } => host.set_tenant_weight(&id, weight)?,
        TenantsCommand::Limits {
            id,
            max_running,
            max_pending,
            max_emit_per_s,
        } => host.set_tenant_limits(
            &id,
            sighost::store::TenantLimits {
                max_running,
                max_pending,
                max_emit_per_s,
            },
        )?,
        TenantsCommand::Install { id, package } => host.install_package(&id, &package)?,
        TenantsCommand::Uninstall { id, package } => host.uninstall_package(&id, &package)?,
        TenantsCommand::List { json } => {
            let tenants = host.tenants()?;
            output::print(
                json,
                &tenants,
                &["id", "weight", "packages", "settings"],
                |t| {
                    vec![
                        t.id.clone(),
                        t.weight.to_string(),
                        t.packages.join(","),
                        output::cut(&t.settings.to_string(), 60),
                    ]
                },
            );
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string(&tenant)?);
    Ok(())
}

fn run(file: &Config, args: RunArgs) -> anyhow::Result<()> {
    let data_dir = &file.data_dir;
    let mut config = file.host_config();
    if let Some(threads) = args.workers {
        config.workers.threads = threads;
    }
    if let Some(ms) = args.lease_ms {
        config.workers.lease = Duration::from_millis(ms);
        config.runner.lease = Duration::from_millis(ms);
    }
    if args.fast_retries {
        config.workers.retry = RetryPolicy::fast(config.workers.retry.max_attempts);
        config.runner.retry = RetryPolicy::fast(config.runner.retry.max_attempts);
    }
    if args.lifecycle_signals {
        config.runner.lifecycle_signals = true;
    }
    config.executors = file.executors()?;
    if let Some(path) = &args.directive_log {
        let log =
            sighost::runner::executors::LogExecutor::new(&sighost::runner::executors::LogConfig {
                path: Some(path.clone()),
            })
            .map_err(anyhow::Error::msg)?;
        config.executors = config.executors.with_fallback(std::sync::Arc::new(log));
    }
    // Bound before anything starts, so a taken port stops start-up cleanly.
    let listener = bind_api(file, args.listen)?;
    let host = std::sync::Arc::new(open_host(file, config)?);
    let handlers = handlers_dir(file, args.handlers.as_deref());
    load_handlers(&host, handlers)?;
    let watcher = host.watch_handlers_dir(handlers, sighost::reload::SCAN_INTERVAL)?;
    let running = host.start()?;
    let handlers = host.registry().all().len();
    // Whatever became of the API, the workers stop gracefully.
    let served = serve_until_shutdown(&host, file, listener, || {
        tracing::info!(config = %file.origin(), data_dir = %data_dir.display(), handlers, "sighost is running");
    });
    tracing::info!("shutting down: finishing deliveries in flight");
    watcher.stop();
    running.shutdown();
    tracing::info!("stopped");
    served
}

/// Binds the HTTP API's address (`--listen`, else `[http]`), or `None` when
/// the API is off.
fn bind_api(
    config: &Config,
    listen: Option<String>,
) -> anyhow::Result<Option<std::net::TcpListener>> {
    let mut http = config.http.clone();
    if let Some(listen) = listen {
        http.enabled = true;
        http.listen = listen;
    }
    let Some(addr) = http.listen_addr() else {
        tracing::info!("HTTP API off");
        return Ok(None);
    };
    let addr = addr.map_err(|message| anyhow::anyhow!("{}: {message}", config.origin()))?;
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!(
            "cannot listen on {addr} for the HTTP API; choose another address with --listen \
             or [http] listen, or turn the API off with --listen \"\""
        )
    })?;
    // Tokio takes over a listener only in non-blocking mode.
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

/// Serves the HTTP API on `listener` (if any) until SIGINT or SIGTERM, then
/// lets the requests in progress finish and returns. `announce` runs once
/// the signals are caught: a SIGTERM sent as soon as the host says it is
/// running stops it gracefully, not by the signal's default action.
fn serve_until_shutdown(
    host: &std::sync::Arc<Sighost>,
    config: &Config,
    listener: Option<std::net::TcpListener>,
    announce: impl FnOnce(),
) -> anyhow::Result<()> {
    // Two threads are plenty: the API waits on the store through the
    // blocking pool, not on these.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sighost-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        announce();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = match listener {
            Some(listener) => {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let tokens = sighost::http::Tokens::from_config(&config.tokens);
                if tokens.tenant_count() == 0 {
                    tracing::warn!("no tenant tokens configured ([tokens.tenants] or SIGHOST_TENANT_TOKENS): tenant endpoints answer 401");
                }
                if !tokens.has_admin() {
                    tracing::warn!("no admin token configured ([tokens] admin or SIGHOST_ADMIN_TOKEN): operator endpoints answer 401");
                }
                tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
                let api = sighost::http::Api::new(host.clone(), tokens)
                    .with_limits(config.http.limits());
                Some(tokio::spawn(api.serve(listener, async {
                    let _ = stopped.await;
                })))
            }
            None => None,
        };
        shutdown.await;
        let _ = stop.send(());
        if let Some(server) = server {
            tracing::info!("shutting down: no new HTTP requests");
            server.await.context("the HTTP server panicked")??;
        }
        anyhow::Ok(())
    })
}

/// Catches SIGTERM and SIGINT from now on (`signal` installs its handler
/// when called, unlike `ctrl_c`, which waits to be polled); the future ends
/// at the first of them.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
