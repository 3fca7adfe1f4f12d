//! Durable fanout end to end: real handler components, a real SQLite file, the
//! real delivery workers and directive runner. Each test starts a host on a
//! scratch data dir with fast retries and in-process (or local) executors,
//! emits signals, and checks what ends up in the store. Waits poll the store
//! against a deadline; nothing assumes how long anything takes.

use sighost::fair::Claim;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sighost::runner::executors::{ExecutorConfig, build};
use sighost::store::{
    Delivery, DeliveryFilter, DeliveryState, Directive, DirectiveFilter, DirectiveState,
    EmitStatus, NewSignal, SignalFilter,
};
use sighost::{HostError, Sighost};
use sighost_tests::host_helpers::{
    CountingExecutor, Scratch, fast_config, install, open_host, wait_for,
};
use sighost_tests::{example_handler, guest};

fn new_signal(tenant: &str, name: &str, payload: Value) -> NewSignal {
    NewSignal {
        tenant: tenant.into(),
        name: name.into(),
        payload,
        source: Some("tests".into()),
        ..NewSignal::default()
    }
}

fn create_tenant(host: &Sighost, id: &str, settings: Value, packages: &[&str]) {
    host.store()
        .create_tenant(id, settings, Utc::now())
        .expect("create tenant");
    for package in packages {
        host.store()
            .install_package(id, package)
            .expect("install package");
    }
}

fn deliveries(host: &Sighost, filter: DeliveryFilter) -> Vec<Delivery> {
    host.store().deliveries(&filter).expect("list deliveries")
}

fn deliveries_of(host: &Sighost, signal_id: &str) -> Vec<Delivery> {
    deliveries(
        host,
        DeliveryFilter {
            signal_id: Some(signal_id.into()),
            ..DeliveryFilter::default()
        },
    )
}

fn directives(host: &Sighost, filter: DirectiveFilter) -> Vec<Directive> {
    host.store().directives(&filter).expect("list directives")
}

fn directives_of(host: &Sighost, signal_id: &str) -> Vec<Directive> {
    directives(
        host,
        DirectiveFilter {
            signal_id: Some(signal_id.into()),
            ..DirectiveFilter::default()
        },
    )
}

fn summary(deliveries: &[Delivery]) -> String {
    let states: Vec<String> = deliveries
        .iter()
        .map(|d| format!("{}:{}#{}", d.handler, d.state.as_str(), d.attempt))
        .collect();
    states.join(", ")
}

/// Waits until the signal has `count` deliveries, every one in `state`.
fn wait_deliveries(
    host: &Sighost,
    signal_id: &str,
    count: usize,
    state: DeliveryState,
) -> Vec<Delivery> {
    wait_for(
        &format!("{count} {} deliveries of {signal_id}", state.as_str()),
        |last| {
            let found = deliveries_of(host, signal_id);
            *last = summary(&found);
            (found.len() == count && found.iter().all(|d| d.state == state)).then_some(found)
        },
    )
}

/// Waits until `filter` lists `count` directives, every one succeeded.
fn wait_succeeded(host: &Sighost, filter: DirectiveFilter, count: usize) -> Vec<Directive> {
    wait_for(&format!("{count} succeeded directives"), |last| {
        let found = directives(host, filter.clone());
        *last = format!(
            "{:?}",
            found
                .iter()
                .map(|d| (d.name.as_str(), d.state, d.attempt))
                .collect::<Vec<_>>()
        );
        (found.len() == count && found.iter().all(|d| d.state == DirectiveState::Succeeded))
            .then_some(found)
    })
}

fn one<T: std::fmt::Debug>(mut items: Vec<T>, what: &str) -> T {
    assert_eq!(items.len(), 1, "expected exactly one {what}: {items:?}");
    items.remove(0)
}

fn by_handler<'a>(deliveries: &'a [Delivery], handler: &str) -> &'a Delivery {
    deliveries
        .iter()
        .find(|d| d.handler == handler)
        .unwrap_or_else(|| panic!("no delivery to {handler}: {}", summary(deliveries)))
}

const FLAKY_DIRECTIVES: &str = "directives = ['flaky.done']";

/// What the `transient-failure` guest's failed attempts record.
const UNAVAILABLE: &str = "transient error: upstream unavailable";

