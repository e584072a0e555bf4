//! A sample crisis, complete with loans, main courante and a hostile agent name: for the
//! snapshot tests and for `repli playbook check`, which renders every template against it.

use repli_core::{CrisisAction, CrisisId, CrisisState, InseeCode, ItemKind, LogKind, SlaStatus};
use repli_proto::api::{
    AgentView, Contact, CrisisView, HistoryEntry, LoanView, LogEntryView, NeedView, SlaView, Timeline,
};

use crate::Metropole;

pub const HOSTILE: &str = "<script>alert(1)</script> {{x}}";

pub fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_default()
}

pub fn crisis() -> Option<CrisisView> {
    Some(CrisisView {
        id: CrisisId::parse("13005-2026-001").ok()?,
        commune: InseeCode::parse("13005").ok()?,
        commune_name: "Aubagne".into(),
        state: CrisisState::Closed,
        state_label: "clôturée".into(),
        requested_at: t("2026-11-23T07:00:00Z"),
        requested_by: "DGS d'Aubagne".into(),
        contact: Contact { name: HOSTILE.into(), phone: "+33639980001".into(), email: None },
        agents: 2,
        agents_named: 2,
        agents_accepted: false,
        m365_warning: None,
        delivery_address: Some("Hôtel de ville".into()),
        notes: String::new(),
        sla: SlaView {
            business_hours: 48,
            due_at: t("2026-11-27T15:00:00Z"),
            status: SlaStatus::Met,
            status_label: "respecté".into(),
            remaining_seconds: 0,
            elapsed_seconds: 6 * 3600,
            suspended_seconds: 0,
            used_percent: 12,
            projected_ready: None,
            suspensions: Vec::new(),
        },
        timeline: Timeline {
            activated_at: Some(t("2026-11-23T08:00:00Z")),
            provisioning_at: Some(t("2026-11-23T08:30:00Z")),
            ready_at: Some(t("2026-11-23T13:00:00Z")),
            delivered_at: Some(t("2026-11-23T15:00:00Z")),
            handback_at: Some(t("2026-12-10T08:00:00Z")),
            closed_at: Some(t("2026-12-11T16:00:00Z")),
        },
        end_reason: None,
        personal_data_purged_at: None,
        aware_at: None,
        personal_data: None,
        legal: Vec::new(),
        needs: vec![NeedView {
            kind: ItemKind::Laptop,
            label: "ordinateur portable".into(),
            wanted: 2,
            allocated: 2,
            shortage: 0,
        }],
        next_actions: Vec::<CrisisAction>::new(),
        history: vec![HistoryEntry {
            seq: 5,
            at: t("2026-11-23T07:00:00Z"),
            actor: "DGS d'Aubagne".into(),
            role: "dgs".into(),
            action: repli_core::AuditAction::CrisisRequest.to_string(),
            details: serde_json::json!({}),
        }],
        exercise: None,
    })
}

pub fn loans() -> Vec<LoanView> {
    let agent = AgentView { id: 1, name: HOSTILE.into(), service: "État civil".into() };
    vec![
        LoanView {
            serial: "FICTIF-LAP-0001".into(),
            asset_tag: "AMP-LAP-0001".into(),
            kind: ItemKind::Laptop,
            model: "Portable (fictif)".into(),
            imei: None,
            iccid: None,
            msisdn: None,
            agent: Some(agent),
            lent_at: t("2026-11-23T14:00:00Z"),
            due_back: t("2026-12-23T14:00:00Z"),
            returned_at: Some(t("2026-12-10T09:00:00Z")),
            condition: Some("damaged".into()),
            written_off_at: None,
            write_off_reason: None,
            sim: None,
            sim_not_returned: None,
            overdue: false,
        },
        LoanView {
            serial: "FICTIF-RTR-001".into(),
            asset_tag: "AMP-RTR-001".into(),
            kind: ItemKind::Router,
            model: "Routeur (fictif)".into(),
            imei: Some("490154203237518".into()),
            iccid: Some("89331503190000000012".into()),
            msisdn: Some("+33639980001".into()),
            agent: None,
            lent_at: t("2026-11-23T14:00:00Z"),
            due_back: t("2026-12-23T14:00:00Z"),
            returned_at: Some(t("2026-12-10T09:00:00Z")),
            condition: Some("ok".into()),
            written_off_at: None,
            write_off_reason: None,
            sim: Some("AMP-SIM-001 (ICCID 89331503190000000013)".into()),
            sim_not_returned: Some("AMP-SIM-001".into()),
            overdue: false,
        },
        // Written off: never returned, its date and a hostile reason.
        LoanView {
            serial: "FICTIF-PHN-001".into(),
            asset_tag: "AMP-PHN-001".into(),
            kind: ItemKind::Phone,
            model: "Téléphone (fictif)".into(),
            imei: Some("490154203237519".into()),
            iccid: None,
            msisdn: None,
            agent: None,
            lent_at: t("2026-11-23T14:00:00Z"),
            due_back: t("2026-12-23T14:00:00Z"),
            returned_at: None,
            condition: Some("missing".into()),
            written_off_at: Some(t("2026-12-08T15:30:00Z")),
            write_off_reason: Some(format!("volé, plainte déposée {HOSTILE}")),
            sim: None,
            sim_not_returned: None,
            overdue: false,
        },
    ]
}

pub fn log() -> Vec<LogEntryView> {
    vec![LogEntryView {
        seq: 6,
        at: t("2026-11-23T07:05:00Z"),
        kind: LogKind::Decision,
        type_label: "Décision".into(),
        author: HOSTILE.into(),
        role: "dgs".into(),
        text: HOSTILE.into(),
    }]
}

pub fn metropole() -> Metropole {
    Metropole {
        astreinte_phone: "04 65 71 00 00".into(),
        astreinte_email: "astreinte@exemple.fr".into(),
        csirt_phone: "04 65 71 00 01".into(),
    }
}
