//! The data hand-back: the commune gets its crisis mail and files back, proven complete.
//!
//! The `m365.export` step lists what the kit holds through Graph and streams each item into
//! the crisis's archive folder, `<database>.handback/<crisis>/`:
//!
//! ```text
//! messages/<account>/<folders>/<subject>-<id hash>.eml
//! fichiers/<account or equipe>/<folders>/<name>
//! manifest.json   every item: archive path, original path, Graph id, last modified, size,
//!                 SHA-256, status (exported, gone, too large, failed)
//! manifest.sig    Ed25519 signature of "repli-handback-manifest-v1\n" ‖ manifest.json (audit key)
//! ```
//!
//! Each item is written to a temporary file in `<database>.handback/.work/<crisis>/`, synced,
//! hashed as it is written, renamed into the archive, the folder synced, and only then appended
//! to the journal there (one synced line per item). A killed export resumes from the journal:
//! what it lists is not fetched again, and the same item gets the same name. The manifest is
//! signed with the audit key, checked against the files as any verifier would, its SHA-256
//! recorded in the audit log (`handback.exported`), and the archive packed into one zip (no
//! compression, deterministic) for the DGS's download: `<database>.handback/<crisis>.zip`.
//!
//! Verification ([`verify_archive`]) takes the key from the verifier (`--public-key`, pinned
//! keys), never from the archive, and refuses a changed, added or missing file, and a manifest
//! signed by another key.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use futures_util::StreamExt;
use repli_core::CrisisId;
use repli_core::audit::{KeyPin, fingerprint, parse_public_key};
use repli_core::handback::{
    EntryStatus, FORMAT, MANIFEST, Manifest, ManifestEntry, SIGNATURE, archive_paths, original_path, signed_bytes,
};
use repli_core::m365::{Error as M365Error, ExportItem, Fetched, ItemSink, M365};
use repli_core::run::Exported;
use repli_store::{By, Record};
use sha2::{Digest, Sha256};

use crate::Services;
use crate::backup::{
    BackupError, Check, Trust, create_private_dir, hash_file, io, list_names, read_capped, refused, relative, sync_dir,
};

const JOURNAL: &str = "journal.jsonl";
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// A manifest lists at most this many items.
const MAX_ENTRIES: usize = 2_000_000;

/// How the export runs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Items larger than this are listed as too large, not fetched.
    pub max_item_bytes: u64,
    /// Items fetched at once (the tenant's gate paces them).
    pub concurrency: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { max_item_bytes: 20 * 1024 * 1024 * 1024, concurrency: 8 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandbackError {
    /// Listing failed (a permission missing, Graph unreachable within the budget).
    #[error(transparent)]
    M365(#[from] M365Error),
    #[error(transparent)]
    Archive(#[from] BackupError),
    #[error("store: {0}")]
    Store(#[from] repli_store::StoreError),
    /// The archive is written and signed but does not hold everything: the deletion waits.
    #[error(
        "export incomplet : {not_exported} élément(s) non exporté(s) sur {items} (par exemple : {examples}). Le manifeste signé les liste ; corriger la cause puis relancer l'étape, ou la passer avec un motif (dérogation de l'exploitation)."
    )]
    Incomplete {
        items: usize,
        not_exported: usize,
        examples: String,
        /// Every failure may pass on its own (throttling, an outage): the step runs again later.
        transient: bool,
    },
    #[error("crise {0} introuvable")]
    NoCrisis(String),
}

impl HandbackError {
    /// Whether running the export again later may succeed. Throttling and outages (429, 503,
    /// 504, 424, the network: retried within the client's budget first), the disk and the
    /// database: yes. A refusal (403: a permission to grant), an invalid request (400), a
    /// mailbox or drive gone (404): no — the step fails and says why, until ops fix the cause
    /// and retry it, or waive it with a reason.
    pub fn is_transient(&self) -> bool {
        match self {
            HandbackError::M365(e) => export_transient(e),
            HandbackError::Archive(_) | HandbackError::Store(_) => true,
            HandbackError::Incomplete { transient, .. } => *transient,
            HandbackError::NoCrisis(_) => false,
        }
    }
}

/// Whether Graph's error `e` during the export may pass on its own. As for any call
/// (`M365Error::is_transient`), but a 404 is not replication lag here — the export reads
/// objects that exist for days: the mailbox or drive is gone or disabled (a licence removed) —
/// and a 424 (a dependency failed) is.
pub fn export_transient(e: &M365Error) -> bool {
    match e {
        M365Error::Graph { status: 404, .. } => false,
        M365Error::Graph { status: 424, .. } => true,
        e => e.is_transient(),
    }
}

/// Why an item was not fetched, for the step's outcome (its manifest entry says it too).
#[derive(Debug)]
enum ItemFault {
    /// May pass on its own: a later attempt fetches it.
    Transient,
    /// Retrying cannot help (an invalid request, a download URL refused).
    Permanent,
    /// Graph refused the app (403): a permission to grant.
    Refused(M365Error),
}

/// `<database>.handback`: every crisis's archive.
pub fn handback_path(config: &repli_config::Config) -> PathBuf {
    let db = &config.database.path;
    let mut name = db.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".handback");
    db.with_file_name(name)
}

/// The crisis's archive folder.
pub fn archive_dir(config: &repli_config::Config, crisis: &CrisisId) -> PathBuf {
    handback_path(config).join(crisis.as_str())
}

/// The crisis's archive as one zip, for download and removable media.
pub fn archive_zip(config: &repli_config::Config, crisis: &CrisisId) -> PathBuf {
    handback_path(config).join(format!("{}.zip", crisis.as_str()))
}

/// A temporary file being filled, hashed as it is written.
struct FileSink {
    file: std::fs::File,
    hasher: Sha256,
    written: u64,
}

impl ItemSink for FileSink {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk)?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }
    fn written(&self) -> u64 {
        self.written
    }
    fn restart(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }
}

