//! The directive runner (ARCHITECTURE.md §5): claims due directives, performs each
//! with the executor configured for its name, and records the result.
//!
//! An executor failure is retried with backoff until the attempts run out,
//! then the directive is `failed`; a succeeded directive is never claimed
//! again (claims take `requested` rows only). A runner that dies mid-directive
//! loses its lease and the directive runs again, which is why executors get
//! the idempotency key. With lifecycle signals on, each start, success and
//! final failure is emitted back as `directive.started|succeeded|failed`
//! (deduplicated), caused by the directive's signal, so that the
//! causation-depth limit ends handler → directive → signal loops.
//!
//! Claims share the runner between tenants like delivery claims share the
//! workers (`fair.rs`), charged by the executors' wall time: an executor
//! waits on I/O (a webhook, a command), and that wait is what one tenant's
//! slow endpoint takes from the others.

pub mod executor;
pub mod executors;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::emit::{EmitError, Emitter};
use crate::fair::{Claim, ClaimOrder, CostLedger};
use crate::health::Refused;
use crate::heartbeat::Held;
use crate::metrics::ExecutionMeasure;
use crate::retry::RetryPolicy;
use crate::store::{Directive, DirectiveDecision, NewSignal, Store};
use crate::threads::ThreadGroup;
use crate::wake::Wake;
pub use executor::{Executor, ExecutorError};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub threads: usize,
    /// Directives claimed in one query, per thread.
    pub batch_size: usize,
    /// How long a claim holds a directive without a heartbeat; the runner
    /// extends it every third of that while the executor runs (see
    /// `heartbeat.rs`), so it bounds how long a dead runner's directives
    /// wait to be rescued, not how long an executor may take.
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// Emit `directive.started|succeeded|failed` signals.
    pub lifecycle_signals: bool,
    /// Fair share between tenants (the default), or oldest first.
    pub claim_order: ClaimOrder,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            // One at a time: a directive claimed in a batch waits behind the
            // others' executors, and a batch of slow ones would outlive the
            // lease and be run twice at once.
            batch_size: 1,
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
            retry: RetryPolicy::default(),
            lifecycle_signals: false,
            claim_order: ClaimOrder::Fair,
        }
    }
}

/// The executor for each directive name, and the one for every other name.
#[derive(Default, Clone)]
pub struct Executors {
    by_name: HashMap<String, Arc<dyn Executor>>,
    fallback: Option<Arc<dyn Executor>>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executors")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Executors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, directive_name: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_name.insert(directive_name.into(), executor);
        self
    }

    /// The executor for names with none of their own.
    pub fn with_fallback(mut self, executor: Arc<dyn Executor>) -> Self {
        self.fallback = Some(executor);
        self
    }

    pub fn get(&self, directive_name: &str) -> Option<&Arc<dyn Executor>> {
        self.by_name.get(directive_name).or(self.fallback.as_ref())
    }
}

#[derive(Debug, Clone)]
pub struct RunnerDeps {
    pub store: Arc<dyn Store>,
    pub emitter: Arc<Emitter>,
    pub executors: Arc<Executors>,
    /// Rung when deliveries complete with new directives.
    pub wake: Arc<Wake>,
    /// Where failed result writes are counted (for `/readyz` and the log).
    pub health: Arc<crate::health::StoreHealth>,
    /// Where each execution is counted, for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub clock: fn() -> DateTime<Utc>,
}

/// The running directive runner of one process.
#[derive(Debug)]
pub struct Runner(ThreadGroup);

impl Runner {
    pub fn start(deps: RunnerDeps, config: RunnerConfig) -> std::io::Result<Self> {
        let name = format!("{}:runner", crate::worker::worker_name());
        let mut group = ThreadGroup::new("directive runner", deps.wake.clone());
        // Each runner thread has a name of its own, so each holds its own
        // leases; one heartbeat per thread keeps them alive.
        for i in 0..config.threads.max(1) {
            let (deps, config, stopping) = (deps.clone(), config.clone(), group.stopping());
            let name = format!("{name}{i}");
            let held: Arc<Held<String>> = Arc::default();
            group.spawn(&format!("sighost-runner-{i}"), {
                let (deps, config, stopping, name, held) = (
                    deps.clone(),
                    config.clone(),
                    stopping.clone(),
                    name.clone(),
                    held.clone(),
                );
                move || run_loop(&deps, &config, &name, &stopping, &held)
            })?;
            group.spawn(&format!("sighost-runner-beat-{i}"), move || {
                crate::heartbeat::beat(
                    "extending directive leases",
                    &held,
                    config.lease,
                    deps.clock,
                    &stopping,
                    &deps.health,
                    |keys, until| deps.store.extend_directive_leases(&name, keys, until),
                )
            })?;
        }
        Ok(Self(group))
    }

