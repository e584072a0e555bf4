//! The SLA clock through the API: suspensions, the risk forecast, the legal clocks, the
//! compliance report, and notifications to ops (log and a real local webhook).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::SignedDuration;
use repli_core::{CrisisAction, LegalKind, LegalStatus, SlaStatus};
use repli_proto::api::{LegalDoneRequest, LegalFactsRequest};
use repli_tests::{StatusCode as _, TestApp, request};

#[tokio::test]
async fn suspensions_push_the_due_instant_and_are_audited() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    assert_eq!(c.sla.due_at, "2026-11-27T15:00:00Z".parse().unwrap());
    app.ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    app.clock.advance(SignedDuration::from_hours(2));
    let v = app.ops.suspend_sla(c.id.as_str(), "liste des agents attendue de la mairie").await.unwrap();
    assert_eq!(v.sla.status, SlaStatus::Suspended);
    // A second suspension, or one on a ready kit, is refused with a clear message.
    let e = app.ops.suspend_sla(c.id.as_str(), "encore").await.unwrap_err();
    assert_eq!((e.status().unwrap().as_u16(), e.problem().unwrap().code.as_str()), (409, "sla_conflict"));
    assert!(e.problem().unwrap().detail.contains("déjà suspendu"));
    for bad in ["", "   ", "\u{7}"] {
        assert_eq!(app.ops.suspend_sla(c.id.as_str(), bad).await.status_code(), 422);
    }
    // Waiting all of Monday afternoon and Tuesday: 18 business hours paused.
    app.clock.set("2026-11-25T07:00:00Z".parse().unwrap());
    let v = app.ops.resume_sla(c.id.as_str()).await.unwrap();
    assert_eq!(v.sla.suspended_seconds, 18 * 3600);
    assert_eq!(v.sla.due_at, "2026-12-01T13:00:00Z".parse().unwrap(), "Friday 16:00 + 18 business hours");
    assert_eq!(v.sla.suspensions.len(), 1);
    assert_eq!(v.sla.elapsed_seconds, 2 * 3600);
    let actions: Vec<&str> = v.history.iter().map(|h| h.action.as_str()).collect();
    assert!(actions.contains(&"sla.suspend") && actions.contains(&"sla.resume"));
    assert_eq!(app.ops.resume_sla(c.id.as_str()).await.status_code(), 409);
    assert_eq!(app.dgs.suspend_sla(c.id.as_str(), "x").await.status_code(), 403);
}

#[tokio::test]
async fn the_forecast_warns_before_the_breach() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    // Friday 27 Nov, 09:00 Paris: 7 business hours left; activation + 8 h of preparation ahead.
    app.clock.set("2026-11-27T08:00:00Z".parse().unwrap());
    let v = app.ops.crisis(c.id.as_str()).await.unwrap();
    assert_eq!(v.sla.status, SlaStatus::AtRisk);
    assert!(v.sla.projected_ready.unwrap() > v.sla.due_at);
    assert_eq!(v.sla.status_label, "à risque");
}

