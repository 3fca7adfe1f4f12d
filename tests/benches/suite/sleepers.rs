//! Guests that wait inside a host call beside good traffic (SQLite): the
//! time 1,000 deliveries of the trivial handler take alone, and with 20
//! guests of another tenant asleep in a `wasi:clocks` timer the whole time.
//! A waiting guest holds an invocation slot, not a thread, so the two
//! should be about equal; before the async sandbox two sleepers held both
//! worker threads for their whole sleep.

use std::time::{Duration, Instant};

use serde_json::json;
use sighost::store::NewSignal;

use crate::durable::{Backend, HandlerFile, Setup, named_batch};

pub const GOOD: usize = 1_000;
pub const SLEEPERS: usize = 20;
/// Long beside the good deliveries' run, short enough that shutting the
/// workers down (which lets running guests finish) costs little.
const SLEEP_MS: u64 = 5_000;

/// Seconds from the workers' start until the good deliveries completed,
/// and whether every sleeper was still asleep then.
pub fn run(with_sleepers: bool) -> (f64, bool) {
    let handlers = [
        HandlerFile {
            guest: "trivial",
            name: "good".into(),
            manifest: "subscriptions = ['bench.*']\ndirectives = ['bench.noop']\n".into(),
        },
        HandlerFile {
            guest: "sleeper",
            name: "sleeper".into(),
            manifest: format!(
                "subscriptions = ['sleep.*']\n[limits]\ntimeout_ms = {}\n[options]\nsleep_ms = {SLEEP_MS}\n",
                SLEEP_MS * 2
            ),
        },
    ];
    let setup = Setup::new(Backend::Sqlite, "sleepers", &handlers);
    let host = setup.host();
    if with_sleepers {
        host.store()
            .create_tenant("org_sleepy", json!({}), chrono::Utc::now())
            .expect("tenant");
        // Emitted first: claimed first, so they are asleep before the good
        // deliveries start.
        let sleepers = (0..SLEEPERS)
            .map(|i| NewSignal {
                tenant: "org_sleepy".into(),
                name: "sleep.now".into(),
                payload: json!({ "i": i }),
                ..NewSignal::default()
            })
            .collect();
        host.emit_batch(sleepers).expect("emit sleepers");
    }
    host.emit_batch(named_batch("bench.happened", GOOD, 0))
        .expect("emit");
    let mut probe = setup.probe();
    let started = Instant::now();
    let workers = host.start_workers().expect("workers");
    let good_done =
        "SELECT COUNT(*) FROM deliveries WHERE handler = 'good' AND state = 'completed'";
    while probe.count(good_done) < GOOD as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the good deliveries did not finish in two minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let seconds = started.elapsed().as_secs_f64();
    let asleep = probe
        .count("SELECT COUNT(*) FROM deliveries WHERE handler = 'sleeper' AND state = 'running'");
    workers.shutdown();
    (seconds, !with_sleepers || asleep == SLEEPERS as i64)
}
