//! Snapshots an ops team can trust: taken while replid serves, refused at restore when their
//! audit chain does not verify.
//!
//! A snapshot is a folder:
//!
//! ```text
//! manifest.json            format, when, which version, the audit head it holds
//! repli.db                 the database (SQLite `VACUUM INTO`: one consistent read)
//! documents/               each crisis's procedures pack (`<database>.documents`)
//! audit-public-key.txt     the public half of the checkpoint signing key (hex)
//! ```
//!
//! The signing key itself is **not** in it: a snapshot leaves the host, and whoever holds the
//! key can sign checkpoints. Keep the key where secrets are kept; a restore needs it back
//! (`--audit-key`), and refuses another key, since the restored daemon would then sign new
//! checkpoints that the chain's first ones contradict.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use repli_config::Config;
use repli_core::audit::parse_public_key;
use repli_store::{By, Record, Store};
use serde::{Deserialize, Serialize};

use crate::audit_key;

pub const FORMAT: &str = "repli-snapshot-v1";
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "repli.db";
const DOCUMENTS: &str = "documents";
const PUBLIC_KEY: &str = "audit-public-key.txt";

/// What a snapshot holds, written beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub taken_at: Timestamp,
    pub replid_version: String,
    /// The audit head in the snapshot: its last entry.
    pub audit_last_seq: i64,
    pub audit_last_hash: String,
    /// The checkpoint signing key's public half (hex), when a checkpoint was signed.
    pub public_key: Option<String>,
    pub documents: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: a snapshot goes to a new folder")]
    DestinationExists(PathBuf),
    #[error("{0} is not a Repli snapshot (no readable manifest.json): {1}")]
    NotASnapshot(PathBuf, String),
    #[error("snapshot format {0:?} is not {FORMAT:?}")]
    Format(String),
    #[error(
        "the database {0} already exists: restore onto a fresh host, or move the database and its documents away first"
    )]
    TargetExists(PathBuf),
    #[error("the snapshot's audit chain does not verify, it is refused: {0}")]
    ChainRefused(String),
    #[error("the snapshot does not hold what its manifest says: {0}")]
    Mismatch(String),
    #[error(
        "the snapshot's checkpoints are signed by key {expected}; {found}. Put its signing key back (--audit-key FILE, from where you keep it)"
    )]
    KeyRequired { expected: String, found: String },
    #[error("audit key: {0}")]
    Key(#[from] audit_key::KeyError),
    #[error("{what} {path}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] repli_store::StoreError),
    #[error("cannot encode the manifest: {0}")]
    Manifest(#[source] serde_json::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { what, path: path.to_owned(), source }
}

/// Takes a snapshot of the running application's database into `dest` (a folder that must not
/// exist), recorded in its audit log by `by`.
pub async fn snapshot(s: &crate::Services, dest: &Path, by: By<'_>) -> Result<Manifest, BackupError> {
    take(&s.store, &s.config, dest, by, s.clock.now()).await
}

/// Takes a snapshot of the live `store` into `dest` (a folder that must not exist). The
/// snapshot is recorded in the audit log first, so the snapshot holds its own record.
pub(crate) async fn take(
    store: &Store,
    config: &Config,
    dest: &Path,
    by: By<'_>,
    now: Timestamp,
) -> Result<Manifest, BackupError> {
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    create_private_dir(dest)?;
    let record = Record {
        commune: None,
        crisis: None,
        action: repli_core::AuditAction::ServiceBackup,
        target: dest.display().to_string(),
        details: serde_json::json!({ "format": FORMAT }),
    };
    store.record(&[record], by, now).await?;
    let db = dest.join(DATABASE);
    store.snapshot_into(&db).await?;
    restrict(&db)?;
    let documents = copy_tree(&crate::documents::documents_path(config), &dest.join(DOCUMENTS))?;
    // What the snapshot holds, read back from it: the manifest describes the file, not the
    // live database, which has moved on since.
    let snap = Store::open_read_only(&db).await?;
    let verified = snap.verify_audit(None).await.map_err(|e| BackupError::ChainRefused(e.to_string()));
    let signed_by = snap.checkpoints().await?.first().map(|c| c.public_key.clone());
    snap.close().await;
    let summary = verified?;
    // The daemon's key: it signed the checkpoints so far and signs the next ones.
    let public_key = store.checkpoint_public_key().or(signed_by);
    let manifest = Manifest {
        format: FORMAT.into(),
        taken_at: now,
        replid_version: env!("CARGO_PKG_VERSION").into(),
        audit_last_seq: summary.last_seq,
        audit_last_hash: summary.last_hash,
        public_key: public_key.clone(),
        documents,
    };
    if let Some(key) = &public_key {
        write(&dest.join(PUBLIC_KEY), format!("{key}\n").as_bytes())?;
    }
    // A snapshot without its manifest cannot be restored: never write an empty one.
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(BackupError::Manifest)?;
    write(&dest.join(MANIFEST), &bytes)?;
    Ok(manifest)
}

/// Reads a snapshot's manifest.
pub fn manifest(snapshot: &Path) -> Result<Manifest, BackupError> {
    let path = snapshot.join(MANIFEST);
    // A manifest is a few hundred bytes: a larger file is not one (and is not read whole).
    let size =
        std::fs::metadata(&path).map_err(|e| BackupError::NotASnapshot(snapshot.to_owned(), e.to_string()))?.len();
    if size > 64 * 1024 {
        return Err(BackupError::NotASnapshot(snapshot.to_owned(), format!("manifest.json is {size} bytes")));
    }
    let text = std::fs::read(&path).map_err(|e| BackupError::NotASnapshot(snapshot.to_owned(), e.to_string()))?;
    let m: Manifest =
        serde_json::from_slice(&text).map_err(|e| BackupError::NotASnapshot(snapshot.to_owned(), e.to_string()))?;
    if m.format != FORMAT {
        return Err(BackupError::Format(m.format));
    }
    Ok(m)
}

/// Checks a snapshot without restoring it: its manifest, its audit chain against its own
/// public key (every entry, every checkpoint's signature), and that the chain ends where the
/// manifest says.
pub async fn check(snapshot: &Path) -> Result<Manifest, BackupError> {
    let m = manifest(snapshot)?;
    let db = snapshot.join(DATABASE);
    if !db.is_file() {
        return Err(BackupError::Mismatch(format!("{} is missing", db.display())));
    }
    let key = match &m.public_key {
        Some(hex) => Some(
            parse_public_key(hex).ok_or_else(|| BackupError::Mismatch(format!("public key {hex:?} is not a key")))?,
        ),
        None => None,
    };
    let snap = Store::open_read_only(&db).await?;
    let checkpoints = snap.checkpoints().await;
    let verified = snap.verify_audit(key.as_ref()).await;
    snap.close().await;
    if key.is_none() && !checkpoints?.is_empty() {
        return Err(BackupError::Mismatch("the database has signed checkpoints, the manifest no public key".into()));
    }
    let summary = verified.map_err(|e| BackupError::ChainRefused(e.to_string()))?;
    if (summary.last_seq, summary.last_hash.as_str()) != (m.audit_last_seq, m.audit_last_hash.as_str()) {
        return Err(BackupError::Mismatch(format!(
            "the chain ends at {} ({}), the manifest says {} ({})",
            summary.last_seq, summary.last_hash, m.audit_last_seq, m.audit_last_hash
        )));
    }
    Ok(m)
}

/// Restores a checked snapshot where `config` puts the database, its documents and the audit
/// key, on a host without a database. `audit_key` is the signing key kept apart from the
/// snapshot; without it, a key already at the configured path must be the snapshot's.
pub async fn restore(
    snapshot: &Path,
    config: &Config,
    audit_key: Option<&Path>,
    by: By<'_>,
    now: Timestamp,
) -> Result<Manifest, BackupError> {
    let target = &config.database.path;
    if target.exists() {
        return Err(BackupError::TargetExists(target.clone()));
    }
    let m = check(snapshot).await?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    }
    let key_path = config.audit_key_path();
    if let Some(expected) = &m.public_key {
        let source = audit_key.unwrap_or(&key_path);
        let found = match std::fs::read_to_string(source) {
            Ok(_) => {
                let key = audit_key::load_or_create(source)?;
                let hex = hex::encode(key.verifying_key().to_bytes());
                if hex == *expected { None } else { Some(format!("{} holds key {hex}", source.display())) }
            }
            Err(_) => Some(format!("there is no key at {}", source.display())),
        };
        if let Some(found) = found {
            return Err(BackupError::KeyRequired { expected: expected.clone(), found });
        }
        if let Some(from) = audit_key
            && from != key_path
        {
            if key_path.exists() {
                return Err(BackupError::KeyRequired {
                    expected: expected.clone(),
                    found: format!("another key is already at {}", key_path.display()),
                });
            }
            let bytes = std::fs::read(from).map_err(io("cannot read", from))?;
            write(&key_path, &bytes)?;
        }
    }
    let docs = crate::documents::documents_path(config);
    if docs.exists() {
        return Err(BackupError::TargetExists(docs));
    }
    copy_tree(&snapshot.join(DOCUMENTS), &docs)?;
    // The database last, under a temporary name then renamed: a restore cut short leaves no
    // database that looks whole.
    let mut partial = target.clone().into_os_string();
    partial.push(".restoring");
    let partial = PathBuf::from(partial);
    std::fs::copy(snapshot.join(DATABASE), &partial).map_err(io("cannot write", &partial))?;
    restrict(&partial)?;
    std::fs::rename(&partial, target).map_err(io("cannot rename", &partial))?;
    // The restore is audited in the restored chain, signed with the restored key.
    let store = crate::open_store(config, now).await.map_err(|e| BackupError::Mismatch(e.to_string()))?;
    let record = Record {
        commune: None,
        crisis: None,
        action: repli_core::AuditAction::ServiceRestore,
        target: snapshot.display().to_string(),
        details: serde_json::json!({
            "taken_at": m.taken_at.to_string(),
            "audit_last_seq": m.audit_last_seq,
        }),
    };
    let recorded = store.record(&[record], by, now).await;
    store.close().await;
    recorded?;
    Ok(m)
}

fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("cannot protect", dir))?;
    }
    Ok(())
}

/// Owner-only: the database holds contact details and the key signs the audit.
fn restrict(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("cannot protect", path))?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io("cannot create", path))?;
    std::io::Write::write_all(&mut f, bytes).map_err(io("cannot write", path))?;
    f.sync_all().map_err(io("cannot sync", path))
}

/// Copies the regular files under `from` into `to` (created); a missing `from` copies nothing.
/// Symbolic links are not followed. Returns the number of files copied.
fn copy_tree(from: &Path, to: &Path) -> Result<usize, BackupError> {
    create_private_dir(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(BackupError::Io { what: "cannot read", path: from.to_owned(), source: e }),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(io("cannot read", from))?;
        let kind = entry.file_type().map_err(io("cannot read", &entry.path()))?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            n += copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).map_err(io("cannot copy", &entry.path()))?;
            n += 1;
        }
    }
    Ok(n)
}
