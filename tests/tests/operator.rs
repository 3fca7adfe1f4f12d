//! Operator actions through the library and the real `sighost` binary: a
//! bulk action (a filter without ids) says what it matches and runs only
//! when confirmed; the causation-depth check of emit is tenant-scoped.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sighost::fair::Claim;
use sighost::store::{Decision, DeliveryFilter, DeliveryState, NewSignal};
use sighost::{HostConfig, HostError, Sighost};
use sighost_tests::conformance::result;
use sighost_tests::guest;
use sighost_tests::host_helpers::{Scratch, deliveries_in, install};
use sighost_tests::server::{Server, cli};

/// A host on `scratch` with one handler of every signal, and three pending
/// deliveries for each of org_a and org_b (no workers run them).
fn host_with_pending(scratch: &Scratch) -> Sighost {
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "directives = ['bench.noop']\n",
    );
    let host = Sighost::open(HostConfig::new(scratch.subdir("data"))).expect("open");
    let errors = host.load_handlers_dir(&handlers).expect("read handlers");
    assert!(errors.is_empty(), "{errors:?}");
    // As `sighost run` does: the CLI's replays target what hosts registered.
    host.register().expect("register the handlers");
    for tenant in ["org_a", "org_b"] {
        host.create_tenant(tenant, json!({})).expect("tenant");
        for i in 0..3 {
            host.emit(NewSignal {
                tenant: tenant.into(),
                name: "op.tested".into(),
                payload: json!({ "i": i }),
                ..NewSignal::default()
            })
            .expect("emit");
        }
    }
    host
}

/// Claims every pending delivery of `host` now and finishes each at
/// `finished_at`: discarded for org_a if `discard_org_a`, else completed.
fn finish_all(host: &Sighost, finished_at: chrono::DateTime<Utc>, discard_org_a: bool) {
    let claimed = host
        .store()
        .claim_deliveries(&Claim::new("w", 10, Duration::from_secs(60)), Utc::now())
        .expect("claim");
    assert_eq!(claimed.len(), 6);
    let results: Vec<_> = claimed
        .iter()
        .map(|c| {
            let decision = if discard_org_a && c.delivery.tenant == "org_a" {
                Decision::Discard
            } else {
                Decision::Complete(vec![])
            };
            result(c, "w", decision, finished_at)
        })
        .collect();
    host.store()
        .finish_deliveries(&results, finished_at)
        .expect("finish");
}

#[test]
fn a_bulk_cancel_says_what_it_matches_and_needs_confirmation() {
    let scratch = Scratch::new("operator-lib");
    let host = host_with_pending(&scratch);
    let everything = DeliveryFilter::default();
    let refused = host.cancel_deliveries(&everything, false);
    let Err(HostError::Unconfirmed { action, matched }) = &refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(*action, "cancel deliveries");
    assert_eq!(matched.to_string(), "6 (2 tenants: org_a 3, org_b 3)");
    assert_eq!(
        deliveries_in(&host, DeliveryState::Available),
        6,
        "nothing canceled"
    );

    // Ids are explicit: no confirmation.
    let first = host.store().deliveries(&everything).expect("deliveries")[0].id;
    let by_id = DeliveryFilter {
        ids: vec![first],
        ..DeliveryFilter::default()
    };
    assert_eq!(host.cancel_deliveries(&by_id, false).expect("cancel"), 1);

    let org_b = DeliveryFilter {
        tenant: Some("org_b".into()),
        ..DeliveryFilter::default()
    };
    assert_eq!(host.cancel_deliveries(&org_b, true).expect("confirmed"), 3);
    assert_eq!(deliveries_in(&host, DeliveryState::Canceled), 4);

    // Retrying the canceled ones of org_b, by filter, needs confirmation too.
    let refused = host.retry_deliveries(&org_b, false);
    assert!(
        matches!(&refused, Err(HostError::Unconfirmed { matched, .. }) if matched.total == 3),
        "{refused:?}"
    );
    assert_eq!(host.retry_deliveries(&org_b, true).expect("retry"), 3);
    assert_eq!(deliveries_in(&host, DeliveryState::Available), 5);

    // A filter that matches nothing has nothing to confirm.
    let nobody = DeliveryFilter {
        tenant: Some("org_nobody".into()),
        ..DeliveryFilter::default()
    };
    assert_eq!(host.cancel_deliveries(&nobody, false).expect("nothing"), 0);
}

