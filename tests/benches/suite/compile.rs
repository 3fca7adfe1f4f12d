//! Deliveries while a large component compiles (SQLite): the time 10,000
//! deliveries of the trivial handler take alone, and while the same host
//! loads a component of many functions (compiled afresh: no cache). Loading
//! and the compiler's threads run at a lower CPU priority than deliveries,
//! so the compile should take the cores deliveries leave idle, not theirs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::durable::{Backend, HandlerFile, Setup, named_batch};

pub const DELIVERIES: usize = 10_000;
/// Functions in the large component: enough for seconds of compiling.
const FUNCTIONS: usize = 40_000;

/// A valid component of `FUNCTIONS` small functions. Its export does not
/// have a handler's types, so loading it fails after the compile: the
/// compile is all it is here for.
fn large_component(seed: usize) -> Vec<u8> {
    let mut functions = String::new();
    for i in 0..FUNCTIONS {
        let _ = write!(
            functions,
            "(func (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {} i32.add \
             i32.const 7 i32.mul local.get 0 i32.xor)",
            i + seed
        );
    }
    let text = format!(
        "(component (core module $m {functions} (func (export \"handle-signal\") (param i32))) \
         (core instance $i (instantiate $m)) \
         (func (export \"handle-signal\") (param \"signal\" u32) \
           (canon lift (core func $i \"handle-signal\"))))"
    );
    wat::parse_str(text).expect("a valid component")
}

/// Seconds until the deliveries completed, and how long the compile took
/// (when one ran).
pub fn run(seed: usize, compiling: bool) -> (f64, Option<f64>) {
    let handlers = [HandlerFile {
        guest: "trivial",
        name: "good".into(),
        manifest: "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n".into(),
    }];
    let setup = Setup::new(Backend::Sqlite, "compile", &handlers);
    let host = std::sync::Arc::new(setup.host_with(|config| config.sandbox.cache_dir = None));
    for offset in (0..DELIVERIES).step_by(1_000) {
        host.emit_batch(named_batch("bench.happened", 1_000, offset))
            .expect("emit");
    }
    let large = setup.dir.join("large");
    std::fs::create_dir_all(&large).expect("dir");
    std::fs::write(large.join("large.wasm"), large_component(seed)).expect("write");
    let mut probe = setup.probe();
    let compile = compiling.then(|| {
        let host = host.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let errors = host.load_handlers_dir(&large).expect("read the directory");
            assert_eq!(errors.len(), 1, "compiled, then refused for its types");
            started.elapsed().as_secs_f64()
        })
    });
    // Let the compile get going first.
    if compiling {
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    let workers = host.start_workers().expect("workers");
    let done = "SELECT COUNT(*) FROM deliveries WHERE state = 'completed'";
    while probe.count(done) < DELIVERIES as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "deliveries stalled"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let seconds = started.elapsed().as_secs_f64();
    workers.shutdown();
    let compiled = compile.map(|c| c.join().expect("the compile"));
    (seconds, compiled)
}
