//! Snapshots an ops team can trust: taken while replid serves without ever holding its writer,
//! signed with the audit key, and refused at restore, naming the failed check, unless every
//! byte is what the signed manifest says.
//!
//! A snapshot is a folder:
//!
//! ```text
//! manifest.json   format, when, which version, the audit head, the key, every file's size and SHA-256
//! manifest.sig    Ed25519 signature of "repli-snapshot-manifest-v2\n" ‖ manifest.json, audit key
//! repli.db        the database (SQLite `VACUUM INTO` on a read connection: one consistent read)
//! documents/      each crisis's procedures pack (`<database>.documents`)
//! ```
//!
//! The signing key itself is **not** in it: a snapshot leaves the host, and whoever holds the
//! key can sign. The restore takes the key to trust from the operator (`--public-key`, a
//! fingerprint, `audit.trusted_keys`), never from the snapshot, and the signing key to put back
//! (`--audit-key`): a restored replid never makes a new one.
//!
//! A snapshot is written under a temporary name (`.NAME.partial-PID`) beside its destination,
//! every file synced, then renamed: a folder named like a snapshot is always a whole one.

#[cfg(any(test, feature = "tamper"))]
pub mod tamper;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use jiff::Timestamp;
use repli_config::Config;
use repli_core::audit::{ChainError, KeyPin, fingerprint, parse_public_key};
use repli_store::{By, Record, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit_key;

pub const FORMAT: &str = "repli-snapshot-v2";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const DATABASE: &str = "repli.db";
pub const DOCUMENTS: &str = "documents";
/// Prefixed to the manifest's bytes before signing: a manifest signature can never be taken
/// for a checkpoint's, nor the reverse.
const SIGNED_PREFIX: &[u8] = b"repli-snapshot-manifest-v2\n";
/// A manifest lists every file of a snapshot; beyond this many files it is not one of ours.
const MAX_FILES: usize = 100_000;
const MAX_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;
/// Scheduled snapshots' folder names start with this (then `YYYYMMDDTHHMMSSZ`).
pub const SCHEDULED_PREFIX: &str = "repli-";

/// One file of a snapshot, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the snapshot folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// What a snapshot holds, signed beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub taken_at: Timestamp,
    pub replid_version: String,
    /// The audit head in the snapshot: its last entry.
    pub audit_last_seq: i64,
    pub audit_last_hash: String,
    /// The audit key (hex) the manifest and the checkpoints are signed with. A claim only:
    /// the restore trusts the key the operator pins.
    pub public_key: String,
    /// Every file but the manifest and its signature, sorted by path.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// How many document files the snapshot holds.
    pub fn documents(&self) -> usize {
        self.files.iter().filter(|f| f.path.starts_with(&format!("{DOCUMENTS}/"))).count()
    }

    /// The fingerprint of the key the manifest names.
    pub fn key_fingerprint(&self) -> String {
        parse_public_key(&self.public_key).map_or_else(|| "(not a key)".to_owned(), |k| fingerprint(&k))
    }
}

/// The check a refused snapshot failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No key to trust, or the snapshot's key is not the pinned one.
    TrustedKey,
    /// `manifest.sig` missing or not a signature of `manifest.json` by the trusted key.
    ManifestSignature,
    /// A file the manifest lists is missing, or one it does not list is there.
    FileList,
    /// A file's size or SHA-256 is not the manifest's.
    FileHash,
    /// The audit chain does not verify (an entry edited, deleted, inserted…).
    AuditChain,
    /// A checkpoint's signature is not the trusted key's.
    Checkpoints,
    /// The chain does not end at the head the manifest signs.
    AuditHead,
    /// The signing key to put back is missing or is not the trusted key.
    SigningKey,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TrustedKey => "trusted key",
            Self::ManifestSignature => "manifest signature",
            Self::FileList => "file list",
            Self::FileHash => "file hash",
            Self::AuditChain => "audit chain",
            Self::Checkpoints => "checkpoint signatures",
            Self::AuditHead => "audit head",
            Self::SigningKey => "signing key",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: a snapshot goes to a new folder")]
    DestinationExists(PathBuf),
    #[error("{0} is not a Repli snapshot: {1}")]
    NotASnapshot(PathBuf, String),
    #[error("snapshot format {0:?} is not {FORMAT:?} (older snapshots are unsigned: not restorable)")]
    Format(String),
    #[error("{0} is not empty: restore into a new or empty data directory")]
    TargetExists(PathBuf),
    #[error("refused, {check} check failed: {detail}")]
    Refused { check: Check, detail: String },
    #[error("audit key: {0}")]
    Key(#[from] audit_key::KeyError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the manifest: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error("cannot open the restored database: {0}")]
    Open(String),
}