#[test]
fn the_cli_never_reads_no_ids_as_everything() {
    let scratch = Scratch::new("operator-cli");
    let host = host_with_pending(&scratch);
    let data = scratch.path().join("data");
    // Tests run without a terminal: refused, with what it would touch.
    let refused = cli(&data, &["cancel", "deliveries"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("matches 6 (2 tenants: org_a 3, org_b 3); pass --yes"),
        "{stderr}"
    );
    assert_eq!(
        deliveries_in(&host, DeliveryState::Available),
        6,
        "nothing canceled"
    );

    let by_tenant = cli(
        &data,
        &["cancel", "deliveries", "--tenant", "org_a", "--yes"],
    );
    assert!(by_tenant.status.success(), "{by_tenant:?}");
    assert_eq!(
        String::from_utf8_lossy(&by_tenant.stdout).trim(),
        "3 deliveries canceled"
    );
    let retry = cli(&data, &["retry", "--tenant", "org_a"]);
    assert!(
        retry.status.success(),
        "nothing discarded, nothing to confirm: {retry:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&retry.stdout).trim(),
        "0 deliveries will run again"
    );
}

#[test]
fn the_cli_lists_retries_and_replays_what_it_is_asked_to() {
    let scratch = Scratch::new("operator-cli-acts");
    let host = host_with_pending(&scratch);
    let data = scratch.path().join("data");
    let emitted_by = Utc::now();
    // A worker ran all six: org_a's were discarded, org_b's completed.
    finish_all(&host, Utc::now(), true);

    let listed = cli(&data, &["deliveries", "--state", "discarded", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["tenant"] == "org_a" && r["state"] == "discarded"),
        "{rows:?}"
    );

    let retry = cli(&data, &["retry", "--tenant", "org_a", "--yes"]);
    assert!(retry.status.success(), "{retry:?}");
    assert_eq!(
        String::from_utf8_lossy(&retry.stdout).trim(),
        "3 deliveries will run again"
    );
    assert_eq!(deliveries_in(&host, DeliveryState::Discarded), 0);
    assert_eq!(deliveries_in(&host, DeliveryState::Available), 3);

    // Replay by name and time: the six signals were inserted before
    // `emitted_by`, so a window from an hour before takes them all and one
    // from a minute after takes none.
    let replay_since = |at: chrono::DateTime<Utc>| {
        let replay = cli(
            &data,
            &["replay", "--name", "op.tested", "--since", &at.to_rfc3339()],
        );
        assert!(replay.status.success(), "{replay:?}");
        String::from_utf8_lossy(&replay.stdout).trim().to_owned()
    };
    assert_eq!(
        replay_since(emitted_by + chrono::Duration::minutes(1)),
        "0 deliveries created"
    );
    assert_eq!(
        replay_since(emitted_by - chrono::Duration::hours(1)),
        "6 deliveries created"
    );
    assert_eq!(deliveries_in(&host, DeliveryState::Available), 9);
}

#[test]
fn a_cause_of_another_tenant_counts_as_unknown_for_the_depth_limit() {
    // With a limit of 1, a signal caused by a depth-1 signal is refused; one
    // whose cause belongs to another tenant is not, as for an unknown id:
    // tenants cannot probe each other's signal ids.
    let scratch = Scratch::new("operator-depth");
    let mut config = HostConfig::new(scratch.subdir("data"));
    config.sandbox.limits.causation_depth = 1;
    let host = Sighost::open(config).expect("open");
    for tenant in ["org_a", "org_b"] {
        host.store()
            .create_tenant(tenant, json!({}), Utc::now())
            .expect("tenant");
    }
    let emit = |tenant: &str, cause: Option<&str>| {
        host.emit(NewSignal {
            tenant: tenant.into(),
            name: "depth.tested".into(),
            payload: json!({}),
            causation_id: cause.map(str::to_owned),
            ..NewSignal::default()
        })
    };
    let root = emit("org_b", None).expect("root").signal;
    let child = emit("org_b", Some(&root.id)).expect("depth 1").signal;
    let refused = emit("org_b", Some(&child.id));
    assert!(
        matches!(
            refused,
            Err(sighost::emit::EmitError::DepthExceeded { depth: 2, .. })
        ),
        "{refused:?}"
    );
    let borrowed = emit("org_a", Some(&child.id)).expect("another tenant's id is unknown");
    let unknown = emit("org_a", Some("no-such-signal")).expect("an unknown id");
    for signal in [&borrowed.signal, &unknown.signal] {
        assert_eq!(
            host.store()
                .signal_depth("org_a", &signal.id)
                .expect("depth"),
            Some(0)
        );
    }
}

#[test]
fn both_stores_refuse_nul_in_signal_text_in_the_same_words() {
    let scratch = Scratch::new("operator-nul");
    let database = sighost_tests::postgres::FreshDatabase::new("sighost_nul");
    let mut answers = Vec::new();
    for (label, store) in [("sqlite", None), ("postgres", Some(database.url.clone()))] {
        let mut config = HostConfig::new(scratch.subdir(label));
        if let Some(url) = store {
            config.store = sighost::store::StoreLocation::parse(&url).expect("url");
        }
        let host = Sighost::open(config).expect("open");
        host.create_tenant("org_a", json!({})).expect("tenant");
        let with_nul = |field: &str| {
            let mut signal = NewSignal {
                tenant: "org_a".into(),
                name: "nul.tested".into(),
                payload: json!({}),
                ..NewSignal::default()
            };
            let text = Some("a\0b".to_owned());
            match field {
                "dedupe_key" => signal.dedupe_key = text,
                "correlation_id" => signal.correlation_id = text,
                "source" => signal.source = text,
                _ => {
                    signal.actor = Some(sighost::signal::EntityRef {
                        kind: "user".into(),
                        id: "u\0".into(),
                    })
                }
            }
            host.emit(signal)
        };
        for field in ["dedupe_key", "correlation_id", "source", "actor.id"] {
            match with_nul(field) {
                Err(sighost::emit::EmitError::Invalid(message)) => answers.push(message),
                other => panic!("{label} {field}: {other:?}"),
            }
        }
        let stored = host
            .store()
            .signals(&sighost::store::SignalFilter::default())
            .expect("signals");
        assert!(stored.is_empty(), "{label} stored nothing");
    }
    let (sqlite, postgres) = answers.split_at(answers.len() / 2);
    assert_eq!(sqlite, postgres, "the same words on both stores");
    assert_eq!(
        sqlite[0],
        "dedupe_key of nul.tested contains a NUL byte, which sighost does not store"
    );
}

#[test]
fn a_sigterm_as_soon_as_the_host_says_it_runs_stops_it_gracefully() {
    // The signal handlers are in place before "sighost is running" is
    // logged; before, a SIGTERM in that moment killed the process by the
    // signal's default action, and the reload tests failed now and then.
    let scratch = Scratch::new("operator-sigterm");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "directives = ['bench.noop']\n",
    );
    let data = scratch.subdir("data");
    for round in 0..10 {
        Server::start(&data, &handlers, &format!("run-{round}"), 1).stop();
    }
}

