//! The audit trail through the API and the CLI: filters and paging, bundles, offline
//! verification of the database file, the main courante.

use std::process::Command;

use repli_core::{CrisisAction, CrisisState, LogKind, Role};
use repli_proto::api::AuditQuery;
use repli_tests::{StatusCode, TestApp, request, workspace_bin};

#[tokio::test]
async fn main_courante_is_written_by_ops_and_dgs_and_chained() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let id = c.id.as_str();
    app.dgs.add_log(id, "information", "Rançongiciel détecté à 7 h 40 sur le serveur de fichiers.").await.unwrap();
    let d = app.ops.add_log(id, "décision", "Kit de repli engagé : livraison demain 9 h.").await.unwrap();
    assert_eq!((d.kind, d.type_label.as_str()), (LogKind::Decision, "Décision"));
    app.ops.add_log(id, "Point de situation", "<script>alert(1)</script> {{x}}").await.unwrap();

    let log = app.auditor.crisis_log(id).await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].role, "dgs");
    assert_eq!(log[2].text, "<script>alert(1)</script> {{x}}");
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));

    // Bad entries: unknown type, empty or oversized text, control characters.
    for (kind, text) in [("rumeur", "x"), ("action", "   "), ("action", &"x".repeat(4001)), ("action", "a\u{0}b")] {
        let e = app.ops.add_log(id, kind, text).await.unwrap_err();
        assert_eq!(e.status().unwrap().as_u16(), 422, "{kind} {text:?}");
    }
    // Auditors read, never write; another commune's DGS sees nothing.
    assert_eq!(app.auditor.add_log(id, "information", "x").await.status_code(), 403);
    let aix = app.client(Role::Dgs, Some("13001")).await;
    assert_eq!(aix.crisis_log(id).await.status_code(), 404);
    assert_eq!(aix.add_log(id, "information", "x").await.status_code(), 404);

    // Once the crisis is over, its log is closed.
    app.ops.act(&c.id, CrisisAction::Reject, Some("doublon")).await.unwrap();
    let e = app.ops.add_log(id, "information", "trop tard").await.unwrap_err();
    let p = e.problem().unwrap();
    assert_eq!((p.status, p.code.as_str(), p.current_state), (409, "crisis_ended", Some(CrisisState::Rejected)));
    assert!(app.auditor.audit_verify().await.unwrap().verified);
}

