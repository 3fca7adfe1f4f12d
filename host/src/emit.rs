//! Emit: check a new signal, then store it with one delivery per subscribed
//! handler, in one transaction, and wake the workers.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::limits::Limits;
use crate::registry::HandlerRegistry;
use crate::secrets::find_secret;
use crate::signal::check_name;
use crate::store::{
    DeliveryTarget, Emitted, HandlerRegistration, NewSignal, Store, StoreError, check_tenant_id,
};
use crate::wake::Wake;

/// Longest dedupe key, correlation or causation id, source or entity field.
const MAX_FIELD_BYTES: usize = 255;

/// Why a signal was refused. Nothing is stored when emit fails.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("invalid signal: {0}")]
    Invalid(String),
    #[error("payload of {name} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
    #[error(
        "{name} carries a credential at {pointer}; signals are kept forever, so pass a reference instead"
    )]
    SecretDetected { name: String, pointer: String },
    #[error(
        "{name} would be {depth} causes deep, over the causation-depth limit of {limit}: a loop?"
    )]
    DepthExceeded {
        name: String,
        depth: u32,
        limit: u32,
    },
    /// A cap an operator set on the tenant (`tenant_limits.rs`).
    #[error(transparent)]
    Refused(#[from] crate::tenant_limits::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a signal against ARCHITECTURE.md §1 without touching the store.
pub fn validate(signal: &NewSignal, limits: &Limits) -> Result<(), EmitError> {
    check_tenant_id(&signal.tenant).map_err(|e| EmitError::Invalid(e.to_string()))?;
    check_name(&signal.name).map_err(EmitError::Invalid)?;
    let name = &signal.name;
    if !signal.payload.is_object() {
        return Err(EmitError::Invalid(format!(
            "payload of {name} must be a JSON object"
        )));
    }
    if signal.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(EmitError::Invalid(format!(
            "metadata of {name} must be a JSON object"
        )));
    }
    let size = signal.payload.to_string().len();
    if size > limits.signal_payload_bytes {
        return Err(EmitError::TooLarge {
            name: name.clone(),
            size,
            limit: limits.signal_payload_bytes,
        });
    }
    for document in [Some(&signal.payload), signal.metadata.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(pointer) = find_secret(document) {
            return Err(EmitError::SecretDetected {
                name: name.clone(),
                pointer,
            });
        }
    }
    let fields = [
        ("dedupe_key", signal.dedupe_key.as_deref()),
        ("correlation_id", signal.correlation_id.as_deref()),
        ("causation_id", signal.causation_id.as_deref()),
        ("source", signal.source.as_deref()),
        ("actor.type", signal.actor.as_ref().map(|a| a.kind.as_str())),
        ("actor.id", signal.actor.as_ref().map(|a| a.id.as_str())),
        (
            "subject.type",
            signal.subject.as_ref().map(|s| s.kind.as_str()),
        ),
        ("subject.id", signal.subject.as_ref().map(|s| s.id.as_str())),
    ];
    for (field, value) in fields {
        let Some(value) = value else { continue };
        if value.is_empty() || value.len() > MAX_FIELD_BYTES {
            return Err(EmitError::Invalid(format!(
                "{field} of {name} must be 1 to {MAX_FIELD_BYTES} bytes"
            )));
        }
        // PostgreSQL text cannot hold NUL and SQLite's can: refused here, in
        // the same words on both stores.
        if value.contains('\0') {
            return Err(EmitError::Invalid(format!(
                "{field} of {name} contains a NUL byte, which sighost does not store"
            )));
        }
    }
    Ok(())
}

/// Emits signals on behalf of the CLI, the HTTP API, the directive runner's
/// lifecycle signals and library users.
#[derive(Debug)]
pub struct Emitter {
    store: Arc<dyn Store>,
    registry: Arc<HandlerRegistry>,
    limits: Limits,
    /// Wakes this process's delivery workers, so a new delivery starts within
    /// milliseconds instead of at the next poll.
    wake: Arc<Wake>,
    /// The tenants' rate and quota caps, and their refusals.
    caps: crate::tenant_limits::Caps,
    /// What the store says the hosts have registered, read at most once
    /// per [`REGISTRATIONS_MAX_AGE`].
    registered: Mutex<Option<(Instant, Arc<Vec<HandlerRegistration>>)>>,
    /// This host's id once it registers its own handlers (`Sighost::start`).
    own_host: Arc<OnceLock<String>>,
}

