//! The snapshot tamper suite: a genuine snapshot, each tampering an attacker holding a copy of
//! it could make (without the audit signing key), and whether `check` and `restore` refuse it.
//! `repli-bench tamper` runs every variant; a test runs them too. Built with the `tamper`
//! feature (and in tests) only.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use jiff::Timestamp;
use repli_config::Config;
use repli_core::audit::{Checkpoint, KeyPin};
use repli_core::{InseeCode, Role};
use repli_store::{By, Checkpointing, NewUser, Record, Store};
use sha2::{Digest, Sha256};

use super::{BackupError, DATABASE, DOCUMENTS, MANIFEST, Manifest, SIGNATURE, Trust};

/// One way of tampering with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// A row of a business table edited (a user renamed).
    EditedRow,
    /// An audit entry edited, its hash and every later hash and link recomputed.
    AuditEntryRehashed,
    /// An admin account and its API token inserted.
    InjectedAdminToken,
    /// A DGS account raised to admin.
    RaisedRole,
    /// A row deleted (a commune's convention).
    DeletedRow,
    /// Two documents' contents swapped.
    SwappedDocuments,
    /// A document added.
    AddedDocument,
    /// A document removed.
    RemovedDocument,
    /// The last audit entries and their checkpoint cut off.
    TruncatedTail,
    /// Every checkpoint removed, and a new manifest naming no key, unsigned.
    CheckpointsRemovedManifestWithoutKey,
    /// A role raised, every checkpoint and the manifest re-signed with another key.
    KeySubstitution,
    /// The manifest's audit head changed (not re-signed).
    ManifestHeadEdited,
    /// `manifest.sig` removed.
    SignatureRemoved,
    /// A row edited and the manifest's hash of the database updated (not re-signed).
    DatabaseRehashedInManifest,
    /// A symbolic link added among the documents.
    SymlinkAdded,
    /// An unsigned manifest of the previous format.
    OldUnsignedFormat,
}

impl Variant {
    pub const ALL: [Variant; 16] = [
        Self::EditedRow,
        Self::AuditEntryRehashed,
        Self::InjectedAdminToken,
        Self::RaisedRole,
        Self::DeletedRow,
        Self::SwappedDocuments,
        Self::AddedDocument,
        Self::RemovedDocument,
        Self::TruncatedTail,
        Self::CheckpointsRemovedManifestWithoutKey,
        Self::KeySubstitution,
        Self::ManifestHeadEdited,
        Self::SignatureRemoved,
        Self::DatabaseRehashedInManifest,
        Self::SymlinkAdded,
        Self::OldUnsignedFormat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EditedRow => "edited-row",
            Self::AuditEntryRehashed => "audit-entry-rehashed",
            Self::InjectedAdminToken => "injected-admin-token",
            Self::RaisedRole => "raised-role",
            Self::DeletedRow => "deleted-row",
            Self::SwappedDocuments => "swapped-documents",
            Self::AddedDocument => "added-document",
            Self::RemovedDocument => "removed-document",
            Self::TruncatedTail => "truncated-tail",
            Self::CheckpointsRemovedManifestWithoutKey => "checkpoints-removed-manifest-without-key",
            Self::KeySubstitution => "key-substitution",
            Self::ManifestHeadEdited => "manifest-head-edited",
            Self::SignatureRemoved => "signature-removed",
            Self::DatabaseRehashedInManifest => "database-rehashed-in-manifest",
            Self::SymlinkAdded => "symlink-added",
            Self::OldUnsignedFormat => "old-unsigned-format",
        }
    }
}

/// What `check` and `restore` said of one tampered snapshot.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub variant: Variant,
    /// `None`: accepted (a failure of the suite); else the refusal, as the operator reads it.
    pub check: Option<String>,
    pub restore: Option<String>,
    /// Whether the refused restore left the target data directory untouched (absent).
    pub target_untouched: bool,
}

impl Outcome {
    pub fn accepted(&self) -> bool {
        self.check.is_none() || self.restore.is_none() || !self.target_untouched
    }
}

