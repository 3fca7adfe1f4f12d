//! Work waiting per tenant, taken in turns: the shape the invocation slots
//! (`slots.rs`) and the completer's batches share. Each tenant keeps its
//! own order; tenants take turns, one item each.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
pub(crate) struct Turns<J> {
    /// Items waiting, per tenant (only tenants with one waiting).
    waiting: BTreeMap<String, VecDeque<J>>,
    /// Tenants with items waiting, in turn order.
    order: VecDeque<String>,
    len: usize,
}

impl<J> Default for Turns<J> {
    fn default() -> Self {
        Self {
            waiting: BTreeMap::new(),
            order: VecDeque::new(),
            len: 0,
        }
    }
}

impl<J> Turns<J> {
    pub fn push(&mut self, tenant: &str, item: J) {
        match self.waiting.get_mut(tenant) {
            Some(queue) => queue.push_back(item),
            None => self.add_tenant(tenant.to_owned(), item),
        }
        self.len += 1;
    }

    /// `push`, for an item that names its tenant: the name is copied only
    /// for a tenant new to the queue, not for every item.
    pub fn push_by(&mut self, item: J, tenant: impl Fn(&J) -> &str) {
        match self.waiting.get_mut(tenant(&item)) {
            Some(queue) => queue.push_back(item),
            None => self.add_tenant(tenant(&item).to_owned(), item),
        }
        self.len += 1;
    }

    fn add_tenant(&mut self, tenant: String, item: J) {
        self.order.push_back(tenant.clone());
        self.waiting.insert(tenant, VecDeque::from([item]));
    }

    /// The next item of the first tenant in turn that `eligible` accepts, or
    /// of the first in turn when it accepts none; that tenant's turn moves
    /// to the back.
    pub fn pop(&mut self, eligible: impl Fn(&str) -> bool) -> Option<(String, J)> {
        let position = self.order.iter().position(|t| eligible(t)).unwrap_or(0);
        let tenant = self.order.remove(position)?;
        let queue = self.waiting.get_mut(&tenant)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&tenant);
        } else {
            self.order.push_back(tenant.clone());
        }
        self.len -= 1;
        Some((tenant, item))
    }

    /// The tenants with items waiting.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.waiting.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every item, taken out.
    pub fn drain(&mut self) -> Vec<J> {
        self.order.clear();
        self.len = 0;
        std::mem::take(&mut self.waiting)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_take_turns_each_in_its_own_order() {
        let mut turns = Turns::default();
        for i in 0..3 {
            turns.push("a", i);
        }
        turns.push("b", 10);
        let taken: Vec<(String, i32)> = std::iter::from_fn(|| turns.pop(|_| true)).collect();
        let taken: Vec<(&str, i32)> = taken.iter().map(|(t, i)| (t.as_str(), *i)).collect();
        assert_eq!(taken, [("a", 0), ("b", 10), ("a", 1), ("a", 2)]);
        assert!(turns.is_empty());
    }

    #[test]
    fn an_item_that_names_its_tenant_queues_as_if_named_beside_it() {
        let mut turns = Turns::default();
        for item in [("a", 0), ("a", 1), ("b", 10), ("a", 2)] {
            turns.push_by(item, |(tenant, _)| tenant);
        }
        let taken: Vec<i32> =
            std::iter::from_fn(|| turns.pop(|_| true).map(|(_, (_, i))| i)).collect();
        assert_eq!(taken, [0, 10, 1, 2]);
        assert_eq!(turns.len(), 0);
    }

    #[test]
    fn the_first_eligible_tenant_goes_first_else_the_first_in_turn() {
        let mut turns = Turns::default();
        turns.push("a", 1);
        turns.push("b", 2);
        assert_eq!(turns.pop(|t| t == "b"), Some(("b".to_owned(), 2)));
        assert_eq!(
            turns.pop(|_| false),
            Some(("a".to_owned(), 1)),
            "none eligible"
        );
        assert_eq!(turns.pop(|_| true), None);
    }
}
