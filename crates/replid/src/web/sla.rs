//! The SLA compliance report (auditors and ops).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::crises;
use repli_core::{SlaStatus, fr};
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{Layout, page};
use crate::web::{SessionCsrf, SlaBadge, api_error_page, sla_badge, when};

/// One crisis of the report.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    commune: String,
    started: String,
    suspensions: usize,
    due: String,
    ready: String,
    /// The SLA status badge (`class`, `label`), from the pages' shared helper.
    sla: SlaBadge,
    /// The delay past the due time, empty when none.
    late: String,
}

#[derive(Debug, Serialize)]
struct SlaPage {
    /// Crises ready within the SLA, out of `total`.
    met: usize,
    total: usize,
    rows: Vec<Row>,
}

pub async fn sla_report(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let lines = match crises::sla_report(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let rows = lines
        .iter()
        .map(|l| Row {
            id: l.crisis.to_string(),
            commune: l.commune_name.clone(),
            started: when(&st, Some(l.started_at)),
            suspensions: l.suspensions.len(),
            due: when(&st, Some(l.due_at)),
            ready: when(&st, l.ready_at),
            sla: sla_badge(l.status),
            late: if l.late_seconds > 0 {
                fr::duration(jiff::SignedDuration::from_secs(l.late_seconds))
            } else {
                String::new()
            },
        })
        .collect();
    let met = lines.iter().filter(|l| l.status == SlaStatus::Met).count();
    let body = SlaPage { met, total: lines.len(), rows };
    let layout = Layout::signed_in(&a, &csrf, "Respect du délai de 48 h ouvrées");
    page(&st, StatusCode::OK, "rapport-sla", &layout, &body)
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
