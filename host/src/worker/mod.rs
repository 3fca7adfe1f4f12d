//! Delivery workers: claim due deliveries in batches, run each in the sandbox,
//! and record the results in batches (ARCHITECTURE.md §4).
//!
//! Three stages share the work, so that neither the database nor the
//! sandbox waits on the other:
//!
//! ```text
//! fetcher ──claimed deliveries──► dispatcher ──► invocations ──results──► completer
//!    ▲  claims up to `max_in_flight`   │ slots.rs    (tokio tasks)           │ one transaction
//!    └──────── wake (emit, completions) ◄┴──────────────────────────────────┘ per batch
//! ```
//!
//! Invocations are futures on a tokio runtime of `threads` threads (see
//! `sandbox` for why). A guest waiting in a host call is a suspended future
//! and holds no thread, so the others keep running; it does hold one of the
//! `threads + max_waiting` invocation slots, which the dispatcher shares
//! fairly between tenants (`slots.rs`). A delivery waiting for a slot has not
//! started and is charged no attempt.
//!
//! Retries are decided here ([`decide`]): ok completes the delivery with its
//! directives, a permanent error discards it, anything else is retried with
//! backoff until the attempts run out. A worker that dies holds its
//! deliveries only until their lease expires; the next claim rescues them.

mod gate;
mod slots;
mod turns;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use tokio::task::JoinSet;

use crate::fair::{Claim, ClaimOrder, CostLedger};
use crate::health::Refused;
use crate::heartbeat::Held;
use crate::metrics::{AttemptMeasure, Metrics};
use crate::registry::HandlerRegistry;
use crate::retry::RetryPolicy;
use crate::sandbox::{DeliveryContext, Invocation, Outcome, Sandbox};
use crate::store::{
    AttemptDetails, AttemptOutcome, ClaimedDelivery, Decision, DeliveryResult, FinishOutcome,
    Store, StoreResult,
};
use crate::threads::ThreadGroup;
use crate::wake::Wake;
use gate::Gate;
use slots::Slots;
use turns::Turns;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Threads that run handlers; the number of cores by default.
    pub threads: usize,
    /// Invocations that may be in flight beyond `threads`: guests suspended
    /// in a host call (waiting on a timer, say) hold one of these slots and
    /// no thread. Past `threads + max_waiting`, claimed deliveries wait in
    /// this process, uncharged. Bounded by the sandbox's instance pool.
    pub max_waiting: usize,
    /// Deliveries claimed in one query.
    pub batch_size: usize,
    /// Deliveries claimed but not yet finished, at most.
    pub max_in_flight: usize,
    /// How long a claim holds a delivery without a heartbeat. The process
    /// extends it every third of that while the delivery waits in its queue
    /// or runs (see `heartbeat.rs`), so it bounds how long the work of a
    /// process that died waits to be rescued.
    pub lease: Duration,
    /// How often to look for due deliveries when nothing rings the bell
    /// (retries coming due, signals emitted by other processes).
    pub poll_interval: Duration,
    /// How long a handler stays away when it is not loaded here.
    pub snooze: Duration,
    pub retry: RetryPolicy,
    /// Fair share between tenants (the default), or oldest first.
    pub claim_order: ClaimOrder,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_waiting: 32,
            batch_size: 256,
            max_in_flight: 1024,
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
            snooze: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            claim_order: ClaimOrder::Fair,
        }
    }
}

/// What the workers need from the host.
#[derive(Debug, Clone)]
pub struct WorkerDeps {
    pub store: Arc<dyn Store>,
    pub sandbox: Arc<Sandbox>,
    pub registry: Arc<HandlerRegistry>,
    pub wake: Arc<Wake>,
    /// Rung when completed deliveries wrote directives, for the runner.
    pub directive_wake: Arc<Wake>,
    /// Where failed result writes are counted (for `/readyz` and the log).
    pub health: Arc<crate::health::StoreHealth>,
    /// Where each attempt is counted, for `/metrics`.
    pub metrics: Arc<Metrics>,
    pub clock: fn() -> DateTime<Utc>,
}

/// The running workers of one process.
#[derive(Debug)]
pub struct Workers(ThreadGroup);

/// A unique name for this process's workers, recorded on claims and attempts.
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &nonce[nonce.len() - 6..]
    )
}

