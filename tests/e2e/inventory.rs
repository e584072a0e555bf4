//! The equipment pool through the API: import, allocation across concurrent crises, named
//! loans, check-in, wipe records, the waiting list, and the close gate.

use repli_core::{CrisisAction, ItemKind, ItemState, Role, StepState};
use repli_proto::api::{
    AgentInput, AgentsRequest, CheckinRequest, ImportFile, ImportRequest, KitNeeds, LendRequest, WipeRequest,
    WriteOffRequest,
};
use repli_tests::{StatusCode, TestApp, request, step_state};

const POOL: &str = include_str!("../../inventory/pool.csv");

fn pool() -> ImportRequest {
    ImportRequest { files: vec![ImportFile { source: "pool.csv".into(), csv: POOL.into() }] }
}

fn needs(laptop: u32, router: u32, phone: u32, printer: u32) -> Option<KitNeeds> {
    Some(KitNeeds { laptop, router, phone, printer })
}

#[tokio::test]
async fn the_sample_pool_imports_and_a_bad_file_imports_nothing() {
    let app = TestApp::spawn().await;
    let bad = "asset_tag,serial,kind,model,imei,iccid,msisdn,apn,location\n\
               LAP-1,FICTIF-X1,laptop,Portable,,,,,\n\
               LAP-2,FICTIF-X1,laptop,Portable,,,,,\n\
               TAB-1,FICTIF-X2,tablet,Tablette,,,,,\n\
               PHN-1,FICTIF-X3,phone,Téléphone,490154203237519,,,,\n\
               SIM-1,FICTIF-X4,sim,SIM,,89331503190000000013,,,\n";
    let req = ImportRequest { files: vec![ImportFile { source: "planted.csv".into(), csv: bad.into() }] };
    let e = app.ops.import_inventory(&req).await.unwrap_err();
    let p = e.problem().unwrap();
    assert_eq!(p.status, 422);
    let lines: Vec<&str> = p.errors.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (i, want) in ["planted.csv:3:", "planted.csv:4:", "planted.csv:5:", "planted.csv:6:"].iter().enumerate() {
        assert!(lines[i].starts_with(want), "{lines:#?}");
    }
    assert!(app.ops.inventory_items().await.unwrap().is_empty(), "nothing imported");

    assert_eq!(app.ops.import_inventory(&pool()).await.unwrap().imported, 270);
    let status = app.auditor.inventory_status().await.unwrap();
    let line = |k| status.iter().find(|l| l.kind == k).unwrap().available;
    assert_eq!(
        (line(ItemKind::Laptop), line(ItemKind::Router), line(ItemKind::Phone), line(ItemKind::Printer)),
        (120, 12, 60, 6)
    );
    // Importing again: every line clashes with the pool, nothing changes.
    let e = app.ops.import_inventory(&pool()).await.unwrap_err();
    assert_eq!(e.problem().unwrap().errors.len(), 270);
    assert_eq!(app.ops.inventory_items().await.unwrap().len(), 270);
    // A Snipe-IT export is read too.
    let snipe = "Asset Tag,Asset Name,Serial,Model,Category,Status,Location,IMEI\nRTR-X,Routeur,FICTIF-SNIPE-1,Routeur (fictif),Routeurs,Ready to Deploy,Aix,490154203237518\n";
    let r = ImportRequest { files: vec![ImportFile { source: "snipeit.csv".into(), csv: snipe.into() }] };
    assert_eq!(app.ops.import_inventory(&r).await.unwrap().imported, 1);
}

