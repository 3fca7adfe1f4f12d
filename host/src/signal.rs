//! Signals (ARCHITECTURE.md §1): the stored form, name rules and subscription patterns.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Who or what a signal is about or was caused by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// An immutable, tenant-scoped fact, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// Always a JSON object.
    pub payload: serde_json::Value,
    /// Always a JSON object.
    pub metadata: serde_json::Value,
    pub dedupe_key: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: Option<EntityRef>,
    pub subject: Option<EntityRef>,
    pub source: Option<String>,
    pub inserted_at: DateTime<Utc>,
}

/// RFC 3339 in UTC with microseconds, the one timestamp format guests see.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Why a signal or directive name is malformed, if it is.
///
/// A name is one or more dot-separated segments of lowercase ASCII letters,
/// digits and `_`, each starting with a letter: `forum.thread.created`.
pub fn check_name(name: &str) -> Result<(), String> {
    const MAX_LEN: usize = 255;
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "a name is at most {MAX_LEN} bytes, this one is {}",
            name.len()
        ));
    }
    for segment in name.split('.') {
        let mut chars = segment.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !starts_with_letter || !rest_ok {
            return Err(format!(
                "{name:?} is not a dot-delimited lowercase name like forum.thread.created \
                 (segment {segment:?})"
            ));
        }
    }
    Ok(())
}

/// Whether `name` matches a subscription `pattern`: an exact name, `*` for
/// every name, or `prefix.*` for every name below `prefix`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        None => pattern == name,
        Some("") => true,
        Some(prefix) => {
            prefix.ends_with('.') && name.starts_with(prefix) && name.len() > prefix.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dot_delimited_lowercase_names() {
        assert!(check_name("forum.thread.created").is_ok());
        assert!(check_name("directive.succeeded").is_ok());
        assert!(check_name("a1.b_2").is_ok());
    }

    #[test]
    fn refuses_malformed_names() {
        for bad in [
            "",
            "Forum.thread",
            "forum..thread",
            ".forum",
            "forum.",
            "forum.1thread",
            "forum thread",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn matches_exact_prefix_and_catch_all_patterns() {
        assert!(name_matches("forum.thread.created", "forum.thread.created"));
        assert!(name_matches("forum.thread.*", "forum.thread.created"));
        assert!(!name_matches("forum.thread.*", "forum.thread"));
        assert!(!name_matches("forum.thread.*", "forum.threads.x"));
        assert!(name_matches("*", "anything.at.all"));
        assert!(!name_matches("forum.*", "billing.paid"));
    }
}
