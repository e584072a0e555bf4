//! Exercises end to end: a drill runs the real playbooks on its own Microsoft 365 target,
//! marked EXERCICE in its pages, documents, notifications and audit entries, absent from the
//! SLA report; timed injects reach the main courante and the RETEX; a real crisis takes back
//! the equipment a physical drill holds, and the drill is told.

use repli_core::{CrisisAction, CrisisState, ItemState};
use repli_proto::api::{AgentInput, AgentsRequest, AuditQuery, ExerciseRequest, ImportFile, ImportRequest};
use repli_tests::{StatusCode, TestApp, request};

/// Two communes, a table-top drill, one inject on Aubagne after 30 minutes.
const SCENARIO: &str = r#"
name = "Exercice <b>printemps</b>"
recipients = ["animation@exemple.fr"]

[[communes]]
commune = "13005"
agents = 3
contact = { name = "Joueur DGS Aubagne", phone = "06 12 34 56 78" }

[[communes]]
commune = "13001"
agents = 2
contact = { name = "Joueur DGS Aix", phone = "06 98 76 54 32" }

[[injects]]
after_minutes = 30
commune = "13005"
text = "10 licences manquantes"
"#;

fn sample_pool() -> ImportRequest {
    let csv = include_str!("../../inventory/pool.csv");
    ImportRequest { files: vec![ImportFile { source: "pool.csv".into(), csv: csv.into() }] }
}

async fn sim_counts(base: &str) -> repli_graph_sim::Counts {
    let state: serde_json::Value = reqwest::get(format!("{base}/_sim/state")).await.unwrap().json().await.unwrap();
    serde_json::from_value(state["counts"].clone()).unwrap()
}