#[tokio::test]
async fn five_simultaneous_activations_share_120_laptops_without_double_allocation() {
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    let mut ids = Vec::new();
    for insee in ["13005", "13001", "13007", "13041", "84089"] {
        let mut r = request(insee);
        r.agents = 50;
        r.needs = needs(50, 0, 0, 0);
        ids.push(app.ops.request_crisis(&r, None).await.unwrap().id);
    }
    let mut tasks = Vec::new();
    for id in &ids {
        let (ops, id) = (app.ops.clone(), id.clone());
        tasks.push(tokio::spawn(async move { ops.act(&id, CrisisAction::Activate, None).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The engine runs the five reservation steps at once; one write transaction each.
    for id in &ids {
        app.wait_steps(id, "reservation", |v| step_state(v, "activation", "reserve") == Some(StepState::Succeeded))
            .await;
    }
    let items = app.ops.inventory_items().await.unwrap();
    let reserved: Vec<_> =
        items.iter().filter(|i| i.item.kind == ItemKind::Laptop && i.state == ItemState::Reserved).collect();
    assert_eq!(reserved.len(), 120, "every laptop reserved");
    let mut serials: Vec<&str> = reserved.iter().map(|i| i.item.serial.as_str()).collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), 120, "no laptop twice");
    let mut shortage = 0;
    let mut got = 0;
    for id in &ids {
        let c = app.ops.crisis(id.as_str()).await.unwrap();
        let laptops = c.needs.iter().find(|n| n.kind == ItemKind::Laptop).unwrap();
        assert_eq!(laptops.wanted, 50);
        got += laptops.allocated;
        shortage += laptops.shortage;
        assert_eq!(items.iter().filter(|i| i.crisis.as_deref() == Some(id.as_str())).count() as i64, laptops.allocated);
    }
    assert_eq!((got, shortage), (120, 130), "the shortage of 130 is reported across the crises");
    assert!(app.auditor.audit_verify().await.unwrap().verified);
}

#[tokio::test]
async fn named_loans_come_back_wiped_before_the_crisis_closes() {
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    let mut r = request("13005");
    r.agents = 2;
    r.needs = needs(2, 1, 1, 0);
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    let hostile = "<script>alert(1)</script> =1+2";
    let agents = app
        .dgs
        .set_agents(
            id,
            &AgentsRequest {
                agents: vec![
                    AgentInput { name: hostile.into(), service: "État civil".into() },
                    AgentInput { name: "Luc Durand".into(), service: "Accueil".into() },
                ],
            },
        )
        .await
        .unwrap();
    assert_eq!(agents[0].name, hostile);
    app.activate(&c.id).await;
    let held: Vec<_> =
        app.ops.inventory_items().await.unwrap().into_iter().filter(|i| i.crisis.as_deref() == Some(id)).collect();
    assert_eq!(held.len(), 6, "2 laptops, 1 router, 1 phone, 2 SIM cards");
    let laptop = held.iter().find(|i| i.item.kind == ItemKind::Laptop).unwrap().item.serial.clone();
    let router = held.iter().find(|i| i.item.kind == ItemKind::Router).unwrap().item.serial.clone();

    // Refusals: a laptop without an agent, an agent of another crisis, another crisis's item.
    let e = app.ops.lend(id, &LendRequest { serial: laptop.clone(), agent_id: None }).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 409);
    assert!(e.problem().unwrap().detail.contains("agent nommé"));
    assert_eq!(
        app.ops.lend(id, &LendRequest { serial: laptop.clone(), agent_id: Some(9999) }).await.status_code(),
        409
    );
    assert_eq!(
        app.ops
            .lend(id, &LendRequest { serial: "FICTIF-LAP-0120".into(), agent_id: Some(agents[0].id) })
            .await
            .status_code(),
        409
    );
    assert_eq!(app.ops.lend(id, &LendRequest { serial: "<script>".into(), agent_id: None }).await.status_code(), 422);
    assert_eq!(app.ops.lend(id, &LendRequest { serial: "../../etc".into(), agent_id: None }).await.status_code(), 404);

    app.ops.lend(id, &LendRequest { serial: laptop.clone(), agent_id: Some(agents[0].id) }).await.unwrap();
    let loans = app.ops.lend(id, &LendRequest { serial: router.clone(), agent_id: None }).await.unwrap();
    assert_eq!(loans.len(), 2);
    assert_eq!(loans.iter().find(|l| l.serial == laptop).unwrap().agent.as_ref().unwrap().name, hostile);
    // The DGS sees their loans; the agents list cannot be replaced once lent to.
    assert_eq!(app.dgs.loans(id).await.unwrap().len(), 2);
    assert_eq!(app.dgs.set_agents(id, &AgentsRequest { agents: vec![] }).await.status_code(), 409);

    app.make_ready(&c.id).await;
    app.ops.act(&c.id, CrisisAction::Deliver, None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("retour à la normale")).await.unwrap();
    // Ops may not close by hand while the hand-back playbook runs…
    let e = app.ops.act(&c.id, CrisisAction::Close, None).await.unwrap_err();
    assert_eq!(e.problem().unwrap().code, "handback_in_progress");
    // The other tasks are confirmed; the reception of the equipment is refused while items are
    // out, and the deletion of the space and accounts waits for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for t in app.ops.tasks().await.unwrap().into_iter().filter(|t| t.crisis == c.id && t.step != "equipment") {
            app.ops.task_done(id, &t.step, None).await.unwrap();
        }
        let v = app.ops.steps(id).await.unwrap();
        if step_state(&v, "handback", "retrieval") == Some(StepState::Succeeded)
            && step_state(&v, "handback", "equipment") == Some(StepState::WaitingManual)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hand-back tasks never came up: {v:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refused = |e: repli_proto::ClientError| {
        assert_eq!(e.status().unwrap().as_u16(), 409);
        let p = e.problem().unwrap();
        assert_eq!(p.code, "reception_incomplete");
        p.detail.clone()
    };
    let detail = refused(app.ops.task_done(id, "equipment", None).await.unwrap_err());
    assert!(detail.contains("2 équipement(s) encore prêté(s)"), "{detail}");
    // Skipping the reception is refused for the same reasons.
    let detail = refused(app.ops.step_action(id, "equipment", "skip", "on verra plus tard").await.unwrap_err());
    assert!(detail.contains("encore prêté"), "{detail}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let v = app.ops.steps(id).await.unwrap();
    for step in ["delete-group", "delete-accounts", "remove-domain"] {
        assert_eq!(step_state(&v, "handback", step), Some(StepState::Pending), "{step} waits for the reception");
    }
    app.ops
        .check_in(
            id,
            &CheckinRequest { serial: laptop.clone(), condition: "damaged".into(), note: Some("écran fêlé".into()) },
        )
        .await
        .unwrap();
    let bad = CheckinRequest { serial: router.clone(), condition: "perdu".into(), note: None };
    assert_eq!(app.ops.check_in(id, &bad).await.status_code(), 422);
    app.ops
        .write_off(
            id,
            &WriteOffRequest { serial: router.clone(), reason: "volé pendant la crise, plainte déposée".into() },
        )
        .await
        .unwrap();
    // Every loan is closed, but the returned laptop has not been wiped.
    let detail = refused(app.ops.task_done(id, "equipment", None).await.unwrap_err());
    assert!(detail.contains("1 portable(s) ou téléphone(s) rendu(s) sans effacement certifié"), "{detail}");
    assert!(!detail.contains("encore prêté"), "{detail}");
    // What was reserved but never handed over (phone, SIMs, second laptop) went back to the
    // pool when the hand-back started.
    let still = app
        .ops
        .inventory_items()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.crisis.as_deref() == Some(id) && i.state == ItemState::Reserved)
        .count();
    assert_eq!(still, 0);

    // A returned device is wiped before it can serve again; its history names the crisis.
    let d = app.ops.item(&laptop).await.unwrap();
    assert_eq!(d.item.state, ItemState::Returned);
    let w = WipeRequest {
        method: "NIST 800-88 purge".into(),
        operator: "Atelier DSI".into(),
        certificate: "CERT-2026-001".into(),
    };
    // It came back damaged: once wiped it goes to maintenance, not back into the pool.
    let d = app.ops.wipe(&laptop, &w).await.unwrap();
    assert_eq!(d.item.state, ItemState::Maintenance);
    assert!(d.history.iter().any(|e| e.crisis.as_deref() == Some(id) && e.to == "lent"));
    assert_eq!(app.ops.wipe(&laptop, &w).await.status_code(), 409, "already wiped");
    // Everything is accounted for: the reception is confirmed and the hand-back closes.
    app.ops.task_done(id, "equipment", Some("tout est rentré")).await.unwrap();
    app.wait_steps(&c.id, "the crisis to close", |v| v.state == repli_core::CrisisState::Closed).await;
    let v = app.auditor.audit_verify().await.unwrap();
    assert!(v.verified, "{v:?}");
}

#[tokio::test]
async fn cancelling_releases_the_kit_and_the_waiting_list_is_served_on_return() {
    let app = TestApp::spawn().await;
    let small = "asset_tag,serial,kind,model\nL-1,FICTIF-W1,laptop,Portable\nL-2,FICTIF-W2,laptop,Portable\n";
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "small.csv".into(), csv: small.into() }] })
        .await
        .unwrap();
    let mut r = request("13005");
    r.needs = needs(2, 0, 0, 0);
    let first = app.dgs.request_crisis(&r, None).await.unwrap();
    let mut r2 = request("13001");
    r2.needs = needs(2, 0, 0, 0);
    let second = app.ops.request_crisis(&r2, None).await.unwrap();
    app.activate(&first.id).await;
    app.activate(&second.id).await;
    let waiting = app.ops.crisis(second.id.as_str()).await.unwrap();
    assert_eq!(waiting.needs[0].shortage, 2, "the second commune waits");
    // The first cancels: its laptops go to the pool and the waiting crisis gets them.
    app.dgs.act(&first.id, CrisisAction::Cancel, Some("SI rétabli")).await.unwrap();
    app.daemon.state().maintenance().await.unwrap();
    let served = app.ops.crisis(second.id.as_str()).await.unwrap();
    assert_eq!((served.needs[0].allocated, served.needs[0].shortage), (2, 0));
    let _ = Role::Ops;
}

