//! The SQL of the PostgreSQL store: its [`Verbs`], each run on the
//! connection [`SqlStore`] chose (in a transaction or not), and the fair
//! claim's [`fair::ClaimVerbs`].
//!
//! Batches travel as arrays, one per column, turned back into rows with
//! `unnest`: a batch of any size costs one round trip per statement, which
//! is what makes PostgreSQL fast here (see the figures in `mod.rs`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ::postgres::Row;
use ::postgres::types::ToSql;
use chrono::{DateTime, Utc};

use super::{DELIVERIES_CHANNEL, DIRECTIVES_CHANNEL, Db};
use crate::fair::{self, Claim};
use crate::rules;
use crate::store::sql::{
    self, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DIRECTIVE_COLUMNS, Param, Placeholders, SIGNAL_COLUMNS,
};
use crate::store::*;

/// A tenant with its packages, sorted bytewise as in SQLite (`COLLATE "C"`,
/// whatever the database's collation).
const TENANT_SELECT: &str = "SELECT t.id, t.settings, t.created_at, \
     ARRAY(SELECT p.package FROM tenant_packages p WHERE p.tenant = t.id ORDER BY p.package COLLATE \"C\"), \
     t.weight, t.max_running, t.max_pending, t.max_emit_per_s FROM tenants t";

// ---------------------------------------------------------------------------
// Rows.

fn entity(kind: Option<String>, id: Option<String>) -> Option<EntityRef> {
    Some(EntityRef {
        kind: kind?,
        id: id?,
    })
}

/// A non-negative INTEGER column as `u32`.
fn count(row: &Row, index: usize) -> StoreResult<u32> {
    let value: i32 = row.try_get(index)?;
    u32::try_from(value)
        .map_err(|_| StoreError::Database(format!("column {index} holds {value}, below zero")))
}

/// `u32` for an INTEGER column; values past `i32::MAX` saturate.
fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Text as PostgreSQL can hold it: NUL becomes U+FFFD (see "Leaky spots" in
/// `mod.rs`). For text the guest wrote, which must never fail a batch.
fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn signal_at(row: &Row, at: usize) -> StoreResult<Signal> {
    Ok(Signal {
        id: row.try_get(at)?,
        tenant: row.try_get(at + 1)?,
        name: row.try_get(at + 2)?,
        payload: row.try_get(at + 3)?,
        metadata: row.try_get(at + 4)?,
        dedupe_key: row.try_get(at + 5)?,
        occurred_at: row.try_get(at + 6)?,
        correlation_id: row.try_get(at + 7)?,
        causation_id: row.try_get(at + 8)?,
        actor: entity(row.try_get(at + 9)?, row.try_get(at + 10)?),
        subject: entity(row.try_get(at + 11)?, row.try_get(at + 12)?),
        source: row.try_get(at + 13)?,
        inserted_at: row.try_get(at + 14)?,
    })
}

fn delivery_at(row: &Row, at: usize) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: row.try_get(at)?,
        signal_id: row.try_get(at + 1)?,
        tenant: row.try_get(at + 2)?,
        handler: row.try_get(at + 3)?,
        state: DeliveryState::parse(row.try_get(at + 4)?)?,
        attempt: count(row, at + 5)?,
        max_attempts: count(row, at + 6)?,
        scheduled_at: row.try_get(at + 7)?,
        last_error: row.try_get(at + 8)?,
        handler_digest: row.try_get(at + 9)?,
        inserted_at: row.try_get(at + 10)?,
        finished_at: row.try_get(at + 11)?,
    })
}

/// A record as a PostgreSQL row holds it, in the column order of
/// `store/sql.rs`.
pub trait FromPgRow: Sized {
    fn from_pg(row: &Row) -> StoreResult<Self>;
}

impl FromPgRow for Signal {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        signal_at(row, 0)
    }
}

impl FromPgRow for Delivery {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        delivery_at(row, 0)
    }
}

impl FromPgRow for Directive {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(Directive {
            id: row.try_get(0)?,
            tenant: row.try_get(1)?,
            name: row.try_get(2)?,
            payload: row.try_get(3)?,
            idempotency_key: row.try_get(4)?,
            state: DirectiveState::parse(row.try_get(5)?)?,
            signal_id: row.try_get(6)?,
            delivery_id: row.try_get(7)?,
            handler: row.try_get(8)?,
            scheduled_at: row.try_get(9)?,
            attempt: count(row, 10)?,
            last_error: row.try_get(11)?,
            result: row.try_get(12)?,
            depth: count(row, 13)?,
            inserted_at: row.try_get(14)?,
            updated_at: row.try_get(15)?,
        })
    }
}

fn tenant_from_row(row: &Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: row.try_get(0)?,
        settings: row.try_get(1)?,
        created_at: row.try_get(2)?,
        packages: row.try_get(3)?,
        weight: count(row, 4)?,
        limits: TenantLimits {
            max_running: row.try_get::<_, Option<i32>>(5)?.map(|n| n.max(0) as u32),
            max_pending: row.try_get::<_, Option<i64>>(6)?.map(|n| n.max(0) as u64),
            max_emit_per_s: row.try_get::<_, Option<i32>>(7)?.map(|n| n.max(0) as u32),
        },
    })
}

// ---------------------------------------------------------------------------
// Notifications and leases.

fn notify(db: &mut Db<'_>, channel: &str) -> StoreResult<()> {
    // Delivered on commit, and only then; repeats in one transaction fold
    // into one notification.
    db.execute("SELECT pg_notify($1, '')", &[&channel])?;
    Ok(())
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

// ---------------------------------------------------------------------------
// Tenants.

fn known_tenant(db: &mut Db<'_>, id: &str) -> StoreResult<Tenant> {
    db.tenant(id)?
        .ok_or_else(|| StoreError::UnknownTenant(id.to_owned()))
}

/// The packages of each of these tenants, or `UnknownTenant` naming the
/// first unknown one in order.
fn packages_of<'t>(
    db: &mut Db<'_>,
    tenants: impl Iterator<Item = &'t str> + Clone,
) -> StoreResult<HashMap<String, Vec<String>>> {
    let ids: Vec<&str> = tenants.clone().collect();
    let found: HashMap<String, Vec<String>> = db
        .query(&format!("{TENANT_SELECT} WHERE t.id = ANY($1)"), &[&ids])?
        .iter()
        .map(|row| tenant_from_row(row).map(|t| (t.id, t.packages)))
        .collect::<StoreResult<_>>()?;
    match tenants.into_iter().find(|t| !found.contains_key(*t)) {
        Some(unknown) => Err(StoreError::UnknownTenant(unknown.to_owned())),
        None => Ok(found),
    }
}

// ---------------------------------------------------------------------------
// Signals.

/// New deliveries, gathered column by column for one INSERT.
#[derive(Default)]
struct NewDeliveries {
    signal_ids: Vec<String>,
    tenants: Vec<String>,
    handlers: Vec<String>,
    max_attempts: Vec<i32>,
    depths: Vec<i32>,
}

impl NewDeliveries {
    /// Adds one delivery per target whose package the tenant installed;
    /// returns how many.
    fn push(
        &mut self,
        signal_id: &str,
        tenant: &str,
        depth: u32,
        packages: &[String],
        targets: &[DeliveryTarget],
    ) -> u32 {
        let mut added = 0;
        for target in targets {
            if rules::is_deliverable(target, packages) {
                self.signal_ids.push(signal_id.to_owned());
                self.tenants.push(tenant.to_owned());
                self.handlers.push(target.handler.clone());
                self.max_attempts.push(int(target.max_attempts));
                self.depths.push(int(depth));
                added += 1;
            }
        }
        added
    }

