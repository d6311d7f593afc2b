//! Authentication: which token a request carries and what it may do.
//!
//! [`authenticate`] runs before every handler. It reads the token from
//! `Authorization: Bearer <token>` (or `Token <token>`, or the password of Basic auth,
//! or the v1 `p=` parameter of `/write` and `/query`), asks the catalog what the token
//! allows, refuses administration paths to anything but the admin token, and leaves the
//! [`Access`] in the request for handlers that check a database (writes, queries, and
//! the management of a database's triggers, which a token with `manage` on it may do).
//! With authentication off every request gets [`Access::Admin`].

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sluice_catalog::Access;
use std::collections::HashMap;

/// Whether requests need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// Every request but the public ones needs a token.
    Required,
    /// No request needs one (`--without-auth`).
    Disabled,
}

/// Paths anyone may call: health checks, and creating the first admin token.
pub(crate) fn is_public(method: &Method, path: &str) -> bool {
    matches!(path, "/health" | "/api/v1/health" | "/ping")
        || (method == Method::POST && path == "/api/v3/configure/token/admin")
        || method == Method::OPTIONS
}

/// Marks a request to a public request trigger that carries no valid token: the handler
/// answers it only while the trigger is public (401 otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Anonymous;

/// Whether `path` is that of a public request trigger (`/api/v3/engine/<path>`).
fn serves_public_trigger(state: &AppState, path: &str) -> bool {
    let (Some(engine), Some(path)) = (&state.engine, path.strip_prefix("/api/v3/engine/")) else {
        return false;
    };
    engine
        .requests
        .callers_of(path)
        .is_some_and(|callers| callers.public)
}

/// Paths only the admin token may call: databases, tables, tokens. Not a database's
/// triggers, their test runs, its plugin files and packages: their handlers ask for
/// `manage` on the database named. (`/metrics`, which names every tenant's triggers,
/// needs the admin token or `system:metrics:read`.)
fn needs_admin(path: &str) -> bool {
    let managed = path.starts_with("/api/v3/configure/processing_engine_trigger")
        || path.starts_with("/api/v3/configure/plugin_environment/")
        || path.starts_with("/api/v3/plugin_test/")
        || path.starts_with("/api/v3/plugins/");
    !managed && path.starts_with("/api/v3/configure/")
}

/// The token of a request, if it carries one.
fn token(headers: &HeaderMap, request: &Request) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        // A header that is not text is no token: 401, not a server error.
        let value = value.to_str().ok()?;
        let (scheme, credentials) = value.split_once(' ')?;
        let credentials = credentials.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" => Some(credentials.to_string()),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credentials)
                    .ok()?;
                let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
                Some(password.to_string())
            }
            _ => None,
        };
    }
    if matches!(request.uri().path(), "/write" | "/query") {
        let Query(params) = Query::<HashMap<String, String>>::try_from_uri(request.uri()).ok()?;
        return params.get("p").cloned();
    }
    None
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The middleware: 401 without a valid token, 403 for administration without the admin
/// token; otherwise the handler runs with the request's [`Access`].
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = match state.authentication {
        Authentication::Disabled => Access::Admin,
        Authentication::Required => {
            let found = token(request.headers(), &request)
                .and_then(|t| state.storage.catalog().authenticate(&t, now_ms()));
            match found {
                Some(access) => access,
                None if is_public(request.method(), request.uri().path()) => {
                    Access::Scoped(Vec::new())
                }
                // Decided before the body is read: only a public trigger's callers go on.
                None if serves_public_trigger(&state, request.uri().path()) => {
                    request.extensions_mut().insert(Anonymous);
                    Access::Scoped(Vec::new())
                }
                None => return ApiError::Unauthenticated.into_response(),
            }
        }
    };
    if needs_admin(request.uri().path())
        && !access.is_admin()
        && !is_public(request.method(), request.uri().path())
    {
        return ApiError::Forbidden("this request needs the admin token".into()).into_response();
    }
    if request.uri().path() == "/metrics" && !access.can_read_metrics() {
        return ApiError::Forbidden(
            "the metrics need the admin token or a token with system:metrics:read".into(),
        )
        .into_response();
    }
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// 403 unless `access` may write to `database`.
pub fn require_write(access: &Access, database: &str) -> Result<(), ApiError> {
    if access.can_write(database) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the token may not write to database `{database}`"
        )))
    }
}

/// 403 unless `access` is the admin's; `what` names what needs it.
pub fn require_admin(access: &Access, what: &str) -> Result<(), ApiError> {
    if access.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("{what} needs the admin token")))
    }
}

/// 403 unless `access` may manage the triggers of `database`.
pub fn require_manage(access: &Access, database: &str) -> Result<(), ApiError> {
    if access.can_manage(database) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the token may not manage database `{database}`: that needs the admin token or \
             the manage permission on it"
        )))
    }
}

/// 403 unless `access` may query `database`.
pub fn require_read(access: &Access, database: &str) -> Result<(), ApiError> {
    if access.can_read(database) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the token may not query database `{database}`: that needs the read \
             permission on it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(uri: &str, authorization: Option<&str>) -> Request {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(Body::empty()).expect("a request")
    }

    fn token_of(uri: &str, authorization: Option<&str>) -> Option<String> {
        let request = request(uri, authorization);
        token(request.headers(), &request)
    }

    #[test]
    fn tokens_are_read_from_every_place_clients_put_them() {
        assert_eq!(
            token_of("/api/v3/query_sql", Some("Bearer abc")),
            Some("abc".into())
        );
        assert_eq!(
            token_of("/api/v3/query_sql", Some("Token abc")),
            Some("abc".into())
        );
        assert_eq!(
            token_of("/api/v3/query_sql", Some("bearer  abc ")),
            Some("abc".into())
        );
        // Basic auth: user `any`, password `abc`.
        assert_eq!(
            token_of("/write", Some("Basic YW55OmFiYw==")),
            Some("abc".into())
        );
        assert_eq!(token_of("/write?db=x&p=abc", None), Some("abc".into()));
        assert_eq!(
            token_of("/api/v3/write_lp?db=x&p=abc", None),
            None,
            "p= is for the v1 API only"
        );
        assert_eq!(token_of("/api/v3/query_sql", Some("Digest abc")), None);
        assert_eq!(token_of("/api/v3/query_sql", Some("Basic !!!")), None);
        assert_eq!(token_of("/api/v3/query_sql", None), None);
    }

    #[test]
    fn public_and_admin_paths() {
        assert!(is_public(&Method::GET, "/health") && is_public(&Method::POST, "/ping"));
        assert!(is_public(&Method::POST, "/api/v3/configure/token/admin"));
        assert!(!is_public(
            &Method::POST,
            "/api/v3/configure/token/admin/regenerate"
        ));
        assert!(!is_public(&Method::GET, "/api/v3/query_sql"));
        assert!(needs_admin("/api/v3/configure/database") && !needs_admin("/api/v3/plugins/files"));
        assert!(!is_public(&Method::GET, "/metrics"));
        assert!(!needs_admin("/api/v3/write_lp") && !needs_admin("/api/v3/engine/hook"));
        // A database's triggers: the handlers ask for manage on it.
        assert!(!needs_admin(
            "/api/v3/configure/processing_engine_trigger/enable"
        ));
        assert!(!needs_admin("/api/v3/plugin_test/wal"));
        assert!(needs_admin("/api/v3/configure/token"));
        assert!(!needs_admin(
            "/api/v3/configure/plugin_environment/install_packages"
        ));
    }
}
