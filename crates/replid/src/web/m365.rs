//! The « Locataire Microsoft 365 » page: the last preflight in full, and running it again.

use axum::extract::State;
use axum::response::IntoResponse;

use crate::AppState;
use crate::http::auth::Authed;

/// The checks in the pages' shape.
fn checks_json(report: &repli_core::m365::PreflightReport) -> serde_json::Value {
    use repli_core::m365::CheckStatus;
    serde_json::json!(
        report
            .checks
            .iter()
            .map(|c| {
                let (label, class) = match c.status {
                    CheckStatus::Ok => ("Conforme", "ok"),
                    CheckStatus::Warn => ("À revoir", "risque"),
                    CheckStatus::Fail => ("Échec", "retard"),
                };
                serde_json::json!({ "title": c.title, "label": label, "class": class, "detail": c.detail, "fix": c.fix })
            })
            .collect::<Vec<_>>()
    )
}

/// `GET /m365`: the last preflight in full.
pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    axum::Extension(crate::web::SessionCsrf(csrf)): axum::Extension<crate::web::SessionCsrf>,
) -> axum::response::Response {
    let mut data = crate::web::base(&a, &csrf, "Locataire Microsoft 365");
    if let Some(run) = repli_app::preflight::last(st.app.services()) {
        data.insert("at".into(), serde_json::json!(crate::web::when(&st, Some(run.at))));
        data.insert("ok".into(), serde_json::json!(run.report.ok));
        data.insert("checks".into(), checks_json(&run.report));
    }
    crate::web::render(&st, axum::http::StatusCode::OK, "m365", &serde_json::Value::Object(data))
}

/// `POST /m365`: runs the preflight again, then shows it.
pub async fn rerun(
    State(st): State<AppState>,
    _: crate::web::view::CsrfForm<crate::web::view::NoFields>,
) -> axum::response::Response {
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