#[tokio::test]
async fn legal_clocks_run_in_calendar_hours() {
    let app = TestApp::spawn().await;
    let mut req = request("13005");
    // Aware since Saturday 21 Nov 10:00 UTC: deadlines Tuesday 24 Nov 10:00 UTC, weekend included.
    req.aware_at = Some("2026-11-21T10:00:00Z".parse().unwrap());
    let c = app.dgs.request_crisis(&req, None).await.unwrap();
    assert_eq!(c.legal.len(), 2);
    let cnil = &c.legal[0];
    assert_eq!((cnil.kind, cnil.status), (LegalKind::Cnil, LegalStatus::ToDetermine));
    assert_eq!(cnil.deadline, "2026-11-24T10:00:00Z".parse().unwrap());
    // Asked on Monday 23 Nov 07:00 UTC: 27 calendar hours left.
    assert_eq!(c.legal[1].remaining_seconds, 27 * 3600);

    let v = app
        .dgs
        .set_legal_facts(c.id.as_str(), &LegalFactsRequest { aware_at: None, personal_data: Some(true) })
        .await
        .unwrap();
    assert_eq!(v.legal[0].status, LegalStatus::Pending);
    let v = app
        .dgs
        .legal_done(
            c.id.as_str(),
            LegalKind::Complaint,
            &LegalDoneRequest { at: Some("2026-11-22T09:00:00Z".parse().unwrap()) },
        )
        .await
        .unwrap();
    assert_eq!(v.legal[1].status, LegalStatus::Done);
    app.clock.set("2026-11-24T11:00:00Z".parse().unwrap());
    assert_eq!(app.ops.crisis(c.id.as_str()).await.unwrap().legal[0].status, LegalStatus::Overdue);

    // Bad input: the future, nothing given, an unknown clock, another commune's DGS.
    let future = LegalFactsRequest { aware_at: Some("2030-01-01T00:00:00Z".parse().unwrap()), personal_data: None };
    assert_eq!(app.dgs.set_legal_facts(c.id.as_str(), &future).await.status_code(), 422);
    assert_eq!(app.dgs.set_legal_facts(c.id.as_str(), &LegalFactsRequest::default()).await.status_code(), 422);
    let e = app
        .ops
        .post_raw(&format!("/api/v1/crises/{}/legal/rgpd/done", c.id), "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 404);
    let aix = app.client(repli_core::Role::Dgs, Some("13001")).await;
    assert_eq!(
        aix.set_legal_facts(c.id.as_str(), &LegalFactsRequest { aware_at: None, personal_data: Some(false) })
            .await
            .status_code(),
        404
    );
}

#[tokio::test]
async fn the_compliance_report_says_met_or_late_by_how_much() {
    let app = TestApp::spawn().await;
    let on_time = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let late = app.ops.request_crisis(&request("13001"), None).await.unwrap();
    app.make_ready(&on_time.id).await;
    // Monday 30 Nov 10:00 Paris: the second one is late by Friday 16:00–18:00 and Monday
    // 08:00–10:00, 4 business hours.
    app.clock.set("2026-11-30T09:00:00Z".parse().unwrap());
    app.make_ready(&late.id).await;
    let report = app.auditor.sla_report().await.unwrap();
    let line = |id: &repli_core::CrisisId| report.iter().find(|l| &l.crisis == id).unwrap().clone();
    assert_eq!((line(&on_time.id).status, line(&on_time.id).late_seconds), (SlaStatus::Met, 0));
    assert_eq!((line(&late.id).status, line(&late.id).late_seconds), (SlaStatus::MetLate, 4 * 3600));
    assert_eq!(app.dgs.sla_report().await.status_code(), 403);
}

#[tokio::test]
async fn escalations_and_reminders_reach_ops_once_and_failed_deliveries_are_retried() {
    // A real webhook on loopback that fails its first call.
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (c2, b2) = (calls.clone(), bodies.clone());
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let (calls, bodies) = (c2.clone(), b2.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                bodies.lock().unwrap().push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let app = TestApp::spawn_with(|c| {
        c.notify.channels = vec![replid::config::Channel::Log, replid::config::Channel::Webhook];
        c.notify.webhook_url = Some(hook_url.clone());
        c.notify.thresholds = vec![50, 100];
        // Escalations and reminders alone (the plan's own moments: tests/e2e/notify.rs).
        c.notify.plan = no_plan();
    })
    .await;
    let mut req = request("13005");
    req.aware_at = Some("2026-11-21T10:00:00Z".parse().unwrap());
    req.personal_data = Some(true);
    let c = app.dgs.request_crisis(&req, None).await.unwrap();
    let state = app.daemon.state();

    // Monday 23 Nov 08:00 Paris: nothing used yet; legal deadlines in 26 h: no reminder.
    let m = state.maintenance().await.unwrap();
    assert_eq!(m.queued, 0);
    // Tuesday 24 Nov 06:00 Paris: 5 hours before the legal deadlines, both reminders are due
    // for both clocks, on both channels.
    app.clock.set("2026-11-24T05:00:00Z".parse().unwrap());
    let m = state.maintenance().await.unwrap();
    assert_eq!(m.queued, 8, "{m:?}");
    // The webhook's first answer was 503: that delivery waits and is retried.
    let list = app.ops.notifications().await.unwrap();
    let retried: Vec<_> = list.iter().filter(|n| n.channel == "webhook" && n.status == "pending").collect();
    assert_eq!(retried.len(), 1, "{list:#?}");
    assert!(retried[0].last_error.as_deref().unwrap().contains("503"));
    // Wednesday 25 Nov 13:00 Paris: 25 of 48 business hours used, the 50 % threshold crossed.
    app.clock.set("2026-11-25T12:00:00Z".parse().unwrap());
    let m = state.maintenance().await.unwrap();
    assert_eq!(m.queued, 2, "the 50 % escalation, on both channels");
    let again = state.maintenance().await.unwrap();
    assert_eq!(again.queued, 0, "each threshold fires once");
    let list = app.ops.notifications().await.unwrap();
    assert!(list.iter().all(|n| n.status == "sent"), "{list:#?}");
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 5);
    assert!(got.iter().any(|b| b["subject"].as_str().unwrap().contains("50 % du délai écoulé")));
    assert!(got.iter().all(|b| b["crisis"] == c.id.as_str()));
}

#[tokio::test]
async fn escalations_reach_ops_by_mail() {
    let (port, mails) = repli_tests::smtp_server().await;
    let app = TestApp::spawn_with(|c| {
        c.notify.channels = vec![replid::config::Channel::Smtp];
        c.notify.smtp = Some(replid::config::SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: replid::config::SmtpSecurity::None,
            from: "repli@ampmetropole.example".into(),
            to: vec!["astreinte@ampmetropole.example".into()],
            username: None,
            password_file: None,
        });
        c.notify.thresholds = vec![50];
        c.notify.plan = no_plan();
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.clock.set("2026-11-25T12:00:00Z".parse().unwrap());
    let m = app.daemon.state().maintenance().await.unwrap();
    assert_eq!((m.queued, m.attempted), (1, 1));
    let list = app.ops.notifications().await.unwrap();
    assert_eq!(list[0].status, "sent", "{list:#?}");
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["astreinte@ampmetropole.example"]);
    assert!(got[0].read().text.contains(c.id.as_str()), "{:?}", got[0]);
}

#[test]
fn smtp_without_tls_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("replid.toml");
    std::fs::write(
        &p,
        "version = 1\n[notify]\nchannels = [\"smtp\"]\n[notify.smtp]\nhost = \"mail.example.org\"\nsecurity = \"none\"\nfrom = \"a@b.fr\"\nto = [\"c@d.fr\"]\n",
    )
    .unwrap();
    let e = replid::config::Config::load(Some(&p), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
}

/// The DGS is told the kit is ready on the out-of-band phone (SMS gateway) and address (mail
/// relay), each message recorded with its recipient and delivery; a message the gateway
/// refused for good is sent again by ops.
#[tokio::test]
async fn the_dgs_is_told_by_sms_and_by_mail() {
    let (sms_url, texts) = repli_tests::sms_gateway(1).await;
    let (port, mails) = repli_tests::smtp_server().await;
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "jeton-passerelle\n").unwrap();
    let token_path = token.path().to_path_buf();
    let app = TestApp::spawn_with(move |c| {
        repli_tests::dgs_channels(c, sms_url, Some(token_path), port);
        // One attempt: the gateway's first refusal is final, and ops send it again.
        c.notify.max_attempts = 1;
        // The playbook's message alone (the plan's own moments: tests/e2e/notify.rs).
        c.notify.plan = no_plan();
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;
    let list = app.ops.notifications().await.unwrap();
    let to_dgs: Vec<_> = list.iter().filter(|n| n.recipient.is_some()).collect();
    assert_eq!(to_dgs.len(), 2, "one SMS, one mail: {list:#?}");
    let sms = to_dgs.iter().find(|n| n.channel == "sms").unwrap();
    assert_eq!(sms.recipient.as_deref(), Some("+33612345678"));
    assert_eq!(sms.status, "failed", "the gateway answered 503: {sms:#?}");
    assert!(sms.last_error.as_deref().unwrap().contains("503"));
    let mail = to_dgs.iter().find(|n| n.channel == "smtp").unwrap();
    assert_eq!((mail.recipient.as_deref(), mail.status.as_str()), (Some("anne.martin@exemple.fr"), "sent"));
    // The ops copy says it was sent (not « to relay »), on ops' own channel (log).
    assert!(list.iter().any(|n| n.channel == "log" && n.subject.starts_with("Envoyé à Anne Martin")), "{list:#?}");
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["anne.martin@exemple.fr"]);
    assert!(got[0].read().text.contains("est prêt"), "{:?}", got[0]);

    // A pending or sent one cannot be sent again; the failed one can, once.
    let e = app.ops.retry_notification(mail.id).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 409);
    assert_eq!(app.dgs.retry_notification(sms.id).await.status_code(), 403);
    let list = app.ops.retry_notification(sms.id).await.unwrap();
    let again = list.iter().find(|n| n.id == sms.id).unwrap();
    assert_eq!(again.status, "sent", "{again:#?}");
    let received = texts.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["to"], "+33612345678");
    assert_eq!(received[0].body["from"], "AMP Repli");
    let text = received[0].body["text"].as_str().unwrap();
    assert!(text.starts_with("Repli : Le kit de repli d'Aubagne est prêt"), "{text}");
    assert_eq!(received[0].authorization.as_deref(), Some("Bearer jeton-passerelle"));
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.action == "notify.retry" && e.actor_role == "ops"), "the retry is audited");
}

