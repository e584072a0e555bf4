//! Account administration (admin only): users, API tokens, web passwords.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use repli_core::{Actor, FieldError};
use repli_proto::api::{CreatedUser, NewUserRequest, PasswordRequest, RevokeView, TokenRequest, TokenView, UserView};
use repli_store::{By, StoreError, UserSummary};

use crate::AppState;
use crate::auth::{self, Authed, UserError};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use repli_app::AppError;
use repli_proto::ProblemCode;

fn view(u: UserSummary) -> UserView {
    UserView {
        id: u.id,
        name: u.name,
        role: u.role,
        commune: u.commune,
        login: u.login,
        has_password: u.has_password,
        active_tokens: u.active_tokens,
        created_at: Some(u.created_at),
    }
}

fn expiry(now: Timestamp, days: Option<u16>) -> Result<Option<Timestamp>, AppError> {
    days.map(|d| {
        now.checked_add(SignedDuration::from_hours(24 * i64::from(d)))
            .map_err(|_| AppError::Validation(vec![FieldError::new("expires_days", "durée hors limites")]))
    })
    .transpose()
}

async fn summary(st: &AppState, id: i64) -> Result<UserView, AppError> {
    let all = st.store.users(st.clock.now()).await?;
    all.into_iter()
        .find(|u| u.id == id)
        .map(view)
        .ok_or_else(|| AppError::problem(ProblemCode::UnknownUser, "Utilisateur inconnu."))
}

/// Every user, as admins see them.
pub(crate) async fn list_users(st: &AppState) -> Result<Vec<UserView>, AppError> {
    Ok(st.store.users(st.clock.now()).await?.into_iter().map(view).collect())
}

pub async fn list(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(list_users(&st).await?))
}

pub async fn create(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    Ok((StatusCode::CREATED, Json(create_user(&st, a, &req).await?)))
}

/// Creates a user with a first API token (shown once): the API's and the accounts page's
/// operation.
pub(crate) async fn create_user(st: &AppState, a: &Actor, req: &NewUserRequest) -> Result<CreatedUser, AppError> {
    let now = st.clock.now();
    let expires_at = expiry(now, req.expires_days)?;
    let created =
        auth::create_user(&st.store, &req.name, req.role, req.commune.clone(), expires_at, By::User(a), now).await;
    let (rec, token) = match created {
        Ok(v) => v,
        Err(UserError::CommuneRole) => {
            return Err(AppError::Validation(vec![FieldError::new(
                "commune",
                "obligatoire pour un DGS, interdit pour les autres rôles",
            )]));
        }
        Err(UserError::Name(e)) => return Err(AppError::Validation(vec![e])),
        Err(UserError::Store(e)) => return Err(e.into()),
        Err(e @ UserError::Random(_)) => return Err(AppError::Internal(e.to_string())),
    };
    tracing::info!(user = rec.id, role = %rec.role, "user created");
    let user = summary(st, rec.id).await?;
    Ok(CreatedUser { user, token: TokenView { user_id: rec.id, token, expires_at } })
}

pub async fn issue_token(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let now = st.clock.now();
    let expires_at = expiry(now, req.expires_days)?;
    let token = auth::generate_token().map_err(|e| AppError::Internal(e.to_string()))?;
    st.store.issue_token(id, &auth::token_hash(&token), expires_at, By::User(a), now).await?;
    Ok((StatusCode::CREATED, Json(TokenView { user_id: id, token, expires_at })))
}

pub async fn revoke_tokens(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RevokeView>, ApiError> {
    Ok(Json(RevokeView { user_id: id, revoked: revoke(&st, a, id).await? }))
}

/// Revokes every API token and web session of a user; returns how many.
pub(crate) async fn revoke(st: &AppState, a: &Actor, id: i64) -> Result<u64, AppError> {
    let revoked = st.store.revoke_tokens(id, By::User(a), st.clock.now()).await?;
    st.auth_cache.clear();
    tracing::info!(user = id, revoked, "tokens revoked");
    Ok(revoked)
}

pub use repli_core::schema::PASSWORD_MIN;
use repli_core::schema::{LOGIN_MAX, PASSWORD_MAX};

pub async fn set_password(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Json<UserView>, ApiError> {
    let mut errors = login_errors(&req.login);
    errors.extend(password_errors(&req.password));
    if !errors.is_empty() {
        return Err(AppError::Validation(errors).into());
    }
    let phc = hash(&req.password).await?;
    st.auth_cache.clear();
    // Another account's login answers `login_taken` (409): a conflict with the data, not a
    // malformed request.
    st.store.set_password(id, req.login.trim(), &phc, By::User(a), st.clock.now()).await?;
    Ok(Json(summary(&st, id).await?))
}

/// A web login: 1 to 64 letters, digits, `.`, `-`, `_` or `@`.
pub(crate) fn login_errors(login: &str) -> Vec<FieldError> {
    let login = login.trim();
    let ok = !login.is_empty()
        && login.len() <= LOGIN_MAX
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok { Vec::new() } else { vec![FieldError::new("login", "1 à 64 caractères : lettres, chiffres, . - _ @")] }
}

/// A password of [`PASSWORD_MIN`] to [`PASSWORD_MAX`] characters, without control characters.
pub(crate) fn password_errors(password: &str) -> Vec<FieldError> {
    let n = password.chars().count();
    if (PASSWORD_MIN..=PASSWORD_MAX).contains(&n) && !password.chars().any(char::is_control) {
        Vec::new()
    } else {
        vec![FieldError::new(
            "password",
            format!("{PASSWORD_MIN} à {PASSWORD_MAX} caractères, sans caractère de contrôle"),
        )]
    }
}

/// The argon2id hash, computed off the async workers (it is deliberately slow).
pub(crate) async fn hash(password: &str) -> Result<String, AppError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::Internal)
}

/// How long a password link works.
pub const LINK_HOURS: i64 = 72;

/// Creates a one-time link for a user to choose their web password under `login`; returns the
/// link's secret (shown once to the admin, who hands it over) and when it expires.
pub(crate) async fn password_link(
    st: &AppState,
    a: &Actor,
    id: i64,
    login: &str,
) -> Result<(String, Timestamp), AppError> {
    let errors = login_errors(login);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let secret = auth::generate_token().map_err(|e| AppError::Internal(e.to_string()))?;
    let now = st.clock.now();
    let expires = now.checked_add(SignedDuration::from_hours(LINK_HOURS)).unwrap_or(now);
    match st.store.create_password_link(id, login.trim(), &auth::token_hash(&secret), expires, By::User(a), now).await {
        Err(StoreError::LoginTaken(_)) => {
            Err(AppError::Validation(vec![FieldError::new("login", "identifiant déjà utilisé par un autre compte")]))
        }
        Err(StoreError::UnknownUser(_)) => Err(AppError::problem(ProblemCode::UnknownUser, "Utilisateur inconnu.")),
        Err(e) => Err(e.into()),
        Ok(()) => Ok((secret, expires)),
    }
}
