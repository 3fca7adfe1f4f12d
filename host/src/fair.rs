//! Fair share between tenants (ARCHITECTURE.md §4, "Fair share"), decided
//! once for both stores: start-time fair queueing over tenants, charged by
//! the worker time their deliveries take.
//!
//! Every tenant has a *virtual time*: the busy time its deliveries took, in
//! nanoseconds, divided by its weight. A claim takes deliveries from the
//! tenant with the smallest virtual time first, one at a time, charging each
//! at the tenant's measured cost per delivery; so a tenant whose deliveries
//! cost 50× another's gets 1/50 as many of them, and a tenant of weight 2
//! twice the worker time of a tenant of weight 1. When the deliveries have
//! run, the host that ran them reports what they really took
//! ([`TenantCost`]) with its next claim, and the difference is settled.
//!
//! A tenant that had nothing due banks no credit: when its work comes back,
//! its virtual time is lifted to the queue's clock, the smallest virtual
//! time among the tenants that had work at the last claim. A tenant alone
//! gets everything (the rule only orders; it never leaves work unclaimed).
//!
//! The state (virtual times, cost estimates, the clock) lives in the store,
//! so on PostgreSQL every host process of a cluster shares one schedule; the
//! stores run [`claim`] in one transaction that no other claim interleaves
//! with.

use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{ClaimedDelivery, StoreError, StoreResult};

/// A tenant's weight unless an operator set one.
pub const DEFAULT_WEIGHT: u32 = 1;
/// The largest weight an operator may set.
pub const MAX_WEIGHT: u32 = 10_000;
/// What one delivery of a tenant is assumed to cost before any was measured.
pub const INITIAL_COST_NS: i64 = 50_000;
/// The smallest cost per delivery an estimate may fall to, so that a tenant
/// whose deliveries measure near zero is still charged for its claims.
pub const MIN_COST_NS: i64 = 1_000;
/// How much of a new measurement enters the cost estimate (1/8: an
/// exponential moving average over the last few reports).
const COST_SMOOTHING: i64 = 8;

/// How due work is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOrder {
    /// Fair share between tenants ([`claim`]).
    #[default]
    Fair,
    /// Oldest first, whoever it belongs to: what sighost did before fair
    /// claims, kept to measure them against.
    OldestFirst,
}

/// What a host measured for one tenant's deliveries since its last claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantCost {
    pub tenant: String,
    /// Deliveries that ran (attempts, whatever their outcome).
    pub runs: u64,
    /// The busy time they took, in total.
    pub busy_ns: i64,
    /// What their claims charged in advance, in total; deliveries put back
    /// unrun count here with no run and no busy time.
    pub charged_ns: i64,
}

/// What a worker asks of the store when it claims.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub worker: &'a str,
    pub limit: usize,
    pub lease: Duration,
    pub order: ClaimOrder,
    /// Measured since the last claim; settled by this one.
    pub costs: &'a [TenantCost],
    /// Handlers that may hold at most so many running rows at once, across
    /// every process (a manifest's `max_running`).
    pub handler_caps: &'a [(String, u32)],
}

impl<'a> Claim<'a> {
    /// A fair claim with nothing to settle.
    pub fn new(worker: &'a str, limit: usize, lease: Duration) -> Self {
        Self {
            worker,
            limit,
            lease,
            order: ClaimOrder::Fair,
            costs: &[],
            handler_caps: &[],
        }
    }
}

/// One tenant's standing in a queue's schedule. Times are whole
/// nanoseconds: a charge divided by a weight rounds down (under 1% off for
/// any delivery that costs 100 ns or more per unit of weight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub weight: u32,
    /// Nanoseconds of worker time charged, divided by the weight.
    pub vtime: i64,
    /// The measured cost of one delivery, a moving average (nanoseconds).
    pub cost_ns: i64,
    /// How many more the tenant may hold at once under its `max_running`
    /// (held now subtracted); `None` without a cap.
    pub room: Option<usize>,
}

/// A queue's schedule: its clock and the shares of the tenants a claim
/// touches. Tenants without a stored share start at the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    pub clock: i64,
    pub shares: BTreeMap<String, Share>,
}

