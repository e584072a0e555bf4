//! The credential sheets page (ops): what was handed over, the download of the sheets of new
//! accounts (one download: the passwords exist only in it), and the re-issue of every password
//! behind a confirmation. Errors are French pages, never raw JSON.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_core::Destructive;
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::respond::sheet_download;
use crate::web::view::{CsrfForm, Layout, NoFields, page as render_page};
use crate::web::{ReasonForm, SessionCsrf, Target, api_error_page, confirmation_or_error, confirmed};
use repli_app::documents;

/// The credential sheets of one crisis, as the page shows them.
#[derive(Debug, Serialize)]
struct Sheets {
    crisis: String,
    commune: String,
    accounts: usize,
    issued: usize,
    pending: usize,
    active: bool,
}

/// The page's model (`fiches.hbs` reads it under `sheets`).
#[derive(Debug, Serialize)]
struct SheetsPage {
    sheets: Sheets,
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
    let sheets = Sheets {
        crisis: r.id.to_string(),
        commune: r.commune_name,
        accounts: status.accounts,
        issued: status.issued,
        pending: status.pending(),
        active: status.active,
    };
    let layout = Layout::signed_in(&a, &csrf, "Fiches identifiants").exercise(r.exercise.as_ref());
    render_page(&st, StatusCode::OK, "fiches", &layout, &SheetsPage { sheets })
}

/// Downloads the sheets of the accounts that have none yet.
pub async fn issue(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Response {
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
    CsrfForm(form): CsrfForm<ReasonForm>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::view::{render_model, test_layout};

    #[test]
    fn the_typed_sheets_page_renders_through_the_strict_template() {
        for (issued, pending, active) in [(2, 1, true), (0, 0, true), (0, 3, false)] {
            let sheets =
                Sheets { crisis: "2026-0042".into(), commune: "Cassis".into(), accounts: 3, issued, pending, active };
            let html = render_model("fiches", &test_layout("Fiches identifiants"), &SheetsPage { sheets }).unwrap();
            assert!(html.contains("Fiches identifiants — crise 2026-0042"), "{html}");
            assert_eq!(html.contains("Télécharger les fiches des 1 compte(s)"), active && pending == 1);
        }
    }
}