#[test]
fn one_signal_reaches_three_handlers_and_only_the_failing_one_is_retried() {
    let scratch = Scratch::new("fanout-three");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "audit-trail",
        &example_handler("audit-trail"),
        "subscriptions = ['*']\ndirectives = ['audit.record']",
    );
    install(
        &handlers,
        "greeter",
        &guest("trivial"),
        "subscriptions = ['forum.thread.created']\ndirectives = ['bench.noop']",
    );
    install(
        &handlers,
        "flaky",
        &guest("transient-failure"),
        &format!(
            "subscriptions = ['forum.thread.*']\n{FLAKY_DIRECTIVES}\nmax_attempts = 3\n\
             [options]\nsucceed_on_attempt = 3"
        ),
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 10);
    config.executors = executor.for_names(&["audit.record", "bench.noop", "flaky.done"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");

    let emitted = host
        .emit(new_signal(
            "org_acme",
            "forum.thread.created",
            json!({"thread_id": "t1", "title": "Hello"}),
        ))
        .expect("emit");
    assert_eq!(emitted.status, EmitStatus::Created);
    assert_eq!(emitted.deliveries, 3);
    let signal_id = emitted.signal.id;

    let done = wait_for("all three deliveries completed", |last| {
        // Directives first, then deliveries: a flaky directive seen before
        // its delivery completed would have come from a failed attempt.
        let flaky_directives = directives(
            &host,
            DirectiveFilter {
                signal_id: Some(signal_id.clone()),
                name: Some("flaky.done".into()),
                ..DirectiveFilter::default()
            },
        );
        let found = deliveries_of(&host, &signal_id);
        *last = summary(&found);
        let flaky = by_handler(&found, "flaky");
        if flaky.state != DeliveryState::Completed {
            assert!(
                flaky_directives.is_empty(),
                "a directive was written before its delivery completed: {flaky_directives:?}"
            );
        }
        found
            .iter()
            .all(|d| d.state == DeliveryState::Completed)
            .then_some(found)
    });
    assert_eq!(done.len(), 3);

    for handler in ["audit-trail", "greeter"] {
        let delivery = by_handler(&done, handler);
        let attempts = host.store().attempts(delivery.id).expect("attempts");
        assert_eq!(attempts.len(), 1, "{handler} ran once: {attempts:?}");
        assert_eq!(attempts[0].outcome, "ok");
        assert_eq!(delivery.attempt, 1);
        assert!(delivery.handler_digest.is_some());
    }

    let flaky = by_handler(&done, "flaky");
    assert_eq!((flaky.attempt, flaky.max_attempts), (3, 3));
    let attempts = host.store().attempts(flaky.id).expect("attempts");
    let outcomes: Vec<(u32, &str, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.error.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, "transient", Some(UNAVAILABLE)),
            (2, "transient", Some(UNAVAILABLE)),
            (3, "ok", None),
        ]
    );
    assert!(
        attempts.iter().all(|a| a.directive_count == 1),
        "each attempt requested its directive: {attempts:?}"
    );

    let flaky_done = one(
        directives(
            &host,
            DirectiveFilter {
                name: Some("flaky.done".into()),
                ..DirectiveFilter::default()
            },
        ),
        "flaky.done directive",
    );
    assert_eq!(flaky_done.delivery_id, flaky.id);
    assert_eq!(flaky_done.handler, "flaky");
    assert_eq!(flaky_done.tenant, "org_acme");
    assert_eq!(flaky_done.payload, json!({"signal": signal_id}));
    // Written by the attempt that completed, not by a failed one (whose
    // identical request a dedupe would otherwise hide).
    assert!(
        flaky_done.inserted_at >= attempts[2].started_at,
        "written at {}, but the successful attempt started at {}",
        flaky_done.inserted_at,
        attempts[2].started_at
    );

    let all = wait_succeeded(
        &host,
        DirectiveFilter {
            signal_id: Some(signal_id.clone()),
            ..DirectiveFilter::default()
        },
        3,
    );
    let names: BTreeSet<&str> = all.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["audit.record", "bench.noop", "flaky.done"])
    );
    running.shutdown();
    for directive in &all {
        assert_eq!(executor.calls(&directive.id), 1, "{directive:?}");
    }
}

#[test]
fn a_delivery_that_exhausts_its_attempts_is_discarded_kept_and_can_be_retried_by_an_operator() {
    let scratch = Scratch::new("fanout-exhausted");
    let handlers = scratch.subdir("handlers");
    // Two attempts, but success only from the third: the first budget runs out.
    install(
        &handlers,
        "flaky",
        &guest("transient-failure"),
        &format!("{FLAKY_DIRECTIVES}\nmax_attempts = 2\n[options]\nsucceed_on_attempt = 3"),
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 10);
    config.executors = executor.for_names(&["flaky.done"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let signal_id = host
        .emit(new_signal(
            "org_acme",
            "billing.invoice.paid",
            json!({"n": 1}),
        ))
        .expect("emit")
        .signal
        .id;

    let discarded_filter = DeliveryFilter {
        state: Some(DeliveryState::Discarded),
        ..DeliveryFilter::default()
    };
    let discarded = wait_for("the delivery to be discarded", |last| {
        let found = deliveries(&host, discarded_filter.clone());
        *last = summary(&deliveries_of(&host, &signal_id));
        (!found.is_empty()).then_some(found)
    });
    let discarded = one(discarded, "discarded delivery");
    assert_eq!(discarded.signal_id, signal_id);
    assert_eq!((discarded.attempt, discarded.max_attempts), (2, 2));
    assert_eq!(discarded.last_error.as_deref(), Some(UNAVAILABLE));
    assert!(discarded.finished_at.is_some());
    let attempts = host.store().attempts(discarded.id).expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.attempt, n as u32 + 1);
        assert_eq!(attempt.outcome, "transient");
        assert_eq!(attempt.error.as_deref(), Some(UNAVAILABLE));
    }
    assert!(directives_of(&host, &signal_id).is_empty());

    // The operator retries it: a fresh budget of 2 on top of the 2 spent, so
    // the third attempt is allowed and succeeds.
    let retried = host
        .store()
        .retry_deliveries(&discarded_filter, Utc::now())
        .expect("retry");
    assert_eq!(retried, 1);
    let completed = one(
        wait_deliveries(&host, &signal_id, 1, DeliveryState::Completed),
        "delivery",
    );
    assert_eq!(completed.id, discarded.id);
    assert_eq!((completed.attempt, completed.max_attempts), (3, 4));
    let attempts = host.store().attempts(completed.id).expect("attempts");
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["transient", "transient", "ok"]);
    assert!(
        attempts[..2].iter().all(|a| a.error.is_some()),
        "the earlier errors are kept"
    );
    assert!(deliveries(&host, discarded_filter).is_empty());
    let done = one(directives_of(&host, &signal_id), "flaky.done directive");
    assert_eq!(done.delivery_id, completed.id);
    running.shutdown();
}

#[test]
fn a_permanent_error_discards_the_delivery_at_once_with_its_reason() {
    let scratch = Scratch::new("fanout-permanent");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "broken",
        &guest("permanent-failure"),
        "max_attempts = 5",
    );
    install(
        &handlers,
        "audit-trail",
        &example_handler("audit-trail"),
        "directives = ['audit.record']",
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 10);
    config.executors = executor.for_names(&["audit.record"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let signal_id = host
        .emit(new_signal(
            "org_acme",
            "billing.invoice.paid",
            json!({"n": 1}),
        ))
        .expect("emit")
        .signal
        .id;

    let settled = wait_for("both deliveries to settle", |last| {
        let found = deliveries_of(&host, &signal_id);
        *last = summary(&found);
        let settled = found
            .iter()
            .all(|d| matches!(d.state, DeliveryState::Completed | DeliveryState::Discarded));
        (found.len() == 2 && settled).then_some(found)
    });
    let broken = by_handler(&settled, "broken");
    assert_eq!(broken.state, DeliveryState::Discarded);
    assert_eq!((broken.attempt, broken.max_attempts), (1, 5));
    let reason = "permanent error: payload can never be processed";
    assert_eq!(broken.last_error.as_deref(), Some(reason));
    let attempts = host.store().attempts(broken.id).expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].outcome, "permanent");
    assert_eq!(attempts[0].error.as_deref(), Some(reason));
    assert_eq!(
        by_handler(&settled, "audit-trail").state,
        DeliveryState::Completed
    );
    running.shutdown();
}

