//! The procedures pack over HTTP: thin handlers over `repli_app::documents`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::documents;

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::respond::{DOCUMENT_CSP, sheet_download};

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