/// How old the store's registrations an emit goes by may be: a handler a
/// host has just registered gets deliveries from other processes' emits
/// within this. A process reads them afresh the first time it emits.
pub const REGISTRATIONS_MAX_AGE: Duration = Duration::from_secs(1);

impl Emitter {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<HandlerRegistry>,
        limits: Limits,
        wake: Arc<Wake>,
        own_host: Arc<OnceLock<String>>,
    ) -> Self {
        Self {
            store,
            registry,
            limits,
            wake,
            caps: Default::default(),
            registered: Mutex::default(),
            own_host,
        }
    }

    /// The handlers a signal named `signal_name` goes to: those loaded here
    /// and those registered in the store by any host ([`crate::registry::targets`]).
    pub fn targets_for(&self, signal_name: &str) -> Result<Vec<DeliveryTarget>, StoreError> {
        let registered = self.registered()?;
        Ok(crate::registry::targets(
            &self.registry,
            &registered,
            self.own_host.get().map(String::as_str),
            signal_name,
        ))
    }

    /// Whether a handler of this name is loaded here or runs on some host.
    pub fn knows_handler(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.registry.get(name).is_some()
            || self
                .registered()?
                .iter()
                .any(|r| r.handler == name && r.digest.is_some()))
    }

    fn registered(&self) -> Result<Arc<Vec<HandlerRegistration>>, StoreError> {
        let mut cached = self.registered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((read_at, registered)) = cached.as_ref()
            && read_at.elapsed() < REGISTRATIONS_MAX_AGE
        {
            return Ok(registered.clone());
        }
        let registered = Arc::new(self.store.registered_handlers()?);
        *cached = Some((Instant::now(), registered.clone()));
        Ok(registered)
    }

    /// Checks what a batch would add against each tenant's caps: per item
    /// its tenant and how many deliveries it may make. `signals` says
    /// whether the items are new signals (an emit, which the rate counts) or
    /// stored ones delivered again (a replay, which only the quota counts).
    pub fn check_caps<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, usize)>,
        signals: bool,
    ) -> Result<(), EmitError> {
        let mut per_tenant: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
        for (tenant, deliveries) in items {
            let entry = per_tenant.entry(tenant).or_default();
            entry.0 += usize::from(signals);
            entry.1 += deliveries as u64;
        }
        for (tenant, (signals, deliveries)) in per_tenant {
            self.caps
                .check(&*self.store, tenant, signals, deliveries)??;
        }
        Ok(())
    }

    /// How often each tenant's emits were refused by its caps, in this
    /// process.
    pub fn refusals(&self) -> std::collections::BTreeMap<String, crate::tenant_limits::Refusals> {
        self.caps.refusals()
    }

    /// Whether `signal` may be emitted: [`validate`], then its causation
    /// depth, which the store is asked (a batch checks each item with it, to
    /// name every bad one before storing none).
    pub fn check(&self, signal: &NewSignal) -> Result<(), EmitError> {
        validate(signal, &self.limits)?;
        if let Some(cause) = &signal.causation_id {
            // The same rule as the store's, and asked of the emitting
            // tenant only: another tenant's signal id counts as unknown.
            let depth =
                crate::rules::causation_depth(self.store.signal_depth(&signal.tenant, cause)?);
            if depth > self.limits.causation_depth {
                return Err(EmitError::DepthExceeded {
                    name: signal.name.clone(),
                    depth,
                    limit: self.limits.causation_depth,
                });
            }
        }
        Ok(())
    }

    /// The all-or-nothing check of a batch (an HTTP batch, `emit --file`):
    /// every item, as its caller read it, is [`Emitter::check`]ed and its
    /// tenant looked up, so that one answer names every bad item by its
    /// position. Returns the signals when all are good. A fault of the
    /// store is the host's, not an item's: it is returned as such.
    pub fn check_each(
        &self,
        items: Vec<Result<NewSignal, String>>,
    ) -> Result<Result<Vec<NewSignal>, Vec<ItemError>>, StoreError> {
        let mut tenants: std::collections::BTreeMap<String, bool> = Default::default();
        let mut invalid = Vec::new();
        let mut valid = Vec::with_capacity(items.len());
        for (position, item) in items.into_iter().enumerate() {
            let signal = match item {
                Ok(signal) => signal,
                Err(error) => {
                    invalid.push((position, error));
                    continue;
                }
            };
            match self.check(&signal) {
                Ok(()) => {}
                Err(EmitError::Store(error)) => return Err(error),
                Err(error) => {
                    invalid.push((position, error.to_string()));
                    continue;
                }
            }
            // The store would refuse the whole batch for one unknown tenant.
            let known = match tenants.get(&signal.tenant) {
                Some(known) => *known,
                None => {
                    let known = self.store.tenant(&signal.tenant)?.is_some();
                    tenants.insert(signal.tenant.clone(), known);
                    known
                }
            };
            if known {
                valid.push(signal);
            } else {
                let unknown = StoreError::UnknownTenant(signal.tenant.clone());
                invalid.push((position, unknown.to_string()));
            }
        }
        Ok(if invalid.is_empty() {
            Ok(valid)
        } else {
            Err(invalid)
        })
    }

    pub fn emit(&self, signal: NewSignal, now: DateTime<Utc>) -> Result<Emitted, EmitError> {
        let mut emitted = self.emit_batch(vec![signal], now)?;
        Ok(emitted.remove(0))
    }

    /// Emits all the signals or none: one invalid signal refuses the batch.
    pub fn emit_batch(
        &self,
        signals: Vec<NewSignal>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Emitted>, EmitError> {
        let batch = signals
            .into_iter()
            .map(|signal| self.targeted(signal))
            .collect::<Result<Vec<_>, _>>()?;
        self.check_caps(
            batch
                .iter()
                .map(|(s, targets)| (s.tenant.as_str(), targets.len())),
            true,
        )?;
        self.write(&batch, now)
    }

    /// A checked signal with the handlers it goes to.
    pub(crate) fn targeted(&self, signal: NewSignal) -> Result<Targeted, EmitError> {
        self.check(&signal)?;
        let targets = self.targets_for(&signal.name)?;
        Ok((signal, targets))
    }

    /// Writes targeted signals whose tenants' caps were checked, in one
    /// transaction, and wakes the workers.
    pub(crate) fn write(
        &self,
        batch: &[Targeted],
        now: DateTime<Utc>,
    ) -> Result<Vec<Emitted>, EmitError> {
        let emitted = self.store.emit(batch, now)?;
        if emitted.iter().any(|e| e.deliveries > 0) {
            self.wake.notify();
        }
        Ok(emitted)
    }
}

