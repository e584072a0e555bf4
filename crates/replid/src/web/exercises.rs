//! The « Exercices » page: the exercises, and the form that starts one from a scenario edited in
//! the browser.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use repli_app::exercises;
use repli_core::Actor;
use repli_proto::api::ExerciseView;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::{Flash, Flashes};
use crate::web::view::{CsrfForm, Layout, page as render_page};
use crate::web::{SessionCsrf, api_error_page, redirect_with, when};

/// A crisis an exercise opened.
#[derive(Debug, Serialize)]
struct ExerciseCrisis {
    id: String,
    state: String,
}

/// A timed inject of the scenario.
#[derive(Debug, Serialize)]
struct Inject {
    due: String,
    commune: Option<String>,
    text: String,
    delivered: Option<String>,
}

/// One exercise of the list.
#[derive(Debug, Serialize)]
struct Exercise {
    name: String,
    mode: String,
    open: bool,
    started: String,
    by: String,
    /// The only addresses it may reach, joined.
    recipients: String,
    crises: Vec<ExerciseCrisis>,
    injects: Vec<Inject>,
}

#[derive(Debug, Serialize)]
struct ExercisesPage {
    exercises: Vec<Exercise>,
    /// Shows the form that starts one.
    may_start: bool,
    /// The scenario in the form: the example, or as typed after an error.
    scenario: String,
    /// Why the scenario was refused.
    errors: Vec<String>,
}

/// The start form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StartForm {
    /// The scenario, TOML.
    scenario: String,
}

fn exercise(st: &AppState, x: &ExerciseView) -> Exercise {
    Exercise {
        name: x.name.clone(),
        mode: x.mode_label.clone(),
        open: x.open,
        started: when(st, Some(x.started_at)),
        by: x.started_by.clone(),
        recipients: x.recipients.join(", "),
        crises: x
            .crises
            .iter()
            .map(|c| ExerciseCrisis { id: c.id.to_string(), state: c.state_label.clone() })
            .collect(),
        injects: x
            .injects
            .iter()
            .map(|i| Inject {
                due: when(st, Some(i.due_at)),
                commune: i.commune.as_ref().map(ToString::to_string),
                text: i.text.clone(),
                delivered: i.delivered_at.map(|t| when(st, Some(t))),
            })
            .collect(),
    }
}

/// The page: the exercises, and the form with `scenario` and its `errors`.
fn page_of(
    st: &AppState,
    layout: &Layout,
    a: &Actor,
    status: StatusCode,
    list: &[ExerciseView],
    scenario: &str,
    errors: Vec<String>,
) -> Response {
    let body = ExercisesPage {
        exercises: list.iter().map(|x| exercise(st, x)).collect(),
        may_start: a.may(repli_core::Permission::RunExercises),
        scenario: scenario.to_owned(),
        errors,
    };
    render_page(st, status, "exercices", layout, &body)
}

/// `GET /exercices`: the exercises, and (ops) the form that starts one from the example scenario.
pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    flashes: Flashes,
) -> Response {
    match exercises::list(&st).await {
        Ok(list) => {
            let layout = Layout::signed_in(&a, &csrf, "Exercices").flashes(&flashes);
            page_of(&st, &layout, &a, StatusCode::OK, &list, exercises::example_scenario(), Vec::new())
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
    CsrfForm(form): CsrfForm<StartForm>,
) -> Response {
    let scenario = form.scenario.as_str();
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
            redirect_with("/exercices", Flash::ok(message))
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
                    let layout = Layout::signed_in(&a, &csrf, "Exercices");
                    page_of(&st, &layout, &a, status, &list, scenario, errors)
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
