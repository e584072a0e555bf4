//! The service's own routes: liveness, readiness, metrics, the OpenAPI document, and who the
//! caller is.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use repli_proto::api::{Health, Me, Readiness};

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;

pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Ready to work: the database takes writes (with room to spare), the audit chain verified at
/// start, the engine runs, the last Microsoft 365 preflight did not fail. 503 otherwise, saying
/// which and why (and nothing more: the route is public).
pub async fn ready(State(st): State<AppState>) -> Response {
    let storage = st.app.services().storage_status().await;
    let audit = st.app.services().writes_stopped();
    let engine = st.engine_running.load(std::sync::atomic::Ordering::Acquire);
    let m365 = repli_app::preflight::last(st.app.services()).is_none_or(|run| run.report.ok);
    let mut reasons = Vec::new();
    reasons.extend(storage.reason.clone());
    if let Some(why) = &audit {
        reasons.push(format!("audit_chain_broken: {why}"));
    }
    if !engine {
        reasons.push("engine_stopped: the playbook engine is not running".to_owned());
    }
    if !m365 {
        reasons.push("m365_preflight_failed: the last Microsoft 365 preflight failed".to_owned());
    }
    let r = Readiness {
        ready: reasons.is_empty(),
        database: storage.writable,
        engine,
        m365,
        audit: audit.is_none(),
        reasons,
    };
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r)).into_response()
}

/// The supervision metrics, read now.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let body = repli_app::metrics::render(st.app.services()).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, repli_app::metrics::CONTENT_TYPE)], body).into_response())
}

/// The OpenAPI document, built once from the route table.
pub async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| {
        serde_json::to_vec(&crate::http::openapi::document(&crate::http::routes::route_specs())).unwrap_or_default()
    });
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body.as_slice()).into_response()
}

pub async fn me(Authed(a): Authed) -> Json<Me> {
    Json(Me { user_id: a.user_id, name: a.name, role: a.role, commune: a.commune })
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::{Public, Requires};
    use crate::http::spec::Answer;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::api::{Health, Me, Readiness};
    vec![
        (Method::GET, "/healthz", Public, routing::get(health), Doc::api::<Health>("Liveness: the process answers")),
        (
            Method::GET,
            "/readyz",
            Public,
            routing::get(ready),
            Doc::api::<Readiness>(
                "Readiness: database writable, engine running, last Microsoft 365 preflight not failed",
            )
            .may_be_unavailable(),
        ),
        (
            Method::GET,
            "/metrics",
            Requires(P::ReadMetrics),
            routing::get(metrics),
            Doc::answering("Supervision metrics (Prometheus / OpenMetrics text)", Answer::Metrics),
        ),
        (
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            routing::get(openapi_json),
            Doc::answering("This document (OpenAPI 3.1)", Answer::Object),
        ),
        (Method::GET, "/api/v1/me", Requires(P::OwnAccount), routing::get(me), Doc::api::<Me>("Who the caller is")),
    ]
}