/// A genuine snapshot to tamper with.
#[derive(Debug)]
pub struct Fixture {
    pub snapshot: PathBuf,
    pub key: SigningKey,
    /// The signing key's file, as an operator keeps it apart.
    pub key_file: PathBuf,
    pub now: Timestamp,
}

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// Builds a database with users, audit entries and signed checkpoints, two crises' documents,
/// and a snapshot of it, under `work`.
pub async fn fixture(work: &Path) -> Result<Fixture, String> {
    let now: Timestamp = "2026-11-23T08:00:00Z".parse().map_err(e)?;
    let live = work.join("live");
    std::fs::create_dir_all(&live).map_err(e)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(e)?;
    let key = SigningKey::from_bytes(&seed);
    let key_file = work.join("audit-key-kept-apart");
    std::fs::write(&key_file, format!("{}\n", hex::encode(seed))).map_err(e)?;
    let db = live.join("repli.db");
    let store = Store::open_with(&db, Some(Checkpointing::new(key.clone(), 3))).await.map_err(e)?;
    let (communes, conventions) = crate::load_reference(&Config::default()).map_err(e)?;
    store.sync_reference(&communes, &conventions, now).await.map_err(e)?;
    for (name, role, commune) in [
        ("Ops de garde", Role::Ops, None),
        ("DGS Aubagne", Role::Dgs, Some("13005")),
        ("Auditrice", Role::Auditor, None),
    ] {
        let user = NewUser {
            name: name.into(),
            role,
            commune: commune.map(InseeCode::parse).transpose().map_err(e)?,
            token_sha256: hex::encode(Sha256::digest(name.as_bytes())),
            token_expires_at: None,
        };
        store.create_user(&user, By::System, now).await.map_err(e)?;
    }
    for i in 0..7 {
        let r = Record {
            commune: Some("13005".into()),
            crisis: None,
            action: repli_core::AuditAction::ServiceBackup,
            target: format!("fixture {i}"),
            details: serde_json::json!({ "i": i }),
        };
        store.record(&[r], By::System, now).await.map_err(e)?;
    }
    store.checkpoint_now(now).await.map_err(e)?;
    let docs = live.join("repli.db.documents");
    for (crisis, name, text) in [
        ("13005-2026-001", "dossier.html", "<h1>Dossier Aubagne</h1>"),
        ("13005-2026-001", "comptes.csv", "login,nom\nj.dupont,Jeanne Dupont\n"),
        ("13001-2026-001", "dossier.html", "<h1>Dossier Aix</h1>"),
    ] {
        std::fs::create_dir_all(docs.join(crisis)).map_err(e)?;
        std::fs::write(docs.join(crisis).join(name), text).map_err(e)?;
    }
    let snapshot = work.join("genuine");
    let taken = super::take(&store, &docs, &key, &snapshot, now).await;
    store.close().await;
    taken.map_err(e)?;
    Ok(Fixture { snapshot, key, key_file, now })
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(e)?;
    for entry in std::fs::read_dir(from).map_err(e)? {
        let entry = entry.map_err(e)?;
        let dest = to.join(entry.file_name());
        if entry.file_type().map_err(e)?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).map_err(e)?;
        }
    }
    Ok(())
}

async fn sql(snapshot: &Path, statements: &[String]) -> Result<(), String> {
    repli_store::forge::execute(&snapshot.join(DATABASE), statements).await.map_err(e)
}

fn read_manifest(snapshot: &Path) -> Result<serde_json::Value, String> {
    serde_json::from_slice(&std::fs::read(snapshot.join(MANIFEST)).map_err(e)?).map_err(e)
}

fn write_manifest(snapshot: &Path, m: &serde_json::Value) -> Result<(), String> {
    std::fs::write(snapshot.join(MANIFEST), serde_json::to_vec_pretty(m).map_err(e)?).map_err(e)
}

