//! The HTTP API that `sighost run` serves (axum, on the tokio runtime `run`
//! starts). The store is synchronous, so every call into it goes through
//! `tokio::task::spawn_blocking` (`blocking`).
//!
//! # Endpoints
//!
//! Tenant endpoints take a tenant's token (`Authorization: Bearer …`) and act
//! for that tenant only; a request that names a tenant is refused:
//!
//! - `POST /v1/signals`: emit one signal or a batch. `Content-Type:
//!   application/json` takes sighost's form `{name, payload?, metadata?,
//!   dedupe_key?, occurred_at?, correlation_id?, causation_id?, actor?,
//!   subject?, source?}` (`payload` defaults to `{}`, `source` to `"http"`),
//!   or an array of them; CloudEvents come structured, batched or in binary
//!   mode (see [`cloudevents`]). One signal: `201` with `{status: "created",
//!   signal, deliveries}`, or `200` with `status: "existing"` when the
//!   dedupe key was used before; single emits that arrive together are
//!   committed together ([`group`]). A batch: `200` with `results`, or `422`
//!   with `errors` by index and nothing stored.
//! - `GET /v1/signals?name=&since=&until=&limit=`, `GET /v1/signals/{id}`
//! - `GET /v1/deliveries?state=&handler=&signal_id=&limit=`,
//!   `GET /v1/deliveries/{id}` (with its attempts)
//! - `GET /v1/directives?state=&name=&signal_id=&limit=`,
//!   `GET /v1/directives/{id}`
//!
//! Operator endpoints take the admin token ([`admin`]): replay, retry,
//! cancel, status, and tenants (create, list, settings, weight, limits,
//! packages).
//!
//! Open endpoints, for monitoring on the listen address: `GET /metrics`
//! (Prometheus text), `GET /healthz` (the process answers), `GET /readyz`
//! (the store answers).
//!
//! # Errors
//!
//! Every refusal is a 4xx (a host fault a 5xx) with a JSON body
//! `{"error": "…"}` ([`error::ApiError`]), and a refused emit stores
//! nothing. Bodies over the signal payload limit plus 16 KiB are refused
//! with 413 before they are parsed, except a tenant's emit, which may carry
//! a batch's `max_batch_bytes` ([`HttpLimits`]).
//!
//! # Slow clients
//!
//! The server runs its own accept loop on hyper (axum's `serve` sets no
//! timers), with [`HttpLimits`]: a connection must send each request's
//! headers within the header timeout, which also bounds how long it may sit
//! idle between requests; a body must arrive within the body timeout (else
//! 408); at most `max_connections` are served at once and the rest wait in
//! the listen backlog. So a client that dribbles headers, or opens
//! connections and sends nothing, holds a file descriptor for seconds, not
//! forever, and normal clients are served beside it.
//!
//! # Logs
//!
//! One event per request: method, path, status and duration. Bodies, query
//! strings and headers (tokens) are never logged.

pub mod admin;
pub mod auth;
pub mod cloudevents;
pub mod error;
pub mod group;
pub mod metrics;
pub mod tenant;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

pub use auth::{Role, Tokens};
pub use error::ApiError;

use crate::Sighost;

/// Room for the rest of a signal body around the largest payload.
const BODY_OVERHEAD_BYTES: usize = 16 << 10;

/// An oversized body up to this size is read and dropped before its 413 (see
/// `refuse_oversized`); a larger one is refused without reading it.
const REFUSED_BODY_DRAIN_BYTES: usize = 1 << 20;

/// The message for requests that name a tenant.
const TENANT_FROM_TOKEN: &str =
    "the tenant comes from the bearer token; a request cannot name one (remove `tenant`)";

/// How long clients may take, and how many may be served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// To send a request's headers; also the longest idle time between
    /// requests on a kept-alive connection (hyper's header timer runs from
    /// the moment it waits for the next request).
    pub header_timeout: Duration,
    /// To send a request's body, once its headers arrived.
    pub body_timeout: Duration,
    /// Connections served at once; the others wait to be accepted.
    pub max_connections: usize,
    /// Signals in one batch (`POST /v1/signals` with a JSON array, or a
    /// CloudEvents batch).
    pub max_batch_signals: usize,
    /// The body of a batch, in bytes; other requests keep the bound of one
    /// signal's payload.
    pub max_batch_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_batch_signals: 1000,
            max_batch_bytes: 4 << 20,
        }
    }
}

/// What every request handler can reach.
#[derive(Debug)]
pub struct ApiState {
    /// Emit, replay, and the store behind them.
    host: Arc<Sighost>,
    tokens: Tokens,
    /// Single-signal emits, written together when they arrive together;
    /// `None` if its thread could not start (each emit is then written on
    /// its own).
    group: Option<group::GroupCommit>,
}

/// The API of one host: build it, then [`Api::serve`] it.
#[derive(Debug, Clone)]
pub struct Api {
    state: Arc<ApiState>,
    body_limit: usize,
    limits: HttpLimits,
}

impl Api {
    pub fn new(host: Arc<Sighost>, tokens: Tokens) -> Self {
        let body_limit = host.sandbox().config().limits.signal_payload_bytes + BODY_OVERHEAD_BYTES;
        Self {
            state: Arc::new(ApiState {
                group: group::GroupCommit::start(host.clone())
                    .inspect_err(|error| {
                        tracing::warn!(%error, "no group commit: each HTTP emit is its own transaction")
                    })
                    .ok(),
                host,
                tokens,
            }),
            body_limit,
            limits: HttpLimits::default(),
        }
    }

