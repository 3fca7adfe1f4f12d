//! The sandbox: runs one handler on one signal in a fresh wasmtime instance
//! (ARCHITECTURE.md §7).
//!
//! One [`Sandbox`] owns the engine (pooling allocator, epoch interruption,
//! optional fuel), the linker (WASI that grants nothing, plus
//! `request-directive`) and the epoch ticker. Handlers are compiled and
//! pre-instantiated once by [`Sandbox::load_file`]/[`Sandbox::load_bytes`];
//! [`Sandbox::invoke`] then gives every delivery its own store and instance, so
//! no state survives between signals or tenants.
//!
//! # Time
//!
//! `invoke` is `async` and `&self`: every invocation is a future, run on a
//! fiber of wasmtime's async support, with WASI linked asynchronously. That
//! is what makes the wall-clock limit hold wherever the guest is:
//!
//! - running wasm code, the epoch deadline traps it (a loop never yields, so
//!   no timer could stop it);
//! - blocked in a host call (a WASI poll on a timer, a blocking read), the
//!   invocation's future is suspended and holds no thread; at the deadline
//!   `tokio::time::timeout_at` drops it, which unwinds the guest's fiber.
//!
//! Both start when the invocation does and cover instantiation too, so a
//! start function or static constructor that loops or waits is cut off the
//! same way. [`Sandbox::invoke_blocking`] runs one invocation to its end on
//! a runtime of its own, for callers that are not async.

mod bindings;
mod directives;
mod loader;
pub mod manifest;
mod outcome;
mod output;
mod pool;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable, TypedFunc};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::Limits;
use crate::signal::{Signal, format_timestamp};
use bindings::types;
pub use directives::{MAX_IDEMPOTENCY_KEY_BYTES, RequestedDirective};
pub use loader::{Handler, ImportPolicy, LoadError, Shape, digest};
pub use manifest::Manifest;
pub use outcome::{Invocation, Outcome, Report};
use output::CapturedOutput;
pub use pool::PoolLimits;

/// How the sandbox is built. The defaults are the limits of ARCHITECTURE.md.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Limits for handlers whose manifest does not override them.
    pub limits: Limits,
    /// The largest memory any handler may be given, in bytes: the size of a
    /// pooled memory slot. Manifests cannot raise a handler's cap above it.
    pub max_memory_bytes: u64,
    /// Instances that may be alive at once; an invocation beyond this fails
    /// with a retryable host error instead of allocating without bound.
    pub max_concurrent_instances: u32,
    /// What one component may hold, checked when it is loaded.
    pub pool: PoolLimits,
    /// Wall-clock budget of the instantiation a load runs (the start
    /// function and static constructors). The host's, whatever a manifest
    /// says: the one who drops a file in does not choose how long loading
    /// may take.
    pub load_timeout: Duration,
    /// Turns fuel metering on. Implied by `limits.fuel`; needed for a
    /// manifest to set a fuel budget.
    pub fuel_metering: bool,
    pub import_policy: ImportPolicy,
    /// How often the epoch advances: the resolution of the wall-clock timeout.
    pub epoch_tick: Duration,
    /// Where compiled code is cached, keyed by the module's bytes and the
    /// engine's settings, so a restart does not compile again. No cache if
    /// `None`.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_memory_bytes: 256 << 20,
            max_concurrent_instances: 64,
            pool: PoolLimits::default(),
            load_timeout: Duration::from_secs(2),
            fuel_metering: false,
            import_policy: ImportPolicy::default(),
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
        }
    }
}

/// Why the sandbox itself could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the wasm engine: {0}")]
pub struct SandboxError(String);

