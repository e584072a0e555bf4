//! Ops' task list: every manual step waiting for a person, across crises.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::steps;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{SessionCsrf, api_error_page, base, render, when};

pub async fn tasks(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let list = match steps::task_views(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let tasks: Vec<Value> = list
        .iter()
        .map(|t| {
            json!({
                "crisis": t.crisis.as_str(), "commune": t.commune_name, "step": t.step, "title": t.title,
                "instructions": t.instructions, "checklist": t.checklist, "since": when(&st, t.since),
                "exercice": t.exercise,
            })
        })
        .collect();
    let mut data = base(&a, &csrf, "Tâches manuelles");
    data.insert("tasks".into(), json!(tasks));
    data.insert("flash".into(), json!(q.get("ok")));
    render(&st, StatusCode::OK, "taches", &Value::Object(data))
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