#[tokio::test]
async fn an_exercise_runs_on_its_own_target_marked_everywhere_and_outside_the_sla_report() {
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&sample_pool()).await.unwrap();
    let x = app.ops.start_exercise(&ExerciseRequest::from_toml(SCENARIO).unwrap()).await.unwrap();
    let ids: Vec<_> = x.crises.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.iter().map(|i| i.as_str()).collect::<Vec<_>>(), ["13001-2026-901", "13005-2026-901"]);
    assert!(x.recipients.contains(&"+33612345678".to_owned()), "the contacts are reached: {:?}", x.recipients);
    let aubagne = ids[1].clone();

    // The commune's DGS sees the drill, marked; and may still request a real kit beside it.
    let seen = app.dgs.crisis(aubagne.as_str()).await.unwrap();
    assert_eq!(seen.exercise.as_ref().map(|e| e.id), Some(x.id));
    let real = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    assert_eq!(real.id.as_str(), "13005-2026-001");
    assert!(real.exercise.is_none());

    // The real playbooks, to a ready kit, on the exercise's own simulator.
    let real_tenant = app.daemon.state().m365_zone_api().unwrap();
    let before = sim_counts(&real_tenant).await;
    for id in &ids {
        let c = app.make_ready(id).await;
        assert_eq!(c.state, CrisisState::Ready);
    }
    assert_eq!(sim_counts(&real_tenant).await, before, "the real tenant was touched by an exercise");

    // Table-top: everything counted, nothing reserved.
    let c = app.ops.crisis(aubagne.as_str()).await.unwrap();
    assert!(c.needs.iter().all(|n| n.allocated == n.wanted && n.shortage == 0), "{:?}", c.needs);
    let items = app.ops.inventory_items().await.unwrap();
    assert!(items.iter().all(|i| i.state == ItemState::Available), "a table-top drill reserved equipment");

    // The documents carry the watermark; the pages the banner.
    let dossier = app.ops.document(aubagne.as_str(), "01-dossier-de-mise-a-disposition.html").await.unwrap();
    assert!(dossier.contains(r#"<div class="filigrane" aria-hidden="true">EXERCICE</div>"#));
    assert!(dossier.contains("Exercice &lt;b&gt;printemps&lt;/b&gt;"), "the name is escaped");
    let real_dossier = app.dgs.documents(real.id.as_str()).await.unwrap();
    assert!(real_dossier.is_empty() || !real_dossier.iter().any(|d| d.contains("EXERCICE")));

    // Every audit entry of the drill's crises is flagged, and the chain still verifies.
    let q = AuditQuery { crisis: Some(aubagne.to_string()), ..Default::default() };
    let entries = app.auditor.audit_entries_all(&q).await.unwrap();
    assert!(entries.len() > 20);
    for e in &entries {
        let d: serde_json::Value = serde_json::from_str(&e.details).unwrap();
        assert_eq!(d["exercise"], serde_json::json!(x.id), "{} is not flagged", e.action);
    }
    assert!(app.auditor.audit_verify().await.unwrap().verified);

    // The inject comes when due, to Aubagne only; the RETEX shows it unanswered, then answered.
    app.clock.advance(jiff::SignedDuration::from_mins(31));
    app.daemon.state().maintenance().await.unwrap();
    let log = app.ops.crisis_log(aubagne.as_str()).await.unwrap();
    let inject = log.iter().find(|e| e.kind == repli_core::LogKind::Inject).expect("inject delivered");
    assert_eq!((inject.text.as_str(), inject.role.as_str()), ("10 licences manquantes", "system"));
    assert!(app.ops.crisis_log(ids[0].as_str()).await.unwrap().iter().all(|e| e.kind != repli_core::LogKind::Inject));
    let retex = app.ops.retex(aubagne.as_str()).await.unwrap();
    assert_eq!(retex.exercise.as_ref().map(|e| e.id), Some(x.id));
    assert_eq!(retex.injects.len(), 1);
    assert!(retex.injects[0].response.is_none());
    app.clock.advance(jiff::SignedDuration::from_mins(4));
    app.ops.add_log(aubagne.as_str(), "décision", "Licences réparties : 10 agents sur le poste partagé").await.unwrap();
    let retex = app.ops.retex(aubagne.as_str()).await.unwrap();
    let answered = &retex.injects[0];
    assert_eq!(
        answered.response.as_ref().map(|r| r.text.as_str()),
        Some("Licences réparties : 10 agents sur le poste partagé")
    );
    assert_eq!(answered.response_secs, Some(4 * 60));
    let shown = app.ops.exercise(x.id).await.unwrap();
    assert!(shown.injects[0].delivered_at.is_some(), "{shown:?}");

    // An inject by hand is for exercises only.
    assert_eq!(app.ops.add_log(real.id.as_str(), "inject", "essai").await.status_code(), 422);

    // The SLA report knows only the real crisis.
    let report = app.auditor.sla_report().await.unwrap();
    assert_eq!(report.iter().map(|l| l.crisis.as_str()).collect::<Vec<_>>(), [real.id.as_str()]);
}

#[tokio::test]
async fn a_real_crisis_takes_the_equipment_a_physical_exercise_holds_and_the_exercise_is_told() {
    let (sms_url, texts) = repli_tests::sms_gateway(0).await;
    let (port, _mails) = repli_tests::smtp_server().await;
    let app = TestApp::spawn_with(move |c| {
        repli_tests::dgs_channels(c, sms_url, None, port);
        // Ops' own number: an exercise's messages must never reach it.
        if let Some(sms) = c.notify.sms.as_mut() {
            sms.to = vec!["+33600000001".into()];
        }
        c.notify.channels = vec![replid::config::Channel::Log, replid::config::Channel::Sms];
    })
    .await;
    let pool =
        ImportRequest { files: vec![ImportFile { source: "petit.csv".into(), csv: repli_tests::SMALL_POOL.into() }] };
    app.ops.import_inventory(&pool).await.unwrap();
    let scenario = r#"
        name = "Exercice réel"
        mode = "physical"
        recipients = ["+33611111111"]
        [[communes]]
        commune = "13001"
        agents = 2
        contact = { name = "Joueur DGS Aix", phone = "06 98 76 54 32" }
    "#;
    let x = app.ops.start_exercise(&ExerciseRequest::from_toml(scenario).unwrap()).await.unwrap();
    let drill = x.crises[0].id.clone();
    app.activate(&drill).await;
    let held = app.ops.crisis(drill.as_str()).await.unwrap();
    assert!(held.needs.iter().all(|n| n.shortage == 0), "the physical drill holds the kit: {:?}", held.needs);

    // A commune is hit for real: its kit comes from what the drill held.
    let real =
        app.dgs.request_crisis(&repli_proto::api::CrisisRequest { agents: 2, ..request("13005") }, None).await.unwrap();
    let got = app.activate(&real.id).await;
    // Ops tell a drill's task from a real one's.
    let tasks = app.wait_steps(&real.id, "the mobile task", |v| {
        repli_tests::step_state(v, "activation", "mobile") == Some(repli_core::StepState::WaitingManual)
    });
    tasks.await;
    let tasks = app.ops.tasks().await.unwrap();
    let of =
        |id: &repli_core::CrisisId| tasks.iter().filter(|t| t.crisis == *id).map(|t| t.exercise).collect::<Vec<_>>();
    assert!(!of(&drill).is_empty() && of(&drill).iter().all(|e| *e), "{tasks:?}");
    assert!(!of(&real.id).is_empty() && of(&real.id).iter().all(|e| !*e), "{tasks:?}");
    assert!(got.needs.iter().all(|n| n.shortage == 0), "the real crisis is served: {:?}", got.needs);
    let items = app.ops.inventory_items().await.unwrap();
    assert!(items.iter().all(|i| i.crisis.as_deref() == Some(real.id.as_str())), "{items:?}");
    let left = app.ops.crisis(drill.as_str()).await.unwrap();
    assert!(left.needs.iter().filter(|n| n.wanted > 0).all(|n| n.shortage == n.wanted), "{:?}", left.needs);

    // The drill is told: in its main courante, and by SMS to the scenario's numbers only.
    let log = app.ops.crisis_log(drill.as_str()).await.unwrap();
    let told = log.iter().find(|e| e.text.contains("repris par la crise réelle")).expect("main courante entry");
    assert!(told.text.contains(real.id.as_str()) && told.text.contains("AMP-LAP-0001"), "{}", told.text);
    app.daemon.state().maintenance().await.unwrap();
    let sent = texts.lock().unwrap().clone();
    let to_drill: Vec<_> =
        sent.iter().filter(|s| s.body["text"].as_str().is_some_and(|t| t.contains("repris"))).collect();
    assert!(!to_drill.is_empty(), "no SMS about the pre-emption: {sent:?}");
    for s in &to_drill {
        assert!(s.body["text"].as_str().unwrap().starts_with("Repli : [EXERCICE] "), "{:?}", s.body);
    }
    let drill_numbers: Vec<&str> = sent
        .iter()
        .filter(|s| s.body["text"].as_str().is_some_and(|t| t.contains("EXERCICE")))
        .filter_map(|s| s.body["to"].as_str())
        .collect();
    assert!(!drill_numbers.is_empty());
    assert!(
        drill_numbers.iter().all(|n| ["+33611111111", "+33698765432"].contains(n)),
        "an exercise message reached someone the scenario does not name: {drill_numbers:?}"
    );

    // Once the real crisis gives the kit back, the waiting list serves the drill again.
    app.ops.act(&real.id, CrisisAction::Cancel, Some("fausse alerte")).await.unwrap();
    app.daemon.state().maintenance().await.unwrap();
    let again = app.ops.crisis(drill.as_str()).await.unwrap();
    assert!(again.needs.iter().all(|n| n.shortage == 0), "{:?}", again.needs);
}

#[tokio::test]
async fn a_bad_scenario_is_refused_whole_with_every_error_named() {
    let app = TestApp::spawn().await;
    let bad = r#"
        name = ""
        recipients = ["pas un numéro", "x@"]
        [[communes]]
        commune = "13005"
        agents = 0
        contact = { name = "A", phone = "123" }
        [[communes]]
        commune = "13005"
        agents = 2
        contact = { name = "B", phone = "0612345678" }
        [[injects]]
        after_minutes = 99999
        commune = "13055"
        text = ""
    "#;
    let e = app.ops.start_exercise(&ExerciseRequest::from_toml(bad).unwrap()).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(422));
    let fields: Vec<String> = e.problem().unwrap().errors.iter().map(|f| f.field.clone()).collect();
    for f in [
        "name",
        "recipients[0]",
        "recipients[1]",
        "communes[0].agents",
        "communes[0].contact.phone",
        "communes[1].commune",
        "injects[0].after_minutes",
        "injects[0].commune",
        "injects[0].text",
    ] {
        assert!(fields.iter().any(|g| g == f), "{f} not reported: {fields:?}");
    }
    assert!(app.ops.exercises().await.unwrap().is_empty());
    assert!(app.ops.crises(&Default::default()).await.unwrap().is_empty());
    // A scenario that is not TOML names its line; unknown keys are refused.
    let e = ExerciseRequest::from_toml("name = \"x\"\n[[communes]]\ncommune = 13005\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(ExerciseRequest::from_toml("name = \"x\"\ncommunes = []\nbudget = 3\n").is_err());
    // Only ops start one; a DGS or an auditor cannot, and auditors may read.
    let ok = ExerciseRequest::from_toml(SCENARIO).unwrap();
    for who in [&app.dgs, &app.auditor] {
        assert_eq!(who.start_exercise(&ok).await.status_code(), 403);
    }
    assert!(app.auditor.exercises().await.unwrap().is_empty());
    assert_eq!(app.dgs.exercises().await.status_code(), 403);
    // Two drills at once over the same commune: the second is refused, nothing of it kept.
    app.ops.start_exercise(&ok).await.unwrap();
    let e = app.ops.start_exercise(&ok).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(409));
    assert!(e.problem().unwrap().detail.contains("exercice est déjà en cours"));
    assert_eq!(app.ops.exercises().await.unwrap().len(), 1);
    assert_eq!(app.ops.exercise(999).await.status_code(), 404);
}