/// The after-action report: every step planned against actual, the manual step that waited
/// longest and who confirmed it, the time to a ready kit against the 48 business hours; for
/// ops and auditors, in JSON and as a French page.
#[tokio::test]
async fn the_retex_compares_the_plan_with_what_happened() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.activate(&c.id).await;
    // A manual task appears, and waits three hours for ops.
    app.wait_steps(&c.id, "a manual task", |v| {
        v.runs.iter().flat_map(|r| &r.steps).any(|s| s.state == repli_core::StepState::WaitingManual)
    })
    .await;
    app.clock.advance(SignedDuration::from_hours(3));
    app.make_ready(&c.id).await;
    let r = app.ops.retex(c.id.as_str()).await.unwrap();
    assert!(r.ready_at.is_some() && r.business_secs_to_ready >= 3 * 3600, "{r:#?}");
    assert_eq!(r.business_hours, 48);
    assert!(r.planned_critical_secs > 0);
    let ready_steps = app.ops.steps(c.id.as_str()).await.unwrap().runs[0].steps.len();
    assert_eq!(r.steps.len(), ready_steps, "every step of the activation");
    assert!(r.steps.iter().all(|s| s.actual_secs.is_some()), "every step finished");
    let longest = &r.longest_waits[0];
    assert!(longest.manual && longest.waited_secs.unwrap() >= 3 * 3600, "{longest:#?}");
    assert!(longest.confirmed_by.is_some(), "who confirmed it");
    assert!(r.longest_waits.windows(2).all(|w| w[0].waited_secs >= w[1].waited_secs), "longest first");
    // Auditors read it; a DGS does not.
    assert_eq!(app.auditor.retex(c.id.as_str()).await.unwrap().steps.len(), r.steps.len());
    assert_eq!(app.dgs.retex(c.id.as_str()).await.status_code(), 403);
}

/// A plan that tells no one, for tests of the other notifications.
pub fn no_plan() -> replid::config::NotifyPlan {
    replid::config::NotifyPlan { dgs: Vec::new(), ops: Vec::new(), auditors: Vec::new() }
}
