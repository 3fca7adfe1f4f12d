//! The delivery rules, decided once for both stores (and the sandbox): how a
//! signal is built from what was emitted, which targets get a delivery, how
//! deep a chain of causes is, whether a directive repeats or contradicts one
//! already written, and what becomes of a delivery whose lease ran out or an
//! operator retries or cancels. Each is pure: the stores fetch the facts,
//! ask here, and write the answer with their own SQL.

use chrono::{DateTime, Utc};

use crate::signal::Signal;
use crate::store::{DeliveryState, DeliveryTarget, DirectiveState, NewSignal};

/// The stored signal for what was emitted: the store's id and clock, the
/// emitter's fields, `{}` for absent metadata, `now` for an absent
/// `occurred_at`.
pub fn new_signal(new: &NewSignal, id: String, now: DateTime<Utc>) -> Signal {
    Signal {
        id,
        tenant: new.tenant.clone(),
        name: new.name.clone(),
        payload: new.payload.clone(),
        metadata: new
            .metadata
            .clone()
            .unwrap_or_else(|| serde_json::json!({})),
        dedupe_key: new.dedupe_key.clone(),
        occurred_at: new.occurred_at.unwrap_or(now),
        correlation_id: new.correlation_id.clone(),
        causation_id: new.causation_id.clone(),
        actor: new.actor.clone(),
        subject: new.subject.clone(),
        source: new.source.clone(),
        inserted_at: now,
    }
}

/// A fresh signal id: UUIDv7, so ids sort by creation time.
pub fn new_signal_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `target` gets a delivery in a tenant with these packages: a
/// handler of a package only reaches the tenants that installed it.
pub fn is_deliverable(target: &DeliveryTarget, packages: &[String]) -> bool {
    target.package.as_ref().is_none_or(|p| packages.contains(p))
}

/// A signal's causation depth, given its cause as the store found it *in the
/// emitting tenant*: one more than the cause's, or 0 without one. A cause of
/// another tenant must be looked up as unknown (the store asks by tenant), so
/// that no tenant learns whether another's signal id exists.
pub fn causation_depth(cause_depth_in_tenant: Option<u32>) -> u32 {
    cause_depth_in_tenant.map_or(0, |depth| depth + 1)
}

/// How a requested directive compares with one of its tenant already
/// holding the same idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveMatch {
    /// No directive holds the key: write it.
    New,
    /// Same name and payload: the same intent asked again (a retry, a
    /// replay); nothing new is written.
    Duplicate,
    /// Another name or payload under the key: never guess which is right.
    Conflict,
}

/// Compares a request with the directive already holding its key, if any.
pub fn match_directive(
    existing: Option<(&str, &serde_json::Value)>,
    name: &str,
    payload: &serde_json::Value,
) -> DirectiveMatch {
    match existing {
        None => DirectiveMatch::New,
        Some((held_name, held_payload)) if held_name == name && held_payload == payload => {
            DirectiveMatch::Duplicate
        }
        Some(_) => DirectiveMatch::Conflict,
    }
}

/// What retention keeps of a directive's payload once the directive is
/// pruned: a digest that is equal exactly when the payloads are, as
/// [`match_directive`] compares them (serde_json writes a value's object keys
/// in one order, and `1` and `1.0` apart, as it compares them). 128 bits of
/// SHA-256, in hex.
pub fn payload_digest(payload: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(payload.to_string().as_bytes());
    hex::encode(&digest[..16])
}

/// [`match_directive`] against the key of a pruned directive: its name and
/// [`payload_digest`].
pub fn match_pruned_directive(
    held: (&str, &str),
    name: &str,
    payload: &serde_json::Value,
) -> DirectiveMatch {
    let (held_name, held_digest) = held;
    if held_name == name && held_digest == payload_digest(payload) {
        DirectiveMatch::Duplicate
    } else {
        DirectiveMatch::Conflict
    }
}

/// Why a delivery whose directive conflicts is discarded.
pub fn conflict_error(key: &str) -> String {
    format!(
        "directive conflict: idempotency key {key:?} already belongs to a directive with another payload"
    )
}

/// The error of the attempt a lost lease ends.
pub const LEASE_EXPIRED_ATTEMPT_ERROR: &str =
    "the worker holding the lease stopped before finishing";
/// The delivery's error after its lease was rescued.
pub const LEASE_EXPIRED_DELIVERY_ERROR: &str =
    "lease expired: the worker holding it stopped before finishing";
/// The directive's error after its lease was rescued.
pub const LEASE_EXPIRED_DIRECTIVE_ERROR: &str =
    "lease expired: the runner holding it stopped before finishing";

