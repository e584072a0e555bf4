//! Account administration (admin only): users, API tokens, web passwords. The rules are in
//! `repli_app::accounts`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use repli_app::accounts;
use repli_proto::api::{CreatedUser, NewUserRequest, PasswordRequest, RevokeView, TokenRequest, TokenView, UserView};

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

pub async fn list(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(accounts::list(&st).await?))
}

pub async fn create(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    Ok((StatusCode::CREATED, Json(accounts::create(&st, repli_app::By::User(a), &req).await?)))
}

pub async fn issue_token(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    Ok((StatusCode::CREATED, Json(accounts::issue_token(&st, a, id, req.expires_days).await?)))
}

pub async fn revoke_tokens(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RevokeView>, ApiError> {
    Ok(Json(RevokeView { user_id: id, revoked: accounts::revoke(&st, a, id).await? }))
}

pub async fn set_password(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(accounts::set_password(&st, a, id, &req.login, &req.password).await?))
}