impl BackupError {
    /// The check that refused the snapshot, if it was refused (not an I/O failure).
    pub fn check(&self) -> Option<Check> {
        match self {
            Self::Refused { check, .. } => Some(*check),
            _ => None,
        }
    }
}

pub(crate) fn refused(check: Check, detail: impl Into<String>) -> BackupError {
    BackupError::Refused { check, detail: detail.into() }
}

pub(crate) fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { what, path: path.to_owned(), source }
}

// ---------------------------------------------------------------------------------------------
// Taking a snapshot

/// Takes a snapshot of the running application into `dest` (a folder that must not exist),
/// recorded in its audit log by `by` first, so the snapshot holds its own record. The daemon's
/// writer is held only for that one entry; the copy is a read.
pub async fn snapshot(s: &crate::Services, dest: &Path, by: By<'_>) -> Result<Manifest, BackupError> {
    let key = audit_key::load(&s.config.audit_key_path())?;
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    let now = s.clock.now();
    let record = Record {
        commune: None,
        crisis: None,
        action: repli_core::AuditAction::ServiceBackup,
        target: dest.display().to_string(),
        details: serde_json::json!({ "format": FORMAT }),
    };
    s.store.record(&[record], by, now).await?;
    take(&s.store, &crate::documents::documents_path(&s.config), &key, dest, now).await
}

/// Takes a snapshot of the database at `config` without writing to it (`replid backup` on the
/// host, beside a running daemon): the file is opened read-only, so the daemon's writes never
/// wait for it; the snapshot is not recorded in the audit log (nothing is written there), its
/// signed manifest is the record.
pub async fn snapshot_offline(config: &Config, dest: &Path, now: Timestamp) -> Result<Manifest, BackupError> {
    let key = audit_key::load(&config.audit_key_path())?;
    let store = Store::open_read_only(&config.database.path).await?;
    let out = take(&store, &crate::documents::documents_path(config), &key, dest, now).await;
    store.close().await;
    out
}

/// Takes a scheduled snapshot into `backup.destination` (a new `repli-YYYYMMDDTHHMMSSZ`
/// folder) and removes the oldest beyond `backup.keep`. `None` when no destination is set.
pub async fn scheduled(s: &crate::Services) -> Result<Option<(PathBuf, Manifest)>, BackupError> {
    let Some(dir) = s.config.backup.destination.clone() else {
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let now = s.clock.now();
    let dest = dir.join(format!("{SCHEDULED_PREFIX}{}", now.strftime("%Y%m%dT%H%M%SZ")));
    let m = snapshot(s, &dest, By::System).await?;
    prune(&dir, s.config.backup.keep as usize)?;
    Ok(Some((dest, m)))
}

/// Takes a scheduled snapshot every `backup.interval_minutes` (the first at start) while
/// `backup.destination` is set; a failure is logged and counted (`/metrics`), and the next
/// round tries again.
pub async fn schedule(s: crate::Services) {
    if s.config.backup.destination.is_none() {
        return;
    }
    let period = std::time::Duration::from_secs(60 * u64::from(s.config.backup.interval_minutes));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let span = tracing::info_span!("scheduled_backup");
        match tracing::Instrument::instrument(scheduled(&s), span).await {
            Ok(Some((dest, m))) => {
                s.telemetry.backup(Some(m.taken_at));
                tracing::info!(dest = %dest.display(), audit_head = m.audit_last_seq, files = m.files.len(), "scheduled snapshot taken");
            }
            Ok(None) => return,
            Err(e) => {
                s.telemetry.backup(None);
                tracing::error!(error = %e, "scheduled snapshot failed");
            }
        }
    }
}

