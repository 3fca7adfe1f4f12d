//! Operator actions, as library methods of [`Sighost`]: tenants, their
//! settings and packages, retry and cancel. The CLI and the HTTP API both
//! call these, so each action is checked once and dated by the host's clock.
//!
//! A bulk action — a filter that names no ids — may reach many rows of many
//! tenants, so it runs only when confirmed: without confirmation it refuses
//! with [`HostError::Unconfirmed`], saying how many rows of which tenants the
//! filter matches ([`Matched`]) — unless it matches none, which does nothing. No front end turns "no arguments" into
//! "everything" silently: the CLI asks (or wants `--yes`), the HTTP API wants
//! `"confirm": true`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::host::{HostError, Sighost};
use crate::rules;
use crate::store::{DeliveryFilter, DeliveryState, DirectiveFilter, Tenant};

/// How many rows an action's filter matches, per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Matched {
    pub total: u64,
    /// Tenant id → rows, in id order.
    pub by_tenant: BTreeMap<String, u64>,
}

impl Matched {
    pub(crate) fn of<'a>(tenants: impl Iterator<Item = &'a str>) -> Self {
        let mut matched = Self::default();
        for tenant in tenants {
            matched.total += 1;
            *matched.by_tenant.entry(tenant.to_owned()).or_insert(0) += 1;
        }
        matched
    }
}

impl std::fmt::Display for Matched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants: Vec<String> = self
            .by_tenant
            .iter()
            .map(|(tenant, n)| format!("{tenant} {n}"))
            .collect();
        match self.by_tenant.len() {
            0 => write!(f, "0"),
            1 => write!(f, "{} (tenant {})", self.total, tenants.join(", ")),
            n => write!(f, "{} ({n} tenants: {})", self.total, tenants.join(", ")),
        }
    }
}

/// The answer to a bulk action that was not confirmed: nothing to confirm
/// when nothing matches, else what the filter reaches.
fn unconfirmed(action: &'static str, matched: Matched) -> Result<u64, HostError> {
    if matched.total == 0 {
        return Ok(0);
    }
    Err(HostError::Unconfirmed { action, matched })
}

/// The states of `filter` that `allowed` lets an action touch.
fn states<S: Copy + PartialEq>(wanted: Option<S>, allowed: &[S]) -> Vec<S> {
    allowed
        .iter()
        .copied()
        .filter(|s| wanted.is_none_or(|w| w == *s))
        .collect()
}

impl Sighost {
    /// The host's clock: what every operator action is dated by.
    pub fn now(&self) -> DateTime<Utc> {
        (self.config().clock)()
    }

    pub fn create_tenant(
        &self,
        id: &str,
        settings: serde_json::Value,
    ) -> Result<Tenant, HostError> {
        Ok(self.store().create_tenant(id, settings, self.now())?)
    }

    pub fn tenants(&self) -> Result<Vec<Tenant>, HostError> {
        Ok(self.store().tenants()?)
    }

    pub fn set_tenant_settings(
        &self,
        id: &str,
        settings: serde_json::Value,
    ) -> Result<Tenant, HostError> {
        Ok(self.store().set_settings(id, settings)?)
    }

    /// Sets a tenant's weight: its share of the workers beside the other
    /// tenants with work, 1 (the default) to [`crate::fair::MAX_WEIGHT`]
    /// (ARCHITECTURE.md §4, "Fair share").
    pub fn set_tenant_weight(&self, id: &str, weight: u32) -> Result<Tenant, HostError> {
        Ok(self.store().set_weight(id, weight)?)
    }

    /// Replaces a tenant's limits (ARCHITECTURE.md §4, "Fair share"); an
    /// unset field is no limit.
    pub fn set_tenant_limits(
        &self,
        id: &str,
        limits: crate::store::TenantLimits,
    ) -> Result<Tenant, HostError> {
        Ok(self.store().set_limits(id, limits)?)
    }

    pub fn install_package(&self, tenant: &str, package: &str) -> Result<Tenant, HostError> {
        Ok(self.store().install_package(tenant, package)?)
    }

    pub fn uninstall_package(&self, tenant: &str, package: &str) -> Result<Tenant, HostError> {
        Ok(self.store().uninstall_package(tenant, package)?)
    }

