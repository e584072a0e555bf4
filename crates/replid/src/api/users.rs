//! Account administration (admin only): users, API tokens, web passwords. The rules are in
//! `repli_app::accounts`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use repli_app::accounts;
use repli_proto::api::{CreatedUser, NewUserRequest, PasswordRequest, RevokeView, TokenRequest, TokenView, UserView};

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};

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

/// Removes a user's second factor (a lost phone): they enrol again at their next web sign-in,
/// their sessions are closed. Answers the user (without a second factor), whether one was
/// removed or there was none.
pub async fn reset_second_factor(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<UserView>, ApiError> {
    accounts::reset_second_factor(&st, a, id).await?;
    let user = accounts::list(&st).await?.into_iter().find(|u| u.id == id);
    Ok(Json(user.ok_or(repli_app::AppError::problem(repli_proto::ProblemCode::UnknownUser, "Utilisateur inconnu."))?))
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::ProblemCode as C;
    use repli_proto::api::{
        CreatedUser, NewUserRequest, PasswordRequest, RevokeView, TokenRequest, TokenView, UserView,
    };
    vec![
        (Method::GET, "/api/v1/users", Requires(P::ManageUsers), routing::get(list), Doc::list::<UserView>("Users")),
        (
            Method::POST,
            "/api/v1/users",
            Requires(P::ManageUsers),
            routing::post(create),
            Doc::api::<CreatedUser>("Create a user and their first token")
                .body::<NewUserRequest>()
                .status(201)
                .beyond_schema(&["`commune` given for a DGS, and for a DGS only"]),
        ),
        (
            Method::POST,
            "/api/v1/users/{uid}/tokens",
            Requires(P::ManageUsers),
            routing::post(issue_token),
            Doc::api::<TokenView>("Issue a token").body::<TokenRequest>().status(201).problems(&[C::UnknownUser]),
        ),
        (
            Method::DELETE,
            "/api/v1/users/{uid}/tokens",
            Requires(P::ManageUsers),
            routing::delete(revoke_tokens),
            Doc::api::<RevokeView>("Revoke every token and web session of a user").problems(&[C::UnknownUser]),
        ),
        (
            Method::DELETE,
            "/api/v1/users/{uid}/second-factor",
            Requires(P::ManageUsers),
            routing::delete(reset_second_factor),
            Doc::api::<UserView>("Reset a user's second factor (TOTP and recovery codes); their sessions close")
                .problems(&[C::UnknownUser]),
        ),
        (
            Method::PUT,
            "/api/v1/users/{uid}/password",
            Requires(P::ManageUsers),
            routing::put(set_password),
            Doc::api::<UserView>("Set the web login and password")
                .body::<PasswordRequest>()
                .problems(&[C::UnknownUser, C::LoginTaken]),
        ),
    ]
}