impl Book {
    /// A share for a tenant never charged before: at the clock, with the
    /// initial cost estimate.
    pub fn fresh_share(&self, weight: u32) -> Share {
        Share {
            weight: weight.clamp(1, MAX_WEIGHT),
            vtime: self.clock,
            cost_ns: INITIAL_COST_NS,
            room: None,
        }
    }

    /// Adds a tenant's share as the store keeps it: its stored virtual time
    /// and cost estimate (`None` if never charged: a fresh share at the
    /// clock), and under a `max_running` of it, room for what it does not
    /// hold yet.
    pub fn add_share(
        &mut self,
        tenant: String,
        weight: u32,
        stored: Option<(i64, i64)>,
        max_running: Option<u32>,
        held: u64,
    ) {
        let mut share = self.fresh_share(weight);
        if let Some((vtime, cost_ns)) = stored {
            (share.vtime, share.cost_ns) = (vtime, cost_ns);
        }
        share.room = max_running.map(|max| u64::from(max).saturating_sub(held) as usize);
        self.shares.insert(tenant, share);
    }

    /// Settles what the deliveries of earlier claims really took: the
    /// difference from what was charged, and a new cost estimate.
    pub fn settle(&mut self, costs: &[TenantCost]) {
        for cost in costs {
            let Some(share) = self.shares.get_mut(&cost.tenant) else {
                continue; // the tenant was deleted meanwhile
            };
            share.vtime = share
                .vtime
                .saturating_add((cost.busy_ns - cost.charged_ns) / i64::from(share.weight));
            if cost.runs > 0 {
                let mean = cost.busy_ns / i64::try_from(cost.runs).unwrap_or(i64::MAX);
                share.cost_ns += (mean - share.cost_ns) / COST_SMOOTHING;
                share.cost_ns = share.cost_ns.max(MIN_COST_NS);
            }
        }
    }

    /// How many deliveries to take from each tenant with due work, `limit`
    /// in all: one at a time from the tenant with the smallest virtual time
    /// (charging its cost estimate as it goes, ties to the tenant listed
    /// first), never more than a tenant has due or has room for under its
    /// `max_running`. Lifts tenants coming back
    /// from idle to the clock first, and moves the clock on to the smallest
    /// virtual time among them.
    ///
    /// `due` lists each tenant with due work and how many it has (counted up
    /// to `limit`); every one of them must have a share in the book.
    pub fn plan(&mut self, due: &[(String, usize)], limit: usize) -> Vec<(String, usize)> {
        let mut start = i64::MAX;
        for (tenant, _) in due {
            if let Some(share) = self.shares.get_mut(tenant) {
                share.vtime = share.vtime.max(self.clock);
                start = start.min(share.vtime);
            }
        }
        if start != i64::MAX {
            self.clock = self.clock.max(start);
        }
        // Simulated charges: the real ones follow what the store could lease.
        let mut heap: BinaryHeap<std::cmp::Reverse<(i64, usize)>> = BinaryHeap::new();
        let mut left: Vec<usize> = Vec::with_capacity(due.len());
        let mut step: Vec<i64> = Vec::with_capacity(due.len());
        for (index, (tenant, count)) in due.iter().enumerate() {
            let share = self.shares.get(tenant);
            let takes = share.map_or(0, |s| (*count).min(s.room.unwrap_or(usize::MAX)));
            left.push(takes);
            step.push(share.map_or(0, |s| s.cost_ns / i64::from(s.weight)).max(1));
            if let Some(share) = share.filter(|_| takes > 0) {
                heap.push(std::cmp::Reverse((share.vtime, index)));
            }
        }
        let mut taken = vec![0usize; due.len()];
        for _ in 0..limit {
            let Some(std::cmp::Reverse((vtime, index))) = heap.pop() else {
                break;
            };
            taken[index] += 1;
            left[index] -= 1;
            if left[index] > 0 {
                heap.push(std::cmp::Reverse((vtime + step[index], index)));
            }
        }
        due.iter()
            .zip(taken)
            .filter(|(_, n)| *n > 0)
            .map(|((tenant, _), n)| (tenant.clone(), n))
            .collect()
    }

    /// Charges a tenant for `count` deliveries leased to it, at its cost
    /// estimate; returns what one was charged (reported back in
    /// [`TenantCost::charged_ns`] once it ran).
    pub fn charge(&mut self, tenant: &str, count: usize) -> i64 {
        let Some(share) = self.shares.get_mut(tenant) else {
            return 0;
        };
        let each = share.cost_ns;
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        share.vtime = share
            .vtime
            .saturating_add(each.saturating_mul(count) / i64::from(share.weight));
        each
    }
}

