//! The procedures pack over HTTP: thin handlers over `repli_app::documents`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::documents;

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::respond::{DOCUMENT_CSP, sheet_download};

pub async fn list(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Vec<String>>, ApiError> {
    Ok(axum::Json(documents::list(&st, &a, &id).await?))
}

pub async fn one(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, file)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let content = documents::one(&st, &a, &id, &file).await?;
    let ct = if file.ends_with(".md") { "text/markdown; charset=utf-8" } else { "text/html; charset=utf-8" };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, ct)], content).into_response();
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCUMENT_CSP));
    Ok(resp)
}

pub async fn zip(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (name, bytes) = documents::zip(&st, &a, &id).await?;
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/zip")], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// The sheets of the accounts that have none yet.
pub async fn issue_sheets(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (name, html) = documents::issue_sheets(&st, &a, &id).await?;
    Ok(sheet_download(&name, html))
}

/// New passwords for every account, with a reason.
pub async fn reissue_sheets(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<repli_proto::api::ReissueRequest>,
) -> Result<Response, ApiError> {
    let (name, html) = documents::reissue_sheets(&st, &a, &id, &req.reason).await?;
    Ok(sheet_download(&name, html))
}

/// The data hand-back's archive (zip), streamed and resumable (`Range`).
pub async fn handback_archive(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let (name, path) = repli_app::handback::archive_for(&st, &a, &id).await?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    Ok(crate::http::respond::file_download(&path, &name, "application/zip", range).await)
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Answer;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::ProblemCode as C;
    use repli_proto::api::ReissueRequest;
    vec![
        (
            Method::GET,
            "/api/v1/crises/{id}/documents",
            Requires(P::ReadCrises),
            routing::get(list),
            Doc::answering("The procedures pack's file names", Answer::Strings),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/documents.zip",
            Requires(P::ReadCrises),
            routing::get(zip),
            Doc::answering("The procedures pack as a zip", Answer::Zip),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/handback.zip",
            Requires(P::DownloadHandback),
            routing::get(handback_archive),
            Doc::answering(
                "The data hand-back's archive: the commune's mail and files with their signed manifest (streamed; `Range` answers 206)",
                Answer::Zip,
            )
            .problems(&[C::HandbackArchiveNotReady]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/documents/{file}",
            Requires(P::ReadCrises),
            routing::get(one),
            Doc::answering("One document of the pack", Answer::Document).problems(&[C::UnknownDocument]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/credential-sheets",
            Requires(P::OperateCrisis),
            routing::post(issue_sheets),
            Doc::answering("Issue the credential sheets of the accounts without one (an HTML download)", Answer::Html)
                .problems(&[C::NoAccountsYet, C::CredentialSheetsIssued, C::M365Refused]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/credential-sheets/reissue",
            Requires(P::OperateCrisis),
            routing::post(reissue_sheets),
            Doc::answering("Set every password again, with a reason (an HTML download)", Answer::Html)
                .body::<ReissueRequest>()
                .problems(&[C::NoAccountsYet, C::ReasonRequired, C::M365Refused]),
        ),
    ]
}
