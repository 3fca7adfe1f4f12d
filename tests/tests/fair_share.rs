//! Fair share between tenants through the real `sighost` binary
//! (ARCHITECTURE.md §4, "Fair share"): one tenant's backlog does not hold back
//! another tenant's deliveries, and an operator sets a tenant's weight with
//! the CLI. Waits are for conditions with a deadline; the assertion compares
//! the order in which deliveries finished, not how long anything took.

use chrono::Utc;
use serde_json::json;
use sighost::store::{Delivery, DeliveryFilter, DeliveryState};
use sighost::{HostConfig, Sighost};
use sighost_tests::guest;
use sighost_tests::host_helpers::{
    Scratch, install, numbered_signals, open_host, wait_for, wait_for_within,
};
use sighost_tests::server::{Server, cli};

const BACKLOG: usize = 20_000;

fn deliveries_of(host: &Sighost, tenant: &str) -> Vec<Delivery> {
    host.store()
        .deliveries(&DeliveryFilter {
            tenant: Some(tenant.into()),
            ..DeliveryFilter::default()
        })
        .expect("list deliveries")
}

fn completed(host: &Sighost) -> u64 {
    let stats = host.store().stats().expect("stats");
    stats
        .deliveries
        .iter()
        .find(|(state, _)| *state == DeliveryState::Completed)
        .map_or(0, |(_, n)| *n)
}

#[test]
fn a_backlog_of_one_tenant_holds_back_no_other_tenants_deliveries() {
    let scratch = Scratch::new("fair-backlog");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    install(
        &handlers,
        "echo",
        &guest("trivial"),
        "directives = ['bench.noop']\n",
    );
    let host = open_host(HostConfig::new(&data), &handlers);
    for tenant in ["org_backlog", "org_small"] {
        host.store()
            .create_tenant(tenant, json!({}), Utc::now())
            .expect("tenant");
    }
    for _ in 0..BACKLOG / 1_000 {
        host.emit_batch(numbered_signals("org_backlog", "work.queued", 1_000))
            .expect("emit the backlog");
    }
    let server = Server::start(&data, &handlers, "run", 2);
    wait_for("the backlog to be draining", |last| {
        let done = completed(&host);
        *last = format!("{done} completed");
        (done >= 1_000).then_some(())
    });
    let pending_then = BACKLOG as u64 - completed(&host);
    host.emit_batch(numbered_signals("org_small", "work.now", 10))
        .expect("emit the small tenant's signals");
    // 20,000 deliveries through a debug build beside other tests: the
    // order is the promise, not the time it takes.
    let patience = std::time::Duration::from_secs(120);
    wait_for_within(patience, "every delivery to complete", |last| {
        let done = completed(&host);
        *last = format!("{done} of {} completed", BACKLOG + 10);
        (done == BACKLOG as u64 + 10).then_some(())
    });
    drop(server);

    let small_done = deliveries_of(&host, "org_small")
        .iter()
        .map(|d| d.finished_at.expect("completed"))
        .max()
        .expect("ten deliveries");
    let backlog_after = deliveries_of(&host, "org_backlog")
        .iter()
        .filter(|d| d.finished_at.expect("completed") > small_done)
        .count() as u64;
    // Oldest first, the small tenant's deliveries would wait behind every
    // one of the backlog's (none of it finishing after them); fairly, they
    // are claimed at once, while most of the backlog still waits.
    assert!(
        backlog_after * 2 >= pending_then,
        "of the {pending_then} deliveries of the backlog pending when org_small emitted, only \
         {backlog_after} finished after org_small's last"
    );
}

