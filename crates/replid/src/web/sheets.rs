//! The credential sheets page (ops): what was handed over, the download of the sheets of new
//! accounts (one download: the passwords exist only in it), and the re-issue of every password
//! behind a confirmation. Errors are French pages, never raw JSON.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_core::Destructive;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::respond::sheet_download;
use crate::web::{
    Form, SessionCsrf, Target, api_error_page, base, check_csrf, confirmation_or_error, confirmed, render,
};
use repli_app::documents;

/// What the page shows.
#[derive(Debug, Serialize)]
struct SheetsPage {
    crisis: String,
    commune: String,
    accounts: usize,
    issued: usize,
    pending: usize,
    active: bool,
}

pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    let (r, status) = match documents::sheets_status(&st, &a, &id).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&st, &e),
    };
    let sheets = SheetsPage {
        crisis: r.id.to_string(),
        commune: r.commune_name,
        accounts: status.accounts,
        issued: status.issued,
        pending: status.pending(),
        active: status.active,
    };
    let mut data = base(&a, &csrf, "Fiches identifiants");
    crate::web::mark_exercise(&mut data, r.exercise.as_ref());
    data.insert("sheets".into(), serde_json::to_value(sheets).unwrap_or(Value::Null));
    render(&st, StatusCode::OK, "fiches", &Value::Object(data))
}

/// Downloads the sheets of the accounts that have none yet.
pub async fn issue(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&st, &csrf, &form) {
        return *r;
    }
    match documents::issue_sheets(&st, &a, &id).await {
        Ok((name, html)) => sheet_download(&name, html),
        Err(e) => api_error_page(&st, &e),
    }
}

async fn reissue_target(
    st: &AppState,
    a: &repli_core::Actor,
    id: &str,
) -> Result<(repli_app::records::CrisisRecord, Target), repli_app::AppError> {
    let (r, status) = documents::sheets_status(st, a, id).await?;
    let subject = Some(format!("{} compte(s)", status.accounts));
    let action = format!("/crises/{}/fiches-identifiants/reinitialiser", r.id);
    Ok((r, Target { what: Destructive::ReissueCredentials, subject, action }))
}

pub async fn reissue_page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    confirmation_or_error(&st, &a, &csrf, reissue_target(&st, &a, &id).await)
}

/// Sets new passwords on every account and downloads their sheets; a refusal shows the
/// confirmation again with the error.
pub async fn reissue(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    let (st, a, id) = (&st, &a, &id);
    confirmed(st, a, &csrf, &form, reissue_target(st, a, id), move |reason| async move {
        let (name, html) = documents::reissue_sheets(st, a, id, &reason).await?;
        Ok(sheet_download(&name, html))
    })
    .await
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Answer;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/crises/{id}/fiches-identifiants",
            Page(P::OperateCrisis),
            routing::get(page),
            Doc::page("Credential sheets"),
        ),
        (
            Method::POST,
            "/crises/{id}/fiches-identifiants",
            Page(P::OperateCrisis),
            routing::post(issue),
            Doc::answering("Issue the credential sheets (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/crises/{id}/fiches-identifiants/reinitialiser",
            Page(P::OperateCrisis),
            routing::get(reissue_page),
            Doc::page("Reissuing the credential sheets: consequences and confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/fiches-identifiants/reinitialiser",
            Page(P::OperateCrisis),
            routing::post(reissue),
            Doc::answering("Reissue the credential sheets (a download)", Answer::Html),
        ),
    ]
}
