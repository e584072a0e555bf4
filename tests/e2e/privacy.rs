//! Personal data: contact details erased after the retention period, and no secret in the logs.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use jiff::SignedDuration;
use repli_core::{CrisisAction, Role};
use repli_proto::api::{NewUserRequest, PasswordRequest};
use repli_tests::{TestApp, request};

#[tokio::test]
async fn contact_details_are_erased_after_the_retention_period() {
    let app = TestApp::spawn().await;
    let old = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let agents = repli_proto::api::AgentsRequest {
        agents: vec![repli_proto::api::AgentInput { name: "Anne Agent".into(), service: "Accueil".into() }],
    };
    app.dgs.set_agents(old.id.as_str(), &agents).await.unwrap();
    // The whole kit: accounts named after the agent, notifications to relay, documents on disk.
    app.make_ready(&old.id).await;
    app.ops.issue_sheets(old.id.as_str()).await.unwrap();
    app.ops.act(&old.id, CrisisAction::Deliver, None).await.unwrap();
    app.hand_back(&old.id).await;
    let sheets_of = |id: String| {
        let db = app.db_path();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credential_sheets WHERE crisis_id = ?")
                .bind(id)
                .fetch_one(&mut c)
                .await
                .unwrap();
            n
        }
    };
    assert!(sheets_of(old.id.to_string()).await > 0, "the hand-over of the sheets was recorded");
    let docs = app.db_path().with_file_name("repli.db.documents").join(old.id.as_str());
    assert!(docs.join("01-dossier-de-mise-a-disposition.html").is_file(), "documents written");
    let relayed = app.ops.notifications().await.unwrap();
    assert!(relayed.iter().any(|n| n.crisis.as_deref() == Some(old.id.as_str()) && n.subject.contains("Anne Martin")));
    app.clock.advance(SignedDuration::from_hours(24 * 80));
    let recent = app.ops.request_crisis(&request("13001"), None).await.unwrap();
    app.ops.act(&recent.id, CrisisAction::Reject, Some("doublon")).await.unwrap();
    let open = app.ops.request_crisis(&request("84089"), None).await.unwrap();

    // Day 80 after the first closure: nothing is due yet.
    assert!(app.daemon.state().maintenance().await.unwrap().purged.is_empty());
    app.clock.advance(SignedDuration::from_hours(24 * 11));
    let m = app.daemon.state().maintenance().await.unwrap();
    assert_eq!(m.purged, vec![old.id.clone()]);

    let erased = app.ops.crisis(old.id.as_str()).await.unwrap();
    assert_eq!((erased.contact.name.as_str(), erased.contact.phone.as_str()), ("[effacé]", ""));
    assert!(erased.contact.email.is_none() && erased.delivery_address.is_none());
    assert!(erased.personal_data_purged_at.is_some());
    let agents = app.ops.agents(old.id.as_str()).await.unwrap();
    assert_eq!((agents[0].name.as_str(), agents[0].service.as_str()), ("[effacé]", "Accueil"));
    // Every copy: the notifications, the steps' texts and outputs, the documents on disk.
    for n in app.ops.notifications().await.unwrap().iter().filter(|n| n.crisis.as_deref() == Some(old.id.as_str())) {
        assert_eq!(n.subject, "[effacé]", "{n:?}");
    }
    let steps = serde_json::to_string(&app.ops.steps(old.id.as_str()).await.unwrap()).unwrap();
    for name in ["Anne Agent", "anne.agent", "Anne Martin", "+33612345678"] {
        assert!(!steps.contains(name), "{name} is still in the steps");
    }
    assert!(!docs.exists(), "the crisis's documents are erased");
    assert_eq!(sheets_of(old.id.to_string()).await, 0, "the sheets' record (logins) is erased");
    assert_eq!(erased.history.last().unwrap().action, "crisis.purge_personal_data");
    for kept in [&recent.id, &open.id] {
        assert_eq!(app.ops.crisis(kept.as_str()).await.unwrap().contact.name, "Anne Martin");
    }
    // Nothing readable is left in the files either: not in free pages (secure_delete), not in
    // the WAL (truncated after the purge).
    for suffix in ["", "-wal"] {
        let mut name = app.db_path().into_os_string();
        name.push(suffix);
        let bytes = std::fs::read(&name).unwrap_or_default();
        for erased in ["Anne Agent", "anne.agent"] {
            let found = bytes.windows(erased.len()).any(|w| w == erased.as_bytes());
            assert!(!found, "{erased} is still readable in {}", std::path::Path::new(&name).display());
        }
    }
    // Idempotent, and the chain still verifies.
    assert!(app.daemon.state().maintenance().await.unwrap().purged.is_empty());
    assert!(app.auditor.audit_verify().await.unwrap().verified);
}