    /// Inserts them, available at `now`, and tells the other processes.
    fn insert(&self, db: &mut Db<'_>, now: DateTime<Utc>) -> StoreResult<u64> {
        if self.signal_ids.is_empty() {
            return Ok(0);
        }
        let inserted = db.execute(
            "INSERT INTO deliveries (signal_id, tenant, handler, state, max_attempts, scheduled_at, depth, inserted_at) \
             SELECT signal_id, tenant, handler, 'available', max_attempts, $6, depth, $6 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[]) \
                  AS r(signal_id, tenant, handler, max_attempts, depth)",
            &[
                &self.signal_ids,
                &self.tenants,
                &self.handlers,
                &self.max_attempts,
                &self.depths,
                &now,
            ],
        )?;
        notify(db, DELIVERIES_CHANNEL)?;
        Ok(inserted)
    }
}

/// Causation depth of each signal of the batch: its cause's depth + 1 when
/// the cause is a signal of the same tenant, 0 otherwise.
fn depths(db: &mut Db<'_>, batch: &[(NewSignal, Vec<DeliveryTarget>)]) -> StoreResult<Vec<u32>> {
    let causes: Vec<&str> = batch
        .iter()
        .filter_map(|(new, _)| new.causation_id.as_deref())
        .collect();
    let mut known: HashMap<String, (String, u32)> = HashMap::new();
    if !causes.is_empty() {
        for row in db.query(
            // Shared locks: a prune deleting one of them waits for this
            // transaction, then sees its deliveries and keeps the signal.
            "SELECT id, tenant, depth FROM signals WHERE id = ANY($1) ORDER BY seq FOR SHARE",
            &[&causes],
        )? {
            known.insert(row.try_get(0)?, (row.try_get(1)?, count(&row, 2)?));
        }
    }
    Ok(batch
        .iter()
        .map(|(new, _)| {
            let cause_depth = new
                .causation_id
                .as_ref()
                .and_then(|cause| known.get(cause))
                .filter(|(tenant, _)| *tenant == new.tenant)
                .map(|(_, depth)| *depth);
            rules::causation_depth(cause_depth)
        })
        .collect())
}

/// Inserts the signals whose dedupe key is free; returns the ids inserted.
///
/// Rows go in (tenant, dedupe key) order, the same in every process: two
/// batches that share keys then wait on each other in one order and never
/// deadlock. Within a batch the first signal with a key wins, as in SQLite.
fn insert_signals(
    db: &mut Db<'_>,
    signals: &[Signal],
    depths: &[u32],
    now: DateTime<Utc>,
) -> StoreResult<HashSet<String>> {
    let column = |f: fn(&Signal) -> Option<String>| signals.iter().map(f).collect::<Vec<_>>();
    let ids = column(|s| Some(s.id.clone()));
    let tenants = column(|s| Some(s.tenant.clone()));
    let names = column(|s| Some(s.name.clone()));
    let payloads = column(|s| Some(s.payload.to_string()));
    let metadata = column(|s| Some(s.metadata.to_string()));
    let keys = column(|s| s.dedupe_key.clone());
    let correlations = column(|s| s.correlation_id.clone());
    let causations = column(|s| s.causation_id.clone());
    let actor_types = column(|s| s.actor.as_ref().map(|a| a.kind.clone()));
    let actor_ids = column(|s| s.actor.as_ref().map(|a| a.id.clone()));
    let subject_types = column(|s| s.subject.as_ref().map(|a| a.kind.clone()));
    let subject_ids = column(|s| s.subject.as_ref().map(|a| a.id.clone()));
    let sources = column(|s| s.source.clone());
    let occurred: Vec<DateTime<Utc>> = signals.iter().map(|s| s.occurred_at).collect();
    let depths: Vec<i32> = depths.iter().map(|d| int(*d)).collect();
    let rows = db.query(
        "INSERT INTO signals (id, tenant, name, payload, metadata, dedupe_key, occurred_at, correlation_id, \
             causation_id, actor_type, actor_id, subject_type, subject_id, source, depth, inserted_at) \
         SELECT id, tenant, name, payload::json, metadata::json, dedupe_key, occurred_at, correlation_id, \
             causation_id, actor_type, actor_id, subject_type, subject_id, source, depth, $16 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], \
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
                     $15::int[]) WITH ORDINALITY \
              AS s(id, tenant, name, payload, metadata, dedupe_key, occurred_at, correlation_id, causation_id, \
                   actor_type, actor_id, subject_type, subject_id, source, depth, ord) \
         ORDER BY tenant, dedupe_key, ord \
         ON CONFLICT (tenant, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING \
         RETURNING id",
        &[
            &ids,
            &tenants,
            &names,
            &payloads,
            &metadata,
            &keys,
            &occurred,
            &correlations,
            &causations,
            &actor_types,
            &actor_ids,
            &subject_types,
            &subject_ids,
            &sources,
            &depths,
            &now,
        ],
    )?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

fn signal_by_dedupe_key(db: &mut Db<'_>, tenant: &str, key: &str) -> StoreResult<Signal> {
    let row = db
        .query_opt(
            &format!("SELECT {SIGNAL_COLUMNS} FROM signals WHERE tenant = $1 AND dedupe_key = $2"),
            &[&tenant, &key],
        )?
        .ok_or_else(|| {
            StoreError::Database(format!(
                "the signal of tenant {tenant:?} with dedupe key {key:?} was neither inserted nor found"
            ))
        })?;
    signal_at(&row, 0)
}

// ---------------------------------------------------------------------------
// Claims.

/// A queue a fair claim takes from, and how it leases.
trait QueueKind {
    const QUEUE: fair::Queue;
    /// The column a lease picks rows by.
    const KEY: &'static str;
    type Item: fair::Claimed;
    /// Leases the rows `due` selects (a query of their keys, locked).
    fn lease(
        db: &mut Db<'_>,
        due: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Self::Item>>;
    /// Undoes the lease of these items (see `fair::ClaimVerbs::put_back`).
    fn put_back(db: &mut Db<'_>, items: &[Self::Item]) -> StoreResult<()>;
}

/// The fair claim's verbs on one queue, in one transaction;
/// [`fair::ClaimVerbs::clock`] locks the clock's row, so the claims of
/// every host process take turns (each is a few milliseconds).
struct FairQueue<'d, 'a, K> {
    db: &'d mut Db<'a>,
    kind: std::marker::PhantomData<K>,
}

impl<'d, 'a, K> FairQueue<'d, 'a, K> {
    fn new(db: &'d mut Db<'a>) -> Self {
        Self {
            db,
            kind: std::marker::PhantomData,
        }
    }
}

impl<K: QueueKind> fair::ClaimVerbs for FairQueue<'_, '_, K> {
    type Item = K::Item;

    fn clock_and_due(
        &mut self,
        now: DateTime<Utc>,
        cap: usize,
    ) -> StoreResult<(i64, Vec<(String, usize)>)> {
        // One round trip: the clock's row, locked (the claims of other
        // processes wait here until this transaction ends), beside the
        // tenants with pending rows, one index probe each (a loose index scan
        // of the `…_due_by_tenant` index), and how many of each are due,
        // counted up to `cap`. The clock's row has no tenant: it comes first.
        let fair::Queue { table, pending, .. } = K::QUEUE;
        let waiting = K::QUEUE.waiting_tenants();
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let rows = self.db.query(
            &format!(
                "WITH RECURSIVE clock AS ( \
                     SELECT vtime FROM fair_clocks WHERE queue = $3 FOR UPDATE \
                 ), {waiting} \
                 SELECT NULL::text, vtime FROM clock \
                 UNION ALL \
                 SELECT tenant, (SELECT COUNT(*) FROM (SELECT 1 FROM {table} t \
                     WHERE t.tenant = waiting.tenant AND t.{pending} AND t.scheduled_at <= $1 \
                     LIMIT $2) x) \
                 FROM waiting WHERE tenant IS NOT NULL"
            ),
            &[&now, &cap, &K::QUEUE.name],
        )?;
        let mut clock = None;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant: Option<String> = row.try_get(0)?;
            let value: i64 = row.try_get(1)?;
            match tenant {
                None => clock = Some(value),
                Some(tenant) if value > 0 => {
                    due.push((tenant, usize::try_from(value).unwrap_or(0)))
                }
                Some(_) => {}
            }
        }
        let clock = clock.ok_or_else(|| {
            StoreError::Database(format!("fair_clocks has no row for {}", K::QUEUE.name))
        })?;
        Ok((clock, due))
    }

    fn book(&mut self, clock: i64, tenants: &[String]) -> StoreResult<fair::Book> {
        let mut book = fair::Book {
            clock,
            ..fair::Book::default()
        };
        // Held rows are counted only for a tenant with a cap, through the
        // partial index on running rows (a few thousand at most).
        let rows = self.db.query(
            &format!(
                "SELECT t.id, t.weight, s.vtime, s.cost_ns, t.max_running, \
                     CASE WHEN t.max_running IS NULL THEN 0 ELSE \
                         (SELECT COUNT(*) FROM {} r WHERE r.state = 'running' AND r.tenant = t.id) END \
                 FROM tenants t \
                 LEFT JOIN fair_shares s ON s.queue = $1 AND s.tenant = t.id WHERE t.id = ANY($2)",
                K::QUEUE.table
            ),
            &[&K::QUEUE.name, &tenants],
        )?;
        for row in rows {
            let vtime: Option<i64> = row.try_get(2)?;
            let cost_ns: Option<i64> = row.try_get(3)?;
            let max_running: Option<i32> = row.try_get(4)?;
            let held: i64 = row.try_get(5)?;
            book.add_share(
                row.try_get(0)?,
                count(&row, 1)?,
                vtime.zip(cost_ns),
                max_running.map(|n| n.max(0) as u32),
                held.max(0) as u64,
            );
        }
        Ok(book)
    }

    fn lease(
        &mut self,
        plan: &[(String, usize)],
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: &[String],
    ) -> StoreResult<Vec<Self::Item>> {
        let fair::Queue { table, pending, .. } = K::QUEUE;
        let tenants: Vec<&str> = plan.iter().map(|(t, _)| t.as_str()).collect();
        let counts: Vec<i64> = plan
            .iter()
            .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
            .collect();
        let until = lease_until(now, claim.lease);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&claim.worker, &until, &now, &tenants, &counts];
        if !full.is_empty() {
            params.push(&full);
        }
        K::lease(
            self.db,
            &format!(
                "SELECT pick.key FROM unnest($4::text[], $5::bigint[]) AS plan(tenant, n) \
                 CROSS JOIN LATERAL ( \
                     SELECT {key} AS key FROM {table} \
                     WHERE tenant = plan.tenant AND {pending} AND scheduled_at <= $3 {leaving_out} \
                     ORDER BY scheduled_at LIMIT plan.n \
                     FOR UPDATE SKIP LOCKED \
                 ) pick",
                key = K::KEY,
                leaving_out = leaving_out(full, 6),
            ),
            &params,
        )
    }

    fn lease_oldest(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: &[String],
    ) -> StoreResult<Vec<Self::Item>> {
        let fair::Queue { table, pending, .. } = K::QUEUE;
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        let until = lease_until(now, claim.lease);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&claim.worker, &until, &now, &limit];
        if !full.is_empty() {
            params.push(&full);
        }
        K::lease(
            self.db,
            &format!(
                "SELECT {key} AS key FROM {table} WHERE {pending} AND scheduled_at <= $3 {leaving_out} \
                 ORDER BY scheduled_at LIMIT $4 FOR UPDATE SKIP LOCKED",
                key = K::KEY,
                leaving_out = leaving_out(full, 5),
            ),
            &params,
        )
    }

    fn running_by_handler(&mut self, handlers: &[String]) -> StoreResult<Vec<(String, u64)>> {
        // Through the partial index on running rows (a few thousand at most).
        self.db
            .query(
                &format!(
                    "SELECT handler, COUNT(*) FROM {} WHERE state = 'running' \
                     AND handler = ANY($1) GROUP BY handler",
                    K::QUEUE.table
                ),
                &[&handlers],
            )?
            .iter()
            .map(|row| {
                let held: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, held.max(0) as u64))
            })
            .collect()
    }

    fn put_back(&mut self, items: &[Self::Item]) -> StoreResult<()> {
        K::put_back(self.db, items)
    }

    fn save_book(&mut self, book: &fair::Book) -> StoreResult<()> {
        // One round trip: the clock and the shares.
        let tenants: Vec<&str> = book.shares.keys().map(String::as_str).collect();
        let vtimes: Vec<i64> = book.shares.values().map(|s| s.vtime).collect();
        let costs: Vec<i64> = book.shares.values().map(|s| s.cost_ns).collect();
        self.db.execute(
            "WITH clock AS (UPDATE fair_clocks SET vtime = $5 WHERE queue = $1) \
             INSERT INTO fair_shares (queue, tenant, vtime, cost_ns) \
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[]) \
             ON CONFLICT (queue, tenant) DO UPDATE SET vtime = EXCLUDED.vtime, cost_ns = EXCLUDED.cost_ns",
            &[&K::QUEUE.name, &tenants, &vtimes, &costs, &book.clock],
        )?;
        Ok(())
    }
}

