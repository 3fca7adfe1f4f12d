//! The handler manifest: the `<name>.toml` sidecar beside `<name>.wasm`.
//!
//! ```toml
//! subscriptions = ["forum.thread.*"]   # default: every signal
//! package = "forum"                    # default: none, every tenant gets it
//! directives = ["forum.thread.summarize"]
//! max_attempts = 5                     # default: the host's (10)
//! max_running = 4                      # default: no cap
//!
//! [options]                            # passed to the handler in its context
//! max_words = 120
//!
//! [limits]                             # overrides of the host's limits
//! memory_mib = 32
//! timeout_ms = 500
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::limits::LimitOverrides;
use crate::signal::check_name;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Signal name patterns: exact names, `prefix.*` or `*`.
    #[serde(default = "every_signal")]
    pub subscriptions: Vec<String>,
    /// Only tenants that installed this package get deliveries.
    #[serde(default)]
    pub package: Option<String>,
    /// Directive names the handler may request; none if left out.
    #[serde(default)]
    pub directives: Vec<String>,
    /// Handed to the handler as `context.options`.
    #[serde(default = "empty_object")]
    pub options: serde_json::Value,
    /// Attempts before a failing delivery is discarded; the host's default
    /// (10) if left out.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Deliveries of this handler running at once, across every host process
    /// of the store; no cap if left out.
    #[serde(default)]
    pub max_running: Option<u32>,
    #[serde(default)]
    pub limits: LimitOverrides,
}

fn every_signal() -> Vec<String> {
    vec!["*".to_owned()]
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl Default for Manifest {
    /// What a handler without a sidecar gets: every signal, no package, no
    /// directives at all.
    fn default() -> Self {
        Self {
            subscriptions: every_signal(),
            package: None,
            directives: Vec::new(),
            options: empty_object(),
            max_attempts: None,
            max_running: None,
            limits: LimitOverrides::default(),
        }
    }
}

impl Manifest {
    /// Parses and checks a manifest's text; errors say what is wrong, not where
    /// (the caller names the file).
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Reads `<stem>.toml` beside `wasm`, or the default manifest if there is none.
    pub fn for_module(wasm: &Path) -> Result<Self, String> {
        let path = wasm.with_extension("toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn check(&self) -> Result<(), String> {
        for pattern in &self.subscriptions {
            let name = pattern.strip_suffix(".*").unwrap_or(pattern);
            if pattern != "*" {
                check_name(name).map_err(|e| format!("subscription {pattern:?}: {e}"))?;
            }
        }
        for directive in &self.directives {
            check_name(directive).map_err(|e| format!("directive {directive:?}: {e}"))?;
        }
        if let Some(package) = &self.package {
            check_name(package).map_err(|e| format!("package {package:?}: {e}"))?;
        }
        if self.max_attempts == Some(0) {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_running == Some(0) {
            return Err("max_running must be at least 1 (leave it out for no cap)".into());
        }
        if !self.options.is_object() {
            return Err("options must be a table".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(
            "subscriptions = ['forum.thread.*']\npackage = 'forum'\ndirectives = ['forum.thread.summarize']\n\
             [options]\nmax_words = 3\n[limits]\nmemory_mib = 8\n",
        )
        .expect("valid manifest");
        assert_eq!(m.package.as_deref(), Some("forum"));
        assert_eq!(m.options["max_words"], 3);
        assert_eq!(m.limits.memory_mib, Some(8));
    }

    #[test]
    fn errors_name_the_unknown_key() {
        let err = Manifest::parse("subscriptons = ['a']").expect_err("typo must be refused");
        assert!(err.contains("subscriptons"), "{err}");
        let err = Manifest::parse("[limits]\nmemory = 3").expect_err("unknown limit");
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn refuses_malformed_names() {
        assert!(Manifest::parse("subscriptions = ['Forum.*']").is_err());
        assert!(Manifest::parse("directives = ['bad name']").is_err());
    }

    #[test]
    fn a_handler_cap_is_at_least_one() {
        assert_eq!(
            Manifest::parse("max_running = 4").map(|m| m.max_running),
            Ok(Some(4))
        );
        let err = Manifest::parse("max_running = 0").expect_err("refused");
        assert!(err.contains("max_running must be at least 1"), "{err}");
    }
}