/// The journal of items already in the archive (by Graph id): synced line by line.
fn read_journal(path: &Path, archive: &Path) -> BTreeMap<String, ManifestEntry> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    let mut done = BTreeMap::new();
    // A line cut by a crash does not parse: that item is fetched again.
    for e in text.lines().filter_map(|l| serde_json::from_str::<ManifestEntry>(l).ok()) {
        // What the disk says wins: a file missing or of another size is fetched again.
        let on_disk = std::fs::symlink_metadata(archive.join(&e.path)).ok().filter(|m| m.is_file()).map(|m| m.len());
        if e.status == EntryStatus::Exported && on_disk == Some(e.size) {
            done.insert(e.graph_id.clone(), e);
        }
    }
    done
}

fn journal_append(journal: &Mutex<std::fs::File>, e: &ManifestEntry) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = journal.lock().map_err(|_| std::io::Error::other("journal lock poisoned"))?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Fetches one item into the archive: temporary file, synced, hashed, renamed, folder synced,
/// then the journal line. Never fails: what went wrong is the entry's status, and its fault.
async fn fetch_one(
    m365: &dyn M365,
    item: &ExportItem,
    path: &str,
    archive: &Path,
    tmp_dir: &Path,
    journal: &Arc<Mutex<std::fs::File>>,
    max: u64,
) -> (ManifestEntry, Option<ItemFault>) {
    enum Failure {
        M365(M365Error),
        Io(std::io::Error),
    }
    let mut entry = ManifestEntry {
        path: path.to_string(),
        original: original_path(item),
        kind: item.kind,
        graph_id: item.graph_id.clone(),
        last_modified: item.last_modified.clone(),
        size: item.size.unwrap_or(0),
        sha256: None,
        status: EntryStatus::Exported,
    };
    let tmp = tmp_dir.join(format!("{}.part", hex::encode(&Sha256::digest(item.graph_id.as_bytes())[..12])));
    let result: Result<(EntryStatus, u64, Option<String>), Failure> = async {
        let file =
            std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&tmp).map_err(Failure::Io)?;
        let mut sink = FileSink { file, hasher: Sha256::new(), written: 0 };
        let fetched = m365.fetch_item(item, max, &mut sink).await.map_err(Failure::M365)?;
        match fetched {
            Fetched::Complete { bytes } => {
                let sha = hex::encode(sink.hasher.finalize());
                let dest = archive.join(path);
                let parent = dest.parent().unwrap_or(archive).to_owned();
                let (file, tmp) = (sink.file, tmp.clone());
                // The syncs wait for the disk: off the runtime's threads, so other items'
                // transfers go on meanwhile.
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    file.sync_all()?;
                    std::fs::create_dir_all(&parent)?;
                    std::fs::rename(&tmp, &dest)?;
                    std::fs::File::open(&parent)?.sync_all()
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(Failure::Io)?;
                Ok((EntryStatus::Exported, bytes, Some(sha)))
            }
            Fetched::Gone => Ok((EntryStatus::Gone, entry.size, None)),
            Fetched::TooLarge { size } => Ok((EntryStatus::TooLarge, size, None)),
        }
    }
    .await;
    let mut fault = None;
    match result {
        Ok((status, size, sha)) => {
            entry.status = status;
            entry.size = size;
            entry.sha256 = sha;
            let line = entry.clone();
            let journal = Arc::clone(journal);
            if entry.status == EntryStatus::Exported
                && let Err(e) = tokio::task::spawn_blocking(move || journal_append(&journal, &line))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
            {
                // The file is there but not journaled: a resumed export fetches it again.
                tracing::warn!(error = %e, "hand-back journal not written");
            }
        }
        Err(failure) => {
            let (text, f) = match failure {
                Failure::Io(e) => (e.to_string(), ItemFault::Transient),
                Failure::M365(e @ M365Error::Forbidden { .. }) => (e.to_string(), ItemFault::Refused(e)),
                Failure::M365(e) if export_transient(&e) => (e.to_string(), ItemFault::Transient),
                Failure::M365(e) => (e.to_string(), ItemFault::Permanent),
            };
            entry.status = EntryStatus::Failed(text);
            entry.sha256 = None;
            fault = Some(f);
        }
    }
    let _ = std::fs::remove_file(&tmp);
    (entry, fault)
}