/// A queue a fair claim takes from, as both stores' SQL names it: its name
/// in `fair_clocks` and `fair_shares`, its table, and which of its rows
/// wait to be claimed (the predicate of its `…_due_by_tenant` index).
#[derive(Debug)]
pub struct Queue {
    pub name: &'static str,
    pub table: &'static str,
    pub pending: &'static str,
}

impl Queue {
    /// The recursive CTE `waiting(tenant)`: the tenants with pending rows,
    /// one index probe each (a loose index scan of the queue's
    /// `…_due_by_tenant` index), in SQL both databases run as it is.
    pub fn waiting_tenants(&self) -> String {
        let Self { table, pending, .. } = self;
        format!(
            "waiting(tenant) AS ( \
                 SELECT MIN(tenant) FROM {table} WHERE {pending} \
                 UNION ALL \
                 SELECT (SELECT MIN(t.tenant) FROM {table} t \
                         WHERE t.{pending} AND t.tenant > waiting.tenant) \
                 FROM waiting WHERE waiting.tenant IS NOT NULL \
             )"
        )
    }
}

/// Deliveries waiting for a worker.
pub const DELIVERIES: Queue = Queue {
    name: "deliveries",
    table: "deliveries",
    pending: "state IN ('available', 'retryable')",
};

/// Directives waiting for the runner.
pub const DIRECTIVES: Queue = Queue {
    name: "directives",
    table: "directives",
    pending: "state = 'requested'",
};

/// Something a fair claim hands out: a delivery, a directive.
pub trait Claimed {
    fn tenant(&self) -> &str;
    fn handler(&self) -> &str;
    /// Records what its claim charged its tenant, and the tenant's weight.
    fn charged(&mut self, charged_ns: i64, weight: u32);
}

impl Claimed for ClaimedDelivery {
    fn tenant(&self) -> &str {
        &self.delivery.tenant
    }

    fn handler(&self) -> &str {
        &self.delivery.handler
    }

    fn charged(&mut self, charged_ns: i64, weight: u32) {
        (self.charged_ns, self.weight) = (charged_ns, weight);
    }
}

impl Claimed for crate::store::ClaimedDirective {
    fn tenant(&self) -> &str {
        &self.directive.tenant
    }

    fn handler(&self) -> &str {
        &self.directive.handler
    }

    fn charged(&mut self, charged_ns: i64, weight: u32) {
        (self.charged_ns, self.weight) = (charged_ns, weight);
    }
}

/// What a store does for a fair claim of one queue, inside one transaction
/// that no other claim of the same queue interleaves with (SQLite: its one
/// writer; PostgreSQL: the clock's row lock). Each verb only reads or
/// writes; the decisions are [`claim`]'s.
pub trait ClaimVerbs {
    /// What the queue hands out.
    type Item: Claimed;
    /// The queue's clock, held until the transaction ends so that claims of
    /// other processes wait (PostgreSQL: `FOR UPDATE`), and every tenant with
    /// due work with how much (counted up to `cap`). One verb, so that a
    /// store may answer it in one round trip.
    fn clock_and_due(
        &mut self,
        now: DateTime<Utc>,
        cap: usize,
    ) -> StoreResult<(i64, Vec<(String, usize)>)>;
    /// The shares of these tenants, with their weights, in a book at
    /// `clock`; a tenant that was never charged gets [`Book::fresh_share`], a
    /// deleted one none.
    fn book(&mut self, clock: i64, tenants: &[String]) -> StoreResult<Book>;
    /// Leases, per tenant, up to that many of its due items, oldest first,
    /// starting an attempt of each; none of the handlers in `full`.
    fn lease(
        &mut self,
        plan: &[(String, usize)],
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: &[String],
    ) -> StoreResult<Vec<Self::Item>>;
    /// Leases up to `claim.limit` due items, oldest first, of anyone; none
    /// of the handlers in `full`.
    fn lease_oldest(
        &mut self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        full: &[String],
    ) -> StoreResult<Vec<Self::Item>>;
    /// How many running rows each of these handlers holds (those holding
    /// none may be left out).
    fn running_by_handler(&mut self, handlers: &[String]) -> StoreResult<Vec<(String, u64)>>;
    /// Undoes the lease of these items, as if never claimed: no attempt
    /// counted.
    fn put_back(&mut self, items: &[Self::Item]) -> StoreResult<()>;
    /// Writes the clock and these shares back.
    fn save_book(&mut self, book: &Book) -> StoreResult<()>;
}

