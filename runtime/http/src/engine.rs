//! `GET|POST /api/v3/engine/<path>`: the request triggers' plugins, with upstream's
//! inputs (query parameters decoded, lower-case headers without `authorization`, the
//! body decompressed) and their responses as the plugins gave them.
//!
//! A trigger answers only the admin token and tokens that may read its database or
//! invoke its triggers (a request trigger acts for its database, so calling it is
//! reading it), unless it was created public: then anyone, without a token. A request
//! without a valid token learns nothing of the triggers that are not public: 401.

use crate::AppState;
use crate::auth::Anonymous;
use crate::error::ApiError;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use sluice_catalog::Access;
use sluice_engine::invoke::TooManyInvocations;
use sluice_engine::requests::{Callers, RequestError};
use sluice_plugin_api::{HttpRequest, HttpResponse};

const PREFIX: &str = "/api/v3/engine/";

/// Runs the plugin of the request trigger serving the path.
pub async fn handle(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(query): Query<Vec<(String, String)>>,
    request: Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Parts {
        method,
        uri,
        headers,
        extensions,
        ..
    } = request;
    let anonymous = extensions.get::<Anonymous>();
    let not_found = || ApiError::NotFound("not found".into());
    let Some(engine) = &state.engine else {
        return Err(not_found());
    };
    // The path as sent, not decoded: upstream matches it byte for byte.
    let path = uri
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_string();
    // Before the plugin sees anything, and without naming the database.
    let forbidden = || {
        ApiError::Forbidden(
            "the token may not call this request trigger: it needs read or invoke permission \
             on the trigger's database"
                .into(),
        )
    };
    let may_call = |callers: &Callers| callers.public || access.can_invoke(&callers.database);
    match engine.requests.callers_of(&path) {
        Some(callers) if callers.public => {}
        _ if anonymous.is_some() => return Err(ApiError::Unauthenticated),
        None => return Err(not_found()),
        Some(callers) if !may_call(&callers) => return Err(forbidden()),
        Some(_) => {}
    }
    let body = crate::body::read(body, state.max_request_bytes)?;
    let headers = headers
        .iter()
        .filter(|(name, _)| *name != header::AUTHORIZATION)
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let request = HttpRequest {
        method: method.to_string(),
        path,
        query,
        headers,
        body,
    };
    match engine.requests.handle(request, may_call).await {
        Ok(response) => Ok(respond(response)),
        Err(RequestError::NotFound) => Err(not_found()),
        // The database is not named: the token may not learn which one it is.
        Err(RequestError::Forbidden(_)) => Err(forbidden()),
        Err(RequestError::Plugin(message)) => Err(ApiError::PluginFailed(message)),
        // The plugin never ran: the caller may try again, as Retry-After says.
        Err(RequestError::Busy(why)) => Err(ApiError::Unavailable(why)),
        // Not naming the database: a public trigger's caller may not know it.
        Err(RequestError::TooMany(TooManyInvocations::Database { quota, .. })) => {
            Err(ApiError::Busy(format!(
                "the trigger's database runs as many invocations at once as its quota \
                 allows (max-concurrent-invocations {quota}); try again later"
            )))
        }
        Err(RequestError::TooMany(TooManyInvocations::Trigger { max, .. })) => {
            Err(ApiError::Busy(format!(
                "the trigger runs as many invocations at once as it may (max_concurrency \
                 {max}); try again later"
            )))
        }
    }
}

/// The plugin's response; a status outside 100..=999 becomes 500 and a header that is
/// not valid HTTP is left out, as upstream.
fn respond(plugin: HttpResponse) -> Response {
    let status = StatusCode::from_u16(plugin.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // No default content type: the plugin's headers are the only ones, as upstream.
    let mut response = Response::new(axum::body::Body::from(plugin.body));
    *response.status_mut() = status;
    for (name, value) in plugin.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) else {
            tracing::warn!("a request plugin returned an invalid header `{name}`; it is left out");
            continue;
        };
        response.headers_mut().append(name, value);
    }
    response
}
