//! Playbook progress, manual tasks, and ops' retry/skip of steps.

use axum::Json;
use axum::extract::{Path, State};
use repli_core::playbook::{Pos, StepKind};
use repli_core::{Actor, Role, text};
use repli_proto::api::{RunView, StepActionRequest, StepView, StepsView, TaskDoneRequest, TaskView};
use repli_store::{By, StepRecord};
use std::collections::BTreeSet;

use crate::AppState;
use crate::api::{ApiJson, visible_crisis};
use crate::auth::Authed;
use crate::error::ApiError;

fn rendered(s: &StepRecord) -> (Option<String>, Vec<String>) {
    let r = s.rendered.as_ref();
    let instructions = r.and_then(|v| v["instructions"].as_str().map(str::to_string));
    let checklist = r
        .and_then(|v| {
            v["checklist"].as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
        })
        .unwrap_or_default();
    (instructions, checklist)
}

pub fn step_view(s: &StepRecord, with_output: bool) -> StepView {
    let (instructions, checklist) = rendered(s);
    StepView {
        step: s.step_id.clone(),
        kind: s.kind.clone(),
        group: StepKind::parse(&s.kind).map_or("Autres", StepKind::group).to_string(),
        title: s.title.clone(),
        state: s.state,
        state_label: s.state.label_fr().to_string(),
        needs: s.needs.clone(),
        attempts: s.attempts,
        max_attempts: s.max_attempts,
        estimate_secs: s.estimate_secs,
        started_at: s.first_started_at,
        finished_at: s.finished_at,
        last_error: s.last_error.clone(),
        instructions,
        checklist,
        confirmed_by: s.confirmed_by.clone(),
        confirmed_at: s.confirmed_at,
        note: s.note.clone(),
        output: if with_output { s.output.clone() } else { None },
    }
}

/// The playbook model of stored steps, for the work-left estimate.
fn as_playbook(name: &str, steps: &[StepRecord]) -> repli_core::Playbook {
    repli_core::Playbook {
        name: name.to_string(),
        description: String::new(),
        steps: steps
            .iter()
            .map(|s| repli_core::Step {
                id: s.step_id.clone(),
                kind: StepKind::parse(&s.kind).unwrap_or(StepKind::Manual),
                title: s.title.clone(),
                needs: s.needs.clone(),
                estimate: jiff::SignedDuration::from_secs(s.estimate_secs),
                budget: jiff::SignedDuration::from_secs(s.budget_secs),
                attempts: s.max_attempts,
                params: Default::default(),
                instructions: None,
                checklist: Vec::new(),
                pos: Pos::default(),
                needs_pos: Vec::new(),
            })
            .collect(),
    }
}

/// Estimated work left in a run (longest chain through unfinished steps).
pub fn remaining(name: &str, steps: &[StepRecord]) -> jiff::SignedDuration {
    let done: BTreeSet<String> = steps.iter().filter(|s| s.state.is_done()).map(|s| s.step_id.clone()).collect();
    as_playbook(name, steps).remaining(&done)
}

pub async fn steps_of(st: &AppState, a: &Actor, id: &str) -> Result<StepsView, ApiError> {
    let r = visible_crisis(st, a, id).await?;
    let with_output = matches!(a.role, Role::Ops | Role::Auditor);
    let mut runs = Vec::new();
    for run in st.store.runs_of(&r.id).await? {
        let steps = st.store.steps(run.id).await?;
        runs.push(RunView {
            remaining_secs: remaining(&run.playbook, &steps).as_secs(),
            playbook: run.playbook,
            state: run.state,
            created_at: run.created_at,
            finished_at: run.finished_at,
            steps: steps.iter().map(|s| step_view(s, with_output)).collect(),
        });
    }
    Ok(StepsView { crisis: r.id, state: r.state, simulation: st.simulation, runs })
}

pub async fn list(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Json<StepsView>, ApiError> {
    Ok(Json(steps_of(&st, a, &id).await?))
}

pub async fn tasks(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<TaskView>>, ApiError> {
    Ok(Json(task_views(&st).await?))
}

/// Manual steps waiting for ops, across crises (API and ops page).
pub async fn task_views(st: &AppState) -> Result<Vec<TaskView>, ApiError> {
    let mut out = Vec::new();
    for (run, step) in st.store.waiting_tasks().await? {
        let (instructions, checklist) = rendered(&step);
        let commune_name = st.store.crisis(&run.crisis_id).await?.map(|c| c.commune_name).unwrap_or_default();
        out.push(TaskView {
            crisis: run.crisis_id,
            commune_name,
            playbook: run.playbook,
            step: step.step_id,
            title: step.title,
            instructions,
            checklist,
            since: step.started_at,
        });
    }
    Ok(out)
}

fn step_name(step: &str) -> Result<&str, ApiError> {
    let ok = !step.is_empty()
        && step.len() <= 64
        && step.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok { Ok(step) } else { Err(ApiError::NotFound { code: "unknown_step", detail: "Étape inconnue.".into() }) }
}

pub async fn done(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path((id, step)): Path<(String, String)>,
    ApiJson(body): ApiJson<TaskDoneRequest>,
) -> Result<Json<StepView>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let note = match body.note.as_deref() {
        Some(n) => Some(text::free_text("note", n, text::NOTE_MAX, false).map_err(|e| ApiError::Validation(vec![e]))?),
        None => None,
    };
    let s = st
        .store
        .confirm_task(&r.id, step_name(&step)?, note.as_deref().filter(|n| !n.is_empty()), By::User(a), st.clock.now())
        .await?;
    tracing::info!(crisis = %r.id, step = %s.step_id, "manual step confirmed");
    st.engine.wake();
    Ok(Json(step_view(&s, true)))
}

async fn operate(
    st: &AppState,
    a: &Actor,
    id: &str,
    step: &str,
    skip: bool,
    body: StepActionRequest,
) -> Result<Json<StepView>, ApiError> {
    let r = visible_crisis(st, a, id).await?;
    let reason =
        text::free_text("reason", &body.reason, text::NOTE_MAX, true).map_err(|e| ApiError::Validation(vec![e]))?;
    let s = st.store.operate_step(&r.id, step_name(step)?, skip, &reason, By::User(a), st.clock.now()).await?;
    tracing::info!(crisis = %r.id, step = %s.step_id, skip, "step operated by ops");
    st.engine.wake();
    Ok(Json(step_view(&s, true)))
}

pub async fn retry(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path((id, step)): Path<(String, String)>,
    ApiJson(body): ApiJson<StepActionRequest>,
) -> Result<Json<StepView>, ApiError> {
    operate(&st, a, &id, &step, false, body).await
}

pub async fn skip(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path((id, step)): Path<(String, String)>,
    ApiJson(body): ApiJson<StepActionRequest>,
) -> Result<Json<StepView>, ApiError> {
    operate(&st, a, &id, &step, true, body).await
}