/// Keeps the newest `keep` scheduled snapshots in `dir` (by name, which is their time) and
/// removes the older ones and any temporary folder a stopped snapshot left.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut whole = Vec::new();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("cannot read", dir))? {
        let entry = entry.map_err(io("cannot read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !entry.file_type().map_err(io("cannot read", &path))?.is_dir() {
            continue;
        }
        if name.starts_with(&format!(".{SCHEDULED_PREFIX}")) && name.contains(".partial-") {
            std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
            removed.push(path);
        } else if name.starts_with(SCHEDULED_PREFIX) && path.join(MANIFEST).is_file() {
            whole.push(path);
        }
    }
    whole.sort();
    let extra = whole.len().saturating_sub(keep.max(1));
    for path in whole.into_iter().take(extra) {
        std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
        removed.push(path);
    }
    Ok(removed)
}

/// Writes the snapshot under a temporary name beside `dest`, then renames it: whatever fails,
/// no folder named `dest` exists that is not a whole snapshot.
async fn take(
    store: &Store,
    documents: &Path,
    key: &SigningKey,
    dest: &Path,
    now: Timestamp,
) -> Result<Manifest, BackupError> {
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    let name = dest.file_name().ok_or_else(|| BackupError::NotASnapshot(dest.to_owned(), "no folder name".into()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
    let staging = parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("cannot remove", &staging))?;
    }
    let out = write_snapshot(store, documents, key, &staging, now).await;
    let out = out.and_then(|m| {
        if dest.exists() {
            return Err(BackupError::DestinationExists(dest.to_owned()));
        }
        std::fs::rename(&staging, dest).map_err(io("cannot rename", &staging))?;
        sync_dir(&parent)?;
        Ok(m)
    });
    if out.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    out
}

async fn write_snapshot(
    store: &Store,
    documents: &Path,
    key: &SigningKey,
    dir: &Path,
    now: Timestamp,
) -> Result<Manifest, BackupError> {
    create_private_dir(dir)?;
    let db = dir.join(DATABASE);
    store.snapshot_into(&db).await?;
    restrict(&db)?;
    sync_file(&db)?;
    copy_tree(documents, &dir.join(DOCUMENTS))?;
    // The head the manifest signs is read back from the file: the live database has moved on.
    let vk = key.verifying_key();
    let snap = Store::open_read_only(&db).await?;
    // Checkpoints and the signed head against the key that signs the manifest: a tail changed
    // behind replid is not signed into a snapshot.
    let verified = snap.verify_audit_trusted(&[repli_core::audit::KeyPin::Key(vk)], false).await;
    snap.close().await;
    let summary = verified.map_err(|e| chain_refused(&e))?;
    let manifest = Manifest {
        format: FORMAT.into(),
        taken_at: now,
        replid_version: env!("CARGO_PKG_VERSION").into(),
        audit_last_seq: summary.last_seq,
        audit_last_hash: summary.last_hash,
        public_key: hex::encode(vk.to_bytes()),
        files: list_files(dir)?,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(BackupError::Manifest)?;
    let sig = key.sign(&signed_bytes(&bytes));
    write_new(&dir.join(MANIFEST), &bytes)?;
    write_new(&dir.join(SIGNATURE), format!("{}\n", hex::encode(sig.to_bytes())).as_bytes())?;
    sync_dir(dir)?;
    Ok(manifest)
}

fn signed_bytes(manifest: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(SIGNED_PREFIX.len() + manifest.len());
    b.extend_from_slice(SIGNED_PREFIX);
    b.extend_from_slice(manifest);
    b
}

/// Every regular file under `root` but the manifest and its signature, with its size and hash.
/// Anything else (a symbolic link, a socket) is refused: a snapshot holds files only.
fn list_files(root: &Path) -> Result<Vec<FileEntry>, BackupError> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io("cannot read", dir))? {
        let entry = entry.map_err(io("cannot read", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("cannot read", &path))?;
        let rel = relative(root, &path);
        if dir == root && (rel == MANIFEST || rel == SIGNATURE) {
            continue;
        }
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let (size, sha256) = hash_file(&path)?;
            out.push(FileEntry { path: rel, size, sha256 });
        } else {
            return Err(refused(Check::FileList, format!("{rel} is not a regular file")));
        }
        if out.len() > MAX_FILES {
            return Err(refused(Check::FileList, format!("more than {MAX_FILES} files")));
        }
    }
    Ok(())
}

