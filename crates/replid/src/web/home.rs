//! The home page: the caller's crises (most urgent first), and for ops the tasks waiting, the
//! tenant's last preflight and the campaign (shared stock, waiting list, Graph budget).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::{crises, steps};
use repli_core::{Role, fr};
use repli_proto::api::CrisisView;
use serde_json::{Value, json};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{SessionCsrf, api_error_page, base, render, sla_badge, when};

fn crisis_line(st: &AppState, c: &CrisisView) -> Value {
    json!({
        "id": c.id.as_str(),
        "commune": c.commune_name,
        "state": c.state_label,
        "sla": sla_badge(c.sla.status),
        "due": when(st, Some(c.sla.due_at)),
        "left": fr::duration(jiff::SignedDuration::from_secs(c.sla.remaining_seconds)),
        "exercice": c.exercise.is_some(),
        "used": c.sla.used_percent.min(100),
    })
}

/// The campaign on the ops dashboard: the shared stock, the waiting list and its rule, the
/// tenant's Graph budget (every open crisis's SLA clock is in the table above it).
fn campaign_json(c: &repli_app::campaign::Shared) -> Value {
    json!({
        "stock": c.stock.iter().filter(|s| s.available + s.held + s.missing > 0).map(|s| json!({
            "label": s.label, "available": s.available, "held": s.held, "missing": s.missing,
        })).collect::<Vec<_>>(),
        "waiting": c.waiting.iter().map(|w| json!({
            "position": w.position, "id": w.crisis.as_str(), "commune": w.commune_name, "exercice": w.exercise,
            "missing": w.missing.iter().map(|n| format!("{} {}", n.shortage, n.label)).collect::<Vec<_>>().join(", "),
        })).collect::<Vec<_>>(),
        "rule": c.priority_rule,
        "graph": {
            "limit": c.graph.limit_per_second, "sent": c.graph.sent_last_second,
            "throttled": c.graph.throttled, "retries": c.graph.retries,
        },
    })
}

pub async fn home(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let mut data = base(&a, &csrf, "Accueil");
    if matches!(a.role, Role::Ops | Role::Dgs | Role::Auditor) {
        let home = match crises::home(&st, &a).await {
            Ok(h) => h,
            Err(e) => return api_error_page(&st, &e),
        };
        let open: Vec<Value> = home.open.iter().map(|v| crisis_line(&st, v)).collect();
        let ended: Vec<Value> = home.ended.iter().map(|v| crisis_line(&st, v)).collect();
        data.insert("can_request".into(), json!(home.can_request));
        data.insert("open".into(), json!(open));
        data.insert("ended".into(), json!(ended));
    }
    if a.role == Role::Ops {
        let tasks = match steps::task_views(&st).await {
            Ok(t) => t.len(),
            Err(e) => return api_error_page(&st, &e),
        };
        data.insert("tasks".into(), json!(tasks));
        data.insert("m365".into(), m365_line(&st));
        match repli_app::campaign::shared(&st).await {
            Ok(c) => data.insert("campagne".into(), campaign_json(&c)),
            Err(e) => return api_error_page(&st, &e),
        };
    }
    render(&st, StatusCode::OK, "accueil", &Value::Object(data))
}

/// The last Microsoft 365 preflight on the ops dashboard: passed or not, when, what failed.
fn m365_line(st: &AppState) -> Value {
    match repli_app::preflight::last(st.app.services()) {
        None => json!({ "pending": true }),
        Some(run) => json!({
            "ok": run.report.ok,
            "at": when(st, Some(run.at)),
            "failures": run.report.failures().map(|c| c.title.clone()).collect::<Vec<_>>(),
        }),
    }
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
        "/",
        Page(P::OwnAccount),
        routing::get(home),
        Doc::page("Home: the caller's crises, tasks and dashboard"),
    )]
}
