//! The « Exercices » page: the exercises, and the form that starts one from a scenario edited in
//! the browser.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use repli_app::exercises;
use repli_core::Actor;
use repli_proto::api::ExerciseView;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{SessionCsrf, api_error_page, base, check_csrf, redirect_with, render, when};

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

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/exercices",
            Page(P::ReadExercises),
            routing::get(page),
            Doc::page("The exercises, and the form that starts one from a scenario"),
        ),
        (Method::POST, "/exercices", Page(P::RunExercises), routing::post(start_form), Doc::form("Start an exercise")),
    ]
}