pub(crate) fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io("cannot read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

fn chain_refused(e: &StoreError) -> BackupError {
    match e {
        StoreError::Chain(c @ ChainError::BadCheckpoint { .. }) => refused(Check::Checkpoints, c.to_string()),
        StoreError::Chain(c) => refused(Check::AuditChain, c.to_string()),
        e => refused(Check::AuditChain, format!("the database cannot be read: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking and restoring

/// The keys the operator trusts: pinned keys or fingerprints (`--public-key`,
/// `audit.trusted_keys`), and the signing key they put back, whose public half is trusted when
/// nothing is pinned (it comes from where they keep it, not from the snapshot).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub pins: Vec<KeyPin>,
    pub signing_key: Option<VerifyingKey>,
}

impl Trust {
    /// The key that must have signed a snapshot whose manifest names `claimed` (hex).
    pub(crate) fn resolve(&self, claimed: &str) -> Result<VerifyingKey, BackupError> {
        let claimed = parse_public_key(claimed);
        if self.pins.is_empty() {
            return self.signing_key.ok_or_else(|| {
                refused(
                    Check::TrustedKey,
                    "no key to trust: give --public-key (the key, its file or its SHA256: fingerprint), \
                     set audit.trusted_keys, or give the signing key with --audit-key",
                )
            });
        }
        let candidates = self.pins.iter().filter_map(KeyPin::key).copied().chain(claimed).chain(self.signing_key);
        for k in candidates {
            if self.pins.iter().any(|p| p.accepts(&k)) {
                return Ok(k);
            }
        }
        let pinned = self.pins.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        Err(refused(
            Check::TrustedKey,
            format!(
                "the snapshot names key {}, which is not a pinned key ({pinned})",
                claimed.map_or_else(|| "(none)".to_owned(), |k| fingerprint(&k))
            ),
        ))
    }
}

/// Parses `--public-key`: a hex key, a `SHA256:` fingerprint, or a file holding either.
pub fn parse_key_arg(arg: &str) -> Result<KeyPin, String> {
    if let Ok(pin) = KeyPin::parse(arg) {
        return Ok(pin);
    }
    let path = Path::new(arg);
    let meta = std::fs::metadata(path).map_err(|e| format!("{arg:?} is not a key, a fingerprint or a file: {e}"))?;
    if meta.len() > 4096 {
        return Err(format!("{arg}: {} bytes, not a public key file", meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{arg}: {e}"))?;
    KeyPin::parse(&text).map_err(|e| format!("{arg}: {e}"))
}

/// A snapshot that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// The key it is signed with (the trusted one).
    pub key: VerifyingKey,
}

pub(crate) fn read_capped(path: &Path, max: u64, snapshot: &Path) -> Result<Vec<u8>, BackupError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| BackupError::NotASnapshot(snapshot.to_owned(), format!("{}: {e}", relative(snapshot, path))))?;
    if !meta.is_file() || meta.len() > max {
        return Err(BackupError::NotASnapshot(
            snapshot.to_owned(),
            format!("{} is not a file of at most {max} bytes", relative(snapshot, path)),
        ));
    }
    std::fs::read(path).map_err(io("cannot read", path))
}

/// Reads the manifest and checks its signature against the trusted key: nothing of the
/// manifest is believed before that.
fn signed_manifest(snapshot: &Path, trust: &Trust) -> Result<Verified, BackupError> {
    let bytes = read_capped(&snapshot.join(MANIFEST), MAX_MANIFEST_BYTES, snapshot)?;
    // The claimed key only picks among pinned fingerprints; the signature decides.
    #[derive(Deserialize)]
    struct Claim {
        format: String,
        #[serde(default)]
        public_key: Option<String>,
    }
    let claim: Claim =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::NotASnapshot(snapshot.to_owned(), e.to_string()))?;
    if claim.format != FORMAT {
        return Err(BackupError::Format(claim.format));
    }
    let key = trust.resolve(claim.public_key.as_deref().unwrap_or(""))?;
    let sig_path = snapshot.join(SIGNATURE);
    let sig_text = match std::fs::symlink_metadata(&sig_path) {
        Ok(m) if m.is_file() && m.len() <= 1024 => {
            std::fs::read_to_string(&sig_path).map_err(io("cannot read", &sig_path))?
        }
        _ => return Err(refused(Check::ManifestSignature, format!("{SIGNATURE} is missing"))),
    };
    let sig = hex::decode(sig_text.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| refused(Check::ManifestSignature, format!("{SIGNATURE} is not a signature")))?;
    key.verify_strict(&signed_bytes(&bytes), &Signature::from_bytes(&sig)).map_err(|_| {
        refused(Check::ManifestSignature, format!("{MANIFEST} is not signed by the trusted key {}", fingerprint(&key)))
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::NotASnapshot(snapshot.to_owned(), e.to_string()))?;
    if parse_public_key(&manifest.public_key) != Some(key) {
        return Err(refused(Check::TrustedKey, "the manifest names another key than the one that signed it"));
    }
    for f in &manifest.files {
        let p = Path::new(&f.path);
        if f.path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refused(
                Check::FileList,
                format!("the manifest lists {:?}, not a path inside the snapshot", f.path),
            ));
        }
    }
    if !manifest.files.iter().any(|f| f.path == DATABASE) {
        return Err(refused(Check::FileList, format!("the manifest lists no {DATABASE}")));
    }
    Ok(Verified { manifest, key })
}

/// The files under `root` are exactly the manifest's: none missing, none added.
fn check_file_list(root: &Path, m: &Manifest) -> Result<(), BackupError> {
    let mut found = Vec::new();
    list_names(root, root, &mut found, &|rel: &str| rel == MANIFEST || rel == SIGNATURE, MAX_FILES)?;
    let listed: BTreeMap<&str, ()> = m.files.iter().map(|f| (f.path.as_str(), ())).collect();
    if let Some(extra) = found.iter().find(|p| !listed.contains_key(p.as_str())) {
        return Err(refused(Check::FileList, format!("{extra} is not in the manifest (added)")));
    }
    let found: BTreeMap<&str, ()> = found.iter().map(|p| (p.as_str(), ())).collect();
    if let Some(missing) = m.files.iter().find(|f| !found.contains_key(f.path.as_str())) {
        return Err(refused(Check::FileList, format!("{} is missing", missing.path)));
    }
    Ok(())
}

/// The names of every regular file under `root` (not hashed), relative and `/`-separated, but
/// those `skip` names at the top; anything else (a link, a socket) is refused, and so are more
/// than `max` files.
pub(crate) fn list_names(
    root: &Path,
    dir: &Path,
    out: &mut Vec<String>,
    skip: &dyn Fn(&str) -> bool,
    max: usize,
) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io("cannot read", dir))? {
        let entry = entry.map_err(io("cannot read", dir))?;
        let path = entry.path();
        let rel = relative(root, &path);
        if dir == root && skip(&rel) {
            continue;
        }
        let kind = entry.file_type().map_err(io("cannot read", &path))?;
        if kind.is_dir() {
            list_names(root, &path, out, skip, max)?;
        } else if kind.is_file() {
            out.push(rel);
        } else {
            return Err(refused(Check::FileList, format!("{rel} is not a regular file (added)")));
        }
        if out.len() > max {
            return Err(refused(Check::FileList, format!("more than {max} files")));
        }
    }
    Ok(())
}