    /// Finishes the directives in hand, then stops.
    pub fn shutdown(self) {
        self.0.shutdown();
    }
}

fn run_loop(
    deps: &RunnerDeps,
    config: &RunnerConfig,
    name: &str,
    stopping: &AtomicBool,
    held: &Held<String>,
) {
    // What this thread's executors took, settled by its next claim.
    let costs = CostLedger::default();
    // Results the store refused: tried again between claims, so that one it
    // will never take holds back no other directive (see `health::Refused`).
    let mut refused: Refused<Unwritten> = Refused::default();
    const WHAT: &str = "recording a directive result";
    while !stopping.load(Ordering::SeqCst) {
        refused.retry(WHAT, &deps.health, |result| {
            record(deps, config, name, held, result)
        });
        let settled = costs.take();
        let claim = Claim {
            worker: name,
            limit: config.batch_size,
            lease: config.lease,
            order: config.claim_order,
            costs: &settled,
            handler_caps: &[],
        };
        let claimed = match deps.store.claim_directives(&claim, (deps.clock)()) {
            Ok(claimed) => claimed,
            Err(error) => {
                costs.put_back(settled);
                tracing::warn!(%error, "claiming directives failed; trying again");
                Vec::new()
            }
        };
        let full = claimed.len() == config.batch_size;
        let leased_until = (deps.clock)() + config.lease;
        for claimed in &claimed {
            let directive = &claimed.directive;
            held.insert(directive.id.clone(), directive.attempt, leased_until);
        }
        for claimed in claimed {
            let started = std::time::Instant::now();
            refused.add(run_one(deps, config, name, held, &claimed.directive));
            let directive = &claimed.directive;
            costs.record(
                &directive.tenant,
                true,
                started.elapsed(),
                claimed.charged_ns,
            );
        }
        if !full {
            let wait = refused.retry_at().map_or(config.poll_interval, |at| {
                at.saturating_duration_since(Instant::now())
                    .min(config.poll_interval)
            });
            deps.wake.wait(wait);
        }
    }
    // Stopping: what the store refused gets the shutdown grace, then is left
    // for the lease rescue (it runs again once its lease expires).
    while !refused.is_empty() {
        let given_up = refused.give_up_if_stopping(stopping);
        if !given_up.is_empty() {
            for result in &given_up {
                held.remove(&result.directive.id);
            }
            tracing::error!(
                directives = given_up.len(),
                "stopping with directive results the store would not take: they run again once \
                 their leases expire"
            );
            break;
        }
        if let Some(at) = refused.retry_at() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        refused.retry(WHAT, &deps.health, |result| {
            record(deps, config, name, held, result)
        });
    }
}