/// Whose data: the crisis, its backup domain (the accounts), its group's `mailNickname`.
#[derive(Debug, Clone, Copy)]
pub struct KitRef<'a> {
    pub crisis: &'a CrisisId,
    pub domain: &'a str,
    pub nickname: &'a str,
}

/// An archive written and signed (complete or not).
#[derive(Debug)]
pub struct Written {
    pub manifest: Manifest,
    /// SHA-256 of `manifest.json`, as the audit log records it.
    pub manifest_sha256: String,
    /// The archive's folder.
    pub archive: PathBuf,
    /// The zip, when the archive is complete.
    pub zip: Option<PathBuf>,
    /// Graph's first refusal (403) of an item, if any: a permission to grant.
    pub refusal: Option<M365Error>,
    /// Items whose failure retrying cannot cure (400, a download URL refused).
    pub permanent_failures: usize,
}

/// Exports the kit of `crisis` (accounts of `domain`, the Team of group `nickname`) into its
/// archive under `root` (`<root>/<crisis>/`, its work files in `<root>/.work/<crisis>/`),
/// resuming what an earlier attempt wrote; signs the manifest with `key`, checks the folder
/// against it with that key pinned, and packs the zip when complete. Nothing is recorded:
/// [`export`] audits it.
pub async fn write_archive(
    root: &Path,
    key: &ed25519_dalek::SigningKey,
    kit: &KitRef<'_>,
    m365: &dyn M365,
    options: &ExportOptions,
    now: jiff::Timestamp,
) -> Result<Written, HandbackError> {
    let KitRef { crisis, domain, nickname } = *kit;
    let archive = root.join(crisis.as_str());
    let work = root.join(".work").join(crisis.as_str());
    let tmp_dir = work.join("tmp");
    create_private_dir(root)?;
    create_private_dir(&archive)?;
    create_private_dir(&tmp_dir)?;
    let journal_path = work.join(JOURNAL);
    let done = read_journal(&journal_path, &archive);
    let journal = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io("cannot open", &journal_path))?,
    ));

    let inventory = m365.export_inventory(domain, nickname).await?;
    let taken: BTreeMap<String, String> = done.iter().map(|(id, e)| (id.clone(), e.path.clone())).collect();
    let paths = archive_paths(&inventory.items, &taken);
    tracing::info!(items = inventory.items.len(), already = done.len(), "hand-back export");

    let todo: Vec<usize> =
        (0..inventory.items.len()).filter(|&i| !done.contains_key(&inventory.items[i].graph_id)).collect();
    let (items, paths, archive_ref, tmp_ref, journal_ref) = (&inventory.items, &paths, &archive, &tmp_dir, &journal);
    let fetched: Vec<(ManifestEntry, Option<ItemFault>)> = futures_util::stream::iter(todo)
        .map(move |i| fetch_one(m365, &items[i], &paths[i], archive_ref, tmp_ref, journal_ref, options.max_item_bytes))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;

    // Every item once: those of this attempt, those of earlier ones (even if Graph no longer
    // lists them: the file was exported, it stays).
    let mut entries: BTreeMap<String, ManifestEntry> = done;
    let (mut refusal, mut permanent_failures) = (None, 0);
    for (e, fault) in fetched {
        match fault {
            Some(ItemFault::Refused(r)) => refusal = refusal.or(Some(r)),
            Some(ItemFault::Permanent) => permanent_failures += 1,
            Some(ItemFault::Transient) | None => {}
        }
        entries.insert(e.graph_id.clone(), e);
    }
    let mut entries: Vec<ManifestEntry> = entries.into_values().collect();
    entries.sort_by(|a, b| (&a.path, &a.graph_id).cmp(&(&b.path, &b.graph_id)));

    // A file in the archive no entry names was renamed in by an attempt killed before its
    // journal line, for an item Graph no longer lists: kept aside, named in the notes.
    let listed: BTreeSet<&str> =
        entries.iter().filter(|e| e.status == EntryStatus::Exported).map(|e| e.path.as_str()).collect();
    let mut on_disk = Vec::new();
    list_files(&archive, &archive, &mut on_disk)?;
    let mut notes = inventory.notes.clone();
    for orphan in on_disk.iter().filter(|p| !listed.contains(p.as_str())) {
        let aside = work.join("orphans").join(orphan);
        if let Some(parent) = aside.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        std::fs::rename(archive.join(orphan), &aside).map_err(io("cannot move", &aside))?;
        notes.push(format!(
            "Fichier d'une tentative interrompue, retiré de l'archive (élément disparu de Microsoft 365) : {orphan}"
        ));
    }

    let manifest = Manifest {
        format: FORMAT.into(),
        crisis: crisis.to_string(),
        domain: domain.to_string(),
        created_at: now.to_string(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        entries,
        notes,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(BackupError::Manifest)?;
    let sig = key.sign(&signed_bytes(&bytes));
    replace_file(&archive.join(SIGNATURE), format!("{}\n", hex::encode(sig.to_bytes())).as_bytes())?;
    replace_file(&archive.join(MANIFEST), &bytes)?;
    sync_dir(&archive)?;
    let manifest_sha256 = hex::encode(Sha256::digest(&bytes));

    // Checked as any verifier would, with the key pinned here.
    let trust = Trust { pins: vec![KeyPin::Key(key.verifying_key())], signing_key: None };
    verify_dir(&archive, &trust)?;

    let zip = root.join(format!("{}.zip", crisis.as_str()));
    let zip = if manifest.complete() {
        pack_zip(&archive, &manifest, &zip)?;
        Some(zip)
    } else {
        let _ = std::fs::remove_file(&zip);
        None
    };
    Ok(Written { manifest, manifest_sha256, archive, zip, refusal, permanent_failures })
}

/// The `m365.export` step: [`write_archive`] under `<database>.handback` with the audit key,
/// its manifest's SHA-256 written to the audit log (`handback.exported`, complete or not).
/// Complete (every item exported or known gone): the step's output. Otherwise, once the signed
/// manifest says which items and why: Graph's refusal of an item (403: a permission to grant),
/// or [`HandbackError::Incomplete`], transient unless a failure cannot pass on its own.
pub async fn export(
    s: &Services,
    crisis: &CrisisId,
    domain: &str,
    nickname: &str,
    m365: &dyn M365,
    options: &ExportOptions,
) -> Result<(Exported, Manifest), HandbackError> {
    let record = s.store.crisis(crisis).await?.ok_or_else(|| HandbackError::NoCrisis(crisis.to_string()))?;
    let key = crate::audit_key::load(&s.config.audit_key_path()).map_err(BackupError::from)?;
    let root = handback_path(&s.config);
    let now = s.clock.now();
    let w = write_archive(&root, &key, &KitRef { crisis, domain, nickname }, m365, options, now).await?;
    let Written { manifest, manifest_sha256, archive, zip: _, refusal, permanent_failures } = w;
    let (exported, bytes_out, not_exported) = manifest.tally();
    let complete = manifest.complete();
    s.store
        .record(
            &[Record {
                commune: Some(record.commune.to_string()),
                crisis: Some(crisis.to_string()),
                action: repli_core::AuditAction::HandbackExported,
                target: relative(&root, &archive),
                details: serde_json::json!({
                    "manifest_sha256": manifest_sha256,
                    "items": manifest.entries.len(),
                    "exported": exported,
                    "bytes": bytes_out,
                    "not_exported": not_exported,
                    "complete": complete,
                    "key": fingerprint(&key.verifying_key()),
                }),
            }],
            By::System,
            now,
        )
        .await?;
    if !complete {
        let examples = manifest
            .entries
            .iter()
            .filter(|e| !e.status.settled())
            .take(3)
            .map(|e| format!("{} ({})", e.original, e.status.fr()))
            .collect::<Vec<_>>()
            .join(" ; ");
        if let Some(refused) = refusal {
            return Err(HandbackError::M365(refused));
        }
        // Too large stays too large: no later attempt fetches it.
        let too_large = manifest.entries.iter().any(|e| e.status == EntryStatus::TooLarge);
        let transient = permanent_failures == 0 && !too_large;
        return Err(HandbackError::Incomplete { items: manifest.entries.len(), not_exported, examples, transient });
    }
    let out = Exported {
        archive: relative(&root, &archive),
        items: manifest.entries.len(),
        exported,
        bytes: bytes_out,
        manifest_sha256,
        channels: manifest
            .entries
            .iter()
            .filter(|e| e.kind == repli_core::m365::ExportKind::ChannelMessages && e.status == EntryStatus::Exported)
            .count(),
    };
    Ok((out, manifest))
}

/// Writes `bytes` under a temporary name beside `path`, synced, then renames it over `path`.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = path.with_extension("tmp-write");
    let mut f = std::fs::File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.write_all(bytes).map_err(io("cannot write", &tmp))?;
    f.sync_all().map_err(io("cannot sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("cannot rename", &tmp))
}

/// The archive as one zip: the manifest and its signature first, then every exported file in
/// the manifest's order, stored (not compressed: it is read and checked as it is), under its
/// archive path. Written to a temporary name, synced, renamed.
fn pack_zip(archive: &Path, manifest: &Manifest, dest: &Path) -> Result<(), BackupError> {
    use zip::write::SimpleFileOptions;
    let tmp = dest.with_extension("zip.partial");
    let file = std::fs::File::create(&tmp).map_err(io("cannot create", &tmp))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true)
        .last_modified_time(zip::DateTime::default());
    let names = [MANIFEST.to_string(), SIGNATURE.to_string()];
    let files = manifest.entries.iter().filter(|e| e.status == EntryStatus::Exported).map(|e| e.path.clone());
    for name in names.into_iter().chain(files) {
        let path = archive.join(&name);
        let zip_err = |e: zip::result::ZipError| BackupError::Io {
            what: "cannot write",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        };
        zip.start_file(name.as_str(), options).map_err(zip_err)?;
        let mut from = std::fs::File::open(&path).map_err(io("cannot read", &path))?;
        std::io::copy(&mut from, &mut zip).map_err(io("cannot write", &tmp))?;
    }
    let file = zip.finish().map_err(|e| BackupError::Io {
        what: "cannot write",
        path: tmp.clone(),
        source: std::io::Error::other(e),
    })?;
    file.sync_all().map_err(io("cannot sync", &tmp))?;
    std::fs::rename(&tmp, dest).map_err(io("cannot rename", &tmp))?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Every regular file under `dir` but the manifest, its signature and a write in progress
/// (`backup::list_names`).
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), BackupError> {
    let skip = |rel: &str| rel == MANIFEST || rel == SIGNATURE || rel.ends_with(".tmp-write");
    list_names(root, dir, out, &skip, MAX_ENTRIES)
}

/// An archive that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedArchive {
    pub manifest: Manifest,
    /// The trusted key it is signed with.
    pub key: VerifyingKey,
}

