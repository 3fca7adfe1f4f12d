//! Per-invocation cost of a trivial handler (fresh instance, call, one
//! directive request), side by side in one run:
//!
//! - `sighost`: `Sandbox::invoke`, with every limit, check and capture on;
//! - `bare wasmtime (tuned pool)`: the same component through wasmtime alone,
//!   as a careful embedder would run it: the pooling allocator tuned as
//!   sighost's is, `InstancePre`, fresh store, default WASI, a
//!   `request-directive` that accepts everything; sighost's own overhead is
//!   the difference;
//! - both in the same calling mode, wasmtime's async one (a fiber per call,
//!   WASI linked asynchronously), which sighost needs for its time limits,
//!   each awaited in turn on a current-thread tokio runtime; the default-pool
//!   and on-demand rows below use it too;
//! - `bare wasmtime (default pool)` and `(on-demand)`: the same with
//!   wasmtime's default pool and with its default allocator;
//! - `native`: the handler's logic as a plain Rust function under the SDK's
//!   test harness, the floor no sandbox can beat.
//!
//! Each figure is the time per call in µs: the median of several rounds of
//! many calls, with the fastest and slowest round beside it.

use std::time::Instant;

use serde_json::json;
use sighost::sandbox::{Manifest, Sandbox, SandboxConfig};
use sighost_tests::{delivery, guest, signal};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub mod bare {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sighost:handler/tenant-handler",
        exports: { default: async },
    });
}
use bare::sighost::handler::types;

use crate::stats::Runs;

pub const CALLS_PER_ROUND: u32 = 2_000;

struct BareState {
    wasi: WasiCtx,
    table: ResourceTable,
    directives: u32,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for BareState {}

impl bare::sighost::handler::directives::Host for BareState {
    fn request_directive(
        &mut self,
        _: types::DirectiveRequest,
    ) -> Result<types::Receipt, types::DirectiveError> {
        self.directives += 1;
        Ok(types::Receipt {
            directive_id: "d".into(),
            status: types::ReceiptStatus::Accepted,
        })
    }
}

/// Per-call µs over `rounds` rounds of [`CALLS_PER_ROUND`] calls, after a
/// warm-up.
pub fn measure(rounds: usize, call: impl FnMut()) -> Runs {
    measure_calls(rounds, CALLS_PER_ROUND, call)
}

/// Per-call µs over `rounds` rounds of `calls` calls, after a warm-up of a
/// tenth as many (at least 20).
pub fn measure_calls(rounds: usize, calls: u32, mut call: impl FnMut()) -> Runs {
    for _ in 0..(calls / 10).max(20) {
        call(); // warm caches and the instance pool
    }
    let values = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                call();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
        })
        .collect();
    Runs::from_values(values)
}

/// [`measure_calls`] for an async call, each awaited in turn on one
/// current-thread runtime (the runtime is built once, outside the rounds).
pub fn measure_async<F: std::future::Future<Output = ()>>(
    rounds: usize,
    calls: u32,
    mut call: impl FnMut() -> F,
) -> Runs {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    measure_calls(rounds, calls, || runtime.block_on(call()))
}

/// How bare wasmtime allocates instances.
enum Allocation {
    OnDemand,
    /// wasmtime's default pool.
    Pooling,
    /// The pool tuned as sighost tunes it (resident slots, PAGEMAP_SCAN):
    /// the comparison that isolates sighost's own overhead.
    PoolingTuned,
}

