//! Who is calling: the bearer token or the session cookie read from the request, handed to
//! `repli_app::accounts::authenticate` (which owns every rule about credentials), and the
//! [`Authed`] extractor for the actor the route's authorization layer found.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use repli_app::AppError;
use repli_app::accounts::Credential;
use repli_core::Actor;

use crate::AppState;
use crate::http::error::ApiError;

/// Session cookie (HttpOnly, SameSite=Strict, Secure under TLS; no Max-Age: it dies with the
/// browser, and the server ends the session after `accounts::SESSION_HOURS` anyway).
pub const SESSION_COOKIE: &str = "repli_session";

/// Whether the request carries a session cookie (valid or not).
pub fn has_session_cookie(headers: &HeaderMap) -> bool {
    axum_extra::extract::cookie::CookieJar::from_headers(headers).get(SESSION_COOKIE).is_some()
}

/// Who is calling, and the CSRF token of their web session when they came with a cookie.
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<(Actor, Option<String>), AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or(AppError::Unauthenticated)?;
        return repli_app::accounts::authenticate(st, Credential::Bearer(token)).await;
    }
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(headers);
    let sid = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).ok_or(AppError::Unauthenticated)?;
    repli_app::accounts::authenticate(st, Credential::Session(&sid)).await
}

/// The authenticated caller of a request, put there by the route's authorization layer
/// (`routes::routes`), which already checked the route's permission.
#[derive(Debug, Clone)]
pub struct Authed(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Actor>().cloned().map(Authed).ok_or(ApiError(AppError::Unauthenticated))
    }
}