/// The manifest's signature by the trusted key, then its content: nothing of it is believed
/// before the signature is checked.
fn signed_manifest(bytes: &[u8], sig_text: &str, trust: &Trust, at: &Path) -> Result<VerifiedArchive, BackupError> {
    #[derive(serde::Deserialize)]
    struct Claim {
        format: String,
        #[serde(default)]
        public_key: Option<String>,
    }
    let not_one = |why: String| BackupError::NotASnapshot(at.to_owned(), format!("not a hand-back archive: {why}"));
    let claim: Claim = serde_json::from_slice(bytes).map_err(|e| not_one(e.to_string()))?;
    if claim.format != FORMAT {
        return Err(not_one(format!("format {:?}", claim.format)));
    }
    let key = trust.resolve(claim.public_key.as_deref().unwrap_or(""))?;
    let sig = hex::decode(sig_text.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| refused(Check::ManifestSignature, format!("{SIGNATURE} is not a signature")))?;
    key.verify_strict(&signed_bytes(bytes), &Signature::from_bytes(&sig)).map_err(|_| {
        refused(Check::ManifestSignature, format!("{MANIFEST} is not signed by the trusted key {}", fingerprint(&key)))
    })?;
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| not_one(e.to_string()))?;
    if parse_public_key(&manifest.public_key) != Some(key) {
        return Err(refused(Check::TrustedKey, "the manifest names another key than the one that signed it"));
    }
    if manifest.entries.len() > MAX_ENTRIES {
        return Err(refused(Check::FileList, "too many entries"));
    }
    let mut seen = BTreeSet::new();
    for e in manifest.entries.iter().filter(|e| e.status == EntryStatus::Exported) {
        let p = Path::new(&e.path);
        if e.path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refused(
                Check::FileList,
                format!("the manifest lists {:?}, not a path inside the archive", e.path),
            ));
        }
        if !seen.insert(e.path.to_lowercase()) {
            return Err(refused(Check::FileList, format!("the manifest lists {:?} twice", e.path)));
        }
        if e.sha256.is_none() {
            return Err(refused(Check::FileHash, format!("{} has no SHA-256", e.path)));
        }
    }
    Ok(VerifiedArchive { manifest, key })
}