/// The full handlers a lease leaves out, as parameter `$n`: no clause at
/// all when none is full, so the usual lease is the statement it always was.
fn leaving_out(full: &[String], n: usize) -> String {
    if full.is_empty() {
        String::new()
    } else {
        format!("AND handler <> ALL(${n}::text[])")
    }
}

/// The deliveries queue.
struct Deliveries;

impl QueueKind for Deliveries {
    const QUEUE: fair::Queue = fair::DELIVERIES;
    const KEY: &'static str = "id";
    type Item = ClaimedDelivery;

    /// Leases the deliveries `due` selects to `$1` until `$2`, starting an
    /// attempt, and returns them with their signal and their tenant's
    /// settings and packages: one statement.
    fn lease(
        db: &mut Db<'_>,
        due: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let rows = db.query(
            &format!(
                "WITH due AS ({due}), claimed AS ( \
                     UPDATE deliveries d SET state = 'running', attempt = d.attempt + 1, worker = $1, \
                         leased_until = $2 \
                     FROM due WHERE d.id = due.key \
                     RETURNING {} \
                 ) \
                 SELECT c.*, {}, t.settings, \
                     ARRAY(SELECT p.package FROM tenant_packages p WHERE p.tenant = c.tenant \
                           ORDER BY p.package COLLATE \"C\") \
                 FROM claimed c \
                 JOIN signals s ON s.id = c.signal_id \
                 JOIN tenants t ON t.id = c.tenant \
                 ORDER BY c.scheduled_at, c.id",
                prefixed("d", DELIVERY_COLUMNS),
                prefixed("s", SIGNAL_COLUMNS),
            ),
            params,
        )?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    delivery: delivery_at(row, 0)?,
                    signal: signal_at(row, 12)?,
                    settings: row.try_get(27)?,
                    packages: row.try_get(28)?,
                    charged_ns: 0,
                    weight: fair::DEFAULT_WEIGHT,
                })
            })
            .collect()
    }

    fn put_back(db: &mut Db<'_>, items: &[ClaimedDelivery]) -> StoreResult<()> {
        // Not an attempt, the handler never ran: back to the state it was
        // claimed from (a retry has attempts behind it).
        let ids: Vec<i64> = items.iter().map(|c| c.delivery.id).collect();
        db.execute(
            "UPDATE deliveries SET attempt = attempt - 1, worker = NULL, leased_until = NULL, \
             state = CASE WHEN attempt > 1 THEN 'retryable' ELSE 'available' END WHERE id = ANY($1)",
            &[&ids],
        )?;
        Ok(())
    }
}

