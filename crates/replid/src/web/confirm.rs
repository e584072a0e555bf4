//! The web's destructive actions: opening the hand-back, calling a kit off, skipping a step,
//! writing an item off. Each one has a confirmation page (GET) that says what will happen and
//! asks for a reason, and the form on it (POST) that does it; a refusal shows the same page
//! again with the reason kept. Retrying a failed step (not destructive) lives here too.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use repli_core::{Actor, CrisisAction, Destructive};
use repli_proto::api::{ActionRequest, WriteOffRequest};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::Flash;
use crate::web::view::CsrfForm;
use crate::web::{ReasonForm, SessionCsrf, Target, back, confirmation_or_error, confirmed};
use repli_app::crises::{self, visible_crisis};
use repli_app::{AppError, inventory, steps};

/// A crisis transition that undoes a kit (hand-back, cancellation): its target, or why it
/// cannot be taken now.
async fn transition_target(
    st: &AppState,
    a: &Actor,
    id: &str,
    action: CrisisAction,
    path: &str,
) -> Result<(repli_app::records::CrisisRecord, Target), AppError> {
    let r = visible_crisis(st, a, id).await?;
    let view = crises::view(st, r.clone()).await?;
    let what = action.destructive(r.state).filter(|_| view.next_actions.contains(&action)).ok_or_else(|| {
        AppError::problem(
            repli_proto::ProblemCode::IllegalTransition,
            format!("Action impossible : la crise {} est à l'état « {} ».", r.id, r.state.label_fr()),
        )
    })?;
    Ok((r, Target { what, subject: None, action: format!("/crises/{}/{path}", view.id) }))
}

async fn transition_page(
    st: AppState,
    a: Actor,
    csrf: String,
    id: String,
    action: CrisisAction,
    path: &str,
) -> Response {
    confirmation_or_error(&st, &a, &csrf, transition_target(&st, &a, &id, action, path).await)
}

async fn transition(
    st: AppState,
    a: Actor,
    csrf: String,
    id: String,
    action: CrisisAction,
    path: &str,
    form: ReasonForm,
) -> Response {
    let target = transition_target(&st, &a, &id, action, path);
    confirmed(&st, &a, &csrf, &form, target, |reason| async {
        let body = ActionRequest { reason: Some(reason).filter(|r| !r.is_empty()) };
        let v = crises::apply(&st, &a, &id, action, body).await?;
        Ok(back(&id, Flash::ok(format!("Crise {} : {}", v.id, v.state_label))))
    })
    .await
}

pub async fn handback_page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    transition_page(st, a, csrf, id, CrisisAction::StartHandback, "restitution").await
}

pub async fn handback(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ReasonForm>,
) -> Response {
    transition(st, a, csrf, id, CrisisAction::StartHandback, "restitution", form).await
}

pub async fn cancel_page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    transition_page(st, a, csrf, id, CrisisAction::Cancel, "annulation").await
}

/// Calling the kit off (the commune's DGS, or ops), with a reason.
pub async fn cancel(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ReasonForm>,
) -> Response {
    transition(st, a, csrf, id, CrisisAction::Cancel, "annulation", form).await
}

/// A step ops may skip: its title, or why not.
async fn skip_target(
    st: &AppState,
    a: &Actor,
    id: &str,
    step: &str,
) -> Result<(repli_app::records::CrisisRecord, Target), AppError> {
    let r = visible_crisis(st, a, id).await?;
    let view = steps::steps_of(st, a, id).await?;
    let s = view
        .runs
        .iter()
        .rev()
        .flat_map(|run| &run.steps)
        .find(|s| s.step == step)
        .ok_or_else(|| AppError::problem(repli_proto::ProblemCode::UnknownStep, "Étape inconnue."))?;
    if !s.state.may_be_skipped() {
        return Err(AppError::problem(
            repli_proto::ProblemCode::StepConflict,
            format!("L'étape « {} » est {} : elle ne peut pas être ignorée.", s.title, s.state_label),
        ));
    }
    let subject = Some(format!("étape « {} » ({})", s.title, s.state_label));
    Ok((
        r,
        Target {
            what: Destructive::SkipStep,
            subject,
            action: format!("/crises/{}/etapes/{}/ignorer", view.crisis, s.step),
        },
    ))
}

pub async fn skip_page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    confirmation_or_error(&st, &a, &csrf, skip_target(&st, &a, &id, &step).await)
}