/// The files found are exactly the exported entries, each of its size and SHA-256.
fn check_files(v: &VerifiedArchive, found: &BTreeMap<String, (u64, String)>) -> Result<(), BackupError> {
    let exported: BTreeMap<&str, &ManifestEntry> =
        v.manifest.entries.iter().filter(|e| e.status == EntryStatus::Exported).map(|e| (e.path.as_str(), e)).collect();
    if let Some(extra) = found.keys().find(|p| !exported.contains_key(p.as_str())) {
        return Err(refused(Check::FileList, format!("{extra} is not in the manifest (added)")));
    }
    for (path, e) in &exported {
        let Some((size, sha)) = found.get(*path) else {
            return Err(refused(Check::FileList, format!("{path} is missing")));
        };
        if *size != e.size {
            return Err(refused(Check::FileHash, format!("{path} is {size} bytes, the manifest says {}", e.size)));
        }
        if Some(sha.as_str()) != e.sha256.as_deref() {
            return Err(refused(Check::FileHash, format!("{path}: SHA-256 {sha}, the manifest says {:?}", e.sha256)));
        }
    }
    Ok(())
}

fn verify_dir(dir: &Path, trust: &Trust) -> Result<VerifiedArchive, BackupError> {
    let bytes = read_capped(&dir.join(MANIFEST), MAX_MANIFEST_BYTES, dir)?;
    let sig = match std::fs::symlink_metadata(dir.join(SIGNATURE)) {
        Ok(m) if m.is_file() && m.len() <= 1024 => {
            std::fs::read_to_string(dir.join(SIGNATURE)).map_err(io("cannot read", &dir.join(SIGNATURE)))?
        }
        _ => return Err(refused(Check::ManifestSignature, format!("{SIGNATURE} is missing"))),
    };
    let v = signed_manifest(&bytes, &sig, trust, dir)?;
    let mut names = Vec::new();
    list_files(dir, dir, &mut names)?;
    let listed: BTreeSet<&str> = v.manifest.entries.iter().map(|e| e.path.as_str()).collect();
    let mut found = BTreeMap::new();
    for n in names {
        // Files the manifest does not name are refused without being read.
        if !listed.contains(n.as_str()) {
            return Err(refused(Check::FileList, format!("{n} is not in the manifest (added)")));
        }
        let (size, sha) = hash_file(&dir.join(&n))?;
        found.insert(n, (size, sha));
    }
    check_files(&v, &found)?;
    Ok(v)
}