impl Workers {
    pub fn start(deps: WorkerDeps, config: WorkerConfig) -> std::io::Result<Self> {
        let name = worker_name();
        let mut group = ThreadGroup::new("delivery workers", deps.wake.clone());
        let stopping = group.stopping();
        let room = Arc::new(Room::default());
        let held: Arc<Held<i64>> = Arc::default();
        let costs: Arc<CostLedger> = Arc::default();
        let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel::<Job>(config.max_in_flight.max(1));
        let (results_tx, results_rx) = unbounded::<DeliveryResult>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("sighost-invoke")
            .enable_time()
            .build()?;

        group.spawn("sighost-fetch", {
            let (deps, config, name, stopping) =
                (deps.clone(), config.clone(), name.clone(), stopping.clone());
            let (room, held, costs) = (room.clone(), held.clone(), costs.clone());
            move || {
                let fetcher = Fetcher {
                    deps: &deps,
                    config: &config,
                    name: &name,
                    room: &room,
                    held: &held,
                    costs: &costs,
                };
                fetcher.run(&stopping, jobs_tx)
            }
        })?;
        group.spawn("sighost-heartbeat", {
            let (deps, config, name, stopping, held) = (
                deps.clone(),
                config.clone(),
                name.clone(),
                stopping.clone(),
                held.clone(),
            );
            move || {
                crate::heartbeat::beat(
                    "extending delivery leases",
                    &held,
                    config.lease,
                    deps.clock,
                    &stopping,
                    &deps.health,
                    |keys, until| deps.store.extend_delivery_leases(&name, keys, until),
                )
            }
        })?;
        group.spawn("sighost-dispatch", {
            let slots = invocation_slots(&deps, &config);
            let invoker = Arc::new(Invoker {
                deps: deps.clone(),
                gate: Gate::new(config.threads),
                config: config.clone(),
                name,
                held,
                costs,
            });
            move || {
                runtime.block_on(dispatch(invoker, slots, &stopping, jobs_rx, results_tx));
                // Invocations cut off at their deadline may leave timers
                // behind; they hold nothing of the store's.
                runtime.shutdown_background();
            }
        })?;
        let stopping = group.stopping();
        group.spawn("sighost-complete", move || {
            complete(&deps, &config, &stopping, &room, results_rx)
        })?;
        Ok(Self(group))
    }

    /// Stops claiming, lets running handlers finish, puts claimed deliveries
    /// that have not started back without counting an attempt, records every
    /// result, and returns when all threads are done.
    pub fn shutdown(self) {
        self.0.shutdown();
    }
}

/// What the fetcher claims with.
struct Fetcher<'a> {
    deps: &'a WorkerDeps,
    config: &'a WorkerConfig,
    name: &'a str,
    room: &'a Room,
    held: &'a Held<i64>,
    /// What the invocations measured, settled by the next claim.
    costs: &'a CostLedger,
}