/// The directives queue.
struct Directives;

impl QueueKind for Directives {
    const QUEUE: fair::Queue = fair::DIRECTIVES;
    const KEY: &'static str = "seq";
    type Item = ClaimedDirective;

    fn lease(
        db: &mut Db<'_>,
        due: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<ClaimedDirective>> {
        db.query(
            &format!(
                "WITH due AS ({due}), claimed AS ( \
                     UPDATE directives d SET state = 'running', attempt = d.attempt + 1, worker = $1, \
                         leased_until = $2, updated_at = $3 \
                     FROM due WHERE d.seq = due.key \
                     RETURNING d.seq, {} \
                 ) \
                 SELECT {DIRECTIVE_COLUMNS} FROM claimed ORDER BY scheduled_at, seq",
                prefixed("d", DIRECTIVE_COLUMNS)
            ),
            params,
        )?
        .iter()
        .map(|row| Ok(ClaimedDirective::new(Directive::from_pg(row)?)))
        .collect()
    }

    fn put_back(db: &mut Db<'_>, items: &[ClaimedDirective]) -> StoreResult<()> {
        let ids: Vec<&str> = items.iter().map(|c| c.directive.id.as_str()).collect();
        db.execute(
            "UPDATE directives SET state = 'requested', attempt = attempt - 1, worker = NULL, \
             leased_until = NULL WHERE id = ANY($1)",
            &[&ids],
        )?;
        Ok(())
    }
}

/// `a, b` → `t.a, t.b`.
fn prefixed(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Finish.

/// The delivery a completion belongs to, as the database knows it.
struct Holder {
    tenant: String,
    signal_id: String,
    handler: String,
    depth: u32,
}

/// Which results may change their delivery: a result repeating the fence
/// `(id, attempt, worker)` of an earlier one in the batch is stale once the
/// earlier one is applied, as it would be one after the other.
fn first_of_each_fence(results: &[DeliveryResult]) -> Vec<bool> {
    let mut seen = HashSet::new();
    results
        .iter()
        .map(|r| seen.insert((r.delivery_id, r.attempt, r.worker.as_str())))
        .collect()
}

/// The fenced columns of some results, as arrays, with their index in the batch.
struct Fences {
    ords: Vec<i32>,
    ids: Vec<i64>,
    attempts: Vec<i32>,
    workers: Vec<String>,
}

impl Fences {
    fn of<'r>(results: impl Iterator<Item = (usize, &'r DeliveryResult)>) -> Self {
        let mut fences = Fences {
            ords: Vec::new(),
            ids: Vec::new(),
            attempts: Vec::new(),
            workers: Vec::new(),
        };
        for (ord, r) in results {
            fences.ords.push(i32::try_from(ord).unwrap_or(i32::MAX));
            fences.ids.push(r.delivery_id);
            fences.attempts.push(int(r.attempt));
            fences.workers.push(r.worker.clone());
        }
        fences
    }
}

const FENCE: &str =
    "d.id = r.id AND d.attempt = r.attempt AND d.worker = r.worker AND d.state = 'running'";

/// Completes, retries or discards the deliveries whose lease these results
/// still hold; returns the holder of each by its index in the batch.
fn settle(
    db: &mut Db<'_>,
    results: &[DeliveryResult],
    candidates: &[usize],
    now: DateTime<Utc>,
) -> StoreResult<HashMap<usize, Holder>> {
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let fences = Fences::of(candidates.iter().map(|&i| (i, &results[i])));
    let mut states = Vec::new();
    let mut scheduled = Vec::new();
    let mut errors = Vec::new();
    let mut finished = Vec::new();
    for &i in candidates {
        let r = &results[i];
        let (state, at, error) = match &r.decision {
            Decision::Complete(_) => ("completed", None, None),
            Decision::Retry { at } => ("retryable", Some(*at), r.error.as_deref()),
            _ => ("discarded", None, r.error.as_deref()),
        };
        states.push(state);
        scheduled.push(at);
        errors.push(error.map(|e| pg_text(e).into_owned()));
        finished.push((state != "retryable").then_some(now));
    }
    let digests: Vec<&str> = candidates
        .iter()
        .map(|&i| results[i].handler_digest.as_str())
        .collect();
    let rows = db.query(
        &format!(
            "UPDATE deliveries d SET state = r.state, scheduled_at = COALESCE(r.scheduled_at, d.scheduled_at), \
                 last_error = r.error, handler_digest = r.digest, finished_at = r.finished_at, \
                 worker = NULL, leased_until = NULL \
             FROM unnest($1::int[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], \
                         $7::text[], $8::text[], $9::timestamptz[]) \
                  AS r(ord, id, attempt, worker, state, scheduled_at, error, digest, finished_at) \
             WHERE {FENCE} \
             RETURNING r.ord, d.tenant, d.signal_id, d.handler, d.depth"
        ),
        &[
            &fences.ords,
            &fences.ids,
            &fences.attempts,
            &fences.workers,
            &states,
            &scheduled,
            &errors,
            &digests,
            &finished,
        ],
    )?;
    rows.iter()
        .map(|row| {
            let ord: i32 = row.try_get(0)?;
            let holder = Holder {
                tenant: row.try_get(1)?,
                signal_id: row.try_get(2)?,
                handler: row.try_get(3)?,
                depth: count(row, 4)?,
            };
            Ok((ord as usize, holder))
        })
        .collect()
}

/// Puts snoozed deliveries back without counting the attempt; returns the
/// indexes of the results that still held their lease.
fn snooze(
    db: &mut Db<'_>,
    results: &[DeliveryResult],
    candidates: &[usize],
) -> StoreResult<HashSet<usize>> {
    if candidates.is_empty() {
        return Ok(HashSet::new());
    }
    let fences = Fences::of(candidates.iter().map(|&i| (i, &results[i])));
    let at: Vec<Option<DateTime<Utc>>> = candidates
        .iter()
        .map(|&i| match results[i].decision {
            Decision::Snooze { at } => Some(at),
            _ => None,
        })
        .collect();
    let rows = db.query(
        &format!(
            "UPDATE deliveries d SET state = 'available', attempt = d.attempt - 1, scheduled_at = r.at, \
                 worker = NULL, leased_until = NULL \
             FROM unnest($1::int[], $2::bigint[], $3::int[], $4::text[], $5::timestamptz[]) \
                  AS r(ord, id, attempt, worker, at) \
             WHERE {FENCE} \
             RETURNING r.ord"
        ),
        &[
            &fences.ords,
            &fences.ids,
            &fences.attempts,
            &fences.workers,
            &at,
        ],
    )?;
    rows.iter()
        .map(|row| Ok(row.try_get::<_, i32>(0)? as usize))
        .collect()
}

/// Directives to insert, column by column.
#[derive(Default)]
struct NewDirectives {
    ids: Vec<String>,
    tenants: Vec<String>,
    names: Vec<String>,
    payloads: Vec<String>,
    keys: Vec<String>,
    signal_ids: Vec<String>,
    delivery_ids: Vec<i64>,
    handlers: Vec<String>,
    scheduled: Vec<DateTime<Utc>>,
    depths: Vec<i32>,
}