#[tokio::test]
async fn bad_agent_lists_are_refused_whole() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let many = AgentsRequest {
        agents: (0..501).map(|i| AgentInput { name: format!("A{i}"), service: String::new() }).collect(),
    };
    assert_eq!(app.dgs.set_agents(c.id.as_str(), &many).await.status_code(), 422);
    let bad = AgentsRequest {
        agents: vec![
            AgentInput { name: "  ".into(), service: "x".into() },
            AgentInput { name: "a\u{0}b".into(), service: "x".into() },
        ],
    };
    let e = app.dgs.set_agents(c.id.as_str(), &bad).await.unwrap_err();
    assert_eq!(e.problem().unwrap().errors.len(), 2);
    assert!(app.dgs.agents(c.id.as_str()).await.unwrap().is_empty());
    let mut r = request("13001");
    r.needs = needs(51, 0, 0, 0);
    let e = app.ops.request_crisis(&r, None).await.unwrap_err();
    assert_eq!(e.problem().unwrap().errors[0].field, "needs.laptop");
}

#[tokio::test]
async fn the_priority_rule_can_serve_larger_communes_first_and_overdue_loans_are_reminded() {
    let app = TestApp::spawn_with(|c| c.inventory.priority = replid::config::Priority::Population).await;
    // Aubagne (47,529 inhabitants) asks first, Aix-en-Provence (149,695) second; no stock yet.
    let mut a = request("13005");
    a.needs = needs(1, 0, 0, 0);
    let aubagne = app.dgs.request_crisis(&a, None).await.unwrap();
    let mut b = request("13001");
    b.needs = needs(1, 0, 0, 0);
    let aix = app.ops.request_crisis(&b, None).await.unwrap();
    app.activate(&aubagne.id).await;
    app.activate(&aix.id).await;
    let one = "asset_tag,serial,kind,model\nL-1,FICTIF-P1,laptop,Portable\n";
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "one.csv".into(), csv: one.into() }] })
        .await
        .unwrap();
    assert_eq!(app.ops.crisis(aix.id.as_str()).await.unwrap().needs[0].allocated, 1, "the larger commune first");
    assert_eq!(app.ops.crisis(aubagne.id.as_str()).await.unwrap().needs[0].shortage, 1);

    // Lent for 30 days; on day 31 ops are reminded, once.
    app.ops.lend(aix.id.as_str(), &LendRequest { serial: "FICTIF-P1".into(), agent_id: None }).await.unwrap_err();
    let agents = app
        .ops
        .set_agents(
            aix.id.as_str(),
            &AgentsRequest { agents: vec![AgentInput { name: "Agent".into(), service: String::new() }] },
        )
        .await
        .unwrap();
    app.ops
        .lend(aix.id.as_str(), &LendRequest { serial: "FICTIF-P1".into(), agent_id: Some(agents[0].id) })
        .await
        .unwrap();
    app.clock.advance(jiff::SignedDuration::from_hours(24 * 31));
    app.daemon.state().maintenance().await.unwrap();
    app.daemon.state().maintenance().await.unwrap();
    let overdue: Vec<_> =
        app.ops.notifications().await.unwrap().into_iter().filter(|n| n.key.starts_with("loan:")).collect();
    assert_eq!(overdue.len(), 1);
    assert!(overdue[0].subject.contains("prêt en retard"));
    assert!(app.ops.loans(aix.id.as_str()).await.unwrap()[0].overdue);
}

#[tokio::test]
async fn ops_move_items_through_maintenance_and_retirement() {
    use repli_proto::api::ServiceRequest;
    let app = TestApp::spawn().await;
    let one = "asset_tag,serial,kind,model\nL-1,FICTIF-S1,laptop,Portable\n";
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "one.csv".into(), csv: one.into() }] })
        .await
        .unwrap();
    let go = |to, reason: &str| ServiceRequest { to, reason: reason.into() };
    let d = app.ops.service_item("FICTIF-S1", &go(ItemState::Maintenance, "clavier défectueux")).await.unwrap();
    assert_eq!(d.item.state, ItemState::Maintenance);
    let e = app.ops.service_item("FICTIF-S1", &go(ItemState::Lent, "x")).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 409);
    assert_eq!(app.ops.service_item("FICTIF-S1", &go(ItemState::Available, "  ")).await.status_code(), 422);
    app.ops.service_item("FICTIF-S1", &go(ItemState::Available, "réparé")).await.unwrap();
    let d = app.ops.service_item("FICTIF-S1", &go(ItemState::Retired, "fin de vie")).await.unwrap();
    assert_eq!(d.item.state, ItemState::Retired);
    assert_eq!(
        d.history.iter().map(|e| e.to.as_str()).collect::<Vec<_>>(),
        ["available", "maintenance", "available", "retired"]
    );
    let status = app.auditor.inventory_status().await.unwrap();
    assert_eq!(status.iter().find(|l| l.kind == ItemKind::Laptop).unwrap().out_of_service, 1);
}

