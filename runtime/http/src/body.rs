//! Request bodies: read within a size and a pause, gzip decoded.

use crate::AppState;
use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::io::Read;
use std::sync::Arc;

/// The largest body of a request that needs no token (creating the first admin token,
/// health checks, a public request trigger called without one): anyone may send it.
const MAX_PUBLIC_BODY_BYTES: usize = 64 << 10;

/// Reads a request's body off the wire before its handler runs, and decodes it when
/// gzip: at most [`AppState::max_request_bytes`] before and after decoding (413 beyond;
/// 64 KiB for a request that needs no token), with no pause longer than
/// [`AppState::body_timeout`] between two pieces (408), and within
/// [`AppState::body_memory`], which all requests' bodies, decoded ones included, share
/// until they are answered: taken as the bytes come, 503 with `Retry-After` when it is
/// all taken. The handler gets the decoded body.
pub async fn read_within(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, mut body) = request.into_parts();
    let anonymous = parts.extensions.get::<crate::auth::Anonymous>().is_some();
    let limit = if anonymous || crate::auth::is_public(&parts.method, parts.uri.path()) {
        MAX_PUBLIC_BODY_BYTES.min(state.max_request_bytes)
    } else {
        state.max_request_bytes
    };
    let mut held = Held::new(Arc::clone(&state.body_memory));
    let mut bytes = Vec::new();
    loop {
        if bytes.len() > limit {
            return ApiError::TooLarge(limit).into_response();
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
                    if let Err(busy) = held.grow_to(bytes.len() + data.len()) {
                        return busy.into_response();
                    }
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
    let encoding = parts
        .headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    let bytes = match encoding.as_deref() {
        None | Some("" | "identity") => bytes,
        Some("gzip") => match gunzip(&bytes, limit, &mut held) {
            Ok(decoded) => {
                parts.headers.remove(axum::http::header::CONTENT_ENCODING);
                parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                decoded
            }
            Err(refused) => return refused.into_response(),
        },
        Some(other) => {
            return ApiError::UnsupportedMediaType(format!(
                "unsupported content encoding `{other}`"
            ))
            .into_response();
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // Held until the body's handler has answered: parsing it takes memory too.
    drop(held);
    response
}

/// Every member of a gzip body, decoded in pieces, each counted in `held` before it is
/// kept; refused past `limit`.
fn gunzip(body: &[u8], limit: usize, held: &mut Held) -> Result<Vec<u8>, ApiError> {
    let mut reader = flate2::read::MultiGzDecoder::new(body);
    let mut decoded = Vec::new();
    let mut piece = vec![0_u8; 64 << 10];
    loop {
        let read = reader
            .read(&mut piece)
            .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
        if read == 0 {
            return Ok(decoded);
        }
        if decoded.len() + read > limit {
            return Err(ApiError::TooLarge(limit));
        }
        held.grow_to(body.len() + decoded.len() + read)?;
        decoded.extend_from_slice(&piece[..read]);
    }
}

/// The share of [`AppState::body_memory`] one request holds, in KiB permits.
struct Held {
    memory: Arc<tokio::sync::Semaphore>,
    permits: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Held {
    fn new(memory: Arc<tokio::sync::Semaphore>) -> Self {
        Self {
            memory,
            permits: None,
        }
    }

    /// Holds enough for `bytes`, or refuses with 503 when the memory is taken.
    fn grow_to(&mut self, bytes: usize) -> Result<(), ApiError> {
        let wanted = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let have = self
            .permits
            .as_ref()
            .map_or(0, |p| u32::try_from(p.num_permits()).unwrap_or(u32::MAX));
        if wanted <= have {
            return Ok(());
        }
        let more = Arc::clone(&self.memory)
            .try_acquire_many_owned(wanted - have)
            .map_err(|_| {
                ApiError::Unavailable(
                    "the server is reading as many request bodies as its memory allows; \
                     retry shortly"
                        .into(),
                )
            })?;
        match &mut self.permits {
            Some(permits) => permits.merge(more),
            None => self.permits = Some(more),
        }
        Ok(())
    }
}

/// The body as [`read_within`] handed it on (decoded), refused when larger than
/// `limit` bytes.
pub fn read(body: Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
    if body.len() > limit {
        return Err(ApiError::TooLarge(limit));
    }
    Ok(body.to_vec())
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
