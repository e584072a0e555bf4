//! The notification plan and its outbox: mail read back with a real MIME parser, a failure
//! resent only to the recipient it failed for, an unreachable relay across a restart, auditors
//! told of each transition with the signed audit head.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::SignedDuration;
use repli_proto::api::NotificationView;
use repli_tests::{TestApp, request};

fn smtp(port: u16, to: &[&str]) -> replid::config::SmtpConfig {
    replid::config::SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: replid::config::SmtpSecurity::None,
        from: "repli@ampmetropole.example".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        username: None,
        password_file: None,
    }
}

/// Polls the outbox until `done` holds (deliveries run in a task of their own).
async fn outbox_until(app: &TestApp, what: &str, done: impl Fn(&[NotificationView]) -> bool) -> Vec<NotificationView> {
    for _ in 0..200 {
        let list = app.ops.notifications().await.unwrap();
        if done(&list) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("outbox never reached: {what}: {:#?}", app.ops.notifications().await.unwrap());
}

/// The DGS's acknowledgement arrives as MIME 1.0 UTF-8 mail: a real parser reads back the
/// French text, accents and all, with its Date and a Message-ID.
#[tokio::test]
async fn mail_reads_back_in_french_with_mime_headers() {
    let (port, mails) = repli_tests::smtp_server().await;
    let app = TestApp::spawn_with(|c| {
        c.notify.smtp = Some(smtp(port, &[]));
        c.documents.astreinte_phone = "04 91 00 00 00".into();
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let list = outbox_until(&app, "the acknowledgement sent", |l| {
        l.iter().any(|n| n.key.ends_with(":dgs:requested") && n.status == "sent")
    })
    .await;
    let row = list.iter().find(|n| n.key.ends_with(":dgs:requested")).unwrap();
    assert_eq!((row.audience.as_str(), row.recipient.as_deref()), ("dgs", Some("anne.martin@exemple.fr")));
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let expected = format!(
        "Votre demande de kit de repli est enregistrée sous la référence {id}. La métropole vérifie la \
         convention et décide de l'activation ; vous serez prévenu à chaque étape. Kit promis au plus tard \
         le {due}. Astreinte de la métropole : {phone}.",
        id = c.id,
        due = repli_core::fr::datetime(c.sla.due_at, &tz),
        phone = repli_core::fr::phone("04 91 00 00 00"),
    );
    assert_eq!(row.body, expected);

    let got = mails.lock().unwrap().clone();
    let mine: Vec<_> = got.iter().filter(|m| m.to == ["anne.martin@exemple.fr"]).collect();
    assert_eq!(mine.len(), 1, "sent once: {got:#?}");
    let m = mine[0].read();
    assert_eq!(m.mime_version.as_deref(), Some("1.0"), "{:?}", mine[0].data);
    assert_eq!((m.content_type.as_str(), m.charset.as_str()), ("text/plain", "utf-8"));
    let cte = m.transfer_encoding.clone().unwrap_or_default().to_ascii_lowercase();
    assert!(["quoted-printable", "base64"].contains(&cte.as_str()), "8-bit text needs an encoding: {cte}");
    assert!(mine[0].data.is_ascii(), "every byte on the wire is 7-bit");
    let id = m.message_id.clone().unwrap();
    assert!(id.starts_with("<repli.") && id.ends_with("@ampmetropole.example>"), "{id}");
    assert_eq!(m.date, Some(app.now().as_second()), "Date is replid's clock");
    assert_eq!(m.subject, format!("[Repli] Crise {} (Aubagne)", c.id));
    // The text as sent (the SMTP dialogue's line ends and final CRLF aside).
    assert_eq!(m.text.replace("\r\n", "\n").trim_end(), format!("Crise {} (Aubagne)\n\n{expected}", c.id));
    assert!(m.text.contains("enregistrée") && m.text.contains("métropole") && m.text.contains("à chaque étape"));
    // Each mail has its own Message-ID.
    let ids: std::collections::HashSet<_> = got.iter().map(|m| m.read().message_id.unwrap()).collect();
    assert_eq!(ids.len(), got.len());
}

/// An SMS gateway stand-in: `fail` maps a number to how many of its messages are answered
/// with that status before one is accepted (u32::MAX: never). Counts what it accepted.
async fn gateway(fail: Vec<(&'static str, u32, u16)>) -> (String, Arc<Mutex<HashMap<String, (u32, u32)>>>) {
    let seen: Arc<Mutex<HashMap<String, (u32, u32)>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let (s, fail) = (s.clone(), fail.clone());
            async move {
                let to = body["to"].as_str().unwrap_or("").to_owned();
                let mut seen = s.lock().unwrap();
                let (calls, accepted) = seen.entry(to.clone()).or_default();
                *calls += 1;
                if let Some((_, times, status)) = fail.iter().find(|(n, _, _)| *n == to)
                    && *calls <= *times
                {
                    return axum::http::StatusCode::from_u16(*status).unwrap();
                }
                *accepted += 1;
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, seen)
}

/// Ops' three numbers: one accepts, one meets a provider 5xx twice, one is rejected (400) for
/// good. Each is its own row: retried with backoff for itself alone, never resent to the number
/// that already has it; the crisis goes on meanwhile; ops' resend reaches the failed one alone.
#[tokio::test]
async fn a_failure_is_retried_and_resent_only_to_its_recipient() {
    const OK: &str = "+33600000001";
    const FLAKY: &str = "+33600000002";
    const REJECTED: &str = "+33600000009";
    let (url, seen) = gateway(vec![(FLAKY, 2, 503), (REJECTED, u32::MAX, 400)]).await;
    let app = TestApp::spawn_with(move |c| {
        c.notify.channels = vec![replid::config::Channel::Sms];
        c.notify.sms = Some(replid::config::SmsConfig {
            url,
            token_file: None,
            sender: "AMP Repli".into(),
            to: vec![OK.into(), FLAKY.into(), REJECTED.into()],
        });
        c.notify.max_attempts = 3;
        // One message, to ops' three numbers.
        c.notify.plan.dgs = Vec::new();
        c.notify.plan.ops = vec![replid::config::PlanEvent::Requested];
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let rows = |l: &[NotificationView], to: &str| {
        l.iter()
            .filter(|n| n.key.contains(":ops:requested") && n.recipient.as_deref() == Some(to))
            .cloned()
            .collect::<Vec<_>>()
    };
    let list = outbox_until(&app, "a first attempt for each number", |l| {
        [OK, FLAKY, REJECTED].iter().all(|to| rows(l, to).first().is_some_and(|n| n.attempts >= 1))
    })
    .await;
    assert_eq!(rows(&list, OK)[0].status, "sent");
    let flaky = &rows(&list, FLAKY)[0];
    assert_eq!(
        (flaky.status.as_str(), flaky.last_error.as_deref()),
        ("pending", Some("SMS gateway answered HTTP 503"))
    );
    assert!(rows(&list, REJECTED)[0].last_error.as_deref().unwrap().contains("400"));
    // The crisis does not wait for its messages.
    app.activate(&c.id).await;

    let state = app.daemon.state();
    for _ in 0..3 {
        app.clock.advance(SignedDuration::from_mins(10));
        state.maintenance().await.unwrap();
    }
    let list = app.ops.notifications().await.unwrap();
    let (flaky, rejected) = (rows(&list, FLAKY)[0].clone(), rows(&list, REJECTED)[0].clone());
    assert_eq!((flaky.status.as_str(), flaky.attempts), ("sent", 3), "{flaky:#?}");
    assert_eq!((rejected.status.as_str(), rejected.attempts), ("failed", 3), "{rejected:#?}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[OK], (1, 1), "the number that had it is never sent it again");
        assert_eq!(seen[FLAKY], (3, 1));
        assert_eq!(seen[REJECTED], (3, 0));
    }
    // Ops send the failed one again: it alone is tried.
    app.ops.retry_notification(rejected.id).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!((seen[OK], seen[FLAKY], seen[REJECTED]), ((1, 1), (3, 1), (4, 0)));
}

/// The relay is unreachable: the mail waits in the outbox (recorded, with the error), the
/// crisis goes on, and after a restart of the daemon the relay is back and each mail is
/// delivered once.
#[tokio::test]
async fn an_unreachable_relay_loses_nothing_across_a_restart() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let adjust = move |c: &mut replid::config::Config| {
        c.notify.channels = vec![replid::config::Channel::Smtp];
        c.notify.smtp = Some(smtp(port, &["astreinte@ampmetropole.example"]));
    };
    let app = TestApp::spawn_with(adjust).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let list = outbox_until(&app, "a failed attempt", |l| {
        l.iter().any(|n| n.key.contains(":ops:requested") && n.attempts >= 1)
    })
    .await;
    let ops = list.iter().find(|n| n.key.contains(":ops:requested")).unwrap();
    assert_eq!(ops.recipient.as_deref(), Some("astreinte@ampmetropole.example"));
    assert_eq!(ops.status, "pending");
    assert!(ops.last_error.as_deref().unwrap().starts_with("SMTP"), "{ops:#?}");
    app.activate(&c.id).await;
    let queued = app.ops.notifications().await.unwrap().len();

    let TestApp { daemon, dir, .. } = app;
    daemon.shutdown().await.unwrap();
    let mails = repli_tests::serve_smtp(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap(), &[]);
    let app = TestApp::spawn_in(dir, adjust).await;
    app.clock.advance(SignedDuration::from_hours(1));
    app.daemon.state().maintenance().await.unwrap();
    let list = outbox_until(&app, "everything sent", |l| l.iter().all(|n| n.status == "sent")).await;
    assert!(list.len() >= queued, "nothing lost: {list:#?}");
    let got = mails.lock().unwrap().clone();
    let smtp_rows = list.iter().filter(|n| n.channel == "smtp").count();
    assert_eq!(got.len(), smtp_rows, "one mail per row, none twice");
    let subjects: Vec<String> = got.iter().map(|m| m.read().subject).collect();
    assert!(subjects.iter().any(|s| s.contains("Nouvelle demande")), "{subjects:?}");
}

/// The plan's default moments: the DGS at activation (with the astreinte's number), ops at a
/// manual task and when the DGS writes, auditors at each transition with the signed audit head
/// they can check against the head the auditor API gives.
#[tokio::test]
async fn every_party_is_told_by_the_plan() {
    let (port, mails) = repli_tests::smtp_server().await;
    let app = TestApp::spawn_with(|c| {
        c.notify.smtp = Some(smtp(port, &[]));
        c.notify.auditors = vec!["controle@ampmetropole.example".into()];
        c.documents.astreinte_phone = "04 91 00 00 00".into();
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.activate(&c.id).await;
    app.wait_steps(&c.id, "a manual task", |v| {
        v.runs.iter().flat_map(|r| &r.steps).any(|s| s.state == repli_core::StepState::WaitingManual)
    })
    .await;
    app.dgs.add_log(c.id.as_str(), "information", "Le serveur de la mairie est éteint.").await.unwrap();
    app.daemon.state().maintenance().await.unwrap();
    let list = outbox_until(&app, "the plan's moments", |l| {
        l.iter().any(|n| n.key.contains(":ops:manual:")) && l.iter().any(|n| n.key.contains(":ops:dgs_message:"))
    })
    .await;
    let key = |k: &str| list.iter().find(|n| n.key.contains(k)).unwrap_or_else(|| panic!("{k}: {list:#?}"));
    let activated = key(":dgs:activated");
    assert!(activated.body.starts_with("L'activation du kit de repli d'Aubagne est décidée"), "{activated:#?}");
    assert!(activated.body.ends_with("Astreinte de la métropole : 04 91 00 00 00."), "{}", activated.body);
    assert_eq!(key(":ops:dgs_message:").body, "Le serveur de la mairie est éteint.");
    let head = app.auditor.audit_head().await.unwrap();
    for state in ["requested", "activated", "provisioning"] {
        let n = key(&format!(":auditors:{state}:"));
        assert_eq!((n.audience.as_str(), n.recipient.as_deref()), ("auditors", Some("controle@ampmetropole.example")));
        assert!(n.body.contains("Tête signée du journal d'audit : entrée n° "), "{n:#?}");
        let key = repli_core::audit::parse_public_key(&head.public_key).unwrap();
        let fingerprint = repli_core::audit::fingerprint(&key);
        assert!(n.body.contains(&format!("par la clé {fingerprint}")), "signed by the key auditors pin: {n:#?}");
    }
    // The DGS's SMS-less mail reached the contact's address; no mail to ops (log channel).
    let sent =
        outbox_until(&app, "mails sent", |l| l.iter().filter(|n| n.channel == "smtp").all(|n| n.status == "sent"))
            .await;
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), sent.iter().filter(|n| n.channel == "smtp").count());
}

/// What the engine does is told at once, not at the next maintenance round (none runs in this
/// test): the kit ready (with the configured astreinte, never « Contact métropole :
/// astreinte »), the hand-back started (what to bring back, where, by when, whom to call),
/// the closure by the hand-back's last step; auditors at each of these transitions.
#[tokio::test]
async fn the_engines_transitions_are_told_at_once_with_the_configured_astreinte() {
    let (port, _mails) = repli_tests::smtp_server().await;
    let app = TestApp::spawn_with(|c| {
        c.notify.smtp = Some(smtp(port, &[]));
        c.notify.auditors = vec!["controle@ampmetropole.example".into()];
        c.documents.astreinte_phone = "04 91 00 00 00".into();
        c.documents.astreinte_email = "astreinte@ampmetropole.example".into();
    })
    .await;
    let contacts = "04 91 00 00 00 ou astreinte@ampmetropole.example";
    // The foot of every page, public ones included, names the same contacts.
    let page = reqwest::get(app.url("/connexion")).await.unwrap().text().await.unwrap();
    let foot = &page[page.find("<footer>").unwrap()..];
    assert!(foot.contains(r#"Astreinte de la métropole : <a href="tel:0491000000">04 91 00 00 00</a>"#), "{foot}");
    assert!(foot.contains(r#"<a href="mailto:astreinte@ampmetropole.example">"#), "{foot}");
    let pool = repli_proto::api::ImportFile { source: "pool.csv".into(), csv: repli_tests::SMALL_POOL.into() };
    app.ops.import_inventory(&repli_proto::api::ImportRequest { files: vec![pool] }).await.unwrap();
    let mut r = request("13005");
    r.agents = 1;
    r.needs = Some(repli_proto::api::KitNeeds { laptop: 0, router: 1, phone: 0, printer: 0 });
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    app.make_ready(&c.id).await;
    let list = outbox_until(&app, "the kit ready", |l| {
        l.iter().any(|n| n.key.starts_with(&format!("plan:{id}:auditors:ready:")))
            && l.iter().any(|n| n.audience == "dgs" && n.body.contains("est prêt"))
    })
    .await;
    let ready = list.iter().find(|n| n.audience == "dgs" && n.body.contains("est prêt")).unwrap();
    assert!(ready.body.contains(&format!("l'astreinte de la métropole ({contacts})")), "{}", ready.body);
    assert!(!list.iter().any(|n| n.body.contains("Contact métropole : astreinte")), "{list:#?}");
    // The moments of the steps the engine ran reached the DGS too, each with the contacts.
    for moment in ["accounts", "visio", "equipment"] {
        let n = list
            .iter()
            .find(|n| n.key.starts_with(&format!("plan:{id}:dgs:{moment}")))
            .unwrap_or_else(|| panic!("{moment}: {list:#?}"));
        assert!(n.body.ends_with(&format!("Astreinte de la métropole : {contacts}.")), "{}", n.body);
    }

    // A router is lent, the kit delivered, the hand-back started: the DGS is told what to
    // bring back, where, by when, and whom to call.
    let router = app
        .ops
        .inventory_items()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.crisis.as_deref() == Some(id) && !i.item.kind.is_personal())
        .unwrap_or_else(|| panic!("no item lent to the commune itself in the kit"))
        .item;
    let (router, kind) = (router.serial, router.kind.label_fr());
    let lend = repli_proto::api::LendRequest { serial: router.clone(), agent_id: None };
    app.ops.lend(id, &lend).await.unwrap();
    app.ops.act(&c.id, repli_core::CrisisAction::Deliver, None).await.unwrap();
    app.ops.act(&c.id, repli_core::CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    let list = outbox_until(&app, "the hand-back", |l| {
        l.iter().any(|n| n.key.starts_with(&format!("plan:{id}:dgs:handback")))
    })
    .await;
    let delivered = list.iter().find(|n| n.key.starts_with(&format!("plan:{id}:dgs:delivered"))).unwrap();
    assert!(delivered.body.contains("à rendre lors de la restitution au plus tard le "), "{}", delivered.body);
    let handback = list.iter().find(|n| n.key.starts_with(&format!("plan:{id}:dgs:handback"))).unwrap();
    for part in [
        &format!("{kind} × 1"),
        "remise prévue à : Hôtel de ville",
        &format!("Astreinte de la métropole : {contacts}."),
    ] {
        assert!(handback.body.contains(part), "{part}: {}", handback.body);
    }

    // The router comes back; the hand-back playbook closes the crisis: told at once.
    let back = repli_proto::api::CheckinRequest { serial: router, condition: "ok".into(), note: None };
    app.ops.check_in(id, &back).await.unwrap();
    app.hand_back(&c.id).await;
    let list = outbox_until(&app, "the closure", |l| {
        l.iter().any(|n| n.key.starts_with(&format!("plan:{id}:dgs:closed")))
            && l.iter().any(|n| n.key.starts_with(&format!("plan:{id}:auditors:closed:")))
    })
    .await;
    let closed = list.iter().find(|n| n.key.starts_with(&format!("plan:{id}:dgs:closed"))).unwrap();
    assert!(closed.body.starts_with(&format!("La crise {id} est close.")), "{}", closed.body);
    let handback_told = list.iter().find(|n| n.audience == "dgs" && n.body.contains("sont désactivés")).unwrap();
    assert!(handback_told.body.contains(contacts), "{}", handback_told.body);
}

/// A forecast past the due instant is told when it is seen, not at the next maintenance round:
/// an activation decided with two business hours left (the playbook needs more) reaches the
/// DGS and ops as « délai en danger » at once.
#[tokio::test]
async fn an_sla_at_risk_is_told_at_once() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let id = c.id.as_str();
    // Monday 08:00 + 46 business hours: Friday 14:00, two hours before the due instant.
    app.clock.advance(SignedDuration::from_hours(4 * 24 + 6));
    app.ops.act(&c.id, repli_core::CrisisAction::Activate, None).await.unwrap();
    let list = outbox_until(&app, "the SLA at risk", |l| {
        l.iter().any(|n| n.key.starts_with(&format!("plan:{id}:dgs:sla_at_risk")))
            && l.iter().any(|n| n.key.starts_with(&format!("plan:{id}:ops:sla_at_risk")))
    })
    .await;
    let dgs = list.iter().find(|n| n.key.starts_with(&format!("plan:{id}:dgs:sla_at_risk"))).unwrap();
    assert!(
        dgs.body.starts_with("La préparation de votre kit risque de dépasser l'échéance du vendredi 27 novembre 2026"),
        "{}",
        dgs.body
    );
}
