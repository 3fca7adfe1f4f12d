//! The SQL of the SQLite store: its [`Verbs`], each run on the connection
//! [`SqlStore`] chose (the reader, or the writer's transaction), and the
//! fair claim's [`fair::ClaimVerbs`].

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::{SqliteConn, from_micros, micros};
use crate::fair::{self, Claim};
use crate::rules;
use crate::store::sql::{
    self, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DIRECTIVE_COLUMNS, Param, Placeholders, SIGNAL_COLUMNS,
};
use crate::store::*;

fn json_column(row: &Row<'_>, index: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn entity(kind: Option<String>, id: Option<String>) -> Option<EntityRef> {
    Some(EntityRef {
        kind: kind?,
        id: id?,
    })
}

/// A record as an SQLite row holds it, in the column order of `store/sql.rs`.
pub trait FromSqliteRow: Sized {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self>;
}

impl FromSqliteRow for Signal {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Signal {
            id: row.get(0)?,
            tenant: row.get(1)?,
            name: row.get(2)?,
            payload: json_column(row, 3)?,
            metadata: json_column(row, 4)?,
            dedupe_key: row.get(5)?,
            occurred_at: from_micros(row.get(6)?),
            correlation_id: row.get(7)?,
            causation_id: row.get(8)?,
            actor: entity(row.get(9)?, row.get(10)?),
            subject: entity(row.get(11)?, row.get(12)?),
            source: row.get(13)?,
            inserted_at: from_micros(row.get(14)?),
        })
    }
}

fn state_column<T>(
    row: &Row<'_>,
    index: usize,
    parse: fn(&str) -> StoreResult<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

impl FromSqliteRow for Delivery {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Delivery {
            id: row.get(0)?,
            signal_id: row.get(1)?,
            tenant: row.get(2)?,
            handler: row.get(3)?,
            state: state_column(row, 4, DeliveryState::parse)?,
            attempt: row.get(5)?,
            max_attempts: row.get(6)?,
            scheduled_at: from_micros(row.get(7)?),
            last_error: row.get(8)?,
            handler_digest: row.get(9)?,
            inserted_at: from_micros(row.get(10)?),
            finished_at: row.get::<_, Option<i64>>(11)?.map(from_micros),
        })
    }
}

impl FromSqliteRow for Directive {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Directive {
            id: row.get(0)?,
            tenant: row.get(1)?,
            name: row.get(2)?,
            payload: json_column(row, 3)?,
            idempotency_key: row.get(4)?,
            state: state_column(row, 5, DirectiveState::parse)?,
            signal_id: row.get(6)?,
            delivery_id: row.get(7)?,
            handler: row.get(8)?,
            scheduled_at: from_micros(row.get(9)?),
            attempt: row.get(10)?,
            last_error: row.get(11)?,
            result: row
                .get::<_, Option<String>>(12)?
                .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))),
            depth: row.get(13)?,
            inserted_at: from_micros(row.get(14)?),
            updated_at: from_micros(row.get(15)?),
        })
    }
}

/// The tenant `id`, which the caller's statement just touched.
fn touched_tenant(c: &Connection, id: &str) -> StoreResult<Tenant> {
    SqliteConn(c)
        .tenant(id)?
        .ok_or_else(|| StoreError::UnknownTenant(id.to_owned()))
}

fn packages(c: &Connection, tenant: &str) -> StoreResult<Vec<String>> {
    Ok(
        c.prepare_cached("SELECT package FROM tenant_packages WHERE tenant = ?1 ORDER BY package")?
            .query_map([tenant], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
    )
}

/// A tenant's packages, or `UnknownTenant`.
fn known_tenant_packages(c: &Connection, tenant: &str) -> StoreResult<Vec<String>> {
    let exists = c
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .query_row([tenant], |_| Ok(()))
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::UnknownTenant(tenant.to_owned()));
    }
    packages(c, tenant)
}

fn insert_deliveries(
    c: &Connection,
    signal_id: &str,
    tenant: &str,
    depth: u32,
    packages: &[String],
    targets: &[DeliveryTarget],
    now: DateTime<Utc>,
) -> StoreResult<u32> {
    let mut insert = c.prepare_cached(
        "INSERT INTO deliveries (signal_id, tenant, handler, state, max_attempts, scheduled_at, depth, inserted_at) \
         VALUES (?1, ?2, ?3, 'available', ?4, ?5, ?6, ?5)",
    )?;
    let mut created = 0;
    for target in targets {
        if rules::is_deliverable(target, packages) {
            insert.execute(params![
                signal_id,
                tenant,
                target.handler,
                target.max_attempts,
                micros(now),
                depth
            ])?;
            created += 1;
        }
    }
    Ok(created)
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> i64 {
    micros(now) + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2)
}

/// A queue a fair claim takes from, and how it leases.
trait QueueKind {
    const QUEUE: fair::Queue;
    type Item: fair::Claimed;
    /// Leases up to `n` of `tenant`'s due rows (or anyone's, `None`), oldest
    /// first, of no handler of `full` (a JSON array, if any).
    fn lease(
        c: &Connection,
        tenant: Option<&str>,
        n: usize,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: Option<&str>,
    ) -> StoreResult<Vec<Self::Item>>;
    /// Undoes the lease of these items (see `fair::ClaimVerbs::put_back`).
    fn put_back(c: &Connection, items: &[Self::Item]) -> StoreResult<()>;
}