pub async fn skip(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path((id, step)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ReasonForm>,
) -> Response {
    let (st, a, id, step) = (&st, &a, &id, &step);
    confirmed(st, a, &csrf, &form, skip_target(st, a, id, step), move |reason| async move {
        let s = steps::operate(st, a, id, step, true, &reason).await?;
        Ok(back(id, Flash::ok(format!("« {} » : {}.", s.title, s.state_label))))
    })
    .await
}

/// Retrying a failed step, with a reason typed next to it.
pub async fn retry(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path((id, step)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ReasonForm>,
) -> Response {
    let reason = form.reason();
    match steps::operate(&st, &a, &id, &step, false, &reason).await {
        Ok(s) => back(&id, Flash::ok(format!("« {} » relancée.", s.title))),
        Err(e) => back(&id, Flash::error(e.to_problem().detail)),
    }
}

/// An item the crisis still has out: what it is and who has it.
async fn write_off_target(
    st: &AppState,
    a: &Actor,
    id: &str,
    serial: &str,
) -> Result<(repli_app::records::CrisisRecord, Target), AppError> {
    let r = visible_crisis(st, a, id).await?;
    let loans = inventory::loans_of(st, &r.id).await?;
    let l = loans.iter().find(|l| l.serial == serial && l.is_open()).ok_or_else(|| {
        AppError::problem(
            repli_proto::ProblemCode::ItemConflict,
            "Cet équipement n'est pas en prêt pour cette crise : rien à passer en perte.",
        )
    })?;
    let who = l.agent.as_ref().map(|g| format!(", prêté à {}", g.name)).unwrap_or_default();
    let subject = Some(format!("{} {} (n° de série {}){who}", l.kind.label_fr(), l.asset_tag, l.serial));
    let action =
        format!("/crises/{}/pertes/{}", r.id, form_urlencoded::byte_serialize(l.serial.as_bytes()).collect::<String>());
    Ok((r, Target { what: Destructive::WriteOff, subject, action }))
}

pub async fn write_off_page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path((id, serial)): Path<(String, String)>,
) -> Response {
    confirmation_or_error(&st, &a, &csrf, write_off_target(&st, &a, &id, &serial).await)
}

pub async fn write_off(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path((id, serial)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ReasonForm>,
) -> Response {
    confirmed(&st, &a, &csrf, &form, write_off_target(&st, &a, &id, &serial), |reason| async {
        inventory::write_off(&st, &a, &id, &WriteOffRequest { serial: serial.clone(), reason }).await?;
        Ok(back(&id, Flash::ok(format!("{serial} passé en perte."))))
    })
    .await
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/crises/{id}/annulation",
            Page(P::CancelCrisis),
            routing::get(cancel_page),
            Doc::page("Cancelling a crisis: its consequences, and the confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/annulation",
            Page(P::CancelCrisis),
            routing::post(cancel),
            Doc::form("Cancel a crisis"),
        ),
        (
            Method::GET,
            "/crises/{id}/restitution",
            Page(P::OperateCrisis),
            routing::get(handback_page),
            Doc::page("Starting the hand-back: its consequences, and the confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/restitution",
            Page(P::OperateCrisis),
            routing::post(handback),
            Doc::form("Start the hand-back"),
        ),
        (
            Method::GET,
            "/crises/{id}/etapes/{step}/ignorer",
            Page(P::OperateCrisis),
            routing::get(skip_page),
            Doc::page("Skipping a step: its consequences, and the confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/etapes/{step}/ignorer",
            Page(P::OperateCrisis),
            routing::post(skip),
            Doc::form("Skip a step"),
        ),
        (
            Method::POST,
            "/crises/{id}/etapes/{step}/relancer",
            Page(P::OperateCrisis),
            routing::post(retry),
            Doc::form("Retry a failed step"),
        ),
        (
            Method::GET,
            "/crises/{id}/pertes/{serial}",
            Page(P::ManageInventory),
            routing::get(write_off_page),
            Doc::page("Writing an item off: consequences and confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/pertes/{serial}",
            Page(P::ManageInventory),
            routing::post(write_off),
            Doc::form("Write an item off"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use crate::web::view::{render_model, test_layout};
    use crate::web::{Confirmation, ConfirmationPage};
    use repli_core::Destructive;

    #[test]
    fn the_typed_confirmation_page_renders_through_the_strict_template() {
        for (subject, error) in [(Some("étape « Domaine »".to_owned()), Some("Refusé.".to_owned())), (None, None)] {
            let what = Destructive::SkipStep;
            let confirm = Confirmation {
                title: what.title_fr(),
                crisis: "2026-0042".into(),
                commune: "Cassis".into(),
                subject,
                consequences: what.consequences_fr(),
                action: "/crises/2026-0042/etapes/x/ignorer".into(),
                button: what.button_fr(),
                reason: "motif gardé".into(),
                error,
            };
            let html = render_model("confirmer", &test_layout(what.title_fr()), &ConfirmationPage { confirm }).unwrap();
            assert!(html.contains("action=\"/crises/2026-0042/etapes/x/ignorer\""), "{html}");
            assert!(html.contains("motif gardé</textarea>"), "{html}");
        }
    }
}