/// What each capped handler may still take: its cap less what it holds.
#[derive(Debug, Default)]
pub struct HandlerRoom(BTreeMap<String, usize>);

impl HandlerRoom {
    /// The room of each handler of `caps`, given what they hold.
    pub fn new(caps: &[(String, u32)], running: &[(String, u64)]) -> Self {
        Self(
            caps.iter()
                .map(|(handler, cap)| {
                    let held = running
                        .iter()
                        .find(|(h, _)| h == handler)
                        .map_or(0, |(_, n)| *n);
                    let room = u64::from(*cap).saturating_sub(held);
                    (handler.clone(), usize::try_from(room).unwrap_or(usize::MAX))
                })
                .collect(),
        )
    }

    /// The handlers with no room left: a lease leaves them out.
    pub fn full(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, room)| **room == 0)
            .map(|(handler, _)| handler.clone())
            .collect()
    }

    /// Keeps the items their handlers have room for, and returns the rest
    /// (a lease may take more of a handler than its room). Tenants take
    /// turns for a handler's room, each in its lease order.
    pub fn keep_within<I: Claimed>(&mut self, items: &mut Vec<I>) -> Vec<I> {
        let mut over = Vec::new();
        let mut kept = Vec::with_capacity(items.len());
        for item in in_turns_by_tenant(std::mem::take(items)) {
            match self.0.get_mut(item.handler()) {
                Some(0) => over.push(item),
                Some(room) => {
                    *room -= 1;
                    kept.push(item);
                }
                None => kept.push(item),
            }
        }
        *items = kept;
        over
    }
}

/// `items`, one of each tenant in turn, each tenant's in their order.
fn in_turns_by_tenant<I: Claimed>(items: Vec<I>) -> Vec<I> {
    let mut queues: Vec<(String, std::collections::VecDeque<I>)> = Vec::new();
    for item in items {
        match queues.iter_mut().find(|(t, _)| t == item.tenant()) {
            Some((_, queue)) => queue.push_back(item),
            None => queues.push((item.tenant().to_owned(), [item].into())),
        }
    }
    let mut turns = Vec::new();
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        turns.extend(queues.iter_mut().filter_map(|(_, q)| q.pop_front()));
    }
    turns
}