#[tokio::test]
async fn write_offs_and_wipes_need_their_reasons_and_records() {
    let app = TestApp::spawn().await;
    let one = "asset_tag,serial,kind,model,imei\nR-1,FICTIF-B1,router,Routeur,490154203237518\n";
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "one.csv".into(), csv: one.into() }] })
        .await
        .unwrap();
    let mut r = request("13005");
    r.needs = needs(0, 1, 0, 0);
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    app.activate(&c.id).await;
    let history = app.ops.crisis_history_all(c.id.as_str()).await.unwrap();
    assert_eq!(history[0].details["needs"]["router"], 1, "the request's audit entry records what was asked");
    app.ops.lend(c.id.as_str(), &LendRequest { serial: "FICTIF-B1".into(), agent_id: None }).await.unwrap();
    for reason in ["", "   ", "\u{1b}[31m"] {
        let e = app
            .ops
            .write_off(c.id.as_str(), &WriteOffRequest { serial: "FICTIF-B1".into(), reason: reason.into() })
            .await
            .unwrap_err();
        assert_eq!(e.status().unwrap().as_u16(), 422, "{reason:?}");
    }
    app.ops
        .check_in(c.id.as_str(), &CheckinRequest { serial: "FICTIF-B1".into(), condition: "ok".into(), note: None })
        .await
        .unwrap();
    let empty = WipeRequest { method: " ".into(), operator: String::new(), certificate: "x".repeat(200) };
    let e = app.ops.wipe("FICTIF-B1", &empty).await.unwrap_err();
    assert_eq!(e.problem().unwrap().errors.len(), 3, "every missing field named");
    assert_eq!(app.ops.item("FICTIF-B1").await.unwrap().item.state, ItemState::Returned, "nothing changed");
}

/// Stock truth (#34, point 5): every kind back from a loan returns to stock by its own path (a
/// certified wipe for laptops and phones, a check for routers, SIMs and printers); a written-off
/// item carries its write-off date and reason, never a return date; the dossier keeps its
/// equipment table after the hand-back opens.
#[tokio::test]
async fn every_kind_returns_to_stock_by_its_path_and_a_write_off_is_never_a_return() {
    use repli_proto::api::CheckRequest;
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    let mut r = request("13005");
    r.agents = 1;
    r.needs = needs(1, 1, 1, 1);
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    let agents = app
        .dgs
        .set_agents(
            id,
            &AgentsRequest { agents: vec![AgentInput { name: "Luc Durand".into(), service: "Accueil".into() }] },
        )
        .await
        .unwrap();
    app.activate(&c.id).await;
    let held: Vec<_> =
        app.ops.inventory_items().await.unwrap().into_iter().filter(|i| i.crisis.as_deref() == Some(id)).collect();
    assert_eq!(held.len(), 6, "a laptop, a router, a phone, a printer and two SIM cards: {held:#?}");
    let of = |k: ItemKind| held.iter().filter(|i| i.item.kind == k).map(|i| i.item.serial.clone()).collect::<Vec<_>>();
    let (laptop, router, phone, printer, sims) = (
        of(ItemKind::Laptop)[0].clone(),
        of(ItemKind::Router)[0].clone(),
        of(ItemKind::Phone)[0].clone(),
        of(ItemKind::Printer)[0].clone(),
        of(ItemKind::Sim),
    );
    for s in [&laptop, &phone] {
        app.ops.lend(id, &LendRequest { serial: s.clone(), agent_id: Some(agents[0].id) }).await.unwrap();
    }
    for s in [&router, &printer, &sims[0], &sims[1]] {
        app.ops.lend(id, &LendRequest { serial: s.clone(), agent_id: None }).await.unwrap();
    }
    app.make_ready(&c.id).await;
    app.ops.act(&c.id, CrisisAction::Deliver, None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("retour à la normale")).await.unwrap();

    // The dossier keeps what was asked for and given once the hand-back has opened.
    let dossier = app.ops.document(id, "01-dossier-de-mise-a-disposition.html").await.unwrap();
    for kind in ["ordinateur portable", "routeur 4G/5G", "téléphone mobile", "carte SIM", "imprimante"] {
        let row = dossier.lines().find(|l| l.starts_with(&format!("<tr><td>{kind}</td>")));
        let want = if kind == "carte SIM" { 2 } else { 1 };
        assert_eq!(
            row,
            Some(format!("<tr><td>{kind}</td><td>{want}</td><td>{want}</td></tr>").as_str()),
            "{kind}: {dossier}"
        );
    }
    assert_eq!(app.ops.crisis(id).await.unwrap().needs.len(), 5, "the crisis page keeps them too");

    for (s, condition) in [(&laptop, "ok"), (&router, "ok"), (&printer, "ok"), (&sims[0], "ok"), (&sims[1], "damaged")]
    {
        app.ops
            .check_in(id, &CheckinRequest { serial: s.clone(), condition: condition.into(), note: None })
            .await
            .unwrap();
    }
    let reason = "volé dans le véhicule, plainte déposée <b>n° 42</b>";
    app.ops.write_off(id, &WriteOffRequest { serial: phone.clone(), reason: reason.into() }).await.unwrap();

    // A laptop is not « checked » back into stock: it needs its certified wipe.
    let check = |note: &str| CheckRequest { note: note.into() };
    let e = app.ops.check_item(&laptop, &check("vu")).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 409);
    assert!(e.problem().unwrap().detail.contains("effacement certifié"), "{e:?}");
    assert_eq!(app.ops.item(&laptop).await.unwrap().item.state, ItemState::Returned, "nothing changed");
    // Bad input changes nothing.
    assert_eq!(app.ops.check_item(&router, &check("   ")).await.status_code(), 422);
    assert_eq!(app.ops.check_item("FICTIF-INCONNU-1", &check("vu")).await.status_code(), 404);
    assert_eq!(app.dgs.check_item(&router, &check("vu")).await.status_code(), 403);
    assert_eq!(app.ops.item(&router).await.unwrap().item.state, ItemState::Returned);
    // Routers, SIMs and printers go back to stock by their check; a damaged one to maintenance.
    for s in [&router, &printer, &sims[0]] {
        let d = app.ops.check_item(s, &check("réinitialisé, complet")).await.unwrap();
        assert_eq!((d.item.state, d.item.crisis.as_deref()), (ItemState::Available, None), "{s}");
        assert_eq!(d.history.last().unwrap().note.as_deref(), Some("réinitialisé, complet"));
    }
    let d = app.ops.check_item(&sims[1], &check("puce rayée")).await.unwrap();
    assert_eq!(d.item.state, ItemState::Maintenance);
    assert_eq!(app.ops.check_item(&router, &check("encore")).await.status_code(), 409, "already back");
    // The laptop goes back by its wipe.
    let w = WipeRequest {
        method: "NIST 800-88 purge".into(),
        operator: "Atelier DSI".into(),
        certificate: "CERT-1".into(),
    };
    assert_eq!(app.ops.wipe(&laptop, &w).await.unwrap().item.state, ItemState::Available);

    // The written-off phone: its date and reason, never a return.
    let loans = app.ops.loans(id).await.unwrap();
    let lost = loans.iter().find(|l| l.serial == phone).unwrap();
    assert_eq!((lost.returned_at, lost.write_off_reason.as_deref()), (None, Some(reason)));
    assert!(lost.written_off_at.is_some() && !lost.is_open());
    assert!(loans.iter().filter(|l| l.serial != phone).all(|l| l.returned_at.is_some() && l.written_off_at.is_none()));
    let pv = app.ops.document(id, "06-proces-verbal-de-restitution.html").await.unwrap();
    let tag = &app.ops.item(&phone).await.unwrap().item.item.asset_tag;
    let row = pv.lines().find(|l| l.contains(&format!("<td>{tag}</td>"))).unwrap();
    assert!(row.contains("passé en perte le") && row.contains("volé dans le véhicule"), "{row}");
    assert!(row.contains("&lt;b&gt;n° 42&lt;/b&gt;"), "escaped: {row}");
    let dossier = app.ops.document(id, "01-dossier-de-mise-a-disposition.html").await.unwrap();
    let row = dossier.lines().find(|l| l.contains(&format!("<td>{tag}</td>"))).unwrap();
    assert!(row.contains("passé en perte le") && !row.contains("rendu le"), "{row}");

    let status = app.auditor.inventory_status().await.unwrap();
    let line = |k| status.iter().find(|l| l.kind == k).unwrap().clone();
    assert_eq!(line(ItemKind::Router).wiping, 0, "no router stuck « restitué »");
    assert_eq!(line(ItemKind::Printer).wiping, 0);
    assert_eq!(line(ItemKind::Sim).wiping, 0);
    let v = app.auditor.audit_verify().await.unwrap();
    assert!(v.verified, "{v:?}");
}

