//! The audit chain of a database file, read offline and read-only (no daemon needed): what an
//! auditor's `repli audit verify --db FILE` runs. The file is opened read-only; nothing in it
//! changes, and nothing of the daemon's configuration (keys, reference data) is read.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use repli_core::audit::{AuditEntry, ChainError, ChainSummary};
use repli_store::{AuditFilter, Store, StoreError};

/// Why a database file could not be read (a chain that does not verify is not this error: it
/// is the verification's answer).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct OfflineError {
    pub path: String,
    #[source]
    pub source: StoreError,
}

async fn open(path: &Path) -> Result<Store, OfflineError> {
    Store::open_read_only(path).await.map_err(|source| OfflineError { path: path.display().to_string(), source })
}

/// Verifies the whole chain of the database at `path`, and its signed checkpoints against
/// `key` (the key auditors keep) or, without one, against the key recorded in the log itself,
/// which proves integrity but not who signed.
pub async fn verify_database(
    path: &Path,
    key: Option<&VerifyingKey>,
) -> Result<Result<ChainSummary, ChainError>, OfflineError> {
    let store = open(path).await?;
    let r = store.verify_audit(key).await;
    store.close().await;
    match r {
        Ok(s) => Ok(Ok(s)),
        Err(StoreError::Chain(e)) => Ok(Err(e)),
        Err(source) => Err(OfflineError { path: path.display().to_string(), source }),
    }
}

/// The entry at `seq` in the database at `path`, if it holds one.
pub async fn entry_in_database(path: &Path, seq: i64) -> Result<Option<AuditEntry>, OfflineError> {
    let store = open(path).await?;
    let f = AuditFilter { after_seq: seq.saturating_sub(1), limit: 1, ..Default::default() };
    let found = store.audit_entries(&f).await;
    store.close().await;
    let found = found.map_err(|source| OfflineError { path: path.display().to_string(), source })?;
    Ok(found.into_iter().next().filter(|e| e.seq == seq))
}
