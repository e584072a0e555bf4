//! Backups: a snapshot taken while a crisis provisions restores on a fresh host, and the
//! crisis goes on to a ready kit there; a snapshot that does not verify is refused.

use std::path::Path;

use repli_core::CrisisState;
use repli_graph_sim::{SimConfig, Simulator};
use repli_tests::{TestApp, request};
use replid::backup::{self, BackupError};
use replid::config::{Config, DnsMode, M365Mode};

/// Microsoft 365 in a simulator outside both daemons: the tenant outlives the host, as a
/// real tenant would.
fn tenant(config: &mut Config, sim: &Simulator, dir: &Path) {
    let root = sim.graph_url().trim_end_matches("/v1.0").to_owned();
    config.m365.mode = M365Mode::Graph;
    config.m365.graph_url = sim.graph_url();
    config.m365.login_url.clone_from(&root);
    config.m365.tenant_id = "simulation".into();
    config.m365.client_id = "repli-test".into();
    config.m365.dns = DnsMode::Simulator;
    config.m365.dns_url = Some(root);
    let secret = dir.join("graph-secret");
    std::fs::write(&secret, "simulation").unwrap();
    config.m365.client_secret_file = Some(secret);
}

#[tokio::test]
async fn a_snapshot_taken_during_provisioning_restores_and_the_kit_gets_ready() {
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig { meeting_policies: vec![repli_graph_sim::PolicyGrant::Global], ..SimConfig::default() },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let app = TestApp::spawn_in(dir, |c| tenant(c, &sim, &path)).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.activate(&c.id).await;
    // The accounts wait for the agents' names: the run is mid-way.
    let live = app.ops.crisis(c.id.as_str()).await.unwrap();
    assert_eq!(live.state, CrisisState::Provisioning);

    let snapshots = tempfile::tempdir().unwrap();
    let snap = snapshots.path().join("repli-2026-11-23");
    let st = app.daemon.state();
    let m = backup::snapshot(st, &snap, replid::By::System).await.unwrap();
    assert_eq!(m.format, backup::FORMAT);
    assert_eq!(m.public_key, app.auditor.audit_verify().await.unwrap().public_key);
    // Point in time: what happens after the snapshot is not in it.
    app.ops.add_log(c.id.as_str(), "information", "écrit après la sauvegarde").await.unwrap();
    // A snapshot goes to a new folder.
    let again = backup::snapshot(st, &snap, replid::By::System).await;
    assert!(matches!(again, Err(BackupError::DestinationExists(_))), "{again:?}");

    let key = app.daemon.state().config.audit_key_path();
    let now = app.now();
    app.daemon.shutdown().await.unwrap();

    // A fresh host: no database; the signing key comes back from where it was kept.
    let host = tempfile::tempdir().unwrap();
    let host_path = host.path().to_owned();
    let mut target = Config::default();
    target.database.path = host.path().join("repli.db");
    let no_key = backup::restore(&snap, &target, None, replid::By::System, now).await;
    assert!(matches!(no_key, Err(BackupError::KeyRequired { .. })), "{no_key:?}");
    assert!(!target.database.path.exists(), "a refused restore writes no database");
    let restored = backup::restore(&snap, &target, Some(&key), replid::By::System, now).await.unwrap();
    assert_eq!(restored.audit_last_seq, m.audit_last_seq);
    let again = backup::restore(&snap, &target, Some(&key), replid::By::System, now).await;
    assert!(matches!(again, Err(BackupError::TargetExists(_))), "{again:?}");

    let app2 = TestApp::spawn_in(host, |c| tenant(c, &sim, &host_path)).await;
    let back = app2.ops.crisis(c.id.as_str()).await.unwrap();
    assert_eq!(back.state, CrisisState::Provisioning);
    let log = app2.ops.crisis_log(c.id.as_str()).await.unwrap();
    assert!(log.iter().all(|e| e.text != "écrit après la sauvegarde"), "{log:?}");
    let ready = app2.make_ready(&c.id).await;
    assert_eq!(ready.state, CrisisState::Ready);
    assert!(ready.sla.remaining_seconds >= 0);

    // The restored chain verifies with the same key, and records the restore.
    let v = app2.auditor.audit_verify().await.unwrap();
    assert!(v.verified, "{v:?}");
    assert_eq!(v.public_key, m.public_key);
    let q = repli_proto::api::AuditQuery { action: Some("service.".into()), ..Default::default() };
    let actions: Vec<String> =
        app2.auditor.audit_entries(&q).await.unwrap().entries.into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["service.backup", "service.restore"]);

    // Once ready, the crisis's documents exist: a snapshot carries them to the next host.
    let st2 = app2.daemon.state();
    let snap2 = snapshots.path().join("repli-ready");
    let m2 = backup::snapshot(st2, &snap2, replid::By::System).await.unwrap();
    assert!(m2.documents > 0, "{m2:?}");
    let third = tempfile::tempdir().unwrap();
    let mut target3 = Config::default();
    target3.database.path = third.path().join("repli.db");
    backup::restore(&snap2, &target3, Some(&key), replid::By::System, app2.now()).await.unwrap();
    let copied = std::fs::read_dir(third.path().join("repli.db.documents").join(c.id.as_str())).unwrap().count();
    assert!(copied > 0 && copied <= m2.documents);
}

