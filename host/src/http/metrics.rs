//! `/metrics` (Prometheus, in the OpenMetrics text format), `/healthz` and
//! `/readyz`.
//!
//! The queue's families are read from the store at scrape time
//! ([`Store::stats`](crate::store::Store::stats)), so every host process on
//! one database reports the same queue; it reads counts the store keeps as
//! the data changes, and one index step per handler for the lag, so a
//! scrape costs the same at ten million deliveries as at a thousand:
//!
//! - `sighost_deliveries{state}`, `sighost_directives{state}`: gauges, every
//!   state listed, zero or not.
//! - `sighost_queue_lag_seconds{handler}`: how long the handler's oldest
//!   due delivery has waited (0 when none is due).
//! - `sighost_handlers_loaded`: this process's.
//! - `sighost_leases_rescued_total{queue}`: expired leases this process's
//!   claims took back.
//!
//! Then what this process measured as it worked ([`crate::metrics`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, blocking};
use crate::metrics::Labels;
use crate::store::{DeliveryState, DirectiveState, LeasesRescued, QueueStats};

/// How long `/readyz` waits for the store before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What OpenMetrics text is served as.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One gauge a state, every state listed, zero or not, so that a series
/// never vanishes.
fn by_state<S: PartialEq>(
    all: &[S],
    counts: &[(S, u64)],
    name: fn(&S) -> &'static str,
) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for state in all {
        let count = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        family
            .get_or_create(&vec![("state", name(state).to_owned())])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    family
}

/// The queue's families, as the store and this process's registry say now.
fn queue_registry(
    stats: &QueueStats,
    now: chrono::DateTime<chrono::Utc>,
    handlers_loaded: usize,
    rescued: LeasesRescued,
) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "sighost_deliveries",
        "Deliveries in the store, by state",
        by_state(&DeliveryState::ALL, &stats.deliveries, |s| s.as_str()),
    );
    registry.register(
        "sighost_directives",
        "Directives in the store, by state",
        by_state(&DirectiveState::ALL, &stats.directives, |s| s.as_str()),
    );
    let lag = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for handler in &stats.handlers {
        lag.get_or_create(&vec![("handler", handler.handler.clone())])
            .set(handler.lag(now).as_secs_f64());
    }
    registry.register(
        "sighost_queue_lag_seconds",
        "How long each handler's oldest due delivery has waited (0 when none is due)",
        lag,
    );
    let loaded = Gauge::<i64>::default();
    loaded.set(i64::try_from(handlers_loaded).unwrap_or(i64::MAX));
    registry.register(
        "sighost_handlers_loaded",
        "Handlers loaded in this process",
        loaded,
    );
    let leases = Family::<Labels, Counter>::default();
    for (queue, n) in [
        ("deliveries", rescued.deliveries),
        ("directives", rescued.directives),
    ] {
        leases
            .get_or_create(&vec![("queue", queue.to_owned())])
            .inc_by(n);
    }
    registry.register(
        "sighost_leases_rescued",
        "Expired leases this process's claims took back, by queue: work of a host that \
         stopped or stalled, run again",
        leases,
    );
    registry
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    let host = state.host.clone();
    let stats = blocking(move || Ok(host.store().stats()?)).await?;
    let host = &state.host;
    let queue = queue_registry(
        &stats,
        (host.config().clock)(),
        host.registry().all().len(),
        host.store().leases_rescued(),
    );
    let mut out = String::new();
    encode_registry(&mut out, &queue)
        .and_then(|()| host.metrics().encode(&mut out))
        .and_then(|()| encode_eof(&mut out))
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], out))
}

/// `GET /healthz`: the process is up and answering.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers a cheap query in time.
pub async fn readyz(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    // Reads may work while writes fail (a full disk): say so.
    if let Some(failing) = state.host.store_health().failing() {
        return Err(unavailable(&failing));
    }
    let host = state.host.clone();
    // Looking up one tenant by key is about the cheapest query there is.
    let probe = blocking(move || Ok(host.store().tenant("readyz-probe")?));
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(_)) => Err(unavailable("the store did not answer: see the host's log")),
        Err(_) => Err(unavailable("the store did not answer within 2 s")),
    }
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}