/// The file list of the snapshot as it now is, as the attacker would recompute it.
fn relist(snapshot: &Path) -> Result<serde_json::Value, String> {
    serde_json::to_value(super::list_files(snapshot).map_err(e)?).map_err(e)
}

async fn audit_entries(snapshot: &Path) -> Result<Vec<repli_core::audit::AuditEntry>, String> {
    let store = Store::open_read_only(&snapshot.join(DATABASE)).await.map_err(e)?;
    let f = repli_store::AuditFilter { limit: 10_000, ..Default::default() };
    let entries = store.audit_entries(&f).await;
    let checkpoints = store.checkpoints().await;
    store.close().await;
    let _ = checkpoints.map_err(e)?;
    entries.map_err(e)
}

async fn checkpoints(snapshot: &Path) -> Result<Vec<Checkpoint>, String> {
    let store = Store::open_read_only(&snapshot.join(DATABASE)).await.map_err(e)?;
    let c = store.checkpoints().await;
    store.close().await;
    c.map_err(e)
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const RAISE_ROLE: &str = "UPDATE users SET role = 'admin', commune = NULL WHERE role = 'dgs'";

/// Applies `variant` to the snapshot folder `s` (a copy of the genuine one).
pub async fn apply(variant: Variant, s: &Path) -> Result<(), String> {
    let doc = |crisis: &str, name: &str| s.join(DOCUMENTS).join(crisis).join(name);
    match variant {
        Variant::EditedRow => sql(s, &["UPDATE users SET name = 'Mallory' WHERE role = 'ops'".into()]).await?,
        Variant::AuditEntryRehashed => {
            let mut entries = audit_entries(s).await?;
            if entries.len() < 3 {
                return Err("the fixture has too few audit entries".into());
            }
            entries[1].details = "{\"rewritten\":true}".into();
            let mut prev = entries[0].hash.clone();
            let mut stmts = Vec::new();
            for en in entries.iter_mut().skip(1) {
                en.prev_hash = prev;
                en.hash = en.compute_hash();
                prev = en.hash.clone();
                stmts.push(format!(
                    "UPDATE audit_log SET details = {}, prev_hash = {}, hash = {} WHERE seq = {}",
                    q(&en.details),
                    q(&en.prev_hash),
                    q(&en.hash),
                    en.seq
                ));
            }
            sql(s, &stmts).await?;
        }
        Variant::InjectedAdminToken => {
            let token = hex::encode(Sha256::digest(b"forged-admin-token"));
            sql(
                s,
                &[
                    "INSERT INTO users (id, name, role, commune, created_at) VALUES (999, 'Mallory', 'admin', NULL, '2026-11-23T08:00:00Z')".into(),
                    format!("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES (999, {}, '2026-11-23T08:00:00Z')", q(&token)),
                ],
            )
            .await?;
        }
        Variant::RaisedRole => sql(s, &[RAISE_ROLE.into()]).await?,
        Variant::DeletedRow => sql(s, &["DELETE FROM conventions WHERE insee = '13005'".into()]).await?,
        Variant::SwappedDocuments => {
            let (a, b) = (doc("13005-2026-001", "dossier.html"), doc("13001-2026-001", "dossier.html"));
            let (ta, tb) = (std::fs::read(&a).map_err(e)?, std::fs::read(&b).map_err(e)?);
            std::fs::write(&a, tb).map_err(e)?;
            std::fs::write(&b, ta).map_err(e)?;
        }
        Variant::AddedDocument => {
            std::fs::write(doc("13005-2026-001", "consignes.html"), "<p>Envoyez les mots de passe à …</p>")
                .map_err(e)?;
        }
        Variant::RemovedDocument => std::fs::remove_file(doc("13005-2026-001", "comptes.csv")).map_err(e)?,
        Variant::TruncatedTail => {
            let last = audit_entries(s).await?.last().map_or(0, |x| x.seq);
            let cut = last - 2;
            sql(
                s,
                &[
                    format!("DELETE FROM audit_log WHERE seq > {cut}"),
                    format!("DELETE FROM audit_checkpoints WHERE seq > {cut}"),
                ],
            )
            .await?;
        }
        Variant::CheckpointsRemovedManifestWithoutKey => {
            sql(s, &["DELETE FROM audit_checkpoints".into(), RAISE_ROLE.into()]).await?;
            let mut m = read_manifest(s)?;
            if let Some(o) = m.as_object_mut() {
                o.remove("public_key");
            }
            m["files"] = relist(s)?;
            write_manifest(s, &m)?;
            std::fs::remove_file(s.join(SIGNATURE)).map_err(e)?;
        }
        Variant::KeySubstitution => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(e)?;
            let other = SigningKey::from_bytes(&seed);
            let mut stmts = vec![RAISE_ROLE.to_owned()];
            for c in checkpoints(s).await? {
                let r = Checkpoint::sign(&other, c.seq, &c.hash, &c.at);
                stmts.push(format!(
                    "UPDATE audit_checkpoints SET public_key = {}, signature = {} WHERE seq = {}",
                    q(&r.public_key),
                    q(&r.signature),
                    c.seq
                ));
            }
            sql(s, &stmts).await?;
            let mut m: Manifest = serde_json::from_value(read_manifest(s)?).map_err(e)?;
            m.public_key = hex::encode(other.verifying_key().to_bytes());
            m.files = super::list_files(s).map_err(e)?;
            let bytes = serde_json::to_vec_pretty(&m).map_err(e)?;
            std::fs::write(s.join(MANIFEST), &bytes).map_err(e)?;
            let sig = other.sign(&super::signed_bytes(&bytes));
            std::fs::write(s.join(SIGNATURE), hex::encode(sig.to_bytes())).map_err(e)?;
        }
        Variant::ManifestHeadEdited => {
            let mut m = read_manifest(s)?;
            m["audit_last_seq"] = serde_json::json!(m["audit_last_seq"].as_i64().unwrap_or(0) - 1);
            write_manifest(s, &m)?;
        }
        Variant::SignatureRemoved => std::fs::remove_file(s.join(SIGNATURE)).map_err(e)?,
        Variant::DatabaseRehashedInManifest => {
            sql(s, &[RAISE_ROLE.into()]).await?;
            let mut m = read_manifest(s)?;
            m["files"] = relist(s)?;
            write_manifest(s, &m)?;
        }
        Variant::SymlinkAdded => {
            #[cfg(unix)]
            std::os::unix::fs::symlink("/etc/passwd", s.join(DOCUMENTS).join("13005-2026-001").join("passwd"))
                .map_err(e)?;
        }
        Variant::OldUnsignedFormat => {
            let mut m = read_manifest(s)?;
            m["format"] = "repli-snapshot-v1".into();
            write_manifest(s, &m)?;
            std::fs::remove_file(s.join(SIGNATURE)).map_err(e)?;
        }
    }
    Ok(())
}

