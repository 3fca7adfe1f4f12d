//! The `sighost` command: run the host, emit signals, inspect and operate the
//! queue. Every subcommand works on the store under `--data-dir`.

mod output;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use sighost::retry::RetryPolicy;
use sighost::signal::EntityRef;
use sighost::store::{
    DeliveryFilter, DeliveryState, DirectiveFilter, DirectiveState, NewSignal, SignalFilter,
};
use sighost::{HostConfig, Sighost};

#[derive(Parser, Debug)]
#[command(
    name = "sighost",
    version,
    about = "Host for sandboxed, multi-tenant signal handlers"
)]
struct Cli {
    /// Where the database lives.
    #[arg(
        long,
        global = true,
        env = "SIGHOST_DATA_DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
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
        /// Delivery ids; all discarded ones matching the filters if none.
        ids: Vec<i64>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        handler: Option<String>,
    },
    /// Cancel deliveries or directives that have not run yet.
    #[command(subcommand)]
    Cancel(CancelCommand),
    /// Queue depth by state.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The drop-in directory of handler modules.
    #[arg(long, default_value = "./handlers")]
    handlers: PathBuf,
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
    /// Append executed directives to this JSON-lines file instead of stdout.
    #[arg(long)]
    directive_log: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct EmitArgs {
    /// Signal name, e.g. forum.thread.created.
    name: String,
    /// The payload: a JSON object, or `-` to read it from stdin.
    #[arg(default_value = "{}")]
    payload: String,
    #[arg(long)]
    tenant: String,
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
    /// The handlers directory, to know which handlers subscribe.
    #[arg(long, default_value = "./handlers")]
    handlers: PathBuf,
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
    #[arg(long, default_value = "./handlers")]
    handlers: PathBuf,
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
    Deliveries {
        ids: Vec<i64>,
        #[arg(long)]
        tenant: Option<String>,
    },
    Directives {
        ids: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    if let Err(error) = execute(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn open(data_dir: &Path) -> anyhow::Result<Sighost> {
    Sighost::open(HostConfig::new(data_dir))
        .with_context(|| format!("opening the store in {}", data_dir.display()))
}

/// A host with the handlers of `dir` loaded; load errors are reported, not fatal.
fn open_with_handlers(data_dir: &Path, dir: &Path) -> anyhow::Result<Sighost> {
    let host = open(data_dir)?;
    load_handlers(&host, dir)?;
    Ok(host)
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

fn execute(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir;
    match cli.command {
        Command::Run(args) => run(&data_dir, args),
        Command::Emit(args) => {
            let payload = json_arg(&args.payload, "the payload")?;
            let host = open_with_handlers(&data_dir, &args.handlers)?;
            let emitted = host.emit(NewSignal {
                tenant: args.tenant,
                name: args.name,
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
            Ok(())
        }
        Command::Check { file } => check(&file),
        Command::Tenants(command) => tenants(&data_dir, command),
        Command::Signals {
            tenant,
            name,
            limit,
            json,
        } => {
            let host = open(&data_dir)?;
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
            let host = open(&data_dir)?;
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
                        "directives",
                        "digest",
                        "error",
                    ],
                    |a| {
                        vec![
                            a.attempt.to_string(),
                            a.outcome.clone(),
                            format!("{:.3} ms", a.duration_us as f64 / 1000.0),
                            a.fuel.map(|f| f.to_string()).unwrap_or_default(),
                            a.directive_count.to_string(),
                            output::cut(&a.handler_digest, 12),
                            output::cut(a.error.as_deref().unwrap_or(""), 60),
                        ]
                    },
                );
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
            let host = open(&data_dir)?;
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
            let host = open_with_handlers(&data_dir, &args.handlers)?;
            let filter = SignalFilter {
                tenant: args.tenant,
                ids: args.ids,
                name: args.name,
                since: time_arg(args.since, "since")?,
                until: time_arg(args.until, "until")?,
                limit: None,
            };
            let created = host.replay(&filter, args.handler.as_deref(), |done, total| {
                eprint!("\rreplaying: {done}/{total} signals");
                if done == total {
                    eprintln!();
                }
            })?;
            println!("{created} deliveries created");
            Ok(())
        }
        Command::Retry {
            ids,
            tenant,
            handler,
        } => {
            let host = open(&data_dir)?;
            let filter = DeliveryFilter {
                tenant,
                handler,
                state: Some(DeliveryState::Discarded),
                ids,
                ..DeliveryFilter::default()
            };
            let count = host.store().retry_deliveries(&filter, Utc::now())?;
            println!("{count} deliveries will run again");
            Ok(())
        }
        Command::Cancel(CancelCommand::Deliveries { ids, tenant }) => {
            let host = open(&data_dir)?;
            let filter = DeliveryFilter {
                ids,
                tenant,
                ..DeliveryFilter::default()
            };
            println!(
                "{} deliveries canceled",
                host.store().cancel_deliveries(&filter, Utc::now())?
            );
            Ok(())
        }
        Command::Cancel(CancelCommand::Directives { ids, tenant }) => {
            let host = open(&data_dir)?;
            let filter = DirectiveFilter {
                ids,
                tenant,
                ..DirectiveFilter::default()
            };
            println!(
                "{} directives canceled",
                host.store().cancel_directives(&filter, Utc::now())?
            );
            Ok(())
        }
        Command::Status { json } => {
            let host = open(&data_dir)?;
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
            }
            Ok(())
        }
    }
}

fn check(file: &Path) -> anyhow::Result<()> {
    let sandbox = sighost::Sandbox::new(sighost::SandboxConfig::default())?;
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

fn tenants(data_dir: &Path, command: TenantsCommand) -> anyhow::Result<()> {
    let host = open(data_dir)?;
    let store = host.store();
    let tenant = match command {
        TenantsCommand::Create { id, settings } => {
            store.create_tenant(&id, json_arg(&settings, "the settings")?, Utc::now())?
        }
        TenantsCommand::Settings { id, settings } => {
            store.set_settings(&id, json_arg(&settings, "the settings")?)?
        }
        TenantsCommand::Install { id, package } => store.install_package(&id, &package)?,
        TenantsCommand::Uninstall { id, package } => store.uninstall_package(&id, &package)?,
        TenantsCommand::List { json } => {
            let tenants = store.tenants()?;
            output::print(json, &tenants, &["id", "packages", "settings"], |t| {
                vec![
                    t.id.clone(),
                    t.packages.join(","),
                    output::cut(&t.settings.to_string(), 60),
                ]
            });
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string(&tenant)?);
    Ok(())
}

fn run(data_dir: &Path, args: RunArgs) -> anyhow::Result<()> {
    let mut config = HostConfig::new(data_dir);
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
    config.runner.lifecycle_signals = args.lifecycle_signals;
    if let Some(path) = &args.directive_log {
        let log =
            sighost::runner::executors::LogExecutor::new(&sighost::runner::executors::LogConfig {
                path: Some(path.clone()),
            })
            .map_err(anyhow::Error::msg)?;
        config.executors =
            sighost::runner::Executors::new().with_fallback(std::sync::Arc::new(log));
    }
    let host = Sighost::open(config)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    load_handlers(&host, &args.handlers)?;
    let running = host.start()?;
    tracing::info!(data_dir = %data_dir.display(), handlers = host.registry().all().len(), "sighost is running");
    wait_for_shutdown_signal()?;
    tracing::info!("shutting down: finishing deliveries in flight");
    running.shutdown();
    tracing::info!("stopped");
    Ok(())
}

fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    })?;
    Ok(())
}
