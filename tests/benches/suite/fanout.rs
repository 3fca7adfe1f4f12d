//! Fanout shape: every signal goes to 10 handlers, and about 10% of the
//! deliveries fail transiently on their first attempt (the
//! `transient-failure` guest with `fail_percent = 10`, a different seed per
//! copy, so each copy fails different signals). Retries come after
//! milliseconds ([`RetryPolicy::fast`]) so the run measures the host, not
//! the backoff.
//!
//! Reported: deliveries/s from workers starting until every directive is
//! committed, the retries that took, and the directives written twice or
//! missing — both must be 0.

use std::time::{Duration, Instant};

use sighost::retry::RetryPolicy;

use crate::durable::{Backend, HandlerFile, Setup, named_batch};

pub const HANDLERS: usize = 10;
pub const FAIL_PERCENT: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct Fanout {
    pub deliveries: usize,
    pub per_s: f64,
    /// Attempts beyond the first.
    pub retries: usize,
    pub duplicate_directives: usize,
    pub missing_directives: usize,
}

pub fn run(backend: Backend, signals: usize) -> Fanout {
    let handlers: Vec<HandlerFile> = (0..HANDLERS)
        .map(|seed| HandlerFile {
            guest: "transient-failure",
            name: format!("flaky-{seed}"),
            manifest: format!(
                "subscriptions = ['fan.*']\ndirectives = ['flaky.done']\nmax_attempts = 5\n\
                 [options]\nfail_percent = {FAIL_PERCENT}\nseed = {seed}\n"
            ),
        })
        .collect();
    let setup = Setup::new(backend, "fanout", &handlers);
    let host = setup.host_with(|config| config.workers.retry = RetryPolicy::fast(5));
    let mut probe = setup.probe();
    for offset in (0..signals).step_by(1_000) {
        host.emit_batch(named_batch(
            "fan.happened",
            1_000.min(signals - offset),
            offset,
        ))
        .expect("emit");
    }
    let expected = signals * HANDLERS;
    let started = Instant::now();
    let workers = host.start_workers().expect("workers");
    // Done when no delivery is left to run (completed or discarded).
    while probe.pending() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "fanout did not finish in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let per_s = expected as f64 / started.elapsed().as_secs_f64();
    workers.shutdown();

    let mut count = |sql: &str| probe.count(sql) as usize;
    let deliveries = count("SELECT COUNT(*) FROM deliveries");
    let completed = count("SELECT COUNT(*) FROM deliveries WHERE state = 'completed'");
    assert_eq!(
        (deliveries, completed),
        (expected, expected),
        "every delivery completes"
    );
    let attempts = count("SELECT COUNT(*) FROM attempts");
    let succeeded = count("SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'");
    // Keys carry the attempt: a directive from a failed attempt, or from a
    // second successful run of a delivery, is a row of its own here.
    let directives = count("SELECT COUNT(*) FROM directives");
    let pairs =
        count("SELECT COUNT(*) FROM (SELECT DISTINCT signal_id, handler FROM directives) pairs");
    assert_eq!(succeeded, expected, "each delivery succeeded exactly once");
    let retries = attempts - deliveries;
    assert!(
        (expected * (FAIL_PERCENT - 3) / 100..=expected * (FAIL_PERCENT + 3) / 100)
            .contains(&retries),
        "about {FAIL_PERCENT}% of first attempts fail: {retries} retries of {expected}"
    );
    Fanout {
        deliveries,
        per_s,
        retries,
        duplicate_directives: directives - pairs,
        missing_directives: expected - pairs,
    }
}
