//! Exercises over the API: start one from a scenario, list them, read one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use repli_app::exercises;
use repli_proto::api::{ExerciseRequest, ExerciseView};

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};

/// `POST /api/v1/exercises`.
pub async fn start(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<ExerciseRequest>,
) -> Result<(StatusCode, Json<ExerciseView>), ApiError> {
    Ok((StatusCode::CREATED, Json(exercises::start(&st.app, &a, &req, None).await?)))
}

/// `GET /api/v1/exercises`.
pub async fn list(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<ExerciseView>>, ApiError> {
    Ok(Json(exercises::list(&st).await?))
}

/// `GET /api/v1/exercises/{xid}`.
pub async fn get(
    State(st): State<AppState>,
    _: Authed,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ExerciseView>, ApiError> {
    Ok(Json(exercises::get(&st, id).await?))
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
    use repli_proto::api::{ExerciseRequest, ExerciseView};
    vec![
        (
            Method::GET,
            "/api/v1/exercises",
            Requires(P::ReadExercises),
            routing::get(list),
            Doc::list::<ExerciseView>("Exercises (drills marked EXERCICE), the most recent first"),
        ),
        (
            Method::POST,
            "/api/v1/exercises",
            Requires(P::RunExercises),
            routing::post(start),
            Doc::api::<ExerciseView>("Start an exercise: its communes' crises, requested together")
                .body::<ExerciseRequest>()
                .beyond_schema(&[
                    "each commune once",
                    "an inject's `commune` is one of the exercise's",
                    "an inject's `effect` needs the exercise simulator (`[exercise] target = \"simulator\"`)",
                    "the communes have signed the convention (`convention_missing`)",
                ])
                .status(201)
                .problems(&[C::UnknownCommune, C::ConventionMissing, C::OpenCrisisExists]),
        ),
        (
            Method::GET,
            "/api/v1/exercises/{xid}",
            Requires(P::ReadExercises),
            routing::get(get),
            Doc::api::<ExerciseView>("One exercise, its crises and injects").problems(&[C::ExerciseNotFound]),
        ),
    ]
}
