//! Tampering with a real SQLite file, as someone with file access would: triggers dropped,
//! rows edited, deleted, inserted, reordered, cut off. Verification must name the first bad
//! sequence number and the kind of tampering each time.

use ed25519_dalek::SigningKey;
use repli_core::audit::{AuditEntry, Tamper};
use repli_core::{CrisisAction, InseeCode, LogKind, Role};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::testutil::*;
use crate::{Checkpointing, NewCrisis, Store, StoreError};

const KEY: [u8; 32] = [42; 32];

/// A database with 20 audit entries and checkpoints every 5; returns its folder and path.
async fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Store::open_with(&path, Some(Checkpointing::new(SigningKey::from_bytes(&KEY), 5))).await.unwrap();
    let communes = repli_core::reference::parse_communes("c", COMMUNES).unwrap();
    let conventions = repli_core::reference::parse_conventions("v", CONVENTIONS, &communes).unwrap();
    store.sync_reference(&communes, &conventions, t("2026-11-02T08:00:00Z")).await.unwrap();
    let ops = user(&store, Role::Ops, None).await;
    let new = NewCrisis {
        commune: InseeCode::parse("13005").unwrap(),
        contact_name: "A".into(),
        contact_phone: "+33612345678".into(),
        contact_email: None,
        agents: 3,
        delivery_address: None,
        notes: String::new(),
        due_at: t("2026-11-27T15:00:00Z"),
        aware_at: None,
        personal_data: None,
        needs: Vec::new(),
    };
    let (c, _) = store.create_crisis(&new, &ops, None, t("2026-11-23T08:00:00Z")).await.unwrap();
    store
        .transition(&c.id, CrisisAction::Activate, None, crate::By::User(&ops), t("2026-11-23T08:10:00Z"))
        .await
        .unwrap();
    let mut seq = store.verify_audit(None).await.unwrap().last_seq;
    while seq < 20 {
        store
            .add_log_entry(&c.id, LogKind::Information, &format!("point {seq}"), &ops, t("2026-11-23T09:00:00Z"))
            .await
            .unwrap();
        seq += 1;
    }
    let s = store.verify_audit(None).await.unwrap();
    assert_eq!((s.entries, s.last_checkpoint), (20, Some(20)));
    store.close().await;
    (dir, path)
}

/// Opens the file as an attacker: a plain read-write connection, triggers dropped.
async fn attacker(path: &std::path::Path) -> SqliteConnection {
    let mut c = SqliteConnectOptions::new().filename(path).connect().await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_update").execute(&mut c).await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_delete").execute(&mut c).await.unwrap();
    c
}

async fn verdict(path: &std::path::Path) -> (i64, Tamper) {
    let store = Store::open_read_only(path).await.unwrap();
    let trusted = SigningKey::from_bytes(&KEY).verifying_key();
    match store.verify_audit(Some(&trusted)).await {
        Err(StoreError::Chain(e)) => (e.seq(), e.kind().unwrap()),
        other => panic!("tampering not detected: {other:?}"),
    }
}

async fn row(c: &mut SqliteConnection, seq: i64) -> AuditEntry {
    let r = sqlx::query("SELECT * FROM audit_log WHERE seq = ?").bind(seq).fetch_one(&mut *c).await.unwrap();
    crate::audit::entry_from_row(&r).unwrap()
}

#[tokio::test]
async fn modified() {
    let (_d, path) = populated().await;
    let mut c = attacker(&path).await;
    sqlx::query("UPDATE audit_log SET details = '{\"type\":\"information\",\"text\":\"rien\"}' WHERE seq = 12")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_eq!(verdict(&path).await, (12, Tamper::Modified));
}

#[tokio::test]
async fn modified_and_rehashed() {
    let (_d, path) = populated().await;
    let mut c = attacker(&path).await;
    let mut e = row(&mut c, 9).await;
    e.actor_name = "quelqu'un d'autre".into();
    e.hash = e.compute_hash();
    sqlx::query("UPDATE audit_log SET actor_name = ?, hash = ? WHERE seq = 9")
        .bind(&e.actor_name)
        .bind(&e.hash)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_eq!(verdict(&path).await, (9, Tamper::Modified));
}

#[tokio::test]
async fn deleted() {
    let (_d, path) = populated().await;
    let mut c = attacker(&path).await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 7").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    assert_eq!(verdict(&path).await, (7, Tamper::Deleted));
}

