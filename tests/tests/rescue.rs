//! Leases kept alive by a heartbeat, with the default configuration and the
//! real binary: a live host keeps the work it runs past the first lease, and
//! when it is killed (SIGKILL) another host re-runs that work within
//! seconds, not after a five-minute lease.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use sighost::store::{Delivery, DeliveryFilter, DeliveryState, NewSignal};
use sighost::{HostConfig, Sighost};
use sighost_tests::guest;
use sighost_tests::host_helpers::{Scratch, install, wait_for};
use sighost_tests::server::Server;

/// The default lease (`[workers] lease_ms`).
const LEASE: Duration = Duration::from_secs(10);

fn deliveries(host: &Sighost) -> Vec<Delivery> {
    host.store()
        .deliveries(&DeliveryFilter::default())
        .expect("deliveries")
}

#[test]
fn a_killed_hosts_deliveries_are_rescued_within_seconds_and_a_live_ones_are_not() {
    let scratch = Scratch::new("rescue");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    // Handlers that outlast the lease: only a heartbeat keeps them held.
    install(
        &handlers,
        "sleeper",
        &guest("sleeper"),
        "subscriptions = ['rescue.*']\n[limits]\ntimeout_ms = 120000\n[options]\nsleep_ms = 60000\n",
    );
    let host = Sighost::open(HostConfig::new(&data)).expect("open the store");
    assert!(
        host.load_handlers_dir(&handlers)
            .expect("handlers")
            .is_empty()
    );
    host.store()
        .create_tenant("org_rescue", json!({}), Utc::now())
        .expect("tenant");
    let mut first = Server::start(&data, &handlers, "first", 2);
    let signals = (0..4)
        .map(|i| NewSignal {
            tenant: "org_rescue".into(),
            name: "rescue.tested".into(),
            payload: json!({ "i": i }),
            ..NewSignal::default()
        })
        .collect();
    host.emit_batch(signals).expect("emit");
    wait_for("the first host to run all four", |last| {
        let all = deliveries(&host);
        *last = format!("{:?}", all.iter().map(|d| d.state).collect::<Vec<_>>());
        all.iter()
            .all(|d| d.state == DeliveryState::Running)
            .then_some(())
    });
    let claimed = Instant::now();
    let second = Server::start(&data, &handlers, "second", 2);

    // Past the first lease, the live host still holds them: the second host
    // claims every 200 ms and would rescue a lease that ran out.
    while claimed.elapsed() < LEASE + Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for delivery in deliveries(&host) {
        assert_eq!(
            (delivery.state, delivery.attempt),
            (DeliveryState::Running, 1),
            "kept alive by the heartbeat"
        );
    }

    first.kill();
    let killed = Instant::now();
    let rescued_after = wait_for("the second host to rescue all four", |last| {
        let all = deliveries(&host);
        *last = format!(
            "{:?}",
            all.iter().map(|d| (d.state, d.attempt)).collect::<Vec<_>>()
        );
        all.iter()
            .all(|d| d.attempt == 2 && d.state == DeliveryState::Running)
            .then(|| killed.elapsed())
    });
    eprintln!("re-run {:.1} s after the kill", rescued_after.as_secs_f64());
    for delivery in deliveries(&host) {
        let attempts = host.store().attempts(delivery.id).expect("attempts");
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].outcome, "lease_expired");
    }
    // The lease bounds the delay: 10 s after the last beat, and the second
    // host claims every 200 ms.
    assert!(
        rescued_after <= Duration::from_secs(15),
        "re-run {rescued_after:?} after the kill"
    );
    drop(second);
}