fn check_hashes(root: &Path, m: &Manifest) -> Result<(), BackupError> {
    for f in &m.files {
        let path = root.join(&f.path);
        let size = std::fs::symlink_metadata(&path).map_err(io("cannot read", &path))?.len();
        if size != f.size {
            return Err(refused(Check::FileHash, format!("{} is {size} bytes, the manifest says {}", f.path, f.size)));
        }
        let (_, sha) = hash_file(&path)?;
        if !sha.eq_ignore_ascii_case(&f.sha256) {
            return Err(refused(Check::FileHash, format!("{}: SHA-256 {sha}, the manifest says {}", f.path, f.sha256)));
        }
    }
    Ok(())
}

/// The whole chain against the trusted key (every entry, every checkpoint's signature), ending
/// at the head the manifest signs.
async fn check_chain(db: &Path, v: &Verified) -> Result<(), BackupError> {
    let snap = Store::open_read_only(db).await?;
    let verified = snap.verify_audit_trusted(&[repli_core::audit::KeyPin::Key(v.key)], false).await;
    snap.close().await;
    let summary = verified.map_err(|e| chain_refused(&e))?;
    let m = &v.manifest;
    if (summary.last_seq, summary.last_hash.as_str()) != (m.audit_last_seq, m.audit_last_hash.as_str()) {
        return Err(refused(
            Check::AuditHead,
            format!(
                "the chain ends at {} ({}), the signed manifest says {} ({})",
                summary.last_seq, summary.last_hash, m.audit_last_seq, m.audit_last_hash
            ),
        ));
    }
    Ok(())
}