/// The trivial guest's signal and context, as bare wasmtime passes them.
fn trivial_call() -> BareCall {
    BareCall::new("test.happened", r#"{"n":1}"#, "{}", "{}", &[])
}

/// What bare wasmtime passes to a `(signal, tenant, context)` handler that
/// must request exactly one directive.
pub struct BareCall {
    pub signal: types::Signal,
    pub context: types::Context,
}

impl BareCall {
    /// Signal `name` of tenant `org_acme` with `payload`, on its first
    /// attempt, with the handler's `options` and the tenant's `settings` and
    /// `packages` (JSON texts, as they cross the WIT).
    pub fn new(
        name: &str,
        payload: &str,
        options: &str,
        settings: &str,
        packages: &[&str],
    ) -> Self {
        let at = "2026-11-26T12:00:00.000000Z".to_owned();
        BareCall {
            signal: types::Signal {
                id: "sig_1".into(),
                tenant: "org_acme".into(),
                name: name.into(),
                payload: payload.into(),
                metadata: "{}".into(),
                dedupe_key: None,
                occurred_at: at.clone(),
                correlation_id: None,
                causation_id: None,
                actor: None,
                subject: None,
                source: None,
                inserted_at: at,
            },
            context: types::Context {
                tenant: "org_acme".into(),
                signal_id: "sig_1".into(),
                signal_name: name.into(),
                correlation_id: None,
                causation_id: None,
                attempt: 1,
                max_attempts: 10,
                options: options.into(),
                settings: settings.into(),
                packages: packages.iter().map(|p| p.to_string()).collect(),
            },
        }
    }
}

fn bare_wasmtime(bytes: &[u8], allocation: Allocation, rounds: usize) -> Runs {
    bare_wasmtime_call(bytes, allocation, rounds, CALLS_PER_ROUND, &trivial_call())
}

/// Per-call µs of `bytes` run by bare wasmtime with the pool tuned as
/// sighost's: the ceiling a handler of any language is measured against.
pub fn bare_tuned(bytes: &[u8], rounds: usize, calls: u32, call: &BareCall) -> Runs {
    bare_wasmtime_call(bytes, Allocation::PoolingTuned, rounds, calls, call)
}

fn bare_wasmtime_call(
    bytes: &[u8],
    allocation: Allocation,
    rounds: usize,
    calls: u32,
    call: &BareCall,
) -> Runs {
    let mut config = Config::new();
    let mut pool = PoolingAllocationConfig::new();
    match allocation {
        Allocation::OnDemand => {}
        Allocation::Pooling => {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Allocation::PoolingTuned => {
            sighost::sandbox::tune_slot_reuse(&mut pool);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
    }
    let engine = Engine::new(&config).expect("engine");
    let component = Component::new(&engine, bytes).expect("component");
    let mut linker = Linker::<BareState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    bare::TenantHandler::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("directives");
    let pre = bare::TenantHandlerPre::new(linker.instantiate_pre(&component).expect("pre"))
        .expect("typed pre");
    let BareCall { signal, context } = call;
    measure_async(rounds, calls, || async {
        let state = BareState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            directives: 0,
        };
        let mut store = Store::new(&engine, state);
        let handler = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let result = handler
            .call_handle_signal(&mut store, signal, &signal.tenant, context)
            .await
            .expect("call");
        assert!(result.is_ok() && store.data().directives == 1);
    })
}

fn sighost(bytes: &[u8], rounds: usize) -> Runs {
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let manifest = Manifest::parse("directives = ['bench.noop']").expect("manifest");
    let handler = sandbox
        .load_bytes("trivial", bytes, manifest, "trivial")
        .expect("load");
    let signal = signal("org_acme", "test.happened", json!({"n": 1}));
    let delivery = delivery(json!({}), &[]);
    measure_async(rounds, CALLS_PER_ROUND, || async {
        let run = sandbox.invoke(&handler, &signal, &delivery).await;
        assert!(
            run.outcome.is_ok() && run.directives.len() == 1,
            "{:?}",
            run.outcome
        );
    })
}

/// The trivial guest's logic, compiled natively.
fn trivial_native(
    signal: sighost_sdk::Signal,
    _tenant: String,
    _context: sighost_sdk::Context,
) -> Result<(), sighost_sdk::HandlerError> {
    sighost_sdk::directive("bench.noop")
        .payload(&json!({ "n": 1 }))
        .request(&signal)?;
    Ok(())
}

fn native(rounds: usize) -> Runs {
    let harness = sighost_sdk::testing::Harness::new("trivial", "org_acme");
    measure(rounds, || {
        let signal = harness.signal("test.happened", json!({"n": 1}));
        let run = harness.run_tenant_handler(signal, trivial_native);
        assert!(run.result.is_ok() && run.directives.len() == 1);
    })
}

const BARE_TUNED: &str = "bare wasmtime, pool tuned as sighost's";

/// Per-call µs of each way to run the trivial handler, sighost first.
pub struct Invocation {
    pub rows: Vec<(&'static str, Runs)>,
}

pub fn run(rounds: usize) -> Invocation {
    crate::durable::settle();
    let bytes = std::fs::read(guest("trivial")).expect("trivial guest built by build.rs");
    let mut rows = Vec::new();
    let mut row = |name: &'static str, measure: &mut dyn FnMut() -> Runs| {
        eprintln!("  {name} …");
        rows.push((name, measure()));
    };
    row("sighost `Sandbox::invoke`", &mut || sighost(&bytes, rounds));
    row(BARE_TUNED, &mut || {
        bare_wasmtime(&bytes, Allocation::PoolingTuned, rounds)
    });
    row("bare wasmtime, default pool", &mut || {
        bare_wasmtime(&bytes, Allocation::Pooling, rounds)
    });
    row("bare wasmtime, on-demand allocation", &mut || {
        bare_wasmtime(&bytes, Allocation::OnDemand, rounds)
    });
    row("native Rust function (the floor)", &mut || native(rounds));
    Invocation { rows }
}

impl Invocation {
    /// sighost's median over row `i`'s.
    pub fn ratio(&self, i: usize) -> f64 {
        self.rows[0].1.median() / self.rows[i].1.median()
    }

    /// Bare wasmtime's median µs per call, with sighost's pool tuning.
    pub fn bare_tuned_us(&self) -> f64 {
        let (_, runs) = self
            .rows
            .iter()
            .find(|(name, _)| *name == BARE_TUNED)
            .expect("the bare wasmtime row");
        runs.median()
    }
}
