//! The tenant endpoints: emit a signal, and read the caller's own signals,
//! deliveries and directives. Every store query is filtered by the tenant of
//! the token; a record of another tenant is answered as not found, so its
//! existence is not revealed either.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::Tenant;
use super::error::ApiError;
use super::{ApiState, TENANT_FROM_TOKEN, blocking, cloudevents};
use crate::signal::EntityRef;
use crate::store::{
    DeliveryFilter, DeliveryState, DirectiveFilter, DirectiveState, EmitStatus, NewSignal,
    SignalFilter,
};

/// Rows a list answers with when the query sets no `limit`.
const DEFAULT_LIMIT: u32 = 50;
/// The most rows one list answers with.
const MAX_LIMIT: u32 = 1000;

/// The body of `POST /v1/signals` in sighost's own form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    name: String,
    #[serde(default = "empty_object")]
    payload: Value,
    metadata: Option<Value>,
    dedupe_key: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    actor: Option<EntityRef>,
    subject: Option<EntityRef>,
    source: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// How the body of `POST /v1/signals` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `application/json`: sighost's signal, or a JSON array of them.
    Sighost,
    /// `application/cloudevents+json`: one CloudEvent (structured mode).
    CloudEvent,
    /// `application/cloudevents-batch+json`: a JSON array of CloudEvents.
    CloudEventBatch,
    /// `ce-*` headers with the event's data as the body (binary mode).
    CloudEventBinary,
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{what}: send `Content-Type: application/json` (sighost's signal, or an array \
                 of them), `application/cloudevents+json` (one CloudEvent), \
                 `application/cloudevents-batch+json` (an array of CloudEvents), or a CloudEvent \
                 in binary mode (`ce-*` headers, JSON data as the body)"
            ),
        )
    };
    let essence = headers.get(header::CONTENT_TYPE).map(|value| {
        value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    // The media type decides first, as the CloudEvents HTTP binding says: a
    // structured event or a batch may carry `ce-*` headers too.
    match essence.as_deref() {
        Some("application/cloudevents+json") => return Ok(Format::CloudEvent),
        Some("application/cloudevents-batch+json") => return Ok(Format::CloudEventBatch),
        _ => {}
    }
    if headers.contains_key(cloudevents::BINARY_MARKER) {
        // Without a Content-Type the data is JSON (the SDKs send none when
        // the event sets no `datacontenttype`).
        return match essence.as_deref() {
            None => Ok(Format::CloudEventBinary),
            Some(essence) if cloudevents::is_json(essence) => Ok(Format::CloudEventBinary),
            Some(essence) => Err(unsupported(&format!(
                "a binary-mode CloudEvent's data is {essence:?}, and must be JSON"
            ))),
        };
    }
    match essence.as_deref() {
        None => Err(unsupported("no Content-Type")),
        Some("application/json") => Ok(Format::Sighost),
        Some(essence) => Err(unsupported(&format!(
            "Content-Type {essence:?} is not accepted"
        ))),
    }
}

/// What a request carries: one signal, or a batch of items each of which
/// became a signal or did not.
enum Emits {
    One(Box<NewSignal>),
    Batch(Vec<Result<NewSignal, String>>),
}

fn parse_emits(
    format: Format,
    headers: &HeaderMap,
    body: &[u8],
    tenant: &str,
    max_batch: usize,
) -> Result<Emits, ApiError> {
    if format == Format::CloudEventBinary {
        let event = cloudevents::from_binary(headers, body).map_err(ApiError::bad_request)?;
        return cloudevents::to_signal(event, tenant)
            .map(|signal| Emits::One(Box::new(signal)))
            .map_err(ApiError::bad_request);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let one = |object: Map<String, Value>| match format {
        Format::CloudEvent | Format::CloudEventBatch => cloudevents::to_signal(object, tenant),
        _ => sighost_signal(object, tenant).map_err(|e| e.message),
    };
    match (format, value) {
        (Format::Sighost | Format::CloudEvent, Value::Object(object)) => one(object)
            .map(|signal| Emits::One(Box::new(signal)))
            .map_err(ApiError::bad_request),
        (Format::Sighost | Format::CloudEventBatch, Value::Array(items)) => {
            if items.len() > max_batch {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a batch of {} signals is over the limit of {max_batch} \
                         (`http.max_batch_signals`)",
                        items.len()
                    ),
                ));
            }
            if items.is_empty() {
                return Err(ApiError::bad_request("the batch is empty"));
            }
            Ok(Emits::Batch(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(object) => one(object),
                        _ => Err("an item of a batch must be a JSON object".to_owned()),
                    })
                    .collect(),
            ))
        }
        (Format::CloudEventBatch, _) => Err(ApiError::bad_request(
            "a CloudEvents batch is a JSON array of events",
        )),
        (Format::CloudEvent, _) => Err(ApiError::bad_request(
            "a structured CloudEvent is a JSON object (send an array as \
             application/cloudevents-batch+json)",
        )),
        _ => Err(ApiError::bad_request(
            "the body must be a JSON object (a signal), or an array of them (a batch)",
        )),
    }
}

