//! API tokens: 32 random bytes, shown once, stored as their SHA-256. The [`Authed`] extractor
//! turns a bearer token into the acting user.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jiff::Timestamp;
use repli_core::{Actor, InseeCode, Permission, Role};
use repli_store::{By, NewUser, Store, StoreError, UserRecord};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Prefix of every Repli token, so secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "rpl_";

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
    let user = NewUser {
        name,
        role,
        commune,
        token_sha256: token_hash(&token),
        token_expires_at: expires_at,
    };
    let rec = store.create_user(&user, by, now).await?;
    Ok((rec, token))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authed(pub Actor);

impl Authed {
    /// Refuses unless the policy table allows this actor's role `p`.
    pub fn require(&self, p: Permission) -> Result<&Actor, ApiError> {
        if self.0.may(p) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden("Action non autorisée pour votre rôle."))
        }
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() < 128)
            .ok_or(ApiError::Unauthenticated)?;
        let actor = state
            .store
            .actor_by_token(&token_hash(token), state.clock.now())
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        tracing::Span::current().record("user", actor.user_id);
        Ok(Authed(actor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