#[tokio::test]
async fn playbook_estimates_learn_from_drills_through_repli_playbook_calibrate() {
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&sample_pool()).await.unwrap();
    let scenario = r#"
        name = "Trois communes"
        [[communes]]
        commune = "13005"
        agents = 1
        contact = { name = "A", phone = "0612345678" }
        [[communes]]
        commune = "13001"
        agents = 1
        contact = { name = "B", phone = "0612345679" }
        [[communes]]
        commune = "13117"
        agents = 1
        contact = { name = "C", phone = "0612345670" }
    "#;
    let x = app.ops.start_exercise(&ExerciseRequest::from_toml(scenario).unwrap()).await.unwrap();
    for c in &x.crises {
        app.make_ready(&c.id).await;
    }
    let playbooks = tempfile::tempdir().unwrap();
    for f in ["activation.toml", "handback.toml"] {
        std::fs::copy(format!("{}/../playbooks/{f}", env!("CARGO_MANIFEST_DIR")), playbooks.path().join(f)).unwrap();
    }
    let before = std::fs::read_to_string(playbooks.path().join("activation.toml")).unwrap();
    let (_, token) = app.token(repli_core::Role::Auditor, None).await;
    let dir = playbooks.path().to_str().unwrap().to_owned();
    let repli = |args: Vec<&str>| {
        tokio::process::Command::new(repli_tests::workspace_bin("repli"))
            .env("REPLI_SERVER", app.daemon.url())
            .env("REPLI_TOKEN", &token)
            .args(args)
            .output()
    };
    let out = repli(vec!["playbook", "calibrate", "--dir", &dir, "--json"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let activation = report.as_array().unwrap().iter().find(|r| r["playbook"] == "activation").unwrap();
    assert_eq!(activation["crises"], 3);
    let domain = activation["steps"].as_array().unwrap().iter().find(|s| s["step"] == "domain").unwrap();
    assert_eq!(domain["samples"], 3);
    // Without --write, nothing changes on disk.
    assert_eq!(std::fs::read_to_string(playbooks.path().join("activation.toml")).unwrap(), before);

    let out = repli(vec!["playbook", "calibrate", "--dir", &dir, "--write"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = std::fs::read_to_string(playbooks.path().join("activation.toml")).unwrap();
    assert_ne!(after, before);
    // The simulated tenant answers in milliseconds: the domain step is now estimated at the
    // minute, as the rewritten playbook's plan says (so it loads).
    let plan = std::process::Command::new(repli_tests::workspace_bin("repli"))
        .args(["playbook", "plan", "--commune", "13005", "--dir", &dir, "--json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let domain = plan["steps"].as_array().unwrap().iter().find(|s| s["step"] == "domain").unwrap();
    assert_eq!(domain["estimate"], "1m");
    // Comments survive.
    assert_eq!(
        before.lines().filter(|l| l.trim_start().starts_with('#')).count(),
        after.lines().filter(|l| l.trim_start().starts_with('#')).count()
    );
    // --write without a folder to write to is refused.
    let out = repli(vec!["playbook", "calibrate", "--write"]).await.unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn concurrent_starts_over_one_commune_make_one_exercise_and_oversized_scenarios_are_refused() {
    let app = TestApp::spawn().await;
    let req = ExerciseRequest::from_toml(SCENARIO).unwrap();
    let starts = (0..8).map(|_| app.ops.start_exercise(&req));
    let results = futures_util::future::join_all(starts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for r in results.into_iter().filter_map(Result::err) {
        assert_eq!(r.status().map(|s| s.as_u16()), Some(409), "{r:?}");
    }
    assert_eq!(app.ops.exercises().await.unwrap().len(), 1);
    assert_eq!(app.ops.crises(&Default::default()).await.unwrap().len(), 2);
    // Too many communes, recipients, injects, or a name past its limit: refused, nothing kept.
    let mut big = ExerciseRequest::from_toml(SCENARIO).unwrap();
    big.name = "x".repeat(201);
    big.recipients = (0..51).map(|i| format!("+336120000{i:02}")).collect();
    big.injects = (0..101)
        .map(|_| repli_proto::api::InjectSpec { after_minutes: 1, commune: None, text: "t".into(), effect: None })
        .collect();
    let e = app.ops.start_exercise(&big).await.unwrap_err();
    let fields: Vec<String> = e.problem().unwrap().errors.iter().map(|f| f.field.clone()).collect();
    for f in ["name", "recipients", "injects"] {
        assert!(fields.iter().any(|g| g == f), "{f}: {fields:?}");
    }
    assert_eq!(app.ops.exercises().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_inject_that_takes_the_licences_away_fails_the_real_step_until_they_are_bought_back() {
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&sample_pool()).await.unwrap();
    let scenario = r#"
        name = "Licences"
        [[communes]]
        commune = "13005"
        agents = 3
        contact = { name = "Joueur DGS", phone = "0612345678" }
        [[injects]]
        after_minutes = 0
        text = "10 licences manquantes"
        effect = { licences_available = 0 }
        [[injects]]
        after_minutes = 60
        text = "La métropole a acheté les licences"
        effect = { licences_available = 50 }
    "#;
    let x = app.ops.start_exercise(&ExerciseRequest::from_toml(scenario).unwrap()).await.unwrap();
    let id = x.crises[0].id.clone();
    app.daemon.state().maintenance().await.unwrap();
    let log = app.ops.crisis_log(id.as_str()).await.unwrap();
    assert!(
        log.iter().any(|e| e.text
            == "10 licences manquantes (effet simulé : plus aucune licence libre sur le locataire d'exercice)"),
        "{log:?}"
    );
    // The real playbook meets it: the accounts step fails, in French, naming what is missing.
    app.activate(&id).await;
    let agents = (1..=3).map(|i| AgentInput { name: format!("Agent {i}"), service: "Accueil".into() }).collect();
    app.ops.set_agents(id.as_str(), &AgentsRequest { agents }).await.unwrap();
    let v = app
        .wait_steps(&id, "the accounts step to fail", |v| {
            repli_tests::step_state(v, "activation", "accounts") == Some(repli_core::StepState::Failed)
        })
        .await;
    let step = v.runs.iter().flat_map(|r| &r.steps).find(|s| s.step == "accounts").unwrap();
    let error = step.last_error.clone().unwrap_or_default();
    assert!(error.starts_with("Licences insuffisantes : il manque 3 licence(s)"), "{error}");
    // The real tenant never saw any of it.
    let real = app.daemon.state().m365_zone_api().unwrap();
    let state: serde_json::Value = reqwest::get(format!("{real}/_sim/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["counts"]["licensesAssigned"], 0);
    // An hour later the licences are bought back; ops retry the step and the kit gets ready.
    app.clock.advance(jiff::SignedDuration::from_mins(61));
    app.daemon.state().maintenance().await.unwrap();
    app.ops.step_action(id.as_str(), "accounts", "retry", "licences achetées").await.unwrap();
    let c = app.make_ready(&id).await;
    assert_eq!(c.state, CrisisState::Ready);
    let shown = app.ops.exercise(x.id).await.unwrap();
    assert!(shown.injects.iter().all(|i| i.delivered_at.is_some() && i.effect.is_some()));
}

#[tokio::test]
async fn an_exercise_tenant_takes_no_simulated_effect() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "exercice").unwrap();
    let path = secret.path().to_owned();
    let app = TestApp::spawn_with(move |c| {
        c.exercise.target = replid::config::ExerciseTarget::Tenant;
        c.exercise.m365 = Some(replid::config::M365Config {
            mode: replid::config::M365Mode::Graph,
            // Never called by this test: nothing is activated.
            graph_url: "http://127.0.0.1:9/v1.0".into(),
            login_url: "http://127.0.0.1:9".into(),
            tenant_id: "tenant-exercice".into(),
            client_id: "repli-exercice".into(),
            client_secret_file: Some(path),
            dns: replid::config::DnsMode::Manual,
            domain_pattern: "{slug}.exercice-amp.fr".into(),
            ..Default::default()
        });
    })
    .await;
    let with_effect = r#"
        name = "Sur le locataire d'exercice"
        [[communes]]
        commune = "13005"
        agents = 1
        contact = { name = "A", phone = "0612345678" }
        [[injects]]
        after_minutes = 5
        text = "Plus de licences"
        effect = { licences_available = 0 }
    "#;
    let e = app.ops.start_exercise(&ExerciseRequest::from_toml(with_effect).unwrap()).await.unwrap_err();
    let fields: Vec<String> = e.problem().unwrap().errors.iter().map(|f| f.field.clone()).collect();
    assert_eq!(fields, ["injects[0].effect"]);
    let mut plain = ExerciseRequest::from_toml(with_effect).unwrap();
    plain.injects[0].effect = None;
    let x = app.ops.start_exercise(&plain).await.unwrap();
    assert_eq!(x.injects.len(), 1);
}