/// How many of `items` each tenant has, as a plan.
fn count_by_tenant<I: Claimed>(items: &[I]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in items {
        *counts.entry(item.tenant().to_owned()).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Leases what `plan` asks (each tenant's count, or `None`: `claim.limit`
/// of anyone's, oldest first), leaving out full handlers. What the lease
/// takes past a capped handler's room is put back, and as much again is
/// leased without that handler, now full: each round fills at least one
/// more handler, so the rounds end, and a capped handler's backlog does not
/// shrink a claim to its room.
fn lease_within_caps<V: ClaimVerbs>(
    verbs: &mut V,
    claim: &Claim<'_>,
    now: DateTime<Utc>,
    plan: Option<Vec<(String, usize)>>,
) -> StoreResult<Vec<V::Item>> {
    let lease =
        |verbs: &mut V, plan: &Option<Vec<(String, usize)>>, limit, full: &[String]| match plan {
            Some(plan) => verbs.lease(plan, claim, now, full),
            None => verbs.lease_oldest(
                &Claim {
                    limit,
                    ..claim.clone()
                },
                now,
                full,
            ),
        };
    if claim.handler_caps.is_empty() {
        return lease(verbs, &plan, claim.limit, &[]);
    }
    let handlers: Vec<String> = claim.handler_caps.iter().map(|(h, _)| h.clone()).collect();
    let running = verbs.running_by_handler(&handlers)?;
    let mut room = HandlerRoom::new(claim.handler_caps, &running);
    let (mut plan, mut limit) = (plan, claim.limit);
    let mut claimed = Vec::new();
    loop {
        let mut items = lease(verbs, &plan, limit, &room.full())?;
        let over = room.keep_within(&mut items);
        claimed.extend(items);
        if over.is_empty() {
            return Ok(claimed);
        }
        verbs.put_back(&over)?;
        limit = over.len();
        plan = plan.map(|_| count_by_tenant(&over));
    }
}

/// A claim, as both stores make it: settle the reported costs, plan by
/// virtual time, lease (within the handlers' caps), charge what was leased,
/// save.
pub fn claim<V: ClaimVerbs>(
    verbs: &mut V,
    claim: &Claim<'_>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<V::Item>> {
    if claim.order == ClaimOrder::OldestFirst {
        return lease_within_caps(verbs, claim, now, None);
    }
    let (clock, due) = verbs.clock_and_due(now, claim.limit)?;
    if due.is_empty() && claim.costs.is_empty() {
        return Ok(Vec::new());
    }
    let mut tenants: Vec<String> = due.iter().map(|(t, _)| t.clone()).collect();
    tenants.extend(claim.costs.iter().map(|c| c.tenant.clone()));
    tenants.sort();
    tenants.dedup();
    let mut book = verbs.book(clock, &tenants)?;
    book.settle(claim.costs);
    let plan = book.plan(&due, claim.limit);
    let mut claimed = lease_within_caps(verbs, claim, now, Some(plan))?;
    let mut leased: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &claimed {
        *leased.entry(c.tenant()).or_default() += 1;
    }
    let charged: BTreeMap<String, i64> = leased
        .into_iter()
        .map(|(tenant, count)| (tenant.to_owned(), book.charge(tenant, count)))
        .collect();
    for c in &mut claimed {
        let tenant = c.tenant();
        let each = charged.get(tenant).copied().unwrap_or(0);
        let weight = book.shares.get(tenant).map_or(DEFAULT_WEIGHT, |s| s.weight);
        c.charged(each, weight);
    }
    verbs.save_book(&book)?;
    Ok(claimed)
}

/// What this process measured since its last claim, per tenant: recorded
/// as deliveries finish or are put back, handed to the next claim.
#[derive(Debug, Default)]
pub struct CostLedger(std::sync::Mutex<BTreeMap<String, TenantCost>>);

impl CostLedger {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TenantCost>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A delivery of `tenant` that ran for `busy` (or, `ran` false, was put
    /// back unrun) and whose claim charged `charged_ns`.
    pub fn record(&self, tenant: &str, ran: bool, busy: Duration, charged_ns: i64) {
        let mut entries = self.entries();
        // Per delivery: allocate the key only for a tenant new here.
        if !entries.contains_key(tenant) {
            entries.insert(
                tenant.to_owned(),
                TenantCost {
                    tenant: tenant.to_owned(),
                    ..TenantCost::default()
                },
            );
        }
        let Some(entry) = entries.get_mut(tenant) else {
            return;
        };
        if ran {
            entry.runs += 1;
            entry.busy_ns = entry
                .busy_ns
                .saturating_add(i64::try_from(busy.as_nanos()).unwrap_or(i64::MAX));
        }
        entry.charged_ns = entry.charged_ns.saturating_add(charged_ns);
    }

    /// Everything recorded, for a claim to settle.
    pub fn take(&self) -> Vec<TenantCost> {
        std::mem::take(&mut *self.entries()).into_values().collect()
    }

    /// Costs a failed claim did not settle, kept for the next.
    pub fn put_back(&self, costs: Vec<TenantCost>) {
        let mut entries = self.entries();
        for cost in costs {
            let entry = entries
                .entry(cost.tenant.clone())
                .or_insert_with(|| TenantCost {
                    tenant: cost.tenant.clone(),
                    ..TenantCost::default()
                });
            entry.runs += cost.runs;
            entry.busy_ns = entry.busy_ns.saturating_add(cost.busy_ns);
            entry.charged_ns = entry.charged_ns.saturating_add(cost.charged_ns);
        }
    }
}

/// An operator's limits, checked: a cap of 0 would stop the tenant for
/// good, which is what not creating it is for.
pub fn check_limits(limits: crate::store::TenantLimits) -> StoreResult<crate::store::TenantLimits> {
    let zero = [
        ("max_running", limits.max_running == Some(0)),
        ("max_pending", limits.max_pending == Some(0)),
        ("max_emit_per_s", limits.max_emit_per_s == Some(0)),
    ];
    match zero.iter().find(|(_, is_zero)| *is_zero) {
        Some((name, _)) => Err(StoreError::Invalid(format!(
            "a tenant's {name} is at least 1 (leave it unset for no limit)"
        ))),
        None => Ok(limits),
    }
}

/// An operator's weight, checked.
pub fn check_weight(weight: u32) -> StoreResult<u32> {
    if (1..=MAX_WEIGHT).contains(&weight) {
        Ok(weight)
    } else {
        Err(StoreError::Invalid(format!(
            "a tenant's weight is a whole number from 1 to {MAX_WEIGHT}; {weight} is not"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(shares: &[(&str, u32, i64, i64)], clock: i64) -> Book {
        Book {
            clock,
            shares: shares
                .iter()
                .map(|(t, weight, vtime, cost_ns)| {
                    (
                        t.to_string(),
                        Share {
                            weight: *weight,
                            vtime: *vtime,
                            cost_ns: *cost_ns,
                            room: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn due(list: &[(&str, usize)]) -> Vec<(String, usize)> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn taken(plan: &[(String, usize)], tenant: &str) -> usize {
        plan.iter()
            .find(|(t, _)| t == tenant)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn equal_tenants_split_a_claim_evenly() {
        let mut book = book(&[("a", 1, 0, 100), ("b", 1, 0, 100)], 0);
        let plan = book.plan(&due(&[("a", 10_000), ("b", 10_000)]), 256);
        assert_eq!((taken(&plan, "a"), taken(&plan, "b")), (128, 128));
    }

    #[test]
    fn a_small_tenant_gets_all_it_has_beside_a_backlog() {
        let mut book = book(&[("a", 1, 0, 100), ("b", 1, 0, 100)], 0);
        let plan = book.plan(&due(&[("a", 256), ("b", 10)]), 256);
        assert_eq!((taken(&plan, "a"), taken(&plan, "b")), (246, 10));
    }

    #[test]
    fn a_tenant_alone_gets_the_whole_claim() {
        let mut book = book(&[("a", 1, 5_000, 100)], 0);
        let plan = book.plan(&due(&[("a", 1_000)]), 256);
        assert_eq!(plan, due(&[("a", 256)]));
    }

    #[test]
    fn costlier_deliveries_are_taken_fewer_at_a_time() {
        let mut book = book(&[("a", 1, 0, 5_000), ("b", 1, 0, 100)], 0);
        let plan = book.plan(&due(&[("a", 10_000), ("b", 10_000)]), 255);
        // 50× the cost: about 1 of a per 50 of b.
        assert_eq!((taken(&plan, "a"), taken(&plan, "b")), (5, 250));
    }

    #[test]
    fn weights_divide_the_work() {
        let mut book = book(&[("a", 3, 0, 300), ("b", 1, 0, 300)], 0);
        let plan = book.plan(&due(&[("a", 10_000), ("b", 10_000)]), 400);
        assert_eq!((taken(&plan, "a"), taken(&plan, "b")), (300, 100));
        // A charge is rounded down to whole nanoseconds per weight: 100 ns
        // at weight 3 charges 33, a share off by under 1%.
        let mut book = super::tests::book(&[("a", 3, 0, 100), ("b", 1, 0, 100)], 0);
        let plan = book.plan(&due(&[("a", 10_000), ("b", 10_000)]), 400);
        assert!((300..=303).contains(&taken(&plan, "a")), "{plan:?}");
    }

    #[test]
    fn a_tenant_takes_no_more_than_its_room_under_max_running() {
        let mut book = book(&[("a", 1, 0, 100), ("b", 1, 0, 100)], 0);
        book.shares.get_mut("a").expect("a").room = Some(3);
        let plan = book.plan(&due(&[("a", 10_000), ("b", 10_000)]), 256);
        assert_eq!((taken(&plan, "a"), taken(&plan, "b")), (3, 253));
        book.shares.get_mut("a").expect("a").room = Some(0);
        let plan = book.plan(&due(&[("a", 10_000)]), 256);
        assert!(plan.is_empty(), "a at its cap takes nothing, even alone");
    }

    #[test]
    fn a_tenant_back_from_idle_banks_no_credit() {
        // b was idle while a ran far ahead: b is lifted to the clock, not
        // given everything until it catches up.
        let mut book = book(&[("a", 1, 1_000_000, 100), ("b", 1, 0, 100)], 1_000_000);
        let plan = book.plan(&due(&[("a", 10_000), ("b", 10_000)]), 256);
        assert_eq!((taken(&plan, "a"), taken(&plan, "b")), (128, 128));
        assert_eq!(book.shares["b"].vtime, 1_000_000);
    }

    #[test]
    fn the_clock_follows_the_busy_tenants() {
        let mut book = book(&[("a", 1, 700, 100), ("b", 1, 900, 100)], 100);
        book.plan(&due(&[("a", 5), ("b", 5)]), 10);
        assert_eq!(book.clock, 700, "the smallest virtual time with work");
        let mut book = book.clone();
        book.plan(&due(&[("b", 5)]), 10);
        assert_eq!(book.clock, 900);
    }

    #[test]
    fn charges_and_settles_by_what_ran() {
        let mut book = book(&[("a", 2, 0, 1_000)], 0);
        assert_eq!(book.charge("a", 10), 1_000);
        assert_eq!(book.shares["a"].vtime, 5_000, "10 × 1,000 ns ÷ weight 2");
        // They really took 3,000 ns each.
        book.settle(&[TenantCost {
            tenant: "a".into(),
            runs: 10,
            busy_ns: 30_000,
            charged_ns: 10_000,
        }]);
        assert_eq!(book.shares["a"].vtime, 15_000, "30,000 ns ÷ 2 in all");
        assert_eq!(
            book.shares["a"].cost_ns, 1_250,
            "the estimate moves 1/8 of the way"
        );
    }

    #[test]
    fn deliveries_put_back_unrun_are_refunded() {
        let mut book = book(&[("a", 1, 0, 1_000)], 0);
        book.charge("a", 4);
        book.settle(&[TenantCost {
            tenant: "a".into(),
            runs: 0,
            busy_ns: 0,
            charged_ns: 4_000,
        }]);
        assert_eq!(book.shares["a"].vtime, 0);
        assert_eq!(book.shares["a"].cost_ns, 1_000, "no run, no new estimate");
    }

    #[test]
    fn the_ledger_adds_up_and_keeps_what_a_claim_did_not_take() {
        let ledger = CostLedger::default();
        ledger.record("a", true, Duration::from_nanos(300), 100);
        ledger.record("a", false, Duration::from_nanos(999), 100);
        let costs = ledger.take();
        assert_eq!(
            costs,
            vec![TenantCost {
                tenant: "a".into(),
                runs: 1,
                busy_ns: 300,
                charged_ns: 200
            }]
        );
        assert!(ledger.take().is_empty());
        ledger.put_back(costs.clone());
        ledger.record("a", true, Duration::from_nanos(50), 100);
        assert_eq!(ledger.take()[0].busy_ns, 350);
    }

    #[test]
    fn weights_are_checked() {
        assert!(check_weight(0).is_err());
        assert!(check_weight(MAX_WEIGHT + 1).is_err());
        assert_eq!(check_weight(3).ok(), Some(3));
    }

    #[derive(Debug, PartialEq)]
    struct Item(&'static str, &'static str);

    impl Claimed for Item {
        fn tenant(&self) -> &str {
            self.0
        }
        fn handler(&self) -> &str {
            self.1
        }
        fn charged(&mut self, _: i64, _: u32) {}
    }

    #[test]
    fn a_capped_handler_keeps_its_room_and_no_more() {
        let caps = [("slow".to_owned(), 3), ("busy".to_owned(), 2)];
        let mut room = HandlerRoom::new(&caps, &[("slow".to_owned(), 1), ("busy".to_owned(), 2)]);
        assert_eq!(room.full(), ["busy"], "busy holds its 2");
        let mut items = vec![
            Item("a", "slow"),
            Item("b", "free"),
            Item("a", "slow"),
            Item("b", "slow"),
            Item("a", "busy"),
        ];
        let over = room.keep_within(&mut items);
        assert_eq!(
            items,
            [Item("a", "slow"), Item("b", "free"), Item("a", "slow")],
            "slow had room for 2, in lease order"
        );
        assert_eq!(over, [Item("b", "slow"), Item("a", "busy")]);
        assert_eq!(room.full(), ["busy", "slow"]);
    }
}
