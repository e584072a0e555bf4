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
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};

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

pub async fn check(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<repli_proto::api::CheckRequest>,
) -> Result<Json<ItemDetail>, ApiError> {
    Ok(Json(inventory::check(&st, &a, &serial, &req).await?))
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

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::ProblemCode as C;
    use repli_proto::api::{
        AgentView, AgentsRequest, CheckinRequest, CrisisView, ImportRequest, ImportView, InventoryStatusLine,
        ItemDetail, ItemView, LendRequest, LoanView, ServiceRequest, WipeRequest, WriteOffRequest,
    };
    vec![
        (
            Method::POST,
            "/api/v1/inventory/import",
            Requires(P::ManageInventory),
            routing::post(import),
            Doc::api::<ImportView>("Import the pool from CSV, all files or none")
                .body::<ImportRequest>()
                .beyond_schema(&["each `csv` is a pool file whose lines parse (`import_refused`, `invalid_fields`)"])
                .problems(&[C::ImportRefused]),
        ),
        (
            Method::GET,
            "/api/v1/inventory",
            Requires(P::ReadInventory),
            routing::get(status),
            Doc::list::<InventoryStatusLine>("Pool counts by kind"),
        ),
        (
            Method::GET,
            "/api/v1/inventory/items",
            Requires(P::ReadInventory),
            routing::get(items),
            Doc::list::<ItemView>("Every item"),
        ),
        (
            Method::GET,
            "/api/v1/inventory/items/{serial}",
            Requires(P::ReadInventory),
            routing::get(item),
            Doc::api::<ItemDetail>("An item and its history").problems(&[C::UnknownItem]),
        ),
        (
            Method::POST,
            "/api/v1/inventory/items/{serial}/wipe",
            Requires(P::ManageInventory),
            routing::post(wipe),
            Doc::api::<ItemDetail>("Record a wipe and its certificate")
                .body::<WipeRequest>()
                .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::POST,
            "/api/v1/inventory/items/{serial}/check",
            Requires(P::ManageInventory),
            routing::post(check),
            Doc::api::<ItemDetail>(
                "Record the check that puts a returned router, SIM or printer back in stock (laptops and phones: a wipe)",
            )
            .body::<repli_proto::api::CheckRequest>()
            .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::POST,
            "/api/v1/inventory/items/{serial}/service",
            Requires(P::ManageInventory),
            routing::post(service),
            Doc::api::<ItemDetail>("Move an item in or out of service")
                .body::<ServiceRequest>()
                .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/agents",
            Requires(P::ReadCrises),
            routing::get(agents),
            Doc::list::<AgentView>("The named agents"),
        ),
        (
            Method::PUT,
            "/api/v1/crises/{id}/agents",
            Requires(P::WriteCrisisLog),
            routing::put(set_agents),
            Doc::list::<AgentView>("Replace the named agents").body::<AgentsRequest>().problems(&[C::CrisisEnded]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/agents",
            Requires(P::WriteCrisisLog),
            routing::post(add_agents),
            Doc::list::<AgentView>("Add agents")
                .body::<AgentsRequest>()
                .problems(&[C::CrisisEnded])
                .beyond_schema(&["one agent at least"]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/agents/accept",
            Requires(P::OperateCrisis),
            routing::post(accept_agents),
            Doc::api::<CrisisView>("Accept the named agents as the whole list").problems(&[C::CrisisEnded]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/loans",
            Requires(P::ReadCrises),
            routing::get(loans),
            Doc::list::<LoanView>("The loans of a crisis"),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/loans",
            Requires(P::ManageInventory),
            routing::post(lend),
            Doc::list::<LoanView>("Lend an item").body::<LendRequest>().status(201).problems(&[
                C::UnknownItem,
                C::ItemConflict,
                C::CrisisEnded,
            ]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/checkin",
            Requires(P::ManageInventory),
            routing::post(check_in),
            Doc::list::<LoanView>("Check an item in")
                .body::<CheckinRequest>()
                .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/write-off",
            Requires(P::ManageInventory),
            routing::post(write_off),
            Doc::list::<LoanView>("Write a lent item off").body::<WriteOffRequest>().problems(&[
                C::UnknownItem,
                C::ItemConflict,
                C::ReasonRequired,
            ]),
        ),
    ]
}
