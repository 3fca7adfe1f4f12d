//! Per-invocation cost of a trivial handler (fresh instance, call, one
//! directive request), side by side in one run:
//!
//! - `sighost`: `Sandbox::invoke`, with every limit, check and capture on;
//! - `bare wasmtime (tuned pool)`: the same component through wasmtime alone,
//!   as a careful embedder would run it: the pooling allocator tuned as
//!   sighost's is, `InstancePre`, fresh store, default WASI, a
//!   `request-directive` that accepts everything; sighost's own overhead is
//!   the difference;
//! - `bare wasmtime (default pool)` and `(on-demand)`: the same with
//!   wasmtime's default pool and with its default allocator;
//! - `native`: the handler's logic as a plain Rust function under the SDK's
//!   test harness, the floor no sandbox can beat.
//!
//! Run with `cargo bench -p sighost-tests --bench invoke`. Each figure is the
//! median of several rounds, with the fastest and slowest round beside it.

use std::time::{Duration, Instant};

use serde_json::json;
use sighost::sandbox::{Manifest, Sandbox, SandboxConfig};
use sighost_tests::{delivery, guest, signal};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bare {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sighost:handler/tenant-handler",
    });
}
use bare::sighost::handler::types;

const ROUNDS: usize = 7;
const CALLS_PER_ROUND: u32 = 2_000;

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

/// Median, fastest and slowest per-call time over the rounds.
struct Figure {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn measure(mut call: impl FnMut()) -> Figure {
    for _ in 0..200 {
        call(); // warm caches and the instance pool
    }
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS_PER_ROUND {
                call();
            }
            start.elapsed() / CALLS_PER_ROUND
        })
        .collect();
    rounds.sort();
    Figure {
        median: rounds[ROUNDS / 2],
        min: rounds[0],
        max: rounds[ROUNDS - 1],
    }
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

fn bare_wasmtime(bytes: &[u8], allocation: Allocation) -> Figure {
    let mut config = Config::new();
    let mut pool = PoolingAllocationConfig::new();
    match allocation {
        Allocation::OnDemand => {}
        Allocation::Pooling => {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Allocation::PoolingTuned => {
            pool.linear_memory_keep_resident(4 << 20)
                .table_keep_resident(64 << 10)
                .pagemap_scan(wasmtime::Enabled::Auto)
                .decommit_batch_size(16);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
    }
    let engine = Engine::new(&config).expect("engine");
    let component = Component::new(&engine, bytes).expect("component");
    let mut linker = Linker::<BareState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    bare::TenantHandler::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("directives");
    let pre = bare::TenantHandlerPre::new(linker.instantiate_pre(&component).expect("pre"))
        .expect("typed pre");
    let signal = types::Signal {
        id: "sig_1".into(),
        tenant: "org_acme".into(),
        name: "test.happened".into(),
        payload: r#"{"n":1}"#.into(),
        metadata: "{}".into(),
        dedupe_key: None,
        occurred_at: "2026-11-26T12:00:00.000000Z".into(),
        correlation_id: Some("corr_1".into()),
        causation_id: None,
        actor: None,
        subject: None,
        source: Some("bench".into()),
        inserted_at: "2026-11-26T12:00:00.000000Z".into(),
    };
    let context = types::Context {
        tenant: "org_acme".into(),
        signal_id: "sig_1".into(),
        signal_name: "test.happened".into(),
        correlation_id: Some("corr_1".into()),
        causation_id: None,
        attempt: 1,
        max_attempts: 10,
        options: "{}".into(),
        settings: "{}".into(),
        packages: vec![],
    };
    measure(|| {
        let state = BareState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            directives: 0,
        };
        let mut store = Store::new(&engine, state);
        let handler = pre.instantiate(&mut store).expect("instantiate");
        let result = handler
            .call_handle_signal(&mut store, &signal, "org_acme", &context)
            .expect("call");
        assert!(result.is_ok() && store.data().directives == 1);
    })
}

fn sighost(bytes: &[u8]) -> Figure {
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let manifest = Manifest::parse("directives = ['bench.noop']").expect("manifest");
    let handler = sandbox
        .load_bytes("trivial", bytes, manifest, "trivial")
        .expect("load");
    let signal = signal("org_acme", "test.happened", json!({"n": 1}));
    let delivery = delivery(json!({}), &[]);
    measure(|| {
        let run = sandbox.invoke(&handler, &signal, &delivery);
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

fn native() -> Figure {
    let harness = sighost_sdk::testing::Harness::new("trivial", "org_acme");
    measure(|| {
        let signal = harness.signal("test.happened", json!({"n": 1}));
        let run = harness.run_tenant_handler(signal, trivial_native);
        assert!(run.result.is_ok() && run.directives.len() == 1);
    })
}

fn main() {
    let bytes = std::fs::read(guest("trivial")).expect("trivial guest built by build.rs");
    println!(
        "invocation cost of a trivial handler: {ROUNDS} rounds of {CALLS_PER_ROUND} calls, median (min..max)"
    );
    let rows = [
        ("sighost Sandbox::invoke", sighost(&bytes)),
        (
            "bare wasmtime (tuned pool)",
            bare_wasmtime(&bytes, Allocation::PoolingTuned),
        ),
        (
            "bare wasmtime (default pool)",
            bare_wasmtime(&bytes, Allocation::Pooling),
        ),
        (
            "bare wasmtime (on-demand)",
            bare_wasmtime(&bytes, Allocation::OnDemand),
        ),
        ("native Rust (floor)", native()),
    ];
    for (name, f) in &rows {
        println!(
            "  {name:<30} {:>9.2} µs  ({:.2}..{:.2})",
            micros(f.median),
            micros(f.min),
            micros(f.max)
        );
    }
    let ratio = |i: usize| micros(rows[0].1.median) / micros(rows[i].1.median);
    println!(
        "  sighost / bare wasmtime (tuned pool):   {:.2}x (goal <= 1.5x)",
        ratio(1)
    );
    println!("  sighost / bare wasmtime (default pool): {:.2}x", ratio(2));
    println!("  sighost / bare wasmtime (on-demand):    {:.2}x", ratio(3));
    println!("  sighost / native:                       {:.0}x", ratio(4));
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
