//! A store that refuses result writes, as a full or failing disk does:
//! results are retried until they land (a succeeded directive is not run
//! again), the failure shows in `/readyz`'s state, and shutdown ends within
//! its bound, leaving what could not be written to the lease rescue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use sighost::Sighost;
use sighost::store::{DeliveryState, DirectiveState, Store};
use sighost_tests::failing_store::FailingStore;
use sighost_tests::guest;
use sighost_tests::host_helpers::{
    CountingExecutor, PATIENCE, Scratch, deliveries_in, fast_config, install, numbered_signals,
    wait_for,
};

fn host_on_failing_store(
    scratch: &Scratch,
    executor: &Arc<CountingExecutor>,
) -> (Sighost, Arc<FailingStore>) {
    host_on_failing_store_with(scratch, executor, |_| {})
}

fn host_on_failing_store_with(
    scratch: &Scratch,
    executor: &Arc<CountingExecutor>,
    configure: impl FnOnce(&mut sighost::HostConfig),
) -> (Sighost, Arc<FailingStore>) {
    let handlers = scratch.subdir("handlers");
    install(
        &handlers,
        "noop",
        &guest("trivial"),
        "directives = ['bench.noop']\n",
    );
    let mut config = fast_config(scratch.path(), 3);
    config.executors = executor.for_names(&["bench.noop"]);
    configure(&mut config);
    let real = config
        .store
        .open(chrono::Utc::now())
        .expect("open the store");
    let failing = FailingStore::new(real);
    let host = Sighost::with_store(failing.clone() as Arc<dyn Store>, config).expect("host");
    assert!(
        host.load_handlers_dir(&handlers)
            .expect("handlers")
            .is_empty()
    );
    host.create_tenant("org_a", json!({})).expect("tenant");
    (host, failing)
}

fn emit(host: &Sighost, count: usize) {
    host.emit_batch(numbered_signals("org_a", "fail.tested", count))
        .expect("emit");
}