/// A list of names as a JSON array, for `json_each`.
fn json_list(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned())
}

/// The full handlers a lease leaves out, as `?6`: no clause at all when
/// none is full, so the usual lease is the statement it always was.
fn leaving_out(full: Option<&str>) -> &'static str {
    match full {
        Some(_) => "AND handler NOT IN (SELECT value FROM json_each(?6))",
        None => "",
    }
}

/// A lease's parameters: `?1`…`?5`, and `?6` when handlers are left out.
fn lease_params<'p>(
    fixed: [&'p dyn rusqlite::ToSql; 5],
    full: &'p Option<&str>,
) -> Vec<&'p dyn rusqlite::ToSql> {
    let mut params = fixed.to_vec();
    if let Some(full) = full {
        params.push(full);
    }
    params
}

/// The fair claim's verbs on one queue; the one writer connection keeps
/// claims from interleaving.
struct FairQueue<'c, K> {
    c: &'c Connection,
    kind: std::marker::PhantomData<K>,
}

impl<'c, K> FairQueue<'c, K> {
    fn new(c: &'c Connection) -> Self {
        Self {
            c,
            kind: std::marker::PhantomData,
        }
    }
}

impl<K: QueueKind> fair::ClaimVerbs for FairQueue<'_, K> {
    type Item = K::Item;

    fn clock_and_due(
        &mut self,
        now: DateTime<Utc>,
        cap: usize,
    ) -> StoreResult<(i64, Vec<(String, usize)>)> {
        let clock = self
            .c
            .prepare_cached("SELECT vtime FROM fair_clocks WHERE queue = ?1")?
            .query_row([K::QUEUE.name], |r| r.get(0))?;
        // The tenants with pending rows and how many of each are due,
        // counted up to `cap`.
        let fair::Queue { table, pending, .. } = K::QUEUE;
        let waiting = K::QUEUE.waiting_tenants();
        let rows: Vec<(String, i64)> = self
            .c
            .prepare_cached(&format!(
                "WITH RECURSIVE {waiting} \
                 SELECT tenant, (SELECT COUNT(*) FROM (SELECT 1 FROM {table} t \
                     WHERE t.tenant = waiting.tenant AND t.{pending} AND t.scheduled_at <= ?1 \
                     LIMIT ?2)) \
                 FROM waiting WHERE tenant IS NOT NULL"
            ))?
            .query_map(params![micros(now), cap as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let due = rows
            .into_iter()
            .filter(|(_, due)| *due > 0)
            .map(|(tenant, due)| (tenant, due as usize))
            .collect();
        Ok((clock, due))
    }

    fn book(&mut self, clock: i64, tenants: &[String]) -> StoreResult<fair::Book> {
        let mut book = fair::Book {
            clock,
            ..fair::Book::default()
        };
        // Held rows are counted only for a tenant with a cap, through the
        // partial index on running rows (a few thousand at most).
        let table = K::QUEUE.table;
        let mut query = self.c.prepare_cached(&format!(
            "SELECT t.weight, s.vtime, s.cost_ns, t.max_running, \
                 CASE WHEN t.max_running IS NULL THEN 0 ELSE \
                     (SELECT COUNT(*) FROM {table} r WHERE r.state = 'running' AND r.tenant = t.id) END \
             FROM tenants t \
             LEFT JOIN fair_shares s ON s.queue = ?1 AND s.tenant = t.id WHERE t.id = ?2"
        ))?;
        for tenant in tenants {
            let row = query
                .query_row(params![K::QUEUE.name, tenant], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            let Some((weight, vtime, cost_ns, max_running, held)) = row else {
                continue;
            };
            let max_running = max_running.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
            book.add_share(
                tenant.clone(),
                weight,
                vtime.zip(cost_ns),
                max_running,
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
        let full = (!full.is_empty()).then(|| json_list(full));
        let mut leased = Vec::new();
        for (tenant, n) in plan {
            leased.extend(K::lease(
                self.c,
                Some(tenant),
                *n,
                claim,
                now,
                full.as_deref(),
            )?);
        }
        Ok(leased)
    }

    fn lease_oldest(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: &[String],
    ) -> StoreResult<Vec<Self::Item>> {
        let full = (!full.is_empty()).then(|| json_list(full));
        K::lease(self.c, None, claim.limit, claim, now, full.as_deref())
    }

    fn running_by_handler(&mut self, handlers: &[String]) -> StoreResult<Vec<(String, u64)>> {
        // Through the partial index on running rows (a few thousand at most).
        let rows = self
            .c
            .prepare_cached(&format!(
                "SELECT handler, COUNT(*) FROM {} WHERE state = 'running' \
                 AND handler IN (SELECT value FROM json_each(?1)) GROUP BY handler",
                K::QUEUE.table
            ))?
            .query_map([json_list(handlers)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn put_back(&mut self, items: &[Self::Item]) -> StoreResult<()> {
        K::put_back(self.c, items)
    }

    fn save_book(&mut self, book: &fair::Book) -> StoreResult<()> {
        let queue = K::QUEUE.name;
        self.c
            .prepare_cached("UPDATE fair_clocks SET vtime = ?2 WHERE queue = ?1")?
            .execute(params![queue, book.clock])?;
        let mut upsert = self.c.prepare_cached(
            "INSERT INTO fair_shares (queue, tenant, vtime, cost_ns) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (queue, tenant) DO UPDATE SET vtime = excluded.vtime, cost_ns = excluded.cost_ns",
        )?;
        for (tenant, share) in &book.shares {
            upsert.execute(params![queue, tenant, share.vtime, share.cost_ns])?;
        }
        Ok(())
    }
}

/// The rows a lease may take: `?5`'s (a tenant's), or anyone's. Two
/// statements rather than `(?5 IS NULL OR tenant = ?5)`, which SQLite cannot
/// answer from the (tenant, scheduled_at) index: a lease for a small tenant
/// would walk a large one's backlog.
fn of_tenant(tenant: Option<&str>) -> &'static str {
    if tenant.is_some() {
        "tenant = ?5"
    } else {
        "?5 IS NULL"
    }
}

/// The deliveries queue.
struct Deliveries;

impl QueueKind for Deliveries {
    const QUEUE: fair::Queue = fair::DELIVERIES;
    type Item = ClaimedDelivery;

    fn lease(
        c: &Connection,
        tenant: Option<&str>,
        n: usize,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: Option<&str>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let sql = format!(
            "UPDATE deliveries SET state = 'running', attempt = attempt + 1, worker = ?1, leased_until = ?2 \
             WHERE id IN (SELECT id FROM deliveries WHERE {} AND state IN ('available', 'retryable') \
                          AND scheduled_at <= ?3 {} ORDER BY scheduled_at LIMIT ?4) \
             RETURNING {DELIVERY_COLUMNS}",
            of_tenant(tenant),
            leaving_out(full)
        );
        let (until, at, n) = (lease_until(now, claim.lease), micros(now), n as i64);
        let deliveries: Vec<Delivery> = c
            .prepare_cached(&sql)?
            .query_map(
                lease_params([&claim.worker, &until, &at, &n, &tenant], &full).as_slice(),
                Delivery::from_sqlite,
            )?
            .collect::<Result<_, _>>()?;
        with_signals(c, deliveries)
    }

    fn put_back(c: &Connection, items: &[ClaimedDelivery]) -> StoreResult<()> {
        // Not an attempt, the handler never ran: back to the state it was
        // claimed from (a retry has attempts behind it).
        let mut put_back = c.prepare_cached(
            "UPDATE deliveries SET attempt = attempt - 1, worker = NULL, leased_until = NULL, \
             state = CASE WHEN attempt > 1 THEN 'retryable' ELSE 'available' END WHERE id = ?1",
        )?;
        for item in items {
            put_back.execute([item.delivery.id])?;
        }
        Ok(())
    }
}

/// The directives queue.
struct Directives;

impl QueueKind for Directives {
    const QUEUE: fair::Queue = fair::DIRECTIVES;
    type Item = ClaimedDirective;

    fn lease(
        c: &Connection,
        tenant: Option<&str>,
        n: usize,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: Option<&str>,
    ) -> StoreResult<Vec<ClaimedDirective>> {
        let sql = format!(
            "UPDATE directives SET state = 'running', attempt = attempt + 1, worker = ?1, leased_until = ?2, \
             updated_at = ?3 \
             WHERE seq IN (SELECT seq FROM directives WHERE {} AND state = 'requested' AND scheduled_at <= ?3 \
                           {} ORDER BY scheduled_at LIMIT ?4) \
             RETURNING {DIRECTIVE_COLUMNS}",
            of_tenant(tenant),
            leaving_out(full)
        );
        let (until, at, n) = (lease_until(now, claim.lease), micros(now), n as i64);
        c.prepare_cached(&sql)?
            .query_map(
                lease_params([&claim.worker, &until, &at, &n, &tenant], &full).as_slice(),
                Directive::from_sqlite,
            )?
            .map(|directive| Ok(ClaimedDirective::new(directive?)))
            .collect::<StoreResult<_>>()
    }

    fn put_back(c: &Connection, items: &[ClaimedDirective]) -> StoreResult<()> {
        let mut put_back = c.prepare_cached(
            "UPDATE directives SET state = 'requested', attempt = attempt - 1, worker = NULL, \
             leased_until = NULL WHERE id = ?1",
        )?;
        for item in items {
            put_back.execute([&item.directive.id])?;
        }
        Ok(())
    }
}

/// Leased deliveries with their signals and their tenants' settings and
/// packages.
fn with_signals(c: &Connection, deliveries: Vec<Delivery>) -> StoreResult<Vec<ClaimedDelivery>> {
    let mut tenants: HashMap<String, (serde_json::Value, Vec<String>)> = HashMap::new();
    let mut signal_query = c.prepare_cached(&format!(
        "SELECT {SIGNAL_COLUMNS} FROM signals WHERE id = ?1"
    ))?;
    let mut claimed = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let signal = signal_query.query_row([&delivery.signal_id], Signal::from_sqlite)?;
        if !tenants.contains_key(&delivery.tenant) {
            let tenant = SqliteConn(c)
                .tenant(&delivery.tenant)?
                .ok_or_else(|| StoreError::UnknownTenant(delivery.tenant.clone()))?;
            tenants.insert(delivery.tenant.clone(), (tenant.settings, tenant.packages));
        }
        let (settings, packages) = tenants[&delivery.tenant].clone();
        claimed.push(ClaimedDelivery {
            delivery,
            signal,
            settings,
            packages,
            charged_ns: 0,
            weight: fair::DEFAULT_WEIGHT,
        });
    }
    Ok(claimed)
}

const FENCE: &str = "WHERE id = ?1 AND attempt = ?2 AND worker = ?3 AND state = 'running'";

fn record_attempt(c: &Connection, r: &DeliveryResult, now: DateTime<Utc>) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, worker, handler_digest, outcome, error, started_at, \
         duration_us, fuel, directive_count, output, finished_at, output_truncated, \
         peak_memory_bytes, refused_directives) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        r.delivery_id,
        r.attempt,
        r.worker,
        r.handler_digest,
        r.outcome.as_str(),
        r.error,
        micros(r.started_at),
        i64::try_from(r.duration.as_micros()).unwrap_or(i64::MAX),
        r.fuel.map(|f| i64::try_from(f).unwrap_or(i64::MAX)),
        r.directive_count,
        r.output,
        micros(now),
        r.details.output_truncated,
        r.details
            .peak_memory_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        sql::refusals_column(&r.details.refused_directives),
    ])?;
    Ok(())
}

/// Sets the delivery's final or retry state, fenced by the lease. Returns
/// false when the lease was lost.
fn settle(
    c: &Connection,
    r: &DeliveryResult,
    state: &str,
    scheduled_at: Option<DateTime<Utc>>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let finished = matches!(state, "completed" | "discarded").then(|| micros(now));
    let changed = c
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = ?4, scheduled_at = COALESCE(?5, scheduled_at), last_error = ?6, \
             handler_digest = ?7, finished_at = ?8, worker = NULL, leased_until = NULL {FENCE}"
        ))?
        .execute(params![
            r.delivery_id,
            r.attempt,
            r.worker,
            state,
            scheduled_at.map(micros),
            error,
            r.handler_digest,
            finished,
        ])?;
    Ok(changed == 1)
}