#[test]
fn replaying_a_signal_runs_its_handler_again_but_its_directive_only_once() {
    let scratch = Scratch::new("fanout-replay");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "audit-trail",
        &example_handler("audit-trail"),
        "directives = ['audit.record']",
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 10);
    config.executors = executor.for_names(&["audit.record"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let signal_id = host
        .emit(new_signal(
            "org_acme",
            "forum.post.created",
            json!({"post": 1}),
        ))
        .expect("emit")
        .signal
        .id;
    let only_this = DirectiveFilter {
        signal_id: Some(signal_id.clone()),
        ..DirectiveFilter::default()
    };
    let first = one(wait_succeeded(&host, only_this.clone(), 1), "directive");
    assert_eq!(executor.calls(&first.id), 1);

    let mut progress = Vec::new();
    let created = host
        .replay(
            &SignalFilter {
                ids: vec![signal_id.clone()],
                ..SignalFilter::default()
            },
            Some("audit-trail"),
            false,
            |done, total| progress.push((done, total)),
        )
        .expect("replay");
    assert_eq!(created, 1);
    assert_eq!(progress, [(1, 1)]);

    let both = wait_deliveries(&host, &signal_id, 2, DeliveryState::Completed);
    let replayed = both.iter().max_by_key(|d| d.id).expect("two deliveries");
    let attempts = host.store().attempts(replayed.id).expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].directive_count),
        ("ok", 1),
        "the replay requested the directive again"
    );
    running.shutdown();

    let after = one(directives(&host, only_this), "directive after the replay");
    assert_eq!(after.id, first.id, "the replay's request was a duplicate");
    assert_eq!(after.state, DirectiveState::Succeeded);
    assert_eq!(after.delivery_id, first.delivery_id);
    assert_eq!(executor.calls(&first.id), 1);
    assert_eq!(executor.total_calls(), 1);
}

#[test]
fn replay_naming_an_unknown_handler_is_refused() {
    let scratch = Scratch::new("fanout-replay-unknown");
    let handlers = scratch.subdir("handlers");
    let host = open_host(fast_config(scratch.path(), 3), &handlers);
    let result = host.replay(
        &SignalFilter::default(),
        Some("no-such-handler"),
        true,
        |_, _| {},
    );
    assert!(
        matches!(&result, Err(HostError::UnknownHandler(name)) if name == "no-such-handler"),
        "{result:?}"
    );
}

#[test]
fn a_fixed_idempotency_key_dedupes_across_signals_and_a_different_payload_is_a_conflict() {
    let scratch = Scratch::new("fanout-fixed-key");
    let handlers = scratch.subdir("handlers");
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 10);
    config.executors = executor.for_names(&["forum.thread.summarize"]);
    let host = open_host(config, &handlers);
    host.load_handler(&example_handler("forum-summarizer"))
        .expect("the example loads with its manifest");
    create_tenant(
        &host,
        "org_acme",
        json!({"auto_summaries": true}),
        &["forum"],
    );
    let running = host.start().expect("start");
    let thread = |title: &str| {
        new_signal(
            "org_acme",
            "forum.thread.created",
            json!({"thread_id": "t1", "title": title}),
        )
    };
    let summaries = DirectiveFilter {
        name: Some("forum.thread.summarize".into()),
        ..DirectiveFilter::default()
    };

    let first = host.emit(thread("Hello")).expect("emit").signal.id;
    wait_deliveries(&host, &first, 1, DeliveryState::Completed);
    let original = one(directives(&host, summaries.clone()), "summary");
    assert_eq!(original.idempotency_key, "summarize:t1");
    assert_eq!(original.signal_id, first);

    // Another signal, the same key and the same payload: a duplicate.
    let same = host.emit(thread("Hello")).expect("emit").signal.id;
    assert_ne!(same, first);
    let delivery = one(
        wait_deliveries(&host, &same, 1, DeliveryState::Completed),
        "delivery",
    );
    let attempts = host.store().attempts(delivery.id).expect("attempts");
    assert_eq!(attempts[0].directive_count, 1);
    assert_eq!(
        one(directives(&host, summaries.clone()), "summary").id,
        original.id
    );

    // The same key with another payload: never guess, discard as a conflict.
    let other = host.emit(thread("Hello again")).expect("emit").signal.id;
    let conflicted = one(
        wait_deliveries(&host, &other, 1, DeliveryState::Discarded),
        "delivery",
    );
    let error = conflicted.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("directive conflict") && error.contains("summarize:t1"),
        "{error}"
    );
    let kept = one(directives(&host, summaries), "summary");
    assert_eq!(kept.id, original.id);
    assert_eq!(kept.payload["title"], "Hello", "the first payload stays");
    wait_succeeded(
        &host,
        DirectiveFilter {
            ids: vec![original.id.clone()],
            ..DirectiveFilter::default()
        },
        1,
    );
    running.shutdown();
    assert_eq!(executor.total_calls(), 1);

    // Every attempt keeps its error (ARCHITECTURE.md §4): the attempt that ran into
    // the conflict is the one that failed.
    let attempts = host.store().attempts(conflicted.id).expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("directive conflict")),
        "the conflicting attempt is recorded as {:?} with error {:?}",
        attempts[0].outcome,
        attempts[0].error
    );
}