/// `POST /v1/signals`: one signal (201 created, 200 existing), or a batch
/// (200, a result per item, in order), all of it stored or none.
pub async fn emit(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_batch: usize,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let format = format_of(&headers)?;
    let body = body?;
    // Parsing a batch's megabytes is work: off the async threads.
    let parsed = {
        let tenant = tenant.clone();
        blocking(move || parse_emits(format, &headers, &body, &tenant, max_batch)).await?
    };
    let signals = match parsed {
        Emits::One(signal) => {
            let emitted = match &state.group {
                Some(group) => group.emit(*signal).await?,
                None => {
                    let host = state.host.clone();
                    blocking(move || Ok(host.emit(*signal)?)).await?
                }
            };
            state.host.metrics().http_signal(emitted.status);
            tracing::debug!(
                %tenant,
                signal = %emitted.signal.id,
                name = %emitted.signal.name,
                status = ?emitted.status,
                deliveries = emitted.deliveries,
                "signal emitted over HTTP"
            );
            let status = match emitted.status {
                EmitStatus::Created => StatusCode::CREATED,
                EmitStatus::Existing => StatusCode::OK,
            };
            return Ok((status, Json(emitted)).into_response());
        }
        Emits::Batch(items) => items,
    };
    let host = state.host.clone();
    let results = blocking(move || match host.emitter().check_each(signals)? {
        Ok(valid) => Ok(Ok(host.emit_batch(valid)?)),
        Err(invalid) => Ok(Err(invalid
            .into_iter()
            .map(|(index, error)| json!({ "index": index, "error": error }))
            .collect::<Vec<_>>())),
    })
    .await?;
    match results {
        Ok(emitted) => {
            for e in &emitted {
                state.host.metrics().http_signal(e.status);
            }
            tracing::debug!(%tenant, signals = emitted.len(), "batch emitted over HTTP");
            Ok((StatusCode::OK, Json(json!({ "results": emitted }))).into_response())
        }
        Err(invalid) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{} of the batch's items are invalid; nothing was stored",
                invalid.len()
            ),
        )
        .with_errors(invalid)),
    }
}

fn sighost_signal(object: Map<String, Value>, tenant: &str) -> Result<NewSignal, ApiError> {
    if object.contains_key("tenant") {
        return Err(ApiError::bad_request(TENANT_FROM_TOKEN));
    }
    let body: SignalBody = serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::bad_request(format!("the signal is malformed: {e}")))?;
    Ok(NewSignal {
        tenant: tenant.to_owned(),
        name: body.name,
        payload: body.payload,
        metadata: body.metadata,
        dedupe_key: body.dedupe_key,
        occurred_at: body.occurred_at,
        correlation_id: body.correlation_id,
        causation_id: body.causation_id,
        actor: body.actor,
        subject: body.subject,
        source: body.source.or_else(|| Some("http".into())),
    })
}