#[tokio::test]
async fn inserted() {
    let (_d, path) = populated().await;
    let mut c = attacker(&path).await;
    // Make room at 11 by shifting 11..20 up (highest first, seq is the primary key), then
    // insert a forged entry whose hash and link are computed as docs/AUDIT.md says.
    for seq in (11..=20).rev() {
        sqlx::query("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?").bind(seq).execute(&mut c).await.unwrap();
    }
    let prev = row(&mut c, 10).await;
    let mut forged = prev.clone();
    forged.seq = 11;
    forged.details = "{\"type\":\"decision\",\"text\":\"forgé\"}".into();
    forged.prev_hash = prev.hash.clone();
    forged.hash = forged.compute_hash();
    sqlx::query("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(forged.seq)
        .bind(&forged.at)
        .bind(forged.actor_id)
        .bind(&forged.actor_name)
        .bind(&forged.actor_role)
        .bind(&forged.auth)
        .bind(&forged.commune)
        .bind(&forged.crisis)
        .bind(&forged.action)
        .bind(&forged.target)
        .bind(&forged.details)
        .bind(&forged.prev_hash)
        .bind(&forged.hash)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_eq!(verdict(&path).await, (11, Tamper::Inserted));
}

#[tokio::test]
async fn reordered() {
    let (_d, path) = populated().await;
    let mut c = attacker(&path).await;
    sqlx::query("UPDATE audit_log SET seq = -1 WHERE seq = 14").execute(&mut c).await.unwrap();
    sqlx::query("UPDATE audit_log SET seq = 14 WHERE seq = 15").execute(&mut c).await.unwrap();
    sqlx::query("UPDATE audit_log SET seq = 15 WHERE seq = -1").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    assert_eq!(verdict(&path).await, (14, Tamper::Reordered));
}

#[tokio::test]
async fn truncated() {
    let (_d, path) = populated().await;
    let mut c = attacker(&path).await;
    // The last four entries go; the remaining chain is intact, but checkpoint 20 covers them.
    sqlx::query("DELETE FROM audit_log WHERE seq > 16").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    assert_eq!(verdict(&path).await, (17, Tamper::Truncated));
}

#[tokio::test]
async fn forged_checkpoints_are_refused() {
    let (_d, path) = populated().await;
    let store = Store::open_read_only(&path).await.unwrap();
    let stranger = SigningKey::from_bytes(&[1; 32]).verifying_key();
    assert!(matches!(
        store.verify_audit(Some(&stranger)).await,
        Err(StoreError::Chain(repli_core::ChainError::BadCheckpoint { .. }))
    ));
    // The untouched file verifies, offline and read-only.
    let s = store.verify_audit(Some(&SigningKey::from_bytes(&KEY).verifying_key())).await.unwrap();
    assert_eq!((s.entries, s.last_checkpoint), (20, Some(20)));
    assert!(Store::open_read_only(&path.with_extension("missing")).await.is_err());
}

/// An entry whose action this version does not know (written by a later version) is not
/// tampering: it reads, exports and verifies like any other, its raw action kept as hashed.
#[tokio::test]
async fn an_unknown_action_still_reads_and_verifies() {
    let (_d, path) = populated().await;
    let mut c = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    let last = row(&mut c, 20).await;
    let mut later = last.clone();
    later.seq = 21;
    later.action = "crisis.teleport".into();
    later.details = "{}".into();
    later.prev_hash = last.hash.clone();
    later.hash = later.compute_hash();
    crate::audit::insert_entry(&mut c, &later).await.unwrap();
    c.close().await.unwrap();

    let store = Store::open_read_only(&path).await.unwrap();
    let s = store.verify_audit(Some(&SigningKey::from_bytes(&KEY).verifying_key())).await.unwrap();
    assert_eq!((s.entries, s.last_hash.as_str()), (21, later.hash.as_str()));
    let read = store.audit_entries(&crate::AuditFilter { after_seq: 20, ..Default::default() }).await.unwrap();
    assert_eq!(read, [later.clone()]);
    assert_eq!((read[0].action.as_str(), read[0].action_kind()), ("crisis.teleport", None));
    assert_eq!(last.action_kind(), Some(repli_core::AuditAction::LogInformation));
    // The main courante shows only its own entries, and still all of them.
    let crisis = repli_core::CrisisId::parse(later.crisis.as_deref().unwrap()).unwrap();
    let all = store.audit_entries(&crate::AuditFilter::default()).await.unwrap();
    let logged = all.iter().filter(|e| e.action.starts_with("log.")).count();
    assert!(logged > 10);
    assert_eq!(store.log_entries(&crisis).await.unwrap().len(), logged);
    // A prefix filter reads it with its family; an unknown name cannot be asked for.
    let f = crate::AuditFilter { action: Some("crisis.".parse().unwrap()), ..Default::default() };
    assert_eq!(store.audit_entries(&f).await.unwrap().last().map(|e| e.seq), Some(21));
    assert!("crisis.teleport".parse::<repli_core::audit::ActionFilter>().is_err());
}

/// A main-courante entry without its text (never written so) is refused, not shown empty.
#[tokio::test]
async fn a_main_courante_entry_without_text_is_corrupt() {
    let (_d, path) = populated().await;
    let mut c = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    let last = row(&mut c, 20).await;
    let mut later = last.clone();
    later.seq = 21;
    later.details = "{\"type\":\"information\"}".into();
    later.prev_hash = last.hash.clone();
    later.hash = later.compute_hash();
    crate::audit::insert_entry(&mut c, &later).await.unwrap();
    c.close().await.unwrap();
    let store = Store::open_read_only(&path).await.unwrap();
    let crisis = repli_core::CrisisId::parse(later.crisis.as_deref().unwrap()).unwrap();
    let e = store.log_entries(&crisis).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { column: "audit_log.details", .. }), "{e}");
}
