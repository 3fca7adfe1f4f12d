//! The store contract, implemented once over a SQL dialect.
//!
//! A dialect ([`Dialect`]) gives connections and transactions; its verbs
//! ([`Verbs`]) are the statements of one database, set-based and batch-shaped,
//! with their fences and `ON CONFLICT` clauses but no policy. [`SqlStore`]
//! implements [`Store`] on top of them once: it checks the input, picks the
//! connection each operation runs on, and orders the verbs. The rules the
//! verbs apply (targets, depth, directive matches, what a lost lease becomes)
//! are decided in `rules.rs` and `fair.rs`, never in a dialect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::*;
use crate::fair::Claim;
use crate::wake::Wake;

/// What one database provides: where each kind of work runs.
pub trait Dialect: Send + Sync + std::fmt::Debug + 'static {
    /// A connection that verbs run on: a read connection, a transaction, or
    /// a connection on its own (autocommit), as the method giving it says.
    type Conn<'c>: Verbs
    where
        Self: 'c;
    /// How its SQL writes parameters, for the statements of `store/sql.rs`.
    type Sql: sql::Placeholders;

    /// Reads (listings, status), beside the writers where the database can.
    fn read<T>(&self, f: impl FnOnce(&mut Self::Conn<'_>) -> StoreResult<T>) -> StoreResult<T>;
    /// One transaction: all of `f`'s writes or none.
    fn write<T>(&self, f: impl FnOnce(&mut Self::Conn<'_>) -> StoreResult<T>) -> StoreResult<T>;
    /// A single statement, atomic on its own (a lease's heartbeat, a fenced
    /// result): no transaction around it where the database needs none.
    fn alone<T>(&self, f: impl FnOnce(&mut Self::Conn<'_>) -> StoreResult<T>) -> StoreResult<T>;
    /// A claim: `rescue` (expired leases), then `claim` in a transaction
    /// whose commit need not wait for the disk, since a lost claim only makes
    /// its rows claimable again. Returns the leases the rescue took back
    /// for good (committed), whether or not the claim then worked.
    fn claim<T>(
        &self,
        rescue: impl FnOnce(&mut Self::Conn<'_>) -> StoreResult<u64>,
        claim: impl FnOnce(&mut Self::Conn<'_>) -> StoreResult<T>,
    ) -> (u64, StoreResult<T>);
    /// See [`Store::vacuum`]; nothing to do by default.
    fn vacuum(&self) -> StoreResult<bool> {
        Ok(false)
    }
    /// See [`Store::watch`]; a database that cannot hear other processes
    /// does nothing.
    fn watch(&self, deliveries: Arc<Wake>, directives: Arc<Wake>) -> StoreResult<()> {
        let _ = (deliveries, directives);
        Ok(())
    }
}

/// A dialect's statements, one method a verb. Each runs on the connection
/// its caller in [`SqlStore`] chose; input is already checked.
pub trait Verbs {
    /// Runs a statement of `store/sql.rs` that changes rows; returns how
    /// many it changed.
    fn change(&mut self, statement: sql::Statement) -> StoreResult<u64>;
    /// Runs a query of `store/sql.rs` that reads records of one kind.
    fn read<T: Record>(&mut self, query: sql::Statement) -> StoreResult<Vec<T>>;
    /// Says that an operator made deliveries due, for the workers of other
    /// processes.
    fn deliveries_due(&mut self) -> StoreResult<()>;

    // Tenants.
    fn create_tenant(
        &mut self,
        id: &str,
        settings: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Tenant>;
    fn tenant(&mut self, id: &str) -> StoreResult<Option<Tenant>>;
    fn tenants(&mut self) -> StoreResult<Vec<Tenant>>;
    fn set_settings(&mut self, id: &str, settings: &serde_json::Value) -> StoreResult<Tenant>;
    fn set_weight(&mut self, id: &str, weight: u32) -> StoreResult<Tenant>;
    fn set_limits(&mut self, id: &str, limits: &TenantLimits) -> StoreResult<Tenant>;
    fn pending_deliveries(&mut self, tenant: &str, cap: u64) -> StoreResult<u64>;
    fn install_package(&mut self, id: &str, package: &str) -> StoreResult<Tenant>;
    fn uninstall_package(&mut self, id: &str, package: &str) -> StoreResult<Tenant>;

    // Handlers.
    fn record_handler_version(
        &mut self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    fn handler_versions(&mut self, name: &str) -> StoreResult<Vec<HandlerVersion>>;
    fn resume_handler(&mut self, name: &str, now: DateTime<Utc>) -> StoreResult<u64>;

    // Signals.
    fn emit(
        &mut self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>>;
    fn signal_depth(&mut self, tenant: &str, id: &str) -> StoreResult<Option<u32>>;

    // Deliveries.
    /// Makes expired delivery leases retryable (or discarded), recording the
    /// lost attempt, as `rules::AFTER_LOST_LEASE` says.
    /// Returns how many it rescued.
    fn rescue_deliveries(&mut self, now: DateTime<Utc>) -> StoreResult<u64>;
    /// The claim [`crate::fair::claim`] decides, over this dialect's
    /// [`crate::fair::ClaimVerbs`].
    fn claim_deliveries(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    fn finish_deliveries(
        &mut self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>>;
    fn extend_delivery_leases(
        &mut self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64>;
    fn attempts(&mut self, delivery_id: i64) -> StoreResult<Vec<Attempt>>;
    fn replay(
        &mut self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    // Directives.
    /// Makes directives whose runner stopped mid-directive requested again.
    /// Returns how many it rescued.
    fn rescue_directives(&mut self, now: DateTime<Utc>) -> StoreResult<u64>;
    fn claim_directives(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDirective>>;
    fn finish_directive(
        &mut self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    fn extend_directive_leases(
        &mut self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64>;

    // Retention.
    /// Whether this transaction may prune: false while another process of
    /// the cluster's holds the turn (held until the transaction ends).
    fn take_prune_turn(&mut self) -> StoreResult<bool>;
    /// See [`Store::reclaim_space`].
    fn reclaim_space(&mut self, max_pages: u32) -> StoreResult<u64>;
    /// See [`Store::fold_counts`]; runs in a transaction holding the turn.
    fn fold_counts(&mut self) -> StoreResult<()>;
}

/// A record a listing reads, as each dialect maps its rows.
pub trait Record: super::sqlite::FromSqliteRow + super::postgres::FromPgRow {}

impl<T: super::sqlite::FromSqliteRow + super::postgres::FromPgRow> Record for T {}

/// The store contract over the dialect `D`: [`sqlite::SqliteStore`] and
/// [`postgres::PostgresStore`] are two of these.
#[derive(Debug)]
pub struct SqlStore<D> {
    pub(super) dialect: D,
    /// Leases this object's claims rescued: `deliveries`, `directives`.
    rescued: [AtomicU64; 2],
}

impl<D> SqlStore<D> {
    pub(super) fn new(dialect: D) -> Self {
        Self {
            dialect,
            rescued: Default::default(),
        }
    }
}

impl<D: Dialect> Store for SqlStore<D> {
    fn create_tenant(
        &self,
        id: &str,
        settings: serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Tenant> {
        check_tenant_id(id)?;
        check_settings(&settings)?;
        self.dialect.write(|c| c.create_tenant(id, &settings, now))
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.dialect.read(|c| c.tenant(id))
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.dialect.read(|c| c.tenants())
    }

    fn set_settings(&self, id: &str, settings: serde_json::Value) -> StoreResult<Tenant> {
        check_settings(&settings)?;
        self.dialect.write(|c| c.set_settings(id, &settings))
    }

    fn set_weight(&self, id: &str, weight: u32) -> StoreResult<Tenant> {
        let weight = crate::fair::check_weight(weight)?;
        self.dialect.write(|c| c.set_weight(id, weight))
    }

    fn set_limits(&self, id: &str, limits: TenantLimits) -> StoreResult<Tenant> {
        let limits = crate::fair::check_limits(limits)?;
        self.dialect.write(|c| c.set_limits(id, &limits))
    }

    fn pending_deliveries(&self, tenant: &str, cap: u64) -> StoreResult<u64> {
        self.dialect.read(|c| c.pending_deliveries(tenant, cap))
    }

    fn install_package(&self, id: &str, package: &str) -> StoreResult<Tenant> {
        crate::signal::check_name(package)
            .map_err(|e| StoreError::Invalid(format!("package: {e}")))?;
        self.dialect.write(|c| c.install_package(id, package))
    }

    fn uninstall_package(&self, id: &str, package: &str) -> StoreResult<Tenant> {
        self.dialect.write(|c| c.uninstall_package(id, package))
    }

    fn record_handler_version(
        &self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.dialect
            .write(|c| c.record_handler_version(name, digest, now))
    }

    fn handler_versions(&self, name: &str) -> StoreResult<Vec<HandlerVersion>> {
        self.dialect.read(|c| c.handler_versions(name))
    }

    fn resume_handler(&self, name: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        self.dialect.write(|c| c.resume_handler(name, now))
    }

    fn register_handlers(&self, host: &str, handlers: &[HandlerRegistration]) -> StoreResult<()> {
        if let Some(other) = handlers.iter().find(|h| h.host != host) {
            return Err(StoreError::Invalid(format!(
                "host {host:?} cannot register {:?} for host {:?}",
                other.handler, other.host
            )));
        }
        let names: Vec<String> = handlers.iter().map(|h| h.handler.clone()).collect();
        self.dialect.write(|c| {
            c.change(sql::forget_host_handlers::<D::Sql>(host, &names))?;
            for handler in handlers {
                c.change(sql::register_handler::<D::Sql>(handler))?;
            }
            Ok(())
        })
    }

    fn registered_handlers(&self) -> StoreResult<Vec<HandlerRegistration>> {
        let mut registered: Vec<HandlerRegistration> =
            self.dialect.read(|c| c.read(sql::registered_handlers()))?;
        registered.sort_by(|a, b| (&a.handler, &a.host).cmp(&(&b.handler, &b.host)));
        Ok(registered)
    }

    fn unregister_host(&self, host: &str) -> StoreResult<u64> {
        self.dialect
            .write(|c| c.change(sql::forget_host_handlers::<D::Sql>(host, &[])))
    }

    fn unregister_handler(&self, name: &str) -> StoreResult<u64> {
        self.dialect
            .write(|c| c.change(sql::unregister_handler::<D::Sql>(name)))
    }

    fn emit(
        &self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>> {
        self.dialect.write(|c| c.emit(batch, now))
    }

    fn signals(&self, filter: &SignalFilter) -> StoreResult<Vec<Signal>> {
        self.dialect
            .read(|c| c.read(sql::signals::<D::Sql>(filter)))
    }

    fn signal_depth(&self, tenant: &str, id: &str) -> StoreResult<Option<u32>> {
        self.dialect.read(|c| c.signal_depth(tenant, id))
    }

    fn claim_deliveries(
        &self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let (rescued, claimed) = self.dialect.claim(
            |c| c.rescue_deliveries(now),
            |c| c.claim_deliveries(claim, now),
        );
        self.rescued[0].fetch_add(rescued, Ordering::Relaxed);
        claimed
    }

    fn finish_deliveries(
        &self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>> {
        self.dialect.write(|c| c.finish_deliveries(results, now))
    }

    fn extend_delivery_leases(
        &self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.dialect
            .alone(|c| c.extend_delivery_leases(worker, held, until))
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        self.dialect
            .read(|c| c.read(sql::deliveries::<D::Sql>(filter)))
    }

    fn attempts(&self, delivery_id: i64) -> StoreResult<Vec<Attempt>> {
        self.dialect.read(|c| c.attempts(delivery_id))
    }

    fn retry_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.dialect.write(|c| {
            let retried = c.change(sql::retry_deliveries::<D::Sql>(filter, now))?;
            if retried > 0 {
                c.deliveries_due()?;
            }
            Ok(retried)
        })
    }

    fn cancel_deliveries(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.dialect
            .write(|c| c.change(sql::cancel_deliveries::<D::Sql>(filter, now)))
    }

    fn replay(
        &self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.dialect.write(|c| c.replay(batch, now))
    }

    fn claim_directives(
        &self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDirective>> {
        let (rescued, claimed) = self.dialect.claim(
            |c| c.rescue_directives(now),
            |c| c.claim_directives(claim, now),
        );
        self.rescued[1].fetch_add(rescued, Ordering::Relaxed);
        claimed
    }

    fn finish_directive(
        &self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.dialect
            .alone(|c| c.finish_directive(id, attempt, worker, decision, now))
    }

    fn extend_directive_leases(
        &self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.dialect
            .alone(|c| c.extend_directive_leases(worker, held, until))
    }

    fn directives(&self, filter: &DirectiveFilter) -> StoreResult<Vec<Directive>> {
        self.dialect
            .read(|c| c.read(sql::directives::<D::Sql>(filter)))
    }

    fn cancel_directives(&self, filter: &DirectiveFilter, now: DateTime<Utc>) -> StoreResult<u64> {
        self.dialect
            .write(|c| c.change(sql::cancel_directives::<D::Sql>(filter, now)))
    }

    /// Reads the kept counts, never the queue itself: the same cost at ten
    /// million rows as at a thousand.
    fn stats(&self) -> StoreResult<QueueStats> {
        self.dialect.read(|c| {
            let mut stats = QueueStats::default();
            let counts = stats.add_counts(c.read(sql::queue_counts())?)?;
            let recent: Vec<sql::RecentRow> = c.read(sql::recent_attempts())?;
            let recent = recent
                .into_iter()
                .map(|r| {
                    let n = |v: i64| u64::try_from(v).unwrap_or(0);
                    (r.handler, r.tenant, n(r.attempts), n(r.sum_us), n(r.max_us))
                })
                .collect();
            stats.add_breakdowns(counts, recent);
            let waiting: Vec<sql::WaitingRow> = c.read(sql::oldest_waiting())?;
            for handler in &mut stats.handlers {
                handler.oldest_waiting = waiting
                    .iter()
                    .find(|w| w.handler == handler.handler)
                    .and_then(|w| w.oldest);
            }
            stats.recent_failures = c.read(sql::recent_failures())?;
            Ok(stats)
        })
    }

    fn leases_rescued(&self) -> LeasesRescued {
        LeasesRescued {
            deliveries: self.rescued[0].load(Ordering::Relaxed),
            directives: self.rescued[1].load(Ordering::Relaxed),
        }
    }

    fn prune_batch(
        &self,
        rule: &PruneRule,
        cursor: PruneCursor,
        limit: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PruneBatch>> {
        self.dialect.write(|c| {
            if !c.take_prune_turn()? {
                return Ok(None);
            }
            let candidates: Vec<sql::PruneCandidate> =
                c.read(sql::prune_candidates::<D::Sql>(rule, cursor, limit))?;
            let Some(last) = candidates.last() else {
                return Ok(Some(PruneBatch {
                    examined: 0,
                    deleted: 0,
                    next: cursor,
                }));
            };
            let next = PruneCursor {
                at: last.at,
                key: last.key,
            };
            let keys: Vec<i64> = candidates.iter().map(|c| c.key).collect();
            let deleted = match rule.kind {
                PruneKind::Deliveries(_) => {
                    let deleted = c.change(sql::prune_delete::<D::Sql>(rule, &keys))?;
                    c.change(sql::prune_orphan_attempts::<D::Sql>(&keys))?;
                    deleted
                }
                PruneKind::Directives(_) => {
                    let going: Vec<Directive> =
                        c.read(sql::directives_to_prune::<D::Sql>(rule, &keys))?;
                    if !going.is_empty() {
                        c.change(sql::keep_directive_keys::<D::Sql>(&going, now))?;
                    }
                    c.change(sql::prune_delete::<D::Sql>(rule, &keys))?
                }
                PruneKind::Signals => {
                    let _locked: Vec<sql::PruneCandidate> =
                        c.read(sql::lock_signals::<D::Sql>(&keys))?;
                    c.change(sql::prune_delete::<D::Sql>(rule, &keys))?
                }
                PruneKind::DirectiveKeys => c.change(sql::prune_delete::<D::Sql>(rule, &keys))?,
            };
            Ok(Some(PruneBatch {
                examined: candidates.len() as u64,
                deleted,
                next,
            }))
        })
    }

    fn count_prunable(&self, rule: &PruneRule) -> StoreResult<u64> {
        let counted: Vec<sql::Count> = self
            .dialect
            .read(|c| c.read(sql::count_prunable::<D::Sql>(rule)))?;
        Ok(counted.first().map_or(0, |n| n.0))
    }

    fn reclaim_space(&self, max_pages: u32) -> StoreResult<u64> {
        self.dialect.write(|c| c.reclaim_space(max_pages))
    }

    fn fold_counts(&self) -> StoreResult<()> {
        self.dialect.write(|c| {
            if c.take_prune_turn()? {
                c.fold_counts()?;
            }
            Ok(())
        })
    }

    fn vacuum(&self) -> StoreResult<bool> {
        self.dialect.vacuum()
    }

    fn watch(&self, deliveries: Arc<Wake>, directives: Arc<Wake>) -> StoreResult<()> {
        self.dialect.watch(deliveries, directives)
    }
}
