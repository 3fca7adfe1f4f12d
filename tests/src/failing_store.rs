//! A store that fails on demand: it wraps a real one and refuses the result
//! writes (of deliveries, of directives, or both) while told to, the way a
//! full or failing disk refuses them, or only the batches holding one
//! result, and passes everything else through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sighost::signal::Signal;
use sighost::store::*;
use sighost::wake::Wake;

#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn Store>,
    /// Refuse `finish_deliveries`.
    pub fail_delivery_results: AtomicBool,
    /// Refuse `finish_directive`.
    pub fail_directive_results: AtomicBool,
    /// Refuse every `finish_deliveries` batch holding this delivery's result
    /// (a poison result), and take the others.
    pub poison_delivery: Mutex<Option<i64>>,
    /// Refuse the result of the first directive whose result comes in, and
    /// of that one only (its id is kept in `poisoned_directive`).
    pub poison_first_directive: AtomicBool,
    pub poisoned_directive: Mutex<Option<String>>,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_delivery_results: AtomicBool::new(false),
            fail_directive_results: AtomicBool::new(false),
            poison_delivery: Mutex::new(None),
            poison_first_directive: AtomicBool::new(false),
            poisoned_directive: Mutex::new(None),
        })
    }

    fn refuse(flag: &AtomicBool) -> StoreResult<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(StoreError::Database(
                "disk I/O error (injected by the test)".into(),
            ));
        }
        Ok(())
    }
}

impl Store for FailingStore {
    fn register_handlers(
        &self,
        host: &str,
        handlers: &[sighost::store::HandlerRegistration],
    ) -> StoreResult<()> {
        self.inner.register_handlers(host, handlers)
    }

    fn registered_handlers(&self) -> StoreResult<Vec<sighost::store::HandlerRegistration>> {
        self.inner.registered_handlers()
    }

    fn unregister_handler(&self, name: &str) -> StoreResult<u64> {
        self.inner.unregister_handler(name)
    }

    fn unregister_host(&self, host: &str) -> StoreResult<u64> {
        self.inner.unregister_host(host)
    }

    fn create_tenant(&self, id: &str, settings: Value, now: DateTime<Utc>) -> StoreResult<Tenant> {
        self.inner.create_tenant(id, settings, now)
    }
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.inner.tenant(id)
    }
    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.inner.tenants()
    }
    fn set_settings(&self, id: &str, settings: Value) -> StoreResult<Tenant> {
        self.inner.set_settings(id, settings)
    }
    fn set_weight(&self, id: &str, weight: u32) -> StoreResult<Tenant> {
        self.inner.set_weight(id, weight)
    }
    fn set_limits(&self, id: &str, limits: sighost::store::TenantLimits) -> StoreResult<Tenant> {
        self.inner.set_limits(id, limits)
    }
    fn pending_deliveries(&self, tenant: &str, cap: u64) -> StoreResult<u64> {
        self.inner.pending_deliveries(tenant, cap)
    }
    fn install_package(&self, id: &str, package: &str) -> StoreResult<Tenant> {
        self.inner.install_package(id, package)
    }
    fn uninstall_package(&self, id: &str, package: &str) -> StoreResult<Tenant> {
        self.inner.uninstall_package(id, package)
    }
    fn record_handler_version(
        &self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.inner.record_handler_version(name, digest, now)
    }
    fn handler_versions(&self, name: &str) -> StoreResult<Vec<HandlerVersion>> {
        self.inner.handler_versions(name)
    }
    fn resume_handler(&self, name: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.resume_handler(name, now)
    }
    fn emit(
        &self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>> {
        self.inner.emit(batch, now)
    }
    fn signals(&self, filter: &SignalFilter) -> StoreResult<Vec<Signal>> {
        self.inner.signals(filter)
    }
    fn signal_depth(&self, tenant: &str, id: &str) -> StoreResult<Option<u32>> {
        self.inner.signal_depth(tenant, id)
    }
    fn claim_deliveries(
        &self,
        claim: &sighost::fair::Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.inner.claim_deliveries(claim, now)
    }
    fn finish_deliveries(
        &self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>> {
        Self::refuse(&self.fail_delivery_results)?;
        let poison = *self
            .poison_delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if results.iter().any(|r| Some(r.delivery_id) == poison) {
            return Err(StoreError::Database(
                "constraint failed (a poison result, injected by the test)".into(),
            ));
        }
        self.inner.finish_deliveries(results, now)
    }
    fn extend_delivery_leases(
        &self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.inner.extend_delivery_leases(worker, held, until)
    }
    fn extend_directive_leases(
        &self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.inner.extend_directive_leases(worker, held, until)
    }
    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        self.inner.deliveries(filter)
    }
    fn attempts(&self, delivery_id: i64) -> StoreResult<Vec<Attempt>> {
        self.inner.attempts(delivery_id)
    }
    fn retry_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.retry_deliveries(filter, now)
    }
    fn cancel_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.cancel_deliveries(filter, now)
    }
    fn replay(
        &self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.inner.replay(batch, now)
    }
    fn claim_directives(
        &self,
        claim: &sighost::fair::Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<sighost::store::ClaimedDirective>> {
        self.inner.claim_directives(claim, now)
    }
    fn finish_directive(
        &self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        Self::refuse(&self.fail_directive_results)?;
        if self.poison_first_directive.load(Ordering::SeqCst) {
            let mut poisoned = self
                .poisoned_directive
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if poisoned.get_or_insert_with(|| id.to_owned()) == id {
                return Err(StoreError::Database(
                    "constraint failed (a poison result, injected by the test)".into(),
                ));
            }
        }
        self.inner
            .finish_directive(id, attempt, worker, decision, now)
    }
    fn directives(&self, filter: &DirectiveFilter) -> StoreResult<Vec<Directive>> {
        self.inner.directives(filter)
    }
    fn cancel_directives(&self, filter: &DirectiveFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.cancel_directives(filter, now)
    }
    fn stats(&self) -> StoreResult<QueueStats> {
        self.inner.stats()
    }
    fn leases_rescued(&self) -> LeasesRescued {
        self.inner.leases_rescued()
    }
    fn prune_batch(
        &self,
        rule: &PruneRule,
        cursor: PruneCursor,
        limit: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PruneBatch>> {
        self.inner.prune_batch(rule, cursor, limit, now)
    }
    fn count_prunable(&self, rule: &PruneRule) -> StoreResult<u64> {
        self.inner.count_prunable(rule)
    }
    fn reclaim_space(&self, max_pages: u32) -> StoreResult<u64> {
        self.inner.reclaim_space(max_pages)
    }
    fn fold_counts(&self) -> StoreResult<()> {
        self.inner.fold_counts()
    }
    fn vacuum(&self) -> StoreResult<bool> {
        self.inner.vacuum()
    }
    fn watch(&self, deliveries: Arc<Wake>, directives: Arc<Wake>) -> StoreResult<()> {
        self.inner.watch(deliveries, directives)
    }
}
