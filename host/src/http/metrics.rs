//! `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
//!
//! Queue gauges come from [`Store::stats`](crate::store::Store::stats) at
//! scrape time, so every host process on one database reports the same
//! queue; it reads counts the store keeps as the data changes, so a scrape
//! costs the same at ten million deliveries as at a thousand. Counters are
//! this process's own, kept in memory since start:
//!
//! - `sighost_deliveries{state}`, `sighost_directives{state}`: gauges.
//! - `sighost_handlers_loaded`: gauge.
//! - `sighost_http_signals_total{status="created"|"existing"}`: signals
//!   emitted through this process's API.
//! - `sighost_http_requests_total{code}`: requests answered, by status code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, blocking};
use crate::store::{DeliveryState, DirectiveState, EmitStatus};

/// How long `/readyz` waits for the store before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// In-process counters.
#[derive(Debug, Default)]
pub struct Metrics {
    signals_created: AtomicU64,
    signals_existing: AtomicU64,
    /// Status code → requests; a handful of codes, so a map under a lock is
    /// cheap next to a request.
    requests: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    pub fn count_signal(&self, status: EmitStatus) {
        let counter = match status {
            EmitStatus::Created => &self.signals_created,
            EmitStatus::Existing => &self.signals_existing,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_request(&self, status: StatusCode) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry(status.as_u16()).or_default() += 1;
    }

    fn requests(&self) -> BTreeMap<u16, u64> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One metric family: its help and type lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// One labelled count per state. Every state is listed, zero or not, so a
/// series never vanishes.
fn by_state<S: PartialEq>(
    all: &[S],
    counts: &[(S, u64)],
    name: fn(&S) -> &'static str,
) -> Vec<(String, u64)> {
    all.iter()
        .map(|state| {
            let count = counts
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            (format!("{{state=\"{}\"}}", name(state)), count)
        })
        .collect()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    let host = state.host.clone();
    let stats = blocking(move || Ok(host.store().stats()?)).await?;
    let mut out = String::new();
    let deliveries = by_state(&DeliveryState::ALL, &stats.deliveries, |s| s.as_str());
    family(
        &mut out,
        "sighost_deliveries",
        "gauge",
        "Deliveries in the store, by state.",
        &deliveries,
    );
    let directives = by_state(&DirectiveState::ALL, &stats.directives, |s| s.as_str());
    family(
        &mut out,
        "sighost_directives",
        "gauge",
        "Directives in the store, by state.",
        &directives,
    );
    let handlers = state.host.registry().all().len() as u64;
    family(
        &mut out,
        "sighost_handlers_loaded",
        "gauge",
        "Handlers loaded in this process.",
        &[(String::new(), handlers)],
    );
    let metrics = &state.metrics;
    family(
        &mut out,
        "sighost_http_signals_total",
        "counter",
        "Signals emitted through this process's HTTP API, by status.",
        &[
            (
                "{status=\"created\"}".into(),
                metrics.signals_created.load(Ordering::Relaxed),
            ),
            (
                "{status=\"existing\"}".into(),
                metrics.signals_existing.load(Ordering::Relaxed),
            ),
        ],
    );
    let requests: Vec<(String, u64)> = metrics
        .requests()
        .into_iter()
        .map(|(code, n)| (format!("{{code=\"{code}\"}}"), n))
        .collect();
    family(
        &mut out,
        "sighost_http_requests_total",
        "counter",
        "HTTP requests answered by this process, by status code.",
        &requests,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
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
