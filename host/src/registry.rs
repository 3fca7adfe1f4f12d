//! The handlers this host runs, by name. Emit reads it to create deliveries;
//! workers read it to find the code for a delivery. Swapping an entry is
//! atomic: a delivery runs on the `Arc<Handler>` it looked up, whatever is
//! swapped in meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::sandbox::Handler;
use crate::signal::name_matches;
use crate::store::DeliveryTarget;

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
            .filter(|h| {
                h.manifest
                    .subscriptions
                    .iter()
                    .any(|p| name_matches(p, signal_name))
            })
            .map(|h| DeliveryTarget {
                handler: h.name.clone(),
                package: h.manifest.package.clone(),
                max_attempts: h.manifest.max_attempts.unwrap_or(self.default_max_attempts),
            })
            .collect()
    }
}
