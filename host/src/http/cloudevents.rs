//! CloudEvents 1.0 over HTTP, in each of its modes, mapped onto sighost
//! signals of the caller's tenant:
//! - structured (`Content-Type: application/cloudevents+json`): one event as
//!   a JSON object;
//! - batch (`application/cloudevents-batch+json`): a JSON array of events;
//! - binary (what the CloudEvents SDKs' `to_binary` and Knative send): the
//!   attributes in `ce-*` headers (percent-decoded), `Content-Type` as the
//!   `datacontenttype`, the data as the body.
//!
//! | CloudEvents attribute | signal field                                    |
//! |-----------------------|-------------------------------------------------|
//! | `type`                | `name` (must be a sighost name: `forum.thread.created`) |
//! | `data`                | `payload` (a JSON object; `{}` when absent)     |
//! | `source` + `id`       | `dedupe_key` = `"<source> <id>"`; `source` too  |
//! | `time`                | `occurred_at`                                   |
//! | `subject` `type:id`   | `subject` {type, id}; any other subject → `metadata.subject` |
//! | `dataschema`          | `metadata.dataschema`                           |
//! | extension attributes  | `metadata.<name>`                               |
//! | `specversion`         | must be `"1.0"`; not kept                       |
//! | `datacontenttype`     | must be JSON (`application/json`, `…+json`); not kept |
//!
//! The dedupe key joins `source` and `id` because the specification makes
//! only the pair unique: two sources may both send an event `1`, and keying
//! on `id` alone would drop the second as a duplicate. A space separates
//! them; a URI-reference `source` contains none, and in one that does (a
//! binary-mode header decodes to anything) `%` and space are written `%25`
//! and `%20` first, so that no two pairs give one key. Sending the same
//! event again returns the stored signal, status `existing`.
//!
//! `data_base64` (binary data) and data that is not JSON are refused, and so
//! is an extension named `tenant`: the tenant comes from the token, never
//! from the request.

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::signal::EntityRef;
use crate::store::NewSignal;

/// The header that marks a binary-mode event.
pub const BINARY_MARKER: &str = "ce-specversion";

/// Whether a media type (its essence, lowercase) is JSON.
pub fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

/// A binary-mode event as the structured form [`to_signal`] reads: each
/// `ce-<name>` header is the attribute `<name>`, `Content-Type` the
/// `datacontenttype`, and the body (JSON) the `data`.
pub fn from_binary(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, String> {
    let mut event = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let text = value
            .to_str()
            .map_err(|_| format!("the header {name} is not ASCII: percent-encode it"))?;
        let decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map_err(|_| format!("the header {name} does not decode to UTF-8"))?;
        if event
            .insert(attribute.to_owned(), Value::String(decoded.into_owned()))
            .is_some()
        {
            return Err(format!("the header {name} is sent twice"));
        }
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let text = content_type.to_str().unwrap_or_default();
        event.insert("datacontenttype".into(), Value::String(text.to_owned()));
    }
    if !body.is_empty() {
        let data: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the body (the event's data) is not JSON: {e}"))?;
        event.insert("data".into(), data);
    }
    Ok(event)
}

/// The signal an event stands for, or why it cannot be one.
pub fn to_signal(mut event: Map<String, Value>, tenant: &str) -> Result<NewSignal, String> {
    let specversion = required(&mut event, "specversion")?;
    if specversion != "1.0" {
        return Err(format!(
            "specversion {specversion:?} is not supported; send CloudEvents 1.0"
        ));
    }
    let id = required(&mut event, "id")?;
    let source = required(&mut event, "source")?;
    let name = required(&mut event, "type")?;
    crate::signal::check_name(&name)
        .map_err(|e| format!("the event type becomes the signal name: {e}"))?;
    check_content_type(event.remove("datacontenttype"))?;
    if event.contains_key("data_base64") {
        return Err("data_base64 is not accepted: send `data` as a JSON object".into());
    }
    if event.contains_key("tenant") {
        return Err(super::TENANT_FROM_TOKEN.into());
    }
    let payload = match event.remove("data") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err("`data` must be a JSON object".into()),
    };
    let occurred_at = optional(&mut event, "time")?
        .map(|time| {
            DateTime::parse_from_rfc3339(&time)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("`time` {time:?} is not an RFC 3339 timestamp: {e}"))
        })
        .transpose()?;
    let subject = match optional(&mut event, "subject")? {
        Some(subject) => match subject.split_once(':') {
            Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Some(EntityRef {
                kind: kind.to_owned(),
                id: id.to_owned(),
            }),
            _ => {
                event.insert("subject".into(), Value::String(subject));
                None
            }
        },
        None => None,
    };
    // What is left is `dataschema`, a non-entity subject and the extensions.
    Ok(NewSignal {
        tenant: tenant.to_owned(),
        name,
        payload,
        metadata: (!event.is_empty()).then_some(Value::Object(event)),
        dedupe_key: Some(format!("{} {id}", key_part(&source))),
        occurred_at,
        subject,
        source: Some(source),
        ..NewSignal::default()
    })
}

