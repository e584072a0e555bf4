//! The home page: the caller's crises (most urgent first), and for ops the tasks waiting, the
//! tenant's last preflight and the campaign (shared stock, waiting list, Graph budget).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::{crises, steps};
use repli_core::{Role, fr};
use repli_proto::api::CrisisView;
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{Layout, page};
use crate::web::{SessionCsrf, SlaBadge, api_error_page, sla_badge, when};

/// A crisis of the caller's lists (open ones in the table, ended ones in a list).
#[derive(Debug, Serialize)]
struct CrisisLine {
    id: String,
    commune: String,
    state: String,
    /// The SLA status badge (`class`, `label`), from the pages' shared helper.
    sla: SlaBadge,
    due: String,
    /// Business time left.
    left: String,
    exercice: bool,
    /// Share of the SLA used, in percent (100 at most).
    used: u32,
}

/// The tenant's last Microsoft 365 preflight on the ops dashboard.
#[derive(Debug, Serialize)]
struct M365Line {
    /// No preflight has finished yet.
    pending: bool,
    ok: bool,
    at: Option<String>,
    /// The titles of the failed checks.
    failures: Vec<String>,
}

/// One kind of equipment in the shared stock.
#[derive(Debug, Serialize)]
struct StockLine {
    label: String,
    available: i64,
    held: i64,
    missing: i64,
}

/// A crisis waiting for equipment.
#[derive(Debug, Serialize)]
struct WaitingLine {
    id: String,
    commune: String,
    exercice: bool,
    /// What it lacks, in words (« 3 Ordinateur portable, 1 Routeur »).
    missing: String,
}

/// The tenant's Graph budget, shared by every crisis.
#[derive(Debug, Serialize)]
struct GraphBudget {
    limit: Option<u64>,
    sent: u64,
    throttled: u64,
    retries: u64,
}

/// The campaign on the ops dashboard: the shared stock, the waiting list and its rule, the
/// tenant's Graph budget (every open crisis's SLA clock is in the table above it).
#[derive(Debug, Serialize)]
struct Campaign {
    /// The kinds the pool has or lacks (the others are left out).
    stock: Vec<StockLine>,
    waiting: Vec<WaitingLine>,
    rule: &'static str,
    graph: GraphBudget,
}

#[derive(Debug, Serialize)]
struct HomePage {
    /// Shows the « request the kit » button.
    can_request: bool,
    open: Vec<CrisisLine>,
    ended: Vec<CrisisLine>,
    /// Ops only: the manual tasks waiting, the preflight, the campaign.
    tasks: Option<usize>,
    m365: Option<M365Line>,
    campagne: Option<Campaign>,
}

fn crisis_line(st: &AppState, c: &CrisisView) -> CrisisLine {
    CrisisLine {
        id: c.id.to_string(),
        commune: c.commune_name.clone(),
        state: c.state_label.clone(),
        sla: sla_badge(c.sla.status),
        due: when(st, Some(c.sla.due_at)),
        left: fr::duration(jiff::SignedDuration::from_secs(c.sla.remaining_seconds)),
        exercice: c.exercise.is_some(),
        used: c.sla.used_percent.min(100),
    }
}

fn campaign(c: &repli_app::campaign::Shared) -> Campaign {
    Campaign {
        stock: c
            .stock
            .iter()
            .filter(|s| s.available + s.held + s.missing > 0)
            .map(|s| StockLine { label: s.label.clone(), available: s.available, held: s.held, missing: s.missing })
            .collect(),
        waiting: c
            .waiting
            .iter()
            .map(|w| WaitingLine {
                id: w.crisis.to_string(),
                commune: w.commune_name.clone(),
                exercice: w.exercise,
                missing: w.missing.iter().map(|n| format!("{} {}", n.shortage, n.label)).collect::<Vec<_>>().join(", "),
            })
            .collect(),
        rule: c.priority_rule,
        graph: GraphBudget {
            limit: c.graph.limit_per_second,
            sent: c.graph.sent_last_second,
            throttled: c.graph.throttled,
            retries: c.graph.retries,
        },
    }
}

/// The last Microsoft 365 preflight on the ops dashboard: passed or not, when, what failed.
fn m365_line(st: &AppState) -> M365Line {
    match repli_app::preflight::last(st.app.services()) {
        None => M365Line { pending: true, ok: false, at: None, failures: Vec::new() },
        Some(run) => M365Line {
            pending: false,
            ok: run.report.ok,
            at: Some(when(st, Some(run.at))),
            failures: run.report.failures().map(|c| c.title.clone()).collect(),
        },
    }
}

pub async fn home(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let mut body =
        HomePage { can_request: false, open: Vec::new(), ended: Vec::new(), tasks: None, m365: None, campagne: None };
    if matches!(a.role, Role::Ops | Role::Dgs | Role::Auditor) {
        let home = match crises::home(&st, &a).await {
            Ok(h) => h,
            Err(e) => return api_error_page(&st, &e),
        };
        body.can_request = home.can_request;
        body.open = home.open.iter().map(|v| crisis_line(&st, v)).collect();
        body.ended = home.ended.iter().map(|v| crisis_line(&st, v)).collect();
    }
    if a.role == Role::Ops {
        body.tasks = match steps::task_views(&st).await {
            Ok(t) => Some(t.len()),
            Err(e) => return api_error_page(&st, &e),
        };
        body.m365 = Some(m365_line(&st));
        body.campagne = match repli_app::campaign::shared(&st).await {
            Ok(c) => Some(campaign(&c)),
            Err(e) => return api_error_page(&st, &e),
        };
    }
    let layout = Layout::signed_in(&a, &csrf, "Accueil");
    page(&st, StatusCode::OK, "accueil", &layout, &body)
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