#[test]
fn a_failing_executor_is_retried_and_a_succeeded_directive_never_runs_again() {
    let scratch = Scratch::new("fanout-runner");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "subscriptions = ['job.requested']\ndirectives = ['bench.noop']",
    );
    let executor = CountingExecutor::failing_first(2);
    let config = |data_dir: &std::path::Path| {
        let mut config = fast_config(data_dir, 5);
        config.executors = executor.for_names(&["bench.noop"]);
        config
    };

    let host = open_host(config(scratch.path()), &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let first_signal = host
        .emit(new_signal("org_acme", "job.requested", json!({"job": 1})))
        .expect("emit")
        .signal
        .id;
    let first = one(
        wait_succeeded(
            &host,
            DirectiveFilter {
                signal_id: Some(first_signal.clone()),
                ..DirectiveFilter::default()
            },
            1,
        ),
        "directive",
    );
    assert_eq!(first.attempt, 3);
    assert_eq!(first.result, Some(json!({"call": 3})));
    assert_eq!(first.last_error, None);
    assert_eq!(executor.calls(&first.id), 3);
    running.shutdown();
    drop(host);

    // A new host on the same data dir: the runner works (a new directive
    // runs to success) and leaves the succeeded one alone.
    let host = open_host(config(scratch.path()), &handlers);
    let running = host.start().expect("restart");
    let second_signal = host
        .emit(new_signal("org_acme", "job.requested", json!({"job": 2})))
        .expect("emit")
        .signal
        .id;
    let second = one(
        wait_succeeded(
            &host,
            DirectiveFilter {
                signal_id: Some(second_signal),
                ..DirectiveFilter::default()
            },
            1,
        ),
        "directive",
    );
    running.shutdown();
    assert_eq!(executor.calls(&second.id), 3);
    assert_eq!(executor.calls(&first.id), 3, "never executed again");
    let again = one(directives_of(&host, &first_signal), "directive");
    assert_eq!(
        (again.state, again.attempt, again.result),
        (DirectiveState::Succeeded, 3, Some(json!({"call": 3})))
    );
}

/// One request as [`HookServer`] saw it.
#[derive(Debug, Clone)]
struct HookRequest {
    request_line: String,
    idempotency_key: Option<String>,
    signature_valid: bool,
    body: Value,
}

/// A webhook receiver on 127.0.0.1 that checks `Sighost-Signature` with its
/// secret: 200 with `{"accepted": <directive id>}` when the signature and an
/// `Idempotency-Key` are there, 401 otherwise. It records every request.
struct HookServer {
    url: String,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<HookRequest>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HookServer {
    fn start(secret: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (requests, stopping) = (requests.clone(), stopping.clone());
            move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream
                        && let Some(request) = Self::answer(stream, secret)
                    {
                        requests
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(request);
                    }
                }
            }
        });
        Self {
            url: format!("http://{addr}/hooks/audit"),
            addr,
            requests,
            stopping,
            thread: Some(thread),
        }
    }

    fn answer(mut stream: TcpStream, secret: &str) -> Option<HookRequest> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers.get("content-length")?.parse().ok()?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;

        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(&body);
        let signature_valid = headers
            .get("sighost-signature")
            .and_then(|v| v.strip_prefix("sha256="))
            .and_then(|digest| hex::decode(digest).ok())
            .is_some_and(|digest| mac.verify_slice(&digest).is_ok());
        let idempotency_key = headers.get("idempotency-key").cloned();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

        let (status, answer) = if signature_valid && idempotency_key.is_some() {
            ("200 OK", json!({"accepted": body["id"]}).to_string())
        } else {
            ("401 Unauthorized", "bad signature".to_owned())
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            answer.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(answer.as_bytes()).ok()?;
        Some(HookRequest {
            request_line: request_line.trim_end().to_owned(),
            idempotency_key,
            signature_valid,
            body,
        })
    }

    fn requests(&self) -> Vec<HookRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn executor_from_toml(text: &str) -> Arc<dyn sighost::runner::Executor> {
    let config: ExecutorConfig = toml::from_str(text).expect("executor configuration parses");
    build(&config).expect("executor builds")
}

#[test]
fn the_webhook_executor_posts_the_directive_signed_with_its_idempotency_key() {
    const SECRET: &str = "fanout-webhook-secret";
    let server = HookServer::start(SECRET);
    let scratch = Scratch::new("fanout-webhook");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "audit-trail",
        &example_handler("audit-trail"),
        "subscriptions = ['forum.*']\ndirectives = ['audit.record']",
    );
    // Signed with the wrong key: the receiver refuses it for good.
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "subscriptions = ['forum.*']\ndirectives = ['bench.noop']",
    );
    let url = &server.url;
    let mut config = fast_config(scratch.path(), 3);
    config.executors = sighost::runner::Executors::new()
        .with(
            "audit.record",
            executor_from_toml(&format!(
                "type = 'webhook'\nurl = '{url}'\nsecret = '{SECRET}'\ntimeout_ms = 5000"
            )),
        )
        .with(
            "bench.noop",
            executor_from_toml(&format!(
                "type = 'webhook'\nurl = '{url}'\nsecret = 'not-the-secret'\ntimeout_ms = 5000"
            )),
        );
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let signal_id = host
        .emit(new_signal(
            "org_acme",
            "forum.post.created",
            json!({"post": 7}),
        ))
        .expect("emit")
        .signal
        .id;

    let settled = wait_for("both directives to finish", |last| {
        let found = directives_of(&host, &signal_id);
        *last = format!(
            "{:?}",
            found
                .iter()
                .map(|d| (&d.name, d.state, d.attempt))
                .collect::<Vec<_>>()
        );
        (found.len() == 2
            && found
                .iter()
                .all(|d| matches!(d.state, DirectiveState::Succeeded | DirectiveState::Failed)))
        .then_some(found)
    });
    running.shutdown();

    let audit = settled
        .iter()
        .find(|d| d.name == "audit.record")
        .expect("audit directive");
    assert_eq!(audit.state, DirectiveState::Succeeded, "{audit:?}");
    assert_eq!(audit.attempt, 1);
    assert_eq!(audit.result, Some(json!({"accepted": audit.id})));

    let requests = server.requests();
    let signed: Vec<&HookRequest> = requests.iter().filter(|r| r.signature_valid).collect();
    let signed = one(signed, "correctly signed request");
    assert_eq!(signed.request_line, "POST /hooks/audit HTTP/1.1");
    assert_eq!(
        signed.idempotency_key.as_deref(),
        Some(audit.idempotency_key.as_str())
    );
    assert_eq!(signed.body["id"], audit.id);
    assert_eq!(signed.body["tenant"], "org_acme");
    assert_eq!(signed.body["name"], "audit.record");
    assert_eq!(signed.body["signal_id"], signal_id);
    assert_eq!(signed.body["payload"], audit.payload);
    assert_eq!(signed.body["idempotency_key"], audit.idempotency_key);

    let noop = settled
        .iter()
        .find(|d| d.name == "bench.noop")
        .expect("noop directive");
    assert_eq!(noop.state, DirectiveState::Failed, "{noop:?}");
    assert_eq!(noop.attempt, 1, "a 401 is not worth another attempt");
    let error = noop.last_error.clone().unwrap_or_default();
    assert!(error.contains("401"), "{error}");
    assert_eq!(requests.len(), 2, "{requests:?}");
}