fn verify_zip(path: &Path, trust: &Trust) -> Result<VerifiedArchive, BackupError> {
    let file = std::fs::File::open(path).map_err(io("cannot read", path))?;
    let not_one = |why: String| BackupError::NotASnapshot(path.to_owned(), format!("not a hand-back archive: {why}"));
    let mut zip = zip::ZipArchive::new(file).map_err(|e| not_one(e.to_string()))?;
    let mut read_small = |name: &str, max: u64| -> Result<Vec<u8>, BackupError> {
        let mut f = zip
            .by_name(name)
            .map_err(|_| refused(Check::ManifestSignature, format!("{name} is missing from the archive")))?;
        if f.size() > max {
            return Err(not_one(format!("{name} is larger than {max} bytes")));
        }
        let mut b = Vec::new();
        f.read_to_end(&mut b).map_err(io("cannot read", path))?;
        Ok(b)
    };
    let sig = read_small(SIGNATURE, 1024)?;
    let bytes = read_small(MANIFEST, MAX_MANIFEST_BYTES)?;
    let v = signed_manifest(&bytes, &String::from_utf8_lossy(&sig), trust, path)?;
    let listed: BTreeSet<&str> = v.manifest.entries.iter().map(|e| e.path.as_str()).collect();
    let mut found = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| not_one(e.to_string()))?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().map_err(|e| not_one(e.to_string()))?.into_owned();
        if name == MANIFEST || name == SIGNATURE {
            continue;
        }
        if !listed.contains(name.as_str()) {
            return Err(refused(Check::FileList, format!("{name} is not in the manifest (added)")));
        }
        if found.contains_key(&name) {
            return Err(refused(Check::FileList, format!("{name} is in the archive twice")));
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io("cannot read", path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        found.insert(name, (size, hex::encode(h.finalize())));
    }
    check_files(&v, &found)?;
    Ok(v)
}