/// The delivery-specific part of a handler's context: where the delivery
/// stands and what the invoking tenant has. The rest comes from the signal and
/// the handler's manifest, so a caller cannot pair a signal with another
/// tenant's context.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryContext {
    pub attempt: u32,
    pub max_attempts: u32,
    /// The invoking tenant's settings (a JSON object).
    pub settings: serde_json::Value,
    /// The invoking tenant's installed packages.
    pub packages: Vec<String>,
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<InvocationState>,
    config: SandboxConfig,
    fuel_metering: bool,
    /// Advances the engine's epoch; stops when the sandbox is dropped.
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Everything one invocation's store holds.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimiter,
    directives: directives::DirectiveBuffer,
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::directives::Host for InvocationState {
    fn request_directive(
        &mut self,
        request: types::DirectiveRequest,
    ) -> Result<types::Receipt, types::DirectiveError> {
        self.directives.request(request)
    }
}

impl types::Host for InvocationState {}

/// Caps linear memory per handler and remembers the peak and whether the cap
/// was hit, so that the trap that follows a refused growth is reported as
/// "memory exceeded" rather than as the guest's abort.
struct MemoryLimiter {
    cap: usize,
    peak: usize,
    exceeded: bool,
}

/// Resources (pollables, streams, …) one invocation may hold at once in its
/// table. wasmtime's default is a million: a loop of `subscribe-duration`
/// calls would make the host keep a million timers for one guest. Language
/// runtimes hold a few dozen.
const MAX_RESOURCES: usize = 10_000;

/// The most random bytes one `get-random-bytes` call may ask for (capped
/// further by the handler's memory limit). The host allocates them before
/// they are copied into the guest, outside the guest's memory cap; runtimes
/// ask for a few dozen bytes at a time. A larger request traps.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Memory and table bytes of a pooled slot kept mapped between instances.
const RESIDENT_MEMORY_BYTES: usize = 4 << 20;
const RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// How sighost resets reused pool slots, public so that the benchmarks'
/// bare-wasmtime baseline can tune its pool the same way.
///
/// Reused slots are reset by rewriting the pages a guest touched instead of
/// unmapping them: an `madvise` per instance costs a TLB shootdown on every
/// core, and the pages would fault back in on the next delivery. Most
/// handlers stay within a few MiB. What is still decommitted goes in
/// batches: fewer shootdowns.
pub fn tune_slot_reuse(pool: &mut PoolingAllocationConfig) {
    pool.linear_memory_keep_resident(RESIDENT_MEMORY_BYTES)
        .table_keep_resident(RESIDENT_TABLE_BYTES)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(16);
}

/// Table growth is not what a handler needs; this bound only keeps a hostile
/// guest from using tables as a memory side door.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Advances an engine's epoch on a background thread.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("sighost-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type HandlerResult = (Result<(), types::HandlerError>,);

/// The handler's export, typed for its shape.
enum Entry {
    SignalTenantContext(TypedFunc<(types::Signal, String, types::Context), HandlerResult>),
    SignalContext(TypedFunc<(types::Signal, types::Context), HandlerResult>),
    Signal(TypedFunc<(types::Signal,), HandlerResult>),
}