/// What a delivery whose lease expired becomes: retried like any failed
/// attempt, or discarded if that was its last. The stores apply it in one
/// set-based statement, as `CASE WHEN attempt >= max_attempts`, with the two
/// states from here (conformance: `discards_a_delivery_whose_last_attempt_lost_its_lease`).
pub const AFTER_LOST_LEASE: (DeliveryState, DeliveryState) =
    (DeliveryState::Retryable, DeliveryState::Discarded);

/// The deliveries an operator may retry: those that stopped (discarded,
/// canceled) or wait for a retry (which is then due at once).
pub const RETRYABLE_BY_OPERATOR: &[DeliveryState] = &[
    DeliveryState::Discarded,
    DeliveryState::Canceled,
    DeliveryState::Retryable,
];

/// The deliveries an operator may cancel: those not running or finished.
pub const CANCELABLE_DELIVERIES: &[DeliveryState] =
    &[DeliveryState::Available, DeliveryState::Retryable];

/// The directives an operator may cancel: those not running or finished.
pub const CANCELABLE_DIRECTIVES: &[DirectiveState] = &[DirectiveState::Requested];

/// The error a canceled delivery or directive keeps.
pub const CANCELED_BY_OPERATOR: &str = "canceled by an operator";

/// States as an SQL list (`'a', 'b'`), for the stores' `state IN (…)`. The
/// names are fixed identifiers, never input.
pub fn sql_list<S: Copy>(states: &[S], name: fn(S) -> &'static str) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", name(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signal_takes_the_stores_id_and_clock_and_defaults() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let new = NewSignal {
            tenant: "org_a".into(),
            name: "a.b".into(),
            payload: json!({"x": 1}),
            ..NewSignal::default()
        };
        let signal = new_signal(&new, "id-1".into(), now);
        assert_eq!(signal.id, "id-1");
        assert_eq!(signal.metadata, json!({}));
        assert_eq!((signal.occurred_at, signal.inserted_at), (now, now));
        assert_eq!(signal.payload, json!({"x": 1}));
    }

    #[test]
    fn only_tenants_with_the_package_get_its_handlers() {
        let target = |package: Option<&str>| DeliveryTarget {
            handler: "h".into(),
            package: package.map(str::to_owned),
            max_attempts: 3,
        };
        let installed = vec!["forum".to_owned()];
        assert!(is_deliverable(&target(None), &[]));
        assert!(is_deliverable(&target(Some("forum")), &installed));
        assert!(!is_deliverable(&target(Some("billing")), &installed));
    }

    #[test]
    fn depth_counts_causes_in_the_tenant_only() {
        assert_eq!(causation_depth(None), 0, "no cause, or another tenant's");
        assert_eq!(causation_depth(Some(0)), 1);
        assert_eq!(causation_depth(Some(16)), 17);
    }

    #[test]
    fn a_directive_is_new_a_duplicate_or_a_conflict() {
        let payload = json!({"a": 1});
        assert_eq!(match_directive(None, "x.y", &payload), DirectiveMatch::New);
        assert_eq!(
            match_directive(Some(("x.y", &json!({"a": 1}))), "x.y", &payload),
            DirectiveMatch::Duplicate
        );
        assert_eq!(
            match_directive(Some(("x.y", &json!({"a": 2}))), "x.y", &payload),
            DirectiveMatch::Conflict
        );
        assert_eq!(
            match_directive(Some(("x.z", &json!({"a": 1}))), "x.y", &payload),
            DirectiveMatch::Conflict,
            "another name under the key"
        );
    }

    #[test]
    fn a_pruned_directives_digest_matches_exactly_the_payloads_that_match() {
        let held = payload_digest(&json!({"a": 1, "b": [true, null]}));
        let same_other_order = json!({"b": [true, null], "a": 1});
        assert_eq!(
            match_pruned_directive(("x.y", &held), "x.y", &same_other_order),
            DirectiveMatch::Duplicate
        );
        for other in [
            json!({"a": 1.0, "b": [true, null]}),
            json!({"a": 1, "b": [true]}),
        ] {
            assert_eq!(
                match_pruned_directive(("x.y", &held), "x.y", &other),
                DirectiveMatch::Conflict,
                "{other}"
            );
        }
        assert_eq!(
            match_pruned_directive(("x.z", &held), "x.y", &same_other_order),
            DirectiveMatch::Conflict,
            "another name under the key"
        );
    }

    #[test]
    fn state_lists_are_quoted_names() {
        assert_eq!(
            sql_list(CANCELABLE_DELIVERIES, DeliveryState::as_str),
            "'available', 'retryable'"
        );
    }
}
