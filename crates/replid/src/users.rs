//! Account administration (admin only): users, API tokens, web passwords.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use repli_core::FieldError;
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

fn expiry(now: Timestamp, days: Option<u16>) -> Result<Option<Timestamp>, ApiError> {
    days.map(|d| {
        now.checked_add(SignedDuration::from_hours(24 * i64::from(d)))
            .map_err(|_| AppError::Validation(vec![FieldError::new("expires_days", "durée hors limites")]).into())
    })
    .transpose()
}

async fn summary(st: &AppState, id: i64) -> Result<UserView, ApiError> {
    let all = st.store.users(st.clock.now()).await?;
    all.into_iter()
        .find(|u| u.id == id)
        .map(view)
        .ok_or_else(|| ApiError::problem(ProblemCode::UnknownUser, "Utilisateur inconnu."))
}

pub async fn list(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(st.store.users(st.clock.now()).await?.into_iter().map(view).collect()))
}

pub async fn create(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
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
            )])
            .into());
        }
        Err(UserError::Name(e)) => return Err(AppError::Validation(vec![e]).into()),
        Err(UserError::Store(e)) => return Err(e.into()),
        Err(e @ UserError::Random(_)) => return Err(AppError::Internal(e.to_string()).into()),
    };
    tracing::info!(user = rec.id, role = %rec.role, "user created");
    let user = summary(&st, rec.id).await?;
    Ok((StatusCode::CREATED, Json(CreatedUser { user, token: TokenView { user_id: rec.id, token, expires_at } })))
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
    let revoked = st.store.revoke_tokens(id, By::User(a), st.clock.now()).await?;
    st.auth_cache.clear();
    tracing::info!(user = id, revoked, "tokens revoked");
    Ok(Json(RevokeView { user_id: id, revoked }))
}

/// Shortest accepted password (ANSSI recommends long passphrases for accounts without MFA).
pub const PASSWORD_MIN: usize = 12;
const PASSWORD_MAX: usize = 256;

pub async fn set_password(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Json<UserView>, ApiError> {
    let mut errors = Vec::new();
    let login = req.login.trim();
    if login.is_empty()
        || login.len() > 64
        || !login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
    {
        errors.push(FieldError::new("login", "1 à 64 caractères : lettres, chiffres, . - _ @"));
    }
    let n = req.password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) || req.password.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "password",
            format!("{PASSWORD_MIN} à {PASSWORD_MAX} caractères, sans caractère de contrôle"),
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors).into());
    }
    let password = req.password.clone();
    // Hashing is deliberately slow: keep it off the async workers.
    let phc = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::Internal)?;
    st.auth_cache.clear();
    match st.store.set_password(id, login, &phc, By::User(a), st.clock.now()).await {
        Err(StoreError::LoginTaken(_)) => {
            return Err(AppError::Validation(vec![FieldError::new("login", "identifiant déjà utilisé")]).into());
        }
        other => other?,
    }
    Ok(Json(summary(&st, id).await?))
}