    /// The same API with other timeouts and connection cap.
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            one: self.body_limit,
            batch: self.limits.max_batch_bytes.max(self.body_limit),
            state: self.state.clone(),
        }
    }

    /// Every route, with the body limit and the request log.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/v1/signals",
                post({
                    let max_batch = self.limits.max_batch_signals;
                    move |state, tenant, headers, body| {
                        tenant::emit(state, tenant, headers, body, max_batch)
                    }
                })
                .get(tenant::signals),
            )
            .route("/v1/signals/{id}", get(tenant::signal))
            .route("/v1/deliveries", get(tenant::deliveries))
            .route("/v1/deliveries/{id}", get(tenant::delivery))
            .route("/v1/directives", get(tenant::directives))
            .route("/v1/directives/{id}", get(tenant::directive))
            .route("/v1/admin/replay", post(admin::replay))
            .route("/v1/admin/retry", post(admin::retry))
            .route("/v1/admin/cancel", post(admin::cancel))
            .route("/v1/admin/status", get(admin::status))
            .route(
                "/v1/admin/tenants",
                post(admin::create_tenant).get(admin::tenants),
            )
            .route("/v1/admin/tenants/{id}/settings", put(admin::set_settings))
            .route("/v1/admin/tenants/{id}/weight", put(admin::set_weight))
            .route("/v1/admin/tenants/{id}/limits", put(admin::set_limits))
            .route(
                "/v1/admin/tenants/{id}/packages/{package}",
                put(admin::install).delete(admin::uninstall),
            )
            .route("/metrics", get(metrics::metrics))
            .route("/healthz", get(metrics::healthz))
            .route("/readyz", get(metrics::readyz))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.body_limits().batch))
            .layer(middleware::from_fn_with_state(
                (self.body_limits(), self.limits.body_timeout),
                read_body_in_time,
            ))
            .layer(middleware::from_fn_with_state(
                self.body_limits(),
                refuse_oversized,
            ))
            .layer(middleware::from_fn_with_state(
                self.state.clone(),
                log_request,
            ))
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// requests in progress (connections idle or mid-headers are closed).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::server::graceful::GracefulShutdown;
        use hyper_util::service::TowerToHyperService;

        let router = self.router();
        let limits = self.limits;
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        let connections = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // At the cap, stop accepting: new connections wait in the backlog.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot,
                () = &mut shutdown => break,
            };
            let Ok(slot) = slot else { break };
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!(%error, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(
                    TokioIo::new(stream),
                    TowerToHyperService::new(router.clone()),
                );
            let connection = connections.watch(connection);
            tokio::spawn(async move {
                // An error here is the client's (a reset, a timeout): nothing to log.
                let _ = connection.await;
                drop(slot);
            });
        }
        connections.shutdown().await;
        Ok(())
    }
}

/// How large a request body may be: a batch of signals, or anything else.
#[derive(Debug, Clone)]
struct BodyLimits {
    one: usize,
    batch: usize,
    /// For the tokens: only a tenant's emit may send a batch's bytes, so
    /// that a client without a token makes the host hold no more than one
    /// signal's body per connection.
    state: Arc<ApiState>,
}

impl BodyLimits {
    /// A tenant's emit may carry a batch; every other request, one signal's
    /// body at most.
    fn of(&self, request: &Request) -> usize {
        let emit =
            request.method() == axum::http::Method::POST && request.uri().path() == "/v1/signals";
        if emit && self.state.tokens.is_tenant(request.headers()) {
            self.batch
        } else {
            self.one
        }
    }
}

/// Reads the request's body within the body timeout (408 if it is late), so
/// a client that sends its headers and then dribbles the body is cut off.
/// Bodies are bounded (see [`BodyLimits`]), so the handlers get them whole.
async fn read_body_in_time(
    State((limits, timeout)): State<(BodyLimits, Duration)>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.of(&request);
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        // A body without a declared length, cut off by the limit as it came.
        Ok(Err(error)) if error.to_string().contains("length limit exceeded") => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over the limit of {limit} bytes"),
            )
            .into_response();
        }
        Ok(Err(error)) => {
            return ApiError::bad_request(format!("the request body could not be read: {error}"))
                .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Runs `f` on the blocking pool: the store and the host are synchronous.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// Counts and logs every request. Only the path is logged: query strings
/// may carry filters a tenant considers private, and bodies carry payloads.
async fn log_request(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route's pattern, not the path: a path holds ids, a series each.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |matched| matched.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    state
        .host
        .metrics()
        .http_request(method.as_str(), &route, status.as_u16(), started.elapsed());
    // Microsecond precision is plenty, and keeps the field short.
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), elapsed_ms, "http request");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), elapsed_ms, "http request");
    }
    response
}

/// Refuses a body whose declared length is over the limit before any
/// handler parses it. Bodies without a declared length are cut off by the
/// limit as they stream in (`read_body_in_time`).
async fn refuse_oversized(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.of(&request);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&length| length > limit as u64) {
        // A body up to a bound is read and dropped before the answer, so the
        // connection can carry the client's next request. Left unread, it
        // makes the server close the connection after the 413, and a client
        // that reuses it at that moment gets no answer at all.
        // A client waiting for `100 Continue` has sent nothing: answer at once.
        let waits_for_continue = request.headers().contains_key(header::EXPECT);
        if length <= REFUSED_BODY_DRAIN_BYTES as u64 && !waits_for_continue {
            let _ = axum::body::to_bytes(request.into_body(), REFUSED_BODY_DRAIN_BYTES).await;
        }
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {length} bytes, over the limit of {limit}"),
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see the API reference in the README")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
}
