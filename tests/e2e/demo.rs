//! `repli demo` as a newcomer runs it, and its JSON summary.

use repli_core::InseeCode;
use replid::demo::{DemoArgs, run};

#[tokio::test]
async fn the_demo_plays_a_whole_crisis() {
    let dir = tempfile::tempdir().unwrap();
    let args = DemoArgs {
        commune: InseeCode::parse("84089").unwrap(),
        agents: 12,
        json: true,
        ..DemoArgs::in_dir(dir.path())
    };
    let s = run(&args).await.unwrap();
    assert!(s.sla_met, "{s:?}");
    assert!(s.audit_verified);
    assert_eq!(s.crisis_id, format!("84089-{}-001", s.requested_at.to_zoned(jiff::tz::TimeZone::UTC).year()));
    assert!(s.ready_at.is_some() && s.closed_at.is_some());
    assert!(s.due_at > s.requested_at);
    assert!(s.database.exists());
    // The whole pack, written by the playbooks' docs.render steps, named in the summary; the
    // credential sheets were printed once and never written to disk.
    for (_, file) in repli_docs::DOCUMENTS {
        let written = s.documents_dir.join(file).is_file();
        assert_eq!(written, *file != repli_docs::CREDENTIAL_SHEETS, "{file}");
    }
    // Microsoft 365 through the real client (embedded simulator): one account per agent,
    // all disabled at hand-back.
    assert!(s.simulation);
    assert_eq!((s.accounts_created, s.accounts_disabled), (12, 12));
    // What the commune had to retrieve before its accounts were deleted, one line per account.
    let retrieve = std::fs::read_to_string(s.documents_dir.join("comptes-a-recuperer.csv")).unwrap();
    assert_eq!(retrieve.lines().count(), 13, "{retrieve}");
    assert!(retrieve.contains("agent.fictif.01@pertuis.secours-amp.fr;Agent fictif 01;État civil;boîte aux lettres (PST) et fichiers OneDrive"), "{retrieve}");
    let zone = std::fs::read_to_string(s.documents_dir.join("zone-dns-secours.txt")).unwrap();
    assert!(
        zone.contains("$ORIGIN pertuis.secours-amp.fr.")
            && zone.contains("IN MX 0 pertuis-secours-amp-fr.mail.protection.outlook.com."),
        "{zone}"
    );
    let guide = std::fs::read_to_string(s.documents_dir.join("02-modes-operatoires.html")).unwrap();
    assert!(
        guide.contains("@pertuis.secours-amp.fr") && guide.contains("https://teams.microsoft.com/l/meetup-join/"),
        "{guide}"
    );
    assert!(s.documents_dir.join(format!("pack-{}.zip", s.crisis_id)).is_file());
    // The documents and the database are replid's alone, whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.documents_dir), 0o700, "{}", s.documents_dir.display());
    assert_eq!(mode(s.documents_dir.parent().unwrap()), 0o700);
    assert_eq!(mode(&s.database), 0o600);
    for f in std::fs::read_dir(&s.documents_dir).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let report = std::fs::read_to_string(s.documents_dir.join("07-rapport-de-cloture.html")).unwrap();
    assert!(report.contains("Pertuis") && report.contains("clôture") && report.contains("SIMULATION"), "{report}");
    assert!(report.contains("12 compte(s) créé(s), 12 désactivé(s)"), "{report}");
    let receipt = std::fs::read_to_string(s.documents_dir.join("05-bon-de-pret.html")).unwrap();
    assert!(receipt.contains("Agent fictif 01"), "loans to named agents");
    // The summary serialises with the documented keys.
    let v = serde_json::to_value(&s).unwrap();
    for k in [
        "crisis_id",
        "commune",
        "requested_at",
        "due_at",
        "ready_at",
        "sla_met",
        "items_lent",
        "items_returned",
        "accounts_created",
        "accounts_disabled",
        "audit_verified",
        "documents_dir",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    // A second run in the same folder refuses rather than mixing two demos.
    let e = run(&args).await.unwrap_err();
    assert!(e.to_string().contains("contient déjà"), "{e}");
}

#[tokio::test]
async fn the_demo_refuses_a_commune_without_convention() {
    let dir = tempfile::tempdir().unwrap();
    let args =
        DemoArgs { commune: InseeCode::parse("13055").unwrap(), agents: 5, json: true, ..DemoArgs::in_dir(dir.path()) };
    let e = run(&args).await.unwrap_err();
    assert!(format!("{e:#}").to_lowercase().contains("convention non signée"), "{e:#}");
}

#[tokio::test]
async fn the_demo_can_provision_against_an_external_simulator() {
    let sim = repli_graph_sim::Simulator::start(
        "127.0.0.1:0",
        repli_graph_sim::SimConfig {
            meeting_policies: vec![repli_graph_sim::PolicyGrant::Global],
            ..repli_graph_sim::SimConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = DemoArgs { agents: 4, json: true, graph_url: Some(sim.graph_url()), ..DemoArgs::in_dir(dir.path()) };
    let s = run(&args).await.unwrap();
    assert!(s.simulation && s.sla_met && s.audit_verified);
    assert_eq!((s.accounts_created, s.accounts_disabled), (4, 4));
    // Everything the kit had in the tenant was wound down at hand-back.
    let counts = &sim.state()["counts"];
    assert_eq!(
        (counts["domains"].as_u64(), counts["users"].as_u64(), counts["groups"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert!(sim.requests() > 20);
}

#[tokio::test]
async fn the_exercise_demo_plays_a_two_commune_drill_and_leaves_its_retex() {
    let dir = tempfile::tempdir().unwrap();
    let args = DemoArgs { json: true, exercise: true, ..DemoArgs::in_dir(dir.path()) };
    let s = replid::demo::run_exercise(&args).await.unwrap();
    assert_eq!(s.crises.len(), 2, "{s:?}");
    assert!(s.crises.iter().all(|c| c.ends_with("-901")), "{s:?}");
    assert_eq!((s.injects_delivered, s.injects_answered), (1, 1));
    assert!(s.documents_watermarked && s.absent_from_sla_report && s.audit_verified, "{s:?}");
    assert_eq!(s.retex.len(), 2);
    for path in &s.retex {
        let r: repli_proto::api::RetexView = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(r.exercise.is_some());
        assert!(r.ready_at.is_some() && r.steps.iter().all(|st| st.state.is_done()), "{r:?}");
    }
    let answered: Vec<repli_proto::api::RetexView> =
        s.retex.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect();
    assert_eq!(answered.iter().map(|r| r.injects.len()).sum::<usize>(), 1);
    assert!(answered.iter().flat_map(|r| &r.injects).all(|i| i.response.is_some()));
}
