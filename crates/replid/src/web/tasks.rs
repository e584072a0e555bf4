//! Ops' task list: every manual step waiting for a person, across crises.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::steps;
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::Flashes;
use crate::web::view::{Layout, page};
use crate::web::{SessionCsrf, api_error_page, when};

/// One manual step waiting, as the list shows it.
#[derive(Debug, Serialize)]
struct Task {
    crisis: String,
    commune: String,
    step: String,
    title: String,
    instructions: Option<String>,
    checklist: Vec<String>,
    since: String,
    /// Shown with the « EXERCICE » tag.
    exercice: bool,
}

#[derive(Debug, Serialize)]
struct TasksPage {
    tasks: Vec<Task>,
}

pub async fn tasks(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    flashes: Flashes,
) -> Response {
    let list = match steps::task_views(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let tasks = list
        .into_iter()
        .map(|t| Task {
            crisis: t.crisis.to_string(),
            commune: t.commune_name,
            step: t.step,
            title: t.title,
            instructions: t.instructions,
            checklist: t.checklist,
            since: when(&st, t.since),
            exercice: t.exercise,
        })
        .collect();
    let layout = Layout::signed_in(&a, &csrf, "Tâches manuelles").flashes(&flashes);
    page(&st, StatusCode::OK, "taches", &layout, &TasksPage { tasks })
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![(
        Method::GET,
        "/taches",
        Page(P::OperateCrisis),
        routing::get(tasks),
        Doc::page("Manual tasks waiting for ops"),
    )]
}
