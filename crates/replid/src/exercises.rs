//! Exercises: the API (start, list, read) and the « Exercices » page, where ops start a drill
//! from a scenario they edit in the browser and follow its crises and injects.

use axum::Json;
use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use repli_app::exercises;
use repli_core::Actor;
use repli_proto::api::{ExerciseRequest, ExerciseView};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::web::{SessionCsrf, api_error_page, base, check_csrf, redirect_with, render, when};

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

/// The form as shown: the scenario (as typed, after an error), its errors, the last success.
struct Shown<'a> {
    scenario: &'a str,
    errors: &'a [String],
    flash: Option<&'a str>,
}

fn page_of(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    status: StatusCode,
    list: &[ExerciseView],
    form: &Shown<'_>,
) -> Response {
    let mut data = base(a, csrf, "Exercices");
    let lines: Vec<Value> = list
        .iter()
        .map(|x| {
            json!({
                "id": x.id, "name": x.name, "mode": x.mode_label, "open": x.open,
                "started": when(st, Some(x.started_at)), "by": x.started_by,
                "recipients": x.recipients.join(", "),
                "crises": x.crises.iter().map(|c| json!({ "id": c.id.as_str(), "state": c.state_label })).collect::<Vec<_>>(),
                "injects": x.injects.iter().map(|i| json!({
                    "due": when(st, Some(i.due_at)), "commune": i.commune.as_ref().map(|c| c.as_str()),
                    "text": i.text, "delivered": i.delivered_at.map(|t| when(st, Some(t))),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    data.insert("exercises".into(), json!(lines));
    data.insert("may_start".into(), json!(a.may(repli_core::Permission::RunExercises)));
    data.insert("scenario".into(), json!(form.scenario));
    data.insert("errors".into(), json!(form.errors));
    data.insert("flash".into(), json!(form.flash));
    render(st, status, "exercices", &Value::Object(data))
}

/// `GET /exercices`: the exercises, and (ops) the form that starts one from the example scenario.
pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    match exercises::list(&st).await {
        Ok(list) => {
            let form =
                Shown { scenario: exercises::example_scenario(), errors: &[], flash: q.get("ok").map(String::as_str) };
            page_of(&st, &a, &csrf, StatusCode::OK, &list, &form)
        }
        Err(e) => api_error_page(&st, &e),
    }
}

/// `POST /exercices`: starts the exercise the scenario describes; on an error, the form again
/// with the scenario as typed and every problem listed.
pub async fn start_form(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Form(form): crate::web::Form,
) -> Response {
    if let Err(refused) = check_csrf(&st, &csrf, &form) {
        return *refused;
    }
    let scenario = form.get("scenario").map(String::as_str).unwrap_or("");
    let started = match exercises::parse_scenario(scenario) {
        Ok(req) => exercises::start(&st.app, &a, &req, Some(scenario)).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(x) => {
            let ids: Vec<&str> = x.crises.iter().map(|c| c.id.as_str()).collect();
            let message = format!(
                "Exercice « {} » commencé : {}. Activez ses crises comme une vraie demande.",
                x.name,
                ids.join(", ")
            );
            redirect_with("/exercices", "ok", &message)
        }
        Err(e) => {
            let problem = e.to_problem();
            let mut errors: Vec<String> =
                problem.errors.iter().map(|f| format!("{} : {}", f.field, f.message)).collect();
            if errors.is_empty() {
                errors.push(problem.detail.clone());
            }
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            match exercises::list(&st).await {
                Ok(list) => {
                    let form = Shown { scenario, errors: &errors, flash: None };
                    page_of(&st, &a, &csrf, status, &list, &form)
                }
                Err(e) => api_error_page(&st, &e),
            }
        }
    }
    .into_response()
}
