//! Store records → API documents.

use jiff::{SignedDuration, Timestamp};
use repli_core::sla::{SlaInput, Suspension};
use repli_core::{CrisisAction, CrisisState, legal, sla};
use repli_proto::api::{
    CommuneView, Contact, ConventionView, CrisisView, HistoryEntry, LegalClockView, SlaView, SuspensionView, Timeline,
};
use repli_store::{CommuneRecord, CrisisFacts, CrisisRecord, HistoryRow, SuspensionRecord};

use crate::{AppError, Services};

fn provisioning(state: CrisisState) -> bool {
    matches!(state, CrisisState::Activated | CrisisState::Provisioning)
}

pub fn commune(r: CommuneRecord) -> CommuneView {
    CommuneView {
        insee: r.commune.insee,
        name: r.commune.name,
        population: r.commune.population,
        convention: r
            .convention
            .map(|c| ConventionView { signed_on: c.signed_on, deliberation_ref: c.deliberation_ref }),
        open_crisis: r.open_crisis,
    }
}

pub fn history_entry(e: HistoryRow) -> HistoryEntry {
    HistoryEntry { seq: e.seq, at: e.at, actor: e.actor, role: e.role, action: e.action, details: e.details }
}

/// Estimated business time of the work left before the kit is ready (the risk forecast's
/// input): the activation run's unfinished steps along their longest chain once the engine has
/// one; before activation, the configured estimate.
pub fn remaining_work(st: &Services, r: &CrisisRecord, facts: &CrisisFacts) -> SignedDuration {
    if provisioning(r.state) && !facts.activation_steps.is_empty() {
        crate::steps::remaining_estimated(&facts.activation_steps)
    } else {
        configured_remaining(&st.config.sla.forecast, r.state)
    }
}

/// The configured estimate of the work left in `state`.
pub fn configured_remaining(cfg: &crate::config::ForecastConfig, state: CrisisState) -> SignedDuration {
    let mins = match state {
        CrisisState::Requested => cfg.activation_minutes + cfg.preparation_minutes,
        CrisisState::Activated | CrisisState::Provisioning => cfg.preparation_minutes,
        _ => 0,
    };
    SignedDuration::from_mins(i64::from(mins))
}

/// The SLA of a crisis at `now`, its suspensions taken into account.
pub fn sla_of(st: &Services, r: &CrisisRecord, facts: &CrisisFacts, now: Timestamp) -> Result<sla::SlaView, AppError> {
    let pauses: Vec<Suspension> =
        facts.suspensions.iter().map(|s| Suspension { start: s.started_at, end: s.ended_at }).collect();
    let input = SlaInput {
        started: r.requested_at,
        business_hours: st.config.sla.business_hours,
        suspensions: &pauses,
        ready_at: r.ready_at,
        ended: matches!(r.state, CrisisState::Rejected | CrisisState::Cancelled),
        remaining_work: remaining_work(st, r, facts),
    };
    sla::evaluate(&st.calendar, &input, now).map_err(|e| AppError::Internal(format!("SLA evaluation: {e}")))
}

/// `elapsed` as a whole percentage of `hours`.
pub fn used_percent(elapsed: SignedDuration, hours: u32) -> u32 {
    let budget = i64::from(hours.max(1)) * 3600;
    u32::try_from(elapsed.as_secs().max(0) * 100 / budget).unwrap_or(u32::MAX)
}

pub fn suspension(s: &SuspensionRecord) -> SuspensionView {
    SuspensionView { started_at: s.started_at, ended_at: s.ended_at, reason: s.reason.clone() }
}

pub fn legal_clocks(r: &CrisisRecord, now: Timestamp) -> Vec<LegalClockView> {
    let Some(aware) = r.aware_at else { return Vec::new() };
    legal::clocks(aware, r.personal_data, r.cnil_notified_at, r.complaint_filed_at, now)
        .into_iter()
        .map(|c| LegalClockView {
            kind: c.kind,
            label: c.kind.label_fr().to_owned(),
            deadline: c.deadline,
            done_at: c.done_at,
            status: c.status,
            remaining_seconds: c.remaining.as_secs(),
        })
        .collect()
}

pub fn crisis(st: &Services, r: CrisisRecord, mut facts: CrisisFacts, now: Timestamp) -> Result<CrisisView, AppError> {
    let v = sla_of(st, &r, &facts, now)?;
    Ok(CrisisView {
        sla: SlaView {
            business_hours: st.config.sla.business_hours,
            due_at: v.due,
            status: v.status,
            status_label: v.status.label_fr().to_owned(),
            remaining_seconds: v.remaining.as_secs(),
            elapsed_seconds: v.elapsed.as_secs(),
            suspended_seconds: v.suspended.as_secs(),
            used_percent: used_percent(v.elapsed, st.config.sla.business_hours),
            projected_ready: v.projected_ready,
            suspensions: facts.suspensions.iter().map(suspension).collect(),
        },
        legal: legal_clocks(&r, now),
        needs: facts.needs.iter().filter(|n| n.wanted > 0).map(crate::inventory::need_view).collect(),
        aware_at: r.aware_at,
        personal_data: r.personal_data,
        timeline: Timeline {
            activated_at: r.activated_at,
            provisioning_at: r.provisioning_at,
            ready_at: r.ready_at,
            delivered_at: r.delivered_at,
            handback_at: r.handback_at,
            closed_at: r.closed_at,
        },
        // Ops only: see crises::for_actor.
        m365_warning: None,
        next_actions: CrisisAction::ALL.into_iter().filter(|a| a.apply(r.state).is_ok()).collect(),
        history: std::mem::take(&mut facts.history).into_iter().map(history_entry).collect(),
        exercise: r.exercise,
        id: r.id,
        commune: r.commune,
        commune_name: r.commune_name,
        state_label: r.state.label_fr().to_owned(),
        state: r.state,
        requested_at: r.requested_at,
        requested_by: r.requested_by,
        contact: Contact { name: r.contact_name, phone: r.contact_phone, email: r.contact_email },
        agents: r.agents,
        agents_named: r.agents_named,
        agents_accepted: r.agents_short_ok.is_some(),
        delivery_address: r.delivery_address,
        notes: r.notes,
        end_reason: r.end_reason,
        personal_data_purged_at: r.personal_data_purged_at,
    })
}
