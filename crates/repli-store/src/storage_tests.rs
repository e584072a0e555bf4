//! What the store acknowledges is what it keeps: a write the storage refuses (SQLITE_FULL,
//! injected with `PRAGMA max_page_count` on the writer connection, as a full disk would) is an
//! error, later writes are not swallowed by a transaction SQLite already rolled back, and the
//! writer recovers by itself once space returns. And the audit chain's head is signed in every
//! appending transaction, so a tail rewritten behind the store's back stops writes.

use ed25519_dalek::SigningKey;
use repli_core::audit::KeyPin;
use repli_core::{CrisisId, LogKind, Role};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::testutil::*;
use crate::{Checkpointing, NewCrisis, StorageFault, Store, StoreError};

const KEY: [u8; 32] = [9; 32];

async fn store_with_crisis() -> (tempfile::TempDir, Store, repli_core::Actor, CrisisId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(&dir.path().join("s.db"), Some(Checkpointing::new(SigningKey::from_bytes(&KEY), 50)))
        .await
        .unwrap();
    let communes = repli_core::reference::parse_communes("c", COMMUNES).unwrap();
    let conventions = repli_core::reference::parse_conventions("v", CONVENTIONS, &communes).unwrap();
    store.sync_reference(&communes, &conventions, t("2026-11-02T08:00:00Z")).await.unwrap();
    let ops = user(&store, Role::Ops, None).await;
    let new = NewCrisis {
        commune: repli_core::InseeCode::parse("13005").unwrap(),
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
    (dir, store, ops, c.id)
}

/// Caps the writer connection's database size at its current size: the next write that needs
/// a new page fails with SQLITE_FULL, as on a full disk. The cap lives on that connection only,
/// so a writer that throws its connection away after a failure gets its space back.
async fn fill(store: &Store) {
    let mut conn = store.write.acquire().await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut *conn).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}"))).execute(&mut *conn).await.unwrap();
}

async fn stored_notes(store: &Store, id: &CrisisId) -> Vec<String> {
    store.log_entries(id).await.unwrap().into_iter().map(|e| e.text).collect()
}

