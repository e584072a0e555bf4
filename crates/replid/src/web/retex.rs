//! The after-action report (RETEX) of a crisis.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_core::fr;
use serde_json::{Value, json};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{SessionCsrf, api_error_page, base, render, when};

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
    let d = |s: i64| fr::duration(jiff::SignedDuration::from_secs(s));
    let step = |s: &repli_proto::api::RetexStep| {
        let gap = s.actual_secs.map(|a| a - s.planned_secs);
        json!({
            "run": if s.playbook == repli_core::run::PlaybookName::Activation { "Préparation" } else { "Restitution" },
            "title": s.title, "planned": d(s.planned_secs), "actual": s.actual_secs.map(d),
            "late": gap.is_some_and(|g| g > 0), "gap": gap.map(|g| if g > 0 { format!("+{}", d(g)) } else { format!("−{}", d(-g)) }),
            "attempts": s.attempts, "waited": s.waited_secs.map(d), "who": s.confirmed_by, "state": s.state.label_fr(),
        })
    };
    let mut data = base(&a, &csrf, &format!("RETEX {}", r.crisis));
    crate::web::mark_exercise(&mut data, r.exercise.as_ref());
    let injects: Vec<Value> = r
        .injects
        .iter()
        .map(|i| {
            json!({
                "at": when(&st, Some(i.inject.at)), "text": i.inject.text,
                "response": i.response.as_ref().map(|e| json!({ "who": e.author, "kind": e.type_label, "text": e.text })),
                "after": i.response_secs.map(d),
            })
        })
        .collect();
    data.insert(
        "r".into(),
        json!({
            "id": r.crisis.as_str(), "commune": r.commune_name, "requested": when(&st, Some(r.requested_at)),
            "ready": r.ready_at.map(|t| when(&st, Some(t))), "to_ready": d(r.business_secs_to_ready),
            "hours": r.business_hours, "sla": r.sla_status.label_fr(),
            "planned": d(r.planned_critical_secs), "actual": r.actual_activation_secs.map(d),
            "steps": r.steps.iter().map(step).collect::<Vec<_>>(),
            "waits": r.longest_waits.iter().map(step).collect::<Vec<_>>(),
            "injects": injects,
            "log": r.log.iter().map(|e| json!({ "at": when(&st, Some(e.at)), "kind": e.type_label, "who": e.author, "text": e.text })).collect::<Vec<_>>(),
        }),
    );
    render(&st, StatusCode::OK, "retex", &Value::Object(data))
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
