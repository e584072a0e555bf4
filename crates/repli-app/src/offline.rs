//! The audit chain of a database file, read offline and read-only (no daemon needed): what an
//! auditor's `repli audit verify --db FILE` runs. The file is opened read-only; nothing in it
//! changes, and nothing of the daemon's configuration (keys, reference data) is read.

use std::path::Path;

use repli_core::audit::{AuditEntry, ChainError, ChainSummary};
use repli_store::{AuditFilter, Store, StoreError};

/// Why a database file could not be read (a chain that does not verify is not this error: it
/// is the verification's answer).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("{0} exists: choose a new file")]
    Exists(String),
}

fn store_error(path: &Path) -> impl FnOnce(StoreError) -> OfflineError + '_ {
    move |source| OfflineError::Store { path: path.display().to_string(), source }
}

/// Opens the file at `path` read-only, runs `read` on it, closes it.
async fn with_file<T>(path: &Path, read: impl AsyncFnOnce(&Store) -> Result<T, StoreError>) -> Result<T, OfflineError> {
    let store = Store::open_read_only(path).await.map_err(store_error(path))?;
    let out = read(&store).await;
    store.close().await;
    out.map_err(store_error(path))
}

/// Verifies the whole chain of the database at `path`, its signed checkpoints and signed head
/// against `pins` (the keys auditors keep) or, without any, only the chain's integrity (the
/// key recorded in the log proves nothing about who signed: callers say so).
pub async fn verify_database(
    path: &Path,
    pins: &[repli_core::audit::KeyPin],
) -> Result<Result<ChainSummary, ChainError>, OfflineError> {
    with_file(path, async |store| match verify(store, pins).await {
        Ok(s) => Ok(Ok(s)),
        // A chain that does not verify is the verification's answer, not a read failure.
        Err(StoreError::Chain(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    })
    .await
}

async fn verify(store: &Store, pins: &[repli_core::audit::KeyPin]) -> Result<ChainSummary, StoreError> {
    if pins.is_empty() {
        // Integrity only: the checkpoints are checked against the key they name, which anyone
        // rewriting the file could have replaced; callers say the signer is not established.
        return store.verify_audit(None).await;
    }
    store.verify_audit_trusted(pins, false).await
}

/// The entry at `seq` in the database at `path`, if it holds one.
pub async fn entry_in_database(path: &Path, seq: i64) -> Result<Option<AuditEntry>, OfflineError> {
    let f = AuditFilter { after_seq: seq.saturating_sub(1), limit: 1, ..Default::default() };
    let found = with_file(path, async |store| store.audit_entries(&f).await).await?;
    Ok(found.into_iter().next().filter(|e| e.seq == seq))
}

/// The whole log of the database at `path` (entries, checkpoints, the key that signed them).
pub async fn bundle(path: &Path) -> Result<repli_core::audit::AuditBundle, OfflineError> {
    with_file(path, async |store| store.audit_bundle().await).await
}

/// The crises of the database at `path` whose state calls for a playbook run that does not
/// exist (what a restarted daemon repairs): the crash harness's post-mortem.
pub async fn missing_runs(
    path: &Path,
) -> Result<Vec<(repli_core::CrisisId, repli_core::run::PlaybookName)>, OfflineError> {
    with_file(path, async |store| store.missing_runs().await).await
}

/// What the audit workload measured.
#[derive(Debug)]
pub struct AuditWorkload {
    /// Appending every entry, `batch` per transaction, checkpoints signed every 1,000.
    pub append: std::time::Duration,
    /// Verifying the chain read back from the file, one page at a time.
    pub verify: std::time::Duration,
    pub summary: ChainSummary,
    /// The log read back, for the in-memory verification the benchmark times next.
    pub bundle: repli_core::audit::AuditBundle,
}

/// The store's own audit workload, for `repli-bench audit`: a new database at `db` (refused
/// when the file exists), `entries` entries made by `record` appended `batch` per transaction
/// with checkpoints signed by `key` every 1,000 entries, then the chain verified from the file.
/// Nothing else is written; the file stays for the caller to measure or remove.
pub async fn audit_workload(
    db: &Path,
    entries: u32,
    batch: u32,
    key: ed25519_dalek::SigningKey,
    record: impl Fn(u32) -> crate::records::AuditRecord,
    now: jiff::Timestamp,
) -> Result<AuditWorkload, OfflineError> {
    if db.exists() {
        return Err(OfflineError::Exists(db.display().to_string()));
    }
    let store =
        Store::open_with(db, Some(repli_store::Checkpointing::new(key, 1000))).await.map_err(store_error(db))?;
    let batch = batch.max(1);
    let started = std::time::Instant::now();
    let mut i = 0;
    while i < entries {
        let n = batch.min(entries - i);
        let recs: Vec<_> = (i..i + n).map(&record).collect();
        if let Err(e) = store.record(&recs, repli_core::run::By::System, now).await {
            store.close().await;
            return Err(store_error(db)(e));
        }
        i += n;
    }
    let append = started.elapsed();
    let started = std::time::Instant::now();
    let summary = store.verify_audit(None).await;
    let verify = started.elapsed();
    let bundle = store.audit_bundle().await;
    store.close().await;
    Ok(AuditWorkload {
        append,
        verify,
        summary: summary.map_err(store_error(db))?,
        bundle: bundle.map_err(store_error(db))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> crate::records::AuditRecord {
        crate::records::AuditRecord {
            commune: Some("13005".into()),
            crisis: None,
            action: repli_core::AuditAction::EngineStepSucceeded,
            target: format!("step {i}"),
            details: serde_json::json!({ "i": i }),
        }
    }

    #[tokio::test]
    async fn the_audit_workload_appends_verifies_and_reads_back_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bench.db");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let now: jiff::Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        let run = audit_workload(&db, 1_005, 400, key.clone(), entry, now).await.unwrap();
        assert_eq!(run.summary.entries, 1_005);
        assert_eq!(run.bundle.entries.len(), 1_005);
        assert!(!run.bundle.checkpoints.is_empty(), "a checkpoint every 1,000 entries");
        // The same file read offline verifies with the key that signed it, not with another.
        use repli_core::audit::{KeyPin, fingerprint};
        let mine = key.verifying_key();
        assert!(verify_database(&db, &[KeyPin::Key(mine)]).await.unwrap().is_ok());
        assert!(verify_database(&db, &[KeyPin::parse(&fingerprint(&mine)).unwrap()]).await.unwrap().is_ok());
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
        let e = verify_database(&db, &[KeyPin::Key(other)]).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("not a trusted key"), "{e}");
        assert_eq!(entry_in_database(&db, 1_005).await.unwrap().map(|e| e.seq), Some(1_005));
        assert!(missing_runs(&db).await.unwrap().is_empty());
        // A workload never writes into an existing file.
        let again = audit_workload(&db, 1, 1, key, entry, now).await;
        assert!(matches!(again, Err(OfflineError::Exists(_))), "{again:?}");
    }
}