    /// The deliveries [`Sighost::retry_deliveries`] would run again.
    pub fn deliveries_to_retry(&self, filter: &DeliveryFilter) -> Result<Matched, HostError> {
        self.matching_deliveries(filter, rules::RETRYABLE_BY_OPERATOR)
    }

    /// Makes the deliveries matching `filter` that stopped (discarded,
    /// canceled) or wait for a retry run again at once, with a fresh attempt
    /// budget. A filter without ids must be `confirmed`.
    pub fn retry_deliveries(
        &self,
        filter: &DeliveryFilter,
        confirmed: bool,
    ) -> Result<u64, HostError> {
        if filter.ids.is_empty() && !confirmed {
            return unconfirmed("retry deliveries", self.deliveries_to_retry(filter)?);
        }
        let retried = self.store().retry_deliveries(filter, self.now())?;
        if retried > 0 {
            self.wake_workers();
        }
        Ok(retried)
    }

    /// The deliveries [`Sighost::cancel_deliveries`] would cancel.
    pub fn deliveries_to_cancel(&self, filter: &DeliveryFilter) -> Result<Matched, HostError> {
        self.matching_deliveries(filter, rules::CANCELABLE_DELIVERIES)
    }

    /// Cancels the deliveries matching `filter` that have not run yet. A
    /// filter without ids must be `confirmed`.
    pub fn cancel_deliveries(
        &self,
        filter: &DeliveryFilter,
        confirmed: bool,
    ) -> Result<u64, HostError> {
        if filter.ids.is_empty() && !confirmed {
            return unconfirmed("cancel deliveries", self.deliveries_to_cancel(filter)?);
        }
        Ok(self.store().cancel_deliveries(filter, self.now())?)
    }

    /// The directives [`Sighost::cancel_directives`] would cancel.
    pub fn directives_to_cancel(&self, filter: &DirectiveFilter) -> Result<Matched, HostError> {
        let mut rows = Vec::new();
        for state in states(filter.state, rules::CANCELABLE_DIRECTIVES) {
            rows.extend(self.store().directives(&DirectiveFilter {
                state: Some(state),
                limit: None,
                ..filter.clone()
            })?);
        }
        Ok(Matched::of(rows.iter().map(|d| d.tenant.as_str())))
    }

    /// Cancels the directives matching `filter` that have not run yet. A
    /// filter without ids must be `confirmed`.
    pub fn cancel_directives(
        &self,
        filter: &DirectiveFilter,
        confirmed: bool,
    ) -> Result<u64, HostError> {
        if filter.ids.is_empty() && !confirmed {
            return unconfirmed("cancel directives", self.directives_to_cancel(filter)?);
        }
        Ok(self.store().cancel_directives(filter, self.now())?)
    }

    fn matching_deliveries(
        &self,
        filter: &DeliveryFilter,
        allowed: &[DeliveryState],
    ) -> Result<Matched, HostError> {
        let mut rows = Vec::new();
        for state in states(filter.state, allowed) {
            rows.extend(self.store().deliveries(&DeliveryFilter {
                state: Some(state),
                limit: None,
                ..filter.clone()
            })?);
        }
        Ok(Matched::of(rows.iter().map(|d| d.tenant.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_says_how_many_of_which_tenants() {
        let matched = Matched::of(["org_b", "org_a", "org_b"].into_iter());
        assert_eq!(matched.total, 3);
        assert_eq!(matched.to_string(), "3 (2 tenants: org_a 1, org_b 2)");
        assert_eq!(
            Matched::of(["org_a"].into_iter()).to_string(),
            "1 (tenant org_a 1)"
        );
        assert_eq!(Matched::default().to_string(), "0");
    }

    #[test]
    fn an_action_touches_the_allowed_states_the_filter_wants() {
        let allowed = rules::CANCELABLE_DELIVERIES;
        assert_eq!(states(None, allowed), allowed);
        assert_eq!(
            states(Some(DeliveryState::Retryable), allowed),
            [DeliveryState::Retryable]
        );
        assert!(states(Some(DeliveryState::Completed), allowed).is_empty());
    }
}
