//! Equipment API handlers: thin over `repli_app::inventory`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use repli_app::inventory;
use repli_proto::api::{
    AgentView, AgentsRequest, CheckinRequest, ImportRequest, ImportView, InventoryStatusLine, ItemDetail, ItemView,
    LendRequest, LoanView, ServiceRequest, WipeRequest, WriteOffRequest,
};

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

pub async fn import(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<Json<ImportView>, ApiError> {
    Ok(Json(ImportView { imported: inventory::import(&st, &a, &req).await? }))
}

pub async fn status(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<InventoryStatusLine>>, ApiError> {
    Ok(Json(inventory::status(&st).await?))
}

pub async fn items(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<ItemView>>, ApiError> {
    Ok(Json(inventory::items(&st).await?))
}

pub async fn item(
    State(st): State<AppState>,
    _: Authed,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<ItemDetail>, ApiError> {
    Ok(Json(inventory::item(&st, &serial).await?))
}

pub async fn wipe(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<WipeRequest>,
) -> Result<Json<ItemDetail>, ApiError> {
    Ok(Json(inventory::wipe(&st, &a, &serial, &req).await?))
}

pub async fn service(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<ServiceRequest>,
) -> Result<Json<ItemDetail>, ApiError> {
    Ok(Json(inventory::service(&st, &a, &serial, &req).await?))
}

pub async fn set_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AgentsRequest>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(inventory::agents_request(&st, &a, &id, &req, inventory::ListChange::Replace).await?))
}

pub async fn add_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AgentsRequest>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(inventory::agents_request(&st, &a, &id, &req, inventory::ListChange::Add).await?))
}

pub async fn accept_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<repli_proto::api::CrisisView>, ApiError> {
    inventory::accept_agents(&st, &a, &id).await?;
    Ok(Json(repli_app::crises::get(&st, &a, &id).await?))
}

pub async fn agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(inventory::agents(&st, &a, &id).await?))
}

pub async fn loans(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<LoanView>>, ApiError> {
    Ok(Json(inventory::loans(&st, &a, &id).await?))
}

pub async fn lend(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<LendRequest>,
) -> Result<(StatusCode, Json<Vec<LoanView>>), ApiError> {
    Ok((StatusCode::CREATED, Json(inventory::lend(&st, &a, &id, &req).await?)))
}

pub async fn check_in(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CheckinRequest>,
) -> Result<Json<Vec<LoanView>>, ApiError> {
    Ok(Json(inventory::check_in(&st, &a, &id, &req).await?))
}

pub async fn write_off(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<WriteOffRequest>,
) -> Result<Json<Vec<LoanView>>, ApiError> {
    Ok(Json(inventory::write_off(&st, &a, &id, &req).await?))
}