/// `source` as the first part of the dedupe key: unchanged unless it holds
/// the separator (a space) or the escape (`%`).
fn key_part(source: &str) -> std::borrow::Cow<'_, str> {
    if source.contains([' ', '%']) {
        std::borrow::Cow::Owned(source.replace('%', "%25").replace(' ', "%20"))
    } else {
        std::borrow::Cow::Borrowed(source)
    }
}

fn required(event: &mut Map<String, Value>, attribute: &str) -> Result<String, String> {
    optional(event, attribute)?
        .filter(|value| !value.is_empty())
        .ok_or_else(|| format!("the required CloudEvents attribute `{attribute}` is missing"))
}

fn optional(event: &mut Map<String, Value>, attribute: &str) -> Result<Option<String>, String> {
    match event.remove(attribute) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("`{attribute}` must be a string")),
    }
}

fn check_content_type(value: Option<Value>) -> Result<(), String> {
    let Some(value) = value else { return Ok(()) };
    let text = value.as_str().ok_or("`datacontenttype` must be a string")?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if is_json(&essence) {
        Ok(())
    } else {
        Err(format!(
            "datacontenttype {text:?} is not accepted: `data` must be JSON"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    fn minimal() -> Value {
        json!({"specversion": "1.0", "id": "e1", "source": "/forum", "type": "forum.thread.created"})
    }

    #[test]
    fn no_two_source_and_id_pairs_share_a_dedupe_key() {
        let key = |source: &str, id: &str| {
            let mut event = event(minimal());
            event.insert("source".into(), Value::String(source.into()));
            event.insert("id".into(), Value::String(id.into()));
            to_signal(event, "t")
                .expect("valid")
                .dedupe_key
                .expect("a key")
        };
        assert_ne!(key("/a b", "c"), key("/a", "b c"));
        assert_ne!(key("/a%20b", "c"), key("/a b", "c"));
        assert_eq!(
            key("/forum", "e1"),
            "/forum e1",
            "a plain source is kept as it is"
        );
    }

    #[test]
    fn maps_every_attribute_onto_the_signal() {
        let signal = to_signal(
            event(json!({
                "specversion": "1.0",
                "id": "A234-1234-1234",
                "source": "https://forum.example/threads",
                "type": "forum.thread.created",
                "time": "2026-11-26T12:00:00Z",
                "subject": "thread:t_1",
                "datacontenttype": "application/json",
                "dataschema": "https://forum.example/schema",
                "traceparent": "00-abc-def-01",
                "data": {"thread_id": "t_1"}
            })),
            "org_acme",
        )
        .expect("maps");
        assert_eq!(signal.tenant, "org_acme");
        assert_eq!(signal.name, "forum.thread.created");
        assert_eq!(signal.payload, json!({"thread_id": "t_1"}));
        assert_eq!(
            signal.dedupe_key.as_deref(),
            Some("https://forum.example/threads A234-1234-1234")
        );
        assert_eq!(
            signal.source.as_deref(),
            Some("https://forum.example/threads")
        );
        assert_eq!(
            signal.occurred_at.map(|t| t.to_rfc3339()),
            Some("2026-11-26T12:00:00+00:00".into())
        );
        assert_eq!(
            signal.subject,
            Some(EntityRef {
                kind: "thread".into(),
                id: "t_1".into()
            })
        );
        assert_eq!(
            signal.metadata,
            Some(
                json!({"dataschema": "https://forum.example/schema", "traceparent": "00-abc-def-01"})
            )
        );
    }

    #[test]
    fn keeps_a_subject_that_is_not_an_entity_in_metadata() {
        let mut value = minimal();
        value["subject"] = json!("readme.md");
        let signal = to_signal(event(value), "org_acme").expect("maps");
        assert_eq!(signal.subject, None);
        assert_eq!(signal.metadata, Some(json!({"subject": "readme.md"})));
        assert_eq!(signal.payload, json!({}));
    }

    #[test]
    fn refuses_what_cannot_be_a_signal() {
        let cases = [
            (
                json!({"id": "1", "source": "s", "type": "a.b"}),
                "specversion",
            ),
            (
                json!({"specversion": "0.3", "id": "1", "source": "s", "type": "a.b"}),
                "0.3",
            ),
            (
                json!({"specversion": "1.0", "source": "s", "type": "a.b"}),
                "`id`",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "Com.Example"}),
                "type",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "data": [1]}),
                "data",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "data_base64": "AA=="}),
                "data_base64",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "datacontenttype": "text/plain"}),
                "text/plain",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "time": "yesterday"}),
                "time",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "tenant": "org_beta"}),
                "token",
            ),
        ];
        for (value, needle) in cases {
            let error = to_signal(event(value.clone()), "org_acme").expect_err(&value.to_string());
            assert!(error.contains(needle), "{value}: {error}");
        }
    }
}
