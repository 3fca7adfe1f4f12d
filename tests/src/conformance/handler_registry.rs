//! Conformance: the handlers each host registers in the store, which emits
//! from any client target (`sighost::registry`, ARCHITECTURE.md §2).

use sighost::store::{HandlerRegistration, Store, StoreError};

use super::{TestDatabase, at};

fn registration(host: &str, handler: &str, subscriptions: &[&str]) -> HandlerRegistration {
    HandlerRegistration {
        host: host.into(),
        handler: handler.into(),
        digest: Some(format!("sha256:{handler}")),
        subscriptions: subscriptions.iter().map(|s| (*s).to_owned()).collect(),
        package: None,
        max_attempts: 7,
        load_error: None,
        registered_at: at(1),
    }
}

fn names(store: &dyn Store) -> Vec<(String, String)> {
    store
        .registered_handlers()
        .expect("registrations")
        .into_iter()
        .map(|r| (r.handler, r.host))
        .collect()
}

pub fn keeps_each_hosts_registrations_and_replaces_only_its_own(store: &dyn Store) {
    let echo = HandlerRegistration {
        package: Some("forum".into()),
        ..registration("host-a", "echo", &["forum.*", "echo.ping"])
    };
    let broken = HandlerRegistration {
        digest: None,
        load_error: Some("not a component".into()),
        ..registration("host-a", "broken", &[])
    };
    store
        .register_handlers("host-a", &[echo.clone(), broken.clone()])
        .expect("register host-a");
    store
        .register_handlers("host-b", &[registration("host-b", "echo", &["echo.*"])])
        .expect("register host-b");
    let all = store.registered_handlers().expect("registrations");
    assert_eq!(
        all,
        vec![broken, echo, registration("host-b", "echo", &["echo.*"]),],
        "every field read back, by handler then host"
    );

    // host-a's handlers changed: its rows are replaced, host-b's stay.
    store
        .register_handlers("host-a", &[registration("host-a", "audit", &["*"])])
        .expect("register host-a again");
    assert_eq!(
        names(store),
        vec![
            ("audit".to_owned(), "host-a".to_owned()),
            ("echo".to_owned(), "host-b".to_owned()),
        ]
    );
    // A host with no handlers left registers none.
    store.register_handlers("host-a", &[]).expect("empty");
    assert_eq!(names(store), vec![("echo".to_owned(), "host-b".to_owned())]);
}

pub fn refuses_to_register_for_another_host(store: &dyn Store) {
    let refused = store.register_handlers("host-a", &[registration("host-b", "echo", &["*"])]);
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert!(names(store).is_empty(), "nothing written");
}

pub fn forgets_a_handler_on_every_host_when_an_operator_removes_it(store: &dyn Store) {
    for host in ["host-a", "host-b"] {
        store
            .register_handlers(
                host,
                &[
                    registration(host, "echo", &["*"]),
                    registration(host, "audit", &["*"]),
                ],
            )
            .expect("register");
    }
    assert_eq!(store.unregister_handler("echo").expect("remove"), 2);
    assert_eq!(
        names(store),
        vec![
            ("audit".to_owned(), "host-a".to_owned()),
            ("audit".to_owned(), "host-b".to_owned()),
        ]
    );
    assert_eq!(store.unregister_handler("echo").expect("again"), 0);
    // A host retired for good: all of its rows go, another host's stay.
    assert_eq!(store.unregister_host("host-a").expect("retire"), 1);
    assert_eq!(
        names(store),
        vec![("audit".to_owned(), "host-b".to_owned())]
    );
}

/// Two processes that share a host id (one data directory) write the same
/// rows: a registration replaces, it never conflicts.
pub fn registers_the_same_handlers_twice_without_a_conflict(store: &dyn Store) {
    let echo = registration("host-a", "echo", &["*"]);
    store
        .register_handlers("host-a", std::slice::from_ref(&echo))
        .expect("first");
    let newer = HandlerRegistration {
        digest: Some("sha256:newer".into()),
        registered_at: at(2),
        ..echo
    };
    store
        .register_handlers("host-a", std::slice::from_ref(&newer))
        .expect("again");
    assert_eq!(store.registered_handlers().expect("read"), vec![newer]);
}

/// Registrations are durable: another process on the same database sees
/// them.
pub fn shows_registrations_to_another_process(database: &dyn TestDatabase) {
    let first = database.open();
    first
        .register_handlers("host-a", &[registration("host-a", "echo", &["*"])])
        .expect("register");
    drop(first);
    let second = database.open();
    assert_eq!(
        names(&*second),
        vec![("echo".to_owned(), "host-a".to_owned())]
    );
}
