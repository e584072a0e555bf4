//! Playbook progress and manual tasks: thin handlers over `repli_app::steps`.

use axum::Json;
use axum::extract::State;
use repli_app::steps;
use repli_proto::api::{StepActionRequest, StepView, StepsView, TaskDoneRequest, TaskView};

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

pub async fn list(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StepsView>, ApiError> {
    Ok(Json(steps::steps_of(&st, &a, &id).await?))
}

pub async fn tasks(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<TaskView>>, ApiError> {
    Ok(Json(steps::task_views(&st).await?))
}

pub async fn done(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, step)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<TaskDoneRequest>,
) -> Result<Json<StepView>, ApiError> {
    Ok(Json(steps::confirm(&st, &a, &id, &step, body.note.as_deref()).await?))
}

pub async fn retry(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, step)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<StepActionRequest>,
) -> Result<Json<StepView>, ApiError> {
    Ok(Json(steps::operate(&st, &a, &id, &step, false, &body.reason).await?))
}

pub async fn skip(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, step)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<StepActionRequest>,
) -> Result<Json<StepView>, ApiError> {
    Ok(Json(steps::operate(&st, &a, &id, &step, true, &body.reason).await?))
}