#[test]
fn the_command_executor_hands_the_directive_to_a_program_on_stdin() {
    let scratch = Scratch::new("fanout-command");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "subscriptions = ['job.requested']\ndirectives = ['bench.noop']",
    );
    let out = scratch.path().join("directive.json");
    let key_file = scratch.path().join("key.txt");
    let script = format!(
        "cat > '{}' && printf %s \"$SIGHOST_IDEMPOTENCY_KEY\" > '{}' && printf '{{\"written\": true}}'",
        out.display(),
        key_file.display()
    );
    let mut config = fast_config(scratch.path(), 3);
    config.executors = sighost::runner::Executors::new().with(
        "bench.noop",
        executor_from_toml(&format!(
            "type = 'command'\nprogram = '/bin/sh'\nargs = ['-c', {}]\ntimeout_ms = 10000",
            toml_string(&script)
        )),
    );
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let signal_id = host
        .emit(new_signal("org_acme", "job.requested", json!({"job": 1})))
        .expect("emit")
        .signal
        .id;
    let directive = one(
        wait_succeeded(
            &host,
            DirectiveFilter {
                signal_id: Some(signal_id.clone()),
                ..DirectiveFilter::default()
            },
            1,
        ),
        "directive",
    );
    running.shutdown();

    assert_eq!(directive.result, Some(json!({"written": true})));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("written"))
        .expect("the program got JSON");
    assert_eq!(written["id"], directive.id);
    assert_eq!(written["tenant"], "org_acme");
    assert_eq!(written["name"], "bench.noop");
    assert_eq!(written["payload"], json!({"n": 1}));
    assert_eq!(written["idempotency_key"], directive.idempotency_key);
    assert_eq!(written["signal_id"], signal_id);
    assert_eq!(written["handler"], "noop");
    assert_eq!(written["attempt"], 1);
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key written"),
        directive.idempotency_key
    );
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[test]
fn a_directive_success_emits_one_deduplicated_directive_succeeded_signal() {
    let scratch = Scratch::new("fanout-lifecycle");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "subscriptions = ['job.requested']\ndirectives = ['bench.noop']",
    );
    let executor = CountingExecutor::failing_first(1);
    let mut config = fast_config(scratch.path(), 5);
    config.runner.lifecycle_signals = true;
    config.executors = executor.for_names(&["bench.noop"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let cause = host
        .emit(new_signal("org_acme", "job.requested", json!({"job": 1})))
        .expect("emit")
        .signal
        .id;
    let named = |name: &str| {
        host.store()
            .signals(&SignalFilter {
                tenant: Some("org_acme".into()),
                name: Some(name.into()),
                ..SignalFilter::default()
            })
            .expect("signals")
    };
    let succeeded = wait_for("a directive.succeeded signal", |last| {
        let found = named("directive.succeeded");
        *last = format!("{} found", found.len());
        (!found.is_empty()).then_some(found)
    });
    running.shutdown();

    let directive = one(directives_of(&host, &cause), "directive");
    assert_eq!(
        (directive.state, directive.attempt),
        (DirectiveState::Succeeded, 2)
    );
    let signal = one(succeeded, "directive.succeeded signal");
    assert_eq!(signal.causation_id.as_deref(), Some(cause.as_str()));
    assert_eq!(signal.source.as_deref(), Some("sighost.runner"));
    let key = format!("directive.succeeded:{}", directive.id);
    assert_eq!(signal.dedupe_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        signal.payload,
        json!({
            "directive_id": directive.id,
            "name": "bench.noop",
            "idempotency_key": directive.idempotency_key,
            "result": {"call": 2},
        })
    );
    assert_eq!(
        host.store()
            .signal_depth(&signal.tenant, &signal.id)
            .expect("depth"),
        Some(1)
    );

    let started = named("directive.started");
    let attempts: Vec<&Value> = started.iter().map(|s| &s.payload["attempt"]).collect();
    assert_eq!(attempts, [&json!(1), &json!(2)], "one per attempt");
    assert!(named("directive.failed").is_empty());

    // Emitting it again, as a runner that crashed after the effect would:
    // the existing signal, nothing new.
    let again = host
        .emit(NewSignal {
            dedupe_key: Some(key),
            causation_id: Some(cause),
            ..new_signal("org_acme", "directive.succeeded", json!({"again": true}))
        })
        .expect("emit");
    assert_eq!(again.status, EmitStatus::Existing);
    assert_eq!(again.signal.id, signal.id);
    assert_eq!(named("directive.succeeded").len(), 1);
}

#[test]
fn a_handler_chained_on_directive_succeeded_stops_at_the_causation_depth_limit() {
    const LIMIT: u32 = 3;
    let scratch = Scratch::new("fanout-loop");
    let handlers = scratch.subdir("handlers");
    // Every success asks for another directive: a loop only the limit ends.
    install(
        &handlers,
        "chain",
        &guest("trivial"),
        "subscriptions = ['loop.start', 'directive.succeeded']\ndirectives = ['bench.noop']",
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 5);
    config.runner.lifecycle_signals = true;
    config.sandbox.limits.causation_depth = LIMIT;
    config.executors = executor.for_names(&["bench.noop"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let start = host
        .emit(new_signal("org_acme", "loop.start", json!({})))
        .expect("emit")
        .signal
        .id;

    let every = DirectiveFilter::default();
    wait_for("the chain to reach the depth limit", |last| {
        let found = directives(&host, every.clone());
        *last = format!(
            "{:?}",
            found.iter().map(|d| (d.depth, d.state)).collect::<Vec<_>>()
        );
        (found.len() > LIMIT as usize && found.iter().all(|d| d.state == DirectiveState::Succeeded))
            .then_some(())
    });
    // Joining the runner lets the last success's lifecycle emit finish (or be refused).
    running.shutdown();

    let chain = directives(&host, every);
    let depths: Vec<u32> = chain.iter().map(|d| d.depth).collect();
    assert_eq!(
        depths,
        (0..=LIMIT).collect::<Vec<_>>(),
        "one directive per hop, up to the limit"
    );
    let succeeded = host
        .store()
        .signals(&SignalFilter {
            name: Some("directive.succeeded".into()),
            ..SignalFilter::default()
        })
        .expect("signals");
    assert_eq!(succeeded.len(), LIMIT as usize, "the chain stopped growing");
    for signal in &succeeded {
        let depth = host
            .store()
            .signal_depth(&signal.tenant, &signal.id)
            .expect("depth")
            .expect("stored");
        assert!((1..=LIMIT).contains(&depth), "{depth}");
        // Walk the causes back to the start.
        let mut hops = 0;
        let mut cause = signal.causation_id.clone();
        while let Some(id) = cause {
            hops += 1;
            if id == start {
                break;
            }
            cause = succeeded
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.causation_id.clone());
        }
        assert_eq!(
            hops, depth,
            "the chain of {} leads back to the start",
            signal.id
        );
    }
    let last = chain.last().expect("a chain");
    assert_eq!(
        executor.calls(&last.id),
        1,
        "the last directive still ran; only its signal was refused"
    );
}

#[test]
fn each_tenant_sees_only_its_own_signals_settings_packages_and_directives() {
    let scratch = Scratch::new("fanout-tenants");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "tenant-shape",
        &guest("tenant-shape"),
        "subscriptions = ['tenant.probe']\ndirectives = ['shape.tenant']\n[options]\nprobe = 'shape'",
    );
    install(
        &handlers,
        "cross-tenant",
        &guest("cross-tenant"),
        "subscriptions = ['tenant.probe']\ndirectives = ['cross.tenant']",
    );
    // Only for tenants with the forum package.
    install(
        &handlers,
        "forum-audit",
        &example_handler("audit-trail"),
        "subscriptions = ['tenant.probe']\npackage = 'forum'\ndirectives = ['audit.record']",
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 5);
    config.executors = executor.for_names(&["shape.tenant", "cross.tenant", "audit.record"]);
    let host = open_host(config, &handlers);
    create_tenant(
        &host,
        "org_a",
        json!({"plan": "gold", "region": "eu"}),
        &["forum", "billing"],
    );
    create_tenant(&host, "org_b", json!({"plan": "free"}), &["chat"]);
    create_tenant(&host, "org_victim", json!({}), &[]);
    let running = host.start().expect("start");

    let a = host
        .emit(new_signal("org_a", "tenant.probe", json!({"who": "a"})))
        .expect("emit");
    let b = host
        .emit(new_signal("org_b", "tenant.probe", json!({"who": "b"})))
        .expect("emit");
    assert_eq!(
        (a.deliveries, b.deliveries),
        (3, 2),
        "forum-audit is A's only"
    );
    let (a, b) = (a.signal.id, b.signal.id);
    wait_deliveries(&host, &a, 3, DeliveryState::Completed);
    wait_deliveries(&host, &b, 2, DeliveryState::Completed);
    wait_succeeded(&host, DirectiveFilter::default(), 5);
    running.shutdown();

    for (tenant, signal_id, settings, packages, who) in [
        (
            "org_a",
            &a,
            json!({"plan": "gold", "region": "eu"}),
            json!(["billing", "forum"]),
            "a",
        ),
        ("org_b", &b, json!({"plan": "free"}), json!(["chat"]), "b"),
    ] {
        for delivery in deliveries_of(&host, signal_id) {
            assert_eq!(delivery.tenant, tenant, "{delivery:?}");
        }
        let mine = directives(
            &host,
            DirectiveFilter {
                tenant: Some(tenant.into()),
                ..DirectiveFilter::default()
            },
        );
        assert!(
            mine.iter().all(|d| &d.signal_id == signal_id),
            "{tenant} holds only directives of its own signal: {mine:?}"
        );
        let shape = one(
            mine.iter().filter(|d| d.name == "shape.tenant").collect(),
            "shape.tenant",
        );
        assert_eq!(
            shape.payload,
            json!({
                "tenant_arg": tenant, "context_tenant": tenant,
                "settings": settings, "packages": packages,
                "options": {"probe": "shape"}, "attempt": 1, "max_attempts": 5,
                "signal_name": "tenant.probe", "payload": {"who": who},
            })
        );
        let cross = one(
            mine.iter().filter(|d| d.name == "cross.tenant").collect(),
            "cross.tenant",
        );
        assert_eq!(cross.tenant, tenant);
        assert_eq!(
            cross.payload["tenant"], "org_victim",
            "the payload is data only"
        );
    }
    let forum_audits = directives(
        &host,
        DirectiveFilter {
            name: Some("audit.record".into()),
            ..DirectiveFilter::default()
        },
    );
    assert_eq!(one(forum_audits, "audit.record").tenant, "org_a");
    assert!(
        directives(
            &host,
            DirectiveFilter {
                tenant: Some("org_victim".into()),
                ..DirectiveFilter::default()
            },
        )
        .is_empty(),
        "nothing lands in the tenant a payload names"
    );
    for directive in executor.seen() {
        let expected = if directive.signal_id == a {
            "org_a"
        } else {
            "org_b"
        };
        assert_eq!(directive.tenant, expected, "{directive:?}");
    }
}

#[test]
fn signals_emitted_before_a_shutdown_complete_exactly_once_after_a_restart() {
    const SIGNALS: usize = 200;
    const BATCH: usize = 2000;
    let scratch = Scratch::new("fanout-shutdown");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "audit-trail",
        &example_handler("audit-trail"),
        "subscriptions = ['bulk.*']\ndirectives = ['audit.record']",
    );
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "subscriptions = ['bulk.*']\ndirectives = ['bench.noop']",
    );
    let executor = CountingExecutor::new();
    let config = || {
        let mut config = fast_config(scratch.path(), 5);
        config.executors = executor.for_names(&["audit.record", "bench.noop"]);
        config
    };

    let host = open_host(config(), &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    for i in 0..SIGNALS {
        let emitted = host
            .emit(new_signal("org_acme", "bulk.item", json!({"i": i})))
            .expect("emit");
        assert_eq!(emitted.deliveries, 2);
    }
    // A batch larger than a claim, emitted just before the stop: far more
    // than the workers can finish in the moment they have.
    let batch: Vec<_> = (SIGNALS..SIGNALS + BATCH)
        .map(|i| new_signal("org_acme", "bulk.item", json!({"i": i})))
        .collect();
    host.emit_batch(batch).expect("emit the batch");
    running.shutdown();
    let left = deliveries(&host, DeliveryFilter::default())
        .iter()
        .filter(|d| d.state != DeliveryState::Completed)
        .count();
    assert!(
        left > 0,
        "every delivery completed before the shutdown: the restart would have nothing to do"
    );
    eprintln!("{left} deliveries left for the restart");
    drop(host);

    let host = open_host(config(), &handlers);
    let running = host.start().expect("restart");
    let every_delivery = DeliveryFilter::default();
    let done = wait_for("every delivery completed", |last| {
        let found = deliveries(&host, every_delivery.clone());
        let completed = found
            .iter()
            .filter(|d| d.state == DeliveryState::Completed)
            .count();
        *last = format!("{completed} of {} completed", found.len());
        (found.len() == 2 * (SIGNALS + BATCH) && completed == found.len()).then_some(found)
    });
    let all = wait_succeeded(&host, DirectiveFilter::default(), 2 * (SIGNALS + BATCH));
    running.shutdown();

    for delivery in &done {
        let attempts = host.store().attempts(delivery.id).expect("attempts");
        let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(
            (delivery.attempt, outcomes),
            (1, vec!["ok"]),
            "delivery {} of {} ran once",
            delivery.id,
            delivery.handler
        );
    }
    let mut per_pair: BTreeMap<(String, String), u32> = BTreeMap::new();
    for directive in &all {
        *per_pair
            .entry((directive.signal_id.clone(), directive.handler.clone()))
            .or_default() += 1;
        assert_eq!(executor.calls(&directive.id), 1, "{directive:?}");
    }
    assert_eq!(per_pair.len(), 2 * (SIGNALS + BATCH));
    assert!(
        per_pair.values().all(|&n| n == 1),
        "one directive per (signal, handler)"
    );
    assert_eq!(executor.total_calls() as usize, 2 * (SIGNALS + BATCH));
}