#[test]
fn results_the_store_refuses_are_retried_until_it_takes_them() {
    let scratch = Scratch::new("failing-retry");
    let executor = CountingExecutor::new();
    let (host, failing) = host_on_failing_store(&scratch, &executor);
    failing.fail_delivery_results.store(true, Ordering::SeqCst);
    failing.fail_directive_results.store(true, Ordering::SeqCst);
    emit(&host, 10);
    let running = host.start().expect("start");
    wait_for("the failure to show", |last| {
        *last = format!("{:?}", host.store_health().failing());
        host.store_health().failing()
    });
    assert_eq!(deliveries_in(&host, DeliveryState::Completed), 0);
    // The disk is back: every result lands, and each directive runs once.
    failing.fail_delivery_results.store(false, Ordering::SeqCst);
    wait_for("the deliveries to complete", |last| {
        let done = deliveries_in(&host, DeliveryState::Completed);
        *last = format!("{done} completed");
        (done == 10).then_some(())
    });
    // A directive runs; its result cannot be written, so its runner thread
    // keeps trying (before, it gave up and the directive sat `running` until
    // its lease expired, then ran again).
    wait_for("a directive to be run", |last| {
        *last = format!("{} calls", executor.total_calls());
        (executor.total_calls() >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    failing
        .fail_directive_results
        .store(false, Ordering::SeqCst);
    wait_for("the directives to succeed", |last| {
        let directives = host
            .store()
            .directives(&Default::default())
            .expect("directives");
        *last = format!(
            "{:?}",
            directives.iter().map(|d| d.state).collect::<Vec<_>>()
        );
        directives
            .iter()
            .all(|d| d.state == DirectiveState::Succeeded)
            .then_some(())
    });
    assert_eq!(executor.total_calls(), 10, "no directive ran twice");
    assert_eq!(host.store_health().failing(), None, "recovered");
    running.shutdown();
}

#[test]
fn shutdown_ends_within_its_bound_while_the_store_refuses_results() {
    let scratch = Scratch::new("failing-shutdown");
    let executor = CountingExecutor::new();
    let (host, failing) = host_on_failing_store(&scratch, &executor);
    failing.fail_delivery_results.store(true, Ordering::SeqCst);
    emit(&host, 5);
    let running = host.start().expect("start");
    wait_for("the failure to show", |_| host.store_health().failing());
    let started = Instant::now();
    let stopped = std::thread::spawn(move || running.shutdown());
    while !stopped.is_finished() {
        assert!(
            started.elapsed() < PATIENCE,
            "shutdown still waiting for the store after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stopped.join().expect("shutdown");
    // Nothing was lost: the deliveries wait for their leases, still running.
    assert_eq!(deliveries_in(&host, DeliveryState::Running), 5);
}

#[test]
fn a_result_the_store_will_not_take_holds_back_no_other() {
    let scratch = Scratch::new("failing-poison");
    let executor = CountingExecutor::new();
    // Attempts to spare: on a slow machine the poison one may outlive its
    // lease and be rescued, and must not run out of attempts meanwhile.
    let (host, failing) = host_on_failing_store_with(&scratch, &executor, |config| {
        config.workers.retry = sighost::retry::RetryPolicy::fast(10)
    });
    emit(&host, 50);
    let poison = host
        .store()
        .deliveries(&Default::default())
        .expect("deliveries")[0]
        .id;
    *failing.poison_delivery.lock().expect("lock") = Some(poison);
    let running = host.start().expect("start");
    // The batch holding it is refused; each result is then tried on its own,
    // so the other 49 land, in this batch and the later ones, while the poison one keeps failing.
    wait_for("the other 49 to complete", |last| {
        let done = deliveries_in(&host, DeliveryState::Completed);
        *last = format!("{done} completed");
        (done == 49).then_some(())
    });
    let held = host
        .store()
        .deliveries(&sighost::store::DeliveryFilter {
            ids: vec![poison],
            ..Default::default()
        })
        .expect("deliveries");
    assert_ne!(held[0].state, DeliveryState::Completed, "{held:?}");
    *failing.poison_delivery.lock().expect("lock") = None;
    wait_for(
        "the poison one to complete once the store takes it",
        |last| {
            let done = deliveries_in(&host, DeliveryState::Completed);
            *last = format!("{done} completed");
            (done == 50).then_some(())
        },
    );
    running.shutdown();
}

#[test]
fn readyz_answers_503_while_the_store_refuses_results() {
    let scratch = Scratch::new("failing-readyz");
    let executor = CountingExecutor::new();
    let (host, failing) = host_on_failing_store(&scratch, &executor);
    let host = Arc::new(host);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("listen");
    let url = format!("http://{}/readyz", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = sighost::http::Api::new(host.clone(), sighost::http::Tokens::default());
    let server = runtime.spawn(api.serve(listener, async {
        let _ = stopped.await;
    }));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let readyz = || {
        let mut answer = agent.get(&url).call().expect("readyz answers");
        let body = answer.body_mut().read_to_string().expect("body");
        (answer.status().as_u16(), body)
    };
    assert_eq!(readyz().0, 200);

    failing.fail_delivery_results.store(true, Ordering::SeqCst);
    emit(&host, 3);
    let running = host.start().expect("start");
    let (_, body) = wait_for("readyz to say the store fails", |last| {
        let answer = readyz();
        *last = format!("{answer:?}");
        (answer.0 == 503).then_some(answer)
    });
    assert!(
        !body.contains("injected by the test"),
        "the database's words stay in the log: {body}"
    );
    failing.fail_delivery_results.store(false, Ordering::SeqCst);
    wait_for("readyz to recover", |last| {
        let answer = readyz();
        *last = format!("{answer:?}");
        (answer.0 == 200).then_some(())
    });
    running.shutdown();
    let _ = stop.send(());
    runtime
        .block_on(server)
        .expect("server task")
        .expect("served");
}

#[test]
fn a_directive_result_the_store_will_not_take_holds_back_no_other_directive() {
    // One runner thread: before, it retried the refused result in place and
    // ran nothing else. A lease of 2 s: the poison one's lease is kept
    // alive while its result waits, so it is not rescued and run again.
    let scratch = Scratch::new("failing-poison-directive");
    let executor = CountingExecutor::new();
    let (host, failing) = host_on_failing_store_with(&scratch, &executor, |config| {
        config.runner.threads = 1;
        config.runner.lease = Duration::from_secs(2);
    });
    failing.poison_first_directive.store(true, Ordering::SeqCst);
    emit(&host, 10);
    let running = host.start().expect("start");
    let states = || {
        host.store()
            .directives(&Default::default())
            .expect("directives")
            .into_iter()
            .map(|d| (d.id, d.state))
            .collect::<Vec<_>>()
    };
    wait_for("nine directives to succeed beside the poison one", |last| {
        let states = states();
        *last = format!("{states:?}");
        let succeeded = states
            .iter()
            .filter(|(_, s)| *s == DirectiveState::Succeeded)
            .count();
        (states.len() == 10 && succeeded == 9).then_some(())
    });
    let poisoned = failing
        .poisoned_directive
        .lock()
        .expect("lock")
        .clone()
        .expect("a poisoned directive");
    assert!(
        states()
            .iter()
            .any(|(id, s)| *id == poisoned && *s != DirectiveState::Succeeded),
        "{:?}",
        states()
    );
    // Several leases long: a rescue would have run it again by now.
    std::thread::sleep(Duration::from_millis(4500));
    failing
        .poison_first_directive
        .store(false, Ordering::SeqCst);
    wait_for(
        "the poison one to succeed once the store takes it",
        |last| {
            let states = states();
            *last = format!("{states:?}");
            states
                .iter()
                .all(|(_, s)| *s == DirectiveState::Succeeded)
                .then_some(())
        },
    );
    running.shutdown();
    assert_eq!(
        executor.calls(&poisoned),
        1,
        "its result waited; it was not run again"
    );
    assert_eq!(executor.total_calls(), 10);
}
