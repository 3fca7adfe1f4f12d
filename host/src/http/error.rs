//! How the API answers a refusal: a 4xx or 5xx status with a JSON body
//! `{"error": "…"}` that says what was wrong and, where it helps, what to do.
//!
//! Store and host faults (5xx) are logged here with their cause and answered
//! with a generic message: their text may describe the database, which is no
//! business of a tenant.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::HostError;
use crate::emit::EmitError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
    /// What was wrong with each item of a batch, as `errors`.
    pub errors: Vec<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            errors: Vec::new(),
        }
    }

    /// The same answer, listing what was wrong with each item of a batch.
    pub fn with_errors(mut self, errors: Vec<serde_json::Value>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A fault of the host, not of the request: logged, and answered without
    /// its details.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "HTTP request failed inside the host");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the host failed to answer; the cause is in its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if !self.errors.is_empty() {
            body["errors"] = serde_json::Value::Array(self.errors);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::UnknownTenant(_) | StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::TenantExists(_) => StatusCode::CONFLICT,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Database(_) => return Self::internal(error),
        };
        Self::new(status, error.to_string())
    }
}

impl From<EmitError> for ApiError {
    fn from(error: EmitError) -> Self {
        let status = match error {
            EmitError::Store(error) => return error.into(),
            // 429 either way: the tenant sends too much, too fast or in all.
            EmitError::Refused(ref refusal) => {
                let retry_after = match refusal {
                    crate::tenant_limits::Refusal::RateLimited { retry_after, .. } => {
                        Some(*retry_after)
                    }
                    crate::tenant_limits::Refusal::OverQuota { .. } => None,
                };
                return Self {
                    retry_after,
                    ..Self::new(StatusCode::TOO_MANY_REQUESTS, error.to_string())
                };
            }
            EmitError::Invalid(_) => StatusCode::BAD_REQUEST,
            EmitError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EmitError::SecretDetected { .. } | EmitError::DepthExceeded { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        Self::new(status, error.to_string())
    }
}

impl From<HostError> for ApiError {
    fn from(error: HostError) -> Self {
        match error {
            HostError::Store(error) => error.into(),
            HostError::Emit(error) => error.into(),
            HostError::UnknownHandler(_) | HostError::UnknownSignal(_) => {
                Self::not_found(error.to_string())
            }
            HostError::Unconfirmed { action, matched } => Self::bad_request(format!(
                "{action}: the filter names no ids and matches {matched}; \
                 send \"confirm\": true to act on all of them"
            )),
            HostError::Sandbox(_) | HostError::Io(_) => Self::internal(error),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is over the size limit",
            );
        }
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}
