//! The SLA compliance report (auditors and ops).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::crises;
use repli_core::{SlaStatus, fr};
use serde_json::{Value, json};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{SessionCsrf, api_error_page, base, render, sla_badge, when};

pub async fn sla_report(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let lines = match crises::sla_report(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let rows: Vec<Value> = lines
        .iter()
        .map(|l| json!({
            "id": l.crisis.as_str(), "commune": l.commune_name, "state": l.state.label_fr(), "started": when(&st, Some(l.started_at)),
            "due": when(&st, Some(l.due_at)), "ready": when(&st, l.ready_at), "sla": sla_badge(l.status),
            "late": if l.late_seconds > 0 { fr::duration(jiff::SignedDuration::from_secs(l.late_seconds)) } else { String::new() },
            "suspensions": l.suspensions.len(),
        }))
        .collect();
    let met = lines.iter().filter(|l| l.status == SlaStatus::Met).count();
    let mut data = base(&a, &csrf, "Respect du délai de 48 h ouvrées");
    data.insert("rows".into(), json!(rows));
    data.insert("met".into(), json!(met));
    data.insert("total".into(), json!(lines.len()));
    render(&st, StatusCode::OK, "rapport-sla", &Value::Object(data))
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![(
        Method::GET,
        "/rapport-sla",
        Page(P::ReadSlaReport),
        routing::get(sla_report),
        Doc::page("The SLA compliance report"),
    )]
}
