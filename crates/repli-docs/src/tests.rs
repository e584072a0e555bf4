//! Snapshots of every document for a sample crisis, and hostile text escaped everywhere.

use std::collections::BTreeMap;

use repli_core::{CrisisAction, CrisisId, CrisisState, InseeCode, ItemKind, LogKind, SlaStatus};
use repli_proto::api::{
    AgentView, Contact, CrisisView, HistoryEntry, LoanView, LogEntryView, NeedView, SlaView, Timeline,
};

use super::*;

const HOSTILE: &str = "<script>alert(1)</script> {{x}}";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn crisis() -> CrisisView {
    CrisisView {
        id: CrisisId::parse("13005-2026-001").unwrap(),
        commune: InseeCode::parse("13005").unwrap(),
        commune_name: "Aubagne".into(),
        state: CrisisState::Closed,
        state_label: "clos".into(),
        requested_at: t("2026-11-23T07:00:00Z"),
        requested_by: "DGS d'Aubagne".into(),
        contact: Contact { name: HOSTILE.into(), phone: "+33639980001".into(), email: None },
        agents: 2,
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
            action: "crisis.request".into(),
            details: serde_json::json!({}),
        }],
    }
}

fn loans() -> Vec<LoanView> {
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
            overdue: false,
        },
    ]
}

fn log() -> Vec<LogEntryView> {
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

fn metropole() -> Metropole {
    Metropole {
        astreinte_phone: "04 65 71 00 00".into(),
        astreinte_email: "astreinte@exemple.fr".into(),
        csirt_phone: "04 65 71 00 01".into(),
    }
}

fn render_sample() -> Vec<(String, String)> {
    let c = crisis();
    let l = loans();
    let g = log();
    let m = metropole();
    let wipes = BTreeMap::from([("FICTIF-LAP-0001".to_owned(), "CERT-2026-001".to_owned())]);
    let accounts = vec![Account {
        name: HOSTILE.into(),
        service: "État civil".into(),
        login: "agent.01@aubagne.secours-amp.fr".into(),
        password: "Exemple-Fictif-2026!".into(),
    }];
    let m365 = M365 {
        domain: "aubagne.secours-amp.fr".into(),
        team: "Cellule de crise Aubagne".into(),
        channels: vec!["Cellule de crise".into(), "Services".into()],
        drive_url: "https://exemple.sharepoint.com/sites/crise".into(),
        meeting_url: "https://teams.microsoft.com/l/meetup-join/exemple".into(),
    };
    let input = PackInput {
        crisis: &c,
        convention: Some("14 décembre 2023 (DCM-2023-187)".into()),
        loans: &l,
        wipes: &wipes,
        log: &g,
        accounts: &accounts,
        accounts_disabled: 1,
        m365: Some(m365),
        metropole: &m,
        simulation: false,
        now: t("2026-12-11T16:00:00Z"),
    };
    Documents::new(None).unwrap().render(&input).unwrap()
}

#[test]
fn every_document_matches_its_snapshot() {
    for (name, content) in render_sample() {
        insta::assert_snapshot!(name, content);
    }
}

#[test]
fn hostile_text_is_escaped_in_every_document() {
    let docs = render_sample();
    assert_eq!(docs.len(), DOCUMENTS.len());
    let mut shown = 0;
    for (name, content) in &docs {
        assert!(!content.contains("<script>"), "{name} contains raw markup");
        if content.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}") {
            shown += 1;
        }
    }
    // The hostile name is an agent, a contact and a main-courante author: it shows in the
    // dossier, the credential sheets, both loan documents and the closure report.
    assert!(shown >= 5, "the hostile text was expected in at least 5 documents, found in {shown}");
    let md = &docs.iter().find(|(n, _)| n == "01-dossier-de-mise-a-disposition.md").unwrap().1;
    assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}") && md.contains("DGS d'Aubagne"), "{md}");
}

#[test]
fn templates_can_be_overridden_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("regles-securite.hbs"),
        "{{#> page title=\"Règles locales\"}}<p>Règle locale</p>{{/page}}",
    )
    .unwrap();
    let docs = Documents::new(Some(dir.path())).unwrap();
    let c = crisis();
    let m = metropole();
    let wipes = BTreeMap::new();
    let input = PackInput {
        crisis: &c,
        convention: None,
        loans: &[],
        wipes: &wipes,
        log: &[],
        accounts: &[],
        accounts_disabled: 0,
        m365: None,
        metropole: &m,
        simulation: true,
        now: t("2026-12-11T16:00:00Z"),
    };
    let out = docs.render(&input).unwrap();
    let rules = &out.iter().find(|(n, _)| n.starts_with("03-") && n.ends_with(".html")).unwrap().1;
    assert!(rules.contains("Règle locale") && rules.contains("SIMULATION"));
    let sheets = &out.iter().find(|(n, _)| n.starts_with("04-")).unwrap().1;
    assert!(sheets.contains("Aucun compte"));
    // A syntax error names the file; a missing variable fails the render (strict mode).
    std::fs::write(dir.path().join("dossier.hbs"), "{{#if}").unwrap();
    let e = Documents::new(Some(dir.path())).unwrap_err();
    assert!(e.to_string().contains("dossier.hbs"), "{e}");
    std::fs::write(dir.path().join("dossier.hbs"), "{{#> page title=\"x\"}}{{nope}}{{/page}}").unwrap();
    let e = Documents::new(Some(dir.path())).unwrap().render(&input).unwrap_err();
    assert!(e.to_string().contains("dossier"), "{e}");
}

#[test]
fn the_pack_is_written_with_its_zip() {
    let dir = tempfile::tempdir().unwrap();
    let c = crisis();
    let l = loans();
    let m = metropole();
    let wipes = BTreeMap::new();
    let input = PackInput {
        crisis: &c,
        convention: None,
        loans: &l,
        wipes: &wipes,
        log: &[],
        accounts: &[],
        accounts_disabled: 0,
        m365: None,
        metropole: &m,
        simulation: true,
        now: t("2026-12-11T16:00:00Z"),
    };
    let zip = Documents::new(None).unwrap().write_pack(&input, dir.path()).unwrap();
    assert!(zip.is_file());
    for (_, file) in DOCUMENTS {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let html = std::fs::read_to_string(dir.path().join("05-bon-de-pret.html")).unwrap();
    assert!(
        html.contains("@page { size: A4") && !html.contains("http://") && !html.contains("<link"),
        "self-contained, printable"
    );
}