#[test]
fn an_operator_sets_a_tenants_weight_with_the_cli() {
    let scratch = Scratch::new("fair-weight");
    let data = scratch.subdir("data");
    assert!(cli(&data, &["tenants", "create", "org_w"]).status.success());
    let set = cli(&data, &["tenants", "weight", "org_w", "3"]);
    assert!(set.status.success(), "{set:?}");
    let tenant: serde_json::Value =
        serde_json::from_slice(&set.stdout).expect("the tenant as JSON");
    assert_eq!(tenant["weight"], 3);

    let refused = cli(&data, &["tenants", "weight", "org_w", "0"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("a tenant's weight is a whole number from 1 to 10000; 0 is not"),
        "{stderr}"
    );
    let listed = cli(&data, &["tenants", "list", "--json"]);
    let line = String::from_utf8_lossy(&listed.stdout);
    let tenant: serde_json::Value = serde_json::from_str(line.trim()).expect("a JSON line");
    assert_eq!(tenant["weight"], 3, "unchanged by the refused call");
}

#[test]
fn an_emit_or_replay_past_a_tenants_pending_quota_is_refused_and_stores_nothing() {
    use sighost::emit::EmitError;
    use sighost::tenant_limits::Refusal;
    let scratch = Scratch::new("fair-quota");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    install(
        &handlers,
        "echo",
        &guest("trivial"),
        "directives = ['bench.noop']\n",
    );
    // No workers: the deliveries stay pending.
    let host = Sighost::open(HostConfig::new(&data)).expect("open the store");
    assert!(
        host.load_handlers_dir(&handlers)
            .expect("handlers")
            .is_empty()
    );
    host.create_tenant("org_q", json!({})).expect("tenant");
    host.set_tenant_limits(
        "org_q",
        sighost::store::TenantLimits {
            max_pending: Some(3),
            ..Default::default()
        },
    )
    .expect("limits");
    host.emit_batch(numbered_signals("org_q", "quota.tested", 3))
        .expect("three fit");
    let refused = host
        .emit_batch(numbered_signals("org_q", "quota.tested", 1))
        .expect_err("a fourth does not");
    assert!(
        matches!(
            &refused,
            EmitError::Refused(Refusal::OverQuota {
                pending: 3,
                adding: 1,
                limit: 3,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "tenant org_q has 3 deliveries waiting, and may have at most 3; this emit would add 1"
    );
    let signals = host
        .store()
        .signals(&sighost::store::SignalFilter::default())
        .expect("signals");
    assert_eq!(signals.len(), 3, "the refused signal was not stored");
    let replayed = host.replay(
        &sighost::store::SignalFilter {
            tenant: Some("org_q".into()),
            ..Default::default()
        },
        None,
        false,
        |_, _| {},
    );
    assert!(
        matches!(
            replayed,
            Err(sighost::HostError::Emit(EmitError::Refused(_)))
        ),
        "a replay obeys the quota too: {replayed:?}"
    );
    assert_eq!(deliveries_of(&host, "org_q").len(), 3);
    assert_eq!(host.emitter().refusals()["org_q"].over_quota, 2);
}

#[test]
fn an_operator_sets_a_tenants_limits_with_the_cli() {
    let scratch = Scratch::new("fair-limits");
    let data = scratch.subdir("data");
    assert!(cli(&data, &["tenants", "create", "org_l"]).status.success());
    let set = cli(
        &data,
        &[
            "tenants",
            "limits",
            "org_l",
            "--max-running",
            "2",
            "--max-pending",
            "100",
        ],
    );
    assert!(set.status.success(), "{set:?}");
    let tenant: serde_json::Value = serde_json::from_slice(&set.stdout).expect("JSON");
    assert_eq!(
        tenant["limits"],
        json!({ "max_running": 2, "max_pending": 100, "max_emit_per_s": null })
    );
    let zero = cli(&data, &["tenants", "limits", "org_l", "--max-running", "0"]);
    assert!(!zero.status.success());
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(
        stderr.contains("a tenant's max_running is at least 1 (leave it unset for no limit)"),
        "{stderr}"
    );
}

#[test]
fn a_handler_capped_at_one_never_runs_twice_at_once() {
    // Two worker threads, and a handler that keeps a thread busy for 50 ms
    // with `max_running = 1`: its attempts follow one another, never overlap.
    let scratch = Scratch::new("fair-handler-cap");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "one-at-a-time",
        &guest("slow"),
        "subscriptions = ['capped.*']\nmax_running = 1\n[options]\nbusy_us = 50000\n",
    );
    let mut config = HostConfig::new(scratch.subdir("data"));
    config.workers.threads = 2;
    config.workers.poll_interval = std::time::Duration::from_millis(10);
    let host = open_host(config, &handlers);
    host.create_tenant("org_a", json!({})).expect("tenant");
    host.emit_batch(numbered_signals("org_a", "capped.work", 6))
        .expect("emit");
    let running = host.start().expect("start");
    let done = wait_for("the capped handler's deliveries to complete", |last| {
        let all = deliveries_of(&host, "org_a");
        *last = format!("{:?}", all.iter().map(|d| d.state).collect::<Vec<_>>());
        (all.len() == 6 && all.iter().all(|d| d.state == DeliveryState::Completed)).then_some(all)
    });
    running.shutdown();
    let mut spans: Vec<(i64, i64)> = done
        .iter()
        .flat_map(|d| host.store().attempts(d.id).expect("attempts"))
        .map(|a| {
            let start = a.started_at.timestamp_micros();
            (start, start + a.duration_us as i64)
        })
        .collect();
    spans.sort();
    assert_eq!(spans.len(), 6, "one attempt each");
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two attempts ran at once: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}
