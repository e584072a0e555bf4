//! Store records → API documents.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use repli_core::audit::AuditEntry;
use repli_core::run::PlaybookName;
use repli_core::sla::{SlaInput, Suspension};
use repli_core::{CrisisAction, CrisisId, CrisisState, legal, sla};
use repli_proto::api::{
    CommuneView, Contact, ConventionView, CrisisView, HistoryEntry, LegalClockView, SlaView, SuspensionView, Timeline,
};
use repli_store::{CommuneRecord, CrisisRecord, Need, SuspensionRecord};

use crate::{AppError, Services};

/// What a crisis view needs besides the crisis record, read in one pass: its suspensions, its
/// needs, and the work left in its activation run while it is being provisioned.
#[derive(Debug, Default)]
pub struct Facts {
    pub suspensions: Vec<SuspensionRecord>,
    pub needs: Vec<Need>,
    /// Estimated work left in the activation run (only while activated or provisioning).
    pub run_remaining: Option<SignedDuration>,
}

fn provisioning(state: CrisisState) -> bool {
    matches!(state, CrisisState::Activated | CrisisState::Provisioning)
}

impl Facts {
    async fn run_remaining(st: &Services, id: &CrisisId) -> Result<Option<SignedDuration>, AppError> {
        let Some(run) = st.store.runs_of(id).await?.into_iter().find(|run| run.playbook == PlaybookName::Activation)
        else {
            return Ok(None);
        };
        let steps = st.store.steps(run.id).await?;
        Ok(Some(crate::steps::remaining(run.playbook, &steps)))
    }

    /// The facts of one crisis (two queries, four while it is being provisioned).
    pub async fn load(st: &Services, r: &CrisisRecord) -> Result<Self, AppError> {
        let run_remaining = if provisioning(r.state) { Self::run_remaining(st, &r.id).await? } else { None };
        Ok(Facts {
            suspensions: st.store.suspensions(&r.id).await?,
            needs: st.store.needs(Some(r.id.as_str())).await?,
            run_remaining,
        })
    }

    /// The facts of many crises: two queries for all, plus the runs of those being provisioned.
    pub async fn load_many(st: &Services, records: &[&CrisisRecord]) -> Result<HashMap<CrisisId, Self>, AppError> {
        let mut out: HashMap<CrisisId, Facts> = HashMap::with_capacity(records.len());
        let mut by_str: HashMap<&str, &CrisisId> = HashMap::with_capacity(records.len());
        for r in records {
            by_str.insert(r.id.as_str(), &r.id);
            let run_remaining = if provisioning(r.state) { Self::run_remaining(st, &r.id).await? } else { None };
            out.insert(r.id.clone(), Facts { run_remaining, ..Facts::default() });
        }
        for (crisis, s) in st.store.all_suspensions().await? {
            if let Some(f) = by_str.get(crisis.as_str()).and_then(|id| out.get_mut(*id)) {
                f.suspensions.push(s);
            }
        }
        for n in st.store.needs(None).await? {
            if let Some(f) = by_str.get(n.crisis.as_str()).and_then(|id| out.get_mut(*id)) {
                f.needs.push(n);
            }
        }
        Ok(out)
    }
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

fn history_entry(e: AuditEntry) -> Result<HistoryEntry, AppError> {
    Ok(HistoryEntry {
        seq: e.seq,
        at: repli_store::ts_from_db("audit_log.at", &e.at)?,
        actor: e.actor_name,
        role: e.actor_role,
        action: e.action,
        details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
    })
}

/// Estimated business time of the work left before the kit is ready (the risk forecast's
/// input): the activation run's unfinished steps along their longest chain once the engine has
/// one; before activation, the configured estimate.
pub fn remaining_work(st: &Services, r: &CrisisRecord, facts: &Facts) -> SignedDuration {
    match facts.run_remaining {
        Some(d) if provisioning(r.state) => d,
        _ => configured_remaining(&st.config.sla.forecast, r.state),
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
pub fn sla_of(st: &Services, r: &CrisisRecord, facts: &Facts, now: Timestamp) -> Result<sla::SlaView, AppError> {
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

pub fn crisis(
    st: &Services,
    r: CrisisRecord,
    history: Vec<AuditEntry>,
    facts: &Facts,
    now: Timestamp,
) -> Result<CrisisView, AppError> {
    let v = sla_of(st, &r, facts, now)?;
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
        next_actions: CrisisAction::ALL.into_iter().filter(|a| a.apply(r.state).is_ok()).collect(),
        history: history.into_iter().map(history_entry).collect::<Result<_, _>>()?,
        id: r.id,
        commune: r.commune,
        commune_name: r.commune_name,
        state_label: r.state.label_fr().to_owned(),
        state: r.state,
        requested_at: r.requested_at,
        requested_by: r.requested_by,
        contact: Contact { name: r.contact_name, phone: r.contact_phone, email: r.contact_email },
        agents: r.agents,
        delivery_address: r.delivery_address,
        notes: r.notes,
        end_reason: r.end_reason,
        personal_data_purged_at: r.personal_data_purged_at,
    })
}