impl Fetcher<'_> {
    fn run(&self, stopping: &AtomicBool, jobs: tokio::sync::mpsc::Sender<Job>) {
        let Self {
            deps,
            config,
            room,
            held,
            ..
        } = self;
        while !stopping.load(Ordering::SeqCst) {
            let free = config
                .max_in_flight
                .saturating_sub(room.in_flight.load(Ordering::SeqCst));
            let want = free.min(config.batch_size);
            if want < config.batch_size {
                // Out of room: ask the completer to ring when it frees some.
                room.wanted.store(true, Ordering::SeqCst);
            }
            let mut claimed = 0;
            if want > 0 {
                let now = (deps.clock)();
                let costs = self.costs.take();
                let handler_caps = deps.registry.running_caps();
                let claim = Claim {
                    worker: self.name,
                    limit: want,
                    lease: config.lease,
                    order: config.claim_order,
                    costs: &costs,
                    handler_caps: &handler_caps,
                };
                match deps.store.claim_deliveries(&claim, now) {
                    Ok(batch) => {
                        claimed = batch.len();
                        room.in_flight.fetch_add(claimed, Ordering::SeqCst);
                        let leased_until = now + config.lease;
                        for claimed in batch {
                            let id = claimed.delivery.id;
                            held.insert(id, claimed.delivery.attempt, leased_until);
                            if jobs.blocking_send(Job { claimed }).is_err() {
                                // The dispatcher is gone: nothing will run
                                // it, so its lease is left to run out.
                                held.remove(&id);
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        self.costs.put_back(costs);
                        tracing::warn!(%error, "claiming deliveries failed; trying again")
                    }
                }
            }
            // A full batch means more may be due: claim again at once.
            if claimed < want || want == 0 {
                deps.wake.wait(config.poll_interval);
            }
        }
    }
}

/// How many invocations may be in flight at once: running ones and waiting
/// ones, within what the sandbox's instance pool holds.
fn invocation_slots(deps: &WorkerDeps, config: &WorkerConfig) -> usize {
    let wanted = config.threads.max(1) + config.max_waiting;
    let pool = deps.sandbox.config().max_concurrent_instances as usize;
    if wanted > pool {
        tracing::warn!(
            wanted,
            pool,
            "workers.threads + workers.max_waiting is above the sandbox's instance pool; \
             using the pool's size"
        );
    }
    wanted.min(pool).max(1)
}

/// What every invocation task needs, shared.
struct Invoker {
    deps: WorkerDeps,
    /// Hands the worker threads to invocations, fairly by tenant.
    gate: Arc<Gate>,
    config: WorkerConfig,
    /// This process's worker name, recorded on claims and attempts.
    name: String,
    /// The deliveries this process holds, whose leases the heartbeat extends.
    held: Arc<Held<i64>>,
    /// What the invocations measured, for the fetcher's next claim.
    costs: Arc<CostLedger>,
}

impl Invoker {
    /// Hands a result to the completer; the delivery's run is over, so the
    /// heartbeat stops keeping its lease alive.
    fn finished(&self, result: DeliveryResult, results: &Sender<DeliveryResult>) {
        self.held.remove(&result.delivery_id);
        let _ = results.send(result);
    }

    /// Puts a claimed delivery back unrun, refunding what its claim charged.
    fn release(&self, claimed: &ClaimedDelivery, at: DateTime<Utc>) -> DeliveryResult {
        self.costs.record(
            &claimed.delivery.tenant,
            false,
            Duration::ZERO,
            claimed.charged_ns,
        );
        release(claimed, &self.name, at)
    }
}

/// Hands claimed deliveries to invocation tasks as slots free up, fairly by
/// tenant, and passes their results on. Ends when the fetcher is gone and
/// every job is done or put back.
async fn dispatch(
    invoker: Arc<Invoker>,
    capacity: usize,
    stopping: &AtomicBool,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    results: Sender<DeliveryResult>,
) {
    let mut slots: Slots<Job> = Slots::new(capacity);
    let mut running: JoinSet<DeliveryResult> = JoinSet::new();
    // What a task's result needs if the task panics, and whose slot it holds.
    let mut started: HashMap<tokio::task::Id, (String, ClaimedKey)> = HashMap::new();
    let mut fetcher_gone = false;
    loop {
        if stopping.load(Ordering::SeqCst) {
            let now = (invoker.deps.clock)();
            for job in slots.drain() {
                invoker.finished(invoker.release(&job.claimed, now), &results);
            }
        }
        while let Some((tenant, job)) = slots.next() {
            let key = ClaimedKey::of(&job.claimed);
            let task = running.spawn({
                let invoker = invoker.clone();
                async move { run(&invoker, job).await }
            });
            started.insert(task.id(), (tenant, key));
        }
        if fetcher_gone && slots.is_idle() {
            return;
        }
        tokio::select! {
            job = jobs.recv(), if !fetcher_gone => match job {
                Some(job) => {
                    let tenant = job.claimed.signal.tenant.clone();
                    slots.push(&tenant, job);
                }
                None => fetcher_gone = true,
            },
            Some(done) = running.join_next_with_id() => {
                let (id, result) = match done {
                    Ok((id, result)) => (id, Ok(result)),
                    Err(error) => (error.id(), Err(error)),
                };
                let Some((tenant, key)) = started.remove(&id) else { continue };
                slots.release(&tenant);
                let result = result.unwrap_or_else(|_| key.host_panicked(&invoker, &tenant));
                invoker.finished(result, &results);
            }
        }
    }
}

/// What identifies a claimed delivery's attempt, kept apart from the job.
struct ClaimedKey {
    delivery_id: i64,
    handler: String,
    attempt: u32,
    max_attempts: u32,
    charged_ns: i64,
}

impl ClaimedKey {
    fn of(claimed: &ClaimedDelivery) -> Self {
        Self {
            delivery_id: claimed.delivery.id,
            handler: claimed.delivery.handler.clone(),
            attempt: claimed.delivery.attempt,
            max_attempts: claimed.delivery.max_attempts,
            charged_ns: claimed.charged_ns,
        }
    }

    /// The result of an attempt whose task panicked: a host fault, retried
    /// like one. What it cost is unknown; its charge stands.
    fn host_panicked(&self, invoker: &Invoker, tenant: &str) -> DeliveryResult {
        invoker.costs.record(
            tenant,
            true,
            Duration::from_nanos(self.charged_ns.max(0) as u64),
            self.charged_ns,
        );
        let now = (invoker.deps.clock)();
        let outcome = Outcome::HostError("the host panicked while running the handler".into());
        DeliveryResult {
            delivery_id: self.delivery_id,
            handler: self.handler.clone(),
            tenant: tenant.to_owned(),
            attempt: self.attempt,
            worker: invoker.name.clone(),
            error: Some(outcome.describe()),
            outcome: attempt_outcome(&outcome),
            decision: decide(
                &invoker.config.retry,
                self.attempt,
                self.max_attempts,
                outcome,
                Vec::new(),
                now,
            ),
            handler_digest: String::new(),
            started_at: now,
            duration: Duration::ZERO,
            fuel: None,
            directive_count: 0,
            output: String::new(),
            details: AttemptDetails::default(),
        }
    }
}

/// How much the fetcher may claim: deliveries claimed and not yet recorded,
/// and whether it waits for the completer to free some.
#[derive(Debug, Default)]
struct Room {
    in_flight: AtomicUsize,
    wanted: AtomicBool,
}

/// A claimed delivery waiting in this process's queue; when its lease ends
/// is in `Held`, which the heartbeat keeps up to date.
struct Job {
    claimed: ClaimedDelivery,
}

/// Time kept in hand, beyond the handler's timeout, to record a result
/// before the lease ends.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// Puts a claimed delivery back untouched (shutdown, or handler not loaded).
fn release(claimed: &ClaimedDelivery, worker: &str, at: DateTime<Utc>) -> DeliveryResult {
    DeliveryResult {
        delivery_id: claimed.delivery.id,
        handler: claimed.delivery.handler.clone(),
        tenant: claimed.delivery.tenant.clone(),
        attempt: claimed.delivery.attempt,
        worker: worker.to_owned(),
        decision: Decision::Snooze { at },
        handler_digest: String::new(),
        outcome: AttemptOutcome::Released,
        error: None,
        started_at: at,
        duration: Duration::ZERO,
        fuel: None,
        directive_count: 0,
        output: String::new(),
        details: AttemptDetails::default(),
    }
}

async fn run(invoker: &Invoker, job: Job) -> DeliveryResult {
    let Invoker {
        deps,
        config,
        name: worker,
        held,
        ..
    } = invoker;
    let Job { claimed } = job;
    let delivery = &claimed.delivery;
    let Some(handler) = deps.registry.get(&delivery.handler) else {
        // Kept, not lost: it runs when a handler of that name is back.
        tracing::debug!(handler = %delivery.handler, delivery = delivery.id, "handler not loaded; snoozing");
        return invoker.release(&claimed, (deps.clock)() + config.snooze);
    };
    // A delivery that waited in the queue too long to finish within its
    // lease goes back untouched: run now, it could be rescued and run by
    // another worker at the same time, and charged an attempt it never had.
    // (A lease configured shorter than a run cannot be honoured; then at
    // least half of it must be left.)
    let now = (deps.clock)();
    let needed = (handler.limits.timeout + LEASE_MARGIN).min(config.lease / 2);
    // Held from the claim until the result: the heartbeat may have extended
    // the lease since.
    let leased_until = held.leased_until(&delivery.id).unwrap_or(now);
    if now + needed > leased_until {
        tracing::debug!(
            delivery = delivery.id,
            "lease too short to run; putting it back"
        );
        return invoker.release(&claimed, now);
    }
    let context = DeliveryContext {
        attempt: delivery.attempt,
        max_attempts: delivery.max_attempts,
        settings: claimed.settings.clone(),
        packages: claimed.packages.clone(),
    };
    let started_at = (deps.clock)();
    let tenant = &delivery.tenant;
    let (invocation, busy): (Invocation, Duration) = invoker
        .gate
        .run(
            tenant,
            claimed.weight,
            deps.sandbox.invoke(&handler, &claimed.signal, &context),
        )
        .await;
    invoker.costs.record(tenant, true, busy, claimed.charged_ns);
    let now = (deps.clock)();
    let error = (!invocation.outcome.is_ok()).then(|| invocation.outcome.describe());
    if let Some(error) = &error {
        tracing::info!(
            tenant = %claimed.signal.tenant, signal = %claimed.signal.id, handler = %handler.name,
            attempt = delivery.attempt, %error, "delivery attempt failed"
        );
    }
    let outcome = attempt_outcome(&invocation.outcome);
    let decision = decide(
        &config.retry,
        delivery.attempt,
        delivery.max_attempts,
        invocation.outcome,
        invocation.directives,
        now,
    );
    deps.metrics.attempt(&AttemptMeasure {
        handler: &handler.name,
        tenant,
        outcome,
        duration: invocation.report.wall_time,
        fuel: invocation.report.fuel_consumed,
        peak_memory_bytes: invocation.report.peak_memory_bytes,
    });
    DeliveryResult {
        delivery_id: delivery.id,
        handler: handler.name.clone(),
        tenant: tenant.clone(),
        attempt: delivery.attempt,
        worker: worker.to_owned(),
        decision,
        handler_digest: handler.digest.clone(),
        outcome,
        error,
        started_at,
        duration: invocation.report.wall_time,
        fuel: invocation.report.fuel_consumed,
        directive_count: invocation.report.directive_count,
        output: invocation.report.output,
        details: AttemptDetails {
            output_truncated: invocation.report.output_truncated,
            peak_memory_bytes: Some(invocation.report.peak_memory_bytes),
            refused_directives: invocation.report.refusals,
        },
    }
}

/// How an invocation's outcome is recorded on its attempt.
pub fn attempt_outcome(outcome: &Outcome) -> AttemptOutcome {
    match outcome {
        Outcome::Ok => AttemptOutcome::Ok,
        Outcome::Transient(_) => AttemptOutcome::Transient,
        Outcome::Permanent(_) => AttemptOutcome::Permanent,
        Outcome::Trap(_) => AttemptOutcome::Trap,
        Outcome::Timeout => AttemptOutcome::Timeout,
        Outcome::MemoryExceeded => AttemptOutcome::MemoryExceeded,
        Outcome::FuelExhausted => AttemptOutcome::FuelExhausted,
        Outcome::HostError(_) => AttemptOutcome::HostError,
    }
}

/// What becomes of a delivery after an attempt with this outcome.
pub fn decide(
    retry: &RetryPolicy,
    attempt: u32,
    max_attempts: u32,
    outcome: Outcome,
    directives: Vec<crate::sandbox::RequestedDirective>,
    now: DateTime<Utc>,
) -> Decision {
    match outcome {
        Outcome::Ok => Decision::Complete(directives),
        Outcome::Permanent(_) => Decision::Discard,
        _ => match retry.next_attempt_at(attempt, max_attempts, now) {
            Some(at) => Decision::Retry { at },
            None => Decision::Discard,
        },
    }
}

/// How long the completer waits to fill a batch of results.
const COMPLETION_LINGER: Duration = Duration::from_millis(1);

fn complete(
    deps: &WorkerDeps,
    config: &WorkerConfig,
    stopping: &AtomicBool,
    room: &Room,
    results: Receiver<DeliveryResult>,
) {
    // Results waiting to be written, per tenant: a batch takes them in
    // turns, so a tenant with a few results waits for one write, not behind
    // a busy tenant's hundreds (ARCHITECTURE.md §4).
    let mut unwritten: Turns<DeliveryResult> = Turns::default();
    // Results the store refused one by one: tried again beside new batches,
    // never ahead of them (see `health::Refused`).
    let mut refused: Refused<DeliveryResult> = Refused::default();
    loop {
        if unwritten.is_empty() {
            let first = match refused.retry_at() {
                None => results.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => results.recv_deadline(at),
            };
            match first {
                Ok(result) => {
                    unwritten.push_by(result, |r| &r.tenant);
                    // Linger a moment for more results: one commit per batch
                    // is the store's biggest cost, and a millisecond is small
                    // beside a delivery.
                    let linger = Instant::now() + COMPLETION_LINGER;
                    while unwritten.len() < config.batch_size {
                        match results.recv_deadline(linger) {
                            Ok(result) => unwritten.push_by(result, |r| &r.tenant),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {} // time to try the refused again
                Err(RecvTimeoutError::Disconnected) => {
                    // Every invoker is gone: the host is stopping.
                    if refused.is_empty() {
                        return; // everything is recorded
                    }
                    if let Some(at) = refused.retry_at() {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                }
            }
        }
        // Everything already waiting takes part, so the batch is fair.
        while let Ok(result) = results.try_recv() {
            unwritten.push_by(result, |r| &r.tenant);
        }
        let batch: Vec<DeliveryResult> =
            std::iter::from_fn(|| unwritten.pop(|_| true).map(|(_, result)| result))
                .take(config.batch_size)
                .collect();
        let (mut outcomes, not_taken) = record(deps, &batch);
        let mut done = batch.len() - not_taken.len();
        refused.add(not_taken);
        done += refused.retry("recording delivery results", &deps.health, |result| {
            let written = finish(deps, std::slice::from_ref(result))?;
            outcomes.extend(written);
            Ok(())
        });
        // Past its lease a result is the rescue's: the delivery runs again,
        // and its next result takes this one's place (`health::Refused`).
        let expired = refused.expire(config.lease);
        if !expired.is_empty() {
            tracing::warn!(
                results = expired.len(),
                "letting go of delivery results the store would not take for a whole lease: \
                 those deliveries run again"
            );
            done += expired.len();
        }
        let given_up = refused.give_up_if_stopping(stopping);
        if !given_up.is_empty() {
            tracing::error!(
                results = given_up.len(),
                "stopping with delivery results the store would not take: those deliveries run \
                 again once their leases expire"
            );
            done += given_up.len();
        }
        room.in_flight.fetch_sub(done, Ordering::SeqCst);
        // Only when the fetcher waits for room: ringing after every
        // batch would have it run empty claims that hold the writer.
        if room.wanted.swap(false, Ordering::SeqCst) {
            deps.wake.notify();
        }
        let wrote_directives = outcomes.iter().any(
            |o| matches!(o, FinishOutcome::Completed { directives_created, .. } if *directives_created > 0),
        );
        if wrote_directives {
            deps.directive_wake.notify();
        }
    }
}

/// Writes `results` in one transaction, and counts what became of each.
fn finish(deps: &WorkerDeps, results: &[DeliveryResult]) -> StoreResult<Vec<FinishOutcome>> {
    let outcomes = deps.store.finish_deliveries(results, (deps.clock)())?;
    for (result, outcome) in results.iter().zip(&outcomes) {
        deps.metrics.delivery_finished(result, outcome);
    }
    Ok(outcomes)
}

/// Writes a batch of results in one transaction. If the store refuses it,
/// each result is tried once on its own, so that one the store will not
/// take holds back none of the others. Returns the outcomes written and the
/// results the store refused.
fn record(
    deps: &WorkerDeps,
    batch: &[DeliveryResult],
) -> (Vec<FinishOutcome>, Vec<DeliveryResult>) {
    if batch.is_empty() {
        return (Vec::new(), Vec::new());
    }
    match finish(deps, batch) {
        Ok(outcomes) => {
            deps.health.recovered();
            return (outcomes, Vec::new());
        }
        Err(error) => {
            deps.health
                .failed("recording delivery results", &error.to_string());
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut not_taken = Vec::new();
    for result in batch {
        match finish(deps, std::slice::from_ref(result)) {
            Ok(written) => outcomes.extend(written),
            Err(error) => {
                deps.health
                    .failed("recording delivery results", &error.to_string());
                not_taken.push(result.clone());
            }
        }
    }
    (outcomes, not_taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_complete_discard_or_retry() {
        let policy = RetryPolicy::fast(3);
        let now = Utc::now();
        assert_eq!(
            decide(&policy, 1, 3, Outcome::Ok, vec![], now),
            Decision::Complete(vec![])
        );
        assert_eq!(
            decide(&policy, 1, 3, Outcome::Permanent("no".into()), vec![], now),
            Decision::Discard
        );
        assert!(matches!(
            decide(&policy, 1, 3, Outcome::Timeout, vec![], now),
            Decision::Retry { .. }
        ));
        assert_eq!(
            decide(&policy, 3, 3, Outcome::Trap("x".into()), vec![], now),
            Decision::Discard
        );
    }
}