#[tokio::test]
async fn auditors_filter_and_page_the_log() {
    let app = TestApp::spawn().await;
    let a = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let b = app.ops.request_crisis(&request("13001"), None).await.unwrap();
    for i in 0..7 {
        app.ops.add_log(a.id.as_str(), "action", &format!("action {i}")).await.unwrap();
    }
    app.activate(&b.id).await;

    let only_a = app
        .auditor
        .audit_entries_all(&AuditQuery { crisis: Some(a.id.to_string()), limit: Some(3), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(only_a.len(), 8, "request + 7 log entries, over 3 pages");
    assert!(only_a.iter().all(|e| e.crisis.as_deref() == Some(a.id.as_str())));
    let page = app
        .auditor
        .audit_entries(&AuditQuery { crisis: Some(a.id.to_string()), limit: Some(3), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((page.entries.len(), page.next_after), (3, Some(page.entries[2].seq)));

    let activations = app
        .auditor
        .audit_entries_all(&AuditQuery { action: Some("crisis.activate".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(activations.len(), 1);
    let crisis_events = app
        .auditor
        .audit_entries_all(&AuditQuery { action: Some("crisis.".into()), ..Default::default() })
        .await
        .unwrap();
    // Two requests, the activation, and the engine starting the preparation.
    assert_eq!(crisis_events.len(), 4);
    let by_commune = app
        .auditor
        .audit_entries_all(&AuditQuery {
            commune: Some("13001".into()),
            action: Some("crisis.".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_commune.len(), 3);
    let future = app
        .auditor
        .audit_entries_all(&AuditQuery { from: Some("2030-01-01T00:00:00Z".parse().unwrap()), ..Default::default() })
        .await
        .unwrap();
    assert!(future.is_empty());

    // Hostile and oversized filters are refused or harmless.
    let e = app
        .auditor
        .audit_entries(&AuditQuery { actor: Some("x".repeat(201)), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 400);
    let none = app
        .auditor
        .audit_entries_all(&AuditQuery { actor: Some("' OR 1=1 --".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(app.dgs.audit_entries(&AuditQuery::default()).await.status_code(), 403);
}

#[tokio::test]
async fn bundle_and_database_verify_offline_with_the_published_key() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;
    let v = app.auditor.audit_verify().await.unwrap();
    let key = v.public_key.clone().expect("the daemon publishes its checkpoint key");
    assert_eq!(key.len(), 64);
    let bundle = app.auditor.audit_bundle().await.unwrap();
    assert_eq!(bundle.entries.len() as u64, v.entries);
    assert_eq!(bundle.public_key.as_deref(), Some(key.as_str()));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let repli = |args: &[&str]| Command::new(workspace_bin("repli")).args(args).output().unwrap();
    let out = repli(&["audit", "verify", "--bundle", path.to_str().unwrap(), "--public-key", &key]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{} entries verified", v.entries)));

    // An edited bundle fails, naming the entry.
    let mut edited = bundle.clone();
    edited.entries[3].details = "{}".into();
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = repli(&["audit", "verify", "--bundle", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("seq {}", edited.entries[3].seq)) && text.contains("modified"), "{text}");

    // The database file itself, offline and read-only, while replid still runs.
    let db = app.db_path();
    let out = repli(&["audit", "verify", "--db", db.to_str().unwrap(), "--public-key", &key]);
    assert!(out.status.success(), "{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("entries verified"));
    // With someone else's key, the checkpoints are refused.
    let stranger = "11".repeat(32);
    let out = repli(&["audit", "verify", "--db", db.to_str().unwrap(), "--public-key", &stranger]);
    assert!(!out.status.success());
    // Bad input: no file, not a bundle, not a key.
    assert!(!repli(&["audit", "verify", "--db", "/nonexistent/repli.db"]).status.success());
    std::fs::write(&path, b"{\"format\":\"something-else\"}").unwrap();
    let out = repli(&["audit", "verify", "--bundle", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let out = repli(&["audit", "verify", "--db", db.to_str().unwrap(), "--public-key", "xyz"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-key"));
}

/// A clean stop signs the entries written since the last checkpoint: no unsigned tail is left
/// for someone with the database file to cut off unnoticed.
#[tokio::test]
async fn a_clean_shutdown_signs_the_tail_of_the_audit_chain() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    // Entries until some are past the last checkpoint (checkpoints every 5 in the test kit).
    for i in 0..10 {
        let v = app.auditor.audit_verify().await.unwrap();
        if v.last_checkpoint.is_none_or(|cp| cp < v.last_seq) {
            break;
        }
        app.dgs.add_log(c.id.as_str(), LogKind::Information.as_str(), &format!("point {i}")).await.unwrap();
    }
    let before = app.auditor.audit_verify().await.unwrap();
    assert!(before.last_checkpoint.is_none_or(|cp| cp < before.last_seq), "a tail to sign: {before:?}");
    let db = app.db_path();
    app.daemon.shutdown().await.unwrap();
    let after = repli_app::offline::verify_database(&db, &[]).await.unwrap().unwrap();
    assert_eq!(after.last_checkpoint, Some(after.last_seq), "the tail is signed at shutdown: {after:?}");
    assert_eq!(after.last_seq, before.last_seq, "and nothing else was written");
}

/// An auditor pins the signed head; someone with the database file later cuts the log back to
/// before it (triggers dropped, entries and checkpoints deleted): the chain alone still
/// verifies, the pinned head does not.
#[tokio::test]
async fn a_pinned_head_exposes_a_log_cut_back_before_it() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    for i in 0..3 {
        app.dgs.add_log(c.id.as_str(), LogKind::Information.as_str(), &format!("point {i}")).await.unwrap();
    }
    let (_, token) = app.token(Role::Auditor, None).await;
    // The daemon runs in this test's runtime: the CLI is awaited, never waited for.
    let repli = |args: &[&str]| {
        tokio::process::Command::new(workspace_bin("repli"))
            .env("REPLI_SERVER", app.daemon.url())
            .env("REPLI_TOKEN", &token)
            .args(args)
            .output()
    };
    let out = repli(&["audit", "head", "--json"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head: repli_core::Checkpoint = serde_json::from_slice(&out.stdout).unwrap();
    let v = app.auditor.audit_verify().await.unwrap();
    assert_eq!(
        (head.seq, head.hash.as_str()),
        (v.last_seq, v.last_hash.as_str()),
        "the head is the last entry, signed"
    );
    assert_eq!(v.last_checkpoint, Some(head.seq));
    assert_eq!(app.dgs.audit_head().await.status_code(), 403);
    let pin = format!("{}:{}", head.seq, head.hash);
    let out = repli(&["audit", "verify", "--pin", &pin]).await.unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    for bad in ["12", "x:y", "0:00", &format!("{}:{}", head.seq, "zz".repeat(32))] {
        assert!(!repli(&["audit", "verify", "--pin", bad]).await.unwrap().status.success(), "{bad}");
    }

    let db = app.db_path();
    app.daemon.shutdown().await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    for sql in [
        "DROP TRIGGER audit_log_no_delete".to_owned(),
        "DROP TRIGGER audit_checkpoints_no_delete".to_owned(),
        format!("DELETE FROM audit_log WHERE seq >= {}", head.seq - 2),
        format!("DELETE FROM audit_checkpoints WHERE seq >= {}", head.seq - 2),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let offline = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--db", db.to_str().unwrap()];
        args.extend_from_slice(extra);
        Command::new(workspace_bin("repli")).args(&args).output().unwrap()
    };
    assert!(offline(&[]).status.success(), "the cut chain is consistent on its own");
    let out = offline(&["--pin", &pin]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing"), "{}", String::from_utf8_lossy(&out.stdout));
}
