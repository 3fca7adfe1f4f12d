//! Spotting credentials in JSON documents (refused) and in guest output
//! (redacted).
//!
//! A key is secret when its name, lowercased with `-` read as `_`, is one of
//! [`SECRET_KEYS`]. A string value is secret when it looks like a bearer token or
//! a PEM private key, whatever its key. The check is deliberately simple and
//! errs on refusing: a payload that trips it can move the value elsewhere (a
//! reference to a vault entry, say), while a leaked token cannot be unleaked.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Object keys whose values are never accepted in a payload.
pub const SECRET_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "authorization",
    "api_key",
    "apikey",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "cookie",
    "set_cookie",
    "private_key",
];

static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*").expect("static regex")
});
static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(-----END [A-Z ]*PRIVATE KEY-----|\z)")
        .expect("static regex")
});
/// `password=…`, `"api_key": "…"`, `Authorization: …` in free text.
static SECRET_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    let keys = SECRET_KEYS.join("|").replace('_', "[_-]");
    Regex::new(&format!(r#"(?i)\b({keys})("?\s*[:=]\s*"?)[^\s",}}]+"#)).expect("static regex")
});

fn is_secret_key(key: &str) -> bool {
    let normalized = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS.contains(&normalized.as_str())
}

fn is_secret_value(value: &str) -> bool {
    BEARER.is_match(value) || PRIVATE_KEY.is_match(value)
}

/// The JSON pointer of the first secret in `value`, if there is one.
pub fn find_secret(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(key, child)| {
                let len = path.len();
                path.push('/');
                path.push_str(key);
                let found = (is_secret_key(key) && !child.is_null()) || walk(child, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Array(items) => items.iter().enumerate().any(|(i, child)| {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                let found = walk(child, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::String(s) => is_secret_value(s),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then_some(if path.is_empty() {
        "/".to_owned()
    } else {
        path
    })
}

/// `text` with bearer tokens, private keys and `secret_key=value` pairs masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    let text = match PRIVATE_KEY.replace_all(text, "[REDACTED PRIVATE KEY]") {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(s) => Cow::Owned(s),
    };
    let text = match BEARER.replace_all(&text, "Bearer [REDACTED]") {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => Cow::Owned(s),
    };
    match SECRET_ASSIGNMENT.replace_all(&text, "$1$2[REDACTED]") {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_secret_keys_at_any_depth() {
        assert_eq!(
            find_secret(&json!({"a": {"Api-Key": "x"}})),
            Some("/a/Api-Key".into())
        );
        assert_eq!(
            find_secret(&json!({"list": [{"password": "p"}]})),
            Some("/list/0/password".into())
        );
        assert_eq!(find_secret(&json!({"user": "ann", "n": 1})), None);
    }

    #[test]
    fn finds_secret_shaped_values_under_innocent_keys() {
        let bearer = json!({"note": "Bearer abcdefghijklmnopqrstuvwxyz"});
        assert_eq!(find_secret(&bearer), Some("/note".into()));
        let pem =
            json!({"k": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"});
        assert_eq!(find_secret(&pem), Some("/k".into()));
        assert_eq!(find_secret(&json!({"note": "bearer of good news"})), None);
    }

    #[test]
    fn redacts_tokens_keys_and_assignments() {
        let out = redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345\nok");
        assert!(!out.contains("abcdefghijklmnop"), "{out}");
        assert!(out.ends_with("\nok"));
        let out = redact(r#"{"password": "hunter2hunter2", "user": "ann"}"#);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("ann"));
        assert!(matches!(redact("nothing to hide"), Cow::Borrowed(_)));
    }
}
