//! The « Locataire Microsoft 365 » page: the last preflight in full, and running it again.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use repli_core::m365::{CheckStatus, PreflightReport};
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{CsrfForm, Layout, NoFields, page as render_page};
use crate::web::{SessionCsrf, when};

/// One check of the preflight, as the table shows it.
#[derive(Debug, Serialize)]
struct Check {
    title: String,
    /// The result in words, and its colour class (never colour alone).
    label: &'static str,
    class: &'static str,
    detail: String,
    fix: Option<String>,
}

/// The page: the last preflight, when one has finished since the start.
#[derive(Debug, Serialize)]
struct M365Page {
    /// Empty (« no check yet ») until a preflight has finished.
    checks: Vec<Check>,
    ok: Option<bool>,
    at: Option<String>,
}

/// The checks in the page's shape.
fn checks(report: &PreflightReport) -> Vec<Check> {
    report
        .checks
        .iter()
        .map(|c| {
            let (label, class) = match c.status {
                CheckStatus::Ok => ("Conforme", "ok"),
                CheckStatus::Warn => ("À revoir", "risque"),
                CheckStatus::Fail => ("Échec", "retard"),
            };
            Check { title: c.title.clone(), label, class, detail: c.detail.clone(), fix: c.fix.clone() }
        })
        .collect()
}

/// `GET /m365`: the last preflight in full.
pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let body = match repli_app::preflight::last(st.app.services()) {
        Some(run) => {
            M365Page { checks: checks(&run.report), ok: Some(run.report.ok), at: Some(when(&st, Some(run.at))) }
        }
        None => M365Page { checks: Vec::new(), ok: None, at: None },
    };
    let layout = Layout::signed_in(&a, &csrf, "Locataire Microsoft 365");
    render_page(&st, StatusCode::OK, "m365", &layout, &body)
}

/// `POST /m365`: runs the preflight again, then shows it.
pub async fn rerun(State(st): State<AppState>, _: CsrfForm<NoFields>) -> Response {
    repli_app::preflight::run(st.app.services()).await;
    axum::response::Redirect::to("/m365").into_response()
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
            "/m365",
            Page(P::OperateCrisis),
            routing::get(page),
            Doc::page("The Microsoft 365 tenant's preflight"),
        ),
        (Method::POST, "/m365", Page(P::OperateCrisis), routing::post(rerun), Doc::form("Run the preflight again")),
    ]
}
