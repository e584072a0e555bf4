//! The storage's truth, from outside: on a real full filesystem (a small tmpfs) replid never
//! acknowledges a write it did not keep, says why it is not ready, and recovers by itself when
//! space returns; on an audit chain that no longer verifies it serves reads and refuses writes
//! until an operator decides, and that decision is recorded.
//!
//! Mounting a tmpfs needs root (as CI runs). With `REPLI_DISK_TESTS=required` (as `.ci/run`
//! sets) a failed mount is a failure; without it, the test says it was skipped and why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use repli_core::Role;
use repli_proto::ClientError;
use repli_tests::{TestApp, request};

/// A tmpfs of `mb` MiB mounted on a new folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mb: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("REPLI_DISK_TESTS").as_deref() != Ok("required"),
                    "REPLI_DISK_TESTS=required but a tmpfs cannot be mounted: {why}"
                );
                eprintln!("skipped: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the filesystem at `dir` with one file until about `leave` bytes remain.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let free = repli_free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).unwrap();
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

fn repli_free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_full_disk_acknowledges_nothing_it_did_not_keep_and_recovers_without_restart() {
    let Some(fs) = Tmpfs::mount(16) else { return };
    let dir = tempfile::tempdir_in(fs.path()).unwrap();
    let app = TestApp::spawn_in(dir, |c| c.database.min_free_mb = 1).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let id = c.id.as_str().to_owned();
    // Leave little room: the writers below run out of it.
    let filler = fill(fs.path(), 600 * 1024);

    // Four writers, each until it has been refused a few times.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (ops, id, acknowledged) = (app.ops.clone(), id.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let (mut refused, mut codes) = (0, BTreeSet::new());
            for i in 0..400 {
                let text = format!("w{w} n{i} {}", "é".repeat(900));
                match ops.add_log(&id, "information", &text).await {
                    Ok(_) => acknowledged.lock().unwrap().push(text),
                    Err(ClientError::Api { status, problem }) => {
                        codes.insert((status.as_u16(), problem.code.clone()));
                        refused += 1;
                        if refused >= 5 {
                            break;
                        }
                    }
                    Err(e) => panic!("not a problem document: {e}"),
                }
            }
            codes
        }));
    }
    let mut codes = BTreeSet::new();
    for w in writers {
        codes.extend(w.await.unwrap());
    }
    assert!(!codes.is_empty(), "the full disk refused nothing: the filesystem was not filled");
    for (status, code) in &codes {
        assert!(
            matches!((status, code.as_str()), (507, "storage_full") | (503, "storage_unavailable")),
            "a full disk answered {status} {code}"
        );
    }
    // Not ready, saying why.
    let r = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    let reasons = body["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r.as_str().unwrap().starts_with("storage_")), "{body}");

    // Space returns: replid recovers by itself, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let r = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    app.ops.add_log(&id, "information", "après").await.unwrap();

    // Every acknowledged write is stored, once; nothing refused is.
    let stored: Vec<String> = app.ops.crisis_log(&id).await.unwrap().into_iter().map(|e| e.text).collect();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "an entry was stored twice");
    for a in &acknowledged {
        assert!(stored_set.contains(a), "acknowledged but not stored: {}", &a[..12]);
    }
    let written = stored.iter().filter(|t| t.starts_with('w')).count();
    assert_eq!(written, acknowledged.len(), "stored writes that were refused");
    // The audit chain is whole, sequence numbers never reused.
    let v = app.auditor.audit_verify().await.unwrap();
    assert!(v.verified, "{:?}", v.error);
    app.daemon.shutdown().await.unwrap();
    drop(fs);
}