#[test]
fn a_delivery_held_by_a_worker_that_died_is_run_again_after_its_lease_expires() {
    let scratch = Scratch::new("fanout-lease");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "audit-trail",
        &example_handler("audit-trail"),
        "directives = ['audit.record']",
    );
    let executor = CountingExecutor::new();
    let mut config = fast_config(scratch.path(), 5);
    config.executors = executor.for_names(&["audit.record"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let signal_id = host
        .emit(new_signal(
            "org_acme",
            "forum.post.created",
            json!({"post": 1}),
        ))
        .expect("emit")
        .signal
        .id;
    // A worker claims it with a short lease and dies before finishing.
    let claimed = host
        .store()
        .claim_deliveries(
            &Claim::new("worker-that-died", 10, Duration::from_millis(1)),
            Utc::now(),
        )
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivery.attempt, 1);

    let running = host.start().expect("start");
    let delivery = one(
        wait_deliveries(&host, &signal_id, 1, DeliveryState::Completed),
        "delivery",
    );
    running.shutdown();
    assert_eq!(delivery.attempt, 2);
    let attempts = host.store().attempts(delivery.id).expect("attempts");
    let outcomes: Vec<(&str, &str)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.worker.as_str()))
        .collect();
    assert_eq!(outcomes.len(), 2, "{attempts:?}");
    assert_eq!(outcomes[0], ("lease_expired", "worker-that-died"));
    assert_eq!(outcomes[1].0, "ok");
    assert!(attempts[0].error.is_some());
    one(directives_of(&host, &signal_id), "directive");
}