/// Where an invocation failed, to tell host faults from guest faults.
enum Failure {
    /// Instantiation failed: out of pooled slots, or a start function trapped.
    Instantiate(wasmtime::Error),
    /// The guest trapped or was interrupted during the call.
    Call(wasmtime::Error),
    /// The deadline passed while the guest waited in a host call; its
    /// future was dropped. (In wasm code the epoch traps it instead.)
    Deadline,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let fuel_metering = config.fuel_metering || config.limits.fuel.is_some();
        let instances = config.max_concurrent_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        config.pool.apply(&mut pool, instances);
        pool.max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        tune_slot_reuse(&mut pool);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(fuel_metering)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &config.cache_dir {
            let dir = std::path::absolute(dir).map_err(|e| {
                SandboxError(format!("compiled-code cache in {}: {e}", dir.display()))
            })?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(&dir);
            let cache = wasmtime::Cache::new(cache).map_err(|e| {
                SandboxError(format!("compiled-code cache in {}: {e:#}", dir.display()))
            })?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm).map_err(|e| SandboxError(format!("{e:#}")))?;
        crate::priority::lower_compiler_threads();

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError(format!("{e:#}")))?;
        bindings::Imports::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| SandboxError(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| SandboxError(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            engine,
            linker,
            config,
            fuel_metering,
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Runs `handler` on `signal` for the signal's tenant. Never panics and
    /// never fails: whatever the guest does ends up in the outcome. Must run
    /// inside a tokio runtime with timers enabled (WASI's clocks and the
    /// deadline use them).
    pub async fn invoke(
        &self,
        handler: &Handler,
        signal: &Signal,
        delivery: &DeliveryContext,
    ) -> Invocation {
        let started = Instant::now();
        let output = CapturedOutput::new(handler.limits.output_bytes);
        let mut store = self.new_store(handler, &signal.tenant, &output, handler.limits.timeout);
        let fuel_budget = store.get_fuel().ok();

        let deadline = tokio::time::Instant::from_std(started + handler.limits.timeout);
        let call = self.call(&mut store, handler, signal, delivery);
        let result = tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or(Err(Failure::Deadline));
        let wall_time = started.elapsed();
        let fuel_consumed = fuel_budget
            .zip(store.get_fuel().ok())
            .map(|(b, left)| b - left);
        let state = store.into_data();
        let outcome = match result {
            Ok((Ok(()),)) => Outcome::Ok,
            Ok((Err(types::HandlerError::Transient(m)),)) => Outcome::Transient(m),
            Ok((Err(types::HandlerError::Permanent(m)),)) => Outcome::Permanent(m),
            Err(failure) => classify(failure, state.memory.exceeded),
        };
        let (output, output_truncated) = output.take();
        let outcome_ok = outcome.is_ok();
        Invocation {
            outcome,
            report: Report {
                wall_time,
                fuel_consumed: fuel_consumed.filter(|_| self.fuel_metering),
                peak_memory_bytes: state.memory.peak as u64,
                directive_count: state.directives.accepted.len() as u32,
                refused_directives: state.directives.refused,
                refusals: state.directives.refusals,
                output,
                output_truncated,
            },
            // A failed attempt leaves no directive behind (the transactional
            // outbox of ARCHITECTURE.md §5): the requests die with the attempt.
            directives: if outcome_ok {
                state.directives.accepted
            } else {
                Vec::new()
            },
        }
    }

    /// [`Sandbox::invoke`] for callers that are not async: runs the one
    /// invocation to its end on a runtime of its own.
    pub fn invoke_blocking(
        &self,
        handler: &Handler,
        signal: &Signal,
        delivery: &DeliveryContext,
    ) -> Invocation {
        block_on(self.invoke(handler, signal, delivery))
    }

    /// A store for one instance of `handler`, whose epoch deadline is
    /// `timeout` from now.
    fn new_store(
        &self,
        handler: &Handler,
        tenant: &str,
        output: &CapturedOutput,
        timeout: Duration,
    ) -> Store<InvocationState> {
        // Grants nothing: no arguments, no environment, no preopened
        // directory (so every path is "not found"), closed stdin. The network
        // is denied here explicitly, whatever the builder's defaults are or
        // become: no TCP or UDP socket, no name lookup, no address.
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .max_random_size(MAX_RANDOM_BYTES.min(handler.limits.memory_bytes))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = InvocationState {
            wasi,
            table,
            memory: MemoryLimiter {
                cap: usize::try_from(handler.limits.memory_bytes).unwrap_or(usize::MAX),
                peak: 0,
                exceeded: false,
            },
            directives: directives::DirectiveBuffer::new(
                tenant.to_owned(),
                handler.allowed_directives.clone(),
                handler.limits.directives_per_invocation,
                handler.limits.directive_payload_bytes,
            ),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        let tick = self.config.epoch_tick.as_nanos().max(1);
        store.set_epoch_deadline((timeout.as_nanos().div_ceil(tick) + 1) as u64);
        if self.fuel_metering {
            // Cannot fail: fuel metering is on for this engine.
            let _ = store.set_fuel(handler.limits.fuel.unwrap_or(u64::MAX));
        }
        store
    }

    async fn entry(
        &self,
        store: &mut Store<InvocationState>,
        handler: &Handler,
    ) -> wasmtime::Result<Entry> {
        let instance = handler.pre.instantiate_async(&mut *store).await?;
        typed_entry(store, &instance, handler)
    }

    async fn call(
        &self,
        store: &mut Store<InvocationState>,
        handler: &Handler,
        signal: &Signal,
        delivery: &DeliveryContext,
    ) -> Result<HandlerResult, Failure> {
        let entry = self
            .entry(store, handler)
            .await
            .map_err(Failure::Instantiate)?;
        let wit_signal = wit_signal(signal);
        let result = match entry {
            Entry::SignalTenantContext(f) => {
                let context = wit_context(handler, signal, delivery);
                f.call_async(&mut *store, (wit_signal, signal.tenant.clone(), context))
                    .await
            }
            Entry::SignalContext(f) => {
                let context = wit_context(handler, signal, delivery);
                f.call_async(&mut *store, (wit_signal, context)).await
            }
            Entry::Signal(f) => f.call_async(&mut *store, (wit_signal,)).await,
        };
        result.map_err(Failure::Call)
    }

    /// Instantiates `handler` once, under its limits, and type-checks its
    /// export; see `load_bytes`. The load budget bounds it as the wall-clock
    /// limit bounds an invocation, so a start function that loops or waits
    /// is refused within that time.
    fn smoke_test(&self, handler: &Handler) -> Result<(), String> {
        let output = CapturedOutput::new(0);
        let timeout = self.config.load_timeout;
        let mut store = self.new_store(handler, "", &output, timeout);
        let instantiated = block_on(async {
            tokio::time::timeout(timeout, handler.pre.instantiate_async(&mut store)).await
        });
        let timed_out = || {
            format!(
                "timed out after {} ms while running its start function \
                 (the host's load budget, `[sandbox] load_timeout_ms`)",
                timeout.as_millis()
            )
        };
        let instance = match instantiated {
            Ok(Ok(instance)) => instance,
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => {
                return Err(match e.downcast_ref::<Trap>() {
                    Some(Trap::Interrupt) => timed_out(),
                    Some(Trap::OutOfFuel) => {
                        "ran out of fuel while running its start function".into()
                    }
                    _ if store.data().memory.exceeded => format!(
                        "its start function grew memory past the limit of {} MiB (`memory_mib`)",
                        handler.limits.memory_bytes >> 20
                    ),
                    _ => match exit_status(&e) {
                        Some(code) => format!(
                            "its start function called exit({code}) (a handler returns instead)"
                        ),
                        None => format!("its start function failed: {}", describe_error(&e)),
                    },
                });
            }
        };
        typed_entry(&mut store, &instance, handler)
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "its export does not match {}: {}",
                    handler.shape.describe(),
                    describe_error(&e)
                )
            })
    }

    fn check_limits(&self, limits: &Limits) -> Result<(), String> {
        if limits.memory_bytes > self.config.max_memory_bytes {
            return Err(format!(
                "memory cap of {} MiB is above this host's maximum of {} MiB",
                limits.memory_bytes >> 20,
                self.config.max_memory_bytes >> 20
            ));
        }
        if limits.timeout.is_zero() {
            return Err("timeout must be above zero".into());
        }
        if limits.fuel.is_some() && !self.fuel_metering {
            return Err("a fuel budget needs fuel metering, which this host has turned off".into());
        }
        Ok(())
    }
}