/// Why the item at a position of a batch cannot be emitted.
pub type ItemError = (usize, String);

/// A signal and the handlers it goes to.
pub(crate) type Targeted = (NewSignal, Vec<DeliveryTarget>);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signal(payload: serde_json::Value) -> NewSignal {
        NewSignal {
            tenant: "org_acme".into(),
            name: "forum.thread.created".into(),
            payload,
            ..NewSignal::default()
        }
    }

    #[test]
    fn accepts_a_plain_signal() {
        assert!(validate(&signal(json!({"thread_id": "t1"})), &Limits::default()).is_ok());
    }

    #[test]
    fn refuses_bad_names_non_objects_secrets_and_oversized_payloads() {
        let limits = Limits::default();
        let mut bad_name = signal(json!({}));
        bad_name.name = "Forum Thread".into();
        assert!(matches!(
            validate(&bad_name, &limits),
            Err(EmitError::Invalid(_))
        ));
        assert!(matches!(
            validate(&signal(json!([1])), &limits),
            Err(EmitError::Invalid(_))
        ));
        assert!(matches!(
            validate(&signal(json!({"auth": {"refresh_token": "x"}})), &limits),
            Err(EmitError::SecretDetected { pointer, .. }) if pointer == "/auth/refresh_token"
        ));
        let big = signal(json!({"blob": "x".repeat(300 << 10)}));
        assert!(matches!(
            validate(&big, &limits),
            Err(EmitError::TooLarge { .. })
        ));
        let mut bad_tenant = signal(json!({}));
        bad_tenant.tenant = "org acme".into();
        assert!(matches!(
            validate(&bad_tenant, &limits),
            Err(EmitError::Invalid(_))
        ));
    }
}