#[test]
fn a_delivery_that_waited_too_long_for_its_lease_is_put_back_not_run_twice() {
    // One invoker, a 1 s lease and handlers that take 300 ms: of ten claimed
    // at once, the later ones start seconds after the claim. Without the
    // heartbeat their leases would end while they wait, the next claim would
    // rescue them, and they would run twice. However slow the machine, each
    // must run once: the heartbeat keeps the lease of whatever the process
    // holds, queued or running, and the fence refuses a late result.
    let scratch = Scratch::new("fanout-lease");
    let handlers = scratch.subdir("handlers");
    install(&handlers, "slow", &guest("slow"), "");
    let mut config = fast_config(scratch.path(), 10);
    config.workers.threads = 1;
    config.workers.lease = Duration::from_secs(1);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let signals: Vec<_> = (0..10)
        .map(|n| new_signal("org_acme", "slow.work", json!({"n": n})))
        .collect();
    host.emit_batch(signals).expect("emit");
    let running = host.start().expect("start");
    let done = wait_for("every slow delivery to complete", |last| {
        let found = host
            .store()
            .deliveries(&DeliveryFilter::default())
            .expect("deliveries");
        *last = summary(&found);
        found
            .iter()
            .all(|d| d.state == DeliveryState::Completed)
            .then_some(found)
    });
    running.shutdown();
    assert_eq!(done.len(), 10);
    for delivery in &done {
        let attempts = host.store().attempts(delivery.id).expect("attempts");
        let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["ok"],
            "delivery {} ran once, within its lease",
            delivery.id
        );
    }
}