#[test]
fn emits_a_file_checked_line_by_line_first_and_safe_to_run_again() {
    let scratch = Scratch::new("operator-emit-file");
    let host = host_with_pending(&scratch);
    let data = scratch.path().join("data");
    let before = host
        .store()
        .signals(&Default::default())
        .expect("signals")
        .len();
    let file = scratch.path().join("signals.jsonl");
    let lines: Vec<String> = (0..2_500)
        .map(|i| {
            let tenant = if i % 2 == 0 { "org_a" } else { "org_b" };
            json!({"tenant": tenant, "name": "op.bulk", "payload": {"i": i}, "dedupe_key": format!("bulk-{i}")})
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the file");
    let file_arg = file.to_str().expect("utf-8 path");

    let emitted = cli(&data, &["emit", "--file", file_arg]);
    assert!(emitted.status.success(), "{emitted:?}");
    assert_eq!(
        String::from_utf8_lossy(&emitted.stdout).trim(),
        "2500 signals: 2500 created, 0 existing; 2500 deliveries"
    );
    assert!(
        String::from_utf8_lossy(&emitted.stderr).contains("emitting: 2500/2500 signals"),
        "progress on stderr: {emitted:?}"
    );
    // The same file again: every line's dedupe key is taken.
    let again = cli(&data, &["emit", "--file", file_arg]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "2500 signals: 0 created, 2500 existing; 0 deliveries"
    );

    // A bad line anywhere: each is named, and nothing is emitted.
    let bad = scratch.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        [
            json!({"name": "op.bulk", "payload": {"new": 1}}).to_string(),
            "{not json".to_owned(),
            json!({"name": "Not A Name"}).to_string(),
            json!({"name": "op.bulk", "tenant": "org_nobody"}).to_string(),
            json!({"name": "op.bulk", "colour": "red"}).to_string(),
        ]
        .join("\n"),
    )
    .expect("write the bad file");
    let refused = cli(
        &data,
        &[
            "emit",
            "--file",
            bad.to_str().expect("utf-8"),
            "--tenant",
            "org_a",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("4 of the file's lines are invalid; nothing was emitted"),
        "{stderr}"
    );
    for line in [
        "line 2:",
        "line 3:",
        "line 4: unknown tenant",
        "line 5: unknown field",
    ] {
        assert!(stderr.contains(line), "{line} missing: {stderr}");
    }
    let after = host
        .store()
        .signals(&Default::default())
        .expect("signals")
        .len();
    assert_eq!(after, before + 2_500, "the bad file stored nothing");
}

#[test]
fn the_cli_shows_what_retention_would_prune_then_prunes_only_that() {
    let scratch = Scratch::new("operator-cli-prune");
    let host = host_with_pending(&scratch);
    let data = scratch.path().join("data");
    // Two days ago, org_a's three were discarded and org_b's completed.
    finish_all(&host, Utc::now() - chrono::Duration::days(2), true);
    let counted = |stdout: &[u8], kind: &str| -> u64 {
        String::from_utf8_lossy(stdout)
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(kind)).then(|| words.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {kind} line in {}", String::from_utf8_lossy(stdout)))
    };

    // org_b's three, but the newest of all, kept until a newer one exists.
    let dry = cli(&data, &["prune", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert_eq!(counted(&dry.stdout, "deliveries.completed"), 2);
    assert_eq!(
        counted(&dry.stdout, "deliveries.discarded"),
        0,
        "kept 7 days"
    );
    assert_eq!(
        deliveries_in(&host, DeliveryState::Completed),
        3,
        "a dry run deletes nothing"
    );

    let pruned = cli(&data, &["prune"]);
    assert!(pruned.status.success(), "{pruned:?}");
    assert_eq!(counted(&pruned.stdout, "deliveries.completed"), 2);
    assert_eq!(deliveries_in(&host, DeliveryState::Completed), 1);
    assert_eq!(deliveries_in(&host, DeliveryState::Discarded), 3);

    let again = cli(&data, &["prune"]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("\n0 rows"),
        "{again:?}"
    );

    let gone = cli(
        &data,
        &["replay", "--id", "0190b3c2-0000-7000-8000-000000000000"],
    );
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("never stored, or retention pruned it"),
        "{gone:?}"
    );
}

#[test]
fn a_running_host_prunes_what_is_past_its_retention() {
    let scratch = Scratch::new("operator-pruner");
    let host = host_with_pending(&scratch);
    finish_all(&host, Utc::now() - chrono::Duration::days(2), false);
    // The newest delivery stays until a newer one exists (README, Retention).
    let running = host.start().expect("start");
    sighost_tests::host_helpers::wait_for("the pruner's first pass", |seen| {
        let left = deliveries_in(&host, DeliveryState::Completed);
        *seen = format!("{left} completed deliveries left");
        (left == 1).then_some(())
    });
    running.shutdown();
}
