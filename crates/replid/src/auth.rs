//! API tokens: 32 random bytes, shown once, stored as their SHA-256. The [`Authed`] extractor
//! turns a bearer token into the acting user.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use jiff::Timestamp;
use repli_core::{Actor, InseeCode, Role};
use repli_store::{By, NewUser, Store, StoreError, UserRecord};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use repli_app::AppError;

/// Prefix of every Repli token, so secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "rpl_";

/// Session cookie (HttpOnly, SameSite=Strict, Secure under TLS; no Max-Age: it dies with the
/// browser, and the server ends the session after `web::SESSION_HOURS` anyway).
pub const SESSION_COOKIE: &str = "repli_session";

/// A new random token.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// What is stored for a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// argon2id with explicit parameters (OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane).
fn argon2() -> Result<argon2::Argon2<'static>, String> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| e.to_string())?;
    Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    argon2()?.hash_password_with_salt(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), phc).is_ok())
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no randomness available for a token: {0}")]
    Random(getrandom::Error),
    #[error("a dgs user needs --commune, and only a dgs user takes one")]
    CommuneRole,
    #[error("invalid name: {0}")]
    Name(repli_core::FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a user with a fresh token and returns the token: the only time it is ever seen.
pub async fn create_user(
    store: &Store,
    name: &str,
    role: Role,
    commune: Option<InseeCode>,
    expires_at: Option<Timestamp>,
    by: By<'_>,
    now: Timestamp,
) -> Result<(UserRecord, String), UserError> {
    if (role == Role::Dgs) != commune.is_some() {
        return Err(UserError::CommuneRole);
    }
    let name = repli_core::text::name("name", name).map_err(UserError::Name)?;
    let token = generate_token().map_err(UserError::Random)?;
    let user = NewUser { name, role, commune, token_sha256: token_hash(&token), token_expires_at: expires_at };
    let rec = store.create_user(&user, by, now).await?;
    Ok((rec, token))
}

/// How long a credential found valid is trusted without asking the database again. Revocations
/// and sign-outs made through replid clear the cache at once; this bounds only changes made to
/// the database by another process.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most credentials remembered (the cache is emptied when full).
const AUTH_CACHE_MAX: usize = 10_000;

/// Credentials recently found valid, by the SHA-256 of the token or session id (never the
/// secret itself): each API call then costs no database read for its authentication.
#[derive(Debug, Default)]
pub struct AuthCache(Mutex<HashMap<String, Cached>>);

#[derive(Debug, Clone)]
struct Cached {
    actor: Actor,
    csrf: Option<String>,
    expires_at: Option<Timestamp>,
    fetched: Instant,
}

impl AuthCache {
    fn get(&self, key: &str, now: Timestamp) -> Option<(Actor, Option<String>)> {
        let map = self.0.lock().ok()?;
        let c = map.get(key)?;
        let fresh = c.fetched.elapsed() < AUTH_CACHE_TTL && c.expires_at.is_none_or(|e| e > now);
        fresh.then(|| (c.actor.clone(), c.csrf.clone()))
    }

    fn put(&self, key: String, actor: &Actor, csrf: Option<&str>, expires_at: Option<Timestamp>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= AUTH_CACHE_MAX {
                map.clear();
            }
            let c = Cached { actor: actor.clone(), csrf: csrf.map(str::to_owned), expires_at, fetched: Instant::now() };
            map.insert(key, c);
        }
    }

    /// Forgets every credential: after a revocation, a sign-out or any change to accounts.
    pub fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

/// Whether the request carries a session cookie (valid or not).
pub fn has_session_cookie(headers: &HeaderMap) -> bool {
    axum_extra::extract::cookie::CookieJar::from_headers(headers).get(SESSION_COOKIE).is_some()
}

/// Who is calling, and the CSRF token of their web session when they came with a cookie.
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<(Actor, Option<String>), AppError> {
    let now = st.clock.now();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() < 128)
            .ok_or(AppError::Unauthenticated)?;
        let hash = token_hash(token);
        let key = format!("t:{hash}");
        if let Some(hit) = st.auth_cache.get(&key, now) {
            return Ok(hit);
        }
        let (actor, expires_at) = st.store.token_actor(&hash, now).await?.ok_or(AppError::Unauthenticated)?;
        st.auth_cache.put(key, &actor, None, expires_at);
        return Ok((actor, None));
    }
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(headers);
    let sid = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).ok_or(AppError::Unauthenticated)?;
    if sid.len() != 64 {
        return Err(AppError::Unauthenticated);
    }
    let hash = token_hash(&sid);
    let key = format!("s:{hash}");
    if let Some(hit) = st.auth_cache.get(&key, now) {
        return Ok(hit);
    }
    let session = st.store.session(&hash, now).await?.ok_or(AppError::Unauthenticated)?;
    st.auth_cache.put(key, &session.actor, Some(&session.csrf), Some(session.expires_at));
    Ok((session.actor, Some(session.csrf)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_cache_honours_expiry_and_clearing() {
        let cache = AuthCache::default();
        let a = Actor {
            user_id: 1,
            name: "Claire".into(),
            role: Role::Ops,
            commune: None,
            auth: repli_core::AuthMethod::Token,
        };
        let now: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        cache.put("t:x".into(), &a, None, Some(later));
        assert_eq!(cache.get("t:x", now).map(|(a, _)| a.user_id), Some(1));
        assert!(cache.get("t:x", later).is_none(), "an expired token is not served from the cache");
        assert!(cache.get("t:y", now).is_none());
        cache.clear();
        assert!(cache.get("t:x", now).is_none(), "cleared");
    }

    #[test]
    fn passwords_hash_with_argon2id_and_salt() {
        let a = hash_password("correct horse battery staple").unwrap();
        let b = hash_password("correct horse battery staple").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse battery staple", &a));
        assert!(!verify_password("correct horse battery stapl", &a));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
