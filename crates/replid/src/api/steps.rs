//! Playbook progress and manual tasks: thin handlers over `repli_app::steps`.

use axum::Json;
use axum::extract::State;
use repli_app::steps;
use repli_proto::api::{StepActionRequest, StepView, StepsView, TaskDoneRequest, TaskView};

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};

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
    Ok(Json(steps::confirm(&st, &a, &id, &step, body.note.as_deref(), body.dns_unchecked.as_deref()).await?))
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

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::ProblemCode as C;
    use repli_proto::api::{StepActionRequest, StepView, StepsView, TaskDoneRequest, TaskView};
    vec![
        (
            Method::GET,
            "/api/v1/crises/{id}/steps",
            Requires(P::ReadCrises),
            routing::get(list),
            Doc::api::<StepsView>("The playbook runs and their steps"),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/steps/{step}/done",
            Requires(P::OperateCrisis),
            routing::post(done),
            Doc::api::<StepView>("Confirm a manual step")
                .body::<TaskDoneRequest>()
                .problems(&[C::UnknownStep, C::StepConflict]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/steps/{step}/retry",
            Requires(P::OperateCrisis),
            routing::post(retry),
            Doc::api::<StepView>("Retry a failed step").body::<StepActionRequest>().problems(&[
                C::UnknownStep,
                C::StepConflict,
                C::ReasonRequired,
            ]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/steps/{step}/skip",
            Requires(P::OperateCrisis),
            routing::post(skip),
            Doc::api::<StepView>("Skip a step").body::<StepActionRequest>().problems(&[
                C::UnknownStep,
                C::StepConflict,
                C::ReasonRequired,
            ]),
        ),
        (
            Method::GET,
            "/api/v1/tasks",
            Requires(P::OperateCrisis),
            routing::get(tasks),
            Doc::list::<TaskView>("Manual steps waiting for ops"),
        ),
    ]
}