/// A list's `limit`, defaulted and capped.
fn limit(requested: Option<u32>) -> Result<u32, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// Queries reject unknown parameters; a `tenant` one gets its own message.
fn refuse_tenant(tenant: &Option<String>) -> Result<(), ApiError> {
    match tenant {
        Some(_) => Err(ApiError::bad_request(TENANT_FROM_TOKEN)),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalQuery {
    tenant: Option<String>,
    name: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<u32>,
}

/// `GET /v1/signals`.
pub async fn signals(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    query: Result<Query<SignalQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    refuse_tenant(&query.tenant)?;
    let filter = SignalFilter {
        tenant: Some(tenant),
        name: query.name,
        since: query.since,
        until: query.until,
        limit: Some(limit(query.limit)?),
        ids: Vec::new(),
    };
    let host = state.host.clone();
    let signals = blocking(move || Ok(host.store().signals(&filter)?)).await?;
    Ok(Json(json!({ "signals": signals })))
}

/// `GET /v1/signals/{id}`.
pub async fn signal(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let filter = SignalFilter {
        tenant: Some(tenant),
        ids: vec![id.clone()],
        ..SignalFilter::default()
    };
    let host = state.host.clone();
    let signal = blocking(move || Ok(host.store().signals(&filter)?))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no signal {id:?}")))?;
    Ok(Json(json!({ "signal": signal })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    tenant: Option<String>,
    state: Option<String>,
    handler: Option<String>,
    signal_id: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/deliveries`.
pub async fn deliveries(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    refuse_tenant(&query.tenant)?;
    let filter = DeliveryFilter {
        tenant: Some(tenant),
        state: query
            .state
            .as_deref()
            .map(DeliveryState::parse)
            .transpose()?,
        handler: query.handler,
        signal_id: query.signal_id,
        ids: Vec::new(),
        limit: Some(limit(query.limit)?),
    };
    let host = state.host.clone();
    let deliveries = blocking(move || Ok(host.store().deliveries(&filter)?)).await?;
    Ok(Json(json!({ "deliveries": deliveries })))
}

/// `GET /v1/deliveries/{id}`: the delivery and every attempt.
pub async fn delivery(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let filter = DeliveryFilter {
        tenant: Some(tenant),
        ids: vec![id],
        ..DeliveryFilter::default()
    };
    let host = state.host.clone();
    let found = blocking(move || {
        let store = host.store();
        match store.deliveries(&filter)?.pop() {
            Some(delivery) => Ok(Some((delivery, store.attempts(id)?))),
            None => Ok(None),
        }
    })
    .await?;
    let (delivery, attempts) =
        found.ok_or_else(|| ApiError::not_found(format!("no delivery {id}")))?;
    Ok(Json(json!({ "delivery": delivery, "attempts": attempts })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveQuery {
    tenant: Option<String>,
    state: Option<String>,
    name: Option<String>,
    signal_id: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/directives`.
pub async fn directives(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    query: Result<Query<DirectiveQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    refuse_tenant(&query.tenant)?;
    let filter = DirectiveFilter {
        tenant: Some(tenant),
        state: query
            .state
            .as_deref()
            .map(DirectiveState::parse)
            .transpose()?,
        name: query.name,
        signal_id: query.signal_id,
        ids: Vec::new(),
        limit: Some(limit(query.limit)?),
    };
    let host = state.host.clone();
    let directives = blocking(move || Ok(host.store().directives(&filter)?)).await?;
    Ok(Json(json!({ "directives": directives })))
}

/// `GET /v1/directives/{id}`.
pub async fn directive(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let filter = DirectiveFilter {
        tenant: Some(tenant),
        ids: vec![id.clone()],
        ..DirectiveFilter::default()
    };
    let host = state.host.clone();
    let directive = blocking(move || Ok(host.store().directives(&filter)?))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no directive {id:?}")))?;
    Ok(Json(json!({ "directive": directive })))
}