/// Checks a snapshot in place without restoring it: the manifest's signature by the trusted
/// key, the file list, every file's hash, the audit chain and its checkpoints, the head.
pub async fn check(snapshot: &Path, trust: &Trust) -> Result<Verified, BackupError> {
    let v = signed_manifest(snapshot, trust)?;
    check_file_list(snapshot, &v.manifest)?;
    check_hashes(snapshot, &v.manifest)?;
    check_chain(&snapshot.join(DATABASE), &v).await?;
    Ok(v)
}

/// The trust a host's configuration and the operator's arguments give: `public_keys` and
/// `audit.trusted_keys` pinned, and the signing key at `audit_key` (or the configured key
/// path) when nothing is pinned.
pub fn trust(config: &Config, public_keys: &[KeyPin], audit_key: Option<&Path>) -> Result<Trust, BackupError> {
    let mut pins = public_keys.to_vec();
    pins.extend(config.trusted_audit_keys());
    let path = audit_key.map_or_else(|| config.audit_key_path(), Path::to_owned);
    let signing_key = match audit_key::load(&path) {
        Ok(k) => Some(k.verifying_key()),
        Err(audit_key::KeyError::Missing { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Trust { pins, signing_key })
}

/// Restores a snapshot into the data directory `config` names (the database's folder, with
/// its documents and, by default, the audit key), which must not exist or be empty.
///
/// Every check of [`check`] runs on the copies being restored, and the signing key put back
/// (`audit_key`, or the one already at the configured path) must be the trusted one: a
/// restored replid signs with the key that signed the chain, never a new one. The copies are
/// staged beside the data directory and renamed into place once all is checked and the
/// restore is recorded in the restored chain: a refused restore changes nothing.
pub async fn restore(
    snapshot: &Path,
    config: &Config,
    public_keys: &[KeyPin],
    audit_key: Option<&Path>,
    by: By<'_>,
    now: Timestamp,
) -> Result<Verified, BackupError> {
    let db_path = std::path::absolute(&config.database.path).map_err(io("cannot resolve", &config.database.path))?;
    let data_dir = db_path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("/"));
    let db_name = db_path.file_name().map(ToOwned::to_owned).unwrap_or_else(|| DATABASE.into());
    if data_dir.exists() && std::fs::read_dir(&data_dir).map_err(io("cannot read", &data_dir))?.next().is_some() {
        return Err(BackupError::TargetExists(data_dir));
    }
    let key_path = std::path::absolute(config.audit_key_path()).map_err(io("cannot resolve", &data_dir))?;
    let key_source = audit_key.map_or_else(|| key_path.clone(), Path::to_owned);
    let signing = match audit_key::load(&key_source) {
        Ok(k) => k,
        Err(audit_key::KeyError::Missing { .. }) => {
            return Err(refused(
                Check::SigningKey,
                format!(
                    "there is no audit signing key at {}: give the one kept apart with --audit-key (replid never makes a new key for a restored database)",
                    key_source.display()
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let trust = trust(config, public_keys, Some(&key_source))?;
    let v = signed_manifest(snapshot, &trust)?;
    if signing.verifying_key() != v.key {
        return Err(refused(
            Check::SigningKey,
            format!(
                "{} holds key {}, the snapshot is signed by {}: put its signing key back",
                key_source.display(),
                fingerprint(&signing.verifying_key()),
                fingerprint(&v.key)
            ),
        ));
    }
    check_file_list(snapshot, &v.manifest)?;
    let key_in_dir = key_path.parent() == Some(data_dir.as_path());
    if !key_in_dir && key_path.exists() && key_source != key_path {
        return Err(refused(Check::SigningKey, format!("another key is already at {}", key_path.display())));
    }

    let parent = data_dir.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("/"));
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
    let dir_name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = parent.join(format!(".{dir_name}.restoring-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("cannot remove", &staging))?;
    }
    let out = stage(snapshot, config, &v, &signing, &staging, &db_name, key_in_dir.then_some(&key_path), by, now).await;
    let out =
        out.and_then(|()| switch(&staging, &data_dir, &parent, (!key_in_dir).then_some((&key_source, &key_path))));
    if out.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    out.map(|()| v)
}

/// Copies the snapshot's files into `staging`, checks the copies, puts the key beside them and
/// records the restore in the restored chain.
#[allow(clippy::too_many_arguments)]
async fn stage(
    snapshot: &Path,
    config: &Config,
    v: &Verified,
    signing: &SigningKey,
    staging: &Path,
    db_name: &std::ffi::OsStr,
    key_in_dir: Option<&PathBuf>,
    by: By<'_>,
    now: Timestamp,
) -> Result<(), BackupError> {
    create_private_dir(staging)?;
    let copies = staging.join(".snapshot");
    create_private_dir(&copies)?;
    for f in &v.manifest.files {
        let from = snapshot.join(&f.path);
        let to = copies.join(&f.path);
        if let Some(dir) = to.parent() {
            create_private_dir(dir)?;
        }
        std::fs::copy(&from, &to).map_err(io("cannot copy", &from))?;
        restrict(&to)?;
    }
    // Checked on the copies, so a snapshot changed while it is read is not restored.
    check_hashes(&copies, &v.manifest)?;
    check_chain(&copies.join(DATABASE), v).await?;

    let db = staging.join(db_name);
    std::fs::rename(copies.join(DATABASE), &db).map_err(io("cannot rename", &db))?;
    let mut docs_name = db_name.to_owned();
    docs_name.push(".documents");
    let docs = staging.join(docs_name);
    let from_docs = copies.join(DOCUMENTS);
    if from_docs.exists() {
        std::fs::rename(&from_docs, &docs).map_err(io("cannot rename", &from_docs))?;
    } else {
        create_private_dir(&docs)?;
    }
    std::fs::remove_dir_all(&copies).map_err(io("cannot remove", &copies))?;
    let mut staged = config.clone();
    staged.database.path = db.clone();
    let staged_key = match key_in_dir.and_then(|p| p.file_name()) {
        Some(name) => staging.join(name),
        None => staging.join(".audit-key"),
    };
    write_new(&staged_key, format!("{}\n", hex::encode(signing.to_bytes())).as_bytes())?;
    staged.audit.key_file = Some(staged_key.clone());
    // The restore is audited in the restored chain, signed with the restored key.
    let store = crate::open_store(&staged, now).await.map_err(|e| BackupError::Open(e.to_string()))?;
    let record = Record {
        commune: None,
        crisis: None,
        action: repli_core::AuditAction::ServiceRestore,
        target: snapshot.display().to_string(),
        details: serde_json::json!({
            "taken_at": v.manifest.taken_at.to_string(),
            "audit_last_seq": v.manifest.audit_last_seq,
            "audit_last_hash": v.manifest.audit_last_hash,
            "key": fingerprint(&v.key),
        }),
    };
    let recorded = store.record(&[record], by, now).await;
    let signed = match recorded {
        Ok(_) => store.checkpoint_now(now).await.map(|_| ()),
        Err(e) => Err(e),
    };
    store.close().await;
    signed?;
    if key_in_dir.is_none() {
        std::fs::remove_file(&staged_key).map_err(io("cannot remove", &staged_key))?;
    }
    sync_tree(staging)
}

/// Renames the staged directory into place (the one step others see), after the key when it
/// lives outside the data directory.
fn switch(
    staging: &Path,
    data_dir: &Path,
    parent: &Path,
    outside_key: Option<(&PathBuf, &PathBuf)>,
) -> Result<(), BackupError> {
    let mut written_key = None;
    if let Some((from, to)) = outside_key
        && from != to
    {
        let bytes = std::fs::read(from).map_err(io("cannot read", from))?;
        write_new(to, &bytes)?;
        written_key = Some(to.clone());
    }
    let renamed = (|| {
        if data_dir.exists() {
            // Checked empty above; `remove_dir` refuses a folder that filled up since.
            std::fs::remove_dir(data_dir).map_err(io("cannot replace", data_dir))?;
        }
        std::fs::rename(staging, data_dir).map_err(io("cannot rename", staging))?;
        sync_dir(parent)
    })();
    if renamed.is_err()
        && let Some(k) = written_key
    {
        let _ = std::fs::remove_file(k);
    }
    renamed
}

// ---------------------------------------------------------------------------------------------
// Files

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("cannot protect", dir))?;
    }
    Ok(())
}

/// Owner-only: the database holds contact details.
pub(crate) fn restrict(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("cannot protect", path))?;
    }
    Ok(())
}

pub(crate) fn sync_file(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io("cannot sync", path))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io("cannot sync", dir))
}