/// The inventory page (#34, point 1): search by serial, tag or model, filters by kind, state,
/// crisis or commune and holder, sorting and pages, done by the store; CSV exports of the list
/// and of every loan whose cells never start a formula; bad filters named, never echoed.
#[tokio::test]
async fn the_inventory_page_searches_filters_sorts_pages_and_exports_safely() {
    use crate::web::{encode, http, session_of};
    use reqwest::header::COOKIE;
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    let hostile = "asset_tag,serial,kind,model\nAMP-ZZZ-1,FICTIF-HOSTILE-1,printer,=HYPERLINK(\"http://x\") <script>alert(1)</script>\n";
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "h.csv".into(), csv: hostile.into() }] })
        .await
        .unwrap();
    let mut r = request("13005");
    r.agents = 1;
    r.needs = needs(1, 0, 0, 0);
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    let agents = app
        .dgs
        .set_agents(
            id,
            &AgentsRequest { agents: vec![AgentInput { name: "=Luc Durand".into(), service: "+Accueil".into() }] },
        )
        .await
        .unwrap();
    app.activate(&c.id).await;
    let laptop =
        app.ops.inventory_items().await.unwrap().into_iter().find(|i| i.crisis.as_deref() == Some(id)).unwrap();
    app.ops.lend(id, &LendRequest { serial: laptop.item.serial.clone(), agent_id: Some(agents[0].id) }).await.unwrap();

    let (ops, _) = session_of(&app, Role::Ops, None, "ops.inventaire").await;
    let get = |query: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = app.url(&format!("/inventaire?{}", encode(&pairs)));
        let ops = ops.clone();
        async move {
            let r = http().get(url).header(COOKIE, ops).send().await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let found = |html: &str| -> (String, Vec<String>) {
        let status =
            html.split("id=\"resultat\" role=\"status\">").nth(1).unwrap().split("</p>").next().unwrap().to_owned();
        let tags = html
            .split("<td data-th=\"Étiquette\"><a href=\"/inventaire/")
            .skip(1)
            .map(|s| s.split('>').nth(1).unwrap().split('<').next().unwrap().to_owned())
            .collect();
        (status, tags)
    };
    // Everything, by asset tag, 50 to a page.
    let (status, tags) = found(&get(vec![]).await);
    assert_eq!(status, "271 équipement(s) trouvé(s) — page 1 sur 6.");
    assert_eq!(tags.len(), 50);
    assert!(tags.windows(2).all(|w| w[0] < w[1]), "{tags:?}");
    let (status, last) = found(&get(vec![("page", "6".into())]).await);
    assert_eq!((status.as_str(), last.len()), ("271 équipement(s) trouvé(s) — page 6 sur 6.", 21));
    // Search by part of a serial, of an asset tag, of a model, any case.
    let (status, tags) = found(&get(vec![("q", "hostile".into())]).await);
    assert_eq!(
        (status.as_str(), tags.as_slice()),
        ("1 équipement(s) trouvé(s) — page 1 sur 1.", &["AMP-ZZZ-1".to_owned()][..])
    );
    let (_, tags) = found(&get(vec![("q", laptop.item.asset_tag.to_lowercase())]).await);
    assert_eq!(tags, std::slice::from_ref(&laptop.item.asset_tag));
    let (_, tags) = found(&get(vec![("q", "hyperlink".into())]).await);
    assert_eq!(tags, ["AMP-ZZZ-1"]);
    // LIKE's wildcards are taken literally.
    let (status, _) = found(&get(vec![("q", "%".into())]).await);
    assert!(status.starts_with("0 équipement(s)"), "{status}");
    // Filters: kind and state, crisis or commune, holder.
    let (status, _) = found(&get(vec![("type", "laptop".into()), ("etat", "available".into())]).await);
    assert!(status.starts_with("119 équipement(s)"), "{status}");
    for crise in [id.to_owned(), "13005".into(), "aubag".into()] {
        let html = get(vec![("crise", crise.clone())]).await;
        let (status, tags) = found(&html);
        assert_eq!(tags, std::slice::from_ref(&laptop.item.asset_tag), "{crise}: {status}");
        assert!(html.contains("Luc Durand</td>"), "the holder is shown");
    }
    let (_, tags) = found(&get(vec![("detenteur", "luc".into())]).await);
    assert_eq!(tags, std::slice::from_ref(&laptop.item.asset_tag));
    // Sorting: by kind descending puts the SIM cards first… then by tag.
    let (_, tags) = found(&get(vec![("tri", "type".into()), ("ordre", "desc".into())]).await);
    assert!(tags[0].contains("SIM"), "{tags:?}");
    // The hostile model is shown escaped.
    let html = get(vec![("q", "AMP-ZZZ".into())]).await;
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>alert(1)"));
    // Bad filters: a fixed message each, the rest still served, nothing echoed.
    let html = get(vec![
        ("type", "tablette".into()),
        ("etat", "vole".into()),
        ("tri", "prix".into()),
        ("page", "-3".into()),
        ("q", "x".repeat(101)),
    ])
    .await;
    for m in ["Type inconnu", "État inconnu", "Tri inconnu", "Numéro de page invalide", "Recherche refusée"] {
        assert!(html.contains(m), "{m}");
    }
    assert!(!html.contains("tablette") && !html.contains("xxxxxxxxxx"));
    assert!(found(&html).0.starts_with("271 "), "the page still lists everything");

    // Exports: the list's matches, every loan; no cell starts a formula.
    let csv = |path: String| {
        let ops = ops.clone();
        let url = app.url(&path);
        async move { http().get(url).header(COOKIE, ops).send().await.unwrap().text().await.unwrap() }
    };
    let items = csv(format!("/inventaire/equipements/export?{}", encode(&[("q", "AMP-ZZZ")]))).await;
    let mut rd = ::csv::Reader::from_reader(items.as_bytes());
    let rows: Vec<::csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{items}");
    assert_eq!(&rows[0][3], "'=HYPERLINK(\"http://x\") <script>alert(1)</script>");
    let all = csv("/inventaire/equipements/export".into()).await;
    assert_eq!(all.lines().count(), 272, "a header and every item, not a page");
    let loans = csv("/inventaire/prets/export".into()).await;
    let mut rd = ::csv::Reader::from_reader(loans.as_bytes());
    let rows: Vec<::csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{loans}");
    assert_eq!((&rows[0][0], &rows[0][6], &rows[0][7]), (id, "'=Luc Durand", "'+Accueil"));
    for row in rows
        .iter()
        .chain(::csv::Reader::from_reader(all.as_bytes()).records().map(Result::unwrap).collect::<Vec<_>>().iter())
    {
        assert!(row.iter().all(|c| !c.starts_with(['=', '+', '-', '@'])), "{row:?}");
    }
    // The DGS has no inventory page.
    let (dgs, _) = session_of(&app, Role::Dgs, Some("13005"), "dgs.inventaire").await;
    let r = http().get(app.url("/inventaire/prets/export")).header(COOKIE, dgs).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
}

