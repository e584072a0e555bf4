//! Playbook progress, manual tasks, and ops' retry/skip of steps.

use repli_core::StepState;
use repli_core::playbook::Pos;
use repli_core::run::ManualTask;
use repli_core::{Actor, Role, text};
use repli_proto::ProblemCode;
use repli_proto::api::{RunView, StepView, StepsView, TaskView};
use repli_store::{By, StepRecord};
use std::collections::BTreeSet;

use crate::crises::visible_crisis;
use crate::{AppError, Services};

fn rendered(s: &StepRecord) -> (Option<String>, Vec<String>) {
    // Rendered when the step starts waiting for a person: before that there is nothing to show.
    let ManualTask { instructions, checklist } = s.rendered.clone().unwrap_or_default();
    (instructions, checklist)
}

/// A step's last error as the commune reads it. A failure's text is written for ops (Graph's
/// codes, a command line): the DGS is told the métropole has it in hand. A wait spends no
/// attempt and its reason is ours, in French, often about the commune (« 0 nom(s) sur 25 »):
/// kept. A retry after a technical error is said as such.
fn error_for_the_commune(s: &StepRecord) -> Option<String> {
    let e = s.last_error.as_ref()?;
    Some(match s.state {
        StepState::Failed => "Incident pris en charge par la métropole.".to_owned(),
        StepState::Pending | StepState::Running if s.attempts == 0 => e.clone(),
        StepState::Pending | StepState::Running => "Incident passager : nouvel essai prévu.".to_owned(),
        _ => return None,
    })
}

/// A step as `a`'s role sees it: ops and auditors get its output, its instructions and its
/// errors as recorded; a DGS none of them (the errors said for the commune).
pub fn step_view(s: &StepRecord, with_output: bool) -> StepView {
    // A manual task's instructions are ops' (command lines, consoles): not the commune's.
    let (instructions, checklist) = if with_output { rendered(s) } else { (None, Vec::new()) };
    StepView {
        step: s.step_id.clone(),
        kind: s.kind.as_str().to_string(),
        group: s.kind.group().to_string(),
        title: s.title.clone(),
        state: s.state,
        state_label: s.state.label_fr().to_string(),
        needs: s.needs.clone(),
        attempts: s.attempts,
        max_attempts: s.max_attempts,
        estimate_secs: s.estimate_secs,
        started_at: s.first_started_at,
        finished_at: s.finished_at,
        last_error: if with_output { s.last_error.clone() } else { error_for_the_commune(s) },
        instructions,
        checklist,
        confirmed_by: s.confirmed_by.clone(),
        confirmed_at: s.confirmed_at,
        note: s.note.clone(),
        output: if with_output { s.output.as_ref().map(repli_core::run::StepOutput::to_json) } else { None },
    }
}

/// Estimated work left along the longest chain of unfinished steps, from each step's id, needs,
/// estimate and whether it is done.
fn remaining_of<'a>(steps: impl Iterator<Item = (&'a str, &'a [String], i64, bool)>) -> jiff::SignedDuration {
    let mut done = BTreeSet::new();
    let mut model = Vec::new();
    for (id, needs, estimate_secs, is_done) in steps {
        if is_done {
            done.insert(id.to_owned());
        }
        model.push(repli_core::Step {
            id: id.to_owned(),
            kind: repli_core::StepKind::Manual,
            title: String::new(),
            needs: needs.to_vec(),
            estimate: jiff::SignedDuration::from_secs(estimate_secs),
            budget: jiff::SignedDuration::ZERO,
            attempts: 1,
            params: Default::default(),
            instructions: None,
            checklist: Vec::new(),
            pos: Pos::default(),
            needs_pos: Vec::new(),
        });
    }
    repli_core::Playbook { name: String::new(), description: String::new(), steps: model }.remaining(&done)
}

/// Estimated work left in a run (longest chain through unfinished steps).
pub fn remaining(steps: &[StepRecord]) -> jiff::SignedDuration {
    remaining_of(steps.iter().map(|s| (s.step_id.as_str(), s.needs.as_slice(), s.estimate_secs, s.state.is_done())))
}

/// A run's whole critical path by the playbook's estimates, as if nothing were done yet.
pub fn planned(steps: &[StepRecord]) -> jiff::SignedDuration {
    remaining_of(steps.iter().map(|s| (s.step_id.as_str(), s.needs.as_slice(), s.estimate_secs, false)))
}

/// The same, from the lean step estimates a crisis view reads.
pub fn remaining_estimated(steps: &[repli_store::StepEstimate]) -> jiff::SignedDuration {
    remaining_of(steps.iter().map(|s| (s.step_id.as_str(), s.needs.as_slice(), s.estimate_secs, s.state.is_done())))
}

pub async fn steps_of(st: &Services, a: &Actor, id: &str) -> Result<StepsView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let with_output = matches!(a.role, Role::Ops | Role::Auditor);
    let mut runs = Vec::new();
    for run in st.store.runs_of(&r.id).await? {
        let steps = st.store.steps(run.id).await?;
        runs.push(RunView {
            remaining_secs: remaining(&steps).as_secs(),
            playbook: run.playbook,
            state: run.state,
            created_at: run.created_at,
            finished_at: run.finished_at,
            steps: steps.iter().map(|s| step_view(s, with_output)).collect(),
        });
    }
    Ok(StepsView { crisis: r.id, state: r.state, simulation: st.simulation, runs })
}