/// The delivery a completion belongs to, as the database knows it.
struct Holder {
    tenant: String,
    signal_id: String,
    handler: String,
    depth: u32,
}

/// Marks the delivery completed if `r` still holds its lease.
fn complete(c: &Connection, r: &DeliveryResult, now: DateTime<Utc>) -> StoreResult<Option<Holder>> {
    Ok(c.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'completed', last_error = NULL, handler_digest = ?4, finished_at = ?5, \
         worker = NULL, leased_until = NULL {FENCE} RETURNING tenant, signal_id, handler, depth"
    ))?
    .query_row(
        params![r.delivery_id, r.attempt, r.worker, r.handler_digest, micros(now)],
        |row| {
            Ok(Holder {
                tenant: row.get(0)?,
                signal_id: row.get(1)?,
                handler: row.get(2)?,
                depth: row.get(3)?,
            })
        },
    )
    .optional()?)
}

/// How writing a delivery's directives went.
enum Written {
    /// New rows and duplicates of existing ones.
    All { created: u32, duplicates: u32 },
    /// `key` exists with another payload; `written` are this call's rows,
    /// to be removed.
    Conflict { key: String, written: Vec<String> },
}

/// Writes a completed delivery's directives with the delivery's tenant,
/// signal and depth (a directive cannot name another tenant).
fn insert_directives(
    c: &Connection,
    holder: &Holder,
    delivery_id: i64,
    directives: &[RequestedDirective],
    now: DateTime<Utc>,
) -> StoreResult<Written> {
    let mut insert = c.prepare_cached(
        "INSERT INTO directives (id, tenant, name, payload, idempotency_key, state, signal_id, delivery_id, \
         handler, scheduled_at, depth, inserted_at, updated_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, 'requested', ?6, ?7, ?8, ?9, ?10, ?11, ?11 \
         WHERE NOT EXISTS (SELECT 1 FROM pruned_directive_keys WHERE tenant = ?2 AND idempotency_key = ?5) \
         ON CONFLICT (tenant, idempotency_key) DO NOTHING",
    )?;
    let mut written = Vec::with_capacity(directives.len());
    let mut duplicates = 0;
    for d in directives {
        let inserted = insert.execute(params![
            d.id,
            holder.tenant,
            d.name,
            d.payload.to_string(),
            d.idempotency_key,
            holder.signal_id,
            delivery_id,
            holder.handler,
            micros(d.scheduled_at.unwrap_or(now)),
            holder.depth,
            micros(now),
        ])?;
        if inserted == 1 {
            written.push(d.id.clone());
            continue;
        }
        let held: Option<(String, serde_json::Value)> = c
            .prepare_cached(
                "SELECT name, payload FROM directives WHERE tenant = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![holder.tenant, d.idempotency_key], |row| {
                Ok((row.get(0)?, json_column(row, 1)?))
            })
            .optional()?;
        let verdict = match held {
            Some((name, payload)) => {
                rules::match_directive(Some((&name, &payload)), &d.name, &d.payload)
            }
            // Its directive was pruned; the key stays taken.
            None => {
                let (name, digest): (String, String) = c
                    .prepare_cached(
                        "SELECT name, payload_digest FROM pruned_directive_keys \
                         WHERE tenant = ?1 AND idempotency_key = ?2",
                    )?
                    .query_row(params![holder.tenant, d.idempotency_key], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                rules::match_pruned_directive((&name, &digest), &d.name, &d.payload)
            }
        };
        match verdict {
            rules::DirectiveMatch::Duplicate => duplicates += 1,
            _ => {
                return Ok(Written::Conflict {
                    key: d.idempotency_key.clone(),
                    written,
                });
            }
        }
    }
    Ok(Written::All {
        created: written.len() as u32,
        duplicates,
    })
}