impl NewDirectives {
    /// A completed delivery's directives, with the delivery's tenant, signal
    /// and depth (a directive cannot name another tenant).
    fn push(
        &mut self,
        holder: &Holder,
        delivery_id: i64,
        directives: &[RequestedDirective],
        now: DateTime<Utc>,
    ) {
        for d in directives {
            self.ids.push(d.id.clone());
            self.tenants.push(holder.tenant.clone());
            self.names.push(d.name.clone());
            self.payloads.push(d.payload.to_string());
            self.keys.push(pg_text(&d.idempotency_key).into_owned());
            self.signal_ids.push(holder.signal_id.clone());
            self.delivery_ids.push(delivery_id);
            self.handlers.push(holder.handler.clone());
            self.scheduled.push(d.scheduled_at.unwrap_or(now));
            self.depths.push(int(holder.depth));
        }
    }

    /// Inserts those whose idempotency key is free (in order, so the first
    /// of a repeated key wins); returns the ids inserted.
    fn insert(&self, db: &mut Db<'_>, now: DateTime<Utc>) -> StoreResult<HashSet<String>> {
        if self.ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = db.query(
            "INSERT INTO directives (id, tenant, name, payload, idempotency_key, state, signal_id, delivery_id, \
                 handler, scheduled_at, depth, inserted_at, updated_at) \
             SELECT id, tenant, name, payload::json, key, 'requested', signal_id, delivery_id, handler, \
                 scheduled_at, depth, $11, $11 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], \
                         $8::text[], $9::timestamptz[], $10::int[]) WITH ORDINALITY \
                  AS r(id, tenant, name, payload, key, signal_id, delivery_id, handler, scheduled_at, depth, ord) \
             WHERE NOT EXISTS (SELECT 1 FROM pruned_directive_keys p \
                               WHERE p.tenant = r.tenant AND p.idempotency_key = r.key) \
             ORDER BY ord \
             ON CONFLICT (tenant, idempotency_key) DO NOTHING \
             RETURNING id",
            &[
                &self.ids,
                &self.tenants,
                &self.names,
                &self.payloads,
                &self.keys,
                &self.signal_ids,
                &self.delivery_ids,
                &self.handlers,
                &self.scheduled,
                &self.depths,
                &now,
            ],
        )?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}

/// How writing one delivery's directives went.
enum Written {
    /// New rows and duplicates of existing ones.
    All { created: u32, duplicates: u32 },
    /// `key` exists with another name or payload: nothing of this delivery
    /// was kept.
    Conflict { key: String },
}

/// A completed delivery and the directives it asked for.
struct Completion<'r> {
    ord: usize,
    holder: Holder,
    result: &'r DeliveryResult,
    directives: &'r [RequestedDirective],
}

/// Writes the directives of every completion. The usual case, every key
/// new, is one INSERT for the whole batch; if any key was taken, that INSERT
/// is rolled back and each delivery is written on its own, in order, to
/// tell duplicates from conflicts exactly as SQLite does.
fn write_directives(
    db: &mut Db<'_>,
    completions: &[Completion<'_>],
    now: DateTime<Utc>,
) -> StoreResult<Vec<Written>> {
    let mut all = NewDirectives::default();
    for c in completions {
        all.push(&c.holder, c.result.delivery_id, c.directives, now);
    }
    let all_new = |completions: &[Completion<'_>]| {
        completions
            .iter()
            .map(|c| Written::All {
                created: c.directives.len() as u32,
                duplicates: 0,
            })
            .collect()
    };
    if all.ids.is_empty() {
        return Ok(all_new(completions));
    }
    db.c.batch_execute("SAVEPOINT directives")?;
    let inserted = all.insert(db, now)?;
    if inserted.len() == all.ids.len() && !keys_pruned_meanwhile(db, &all)? {
        db.c.batch_execute("RELEASE SAVEPOINT directives")?;
        return Ok(all_new(completions));
    }
    db.c.batch_execute("ROLLBACK TO SAVEPOINT directives")?;
    completions
        .iter()
        .map(|c| write_one_delivery(db, c, now))
        .collect()
}

/// Whether a prune that committed while `all` was inserted kept one of its
/// keys: its `NOT EXISTS` could not see that prune, and its `ON CONFLICT`
/// waited for the directive the prune deleted. A new statement sees it.
fn keys_pruned_meanwhile(db: &mut Db<'_>, all: &NewDirectives) -> StoreResult<bool> {
    let rows = db.query(
        "SELECT 1 FROM pruned_directive_keys p \
         JOIN unnest($1::text[], $2::text[]) AS k(tenant, key) \
             ON p.tenant = k.tenant AND p.idempotency_key = k.key \
         LIMIT 1",
        &[&all.tenants, &all.keys],
    )?;
    Ok(!rows.is_empty())
}

fn write_one_delivery(
    db: &mut Db<'_>,
    completion: &Completion<'_>,
    now: DateTime<Utc>,
) -> StoreResult<Written> {
    let mut new = NewDirectives::default();
    new.push(
        &completion.holder,
        completion.result.delivery_id,
        completion.directives,
        now,
    );
    let inserted = new.insert(db, now)?;
    let mut duplicates = 0;
    for (d, key) in completion.directives.iter().zip(&new.keys) {
        if inserted.contains(&d.id) {
            continue;
        }
        let held = db.query_opt(
            "SELECT name, payload FROM directives WHERE tenant = $1 AND idempotency_key = $2",
            &[&completion.holder.tenant, key],
        )?;
        let verdict = match held {
            Some(row) => {
                let (name, payload): (String, serde_json::Value) =
                    (row.try_get(0)?, row.try_get(1)?);
                rules::match_directive(Some((&name, &payload)), &d.name, &d.payload)
            }
            // Its directive was pruned; the key stays taken.
            None => {
                let row = db
                    .query_opt(
                        "SELECT name, payload_digest FROM pruned_directive_keys \
                         WHERE tenant = $1 AND idempotency_key = $2",
                        &[&completion.holder.tenant, key],
                    )?
                    .ok_or_else(|| {
                        StoreError::Database(format!(
                            "directive {key:?} was neither inserted nor found"
                        ))
                    })?;
                let (name, digest): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                rules::match_pruned_directive((&name, &digest), &d.name, &d.payload)
            }
        };
        if verdict == rules::DirectiveMatch::Duplicate {
            duplicates += 1;
        } else {
            let written: Vec<&String> =
                new.ids.iter().filter(|id| inserted.contains(*id)).collect();
            db.execute("DELETE FROM directives WHERE id = ANY($1)", &[&written])?;
            return Ok(Written::Conflict {
                key: d.idempotency_key.clone(),
            });
        }
    }
    Ok(Written::All {
        created: inserted.len() as u32,
        duplicates,
    })
}

/// Discards a completed delivery whose directives conflict, with the reason.
fn discard_conflict(db: &mut Db<'_>, delivery_id: i64, key: &str) -> StoreResult<()> {
    // Unfenced: this transaction completed it a moment ago.
    db.execute(
        "UPDATE deliveries SET state = 'discarded', last_error = $2 WHERE id = $1",
        &[&delivery_id, &pg_text(&rules::conflict_error(key)).as_ref()],
    )?;
    Ok(())
}

/// Records the attempts of the results that changed their delivery (a
/// fenced-out result is dropped whole: its attempt is not its to record),
/// with the outcome and error each attempt ended with.
fn record_attempts(
    db: &mut Db<'_>,
    attempts: &[(&DeliveryResult, AttemptOutcome, Option<String>)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = attempts.iter().map(|(r, ..)| r.delivery_id).collect();
    let numbers: Vec<i32> = attempts.iter().map(|(r, ..)| int(r.attempt)).collect();
    let workers: Vec<&str> = attempts.iter().map(|(r, ..)| r.worker.as_str()).collect();
    let digests: Vec<&str> = attempts
        .iter()
        .map(|(r, ..)| r.handler_digest.as_str())
        .collect();
    let outcomes: Vec<&str> = attempts.iter().map(|(_, o, _)| o.as_str()).collect();
    let errors: Vec<Option<String>> = attempts
        .iter()
        .map(|(_, _, e)| e.as_deref().map(|e| pg_text(e).into_owned()))
        .collect();
    let started: Vec<DateTime<Utc>> = attempts.iter().map(|(r, ..)| r.started_at).collect();
    let durations: Vec<i64> = attempts
        .iter()
        .map(|(r, ..)| i64::try_from(r.duration.as_micros()).unwrap_or(i64::MAX))
        .collect();
    let fuel: Vec<Option<i64>> = attempts
        .iter()
        .map(|(r, ..)| r.fuel.map(|f| i64::try_from(f).unwrap_or(i64::MAX)))
        .collect();
    let counts: Vec<i32> = attempts
        .iter()
        .map(|(r, ..)| int(r.directive_count))
        .collect();
    let outputs: Vec<String> = attempts
        .iter()
        .map(|(r, ..)| pg_text(&r.output).into_owned())
        .collect();
    let truncated: Vec<bool> = attempts
        .iter()
        .map(|(r, ..)| r.details.output_truncated)
        .collect();
    let peaks: Vec<Option<i64>> = attempts
        .iter()
        .map(|(r, ..)| {
            r.details
                .peak_memory_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
        })
        .collect();
    let refusals: Vec<String> = attempts
        .iter()
        .map(|(r, ..)| pg_text(&sql::refusals_column(&r.details.refused_directives)).into_owned())
        .collect();
    db.execute(
        "INSERT INTO attempts (delivery_id, attempt, worker, handler_digest, outcome, error, started_at, \
             duration_us, fuel, directive_count, output, finished_at, output_truncated, \
             peak_memory_bytes, refused_directives) \
         SELECT delivery_id, attempt, worker, handler_digest, outcome, error, started_at, duration_us, fuel, \
             directive_count, output, $12, truncated, peak, refused \
         FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::timestamptz[], $8::bigint[], $9::bigint[], $10::int[], $11::text[], \
                     $13::bool[], $14::bigint[], $15::text[]) \
              AS r(delivery_id, attempt, worker, handler_digest, outcome, error, started_at, duration_us, fuel, \
                   directive_count, output, truncated, peak, refused) \
         ON CONFLICT DO NOTHING",
        &[
            &ids, &numbers, &workers, &digests, &outcomes, &errors, &started, &durations, &fuel,
            &counts, &outputs, &now, &truncated, &peaks, &refusals,
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Listings and operator actions on deliveries.

fn attempt_from_row(r: &::postgres::Row) -> StoreResult<Attempt> {
    Ok(Attempt {
        delivery_id: r.try_get(0)?,
        attempt: count(r, 1)?,
        worker: r.try_get(2)?,
        handler_digest: r.try_get(3)?,
        outcome: AttemptOutcome::parse(r.try_get(4)?)?,
        error: r.try_get(5)?,
        started_at: r.try_get(6)?,
        duration_us: r.try_get::<_, i64>(7)?.max(0) as u64,
        fuel: r.try_get::<_, Option<i64>>(8)?.map(|f| f.max(0) as u64),
        directive_count: count(r, 9)?,
        output: r.try_get(10)?,
        finished_at: r.try_get(11)?,
        details: AttemptDetails {
            output_truncated: r.try_get(12)?,
            peak_memory_bytes: r.try_get::<_, Option<i64>>(13)?.map(|b| b.max(0) as u64),
            refused_directives: sql::refusals_from_column(r.try_get(14)?)?,
        },
    })
}

// ---------------------------------------------------------------------------
// Directives.

/// Lists travel as arrays.
impl Placeholders for Db<'_> {
    fn param(n: usize) -> String {
        format!("${n}")
    }

    fn in_list(column: &str, n: usize) -> String {
        format!("{column} = ANY(${n})")
    }

    const LOCK_ROWS: &'static str = " FOR UPDATE";
}

impl FromPgRow for sql::PruneCandidate {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            key: row.try_get(0)?,
            at: row.try_get(1)?,
        })
    }
}

impl FromPgRow for sql::CountRow {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            queue: row.try_get(0)?,
            group: row.try_get(1)?,
            tenant: row.try_get(2)?,
            state: row.try_get(3)?,
            n: row.try_get(4)?,
        })
    }
}