/// Runs one directive and writes its result; returns the result if the
/// store refused it.
fn run_one(
    deps: &RunnerDeps,
    config: &RunnerConfig,
    name: &str,
    held: &Held<String>,
    directive: &Directive,
) -> Option<Unwritten> {
    if config.lifecycle_signals {
        lifecycle(
            deps,
            directive,
            "started",
            json!({"attempt": directive.attempt}),
        );
    }
    let executor = deps.executors.get(&directive.name);
    let started = Instant::now();
    let result = match executor {
        Some(executor) => {
            std::panic::catch_unwind(AssertUnwindSafe(|| executor.execute(directive)))
                .unwrap_or_else(|_| Err(ExecutorError::Retryable("the executor panicked".into())))
        }
        None => Err(ExecutorError::Retryable(format!(
            "no executor is configured for directive {}",
            directive.name
        ))),
    };
    let took = started.elapsed();
    // The lease stays alive until the result is written, or given up at
    // shutdown: a directive whose result the store refuses is not run again
    // while this host runs.
    let now = (deps.clock)();
    let decision = match result {
        Ok(value) => DirectiveDecision::Succeeded(value),
        Err(ExecutorError::Permanent(error)) => DirectiveDecision::Failed(error),
        Err(ExecutorError::Retryable(error)) => {
            match config
                .retry
                .next_attempt_at(directive.attempt, config.retry.max_attempts, now)
            {
                Some(at) => DirectiveDecision::Retry { at, error },
                None => DirectiveDecision::Failed(format!(
                    "{error} (after {} attempts)",
                    directive.attempt
                )),
            }
        }
    };
    deps.metrics.execution(&ExecutionMeasure {
        name: &directive.name,
        tenant: &directive.tenant,
        executor: executor.map_or("none", |e| e.kind()),
        outcome: match decision {
            DirectiveDecision::Succeeded(_) => "succeeded",
            DirectiveDecision::Retry { .. } => "retried",
            DirectiveDecision::Failed(_) => "failed",
        },
        duration: took,
    });
    match &decision {
        DirectiveDecision::Succeeded(_) => {}
        DirectiveDecision::Retry { error, .. } | DirectiveDecision::Failed(error) => {
            tracing::warn!(
                tenant = %directive.tenant, directive = %directive.id, name = %directive.name,
                attempt = directive.attempt, %error, "directive attempt failed"
            )
        }
    }
    let result = Unwritten {
        directive: directive.clone(),
        decision,
        at: now,
    };
    match record(deps, config, name, held, &result) {
        Ok(()) => None,
        Err(error) => {
            deps.health
                .failed("recording a directive result", &error.to_string());
            Some(result)
        }
    }
}

/// A directive's result, decided and not yet written.
#[derive(Debug)]
struct Unwritten {
    directive: Directive,
    decision: DirectiveDecision,
    /// When it was decided.
    at: DateTime<Utc>,
}

/// Writes a result, fenced by the attempt, lets its lease go, then emits its
/// lifecycle signal.
fn record(
    deps: &RunnerDeps,
    config: &RunnerConfig,
    name: &str,
    held: &Held<String>,
    result: &Unwritten,
) -> crate::store::StoreResult<()> {
    let Unwritten {
        directive,
        decision,
        at,
    } = result;
    let written =
        deps.store
            .finish_directive(&directive.id, directive.attempt, name, decision, *at)?;
    held.remove(&directive.id);
    deps.health.recovered();
    if !written {
        tracing::warn!(directive = %directive.id, "lease lost before the result was recorded");
        return Ok(());
    }
    if config.lifecycle_signals {
        match decision {
            DirectiveDecision::Succeeded(result) => {
                lifecycle(deps, directive, "succeeded", json!({"result": result}))
            }
            DirectiveDecision::Failed(error) => {
                lifecycle(deps, directive, "failed", json!({"error": error}))
            }
            DirectiveDecision::Retry { .. } => {}
        }
    }
    Ok(())
}

/// Emits `directive.<event>` for `directive`, caused by its signal.
fn lifecycle(deps: &RunnerDeps, directive: &Directive, event: &str, extra: serde_json::Value) {
    let mut payload = json!({
        "directive_id": directive.id,
        "name": directive.name,
        "idempotency_key": directive.idempotency_key,
    });
    if let (Some(payload), Some(extra)) = (payload.as_object_mut(), extra.as_object()) {
        payload.extend(extra.clone());
    }
    // `started` happens once per attempt; the others once per directive.
    let dedupe_key = match event {
        "started" => format!("directive.started:{}:{}", directive.id, directive.attempt),
        _ => format!("directive.{event}:{}", directive.id),
    };
    let signal = NewSignal {
        tenant: directive.tenant.clone(),
        name: format!("directive.{event}"),
        payload,
        dedupe_key: Some(dedupe_key),
        causation_id: Some(directive.signal_id.clone()),
        source: Some("sighost.runner".into()),
        ..NewSignal::default()
    };
    match deps.emitter.emit(signal, (deps.clock)()) {
        Ok(_) => {}
        Err(error @ EmitError::DepthExceeded { .. }) => {
            tracing::warn!(directive = %directive.id, %error, "lifecycle signal not emitted");
        }
        Err(error) => {
            tracing::error!(directive = %directive.id, %error, "emitting a lifecycle signal failed")
        }
    }
}