/// A log sink shared by the whole test process.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = Sink::default();
        let writer = sink.clone();
        // Exactly as the binary sets it up (log bridge and caps included), at TRACE.
        replid::logging::init(Some("trace"), false, move || writer.clone()).expect("no other global subscriber");
        sink
    })
    .clone()
}

fn logs(sink: &Sink) -> String {
    String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned()
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let sink = capture();
    let app = TestApp::spawn().await;
    let admin_token = app.token(Role::Admin, None).await.1;
    let admin = app.anon.with_token(admin_token.clone());
    let created = admin
        .create_user(&NewUserRequest { name: "Agent".into(), role: Role::Ops, commune: None, expires_days: None })
        .await
        .unwrap();
    let password = "phrase secrète très longue 42";
    admin
        .set_password(created.user.id, &PasswordRequest { login: "agent.ops".into(), password: password.into() })
        .await
        .unwrap();
    let ops = app.anon.with_token(created.token.token.clone());
    let c = ops.request_crisis(&request("13005"), Some("idem-key-1")).await.unwrap();
    ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    // A one-time password link, opened and used: its secret is in the URL, never in the logs.
    let me = admin.me().await.unwrap();
    let by = repli_core::Actor {
        user_id: me.user_id,
        name: me.name.clone(),
        role: Role::Admin,
        commune: None,
        auth: repli_core::AuthMethod::Token,
    };
    let (link, _) =
        repli_app::accounts::password_link(app.daemon.state(), &by, created.user.id, "agent.lien").await.unwrap();
    let page = reqwest::Client::new().get(app.url(&format!("/mot-de-passe/{link}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let used = reqwest::Client::new()
        .post(app.url(&format!("/mot-de-passe/{link}")))
        .form(&[("password", password), ("confirmation", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 200);
    // A failed attempt with a token and a wrong password must not log them either.
    let wrong = app.anon.with_token(format!("rpl_{}", "f".repeat(64)));
    assert!(wrong.me().await.is_err());
    let key_file = app.db_path().with_file_name("repli.db.audit-key");
    let seed = std::fs::read_to_string(key_file).unwrap().trim().to_owned();

    // A whole demo run, in the same captured process.
    let dir = tempfile::tempdir().unwrap();
    let args = replid::demo::DemoArgs {
        commune: repli_core::InseeCode::parse("13001").unwrap(),
        agents: 3,
        json: true,
        ..replid::demo::DemoArgs::in_dir(dir.path())
    };
    replid::demo::run(&args).await.unwrap();
    let demo_seed = std::fs::read_to_string(dir.path().join("repli.db.audit-key")).unwrap().trim().to_owned();

    let text = logs(&sink);
    assert!(text.contains("request") && text.contains("13005"), "nothing was captured");
    for (what, secret) in [
        ("admin token", admin_token.as_str()),
        ("user token", created.token.token.as_str()),
        ("password", password),
        ("password link", link.as_str()),
        ("audit key", seed.as_str()),
        ("demo audit key", demo_seed.as_str()),
    ] {
        assert!(!text.contains(secret), "the {what} reached the logs");
    }
    assert!(!text.contains("rpl_"), "a token reached the logs");
    assert!(!text.contains("$argon2"), "a password hash reached the logs");
    // The demo provisioned Microsoft 365 (embedded simulator) and printed credential sheets:
    // no Graph access token, client secret or one-time password reached the logs either.
    assert!(text.contains("m365"), "the Graph calls were not captured");
    for needle in ["Bearer sim.", "access_token", "client_secret", "passwordProfile", "\"password\""] {
        assert!(!text.contains(needle), "{needle} reached the logs");
    }
    // handlebars logs its render context (a credential sheet's holds the one-time passwords)
    // below WARN: none of it is written, whatever the level asked for.
    assert!(!text.contains("handlebars"), "handlebars' render context reached the logs");
    // Contact details are never written in a log line (the notifications to relay name them).
    for contact in ["Anne Martin", "+33612345678", "06 12 34 56 78", "contact fictif", "06 00 00 00 01"] {
        assert!(!text.contains(contact), "contact details ({contact}) reached the logs");
    }
}