/// What the kit's activation produced so far (accounts, workspace, visio, laptop plan,
/// isolation report): the outputs of its succeeded steps.
pub async fn kit_outputs(st: &Services, id: &repli_core::CrisisId) -> Result<repli_core::run::Outputs, AppError> {
    let mut steps = Vec::new();
    for run in st.store.runs_of(id).await? {
        if run.playbook == repli_core::run::PlaybookName::Activation {
            steps.extend(st.store.steps(run.id).await?);
        }
    }
    Ok(repli_core::run::Outputs::of(&steps))
}

/// Manual steps waiting for ops, across crises (API and ops page).
pub async fn task_views(st: &Services) -> Result<Vec<TaskView>, AppError> {
    let mut out = Vec::new();
    for (run, step) in st.store.waiting_tasks().await? {
        let (instructions, checklist) = rendered(&step);
        let crisis = st.store.crisis(&run.crisis_id).await?;
        let exercise = crisis.as_ref().is_some_and(|c| c.exercise.is_some());
        let commune_name = crisis.map(|c| c.commune_name).unwrap_or_default();
        out.push(TaskView {
            crisis: run.crisis_id,
            commune_name,
            playbook: run.playbook,
            step: step.step_id,
            title: step.title,
            instructions,
            checklist,
            since: step.started_at,
            exercise,
        });
    }
    Ok(out)
}

fn step_name(step: &str) -> Result<&str, AppError> {
    let ok = !step.is_empty()
        && step.len() <= 64
        && step.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok { Ok(step) } else { Err(AppError::problem(ProblemCode::UnknownStep, "Étape inconnue.")) }
}

/// Ops confirm a manual step, with an optional note.
/// A person confirms a manual step. A DNS step (`dns.publish`, `dns.remove`, handed to a
/// person) is first checked against the authoritative servers when Repli can query them: if
/// they do not serve what the step was to do, the confirmation is refused with what differs,
/// unless `unchecked` gives the reason to record it anyway (kept in the audit entry).
pub async fn confirm(
    st: &Services,
    a: &Actor,
    id: &str,
    step: &str,
    note: Option<&str>,
    unchecked: Option<&str>,
) -> Result<StepView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let text_field = |field: &'static str, v: Option<&str>| -> Result<Option<String>, AppError> {
        match v {
            Some(n) => {
                Ok(Some(text::free_text(field, n, text::NOTE_MAX, false).map_err(|e| AppError::Validation(vec![e]))?))
            }
            None => Ok(None),
        }
    };
    let note = text_field("note", note)?;
    let unchecked = text_field("dns_unchecked", unchecked)?.filter(|u| !u.is_empty());
    let name = step_name(step)?;
    let mut differences = None;
    if let Some((steps, s)) = dns_step_waiting(st, &r, name).await? {
        differences = crate::dns::confirmation_differences(st, &r, &steps, &s).await?;
    }
    let unchecked = match differences.as_deref() {
        Some(diff) if !diff.is_empty() => match &unchecked {
            Some(reason) => Some(format!("{reason} — non servi au moment de la confirmation : {}", diff.join(" ; "))),
            None => {
                return Err(AppError::Problem {
                    code: ProblemCode::StepConflict,
                    detail: format!(
                        "Les serveurs DNS ne servent pas ce que l'étape « {name} » devait faire : {}. Publier (ou retirer) les enregistrements puis confirmer de nouveau, ou confirmer en donnant la raison de passer outre (repli task done … --dns-unchecked « raison »).",
                        diff.join(" ; ")
                    ),
                });
            }
        },
        _ => None,
    };
    let s = st
        .store
        .confirm_task(
            &r.id,
            name,
            note.as_deref().filter(|n| !n.is_empty()),
            unchecked.as_deref(),
            By::User(a),
            st.clock.now(),
        )
        .await?;
    tracing::info!(crisis = %r.id, step = %s.step_id, dns_unchecked = unchecked.is_some(), "manual step confirmed");
    st.wake_engine();
    Ok(step_view(&s, true))
}

/// The DNS step `name` of the crisis's current run when it waits for a person, with its run's
/// steps.
async fn dns_step_waiting(
    st: &Services,
    r: &repli_store::CrisisRecord,
    name: &str,
) -> Result<Option<(Vec<StepRecord>, StepRecord)>, AppError> {
    use repli_core::StepState;
    use repli_core::playbook::StepKind;
    let mut found = None;
    for run in st.store.runs_of(&r.id).await? {
        let steps = st.store.steps(run.id).await?;
        if let Some(s) = steps.iter().find(|s| s.step_id == name).cloned() {
            found = Some((steps, s));
        }
    }
    Ok(found.filter(|(_, s)| {
        s.state == StepState::WaitingManual && matches!(s.kind, StepKind::DnsPublish | StepKind::DnsRemove)
    }))
}

/// Ops retry a failed step, or skip one, with a reason.
pub async fn operate(
    st: &Services,
    a: &Actor,
    id: &str,
    step: &str,
    skip: bool,
    reason: &str,
) -> Result<StepView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let reason = text::free_text("reason", reason, text::NOTE_MAX, true).map_err(|e| AppError::Validation(vec![e]))?;
    let s = st.store.operate_step(&r.id, step_name(step)?, skip, &reason, By::User(a), st.clock.now()).await?;
    tracing::info!(crisis = %r.id, step = %s.step_id, skip, "step operated by ops");
    st.wake_engine();
    Ok(step_view(&s, true))
}
