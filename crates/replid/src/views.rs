//! Store records → API documents.

use jiff::Timestamp;
use repli_core::audit::AuditEntry;
use repli_core::{CrisisAction, CrisisState, sla};
use repli_proto::api::{CommuneView, Contact, ConventionView, CrisisView, HistoryEntry, SlaView, Timeline};
use repli_store::{CommuneRecord, CrisisRecord};

use crate::AppState;
use crate::error::ApiError;

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

fn history_entry(e: AuditEntry) -> Result<HistoryEntry, ApiError> {
    Ok(HistoryEntry {
        seq: e.seq,
        at: repli_store::ts_from_db("audit_log.at", &e.at)?,
        actor: e.actor_name,
        role: e.actor_role,
        action: e.action,
        details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
    })
}

pub fn crisis(
    st: &AppState,
    r: CrisisRecord,
    history: Vec<AuditEntry>,
    now: Timestamp,
) -> Result<CrisisView, ApiError> {
    let ended = matches!(r.state, CrisisState::Rejected | CrisisState::Cancelled);
    let v = sla::evaluate(&st.calendar, r.requested_at, r.due_at, r.ready_at, ended, now)
        .map_err(|e| ApiError::Internal(format!("SLA evaluation: {e}")))?;
    Ok(CrisisView {
        sla: SlaView {
            business_hours: st.sla_hours,
            due_at: r.due_at,
            status: v.status,
            status_label: v.status.label_fr().to_owned(),
            remaining_seconds: v.remaining.as_secs(),
            elapsed_seconds: v.elapsed.as_secs(),
        },
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