impl FromPgRow for sql::WaitingRow {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            handler: row.try_get(0)?,
            oldest: row.try_get(1)?,
        })
    }
}

impl FromPgRow for sql::RecentRow {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            handler: row.try_get(0)?,
            tenant: row.try_get(1)?,
            attempts: row.try_get(2)?,
            sum_us: row.try_get(3)?,
            max_us: row.try_get::<_, i64>(4)?,
        })
    }
}

impl FromPgRow for Attempt {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        attempt_from_row(row)
    }
}

impl FromPgRow for sql::Count {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(Self(row.try_get::<_, i64>(0)?.max(0) as u64))
    }
}

/// A statement's parameters as PostgreSQL values.
fn values(params: Vec<Param>) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .into_iter()
        .map(|param| -> Box<dyn ToSql + Sync> {
            match param {
                // As elsewhere: PostgreSQL text cannot hold NUL.
                Param::Text(text) => Box::new(pg_text(&text).into_owned()),
                Param::Null => Box::new(None::<String>),
                Param::Int(n) => Box::new(n),
                Param::Time(at) => Box::new(at),
                Param::Texts(list) => Box::new(list),
                Param::Ints(list) => Box::new(list),
            }
        })
        .collect()
}

impl Db<'_> {
    fn list<T>(
        &mut self,
        statement: sql::Statement,
        row: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let values = values(statement.params);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v as _).collect();
        self.c
            .query(&statement.sql, &params)?
            .iter()
            .map(row)
            .collect()
    }
}

impl FromPgRow for HandlerRegistration {
    fn from_pg(row: &Row) -> StoreResult<Self> {
        Ok(HandlerRegistration {
            host: row.try_get(0)?,
            handler: row.try_get(1)?,
            digest: row.try_get(2)?,
            subscriptions: sql::subscriptions_from_column(row.try_get(3)?)?,
            package: row.try_get(4)?,
            max_attempts: u32::try_from(row.try_get::<_, i64>(5)?).unwrap_or(u32::MAX),
            load_error: row.try_get(6)?,
            registered_at: row.try_get(7)?,
        })
    }
}

