//! A crisis from request to closure, the SLA and the audit trail, through the API.

use jiff::SignedDuration;
use repli_core::{CrisisAction, CrisisState, SlaStatus};
use repli_proto::api::CrisisQuery;
use repli_tests::{TestApp, request};

#[tokio::test]
async fn a_crisis_goes_from_request_to_closure() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), Some("k-1")).await.unwrap();
    assert_eq!(c.id.as_str(), "13005-2026-001");
    assert_eq!(c.state, CrisisState::Requested);
    assert_eq!(c.contact.phone, "+33612345678", "phone stored in E.164");
    // Monday 08:00 + 48 business hours (08:00–18:00) = Friday 16:00 Paris.
    assert_eq!(c.sla.due_at, "2026-11-27T15:00:00Z".parse().unwrap());
    assert_eq!(c.sla.status, SlaStatus::OnTrack);
    assert_eq!(c.sla.remaining_seconds, 48 * 3600);
    assert_eq!(c.sla.used_percent, 0);
    assert_eq!(c.next_actions, [CrisisAction::Activate, CrisisAction::Reject, CrisisAction::Cancel]);

    // Ops activate; the engine starts provisioning at once and declares the kit ready when
    // its last step passes (here, once ops confirm the manual tasks four hours later).
    app.clock.advance(SignedDuration::from_hours(2));
    assert_eq!(app.activate(&c.id).await.state, CrisisState::Provisioning);
    app.clock.advance(SignedDuration::from_hours(4));
    assert_eq!(app.make_ready(&c.id).await.state, CrisisState::Ready);
    // The playbook's message to the commune goes to ops, to relay by the out-of-band contact.
    let sent = app.ops.notifications().await.unwrap();
    let relay = sent.iter().find(|n| n.subject.starts_with("À transmettre à Anne Martin")).expect("message to relay");
    assert_eq!(relay.status, "sent", "delivered at once, not at the next maintenance round: {relay:?}");
    app.clock.advance(SignedDuration::from_hours(2));
    assert_eq!(app.ops.act(&c.id, CrisisAction::Deliver, None).await.unwrap().state, CrisisState::Delivered);
    app.clock.advance(SignedDuration::from_hours(2));
    assert_eq!(app.hand_back(&c.id).await.state, CrisisState::Closed);

    let done = app.auditor.crisis(c.id.as_str()).await.unwrap();
    // Ready after 6 hours of Monday: met, with 6 business hours used.
    assert_eq!(done.sla.status, SlaStatus::Met);
    assert_eq!(done.sla.elapsed_seconds, 6 * 3600);
    assert_eq!(done.sla.used_percent, 12, "6 of 48 hours");
    assert_eq!(done.timeline.ready_at, Some("2026-11-23T13:00:00Z".parse().unwrap()));
    // The document carries the most recent page of the history; the history route pages through
    // all of it, oldest first.
    let history = app.auditor.crisis_history_all(c.id.as_str()).await.unwrap();
    assert!(history.len() > done.history.len(), "{} entries in all", history.len());
    assert_eq!(done.history.len(), 20, "the document carries the 20 most recent entries");
    assert_eq!(history[history.len() - done.history.len()..], done.history[..]);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    let transitions: Vec<(&str, &str)> = history
        .iter()
        .filter(|h| h.action.starts_with("crisis."))
        .map(|h| (h.action.as_str(), h.role.as_str()))
        .collect();
    assert_eq!(
        transitions,
        [
            ("crisis.request", "dgs"),
            ("crisis.activate", "ops"),
            ("crisis.start_provisioning", "system"),
            ("crisis.agents.added", "ops"),
            ("crisis.mark_ready", "system"),
            ("crisis.deliver", "ops"),
            ("crisis.start_handback", "ops"),
            ("crisis.close", "system"),
        ]
    );
    // Every step of both playbooks is in the trail: started, then succeeded or confirmed.
    let steps = app.ops.steps(c.id.as_str()).await.unwrap();
    // Titles are French: « d'Aubagne », not « de Aubagne ».
    let reserve = steps.runs[0].steps.iter().find(|s| s.step == "reserve").unwrap();
    assert_eq!(reserve.title, "Réserver les équipements d'Aubagne");
    let mut automated = 0;
    for run in &steps.runs {
        assert_eq!(run.state.as_str(), "succeeded", "{}", run.playbook);
        assert!(run.steps.iter().all(|s| s.state == repli_core::StepState::Succeeded), "{:#?}", run.steps);
        automated += run.steps.len();
    }
    let started = history.iter().filter(|h| h.action == "engine.step.started").count();
    let confirmed = history.iter().filter(|h| h.action == "engine.task.done").count();
    assert!(started >= automated && confirmed >= 4, "{started} started, {confirmed} confirmed");
    let v = app.auditor.audit_verify().await.unwrap();
    assert!(v.verified, "{v:?}");
}

