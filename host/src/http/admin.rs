//! Operator endpoints, admin token only. Bodies are JSON and refuse unknown
//! fields, so a misspelt filter is an error rather than a wider operation.
//!
//! - `POST /v1/admin/replay` `{ids?, tenant?, name?, since?, until?, handler?}`
//!   → `{"deliveries_created": n}`. At least one filter besides `handler`:
//!   replaying every signal of every tenant is left to the CLI.
//! - `POST /v1/admin/retry` `{ids?, tenant?, handler?, confirm?}` →
//!   `{"retried": n}`: discarded deliveries run again with a fresh attempt
//!   budget. Without ids the filter may reach many tenants' deliveries, so
//!   it needs `"confirm": true`; without it the answer is 400 and says how
//!   many deliveries of which tenants the filter matches.
//! - `POST /v1/admin/cancel` `{deliveries?: [id], directives?: [id], tenant?}`
//!   → `{"deliveries_canceled": n, "directives_canceled": m}`; ids are
//!   required, so an empty body cancels nothing rather than everything.
//!
//! Every action goes through the library's operator methods
//! ([`crate::operations`]), like the CLI's.
//! - `POST /v1/admin/tenants` `{id, settings?}` → 201 and the tenant;
//!   `GET /v1/admin/tenants` → `{"tenants": […]}`.
//! - `PUT /v1/admin/tenants/{id}/settings` with the settings object as body.
//! - `PUT /v1/admin/tenants/{id}/weight` `{weight}`: its share of the
//!   workers beside other tenants with work (1 to 10000).
//! - `PUT /v1/admin/tenants/{id}/limits` `{max_running?, max_pending?,
//!   max_emit_per_s?}`: replaces its limits; a field left out is no limit.
//! - `PUT` / `DELETE /v1/admin/tenants/{id}/packages/{package}`: install,
//!   uninstall.
//! - `GET /v1/admin/status`: what `sighost status --json` shows: queue depth
//!   by state, per handler and per tenant (with its recent worker time), and
//!   the recent failures; and, from this process, how often each tenant's
//!   emits were refused by its caps (`refusals`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::ApiError;
use super::{ApiState, blocking};
use crate::store::{DeliveryFilter, DeliveryState, DirectiveFilter, SignalFilter, Tenant};

/// A JSON body; an empty body reads as `{}`.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body?;
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("the body is malformed: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default)]
    ids: Vec<String>,
    tenant: Option<String>,
    name: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    handler: Option<String>,
}