#[tokio::test]
async fn a_full_disk_is_an_error_and_nothing_acknowledged_is_lost() {
    let (_dir, store, ops, id) = store_with_crisis().await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    // Writes big enough to need new pages, until the "disk" refuses one.
    fill(&store).await;
    for i in 0..40 {
        let text = format!("point {i} {}", "x".repeat(3000));
        match store.add_log_entry(&id, LogKind::Information, &text, &ops, t("2026-11-23T09:00:00Z")).await {
            Ok(_) => acknowledged.push(text),
            Err(StoreError::Storage { fault: StorageFault::Full, .. }) => {
                refused += 1;
                // The "disk" stays full for the next attempts on the same connection, if any.
                if refused < 3 {
                    fill(&store).await;
                }
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(refused >= 1, "the injected full disk refused nothing");
    // Every write acknowledged is stored, in order, and nothing else.
    let stored = stored_notes(&store, &id).await;
    assert_eq!(stored, acknowledged, "acknowledged and stored differ");
    // The chain is whole, its sequence numbers never reused, its head signed.
    let pins = [KeyPin::Key(SigningKey::from_bytes(&KEY).verifying_key())];
    let s = store.verify_audit_trusted(&pins, false).await.unwrap();
    let head = store.signed_head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (s.last_seq, s.last_hash));
    // Space came back (a fresh connection): writes succeed. (A refusal raised by a statement,
    // as here, is an error to the caller but not recorded as the writer's fault: only a refused
    // BEGIN or COMMIT is — see the next test.)
    store.add_log_entry(&id, LogKind::Information, "after", &ops, t("2026-11-23T10:00:00Z")).await.unwrap();
    assert_eq!(stored_notes(&store, &id).await.last().map(String::as_str), Some("after"));
}

#[tokio::test]
async fn a_failed_commit_is_a_known_fault_until_a_probe_write_commits() {
    let (_dir, store, ops, id) = store_with_crisis().await;
    // A commit the database refuses: a deferred constraint checked only at COMMIT (a full disk
    // in WAL mode fails there too, when the frames are written).
    {
        let mut tx = store.write.begin().await.unwrap();
        sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut *tx).await.unwrap();
        sqlx::query("UPDATE crises SET commune = '99999' WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(tx.commit().await.is_err(), "the deferred violation must fail the commit");
    }
    assert_eq!(store.write_fault(), Some(StorageFault::Other));
    assert_eq!(store.write_failures(), 1);
    // Nothing of it was kept, and the next write works on a fresh connection.
    assert_eq!(store.crisis(&id).await.unwrap().unwrap().commune.as_str(), "13005");
    // Readiness writes for real while a fault is known, and the commit clears it.
    store.writable(t("2026-11-23T09:01:00Z")).await.unwrap();
    assert_eq!(store.write_fault(), None);
    store.add_log_entry(&id, LogKind::Information, "ok", &ops, t("2026-11-23T09:02:00Z")).await.unwrap();
}

/// Three notes on the crisis, then the last audit entry rewritten and re-hashed on the file,
/// as someone with the file but not the key would; returns that connection and the new hash.
async fn notes_then_rewrite_the_last(
    dir: &tempfile::TempDir,
    store: &Store,
    ops: &repli_core::Actor,
    id: &CrisisId,
) -> (sqlx::SqliteConnection, String) {
    for i in 0..3 {
        store.add_log_entry(id, LogKind::Information, &format!("n{i}"), ops, t("2026-11-23T09:00:00Z")).await.unwrap();
    }
    let mut c = SqliteConnectOptions::new().filename(dir.path().join("s.db")).connect().await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_update").execute(&mut c).await.unwrap();
    let r = sqlx::query("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_one(&mut c).await.unwrap();
    let mut e = crate::audit::entry_from_row(&r).unwrap();
    e.details = r#"{"text":"réécrit"}"#.into();
    e.hash = e.compute_hash();
    sqlx::query("UPDATE audit_log SET details = ?, hash = ? WHERE seq = ?")
        .bind(&e.details)
        .bind(&e.hash)
        .bind(e.seq)
        .execute(&mut c)
        .await
        .unwrap();
    (c, e.hash)
}

#[tokio::test]
async fn a_tail_rewritten_behind_the_store_stops_writes() {
    let (dir, store, ops, id) = store_with_crisis().await;
    // The chain's links hold after the rewrite, but the signed head no longer matches.
    let (c, _) = notes_then_rewrite_the_last(&dir, &store, &ops, &id).await;
    c.close().await.unwrap();
    // The next write is refused, and every write after it, until an operator decides.
    let err = store.add_log_entry(&id, LogKind::Information, "x", &ops, t("2026-11-23T10:00:00Z")).await.unwrap_err();
    assert!(matches!(err, StoreError::Chain(_)), "{err}");
    assert!(store.writes_stopped().is_some());
    let err = store.add_log_entry(&id, LogKind::Information, "y", &ops, t("2026-11-23T10:00:00Z")).await.unwrap_err();
    assert!(matches!(err, StoreError::WritesStopped(_)), "{err}");
    // Verification with the pinned key finds it too.
    let pins = [KeyPin::Key(SigningKey::from_bytes(&KEY).verifying_key())];
    assert!(store.verify_audit_trusted(&pins, false).await.is_err());
    // The operator's explicit decision is recorded, and writes go on from there.
    store
        .accept_chain_break("head mismatch", "incident 42 examined", crate::By::System, t("2026-11-23T11:00:00Z"))
        .await
        .unwrap();
    store.add_log_entry(&id, LogKind::Information, "z", &ops, t("2026-11-23T11:01:00Z")).await.unwrap();
    // Both checks pass from there (the rewritten entry was past every checkpoint: only the
    // signed head knew, and the decision entry says what failed).
    store.verify_audit_trusted(&pins, true).await.unwrap();
    store.verify_audit_trusted(&pins, false).await.unwrap();
    let decision = store
        .audit_entries(&crate::AuditFilter { after_seq: 0, limit: 10_000, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.action == "service.audit_break_accepted")
        .unwrap();
    assert!(decision.details.contains("incident 42") && decision.details.contains("head mismatch"));
}

#[tokio::test]
async fn a_log_re_signed_with_another_key_passes_only_for_whoever_pins_that_key() {
    use repli_core::audit::Checkpoint;
    let (dir, store, ops, id) = store_with_crisis().await;
    store.add_log_entry(&id, LogKind::Information, "n", &ops, t("2026-11-23T09:00:00Z")).await.unwrap();
    store.checkpoint_now(t("2026-11-23T09:00:00Z")).await.unwrap();
    let path = dir.path().join("s.db");
    store.close().await;
    // Someone with the file and a key of their own re-signs every checkpoint and the head.
    let theirs = SigningKey::from_bytes(&[3; 32]);
    let mut c = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    sqlx::query("DROP TRIGGER audit_checkpoints_no_delete").execute(&mut c).await.unwrap();
    let cps: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT seq, hash, at FROM audit_checkpoints").fetch_all(&mut c).await.unwrap();
    assert!(!cps.is_empty());
    sqlx::query("DELETE FROM audit_checkpoints").execute(&mut c).await.unwrap();
    for (seq, hash, at) in &cps {
        let cp = Checkpoint::sign(&theirs, *seq, hash, at);
        sqlx::query("INSERT INTO audit_checkpoints (seq, hash, at, public_key, signature) VALUES (?, ?, ?, ?, ?)")
            .bind(cp.seq)
            .bind(&cp.hash)
            .bind(&cp.at)
            .bind(&cp.public_key)
            .bind(&cp.signature)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let (seq, hash, at): (i64, String, String) =
        sqlx::query_as("SELECT seq, hash, at FROM audit_head").fetch_one(&mut c).await.unwrap();
    let head = Checkpoint::sign(&theirs, seq, &hash, &at);
    sqlx::query("UPDATE audit_head SET public_key = ?, signature = ?")
        .bind(&head.public_key)
        .bind(&head.signature)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let read = Store::open_read_only(&path).await.unwrap();
    // Against the key the auditors pinned (by key or fingerprint): refused, naming the signer.
    let ours = SigningKey::from_bytes(&KEY).verifying_key();
    for pins in [vec![KeyPin::Key(ours)], vec![KeyPin::parse(&repli_core::audit::fingerprint(&ours)).unwrap()]] {
        let e = read.verify_audit_trusted(&pins, false).await.unwrap_err();
        assert!(e.to_string().contains("not a trusted key"), "{e}");
        assert!(read.verify_audit_trusted(&pins, true).await.is_err(), "nor from the last trusted checkpoint");
    }
    // The same log passes for whoever pins the other key: trust comes from the pin alone.
    read.verify_audit_trusted(&[KeyPin::Key(theirs.verifying_key())], false).await.unwrap();
    // Without any pin nothing is trusted.
    assert!(read.verify_audit_trusted(&[], false).await.is_err());
}

#[tokio::test]
async fn an_unsigned_head_over_a_rewritten_tail_is_refused() {
    let (dir, store, ops, id) = store_with_crisis().await;
    // The tail is rewritten and re-hashed, and the head row made to look like a database just
    // upgraded to signed heads (no signature): no checkpoint covers the forged last entry.
    let (mut c, hash) = notes_then_rewrite_the_last(&dir, &store, &ops, &id).await;
    sqlx::query("UPDATE audit_head SET hash = ?, public_key = NULL, signature = NULL")
        .bind(&hash)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let pins = [KeyPin::Key(SigningKey::from_bytes(&KEY).verifying_key())];
    for since_last in [true, false] {
        let err = store.verify_audit_trusted(&pins, since_last).await.unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");
    }
    // Neither an append nor a checkpoint signs over it.
    assert!(store.checkpoint_now(t("2026-11-23T10:00:00Z")).await.is_err());
    assert!(store.add_log_entry(&id, LogKind::Information, "x", &ops, t("2026-11-23T10:00:00Z")).await.is_err());
    assert!(store.writes_stopped().is_some());
}

#[tokio::test]
async fn a_key_change_is_an_entry_signed_by_the_previous_key() {
    let (dir, store, ops, id) = store_with_crisis().await;
    store.add_log_entry(&id, LogKind::Information, "avant", &ops, t("2026-11-23T09:00:00Z")).await.unwrap();
    let new = SigningKey::from_bytes(&[5; 32]);
    let seq = store.rotate_key(&new, crate::By::System, t("2026-11-23T09:30:00Z")).await.unwrap();
    let path = dir.path().join("s.db");
    store.close().await;
    // replid restarts with the new key: it appends and signs on.
    let after = Store::open_with(&path, Some(Checkpointing::new(new.clone(), 50))).await.unwrap();
    after.add_log_entry(&id, LogKind::Information, "après", &ops, t("2026-11-23T10:00:00Z")).await.unwrap();
    let old = SigningKey::from_bytes(&KEY).verifying_key();
    // An auditor who pinned only the previous key follows the hand-over, whole or from start.
    for since_last in [false, true] {
        after.verify_audit_trusted(&[KeyPin::Key(old)], since_last).await.unwrap();
    }
    assert_eq!(after.signed_head().await.unwrap().unwrap().public_key, hex::encode(new.verifying_key().to_bytes()));
    // Pinning only the new key does not vouch for what the previous one signed before.
    assert!(after.verify_audit_trusted(&[KeyPin::Key(new.verifying_key())], false).await.is_err());
    after.close().await;
    // A hand-over forged by someone without the previous key (signed by the new key itself)
    // hands over nothing.
    let mut c = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_update").execute(&mut c).await.unwrap();
    let r = sqlx::query("SELECT * FROM audit_log WHERE seq = ?").bind(seq).fetch_one(&mut c).await.unwrap();
    let e = crate::audit::entry_from_row(&r).unwrap();
    let forged = repli_core::audit::KeyChange::sign(&new, &new.verifying_key(), seq, &e.prev_hash);
    sqlx::query("UPDATE audit_log SET details = ? WHERE seq = ?")
        .bind(serde_json::to_string(&forged).unwrap())
        .bind(seq)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let read = Store::open_read_only(&path).await.unwrap();
    let err = read.verify_audit_trusted(&[KeyPin::Key(old)], false).await.unwrap_err();
    assert!(err.to_string().contains("changes the audit key") || err.to_string().contains("content"), "{err}");
}

/// A tenant's Graph pace refused by a full disk is an error, leaves nothing half kept (row
/// without its audit entry, or the reverse), and is kept at the next attempt once space is back.
#[tokio::test]
async fn a_graph_pace_refused_by_a_full_disk_is_kept_at_the_next_attempt() {
    use repli_core::m365::GraphPace;
    let (_dir, store, _ops, _id) = store_with_crisis().await;
    let pace = GraphPace { limit_per_second: Some(40), ..GraphPace::default() };
    let now = t("2026-11-23T09:00:00Z");
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    fill(&store).await;
    for i in 0..40 {
        // Tenant ids long enough to need new pages.
        let tenant = format!("{i}-{}", "x".repeat(3000));
        match store.keep_graph_pace(&tenant, pace, now).await {
            Ok(changed) => {
                assert!(changed);
                kept.push(tenant);
            }
            Err(StoreError::Storage { fault: StorageFault::Full, .. }) => {
                refused.push(tenant);
                if refused.len() < 3 {
                    fill(&store).await;
                }
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(!refused.is_empty(), "the injected full disk refused nothing");
    for tenant in &kept {
        assert_eq!(store.graph_pace(tenant).await.unwrap(), Some(pace));
    }
    for tenant in &refused {
        assert_eq!(store.graph_pace(tenant).await.unwrap(), None, "nothing half kept");
    }
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'service.graph_pace'")
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert_eq!(entries as usize, kept.len(), "one audit entry per pace kept, none for a refused one");
    // Space is back: the next attempt keeps it.
    assert!(store.keep_graph_pace(&refused[0], pace, now).await.unwrap());
    assert_eq!(store.graph_pace(&refused[0]).await.unwrap(), Some(pace));
}