impl Verbs for Db<'_> {
    fn read<T: Record>(&mut self, query: sql::Statement) -> StoreResult<Vec<T>> {
        self.list(query, T::from_pg)
    }

    /// Wakes the idle workers of every process (delivered on commit).
    fn deliveries_due(&mut self) -> StoreResult<()> {
        notify(self, DELIVERIES_CHANNEL)
    }

    fn change(&mut self, statement: sql::Statement) -> StoreResult<u64> {
        let values = values(statement.params);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v as _).collect();
        Ok(self.c.execute(&statement.sql, &params)?)
    }

    fn tenant(&mut self, id: &str) -> StoreResult<Option<Tenant>> {
        let db = self;
        db.query_opt(&format!("{TENANT_SELECT} WHERE t.id = $1"), &[&id])?
            .map(|row| tenant_from_row(&row))
            .transpose()
    }

    fn tenants(&mut self) -> StoreResult<Vec<Tenant>> {
        let db = self;
        db.query(&format!("{TENANT_SELECT} ORDER BY t.id COLLATE \"C\""), &[])?
            .iter()
            .map(tenant_from_row)
            .collect()
    }

    fn create_tenant(
        &mut self,
        id: &str,
        settings: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Tenant> {
        let db = self;
        let inserted = db.execute(
            "INSERT INTO tenants (id, settings, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &[&id, settings, &now],
        )?;
        if inserted == 0 {
            return Err(StoreError::TenantExists(id.to_owned()));
        }
        known_tenant(db, id)
    }

    fn set_settings(&mut self, id: &str, settings: &serde_json::Value) -> StoreResult<Tenant> {
        let db = self;
        let changed = db.execute(
            "UPDATE tenants SET settings = $2 WHERE id = $1",
            &[&id, settings],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownTenant(id.to_owned()));
        }
        known_tenant(db, id)
    }

    fn set_weight(&mut self, id: &str, weight: u32) -> StoreResult<Tenant> {
        let db = self;
        let changed = db.execute(
            "UPDATE tenants SET weight = $2 WHERE id = $1",
            &[&id, &int(weight)],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownTenant(id.to_owned()));
        }
        known_tenant(db, id)
    }

    fn set_limits(&mut self, id: &str, limits: &TenantLimits) -> StoreResult<Tenant> {
        let db = self;
        let changed = db.execute(
            "UPDATE tenants SET max_running = $2, max_pending = $3, max_emit_per_s = $4 WHERE id = $1",
            &[
                &id,
                &limits.max_running.map(int),
                &limits
                    .max_pending
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                &limits.max_emit_per_s.map(int),
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownTenant(id.to_owned()));
        }
        known_tenant(db, id)
    }

    fn pending_deliveries(&mut self, tenant: &str, cap: u64) -> StoreResult<u64> {
        let db = self;
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let count: i64 = db
            .query_opt(
                "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries \
                 WHERE tenant = $1 AND state IN ('available', 'retryable') LIMIT $2) x",
                &[&tenant, &cap],
            )?
            .map_or(Ok(0), |row| row.try_get(0))?;
        Ok(count.max(0) as u64)
    }

    fn install_package(&mut self, id: &str, package: &str) -> StoreResult<Tenant> {
        let db = self;
        known_tenant(db, id)?;
        db.execute(
            "INSERT INTO tenant_packages (tenant, package) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, &package],
        )?;
        known_tenant(db, id)
    }

    fn uninstall_package(&mut self, id: &str, package: &str) -> StoreResult<Tenant> {
        let db = self;
        known_tenant(db, id)?;
        db.execute(
            "DELETE FROM tenant_packages WHERE tenant = $1 AND package = $2",
            &[&id, &package],
        )?;
        known_tenant(db, id)
    }

    fn record_handler_version(
        &mut self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let db = self;
        db.execute(
            "INSERT INTO handler_versions (name, digest, first_seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&name, &digest, &now],
        )?;
        Ok(())
    }

    fn handler_versions(&mut self, name: &str) -> StoreResult<Vec<HandlerVersion>> {
        let db = self;
        db.query(
            "SELECT digest, first_seen_at FROM handler_versions WHERE name = $1 \
             ORDER BY first_seen_at, digest",
            &[&name],
        )?
        .iter()
        .map(|r| {
            Ok(HandlerVersion {
                digest: r.try_get(0)?,
                first_seen_at: r.try_get(1)?,
            })
        })
        .collect()
    }

    /// See `Store::resume_handler`. Snoozed deliveries are the available ones
    /// scheduled later than now: new ones are due at once and retries are
    /// `retryable`. The `IN` keeps the statement on the partial due index.
    fn resume_handler(&mut self, name: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        let db = self;
        db.execute(
            "UPDATE deliveries SET scheduled_at = $2 \
             WHERE state IN ('available', 'retryable') AND scheduled_at > $2 \
             AND state = 'available' AND handler = $1",
            &[&name, &now],
        )
    }

    fn emit(
        &mut self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>> {
        let db = self;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let packages = packages_of(db, batch.iter().map(|(new, _)| new.tenant.as_str()))?;
        let depths = depths(db, batch)?;
        let signals: Vec<Signal> = batch
            .iter()
            .map(|(new, _)| rules::new_signal(new, rules::new_signal_id(), now))
            .collect();
        let created = insert_signals(db, &signals, &depths, now)?;
        let mut deliveries = NewDeliveries::default();
        let mut emitted = Vec::with_capacity(batch.len());
        for ((signal, (_, targets)), depth) in signals.into_iter().zip(batch).zip(depths) {
            if created.contains(&signal.id) {
                let count = deliveries.push(
                    &signal.id,
                    &signal.tenant,
                    depth,
                    &packages[&signal.tenant],
                    targets,
                );
                emitted.push(Emitted {
                    status: EmitStatus::Created,
                    signal,
                    deliveries: count,
                });
            } else {
                // Only a signal with a dedupe key can be left out.
                let key = signal.dedupe_key.as_deref().unwrap_or_default();
                emitted.push(Emitted {
                    status: EmitStatus::Existing,
                    signal: signal_by_dedupe_key(db, &signal.tenant, key)?,
                    deliveries: 0,
                });
            }
        }
        deliveries.insert(db, now)?;
        Ok(emitted)
    }

    /// The depth of signal `id` of `tenant`; `None` if the tenant has none.
    fn signal_depth(&mut self, tenant: &str, id: &str) -> StoreResult<Option<u32>> {
        let db = self;
        db.query_opt(
            "SELECT depth FROM signals WHERE id = $1 AND tenant = $2",
            &[&id, &tenant],
        )?
        .map(|row| count(&row, 0))
        .transpose()
    }

    /// Leases held by workers that stopped: record the lost attempt, then make
    /// the delivery retryable (or discarded, if that was its last attempt):
    /// `rules::AFTER_LOST_LEASE`, applied in the statement. One statement; rows
    /// another transaction holds (a late completion, another rescuer) are
    /// skipped, not waited for.
    fn rescue_deliveries(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        let db = self;
        let (retried, discarded) = rules::AFTER_LOST_LEASE;
        let rescued = db.execute(
            "WITH expired AS ( \
                 SELECT id, attempt, worker, handler_digest FROM deliveries \
                 WHERE state = 'running' AND leased_until < $1 \
                 FOR UPDATE SKIP LOCKED \
             ), lost AS ( \
                 INSERT INTO attempts (delivery_id, attempt, worker, handler_digest, outcome, error, started_at, \
                     duration_us, fuel, directive_count, output, finished_at) \
                 SELECT id, attempt, COALESCE(worker, ''), COALESCE(handler_digest, ''), $2, $3, $1, 0, NULL, 0, \
                     '', $1 \
                 FROM expired \
                 ON CONFLICT DO NOTHING \
             ) \
             UPDATE deliveries d SET \
                 state = CASE WHEN d.attempt >= d.max_attempts THEN $5 ELSE $4 END, \
                 finished_at = CASE WHEN d.attempt >= d.max_attempts THEN $1 END, \
                 last_error = $6, worker = NULL, leased_until = NULL, scheduled_at = $1 \
             FROM expired WHERE d.id = expired.id",
            &[
                &now,
                &AttemptOutcome::LeaseExpired.as_str(),
                &rules::LEASE_EXPIRED_ATTEMPT_ERROR,
                &retried.as_str(),
                &discarded.as_str(),
                &rules::LEASE_EXPIRED_DELIVERY_ERROR,
            ],
        )?;
        Ok(rescued)
    }

    /// Makes the claim [`fair::claim`] decides (the rescue runs before, on its
    /// own).
    fn claim_deliveries(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let db = self;
        fair::claim(&mut FairQueue::<Deliveries>::new(db), claim, now)
    }

    /// The heartbeat: one statement for every lease `worker` still holds.
    fn extend_delivery_leases(
        &mut self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let db = self;
        let ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
        let attempts: Vec<i32> = held.iter().map(|(_, attempt)| int(*attempt)).collect();
        db.execute(
            "UPDATE deliveries d SET leased_until = $4 \
             FROM unnest($1::bigint[], $2::int[]) AS r(id, attempt) \
             WHERE d.id = r.id AND d.attempt = r.attempt AND d.worker = $3 AND d.state = 'running'",
            &[&ids, &attempts, &worker, &until],
        )
    }

    /// [`Verbs::extend_delivery_leases`] for directives.
    fn extend_directive_leases(
        &mut self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let db = self;
        let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
        let attempts: Vec<i32> = held.iter().map(|(_, attempt)| int(*attempt)).collect();
        db.execute(
            "UPDATE directives d SET leased_until = $4 \
             FROM unnest($1::text[], $2::int[]) AS r(id, attempt) \
             WHERE d.id = r.id AND d.attempt = r.attempt AND d.worker = $3 AND d.state = 'running'",
            &[&ids, &attempts, &worker, &until],
        )
    }

    /// Records a batch of results in the transaction `db` holds: the fenced
    /// state changes, the directives of completed deliveries, the attempts.
    fn finish_deliveries(
        &mut self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>> {
        let db = self;
        let first = first_of_each_fence(results);
        let (snoozes, settles): (Vec<usize>, Vec<usize>) = (0..results.len())
            .filter(|&i| first[i])
            .partition(|&i| matches!(results[i].decision, Decision::Snooze { .. }));
        let mut held = settle(db, results, &settles, now)?;
        let snoozed = snooze(db, results, &snoozes)?;

        let completions: Vec<Completion<'_>> = settles
            .iter()
            .filter_map(|&ord| match &results[ord].decision {
                Decision::Complete(directives) => held.remove(&ord).map(|holder| Completion {
                    ord,
                    holder,
                    result: &results[ord],
                    directives,
                }),
                _ => None,
            })
            .collect();
        let written = write_directives(db, &completions, now)?;

        let mut outcomes: Vec<FinishOutcome> = (0..results.len())
            .map(|i| match &results[i].decision {
                Decision::Snooze { .. } if snoozed.contains(&i) => FinishOutcome::Snoozed,
                Decision::Retry { .. } if held.contains_key(&i) => FinishOutcome::Retrying,
                Decision::Discard if held.contains_key(&i) => FinishOutcome::Discarded,
                _ => FinishOutcome::LeaseLost, // completions are filled in below
            })
            .collect();
        let mut created = 0;
        for (completion, written) in completions.iter().zip(written) {
            outcomes[completion.ord] = match written {
                Written::All {
                    created: n,
                    duplicates,
                } => {
                    created += n;
                    FinishOutcome::Completed {
                        directives_created: n,
                        duplicates,
                    }
                }
                Written::Conflict { key } => {
                    discard_conflict(db, completion.result.delivery_id, &key)?;
                    FinishOutcome::Conflict { key }
                }
            };
        }

        let attempts: Vec<(&DeliveryResult, AttemptOutcome, Option<String>)> = results
            .iter()
            .zip(&outcomes)
            .filter_map(|(r, outcome)| match outcome {
                FinishOutcome::LeaseLost | FinishOutcome::Snoozed => None,
                // The attempt keeps the reason its delivery ended.
                FinishOutcome::Conflict { key } => Some((
                    r,
                    AttemptOutcome::Conflict,
                    Some(rules::conflict_error(key)),
                )),
                _ => Some((r, r.outcome, r.error.clone())),
            })
            .collect();
        record_attempts(db, &attempts, now)?;
        if created > 0 {
            notify(db, DIRECTIVES_CHANNEL)?;
        }
        Ok(outcomes)
    }

    fn attempts(&mut self, delivery_id: i64) -> StoreResult<Vec<Attempt>> {
        let db = self;
        db.query(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = $1 ORDER BY attempt"
            ),
            &[&delivery_id],
        )?
        .iter()
        .map(attempt_from_row)
        .collect()
    }

    fn replay(
        &mut self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let db = self;
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let mut signals: HashMap<String, (String, u32)> = HashMap::new();
        for row in db.query(
            // Shared locks: a prune deleting one of them waits for this
            // transaction, then sees its deliveries and keeps the signal.
            "SELECT id, tenant, depth FROM signals WHERE id = ANY($1) FOR SHARE",
            &[&ids],
        )? {
            signals.insert(row.try_get(0)?, (row.try_get(1)?, count(&row, 2)?));
        }
        if let Some(missing) = ids.iter().find(|id| !signals.contains_key(**id)) {
            return Err(StoreError::NotFound {
                kind: "signal",
                id: (*missing).to_owned(),
            });
        }
        let packages = packages_of(db, signals.values().map(|(tenant, _)| tenant.as_str()))?;
        let mut deliveries = NewDeliveries::default();
        for (signal_id, targets) in batch {
            let (tenant, depth) = &signals[signal_id];
            deliveries.push(signal_id, tenant, *depth, &packages[tenant], targets);
        }
        deliveries.insert(db, now)
    }

    /// A runner that stopped mid-directive: run it again (executors are told to
    /// expect at-least-once calls).
    fn rescue_directives(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        let db = self;
        let rescued = db.execute(
            "UPDATE directives SET state = 'requested', scheduled_at = $1, updated_at = $1, worker = NULL, \
                 leased_until = NULL, last_error = $2 \
             WHERE seq IN (SELECT seq FROM directives WHERE state = 'running' AND leased_until < $1 \
                           FOR UPDATE SKIP LOCKED)",
            &[&now, &rules::LEASE_EXPIRED_DIRECTIVE_ERROR],
        )?;
        Ok(rescued)
    }

    /// Makes the claim [`fair::claim`] decides (the rescue runs before, on its
    /// own).
    fn claim_directives(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDirective>> {
        let db = self;
        fair::claim(&mut FairQueue::<Directives>::new(db), claim, now)
    }

    fn finish_directive(
        &mut self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let db = self;
        let (state, scheduled_at, error, result) = match decision {
            DirectiveDecision::Succeeded(result) => ("succeeded", None, None, Some(result)),
            DirectiveDecision::Retry { at, error } => ("requested", Some(*at), Some(error), None),
            DirectiveDecision::Failed(error) => ("failed", None, Some(error), None),
        };
        let error = error.map(|e| pg_text(e).into_owned());
        let changed = db.execute(
            "UPDATE directives SET state = $4, scheduled_at = COALESCE($5, scheduled_at), last_error = $6, \
                 result = $7, updated_at = $8, worker = NULL, leased_until = NULL \
             WHERE id = $1 AND attempt = $2 AND worker = $3 AND state = 'running'",
            &[
                &id,
                &int(attempt),
                &worker,
                &state,
                &scheduled_at,
                &error,
                &result,
                &now,
            ],
        )?;
        Ok(changed == 1)
    }

    /// The cluster-wide prune lock, for this transaction only: a pooled
    /// connection never keeps it.
    fn take_prune_turn(&mut self) -> StoreResult<bool> {
        let db = self;
        let row = db.query_opt(
            "SELECT pg_try_advisory_xact_lock($1)",
            &[&super::PRUNE_LOCK],
        )?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(false))
    }

    /// Autovacuum makes the space of deleted rows reusable by itself.
    fn reclaim_space(&mut self, _max_pages: u32) -> StoreResult<u64> {
        Ok(0)
    }

    /// Folds the slots of connections gone into slot 0, which only this
    /// (under the prune turn) writes, and drops counts back at zero there.
    fn fold_counts(&mut self) -> StoreResult<()> {
        let db = self;
        db.execute(
            "WITH gone AS ( \
                 DELETE FROM queue_counts WHERE slot <> 0 \
                 AND slot NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL) \
                 RETURNING queue, grp, tenant, state, n) \
             INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n) \
             SELECT queue, grp, tenant, state, 0, SUM(n) FROM gone GROUP BY queue, grp, tenant, state \
             ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n",
            &[],
        )?;
        db.execute("DELETE FROM queue_counts WHERE slot = 0 AND n = 0", &[])?;
        Ok(())
    }
}
