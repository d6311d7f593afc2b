//! Every failure a handler can have, and the status and body it answers with.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_query::QueryError;
use sluice_storage::{LineError, WriteError};

/// A failed request.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with `{"error": message}`.
    BadRequest(String),
    /// 401: no token, or one the server does not know.
    Unauthenticated,
    /// 403 with `{"error": message}`: the token does not allow this.
    Forbidden(String),
    /// 404 with `{"error": message}`.
    NotFound(String),
    /// 409 with `{"error": message}`.
    Conflict(String),
    /// 502 with `{"error": message}`: a server this one depends on (the plugin
    /// repository) failed.
    BadGateway(String),
    /// 504 with `{"error": message}`: work that depends on another server (an install
    /// from the package index) did not end in time.
    GatewayTimeout(String),
    /// 413: the body is over `--max-http-request-size`.
    TooLarge(usize),
    /// 503 with `{"error": message}` and `Retry-After`: the server is at a bound that
    /// frees as other requests finish.
    Unavailable(String),
    /// 408 with `{"error": message}`: the client was too slow to send its request.
    Timeout(String),
    /// 415 with `{"error": message}`.
    UnsupportedMediaType(String),
    /// 429 with `{"error": message}`: the server is busy with other requests; the same
    /// request may succeed later.
    Busy(String),
    /// A write refused line by line.
    Write(WriteError),
    /// Some lines of a partial write were refused; the others were written.
    Partial(Vec<LineError>),
    /// 500 with `{"error": message}`: a request plugin failed; the message is the
    /// plugin's own.
    PluginFailed(String),
    /// 500: a fault of the server; details go to the log, not to the client.
    Internal(String),
}

/// Refused lines listed in one answer: a body of a million bad lines gets the first
/// of them and a count, not a million objects.
pub const MAX_LISTED_LINE_ERRORS: usize = 100;

fn line_errors(errors: &[LineError]) -> serde_json::Value {
    errors
        .iter()
        .take(MAX_LISTED_LINE_ERRORS)
        .map(|e| {
            let original: String = e.original_line.chars().take(20).collect();
            json!({"error_message": e.error_message, "line_number": e.line_number, "original_line": original})
        })
        .collect()
}

/// `{"error", "data"}` with the first refused lines, and how many more were refused
/// when not all are listed.
fn with_line_errors(error: &str, errors: &[LineError]) -> serde_json::Value {
    let mut body = json!({"error": error, "data": line_errors(errors)});
    if errors.len() > MAX_LISTED_LINE_ERRORS {
        body["lines_not_listed"] = json!(errors.len() - MAX_LISTED_LINE_ERRORS);
    }
    body
}

impl ApiError {
    /// The status and JSON body of this error.
    fn parts(self) -> (StatusCode, serde_json::Value) {
        match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, json!({"error": message})),
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "the request was not authenticated"}),
            ),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, json!({"error": message})),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, json!({"error": message})),
            Self::Conflict(message) => (StatusCode::CONFLICT, json!({"error": message})),
            Self::Timeout(message) => (StatusCode::REQUEST_TIMEOUT, json!({"error": message})),
            Self::Unavailable(message) => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({"error": message}))
            }
            Self::BadGateway(message) => (StatusCode::BAD_GATEWAY, json!({"error": message})),
            Self::GatewayTimeout(message) => {
                (StatusCode::GATEWAY_TIMEOUT, json!({"error": message}))
            }
            Self::PluginFailed(message) => {
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": message}))
            }
            Self::Busy(message) => (StatusCode::TOO_MANY_REQUESTS, json!({"error": message})),
            Self::UnsupportedMediaType(message) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": message}),
            ),
            Self::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("the request body is larger than the limit of {limit} bytes")}),
            ),
            Self::Partial(errors) => (
                StatusCode::BAD_REQUEST,
                with_line_errors("partial write of line protocol occurred", &errors),
            ),
            Self::Write(WriteError::Rejected(errors)) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "line protocol parsing error", "data": line_errors(&errors).get(0).cloned()}),
            ),
            Self::Write(WriteError::Empty(errors)) => (
                StatusCode::BAD_REQUEST,
                with_line_errors("incoming write was empty", &errors),
            ),
            Self::Write(WriteError::DatabaseNotFound(name)) => (
                StatusCode::NOT_FOUND,
                json!({"error": format!("database not found: {name}")}),
            ),
            Self::Write(WriteError::Busy(message)) => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({"error": message}))
            }
            Self::Write(WriteError::TooLarge(message)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, json!({"error": message}))
            }
            Self::Write(WriteError::InvalidDatabaseName(message)) => {
                (StatusCode::BAD_REQUEST, json!({"error": message}))
            }
            Self::Write(WriteError::Durability(message)) | Self::Internal(message) => {
                tracing::error!("internal error: {message}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal error; see the server log"}),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let challenge = matches!(self, Self::Unauthenticated);
        let (status, body) = self.parts();
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// An error of the v2 write API, answered as `{"code", "message"}` like InfluxDB 2.
#[derive(Debug)]
pub struct V2Error(pub ApiError);

impl From<ApiError> for V2Error {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let (status, body) = self.0.parts();
        let code = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not found",
            StatusCode::PAYLOAD_TOO_LARGE => "request too large",
            StatusCode::TOO_MANY_REQUESTS => "too many requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            status if status.is_server_error() => "internal error",
            _ => "invalid",
        };
        let mut message = body["error"].as_str().unwrap_or_default().to_string();
        if let Some(data) = body.get("data").filter(|d| !d.is_null()) {
            message = format!("{message}: {data}");
        }
        (status, Json(json!({"code": code, "message": message}))).into_response()
    }
}

/// Answers whose body is plain text (the framework's own: a body over the size limit
/// before decoding, a malformed request) get the API's JSON shape, `{"error": text}`,
/// with their status; except a request plugin's answers, which are the plugin's.
pub async fn json_error_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/api/v3/engine/") {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    let status = response.status();
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // The framework's messages are a line; anything longer is cut.
    let text = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    (status, Json(json!({"error": text}))).into_response()
}

/// The query-string parameter `name`, or 400 `missing query parameter '<name>'`.
pub fn required<'a>(
    params: &'a std::collections::HashMap<String, String>,
    name: &str,
) -> Result<&'a String, ApiError> {
    params
        .get(name)
        .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter '{name}'")))
}

/// A failure of the server's own files: not the client's doing.
impl From<std::io::Error> for ApiError {
    fn from(error: std::io::Error) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::DatabaseNotFound(_) => Self::NotFound(error.to_string()),
            QueryError::Forbidden(message) => Self::Forbidden(message),
            QueryError::NotAllowed(_) => Self::BadRequest(error.to_string()),
            QueryError::Plan(message)
            | QueryError::Execution(message)
            | QueryError::Limit(message) => Self::BadRequest(message),
            QueryError::Busy(message) => Self::Busy(message),
            // Logged where it happened, with what the client must not see.
            QueryError::Internal => Self::Internal("a query failed".into()),
        }
    }
}