#[tokio::test]
async fn sla_breach_and_late_readiness_are_reported() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    // Saturday of the next week: past Friday 16:00.
    app.clock.set("2026-11-28T10:00:00Z".parse().unwrap());
    let v = app.ops.crisis(c.id.as_str()).await.unwrap();
    assert_eq!(v.sla.status, SlaStatus::Breached);
    assert_eq!(v.sla.remaining_seconds, 0);
    app.make_ready(&c.id).await;
    let v = app.ops.crisis(c.id.as_str()).await.unwrap();
    assert_eq!(v.sla.status, SlaStatus::MetLate);
    assert_eq!(v.sla.elapsed_seconds, 50 * 3600, "Mon–Fri = 50 business hours");
}

#[tokio::test]
async fn cancel_needs_a_reason_and_frees_the_commune() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let e = app.dgs.act(&c.id, CrisisAction::Cancel, None).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 422);
    assert_eq!(e.problem().unwrap().code, "reason_required");
    assert_eq!(e.problem().unwrap().errors[0].field, "reason");
    let v = app.dgs.act(&c.id, CrisisAction::Cancel, Some("fausse alerte, SI rétabli")).await.unwrap();
    assert_eq!(v.state, CrisisState::Cancelled);
    assert_eq!(v.end_reason.as_deref(), Some("fausse alerte, SI rétabli"));
    assert_eq!(v.sla.status, SlaStatus::NotApplicable);
    let again = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    assert_eq!(again.id.as_str(), "13005-2026-002");
    let open = app.ops.crises(&CrisisQuery { open: Some(true), ..Default::default() }).await.unwrap();
    assert_eq!(open.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["13005-2026-002"]);
    let cancelled =
        app.ops.crises(&CrisisQuery { state: Some(CrisisState::Cancelled), ..Default::default() }).await.unwrap();
    assert_eq!(cancelled.len(), 1);
}

#[tokio::test]
async fn ops_request_on_behalf_of_a_dgs_and_communes_show_open_crises() {
    let app = TestApp::spawn().await;
    // Pertuis is in Vaucluse (84): INSEE codes are strings, not numbers.
    let c = app.ops.request_crisis(&request("84089"), None).await.unwrap();
    assert_eq!(c.commune_name, "Pertuis");
    let pertuis = app.ops.commune("84089").await.unwrap();
    assert_eq!(pertuis.open_crisis.as_ref(), Some(&c.id));
    let all = app.auditor.communes().await.unwrap();
    assert_eq!(all.len(), 92);
    assert!(all.iter().any(|c| c.insee.as_str() == "83120"));
    let signed = all.iter().filter(|c| c.convention.is_some()).count();
    assert!((10..92).contains(&signed), "a realistic subset signed: {signed}");
}

#[tokio::test]
async fn concurrent_requests_for_one_commune_create_exactly_one_crisis() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let c = app.dgs.clone();
        tasks.push(tokio::spawn(async move { c.request_crisis(&request("13005"), None).await }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) if e.status().map(|s| s.as_u16()) == Some(409) => conflicts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((created, conflicts), (1, 11));
    assert!(app.auditor.audit_verify().await.unwrap().verified);
}