/// Bulk steps (#34, point 2): the items ticked are taken back, checked or wiped in one step,
/// each audited; one that cannot refuses the whole step, named with why, and nothing changes. A
/// scanner's file is read against the pool first: unknown, duplicate and other-crisis lines are
/// named before anything changes.
#[tokio::test]
async fn bulk_steps_are_all_or_nothing_and_a_scanner_file_is_previewed_first() {
    use crate::web::{follow, message, post_form, post_multipart, session_of};
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for (insee, routers) in [("13005", 2), ("13001", 1)] {
        let mut r = request(insee);
        r.needs = needs(0, routers, 0, 1);
        let c = app.ops.request_crisis(&r, None).await.unwrap();
        app.activate(&c.id).await;
        let mine: Vec<_> = app
            .ops
            .inventory_items()
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.crisis.as_deref() == Some(c.id.as_str()))
            .collect();
        for i in &mine {
            app.ops.lend(c.id.as_str(), &LendRequest { serial: i.item.serial.clone(), agent_id: None }).await.unwrap();
        }
        held.push(mine);
        ids.push(c.id.to_string());
    }
    let (a, b) = (&held[0], &held[1]);
    assert_eq!(a.len(), 5, "2 routers, 2 SIM cards, a printer");
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.lot").await;
    let state = |s: String| {
        let ops = app.ops.clone();
        async move { ops.item(&s).await.unwrap().item.state }
    };
    let ticks = |items: &[&repli_proto::api::ItemView]| -> Vec<(String, &'static str)> {
        items.iter().map(|i| (format!("lot-{}", i.item.serial), "oui")).collect()
    };
    let post = |action: &str, extra: Vec<(String, &'static str)>, fields: &[(&str, &str)]| {
        let mut all: Vec<(String, String)> = vec![("csrf".into(), csrf.clone()), ("action".into(), action.into())];
        all.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        all.extend(extra.into_iter().map(|(k, v)| (k, v.to_owned())));
        let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        post_form(&app, &ops, "/inventaire/lot", &pairs)
    };

    // A's items and one of B's, for A: the whole step is refused, B's router named.
    let mut mixed: Vec<&repli_proto::api::ItemView> = a.iter().collect();
    mixed.push(&b[0]);
    let r = post("retour", ticks(&mixed), &[("crise", ids[0].as_str())]).await.unwrap();
    let html = follow(&app, &ops, r).await;
    let err = message(&html, "message-erreur").unwrap();
    assert!(err.contains("Rien n&#x27;a été fait") && err.contains(&b[0].item.serial), "{err}");
    assert!(!err.contains(&a[0].item.serial), "only the refused item is named: {err}");
    for i in a.iter().chain(b.iter()) {
        assert_eq!(state(i.item.serial.clone()).await, ItemState::Lent, "nothing changed");
    }
    // A's five items taken back in one step, each audited.
    let before = app.auditor.audit_verify().await.unwrap();
    let r = post("retour", ticks(&a.iter().collect::<Vec<_>>()), &[("crise", ids[0].as_str())]).await.unwrap();
    let html = follow(&app, &ops, r).await;
    assert_eq!(message(&html, "message").as_deref(), Some("5 équipement(s) : retour enregistré."), "{html}");
    let after = app.auditor.audit_verify().await.unwrap();
    assert!(after.verified);
    assert!(after.entries >= before.entries + 5, "an entry per item: {before:?} → {after:?}");
    assert!(app.ops.loans(&ids[0]).await.unwrap().iter().all(|l| l.returned_at.is_some()));
    // A check refused for a router still in stock names it; nothing changes.
    let spare = app
        .ops
        .inventory_items()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.state == ItemState::Available && i.item.kind == ItemKind::Router)
        .unwrap();
    let mut with_spare: Vec<&repli_proto::api::ItemView> = a.iter().collect();
    with_spare.push(&spare);
    let r = post("verification", ticks(&with_spare), &[("controle", "réinitialisés")]).await.unwrap();
    let err = message(&follow(&app, &ops, r).await, "message-erreur").unwrap();
    assert!(err.contains(&spare.item.serial) && err.contains("disponible"), "{err}");
    assert_eq!(state(a[0].item.serial.clone()).await, ItemState::Returned);
    // Without what was checked: refused.
    let r = post("verification", ticks(&a.iter().collect::<Vec<_>>()), &[("controle", " ")]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message-erreur").is_some());
    let r = post("verification", ticks(&a.iter().collect::<Vec<_>>()), &[("controle", "réinitialisés, complets")])
        .await
        .unwrap();
    let html = follow(&app, &ops, r).await;
    assert_eq!(message(&html, "message").as_deref(), Some("5 équipement(s) : vérification enregistrée."), "{html}");
    for i in a {
        // Back in stock, where the waiting list may take it at once (crisis A, still being
        // prepared here, lacks what it lent).
        let d = app.ops.item(&i.item.serial).await.unwrap();
        assert!(matches!(d.item.state, ItemState::Available | ItemState::Reserved), "{d:?}");
        assert!(d.history.iter().any(|e| e.to == "available" && e.note.as_deref() == Some("réinitialisés, complets")));
    }
    // Nothing ticked, an unknown action: a message, nothing done.
    let r = post("retour", vec![], &[]).await.unwrap();
    assert_eq!(
        message(&follow(&app, &ops, r).await, "message-erreur").as_deref(),
        Some("Cochez au moins un équipement.")
    );
    let r = post("broyage", ticks(&[&b[0]]), &[]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message-erreur").unwrap().contains("Choisissez"));

    // A scanner's file for B: a duplicate, an unknown code, another crisis's item, a hostile
    // code — each named, nothing changed.
    let file = format!("serial\n{}\n{}\n<b>INCONNU</b>\n{}\n", b[0].item.serial, b[0].item.asset_tag, a[0].item.serial);
    let upload = |file: String| {
        post_multipart(
            &app,
            &ops,
            "/inventaire/lot/fichier",
            &[("csrf", csrf.as_str()), ("action", "retour"), ("crise", ids[1].as_str())],
            Some(("fichier", "douchette.txt", Box::leak(file.into_boxed_str()))),
        )
    };
    let r = upload(file).await.unwrap();
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("3 ligne(s) inutilisable(s)"), "{html}");
    assert!(html.contains("en double : déjà ligne 2"), "{html}");
    assert!(html.contains("inconnu : ni ce numéro de série"), "{html}");
    assert!(html.contains("détenu pour une autre crise") || html.contains("détenu pour aucune crise"), "{html}");
    assert!(html.contains("&lt;b&gt;INCONNU&lt;/b&gt;") && !html.contains("<b>INCONNU"), "escaped");
    assert!(!html.contains("action=\"/inventaire/lot\""), "no confirmation while a line is refused");
    assert_eq!(state(b[0].item.serial.clone()).await, ItemState::Lent, "nothing changed");
    // A clean file: every line named, then one confirmation for all of them.
    let clean = b.iter().map(|i| i.item.asset_tag.clone()).collect::<Vec<_>>().join("\n");
    let r = upload(clean).await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("Confirmer pour ces {} équipement(s)", b.len())), "{html}");
    for i in b {
        assert!(html.contains(&format!("name=\"lot-{}\" value=\"oui\"", i.item.serial)), "{html}");
    }
    let r = post("retour", ticks(&b.iter().collect::<Vec<_>>()), &[("crise", ids[1].as_str())]).await.unwrap();
    let html = follow(&app, &ops, r).await;
    assert!(message(&html, "message").unwrap().contains("retour enregistré"), "{html}");
    // An empty file, a file of blank lines: refused with a French message.
    let r = upload("\n\n".into()).await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("aucun numéro de série"));
}

