//! Backups: a snapshot taken while a crisis provisions restores on a fresh host, and the
//! crisis goes on to a ready kit there; a snapshot that does not verify is refused, naming the
//! check; scheduled snapshots are taken by the daemon, whole or not at all; `replid backup`
//! beside a running daemon never makes a write fail (the tamper suite itself is
//! `repli_app::backup::tamper`'s test and `repli-bench tamper`).

use std::path::Path;

use repli_core::CrisisState;
use repli_graph_sim::{SimConfig, Simulator};
use repli_tests::{TestApp, request};
use replid::backup::{self, BackupError, Check};
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
    assert_eq!(Some(m.public_key.clone()), app.auditor.audit_verify().await.unwrap().public_key);
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
    let no_key = backup::restore(&snap, &target, &[], None, replid::By::System, now).await;
    assert_eq!(no_key.as_ref().err().and_then(BackupError::check), Some(Check::SigningKey), "{no_key:?}");
    assert!(std::fs::read_dir(host.path()).unwrap().next().is_none(), "a refused restore writes nothing, no key");
    let restored = backup::restore(&snap, &target, &[], Some(&key), replid::By::System, now).await.unwrap();
    assert_eq!(restored.manifest.audit_last_seq, m.audit_last_seq);
    let again = backup::restore(&snap, &target, &[], Some(&key), replid::By::System, now).await;
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
    assert_eq!(v.public_key, Some(m.public_key.clone()));
    let q = repli_proto::api::AuditQuery { action: Some("service.".into()), ..Default::default() };
    let actions: Vec<String> =
        app2.auditor.audit_entries(&q).await.unwrap().entries.into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["service.backup", "service.restore"]);

    // Once ready, the crisis's documents exist: a snapshot carries them to the next host.
    let st2 = app2.daemon.state();
    let snap2 = snapshots.path().join("repli-ready");
    let m2 = backup::snapshot(st2, &snap2, replid::By::System).await.unwrap();
    assert!(m2.documents() > 0, "{m2:?}");
    let third = tempfile::tempdir().unwrap();
    let mut target3 = Config::default();
    target3.database.path = third.path().join("repli.db");
    backup::restore(&snap2, &target3, &[], Some(&key), replid::By::System, app2.now()).await.unwrap();
    let copied = std::fs::read_dir(third.path().join("repli.db.documents").join(c.id.as_str())).unwrap().count();
    assert!(copied > 0 && copied <= m2.documents());
}

#[tokio::test]
async fn a_snapshot_that_is_not_what_its_signed_manifest_says_is_refused() {
    let app = TestApp::spawn().await;
    app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let st = app.daemon.state();
    backup::snapshot(st, &snap, replid::By::System).await.unwrap();
    let trust = backup::trust(&st.config, &[], None).unwrap();
    assert!(backup::check(&snap, &trust).await.is_ok());

    // Not a snapshot at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(backup::check(&empty, &trust).await, Err(BackupError::NotASnapshot(..))));

    // Trusting another key (pinned by fingerprint, as audit.trusted_keys holds it).
    let pin = repli_core::audit::KeyPin::parse("SHA256:0123456789abcdef0123456789abcdef").unwrap();
    let wrong = backup::Trust { pins: vec![pin.clone()], signing_key: None };
    let r = backup::check(&snap, &wrong).await;
    assert_eq!(r.as_ref().err().and_then(BackupError::check), Some(Check::TrustedKey), "{r:?}");
    // … nor restored with the right signing key while another key is pinned in the config.
    let mut pinned = Config::default();
    pinned.database.path = dir.path().join("pinned").join("repli.db");
    pinned.audit.trusted_keys = vec![pin.to_string()];
    let key = st.config.audit_key_path();
    let r = backup::restore(&snap, &pinned, &[], Some(&key), replid::By::System, app.now()).await;
    assert_eq!(r.as_ref().err().and_then(BackupError::check), Some(Check::TrustedKey), "{r:?}");
    assert!(!dir.path().join("pinned").exists());

    // One audit entry rewritten in the snapshot (the triggers dropped first, as an attacker
    // with the file would): the database is no longer the file the manifest signs.
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
    let refused = backup::check(&snap, &trust).await;
    let Err(BackupError::Refused { check: Check::FileHash, detail }) = &refused else { panic!("{refused:?}") };
    assert!(detail.contains("repli.db"), "names the file: {detail}");
    // Restoring it into a data directory that holds something already is refused first, and
    // leaves it as it was.
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "à garder").unwrap();
    let mut target = Config::default();
    target.database.path = busy.join("repli.db");
    let r = backup::restore(&snap, &target, &[], Some(&key), replid::By::System, app.now()).await;
    assert!(matches!(r, Err(BackupError::TargetExists(_))), "{r:?}");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    target.database.path = dir.path().join("host").join("repli.db");
    let r = backup::restore(&snap, &target, &[], Some(&key), replid::By::System, app.now()).await;
    assert_eq!(r.as_ref().err().and_then(BackupError::check), Some(Check::FileHash), "{r:?}");
    assert!(!dir.path().join("host").exists(), "a refused restore changes nothing");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // An oversized or malformed manifest is not a snapshot.
    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("manifest.json"), vec![b' '; 100_000]).unwrap();
    assert!(matches!(backup::check(&big, &trust).await, Err(BackupError::NotASnapshot(..))));

    // An older, unsigned format.
    let manifest = snap.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["format"] = "repli-snapshot-v1".into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(matches!(backup::check(&snap, &trust).await, Err(BackupError::Format(_))));
}

