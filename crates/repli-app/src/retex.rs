//! The after-action report (RETEX) of a crisis: each step planned against actual, the time to
//! a ready kit against the 48 business hours, the manual steps that waited longest and who
//! confirmed them, and the main courante. Read-only, for ops and auditors. Durations are read
//! from the audit log, whose instants all come from one clock.

use repli_core::run::PlaybookName;
use repli_core::{Actor, AuditAction, LogKind, StepKind};
use repli_proto::api::{LogEntryView, RetexInject, RetexStep, RetexView};

use crate::crises::visible_crisis;
use crate::{AppError, Services};

/// The RETEX of a crisis, from its runs and steps as recorded.
pub async fn report(st: &Services, a: &Actor, id: &str) -> Result<RetexView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let view = crate::crises::view(st, r.clone()).await?;
    // Per step (`step/<playbook>/<id>`): first start, when it began to wait for a person, end.
    let mut times: std::collections::HashMap<String, Times> = std::collections::HashMap::new();
    for e in crate::documents::crisis_audit(st, &r.id).await? {
        let Ok(at) = e.at.parse::<jiff::Timestamp>() else { continue };
        let t = times.entry(e.target.clone()).or_default();
        match e.action_kind() {
            Some(AuditAction::EngineStepStarted) => t.started = t.started.or(Some(at)),
            Some(AuditAction::EngineStepWaitingManual) => t.waiting = Some(at),
            Some(
                AuditAction::EngineTaskDone
                | AuditAction::EngineStepSucceeded
                | AuditAction::EngineStepFailed
                | AuditAction::EngineStepSkipped,
            ) => {
                t.ended = Some(at);
            }
            // Other actions, and ones this version does not know, say nothing of a step's times.
            _ => {}
        }
    }
    let mut steps = Vec::new();
    let mut planned_critical_secs = 0;
    let mut actual_activation_secs = None;
    for run in st.store.runs_of(&r.id).await? {
        let records = st.store.steps(run.id).await?;
        if run.playbook == PlaybookName::Activation {
            planned_critical_secs = crate::steps::planned(&records).as_secs();
            let of = |s: &repli_core::run::StepRecord| times.get(&format!("step/{}/{}", run.playbook, s.step_id));
            let first = records.iter().filter_map(|s| of(s).and_then(|t| t.started)).min();
            let last = records.iter().filter_map(|s| of(s).and_then(|t| t.ended)).max();
            if run.finished_at.is_some() {
                actual_activation_secs = first.zip(last).map(|(f, l)| l.duration_since(f).as_secs());
            }
        }
        for s in &records {
            let manual = matches!(s.kind, StepKind::Manual | StepKind::InventoryReception) || s.confirmed_by.is_some();
            let t = times.get(&format!("step/{}/{}", run.playbook, s.step_id)).copied().unwrap_or_default();
            let done = s.state.is_done();
            steps.push(RetexStep {
                playbook: run.playbook,
                step: s.step_id.clone(),
                title: s.title.clone(),
                manual,
                state: s.state,
                planned_secs: s.estimate_secs,
                actual_secs: t.started.zip(t.ended).filter(|_| done).map(|(b, e)| e.duration_since(b).as_secs().max(0)),
                attempts: s.attempts,
                waited_secs: t
                    .waiting
                    .zip(t.ended)
                    .filter(|_| manual && done)
                    .map(|(b, e)| e.duration_since(b).as_secs().max(0)),
                confirmed_by: s.confirmed_by.clone(),
            });
        }
    }
    let mut longest_waits: Vec<RetexStep> = steps.iter().filter(|s| s.waited_secs.is_some()).cloned().collect();
    longest_waits.sort_by_key(|s| std::cmp::Reverse(s.waited_secs));
    longest_waits.truncate(5);
    let log: Vec<LogEntryView> = st.store.log_entries(&r.id).await?.into_iter().map(crate::crises::log_view).collect();
    let injects = injects_handled(&log);
    Ok(RetexView {
        crisis: r.id.clone(),
        commune_name: r.commune_name.clone(),
        requested_at: view.requested_at,
        ready_at: view.timeline.ready_at,
        business_hours: view.sla.business_hours,
        business_secs_to_ready: view.sla.elapsed_seconds,
        sla_status: view.sla.status,
        planned_critical_secs,
        actual_activation_secs,
        steps,
        longest_waits,
        log,
        exercise: r.exercise,
        injects,
    })
}

/// Each inject of the main courante, with the first entry a person wrote after it.
fn injects_handled(log: &[LogEntryView]) -> Vec<RetexInject> {
    log.iter()
        .enumerate()
        .filter(|(_, e)| e.kind == LogKind::Inject)
        .map(|(i, inject)| {
            let response = log[i + 1..].iter().find(|e| e.kind != LogKind::Inject && e.role != "system").cloned();
            RetexInject {
                response_secs: response.as_ref().map(|r| r.at.duration_since(inject.at).as_secs().max(0)),
                inject: inject.clone(),
                response,
            }
        })
        .collect()
}

/// A step's instants, from the audit log.
#[derive(Debug, Clone, Copy, Default)]
struct Times {
    started: Option<jiff::Timestamp>,
    waiting: Option<jiff::Timestamp>,
    ended: Option<jiff::Timestamp>,
}