/// Item sheets and SIM links (#34, point 3): ops edit an item's tag, model, notes and condition
/// (audited, kept in its history, hostile text escaped); a SIM sits in one phone or router, is
/// named on the loan receipt, and a device back without it is flagged.
#[tokio::test]
async fn items_are_edited_and_sims_follow_their_device() {
    use crate::web::{follow, message, post_form, session_of};
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    let mut r = request("13005");
    r.needs = needs(0, 1, 0, 0);
    let c = app.ops.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    app.activate(&c.id).await;
    let items = app.ops.inventory_items().await.unwrap();
    let mine: Vec<_> = items.iter().filter(|i| i.crisis.as_deref() == Some(id)).collect();
    let router = mine.iter().find(|i| i.item.kind == ItemKind::Router).unwrap().item.clone();
    let sim = mine.iter().find(|i| i.item.kind == ItemKind::Sim).unwrap().item.clone();
    let free = |k: ItemKind| items.iter().find(|i| i.item.kind == k && i.crisis.is_none()).unwrap().item.clone();
    let (phone, laptop, other_sim) = (free(ItemKind::Phone), free(ItemKind::Laptop), free(ItemKind::Sim));
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.fiche").await;
    let post = |serial: &str, what: &str, fields: Vec<(&'static str, String)>| {
        let mut all = vec![("csrf", csrf.clone())];
        all.extend(fields);
        let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&app, &ops, &format!("/inventaire/{serial}/{what}"), &pairs)
    };
    let said = |html: String| (message(&html, "message"), message(&html, "message-erreur"));

    // The sheet: every field checked, all or nothing.
    let hostile = "<script>alert(1)</script> Dell";
    let edit = |tag: &str, model: &str, notes: &str, etat: &str| {
        vec![
            ("etiquette", tag.to_owned()),
            ("modele", model.to_owned()),
            ("notes", notes.to_owned()),
            ("etat", etat.to_owned()),
        ]
    };
    let taken = &phone.asset_tag;
    let r = post(&laptop.serial, "fiche", edit(taken, hostile, "", "ok")).await.unwrap();
    let (_, err) = said(follow(&app, &ops, r).await);
    assert!(err.unwrap().contains("déjà celle de l"), "a tag taken");
    let r = post(&laptop.serial, "fiche", edit("AMP-LAP-NEUF", hostile, "", "cassé")).await.unwrap();
    assert!(said(follow(&app, &ops, r).await).1.unwrap().contains("etat"), "an unknown condition");
    assert_eq!(app.ops.item(&laptop.serial).await.unwrap().item.item.model, laptop.model, "nothing changed");
    let r =
        post(&laptop.serial, "fiche", edit("AMP-LAP-NEUF", hostile, "rayure <b>capot</b>", "damaged")).await.unwrap();
    let html = follow(&app, &ops, r).await;
    assert_eq!(said(html.clone()).0.as_deref(), Some("Fiche enregistrée."), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Dell") && !html.contains("<script>alert(1)"));
    assert!(
        html.contains("rayure &lt;b&gt;capot&lt;/b&gt;")
            && html.contains("fiche modifiée : asset_tag, model, notes, condition")
    );
    let d = app.ops.item("AMP-LAP-NEUF").await.unwrap();
    assert_eq!(
        (d.item.item.model.as_str(), d.notes.as_str(), d.condition.as_str()),
        (hostile, "rayure <b>capot</b>", "damaged")
    );
    let r =
        post(&laptop.serial, "fiche", edit("AMP-LAP-NEUF", hostile, "rayure <b>capot</b>", "damaged")).await.unwrap();
    assert_eq!(said(follow(&app, &ops, r).await).0.as_deref(), Some("Rien n&#x27;a changé."));

    // SIM links: a SIM in one device at most; only phones and routers hold one.
    let r = post(&router.serial, "sim", vec![("sim", sim.asset_tag.clone())]).await.unwrap();
    assert_eq!(said(follow(&app, &ops, r).await).0.as_deref(), Some("Carte SIM associée."));
    let r = post(&phone.serial, "sim", vec![("sim", sim.serial.clone())]).await.unwrap();
    let err = said(follow(&app, &ops, r).await).1.unwrap();
    assert!(err.contains("déjà dans l") && err.contains(&router.serial), "{err}");
    for (device, s, why) in [
        (&laptop.serial, &other_sim.serial, "seuls un téléphone ou un routeur"),
        (&phone.serial, &laptop.serial, "pas une carte SIM"),
        (&phone.serial, &"SIM-INCONNUE".to_owned(), "carte SIM inconnue"),
    ] {
        let r = post(device, "sim", vec![("sim", s.clone())]).await.unwrap();
        let err = said(follow(&app, &ops, r).await).1.unwrap();
        assert!(err.contains(why), "{why}: {err}");
    }
    assert_eq!(app.ops.item(&phone.serial).await.unwrap().sim, None, "nothing linked");
    assert_eq!(app.ops.item(&sim.serial).await.unwrap().in_device.as_deref(), Some(router.asset_tag.as_str()));

    // The receipt names the SIM in its router; the router back without it is flagged.
    for s in [&router.serial, &sim.serial] {
        app.ops.lend(id, &LendRequest { serial: s.clone(), agent_id: None }).await.unwrap();
    }
    let receipt = app.ops.document(id, "05-bon-de-pret.html").await.unwrap();
    let row = receipt.lines().find(|l| l.contains(&format!("<td>{}</td>", router.asset_tag))).unwrap();
    assert!(row.contains(&format!("avec la carte SIM {}", sim.asset_tag)), "{row}");
    let loans = app
        .ops
        .check_in(id, &CheckinRequest { serial: router.serial.clone(), condition: "ok".into(), note: None })
        .await
        .unwrap();
    let back = loans.iter().find(|l| l.serial == router.serial).unwrap();
    assert_eq!(back.sim_not_returned.as_deref(), Some(sim.asset_tag.as_str()));
    let pv = app.ops.document(id, "06-proces-verbal-de-restitution.html").await.unwrap();
    assert!(pv.contains(&format!("rendu sans sa carte SIM {}", sim.asset_tag)), "{pv}");
    let loans = app
        .ops
        .check_in(id, &CheckinRequest { serial: sim.serial.clone(), condition: "ok".into(), note: None })
        .await
        .unwrap();
    assert!(loans.iter().all(|l| l.sim_not_returned.is_none()), "the SIM came back too");
    assert!(app.auditor.audit_verify().await.unwrap().verified);
}

