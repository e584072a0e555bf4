//! Audit API handlers (auditors): verification, entries, the offline bundle.

use axum::Json;
use axum::extract::{Query, State};
use repli_app::crises;
use repli_core::audit::AuditBundle;
use repli_proto::api::{AuditPage, AuditQuery, AuditVerifyView};

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;

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

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::ProblemCode as C;
    use repli_proto::api::{AuditPage, AuditQuery, AuditVerifyView};
    vec![
        (
            Method::GET,
            "/api/v1/audit/verify",
            Requires(P::ReadAudit),
            routing::get(verify),
            Doc::api::<AuditVerifyView>("Verify the audit chain and its signed checkpoints"),
        ),
        (
            Method::GET,
            "/api/v1/audit/entries",
            Requires(P::ReadAudit),
            routing::get(entries),
            Doc::api::<AuditPage>("Audit entries, filtered and paged").query::<AuditQuery>(),
        ),
        (
            Method::GET,
            "/api/v1/audit/bundle",
            Requires(P::ReadAudit),
            routing::get(bundle),
            Doc::api::<AuditBundle>("Everything needed to verify the log offline"),
        ),
        (
            Method::GET,
            "/api/v1/audit/head",
            Requires(P::ReadAudit),
            routing::get(head),
            Doc::api::<repli_core::Checkpoint>("The last signed checkpoint").problems(&[C::NoCheckpoint]),
        ),
    ]
}