/// Checks an archive offline (its folder, or its zip): the manifest signed by a key `trust`
/// pins, every exported file present with its size and SHA-256, nothing added.
pub fn verify_archive(path: &Path, trust: &Trust) -> Result<VerifiedArchive, BackupError> {
    let meta = std::fs::metadata(path).map_err(io("cannot read", path))?;
    if meta.is_dir() { verify_dir(path, trust) } else { verify_zip(path, trust) }
}

/// The keys `--public-key` pins (a key, its `SHA256:` fingerprint, or a file of either).
pub fn trust_of(pins: &[KeyPin]) -> Trust {
    Trust { pins: pins.to_vec(), signing_key: None }
}

/// A listing refusal in French for ops: a missing grant names what to grant.
pub fn m365_fr(e: &M365Error) -> String {
    match e {
        M365Error::Forbidden { op, code, missing, .. } => format!(
            "Microsoft 365 refuse « {op} » (403 {code}) : il manque à l'application {}. Un administrateur du locataire doit l'accorder, puis relancer l'étape (repli m365 preflight pour tout vérifier).",
            missing.fr()
        ),
        // A mailbox or drive gone (export_transient: not replication lag at hand-back).
        M365Error::Graph { op, status: 404, code, message } => format!(
            "Microsoft 365 ne trouve pas ce qu'il faut exporter (« {op} », 404 {code}) : {message}. Le compte ou l'espace a été supprimé, ou sa boîte aux lettres désactivée (licence retirée ?). Rétablir la licence ou restaurer le compte puis relancer l'étape, ou la passer avec un motif (dérogation de l'exploitation)."
        ),
        e => format!("export des données : {e}"),
    }
}

/// The crisis's archive for download by a person who may see the crisis (the route requires
/// [`repli_core::Permission::DownloadHandback`]): its file name and path, once complete.
pub async fn archive_for(st: &Services, a: &repli_core::Actor, id: &str) -> Result<(String, PathBuf), crate::AppError> {
    let r = crate::crises::visible_crisis(st, a, id).await?;
    let zip = archive_zip(&st.config, &r.id);
    if !zip.is_file() {
        return Err(crate::AppError::problem(
            repli_proto::ProblemCode::HandbackArchiveNotReady,
            "L'archive des données de la commune n'est pas encore prête : elle l'est quand l'étape d'export de la restitution a réussi.",
        ));
    }
    Ok((format!("restitution-{}.zip", r.id), zip))
}

/// What the hand-back's export step produced, once its archive is complete and packed.
pub async fn exported(st: &Services, id: &CrisisId) -> Result<Option<Exported>, crate::AppError> {
    let mut steps = Vec::new();
    for run in st.store.runs_of(id).await? {
        if run.playbook == repli_core::run::PlaybookName::Handback {
            steps.extend(st.store.steps(run.id).await?);
        }
    }
    let out = repli_core::run::Outputs::of(&steps).exported().cloned();
    Ok(out.filter(|_| archive_zip(&st.config, id).is_file()))
}
