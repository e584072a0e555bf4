//! Crisis API handlers: each parses, calls one operation of `repli_app::crises`, and answers.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use repli_app::{AppError, crises};
use repli_core::CrisisAction;
use repli_proto::IDEMPOTENCY_HEADER;
use repli_proto::api::{
    ActionRequest, CampaignView, CommuneView, CrisisQuery, CrisisRequest, CrisisView, LegalDoneRequest,
    LegalFactsRequest, LogEntryRequest, LogEntryView, NotificationView, RetexView, SlaReportLine, SuspendRequest,
};

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

pub async fn list_communes(State(st): State<AppState>, Authed(a): Authed) -> Result<Json<Vec<CommuneView>>, ApiError> {
    Ok(Json(crises::communes(&st, &a).await?))
}

pub async fn get_commune(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(insee): ApiPath<String>,
) -> Result<Json<CommuneView>, ApiError> {
    Ok(Json(crises::commune(&st, &a, &insee).await?))
}

pub async fn list(
    State(st): State<AppState>,
    Authed(a): Authed,
    q: QueryResult<CrisisQuery>,
) -> Result<Json<Vec<CrisisView>>, ApiError> {
    let Query(q) = q?;
    Ok(Json(crises::list(&st, &a, q).await?))
}

pub async fn get(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::get(&st, &a, &id).await?))
}

pub async fn create(
    State(st): State<AppState>,
    Authed(a): Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CrisisRequest>,
) -> Result<Response, ApiError> {
    let key = crises::idempotency_key(headers.get(IDEMPOTENCY_HEADER).map(HeaderValue::as_bytes))?;
    let (rec, created) = crises::request(&st, &a, &req, key.as_deref()).await?;
    let view = crises::view(&st, rec).await?;
    let mut resp = (if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)).into_response();
    if !created {
        resp.headers_mut().insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Any action but `cancel` (its own route, with its own permission).
pub async fn act(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, action)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    let action = crises::parse_action(&action)?;
    if action == CrisisAction::Cancel {
        // Unreachable through the router (the static route wins); refuse rather than bypass.
        return Err(AppError::Forbidden("Action non autorisée pour votre rôle.").into());
    }
    Ok(Json(crises::apply(&st, &a, &id, action, body).await?))
}

/// `cancel`: ops, or the commune's DGS.
pub async fn cancel(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::apply(&st, &a, &id, CrisisAction::Cancel, body).await?))
}

pub async fn suspend_sla(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SuspendRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::suspend_sla(&st, &a, &id, &body.reason).await?))
}

pub async fn resume_sla(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::resume_sla(&st, &a, &id).await?))
}

pub async fn set_legal_facts(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LegalFactsRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::set_legal_facts(&st, &a, &id, body).await?))
}

pub async fn legal_done(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, kind)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<LegalDoneRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::legal_done(&st, &a, &id, &kind, body.at).await?))
}

pub async fn sla_report(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<SlaReportLine>>, ApiError> {
    Ok(Json(crises::sla_report(&st).await?))
}

/// Every open crisis together: SLA clocks, shared stock, waiting list, Graph budget.
pub async fn campaign(State(st): State<AppState>, _: Authed) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(repli_app::campaign::view(&st).await?))
}

pub async fn notifications(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<NotificationView>>, ApiError> {
    Ok(Json(crises::notifications(&st).await?))
}

pub async fn retex(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RetexView>, ApiError> {
    Ok(Json(repli_app::retex::report(&st, &a, &id).await?))
}

pub async fn retry_notification(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    repli_app::notify::retry(&st, &a, id).await?;
    Ok(Json(crises::notifications(&st).await?))
}

pub async fn log(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<LogEntryView>>, ApiError> {
    Ok(Json(crises::log(&st, &a, &id).await?))
}

pub async fn add_log(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LogEntryRequest>,
) -> Result<(StatusCode, Json<LogEntryView>), ApiError> {
    Ok((StatusCode::CREATED, Json(crises::add_log(&st, &a, &id, &body.kind, &body.text).await?)))
}

/// The crisis zone as each authoritative server serves it.
pub async fn dns(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<repli_proto::api::DnsCheckView>, ApiError> {
    Ok(Json(repli_app::dns::check(&st, &a, &id).await?))
}