/// A restored database whose signing key is missing: replid refuses to start rather than sign
/// its chain with a new random key.
#[tokio::test]
async fn replid_never_makes_a_new_key_for_an_existing_database() {
    let app = TestApp::spawn().await;
    let key = app.daemon.state().config.audit_key_path();
    let dir = app.dir.path().to_owned();
    app.daemon.shutdown().await.unwrap();
    std::fs::remove_file(&key).unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database.path = dir.join("repli.db");
    let clock = std::sync::Arc::new(replid::clock::ManualClock::new("2026-11-23T08:00:00Z".parse().unwrap()));
    let started = replid::Daemon::start(&config, clock).await;
    let e = started.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("audit signing key") && e.contains("no key file"), "{e}");
    assert!(!key.exists(), "no key was made");
}

/// Scheduled snapshots: taken by the daemon at start, then each round into a new folder, the
/// oldest beyond `keep` removed; an unwritable destination is an error that leaves no folder,
/// and the next round succeeds once it is writable again, without a restart.
#[tokio::test]
async fn scheduled_snapshots_are_whole_or_absent_and_pruned() {
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("repli");
    let d = dest.clone();
    let app = TestApp::spawn_with(move |c| {
        c.backup.destination = Some(d);
        c.backup.keep = 2;
    })
    .await;
    let st = app.daemon.state();
    let trust = backup::trust(&st.config, &[], None).unwrap();
    // The daemon's timer takes the first one at start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let found: Vec<_> = std::fs::read_dir(&dest)
            .map(|r| r.map(|e| e.unwrap().path()).filter(|p| p.join("manifest.sig").exists()).collect())
            .unwrap_or_default();
        if let Some(p) = found.first() {
            break p.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled snapshot after 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    backup::check(&first, &trust).await.unwrap();
    for _ in 0..3 {
        app.clock.advance(jiff::SignedDuration::from_mins(60));
        let (path, _) = backup::scheduled(st).await.unwrap().unwrap();
        backup::check(&path, &trust).await.unwrap();
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("repli-2026")), "{names:?}");

    // A destination that cannot be a folder: an error, nothing written, the daemon serves on.
    let blocked = backups.path().join("blocked");
    std::fs::write(&blocked, "a file, not a folder").unwrap();
    let base: &repli_app::Services = st;
    let mut s2 = base.clone();
    let mut cfg = (*s2.config).clone();
    cfg.backup.destination = Some(blocked.join("repli"));
    s2.config = std::sync::Arc::new(cfg);
    assert!(backup::scheduled(&s2).await.is_err());
    app.ops.crises(&Default::default()).await.unwrap();

    // A destination that fills up mid-snapshot (a tiny tmpfs; root only): an error, no folder
    // left that looks like a snapshot, and once space is back the next round succeeds.
    let small = backups.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("not root (mount refused): the full-destination case is not run here");
        return;
    }
    let mut cfg = (*s2.config).clone();
    cfg.backup.destination = Some(small.clone());
    s2.config = std::sync::Arc::new(cfg);
    app.clock.advance(jiff::SignedDuration::from_mins(60));
    let full = backup::scheduled(&s2).await;
    let left: Vec<_> = std::fs::read_dir(&small).unwrap().map(|e| e.unwrap().file_name()).collect();
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    app.clock.advance(jiff::SignedDuration::from_mins(60));
    let again = backup::scheduled(&s2).await;
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert!(full.is_err(), "{full:?}");
    assert!(left.is_empty(), "a failed snapshot leaves nothing: {left:?}");
    assert!(remounted);
    let (path, _) = again.unwrap().unwrap();
    assert!(path.starts_with(&small));
}

/// The backup-under-load harness, small: `replid backup` processes beside a running replid
/// that clients write to (`repli-bench backup-load --backups 20` for the figure).
#[tokio::test]
async fn backups_beside_a_running_replid_never_fail_a_write() {
    let bench = repli_tests::workspace_bin("repli-bench");
    let out = tokio::process::Command::new(&bench)
        .args(["backup-load", "--backups", "3", "--writers", "2", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["backup_failures"], 0, "{v:#}");
    assert_eq!(v["snapshots_verified"], 3, "{v:#}");
    assert_eq!(v["writes_failed"], 0, "{v:#}");
    assert_eq!(v["writes_5xx"], 0, "{v:#}");
    assert!(v["writes_ok"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(v["writes_stored"], v["writes_ok"], "{v:#}");
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&out.stderr));
    // The operator pins the key by its fingerprint; another key's fingerprint is refused,
    // naming the check.
    let elsewhere = dir.path().join("elsewhere").join("repli.db");
    let other = "SHA256:00000000000000000000000000000000";
    let out = run(
        &elsewhere,
        &["restore", snap.to_str().unwrap(), "--audit-key", key.to_str().unwrap(), "--public-key", other],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trusted key check failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!elsewhere.exists());
}