#[test]
fn an_attempt_keeps_the_guests_output_bounded_and_redacted() {
    let attempts = attempts_of_one_delivery(
        "fanout-output",
        &guest("chatty"),
        "[limits]\noutput_kib = 4",
        DeliveryState::Completed,
        |_| {},
    );
    let attempt = one(attempts, "attempt");
    assert!(
        attempt.details.output_truncated,
        "the record says it was cut"
    );
    let output = &attempt.output;
    assert!(output.starts_with("hello from chatty\n"), "{output:.80}");
    assert!(output.len() <= 4 << 10, "{} bytes kept", output.len());
    assert!(output.contains("chatty filler"), "{output:.200}");
    assert!(
        output.contains("[REDACTED]") && !output.contains("abcdefghijklmnop"),
        "the token is redacted in the stored attempt: {output:.200}"
    );
}

#[test]
fn an_attempt_records_the_requests_refused_with_why_and_the_memory_reached() {
    let attempts = attempts_of_one_delivery(
        "fanout-refusals",
        &guest("directive-flood"),
        "directives = ['flood.item']",
        DeliveryState::Completed,
        |_| {},
    );
    let attempt = one(attempts, "attempt");
    assert_eq!(attempt.directive_count, 64, "the per-invocation limit");
    let refused = &attempt.details.refused_directives;
    assert_eq!(
        refused.len(),
        16,
        "the first 16 of 936 refusals: {refused:?}"
    );
    assert!(
        refused.iter().all(|r| r.starts_with("limit-exceeded: ")),
        "{refused:?}"
    );
    let peak = attempt.details.peak_memory_bytes.expect("it ran");
    assert!(peak >= 64 << 10, "at least one wasm page: {peak}");
    assert!(!attempt.details.output_truncated);
}

/// Installs `wasm` as the only handler, with `manifest`, on a host with
/// `configure` applied; emits one signal and waits for its delivery to be
/// in `state`; returns the delivery's attempts.
fn attempts_of_one_delivery(
    label: &str,
    wasm: &std::path::Path,
    manifest: &str,
    state: DeliveryState,
    configure: impl FnOnce(&mut sighost::HostConfig),
) -> Vec<sighost::store::Attempt> {
    let scratch = Scratch::new(label);
    let handlers = scratch.subdir("handlers");
    install(&handlers, "one", wasm, manifest);
    let mut config = fast_config(scratch.path(), 10);
    configure(&mut config);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let signal_id = host
        .emit(new_signal("org_acme", "one.signal", json!({})))
        .expect("emit")
        .signal
        .id;
    let delivery = one(wait_deliveries(&host, &signal_id, 1, state), "delivery");
    running.shutdown();
    host.store().attempts(delivery.id).expect("attempts")
}

/// The outcomes of the attempts of a delivery of `wasm` until it was discarded.
fn outcomes_until_discarded(
    label: &str,
    wasm: &std::path::Path,
    manifest: &str,
    configure: impl FnOnce(&mut sighost::HostConfig),
) -> Vec<String> {
    attempts_of_one_delivery(label, wasm, manifest, DeliveryState::Discarded, configure)
        .into_iter()
        .map(|a| a.outcome.to_string())
        .collect()
}

#[test]
fn a_handler_over_its_memory_limit_is_retried_then_discarded() {
    let outcomes = outcomes_until_discarded(
        "fanout-memory",
        &guest("memory-bomb"),
        "max_attempts = 2\n[limits]\nmemory_mib = 16",
        |_| {},
    );
    assert_eq!(outcomes, ["memory_exceeded", "memory_exceeded"]);
}

#[test]
fn a_handler_out_of_fuel_is_retried_then_discarded() {
    let outcomes = outcomes_until_discarded(
        "fanout-fuel",
        &guest("looper"),
        "max_attempts = 2\n[limits]\nfuel = 5000000",
        |config| config.sandbox.fuel_metering = true,
    );
    assert_eq!(outcomes, ["fuel_exhausted", "fuel_exhausted"]);
}

#[test]
fn a_directive_that_exhausts_its_attempts_fails_and_emits_directive_failed() {
    let scratch = Scratch::new("fanout-directive-failed");
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "subscriptions = ['job.requested']\ndirectives = ['bench.noop']",
    );
    let executor = CountingExecutor::failing_first(u32::MAX);
    let mut config = fast_config(scratch.path(), 2);
    config.runner.lifecycle_signals = true;
    config.executors = executor.for_names(&["bench.noop"]);
    let host = open_host(config, &handlers);
    create_tenant(&host, "org_acme", json!({}), &[]);
    let running = host.start().expect("start");
    let cause = host
        .emit(new_signal("org_acme", "job.requested", json!({"job": 1})))
        .expect("emit")
        .signal
        .id;
    let failed_signals = || {
        host.store()
            .signals(&SignalFilter {
                tenant: Some("org_acme".into()),
                name: Some("directive.failed".into()),
                ..SignalFilter::default()
            })
            .expect("signals")
    };
    let signal = one(
        wait_for("a directive.failed signal", |last| {
            let found = failed_signals();
            *last = format!("{} found", found.len());
            (!found.is_empty()).then_some(found)
        }),
        "directive.failed signal",
    );
    running.shutdown();

    let directive = one(directives_of(&host, &cause), "directive");
    assert_eq!(
        (directive.state, directive.attempt),
        (DirectiveState::Failed, 2)
    );
    let error = "scripted failure 2 of 4294967295 (after 2 attempts)";
    assert_eq!(directive.last_error.as_deref(), Some(error));
    assert_eq!(
        executor.calls(&directive.id),
        2,
        "no call after the last attempt"
    );
    assert_eq!(signal.causation_id.as_deref(), Some(cause.as_str()));
    let key = format!("directive.failed:{}", directive.id);
    assert_eq!(signal.dedupe_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        signal.payload,
        json!({
            "directive_id": directive.id,
            "name": "bench.noop",
            "idempotency_key": directive.idempotency_key,
            "error": error,
        })
    );
    assert_eq!(
        failed_signals().len(),
        1,
        "one directive.failed per directive"
    );
}
