//! Request bodies: size-limited, gzip decoded.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::http::HeaderMap;
use std::io::Read;

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