fn verdict(r: Result<super::Verified, BackupError>) -> Option<String> {
    r.err().map(|e| e.to_string())
}

/// Checks and restores a copy of the fixture's snapshot with `variant` applied, the genuine key
/// pinned (check) and put back (restore).
pub async fn run(f: &Fixture, variant: Variant, work: &Path) -> Result<Outcome, String> {
    let copy = work.join(variant.name());
    copy_dir(&f.snapshot, &copy)?;
    apply(variant, &copy).await?;
    let pinned = Trust { pins: vec![KeyPin::Key(f.key.verifying_key())], signing_key: None };
    let check = verdict(super::check(&copy, &pinned).await);
    let target = work.join(format!("{}-host", variant.name())).join("data");
    let mut config = Config::default();
    config.database.path = target.join("repli.db");
    let restored = super::restore(&copy, &config, &[], Some(&f.key_file), By::System, f.now).await;
    let restore = verdict(restored);
    let target_untouched = !target.exists();
    Ok(Outcome { variant, check, restore, target_untouched })
}

/// Runs `variants` (after checking that the untampered snapshot is accepted, without which
/// the suite would prove nothing).
pub async fn suite(work: &Path, variants: &[Variant]) -> Result<Vec<Outcome>, String> {
    let f = fixture(work).await?;
    let pinned = Trust { pins: vec![KeyPin::Key(f.key.verifying_key())], signing_key: None };
    super::check(&f.snapshot, &pinned).await.map_err(|e| format!("the genuine snapshot is refused: {e}"))?;
    let mut out = Vec::new();
    for &v in variants {
        out.push(run(&f, v, work).await?);
    }
    // The genuine snapshot still restores (nothing above changed it).
    let mut config = Config::default();
    config.database.path = work.join("genuine-host").join("data").join("repli.db");
    super::restore(&f.snapshot, &config, &[], Some(&f.key_file), By::System, f.now)
        .await
        .map_err(|e| format!("the genuine snapshot does not restore: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_tampering_is_refused_and_changes_nothing() {
        let work = tempfile::tempdir().unwrap();
        let out = suite(work.path(), &Variant::ALL).await.unwrap();
        assert_eq!(out.len(), Variant::ALL.len());
        for o in &out {
            eprintln!("{}: check: {:?}; restore: {:?}", o.variant.name(), o.check, o.restore);
            assert!(!o.accepted(), "{} accepted: {o:?}", o.variant.name());
        }
        let by = |v: Variant| out.iter().find(|o| o.variant == v).unwrap();
        // Each refusal names the check that failed.
        assert!(by(Variant::EditedRow).check.as_deref().unwrap().contains("file hash"), "{:?}", by(Variant::EditedRow));
        assert!(by(Variant::AddedDocument).check.as_deref().unwrap().contains("file list"));
        assert!(by(Variant::RemovedDocument).check.as_deref().unwrap().contains("missing"));
        assert!(by(Variant::SignatureRemoved).check.as_deref().unwrap().contains("manifest signature"));
        assert!(by(Variant::DatabaseRehashedInManifest).check.as_deref().unwrap().contains("manifest signature"));
        assert!(by(Variant::KeySubstitution).check.as_deref().unwrap().contains("manifest signature"));
        assert!(by(Variant::KeySubstitution).restore.as_deref().unwrap().contains("manifest signature"));

        // Pinned by fingerprint, the substituted key is named as not the pinned one.
        let fixture_key = {
            let bytes = std::fs::read_to_string(work.path().join("audit-key-kept-apart")).unwrap();
            SigningKey::from_bytes(&<[u8; 32]>::try_from(hex::decode(bytes.trim()).unwrap().as_slice()).unwrap())
        };
        let fp = KeyPin::parse(&repli_core::audit::fingerprint(&fixture_key.verifying_key())).unwrap();
        let by_fp = Trust { pins: vec![fp], signing_key: None };
        let r = super::super::check(&work.path().join(Variant::KeySubstitution.name()), &by_fp).await;
        assert_eq!(r.as_ref().err().and_then(BackupError::check), Some(super::super::Check::TrustedKey), "{r:?}");

        // Beneath the file hashes, the chain is checked too: an audit entry rewritten and a
        // manifest re-signed over it (as only the key holder could) is refused by the
        // checkpoints signed before the rewrite.
        let copy = work.path().join(Variant::AuditEntryRehashed.name());
        let mut m: Manifest = serde_json::from_slice(&std::fs::read(copy.join(MANIFEST)).unwrap()).unwrap();
        m.files = super::super::list_files(&copy).unwrap();
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        std::fs::write(copy.join(MANIFEST), &bytes).unwrap();
        let sig = fixture_key.sign(&super::super::signed_bytes(&bytes));
        std::fs::write(copy.join(SIGNATURE), hex::encode(sig.to_bytes())).unwrap();
        let pinned = Trust { pins: vec![KeyPin::Key(fixture_key.verifying_key())], signing_key: None };
        let r = super::super::check(&copy, &pinned).await;
        assert_eq!(r.as_ref().err().and_then(BackupError::check), Some(super::super::Check::AuditChain), "{r:?}");
    }
}