/// Labels (#34, point 4): A4 sheets of 24 labels for a search's items, or one item's label;
/// each carries the asset tag, the kind and a QR code of the asset tag (what the scan field
/// accepts), inline SVG with no item text inside.
#[tokio::test]
async fn labels_print_the_asset_tag_kind_and_a_qr_code_the_scan_accepts() {
    use crate::web::{encode, http, session_of};
    use reqwest::header::COOKIE;
    let app = TestApp::spawn().await;
    app.ops.import_inventory(&pool()).await.unwrap();
    // Asset tags are identifiers (letters, digits, - _ . /): nothing to escape in a label.
    let hostile = "asset_tag,serial,kind,model\nAMP-PRN-X/1,FICTIF-HOSTILE-2,printer,<b>Imprimante</b>\n";
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "h.csv".into(), csv: hostile.into() }] })
        .await
        .unwrap();
    let (auditor, _) = session_of(&app, Role::Auditor, None, "audit.etiquettes").await;
    let get = |path: String| {
        let c = auditor.clone();
        let url = app.url(&path);
        async move {
            let r = http().get(url).header(COOKIE, c).send().await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK, "{path}");
            r.text().await.unwrap()
        }
    };
    // Every laptop: 120 labels on 5 sheets of 24.
    let html = get(format!("/inventaire/etiquettes?{}", encode(&[("type", "laptop")]))).await;
    assert_eq!(html.matches("class=\"planche\"").count(), 5);
    assert_eq!(html.matches("class=\"etiquette-materiel\"").count(), 120);
    assert_eq!(html.matches("<svg role=\"img\" aria-label=\"Code QR de l").count(), 120);
    let items = app.ops.inventory_items().await.unwrap();
    let laptop = items.iter().find(|i| i.item.kind == ItemKind::Laptop).unwrap();
    let qr = repli_docs::qr_svg_named(&laptop.item.asset_tag, "Code QR de l'étiquette").unwrap();
    assert!(html.contains(&qr), "the QR code encodes the asset tag");
    assert!(html.contains(&format!("<strong>{}</strong><br>ordinateur portable", laptop.item.asset_tag)));
    // One item's label, from its page.
    let page = get("/inventaire/FICTIF-HOSTILE-2".into()).await;
    assert!(page.contains("href=\"/inventaire/FICTIF-HOSTILE-2/etiquette\""));
    let one = get("/inventaire/FICTIF-HOSTILE-2/etiquette".into()).await;
    assert_eq!(one.matches("class=\"etiquette-materiel\"").count(), 1);
    assert!(
        one.contains("<strong>AMP-PRN-X&#x2F;1</strong><br>imprimante")
            || one.contains("<strong>AMP-PRN-X/1</strong><br>imprimante"),
        "{one}"
    );
    assert!(!one.contains("<b>Imprimante"), "no model, no markup");
    // What the label's QR code holds is accepted where items are scanned: the asset tag.
    let d = app.ops.item(&laptop.item.asset_tag).await.unwrap();
    assert_eq!(d.item.item.serial, laptop.item.serial);
    // An unknown item has no label.
    let r =
        http().get(app.url("/inventaire/INCONNU-1/etiquette")).header(COOKIE, auditor.clone()).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
}