/// Syncs every file and folder under `dir`, then `dir`.
fn sync_tree(dir: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io("cannot read", dir))? {
        let entry = entry.map_err(io("cannot read", dir))?;
        let kind = entry.file_type().map_err(io("cannot read", &entry.path()))?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            sync_file(&entry.path())?;
        }
    }
    sync_dir(dir)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
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

/// Copies the regular files under `from` into `to` (created), each synced; a missing `from`
/// copies nothing. Symbolic links are not followed.
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
            restrict(&dest)?;
            sync_file(&dest)?;
            n += 1;
        }
    }
    sync_dir(to)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_whole_snapshots_and_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["repli-20261123T080000Z", "repli-20261123T090000Z", "repli-20261123T100000Z"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join(MANIFEST), "{}").unwrap();
        }
        // A folder without a manifest is not a snapshot (and not counted), a stopped one's
        // temporary folder goes, anything else is left alone.
        std::fs::create_dir(dir.path().join("repli-20261123T110000Z")).unwrap();
        std::fs::create_dir(dir.path().join(".repli-20261123T120000Z.partial-42")).unwrap();
        std::fs::create_dir(dir.path().join("archives")).unwrap();
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["archives", "repli-20261123T090000Z", "repli-20261123T100000Z", "repli-20261123T110000Z"]);
    }

    #[test]
    fn a_public_key_argument_is_a_key_a_fingerprint_or_a_file_of_either() {
        let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let hex_key = hex::encode(key.to_bytes());
        assert!(parse_key_arg(&hex_key).unwrap().accepts(&key));
        assert!(parse_key_arg(&fingerprint(&key)).unwrap().accepts(&key));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.pub");
        std::fs::write(&file, format!("{hex_key}\n")).unwrap();
        assert!(parse_key_arg(file.to_str().unwrap()).unwrap().accepts(&key));
        std::fs::write(&file, "not a key").unwrap();
        assert!(parse_key_arg(file.to_str().unwrap()).is_err());
        std::fs::write(&file, vec![b'a'; 10_000]).unwrap();
        assert!(parse_key_arg(file.to_str().unwrap()).is_err());
        assert!(parse_key_arg("/nonexistent/key").is_err());
    }

    #[test]
    fn nothing_to_trust_is_refused_and_a_pin_picks_the_key() {
        let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        let claim = hex::encode(key.to_bytes());
        let none = Trust::default().resolve(&claim);
        assert_eq!(none.err().and_then(|e| e.check()), Some(Check::TrustedKey));
        let by_fp = Trust { pins: vec![KeyPin::parse(&fingerprint(&key)).unwrap()], signing_key: None };
        assert_eq!(by_fp.resolve(&claim).unwrap(), key);
        // The claim cannot choose a key the pins do not accept.
        let wrong = Trust { pins: vec![KeyPin::Key(other)], signing_key: Some(key) };
        assert_eq!(wrong.resolve(&claim).unwrap(), other);
        let wrong_fp = Trust { pins: vec![KeyPin::parse(&fingerprint(&other)).unwrap()], signing_key: Some(key) };
        assert_eq!(wrong_fp.resolve(&claim).err().and_then(|e| e.check()), Some(Check::TrustedKey));
    }
}
