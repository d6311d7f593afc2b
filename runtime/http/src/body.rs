//! Request bodies: read within a size and a pause, gzip decoded.

use crate::AppState;
use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::io::Read;
use std::sync::Arc;

/// Reads an authenticated request's body off the wire before its handler runs: at
/// most [`AppState::max_request_bytes`] (413 beyond; the handler checks it again after
/// decoding), with no pause longer than [`AppState::body_timeout`] between two pieces
/// (408), and within [`AppState::body_memory`], which all requests' bodies share until
/// they are answered (503 with `Retry-After` when it stays taken).
pub async fn read_within(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, mut body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0)
        .min(state.max_request_bytes.saturating_add(1));
    // What the body will take, asked for at once when it is declared; it may wait its
    // turn as long as a pause in a body may last.
    let wanted = kib(declared);
    let taken = tokio::time::timeout(
        state.body_timeout,
        Arc::clone(&state.body_memory).acquire_many_owned(wanted),
    )
    .await;
    let Ok(Ok(mut held)) = taken else {
        return ApiError::Unavailable(
            "the server is reading as many request bodies as its memory allows; retry shortly"
                .into(),
        )
        .into_response();
    };
    let mut bytes = Vec::new();
    loop {
        if bytes.len() > state.max_request_bytes {
            return ApiError::TooLarge(state.max_request_bytes).into_response();
        }
        match tokio::time::timeout(state.body_timeout, body.frame()).await {
            Err(_) => {
                return ApiError::Timeout(format!(
                    "the request body paused for more than {}",
                    humantime::format_duration(state.body_timeout)
                ))
                .into_response();
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return ApiError::BadRequest(e.to_string()).into_response(),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                    // More than declared (or nothing declared): taken as it comes.
                    let more = kib(bytes.len()).saturating_sub(held.num_permits() as u32);
                    if more > 0 {
                        match Arc::clone(&state.body_memory).try_acquire_many_owned(more) {
                            Ok(extra) => held.merge(extra),
                            Err(_) => {
                                return ApiError::Unavailable(
                                    "the server is reading as many request bodies as its \
                                     memory allows; retry shortly"
                                        .into(),
                                )
                                .into_response();
                            }
                        }
                    }
                }
            }
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // Held until the body's handler has answered: parsing it takes memory too.
    drop(held);
    response
}

/// `bytes` in whole KiB, the unit of [`AppState::body_memory`].
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The body, decompressed when `Content-Encoding: gzip`, refused when larger than
/// `limit` bytes (before or after decompression) or in another encoding.
pub fn read(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
    if body.len() > limit {
        return Err(ApiError::TooLarge(limit));
    }
    let encoding = headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut decoded = Vec::new();
            // Every member: `gzip` and many clients write a body as several.
            let mut reader = flate2::read::MultiGzDecoder::new(&body[..]).take(limit as u64 + 1);
            reader
                .read_to_end(&mut decoded)
                .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
            if decoded.len() > limit {
                return Err(ApiError::TooLarge(limit));
            }
            Ok(decoded)
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content encoding `{other}`"
        ))),
    }
}

/// The body as UTF-8 text.
pub fn text(bytes: Vec<u8>) -> Result<String, ApiError> {
    String::from_utf8(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}