/// Undoes a completion whose directives conflict: none of them stays, and the
/// delivery is discarded with the reason (never guess which payload is right).
fn discard_conflict(
    c: &Connection,
    r: &DeliveryResult,
    key: &str,
    written: &[String],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut remove = c.prepare_cached("DELETE FROM directives WHERE id = ?1")?;
    for id in written {
        remove.execute([id])?;
    }
    let error = rules::conflict_error(key);
    // Unfenced: this transaction completed it a moment ago.
    c.prepare_cached("UPDATE deliveries SET state = 'discarded', last_error = ?2 WHERE id = ?1")?
        .execute(params![r.delivery_id, error])?;
    // The attempt keeps the reason its delivery ended.
    let conflicted = DeliveryResult {
        outcome: AttemptOutcome::Conflict,
        error: Some(error),
        ..r.clone()
    };
    record_attempt(c, &conflicted, now)
}

pub fn finish_delivery(
    c: &Connection,
    r: &DeliveryResult,
    now: DateTime<Utc>,
) -> StoreResult<FinishOutcome> {
    let outcome = match &r.decision {
        Decision::Snooze { at } => {
            // Not an attempt: the handler never ran.
            let changed = c
                .prepare_cached(&format!(
                    "UPDATE deliveries SET state = 'available', attempt = attempt - 1, scheduled_at = ?4, \
                     worker = NULL, leased_until = NULL {FENCE}"
                ))?
                .execute(params![r.delivery_id, r.attempt, r.worker, micros(*at)])?;
            return Ok(if changed == 1 {
                FinishOutcome::Snoozed
            } else {
                FinishOutcome::LeaseLost
            });
        }
        Decision::Retry { at } => {
            if settle(c, r, "retryable", Some(*at), r.error.as_deref(), now)? {
                FinishOutcome::Retrying
            } else {
                FinishOutcome::LeaseLost
            }
        }
        Decision::Discard => {
            if settle(c, r, "discarded", None, r.error.as_deref(), now)? {
                FinishOutcome::Discarded
            } else {
                FinishOutcome::LeaseLost
            }
        }
        Decision::Complete(directives) => match complete(c, r, now)? {
            None => FinishOutcome::LeaseLost,
            Some(holder) => match insert_directives(c, &holder, r.delivery_id, directives, now)? {
                Written::All {
                    created,
                    duplicates,
                } => FinishOutcome::Completed {
                    directives_created: created,
                    duplicates,
                },
                Written::Conflict { key, written } => {
                    discard_conflict(c, r, &key, &written, now)?;
                    return Ok(FinishOutcome::Conflict { key });
                }
            },
        },
    };
    // A fenced-out result is dropped whole: its attempt is not its to record.
    if outcome != FinishOutcome::LeaseLost {
        record_attempt(c, r, now)?;
    }
    Ok(outcome)
}

fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        delivery_id: r.get(0)?,
        attempt: r.get(1)?,
        worker: r.get(2)?,
        handler_digest: r.get(3)?,
        outcome: state_column(r, 4, AttemptOutcome::parse)?,
        error: r.get(5)?,
        started_at: from_micros(r.get(6)?),
        duration_us: r.get::<_, i64>(7)?.max(0) as u64,
        fuel: r.get::<_, Option<i64>>(8)?.map(|f| f.max(0) as u64),
        directive_count: r.get(9)?,
        output: r.get(10)?,
        finished_at: from_micros(r.get(11)?),
        details: AttemptDetails {
            output_truncated: r.get(12)?,
            peak_memory_bytes: r.get::<_, Option<i64>>(13)?.map(|b| b.max(0) as u64),
            refused_directives: sql::refusals_from_column(&r.get::<_, String>(14)?).map_err(
                |e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        14,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                },
            )?,
        },
    })
}

/// Lists travel as one JSON array each, read back with `json_each`.
impl Placeholders for SqliteConn<'_> {
    fn param(n: usize) -> String {
        format!("?{n}")
    }

    fn in_list(column: &str, n: usize) -> String {
        format!("{column} IN (SELECT value FROM json_each(?{n}))")
    }

    /// The writer's transaction holds the whole database.
    const LOCK_ROWS: &'static str = "";
}

impl FromSqliteRow for sql::PruneCandidate {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            key: row.get(0)?,
            at: from_micros(row.get(1)?),
        })
    }
}

impl FromSqliteRow for sql::CountRow {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            queue: row.get(0)?,
            group: row.get(1)?,
            tenant: row.get(2)?,
            state: row.get(3)?,
            n: row.get(4)?,
        })
    }
}

impl FromSqliteRow for sql::WaitingRow {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            handler: row.get(0)?,
            oldest: row.get::<_, Option<i64>>(1)?.map(from_micros),
        })
    }
}

impl FromSqliteRow for sql::RecentRow {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            handler: row.get(0)?,
            tenant: row.get(1)?,
            attempts: row.get(2)?,
            sum_us: row.get(3)?,
            max_us: row.get(4)?,
        })
    }
}

impl FromSqliteRow for Attempt {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        attempt_from_row(row)
    }
}

impl FromSqliteRow for sql::Count {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(row.get::<_, i64>(0)?.max(0) as u64))
    }
}