#[tokio::test]
async fn replid_started_on_a_broken_chain_refuses_writes_until_an_operator_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let app = TestApp::spawn_in(dir, |_| {}).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.ops.add_log(c.id.as_str(), "information", "avant").await.unwrap();
    let (_, ops_token) = app.token(Role::Ops, None).await;
    let TestApp { daemon, dir, .. } = app;
    daemon.shutdown().await.unwrap();
    let last: i64;

    // Someone with the file rewrites the last entry (not its hash): the chain no longer
    // verifies from the last checkpoint, which is what replid checks at start.
    {
        use sqlx::{ConnectOptions, Connection};
        let mut conn =
            sqlx::sqlite::SqliteConnectOptions::new().filename(path.join("repli.db")).connect().await.unwrap();
        sqlx::query("DROP TRIGGER audit_log_no_update").execute(&mut conn).await.unwrap();
        sqlx::query("UPDATE audit_log SET target = 'falsifié' WHERE seq = (SELECT MAX(seq) FROM audit_log)")
            .execute(&mut conn)
            .await
            .unwrap();
        last = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log").fetch_one(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    // Restarted: reads are served, writes refused with a clear code, /readyz says why. (The
    // daemon is started by hand: TestApp would make its users, which are writes.)
    let mut config = repli_app::config::Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database.path = path.join("repli.db");
    let clock = Arc::new(replid::clock::ManualClock::new(repli_tests::MONDAY_8AM.parse().unwrap()));
    let daemon = replid::Daemon::start(&config, clock).await.unwrap();
    let r = reqwest::get(format!("{}/readyz", daemon.url())).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["audit"], false, "{body}");
    assert!(body["reasons"][0].as_str().unwrap().starts_with("audit_chain_broken"), "{body}");
    let ops = repli_proto::Client::new(&daemon.url(), Some(ops_token.clone())).unwrap();
    assert_eq!(ops.crisis(c.id.as_str()).await.unwrap().id, c.id);
    let e = ops.add_log(c.id.as_str(), "information", "après").await.unwrap_err();
    match e {
        ClientError::Api { status, problem } => {
            assert_eq!((status.as_u16(), problem.code.as_str()), (503, "audit_chain_broken"), "{}", problem.detail);
        }
        other => panic!("{other}"),
    }
    daemon.shutdown().await.unwrap();

    // A decision about another entry accepts nothing: writes stay stopped.
    let mut wrong = config.clone();
    wrong.audit.accept_break = Some(repli_app::config::AcceptBreak {
        seq: last - 1,
        reason: "incident ancien déjà examiné".into(),
        operator: "exploitant".into(),
    });
    let clock = Arc::new(replid::clock::ManualClock::new(repli_tests::MONDAY_8AM.parse().unwrap()));
    let daemon = replid::Daemon::start(&wrong, clock).await.unwrap();
    assert_eq!(reqwest::get(format!("{}/readyz", daemon.url())).await.unwrap().status(), 503);
    daemon.shutdown().await.unwrap();

    // The operator decides about this break, with a reason: recorded in the log, writes go on.
    let app = TestApp::spawn_in(dir, |c| {
        c.audit.accept_break = Some(repli_app::config::AcceptBreak {
            seq: last,
            reason: "incident 2026-12 examiné, base conservée".into(),
            operator: "exploitant".into(),
        });
    })
    .await;
    assert_eq!(reqwest::get(app.url("/readyz")).await.unwrap().status(), 200);
    app.ops.add_log(c.id.as_str(), "information", "reprise").await.unwrap();
    let admin = app.client(Role::Auditor, None).await;
    let q = repli_proto::api::AuditQuery { action: Some("service.audit_break_accepted".into()), ..Default::default() };
    let found = admin.audit_entries(&q).await.unwrap().entries;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].actor_name, "local:exploitant");
    assert!(found[0].details.contains("incident 2026-12"), "{}", found[0].details);
    // Full verification still names the rewritten entry.
    let v = admin.audit_verify().await.unwrap();
    assert!(!v.verified && v.first_bad_seq == Some(last), "{v:?}");
    app.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_audit_key_changes_by_an_entry_the_previous_key_signs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let app = TestApp::spawn_in(dir, |_| {}).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let TestApp { daemon, dir, .. } = app;
    daemon.shutdown().await.unwrap();
    let key_file = path.join("repli.db.audit-key");
    let previous = repli_app::audit_key::load(&key_file).unwrap().verifying_key();
    let pin = repli_core::audit::fingerprint(&previous);
    let mut config = repli_app::config::Config::default();
    config.database.path = path.join("repli.db");
    let operator = repli_app::local::local_actor("exploitant");
    let now = repli_tests::MONDAY_8AM.parse().unwrap();
    // Refused while the current key is not pinned: verifiers would lose what it signed.
    let e = repli_app::local::change_audit_key(&config, &operator, now).await.unwrap_err();
    assert!(e.to_string().contains(&pin), "{e}");
    config.audit.trusted_keys = vec![pin.clone()];
    let k = repli_app::local::change_audit_key(&config, &operator, now).await.unwrap();
    assert_eq!(k.previous, pin);
    assert!(k.retired.is_file());
    // replid restarts with the new key file and the previous key still the one pinned.
    let app = TestApp::spawn_in(dir, |c| c.audit.trusted_keys = vec![pin.clone()]).await;
    assert_eq!(reqwest::get(app.url("/readyz")).await.unwrap().status(), 200);
    app.ops.add_log(c.id.as_str(), "information", "après le changement de clé").await.unwrap();
    let v = app.auditor.audit_verify().await.unwrap();
    assert!(v.verified, "{v:?}");
    let head = v.head.unwrap();
    let new = repli_app::audit_key::load(&key_file).unwrap().verifying_key();
    let new_key = repli_core::audit::parse_public_key(&head.public_key).unwrap();
    assert_eq!(new_key, new, "the head is signed by the new key");
    assert_ne!(new, previous);
    app.daemon.shutdown().await.unwrap();
}
