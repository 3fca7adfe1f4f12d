//! Invocation slots of one process, shared fairly between tenants.
//!
//! A slot is an invocation in flight: running on a thread, or suspended in a
//! host call (a guest waiting on a timer holds a slot, not a thread). Claimed
//! deliveries wait here, per tenant, until they get one; waiting here costs
//! no attempt. Tenants take turns (round robin), and while another tenant
//! waits for a slot, a tenant holding its share — the slots divided by the
//! tenants that have work here — gets no more. A tenant alone gets every
//! slot (work-conserving); a tenant that arrives later gets its share as the
//! others' invocations end, each within its wall-clock limit.

use std::collections::BTreeMap;

use super::turns::Turns;

#[derive(Debug)]
pub(crate) struct Slots<J> {
    capacity: usize,
    /// Slots in use, per tenant (only tenants holding one).
    held: BTreeMap<String, usize>,
    /// Jobs waiting for a slot, per tenant, tenants in turn.
    waiting: Turns<J>,
}

impl<J> Slots<J> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            held: BTreeMap::new(),
            waiting: Turns::default(),
        }
    }

    pub fn push(&mut self, tenant: &str, job: J) {
        self.waiting.push(tenant, job);
    }

    fn in_use(&self) -> usize {
        self.held.values().sum()
    }

    /// The slots a tenant may hold while others wait: an equal part for
    /// every tenant with work here, rounded up.
    fn share(&self) -> usize {
        let mut tenants = self.held.len();
        tenants += self
            .waiting
            .tenants()
            .filter(|t| !self.held.contains_key(*t))
            .count();
        self.capacity.div_ceil(tenants.max(1))
    }

    /// The next job to start and its tenant, taking a slot; `None` when every
    /// slot is in use or nothing waits. The first tenant in turn below its
    /// share goes first; if every waiting tenant holds its share already,
    /// the first in turn (no slot stays idle).
    pub fn next(&mut self) -> Option<(String, J)> {
        if self.in_use() >= self.capacity || self.waiting.is_empty() {
            return None;
        }
        let share = self.share();
        let held = &self.held;
        let (tenant, job) = self
            .waiting
            .pop(|t| held.get(t).copied().unwrap_or(0) < share)?;
        *self.held.entry(tenant.clone()).or_insert(0) += 1;
        Some((tenant, job))
    }

    /// Gives back a slot `next` handed to `tenant`.
    pub fn release(&mut self, tenant: &str) {
        if let Some(held) = self.held.get_mut(tenant) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(tenant);
            }
        }
    }

    /// Every waiting job, taken out (at shutdown, to be put back unrun).
    pub fn drain(&mut self) -> Vec<J> {
        self.waiting.drain()
    }

    /// No slot in use and nothing waiting.
    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_all(slots: &mut Slots<u32>) -> Vec<String> {
        std::iter::from_fn(|| slots.next().map(|(tenant, _)| tenant)).collect()
    }

    #[test]
    fn a_tenant_alone_gets_every_slot() {
        let mut slots = Slots::new(4);
        for job in 0..10 {
            slots.push("a", job);
        }
        assert_eq!(start_all(&mut slots), ["a", "a", "a", "a"]);
        assert_eq!(slots.next(), None, "all four in use");
        slots.release("a");
        assert_eq!(slots.next(), Some(("a".to_owned(), 4)), "in order");
    }

    #[test]
    fn tenants_take_turns() {
        let mut slots = Slots::new(4);
        for job in 0..10 {
            slots.push("a", job);
        }
        slots.push("b", 100);
        slots.push("b", 101);
        assert_eq!(start_all(&mut slots), ["a", "b", "a", "b"]);
    }

    #[test]
    fn a_tenant_over_its_share_waits_while_another_waits() {
        let mut slots = Slots::new(4);
        for job in 0..10 {
            slots.push("a", job);
        }
        assert_eq!(start_all(&mut slots).len(), 4, "a alone holds all four");
        slots.push("b", 100);
        slots.push("b", 101);
        slots.push("b", 102);
        // Shares are now two each: every slot a gives back goes to b until b
        // holds two; then they alternate again.
        slots.release("a");
        assert_eq!(slots.next().map(|(t, _)| t).as_deref(), Some("b"));
        slots.release("a");
        assert_eq!(slots.next().map(|(t, _)| t).as_deref(), Some("b"));
        slots.release("a");
        assert_eq!(
            slots.next().map(|(t, _)| t).as_deref(),
            Some("a"),
            "b holds its share, a is below it"
        );
    }

    #[test]
    fn no_slot_stays_idle_while_work_waits() {
        let mut slots = Slots::new(4);
        slots.push("b", 100);
        for job in 0..10 {
            slots.push("a", job);
        }
        // b has one job: a takes the slots b cannot use.
        assert_eq!(start_all(&mut slots), ["b", "a", "a", "a"]);
    }

    #[test]
    fn drained_jobs_leave_it_idle_once_released() {
        let mut slots = Slots::new(2);
        for job in 0..5 {
            slots.push("a", job);
        }
        let _ = slots.next();
        assert_eq!(slots.drain(), vec![1, 2, 3, 4]);
        assert!(!slots.is_idle(), "one still running");
        slots.release("a");
        assert!(slots.is_idle());
        assert_eq!(slots.next(), None);
    }
}