/// The handler's export on `instance`, typed for its shape.
fn typed_entry(
    store: &mut Store<InvocationState>,
    instance: &wasmtime::component::Instance,
    handler: &Handler,
) -> wasmtime::Result<Entry> {
    let export = &handler.export;
    Ok(match handler.shape {
        Shape::SignalTenantContext => {
            Entry::SignalTenantContext(instance.get_typed_func(&mut *store, export)?)
        }
        Shape::SignalContext => Entry::SignalContext(instance.get_typed_func(&mut *store, export)?),
        Shape::Signal => Entry::Signal(instance.get_typed_func(&mut *store, export)?),
    })
}

fn classify(failure: Failure, memory_exceeded: bool) -> Outcome {
    let (error, instantiating) = match failure {
        Failure::Instantiate(e) => (e, true),
        Failure::Call(e) => (e, false),
        Failure::Deadline => return Outcome::Timeout,
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::Timeout,
        Some(Trap::OutOfFuel) => Outcome::FuelExhausted,
        _ if memory_exceeded => Outcome::MemoryExceeded,
        Some(_) => Outcome::Trap(describe_error(&error)),
        None => match exit_status(&error) {
            // `wasi:cli/exit`: the guest ended itself instead of returning.
            // Status 0 says it is done, as it would for a process; any other
            // status is a failure worth a retry, like a trap.
            Some(0) => Outcome::Ok,
            Some(code) => Outcome::Trap(format!(
                "the handler called exit({code}) instead of returning"
            )),
            None if instantiating => Outcome::HostError(describe_error(&error)),
            None => Outcome::Trap(describe_error(&error)),
        },
    }
}