#[tokio::test]
async fn a_snapshot_whose_chain_does_not_verify_is_refused() {
    let app = TestApp::spawn().await;
    app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let st = app.daemon.state();
    backup::snapshot(st, &snap, replid::By::System).await.unwrap();
    assert!(backup::check(&snap).await.is_ok());

    // Not a snapshot at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(backup::check(&empty).await, Err(BackupError::NotASnapshot(..))));

    // One audit entry rewritten in the snapshot (the triggers dropped first, as an attacker
    // with the file would).
    let db = snap.join("repli.db");
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display())).await.unwrap();
        for sql in [
            "DROP TRIGGER IF EXISTS audit_log_no_update",
            "UPDATE audit_log SET details = '{\"edited\":true}' WHERE seq = 2",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }
    let refused = backup::check(&snap).await;
    let Err(BackupError::ChainRefused(why)) = &refused else { panic!("{refused:?}") };
    assert!(why.contains('2'), "names the entry: {why}");
    let mut target = Config::default();
    target.database.path = dir.path().join("host").join("repli.db");
    let key = st.config.audit_key_path();
    let r = backup::restore(&snap, &target, Some(&key), replid::By::System, app.now()).await;
    assert!(matches!(r, Err(BackupError::ChainRefused(_))), "{r:?}");
    assert!(!target.database.path.exists());

    // An oversized manifest is not read whole.
    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("manifest.json"), vec![b' '; 100_000]).unwrap();
    assert!(matches!(backup::check(&big).await, Err(BackupError::NotASnapshot(..))));

    // A manifest that does not match its database (a truncated copy, another snapshot's file).
    let manifest = snap.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["format"] = "repli-snapshot-v0".into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(matches!(backup::check(&snap).await, Err(BackupError::Format(_))));
}

/// `replid backup` on a database in use by another process, `replid restore --check`, then
/// `replid restore` with the key kept apart, as docs/OPERATIONS.md tells ops to.
#[test]
fn the_replid_commands_take_check_and_restore_a_snapshot() {
    use std::process::Command;

    use repli_tests::workspace_bin;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("repli.db");
    let run = |db: &Path, args: &[&str]| {
        Command::new(workspace_bin("replid")).env("REPLI_DATABASE__PATH", db).args(args).output().unwrap()
    };
    let init = run(&db, &["init"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let snap = dir.path().join("snap");
    let out = run(&db, &["backup", snap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the audit signing key is not in it"));
    let out = run(&db, &["backup", snap.to_str().unwrap()]);
    assert!(!out.status.success(), "a second snapshot into the same folder is refused");

    let check = run(&db, &["restore", "--check", snap.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stderr).contains("audit chain verified"));

    let fresh = dir.path().join("fresh").join("repli.db");
    let key = dir.path().join("repli.db.audit-key");
    let out = run(&fresh, &["restore", snap.to_str().unwrap(), "--audit-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fresh.is_file());
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(dir.path().join("fresh/repli.db.audit-key")).unwrap());
    let out = run(&fresh, &["restore", snap.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
