//! The one error type of the HTTP edge: `{"error": {"code", "message"}}` with a fitting status.
//!
//! Internal failures are logged once here with their detail and answered with a generic
//! message: callers never see a stack trace or a SQL error.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchyard_core::CoreError;
use switchyard_hub::ExecError;
use switchyard_hub::StoreError;
use switchyard_hub::{CallError, EventRefusal, HubError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The executor run behind the failure, when there was one (a hook call).
    pub run_id: Option<String>,
    /// Seconds after which retrying makes sense (`Retry-After`), for refusals a caller can retry.
    pub retry_after_s: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            run_id: None,
            retry_after_s: None,
        }
    }

    /// 429 `code`: the caller may retry after `seconds`.
    pub fn too_many(code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        ApiError {
            retry_after_s: Some(seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// A refusal of input that arrived in a platform's own field names: the message speaks of
    /// `field` where our rule said `ours`, and a refused destination names `field` too.
    pub fn in_field(mut self, ours: &str, field: &str) -> Self {
        if self.message.contains(ours) {
            self.message = self.message.replace(ours, &format!("`{field}`"));
        } else if self.message.starts_with("destination refused") {
            self.message = format!("`{field}`: {}", self.message);
        }
        self
    }
    /// 403 `quota_exceeded`: the write would take the organization past one of its quotas.
    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "quota_exceeded", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API key (send `Authorization: Bearer <key>`)",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// On a platform's surface, a 404 names the thing as the platform calls it (an Enreach
    /// "webhook" is our subscription).
    pub fn calling_it(self, what: &str) -> Self {
        if self.status == StatusCode::NOT_FOUND {
            Self::not_found(what)
        } else {
            self
        }
    }
}

impl From<StoreError> for ApiError {
    /// A store error: 404 naming what was not found, 409 for a conflict, 503 while shutting
    /// down or with the disk full, 403 past a quota; a database failure is internal.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(&what.to_string()),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::InvalidReference(m) => Self::invalid(m),
            StoreError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            StoreError::StorageFull(m) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_full",
                format!("{m}; retry when the operator has freed space"),
            ),
            StoreError::Quota(m) => Self::quota(m),
            e @ StoreError::Database { .. } => Self::internal(e),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Store(e) => e.into(),
            HubError::RoutingUnstable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "routing_unstable",
                e.to_string(),
            ),
            HubError::Start(m) | HubError::Internal(m) => Self::internal(m),
            HubError::Invalid(e) => e.into(),
            HubError::NoRoom(m) => Self::too_many("runs_busy", m, 5),
            HubError::Quota(m) => Self::quota(m),
            HubError::RateLimited {
                message,
                retry_after_s,
            } => Self::too_many("rate_limited", message, retry_after_s),
            HubError::EventRefused {
                reason, message, ..
            } => match reason {
                EventRefusal::Invalid => Self::invalid(message),
                EventRefusal::SchemaViolation => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "schema_violation",
                    message,
                ),
                EventRefusal::SchemaInvalid => {
                    Self::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_invalid", message)
                }
            },
        }
    }
}

impl From<CallError> for ApiError {
    /// What a hook's caller sees: 404 for a missing hook, 422 for input failing its schema, 502
    /// for a failed run or output failing its schema, 504 for a timeout, 429 with
    /// `Retry-After` when the organization's share (or the hub) has no room; the run's id
    /// with it.
    fn from(e: CallError) -> Self {
        let message = e.to_string();
        let (status, code, run_id) = match e {
            CallError::NoHook(_) => (StatusCode::NOT_FOUND, "not_found", None),
            CallError::NoExecutor(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", None),
            CallError::Input(_) => (StatusCode::UNPROCESSABLE_ENTITY, "input_invalid", None),
            CallError::Failed { run_id, .. } => {
                (StatusCode::BAD_GATEWAY, "hook_failed", Some(run_id))
            }
            CallError::Timeout { run_id, .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "hook_timeout", Some(run_id))
            }
            CallError::Output { run_id, .. } => {
                (StatusCode::BAD_GATEWAY, "output_invalid", Some(run_id))
            }
            CallError::Schema(_) => (StatusCode::UNPROCESSABLE_ENTITY, "schema_invalid", None),
            CallError::Busy { run_id, .. } => {
                return ApiError {
                    run_id: run_id.map(String::from),
                    ..Self::too_many("hook_busy", message, 1)
                };
            }
            CallError::Store(e) => return e.into(),
        };
        ApiError {
            run_id: run_id.map(String::from),
            ..Self::new(status, code, message)
        }
    }
}

impl From<CoreError> for ApiError {
    /// A domain rule refused the input: 422 with the rule's message.
    fn from(e: CoreError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Store(e) => e.into(),
            ExecError::Upstream(m) => Self::new(StatusCode::BAD_GATEWAY, "upstream_failed", m),
            ExecError::Timeout(m) => Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", m),
            other => Self::invalid(other.to_string()),
        }
    }
}

/// A read of something that may not exist yet (a PUT that creates or replaces): `None` when it
/// does not.
pub fn existing<T>(read: Result<T, StoreError>) -> ApiResult<Option<T>> {
    match read {
        Ok(x) => Ok(Some(x)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::invalid(
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.body_text())
                    .to_string(),
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(format!(
                "malformed JSON: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.body_text())
            )),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large("request body is larger than this route allows")
            }
            other => ApiError::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(run_id) = self.run_id {
            body["error"]["run_id"] = run_id.into();
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        resp
    }
}

/// An id from a path, parsed into its kind (`EndpointId::parse(id)`): one of another shape
/// names nothing, so it is 404 naming `what`, before any look-up.
pub fn path_id<T>(parsed: Option<T>, what: &str) -> ApiResult<T> {
    parsed.ok_or_else(|| ApiError::not_found(what))
}

/// An endpoint id from a path.
pub fn endpoint_id(id: &str) -> ApiResult<switchyard_core::ids::EndpointId> {
    path_id(switchyard_core::ids::EndpointId::parse(id), "endpoint")
}
