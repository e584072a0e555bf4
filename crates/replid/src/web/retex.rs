//! The after-action report (RETEX) of a crisis.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_core::fr;
use repli_core::run::PlaybookName;
use repli_proto::api::{LogEntryView, RetexStep};
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{Layout, page};
use crate::web::{SessionCsrf, api_error_page, when};

/// A step of the report: planned and actual (the longest waits use the same lines).
#[derive(Debug, Serialize)]
struct Step {
    /// « Préparation » or « Restitution ».
    run: &'static str,
    title: String,
    planned: String,
    actual: Option<String>,
    /// Over the plan: the gap is shown in bold.
    late: bool,
    /// `+1 h 05 min` over, `−10 min` under the plan.
    gap: Option<String>,
    attempts: u32,
    waited: Option<String>,
    /// Who confirmed a manual step.
    who: Option<String>,
    state: &'static str,
}

/// The first log entry written after an inject.
#[derive(Debug, Serialize)]
struct Answer {
    who: String,
    kind: String,
    text: String,
}

#[derive(Debug, Serialize)]
struct Inject {
    at: String,
    text: String,
    response: Option<Answer>,
    /// How long the answer took.
    after: Option<String>,
}

/// A log entry (main courante).
#[derive(Debug, Serialize)]
struct LogLine {
    at: String,
    who: String,
    kind: String,
    text: String,
}

#[derive(Debug, Serialize)]
struct Report {
    id: String,
    commune: String,
    requested: String,
    ready: Option<String>,
    /// Business time from the request to the kit ready (or elapsed so far).
    to_ready: String,
    /// The SLA in business hours.
    hours: u32,
    sla: &'static str,
    /// The activation's critical path, planned and actual.
    planned: String,
    actual: Option<String>,
    steps: Vec<Step>,
    waits: Vec<Step>,
    injects: Vec<Inject>,
    log: Vec<LogLine>,
}

#[derive(Debug, Serialize)]
struct RetexPage {
    r: Report,
}

fn duration(secs: i64) -> String {
    fr::duration(jiff::SignedDuration::from_secs(secs))
}

fn step(s: &RetexStep) -> Step {
    let gap = s.actual_secs.map(|a| a - s.planned_secs);
    Step {
        run: if s.playbook == PlaybookName::Activation { "Préparation" } else { "Restitution" },
        title: s.title.clone(),
        planned: duration(s.planned_secs),
        actual: s.actual_secs.map(duration),
        late: gap.is_some_and(|g| g > 0),
        gap: gap.map(|g| if g > 0 { format!("+{}", duration(g)) } else { format!("−{}", duration(-g)) }),
        attempts: s.attempts,
        waited: s.waited_secs.map(duration),
        who: s.confirmed_by.clone(),
        state: s.state.label_fr(),
    }
}

fn log_line(st: &AppState, e: &LogEntryView) -> LogLine {
    LogLine { at: when(st, Some(e.at)), who: e.author.clone(), kind: e.type_label.clone(), text: e.text.clone() }
}

/// The after-action report (RETEX), in French, for print.
pub async fn retex(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    let r = match repli_app::retex::report(&st, &a, &id).await {
        Ok(r) => r,
        Err(e) => return api_error_page(&st, &e),
    };
    let injects = r
        .injects
        .iter()
        .map(|i| Inject {
            at: when(&st, Some(i.inject.at)),
            text: i.inject.text.clone(),
            response: i.response.as_ref().map(|e| Answer {
                who: e.author.clone(),
                kind: e.type_label.clone(),
                text: e.text.clone(),
            }),
            after: i.response_secs.map(duration),
        })
        .collect();
    let report = Report {
        id: r.crisis.to_string(),
        commune: r.commune_name.clone(),
        requested: when(&st, Some(r.requested_at)),
        ready: r.ready_at.map(|t| when(&st, Some(t))),
        to_ready: duration(r.business_secs_to_ready),
        hours: r.business_hours,
        sla: r.sla_status.label_fr(),
        planned: duration(r.planned_critical_secs),
        actual: r.actual_activation_secs.map(duration),
        steps: r.steps.iter().map(step).collect(),
        waits: r.longest_waits.iter().map(step).collect(),
        injects,
        log: r.log.iter().map(|e| log_line(&st, e)).collect(),
    };
    let layout = Layout::signed_in(&a, &csrf, format!("RETEX {}", r.crisis)).exercise(r.exercise.as_ref());
    page(&st, StatusCode::OK, "retex", &layout, &RetexPage { r: report })
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
        "/crises/{id}/retex",
        Page(P::ReadSlaReport),
        routing::get(retex),
        Doc::page("The after-action report (RETEX), for print"),
    )]
}
