//! The handlers this host runs, by name. Emit reads it to create deliveries;
//! workers read it to find the code for a delivery. Swapping an entry is
//! atomic: a delivery runs on the `Arc<Handler>` it looked up, whatever is
//! swapped in meanwhile.
//!
//! A running host also registers its handlers in the store
//! ([`HandlerRegistry::registrations`]), so that an emit from any client (the
//! CLI, another host, the library without handlers) reaches them:
//! [`targets`] joins what this process has loaded with what the store says
//! the hosts have.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::sandbox::Handler;
use crate::signal::name_matches;
use crate::store::{DeliveryTarget, HandlerRegistration};

#[derive(Debug, Default)]
pub struct HandlerRegistry {
    handlers: RwLock<BTreeMap<String, Arc<Handler>>>,
    /// Attempts for handlers whose manifest sets none.
    default_max_attempts: u32,
}

impl HandlerRegistry {
    pub fn new(default_max_attempts: u32) -> Self {
        Self {
            handlers: RwLock::default(),
            default_max_attempts,
        }
    }

    /// Adds or replaces the handler of that name; returns the one it replaced.
    pub fn insert(&self, handler: Handler) -> Option<Arc<Handler>> {
        let mut handlers = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        handlers.insert(handler.name.clone(), Arc::new(handler))
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Handler>> {
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Handler>> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Handler>> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The handlers whose manifest caps their running deliveries
    /// (`max_running`), with their caps.
    pub fn running_caps(&self) -> Vec<(String, u32)> {
        let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
        handlers
            .values()
            .filter_map(|h| Some((h.name.clone(), h.manifest.max_running?)))
            .collect()
    }

    /// The handlers subscribed to `signal_name`, as delivery targets.
    pub fn targets_for(&self, signal_name: &str) -> Vec<DeliveryTarget> {
        let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
        handlers
            .values()
            .filter(|h| subscribes(&h.manifest.subscriptions, signal_name))
            .map(|h| DeliveryTarget {
                handler: h.name.clone(),
                package: h.manifest.package.clone(),
                max_attempts: self.max_attempts(h),
            })
            .collect()
    }

    /// The loaded handlers as `host` registers them in the store.
    pub fn registrations(&self, host: &str, now: DateTime<Utc>) -> Vec<HandlerRegistration> {
        let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
        handlers
            .values()
            .map(|h| HandlerRegistration {
                host: host.to_owned(),
                handler: h.name.clone(),
                digest: Some(h.digest.clone()),
                subscriptions: h.manifest.subscriptions.clone(),
                package: h.manifest.package.clone(),
                max_attempts: self.max_attempts(h),
                load_error: None,
                registered_at: now,
            })
            .collect()
    }

    fn max_attempts(&self, handler: &Handler) -> u32 {
        handler
            .manifest
            .max_attempts
            .unwrap_or(self.default_max_attempts)
    }
}

fn subscribes(patterns: &[String], signal_name: &str) -> bool {
    patterns.iter().any(|p| name_matches(p, signal_name))
}

/// The targets of `signal_name`: the handlers `local` has loaded, then those
/// the store's `registered` list adds (a handler some host runs, under a name
/// `local` has not loaded). Registrations of `own_host` are left out: what
/// this host has loaded now is in `local`, and its rows may be a moment old.
/// Hosts that register one name with different manifests: the newest
/// registration that subscribes decides its package and attempts.
pub fn targets(
    local: &HandlerRegistry,
    registered: &[HandlerRegistration],
    own_host: Option<&str>,
    signal_name: &str,
) -> Vec<DeliveryTarget> {
    let mut targets = local.targets_for(signal_name);
    let mut newest: BTreeMap<&str, &HandlerRegistration> = BTreeMap::new();
    for r in registered {
        let runs = r.digest.is_some() && own_host != Some(r.host.as_str());
        if runs && local.get(&r.handler).is_none() && subscribes(&r.subscriptions, signal_name) {
            let entry = newest.entry(&r.handler).or_insert(r);
            if r.registered_at > entry.registered_at {
                *entry = r;
            }
        }
    }
    targets.extend(newest.into_values().map(|r| DeliveryTarget {
        handler: r.handler.clone(),
        package: r.package.clone(),
        max_attempts: r.max_attempts,
    }));
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(host: &str, handler: &str, seconds: i64) -> HandlerRegistration {
        HandlerRegistration {
            host: host.into(),
            handler: handler.into(),
            digest: Some("sha256:00".into()),
            subscriptions: vec!["forum.*".into()],
            package: None,
            max_attempts: 5,
            load_error: None,
            registered_at: DateTime::from_timestamp(seconds, 0).unwrap_or_default(),
        }
    }

    fn names(targets: &[DeliveryTarget]) -> Vec<&str> {
        targets.iter().map(|t| t.handler.as_str()).collect()
    }

    #[test]
    fn targets_what_the_hosts_registered_once_each_by_its_newest_registration() {
        let local = HandlerRegistry::new(10);
        let registered = vec![
            HandlerRegistration {
                max_attempts: 3,
                ..registration("a", "echo", 1)
            },
            HandlerRegistration {
                max_attempts: 4,
                ..registration("b", "echo", 2)
            },
            HandlerRegistration {
                subscriptions: vec!["billing.*".into()],
                ..registration("a", "billing", 1)
            },
            HandlerRegistration {
                digest: None,
                load_error: Some("not a component".into()),
                ..registration("a", "broken", 1)
            },
        ];
        let found = targets(&local, &registered, None, "forum.thread.created");
        assert_eq!(names(&found), ["echo"], "subscribed, loaded somewhere");
        assert_eq!(found[0].max_attempts, 4, "the newest registration");
        assert!(targets(&local, &registered, None, "other.thing").is_empty());
    }

    #[test]
    fn leaves_out_the_own_hosts_rows_which_its_loaded_handlers_stand_for() {
        let local = HandlerRegistry::new(10);
        let registered = vec![registration("me", "gone", 1), registration("b", "echo", 1)];
        let found = targets(&local, &registered, Some("me"), "forum.thread.created");
        assert_eq!(
            names(&found),
            ["echo"],
            "`gone` left this host a moment ago; its row is stale"
        );
    }
}
