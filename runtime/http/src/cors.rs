//! CORS preflight: `OPTIONS` on any path answers 204 and allows every origin, method and
//! header, as upstream does, so browser clients can call the API.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Answers `OPTIONS` itself; passes every other request on.
pub async fn preflight(request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS {
        return next.run(request).await;
    }
    let allow = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "*"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
    ];
    (StatusCode::NO_CONTENT, allow).into_response()
}
