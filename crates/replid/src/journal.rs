//! Audit API handlers (auditors): verification, entries, the offline bundle.

use axum::Json;
use axum::extract::{Query, State};
use repli_app::crises;
use repli_core::audit::AuditBundle;
use repli_proto::api::{AuditPage, AuditQuery, AuditVerifyView};

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;

pub async fn verify(State(st): State<AppState>, _: Authed) -> Result<Json<AuditVerifyView>, ApiError> {
    Ok(Json(crises::audit_verify(&st).await?))
}

pub async fn entries(
    State(st): State<AppState>,
    _: Authed,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = q?;
    Ok(Json(crises::audit_entries(&st, q).await?))
}

pub async fn head(State(st): State<AppState>, _: Authed) -> Result<Json<repli_core::Checkpoint>, ApiError> {
    Ok(Json(crises::audit_head(&st).await?))
}

pub async fn bundle(State(st): State<AppState>, _: Authed) -> Result<Json<AuditBundle>, ApiError> {
    Ok(Json(crises::audit_bundle(&st).await?))
}