/// A statement's parameters as SQLite values: times in microseconds.
fn values(params: Vec<Param>) -> impl rusqlite::Params {
    params_from_iter(params.into_iter().map(|param| match param {
        Param::Text(text) => SqlValue::Text(text),
        Param::Null => SqlValue::Null,
        Param::Int(n) => SqlValue::Integer(n),
        Param::Time(at) => SqlValue::Integer(micros(at)),
        Param::Texts(list) => SqlValue::Text(serde_json::json!(list).to_string()),
        Param::Ints(list) => SqlValue::Text(serde_json::json!(list).to_string()),
    }))
}

impl SqliteConn<'_> {
    fn list<T>(
        &self,
        statement: sql::Statement,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        Ok(self
            .0
            .prepare(&statement.sql)?
            .query_map(values(statement.params), row)?
            .collect::<Result<_, _>>()?)
    }
}

impl FromSqliteRow for HandlerRegistration {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        let subscriptions: String = row.get(3)?;
        Ok(HandlerRegistration {
            host: row.get(0)?,
            handler: row.get(1)?,
            digest: row.get(2)?,
            subscriptions: sql::subscriptions_from_column(&subscriptions).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
            })?,
            package: row.get(4)?,
            max_attempts: row.get(5)?,
            load_error: row.get(6)?,
            registered_at: from_micros(row.get(7)?),
        })
    }
}