/// `POST /v1/admin/replay`.
pub async fn replay(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: ReplayBody = json_body(body)?;
    let filter = SignalFilter {
        tenant: body.tenant,
        ids: body.ids,
        name: body.name,
        since: body.since,
        until: body.until,
        limit: None,
    };
    if filter == SignalFilter::default() {
        return Err(ApiError::bad_request(
            "give ids, tenant, name, since or until: the API does not replay every signal at once",
        ));
    }
    let host = state.host.clone();
    let handler = body.handler;
    // Never empty here, so never a bulk replay to confirm.
    let created =
        blocking(move || Ok(host.replay(&filter, handler.as_deref(), false, |_, _| {})?)).await?;
    tracing::info!(deliveries = created, "replay requested over HTTP");
    Ok(Json(json!({ "deliveries_created": created })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    #[serde(default)]
    ids: Vec<i64>,
    tenant: Option<String>,
    handler: Option<String>,
    /// Needed for a filter without ids.
    #[serde(default)]
    confirm: bool,
}

/// `POST /v1/admin/retry`.
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: RetryBody = json_body(body)?;
    let filter = DeliveryFilter {
        ids: body.ids,
        tenant: body.tenant,
        handler: body.handler,
        state: Some(DeliveryState::Discarded),
        ..DeliveryFilter::default()
    };
    let host = state.host.clone();
    let confirmed = body.confirm;
    let retried = blocking(move || Ok(host.retry_deliveries(&filter, confirmed)?)).await?;
    tracing::info!(deliveries = retried, "retry requested over HTTP");
    Ok(Json(json!({ "retried": retried })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    deliveries: Vec<i64>,
    #[serde(default)]
    directives: Vec<String>,
    tenant: Option<String>,
}

/// `POST /v1/admin/cancel`.
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: CancelBody = json_body(body)?;
    if body.deliveries.is_empty() && body.directives.is_empty() {
        return Err(ApiError::bad_request(
            "give `deliveries` or `directives`: lists of the ids to cancel",
        ));
    }
    let host = state.host.clone();
    let (deliveries, directives) = blocking(move || {
        // An empty id list would mean "no filter": skip it instead.
        let deliveries = if body.deliveries.is_empty() {
            0
        } else {
            let filter = DeliveryFilter {
                ids: body.deliveries,
                tenant: body.tenant.clone(),
                ..DeliveryFilter::default()
            };
            host.cancel_deliveries(&filter, false)?
        };
        let directives = if body.directives.is_empty() {
            0
        } else {
            let filter = DirectiveFilter {
                ids: body.directives,
                tenant: body.tenant,
                ..DirectiveFilter::default()
            };
            host.cancel_directives(&filter, false)?
        };
        Ok((deliveries, directives))
    })
    .await?;
    tracing::info!(deliveries, directives, "cancel requested over HTTP");
    Ok(Json(json!({
        "deliveries_canceled": deliveries,
        "directives_canceled": directives,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenantBody {
    id: String,
    #[serde(default = "empty_object")]
    settings: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// `POST /v1/admin/tenants`.
pub async fn create_tenant(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let body: NewTenantBody = json_body(body)?;
    let host = state.host.clone();
    let tenant = blocking(move || Ok(host.create_tenant(&body.id, body.settings)?)).await?;
    tracing::info!(tenant = %tenant.id, "tenant created over HTTP");
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// `GET /v1/admin/status`.
pub async fn status(State(state): State<Arc<ApiState>>, _: Admin) -> Result<Json<Value>, ApiError> {
    let host = state.host.clone();
    let stats = blocking(move || Ok(host.store().stats()?)).await?;
    let mut body = serde_json::to_value(stats).map_err(ApiError::internal)?;
    if let Some(body) = body.as_object_mut() {
        let refusals = state.host.emitter().refusals();
        body.insert("refusals".into(), json!(refusals));
    }
    Ok(Json(body))
}

/// `GET /v1/admin/tenants`.
pub async fn tenants(
    State(state): State<Arc<ApiState>>,
    _: Admin,
) -> Result<Json<Value>, ApiError> {
    let host = state.host.clone();
    let tenants = blocking(move || Ok(host.tenants()?)).await?;
    Ok(Json(json!({ "tenants": tenants })))
}

/// `PUT /v1/admin/tenants/{id}/settings`.
pub async fn set_settings(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Tenant>, ApiError> {
    let Path(id) = id?;
    let settings: Value = json_body(body)?;
    let host = state.host.clone();
    let tenant = blocking(move || Ok(host.set_tenant_settings(&id, settings)?)).await?;
    tracing::info!(tenant = %tenant.id, "tenant settings replaced over HTTP");
    Ok(Json(tenant))
}

/// `PUT /v1/admin/tenants/{id}/weight`.
pub async fn set_weight(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Tenant>, ApiError> {
    let Path(id) = id?;
    let body: WeightBody = json_body(body)?;
    let host = state.host.clone();
    let tenant = blocking(move || Ok(host.set_tenant_weight(&id, body.weight)?)).await?;
    tracing::info!(tenant = %tenant.id, weight = tenant.weight, "tenant weight set over HTTP");
    Ok(Json(tenant))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u32,
}

/// `PUT /v1/admin/tenants/{id}/limits`.
pub async fn set_limits(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Tenant>, ApiError> {
    let Path(id) = id?;
    let limits: crate::store::TenantLimits = json_body(body)?;
    let host = state.host.clone();
    let tenant = blocking(move || Ok(host.set_tenant_limits(&id, limits)?)).await?;
    tracing::info!(tenant = %tenant.id, limits = ?tenant.limits, "tenant limits set over HTTP");
    Ok(Json(tenant))
}

/// `PUT /v1/admin/tenants/{id}/packages/{package}`.
pub async fn install(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Tenant>, ApiError> {
    let Path((id, package)) = path?;
    let host = state.host.clone();
    let tenant = blocking(move || Ok(host.install_package(&id, &package)?)).await?;
    tracing::info!(tenant = %tenant.id, "package installed over HTTP");
    Ok(Json(tenant))
}

/// `DELETE /v1/admin/tenants/{id}/packages/{package}`.
pub async fn uninstall(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Tenant>, ApiError> {
    let Path((id, package)) = path?;
    let host = state.host.clone();
    let tenant = blocking(move || Ok(host.uninstall_package(&id, &package)?)).await?;
    tracing::info!(tenant = %tenant.id, "package uninstalled over HTTP");
    Ok(Json(tenant))
}