/// The status of a `wasi:cli/exit` call, if that is what ended the guest.
fn exit_status(error: &wasmtime::Error) -> Option<i32> {
    error
        .downcast_ref::<wasmtime_wasi::I32Exit>()
        .map(|exit| exit.0)
}

/// Runs `future` to its end on a runtime of its own, for the callers that are
/// not async (loading, `invoke_blocking`). Inside a runtime, where a nested
/// one may not block, it runs on a thread of its own.
fn block_on<F: std::future::Future + Send>(future: F) -> F::Output
where
    F::Output: Send,
{
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map(|runtime| runtime.block_on(future))
    };
    let result = if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| scope.spawn(run).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    } else {
        run()
    };
    // Building a current-thread runtime fails only when the process is out of
    // file descriptors or memory; nothing sensible can go on then.
    result.unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// The error's chain on one line, without the wasm backtrace: a stack of
/// `<wasm function 20>` frames of a stripped guest says nothing to an operator.
fn describe_error(error: &wasmtime::Error) -> String {
    // wasmtime attaches the backtrace as the outermost context.
    let skip = usize::from(error.downcast_ref::<wasmtime::WasmBacktrace>().is_some());
    error
        .chain()
        .skip(skip)
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn wit_entity(entity: &Option<crate::signal::EntityRef>) -> Option<types::EntityRef> {
    entity.as_ref().map(|e| types::EntityRef {
        type_: e.kind.clone(),
        id: e.id.clone(),
    })
}

fn wit_signal(signal: &Signal) -> types::Signal {
    types::Signal {
        id: signal.id.clone(),
        tenant: signal.tenant.clone(),
        name: signal.name.clone(),
        payload: signal.payload.to_string(),
        metadata: signal.metadata.to_string(),
        dedupe_key: signal.dedupe_key.clone(),
        occurred_at: format_timestamp(signal.occurred_at),
        correlation_id: signal.correlation_id.clone(),
        causation_id: signal.causation_id.clone(),
        actor: wit_entity(&signal.actor),
        subject: wit_entity(&signal.subject),
        source: signal.source.clone(),
        inserted_at: format_timestamp(signal.inserted_at),
    }
}

fn wit_context(handler: &Handler, signal: &Signal, delivery: &DeliveryContext) -> types::Context {
    types::Context {
        tenant: signal.tenant.clone(),
        signal_id: signal.id.clone(),
        signal_name: signal.name.clone(),
        correlation_id: signal.correlation_id.clone(),
        causation_id: signal.causation_id.clone(),
        attempt: delivery.attempt,
        max_attempts: delivery.max_attempts,
        options: handler.options_json.clone(),
        settings: delivery.settings.to_string(),
        packages: delivery.packages.clone(),
    }
}