impl Verbs for SqliteConn<'_> {
    fn change(&mut self, statement: sql::Statement) -> StoreResult<u64> {
        Ok(self.0.execute(&statement.sql, values(statement.params))? as u64)
    }

    fn read<T: Record>(&mut self, query: sql::Statement) -> StoreResult<Vec<T>> {
        self.list(query, T::from_sqlite)
    }

    /// Workers of other processes find them by polling.
    fn deliveries_due(&mut self) -> StoreResult<()> {
        Ok(())
    }

    fn tenant(&mut self, id: &str) -> StoreResult<Option<Tenant>> {
        let c = self.0;
        let row = c
            .prepare_cached(
                "SELECT settings, created_at, weight, max_running, max_pending, max_emit_per_s \
                 FROM tenants WHERE id = ?1",
            )?
            .query_row([id], |r| {
                let limits = TenantLimits {
                    max_running: r.get(3)?,
                    max_pending: r.get::<_, Option<i64>>(4)?.map(|n| n.max(0) as u64),
                    max_emit_per_s: r.get(5)?,
                };
                Ok((
                    json_column(r, 0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, u32>(2)?,
                    limits,
                ))
            })
            .optional()?;
        let Some((settings, created_at, weight, limits)) = row else {
            return Ok(None);
        };
        Ok(Some(Tenant {
            id: id.to_owned(),
            settings,
            weight,
            limits,
            packages: packages(c, id)?,
            created_at: from_micros(created_at),
        }))
    }

    fn create_tenant(
        &mut self,
        id: &str,
        settings: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Tenant> {
        let c = self.0;
        let inserted = c.execute(
            "INSERT INTO tenants (id, settings, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
            params![id, settings.to_string(), micros(now)],
        )?;
        if inserted == 0 {
            return Err(StoreError::TenantExists(id.to_owned()));
        }
        touched_tenant(c, id)
    }

    fn tenants(&mut self) -> StoreResult<Vec<Tenant>> {
        let c = self.0;
        let ids: Vec<String> = c
            .prepare_cached("SELECT id FROM tenants ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.iter().map(|id| touched_tenant(c, id)).collect()
    }

    fn set_settings(&mut self, id: &str, settings: &serde_json::Value) -> StoreResult<Tenant> {
        let c = self.0;
        let changed = c.execute(
            "UPDATE tenants SET settings = ?2 WHERE id = ?1",
            params![id, settings.to_string()],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownTenant(id.to_owned()));
        }
        touched_tenant(c, id)
    }

    fn set_weight(&mut self, id: &str, weight: u32) -> StoreResult<Tenant> {
        let c = self.0;
        let changed = c.execute(
            "UPDATE tenants SET weight = ?2 WHERE id = ?1",
            params![id, weight],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownTenant(id.to_owned()));
        }
        touched_tenant(c, id)
    }

    fn set_limits(&mut self, id: &str, limits: &TenantLimits) -> StoreResult<Tenant> {
        let c = self.0;
        let changed = c.execute(
            "UPDATE tenants SET max_running = ?2, max_pending = ?3, max_emit_per_s = ?4 WHERE id = ?1",
            params![
                id,
                limits.max_running,
                limits
                    .max_pending
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                limits.max_emit_per_s
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownTenant(id.to_owned()));
        }
        touched_tenant(c, id)
    }

    fn pending_deliveries(&mut self, tenant: &str, cap: u64) -> StoreResult<u64> {
        let c = self.0;
        Ok(c.prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries \
             WHERE tenant = ?1 AND state IN ('available', 'retryable') LIMIT ?2)",
        )?
        .query_row(
            params![tenant, i64::try_from(cap).unwrap_or(i64::MAX)],
            |r| r.get::<_, i64>(0),
        )?
        .max(0) as u64)
    }

    fn install_package(&mut self, id: &str, package: &str) -> StoreResult<Tenant> {
        let c = self.0;
        touched_tenant(c, id)?;
        c.execute(
            "INSERT INTO tenant_packages (tenant, package) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![id, package],
        )?;
        touched_tenant(c, id)
    }

    fn uninstall_package(&mut self, id: &str, package: &str) -> StoreResult<Tenant> {
        let c = self.0;
        touched_tenant(c, id)?;
        c.execute(
            "DELETE FROM tenant_packages WHERE tenant = ?1 AND package = ?2",
            params![id, package],
        )?;
        touched_tenant(c, id)
    }

    fn record_handler_version(
        &mut self,
        name: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let c = self.0;
        c.execute(
            "INSERT INTO handler_versions (name, digest, first_seen_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![name, digest, micros(now)],
        )?;
        Ok(())
    }

    fn handler_versions(&mut self, name: &str) -> StoreResult<Vec<HandlerVersion>> {
        let c = self.0;
        let mut statement = c.prepare_cached(
            "SELECT digest, first_seen_at FROM handler_versions WHERE name = ?1 \
             ORDER BY first_seen_at, digest",
        )?;
        let versions = statement
            .query_map([name], |r| {
                Ok(HandlerVersion {
                    digest: r.get(0)?,
                    first_seen_at: from_micros(r.get(1)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(versions)
    }

    fn resume_handler(&mut self, name: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        let c = self.0;
        // Snoozed deliveries are the available ones scheduled later than now: new
        // ones are due at once and retries are `retryable`. The `IN` keeps the
        // statement on the partial due index.
        let changed = c
            .prepare_cached(
                "UPDATE deliveries SET scheduled_at = ?2 \
                 WHERE state IN ('available', 'retryable') AND scheduled_at > ?2 \
                 AND state = 'available' AND handler = ?1",
            )?
            .execute(params![name, micros(now)])?;
        Ok(changed as u64)
    }

    fn emit(
        &mut self,
        batch: &[(NewSignal, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Emitted>> {
        let c = self.0;
        let mut packages_of: HashMap<&str, Vec<String>> = HashMap::new();
        let mut emitted = Vec::with_capacity(batch.len());
        for (new, targets) in batch {
            if !packages_of.contains_key(new.tenant.as_str()) {
                packages_of.insert(&new.tenant, known_tenant_packages(c, &new.tenant)?);
            }
            if let Some(key) = &new.dedupe_key {
                let existing = c
                    .prepare_cached(&format!(
                        "SELECT {SIGNAL_COLUMNS} FROM signals WHERE tenant = ?1 AND dedupe_key = ?2"
                    ))?
                    .query_row(params![new.tenant, key], Signal::from_sqlite)
                    .optional()?;
                if let Some(signal) = existing {
                    emitted.push(Emitted {
                        status: EmitStatus::Existing,
                        signal,
                        deliveries: 0,
                    });
                    continue;
                }
            }
            let cause_depth = match &new.causation_id {
                Some(cause) => SqliteConn(c).signal_depth(&new.tenant, cause)?,
                None => None,
            };
            let depth = rules::causation_depth(cause_depth);
            let signal = rules::new_signal(new, rules::new_signal_id(), now);
            c.prepare_cached(&format!(
                "INSERT INTO signals ({SIGNAL_COLUMNS}, depth) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ))?
            .execute(params![
                signal.id,
                signal.tenant,
                signal.name,
                signal.payload.to_string(),
                signal.metadata.to_string(),
                signal.dedupe_key,
                micros(signal.occurred_at),
                signal.correlation_id,
                signal.causation_id,
                signal.actor.as_ref().map(|a| &a.kind),
                signal.actor.as_ref().map(|a| &a.id),
                signal.subject.as_ref().map(|s| &s.kind),
                signal.subject.as_ref().map(|s| &s.id),
                signal.source,
                micros(now),
                depth,
            ])?;
            let deliveries = insert_deliveries(
                c,
                &signal.id,
                &signal.tenant,
                depth,
                &packages_of[new.tenant.as_str()],
                targets,
                now,
            )?;
            emitted.push(Emitted {
                status: EmitStatus::Created,
                signal,
                deliveries,
            });
        }
        Ok(emitted)
    }

    /// The depth of signal `id` of `tenant`; `None` if the tenant has none.
    fn signal_depth(&mut self, tenant: &str, id: &str) -> StoreResult<Option<u32>> {
        let c = self.0;
        Ok(
            c.prepare_cached("SELECT depth FROM signals WHERE id = ?1 AND tenant = ?2")?
                .query_row(params![id, tenant], |r| r.get::<_, u32>(0))
                .optional()?,
        )
    }

    /// Leases held by workers that stopped: record the lost attempt, then make
    /// the delivery retryable (or discarded, if that was its last attempt).
    /// What becomes of them is `rules::AFTER_LOST_LEASE`, applied in the
    /// statement.
    fn rescue_deliveries(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        let c = self.0;
        let expired = "state = 'running' AND leased_until < ?1";
        c.prepare_cached(&format!(
            "INSERT INTO attempts (delivery_id, attempt, worker, handler_digest, outcome, error, started_at, \
             duration_us, fuel, directive_count, output, finished_at) \
             SELECT id, attempt, COALESCE(worker, ''), COALESCE(handler_digest, ''), ?2, ?3, ?1, 0, NULL, 0, '', ?1 \
             FROM deliveries WHERE {expired} ON CONFLICT DO NOTHING"
        ))?
        .execute(params![
            micros(now),
            AttemptOutcome::LeaseExpired.as_str(),
            rules::LEASE_EXPIRED_ATTEMPT_ERROR
        ])?;
        let (retried, discarded) = rules::AFTER_LOST_LEASE;
        let rescued = c
            .prepare_cached(&format!(
                "UPDATE deliveries SET \
             state = CASE WHEN attempt >= max_attempts THEN ?3 ELSE ?2 END, \
             finished_at = CASE WHEN attempt >= max_attempts THEN ?1 END, \
             last_error = ?4, worker = NULL, leased_until = NULL, scheduled_at = ?1 \
             WHERE {expired}"
            ))?
            .execute(params![
                micros(now),
                retried.as_str(),
                discarded.as_str(),
                rules::LEASE_EXPIRED_DELIVERY_ERROR
            ])?;
        Ok(rescued as u64)
    }

    /// Makes the claim [`fair::claim`] decides (the rescue runs before it,
    /// in the same transaction).
    fn claim_deliveries(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        fair::claim(&mut FairQueue::<Deliveries>::new(self.0), claim, now)
    }

    fn finish_deliveries(
        &mut self,
        results: &[DeliveryResult],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FinishOutcome>> {
        results
            .iter()
            .map(|r| finish_delivery(self.0, r, now))
            .collect()
    }

    fn extend_delivery_leases(
        &mut self,
        worker: &str,
        held: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let c = self.0;
        let mut extend =
            c.prepare_cached(&format!("UPDATE deliveries SET leased_until = ?4 {FENCE}"))?;
        let mut extended = 0;
        for (id, attempt) in held {
            extended += extend.execute(params![id, attempt, worker, micros(until)])? as u64;
        }
        Ok(extended)
    }

    fn extend_directive_leases(
        &mut self,
        worker: &str,
        held: &[(String, u32)],
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let c = self.0;
        let mut extend =
            c.prepare_cached(&format!("UPDATE directives SET leased_until = ?4 {FENCE}"))?;
        let mut extended = 0;
        for (id, attempt) in held {
            extended += extend.execute(params![id, attempt, worker, micros(until)])? as u64;
        }
        Ok(extended)
    }

    fn attempts(&mut self, delivery_id: i64) -> StoreResult<Vec<Attempt>> {
        let c = self.0;
        Ok(c.prepare_cached(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ?1 ORDER BY attempt"
        ))?
        .query_map([delivery_id], attempt_from_row)?
        .collect::<Result<_, _>>()?)
    }

    fn replay(
        &mut self,
        batch: &[(String, Vec<DeliveryTarget>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let c = self.0;
        let mut created = 0u64;
        for (signal_id, targets) in batch {
            let (tenant, depth): (String, u32) = c
                .prepare_cached("SELECT tenant, depth FROM signals WHERE id = ?1")?
                .query_row([signal_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "signal",
                    id: signal_id.clone(),
                })?;
            let packages = known_tenant_packages(c, &tenant)?;
            created += u64::from(insert_deliveries(
                c, signal_id, &tenant, depth, &packages, targets, now,
            )?);
        }
        Ok(created)
    }

    /// Makes directives whose runner stopped mid-directive requested again
    /// (they run again: executors are told to expect at-least-once calls).
    fn rescue_directives(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        let rescued = self
            .0
            .prepare_cached(
                "UPDATE directives SET state = 'requested', scheduled_at = ?1, updated_at = ?1, worker = NULL, \
                 leased_until = NULL, last_error = ?2 \
                 WHERE state = 'running' AND leased_until < ?1",
            )?
            .execute(params![micros(now), rules::LEASE_EXPIRED_DIRECTIVE_ERROR])?;
        Ok(rescued as u64)
    }

    fn claim_directives(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDirective>> {
        fair::claim(&mut FairQueue::<Directives>::new(self.0), claim, now)
    }

    fn finish_directive(
        &mut self,
        id: &str,
        attempt: u32,
        worker: &str,
        decision: &DirectiveDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let c = self.0;
        let (state, scheduled_at, error, result) = match decision {
            DirectiveDecision::Succeeded(result) => {
                ("succeeded", None, None, Some(result.to_string()))
            }
            DirectiveDecision::Retry { at, error } => {
                ("requested", Some(micros(*at)), Some(error.as_str()), None)
            }
            DirectiveDecision::Failed(error) => ("failed", None, Some(error.as_str()), None),
        };
        let changed = c
            .prepare_cached(
                "UPDATE directives SET state = ?4, scheduled_at = COALESCE(?5, scheduled_at), last_error = ?6, \
                 result = ?7, updated_at = ?8, worker = NULL, leased_until = NULL \
                 WHERE id = ?1 AND attempt = ?2 AND worker = ?3 AND state = 'running'",
            )?
            .execute(params![id, attempt, worker, state, scheduled_at, error, result, micros(now)])?;
        Ok(changed == 1)
    }

    /// One writer at a time: the transaction is the turn.
    fn take_prune_turn(&mut self) -> StoreResult<bool> {
        Ok(true)
    }

    fn reclaim_space(&mut self, max_pages: u32) -> StoreResult<u64> {
        let c = self.0;
        let free_pages =
            || -> StoreResult<i64> { Ok(c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?) };
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let before = free_pages()?;
        // The pragma frees one page per step: step it to the end.
        let mut vacuum = c.prepare(&format!("PRAGMA incremental_vacuum({max_pages})"))?;
        let mut rows = vacuum.query([])?;
        while rows.next()?.is_some() {}
        Ok(((before - free_pages()?).max(0) * page_size) as u64)
    }

    fn fold_counts(&mut self) -> StoreResult<()> {
        self.0.execute("DELETE FROM queue_counts WHERE n = 0", [])?;
        Ok(())
    }
}
