//! Administration on the daemon's host, by someone with file access to its database: the first
//! admin (`replid init`), an account created offline (`replid user add`), a snapshot
//! (`replid backup`). The first two open the database as the daemon would (reference data
//! brought up to date, checkpoints signed with the configured key), do one audited thing, and
//! close it; a snapshot only reads the database, so a running daemon never waits for it.

use std::path::Path;

use jiff::Timestamp;
use repli_core::run::By;
use repli_core::{Actor, AuthMethod, InseeCode, Role};
use repli_store::Store;

use crate::backup::{BackupError, Manifest};
use crate::config::Config;
use crate::{AppError, StartError};

/// Why a local command failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{} is already initialised (it has an admin); use `replid user add` or `repli user add`", .0.display())]
    AlreadyInitialised(std::path::PathBuf),
    #[error("{}", describe(.0))]
    App(#[from] AppError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// A key change on a host whose verifiers would then trust only the new key.
    #[error(
        "pin the current audit key first: add \"{0}\" to audit.trusted_keys (and give it to the auditors), then change the key; otherwise what the current key signed could no longer be verified"
    )]
    PinFirst(String),
    #[error("audit key files: {0}")]
    KeyFile(String),
}

impl From<repli_store::StoreError> for LocalError {
    fn from(e: repli_store::StoreError) -> Self {
        LocalError::App(e.into())
    }
}

/// An operation's error as one line for the terminal: each invalid field named.
fn describe(e: &AppError) -> String {
    match e {
        AppError::Validation(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        // On the host, the operator sees the cause (a client of the API sees only a reference).
        AppError::Internal(m) => m.clone(),
        e => e.to_problem().detail,
    }
}

/// Someone acting on the daemon's host, as the audit trail names them (`local:USER`).
pub fn local_actor(os_user: &str) -> Actor {
    let name: String = os_user.chars().filter(|c| !c.is_control()).take(64).collect();
    Actor { user_id: 0, name: format!("local:{name}"), role: Role::Admin, commune: None, auth: AuthMethod::Local }
}

/// A user created on the host, and their first API token (shown once).
#[derive(Debug)]
pub struct LocalUser {
    pub id: i64,
    pub role: Role,
    pub token: String,
    /// The public half of the audit signing key (hex), to hand to auditors.
    pub audit_public_key: Option<String>,
}

async fn with_store<T>(
    config: &Config,
    now: Timestamp,
    f: impl AsyncFnOnce(&Store) -> Result<T, LocalError>,
) -> Result<T, LocalError> {
    let store = crate::open_store(config, now).await?;
    let out = f(&store).await;
    store.close().await;
    out
}

async fn create(
    store: &Store,
    name: &str,
    role: Role,
    commune: Option<InseeCode>,
    expires_at: Option<Timestamp>,
    by: By<'_>,
    now: Timestamp,
) -> Result<LocalUser, LocalError> {
    let (user, token) = crate::accounts::new_user(name, role, commune, expires_at)?;
    let rec = store.create_user(&user, by, now).await?;
    Ok(LocalUser { id: rec.id, role: rec.role, token, audit_public_key: store.checkpoint_public_key() })
}

/// Creates the database (and the audit key) if needed, and its first admin; refused once an
/// admin exists.
pub async fn init(config: &Config, admin_name: &str, by: &Actor, now: Timestamp) -> Result<LocalUser, LocalError> {
    with_store(config, now, async |store| {
        if store.users(now).await?.iter().any(|u| u.role == Role::Admin) {
            return Err(LocalError::AlreadyInitialised(config.database.path.clone()));
        }
        create(store, admin_name, Role::Admin, None, None, By::User(by), now).await
    })
    .await
}

/// Creates an account on the host (the same rules as through the API).
pub async fn add_user(
    config: &Config,
    name: &str,
    role: Role,
    commune: Option<InseeCode>,
    expires_at: Option<Timestamp>,
    by: &Actor,
    now: Timestamp,
) -> Result<LocalUser, LocalError> {
    with_store(config, now, async |store| create(store, name, role, commune, expires_at, By::User(by), now).await).await
}

/// Takes a snapshot of the configured database into `dest` without writing to it
/// ([`crate::backup::snapshot_offline`]): safe beside a running daemon.
pub async fn backup(config: &Config, dest: &Path, now: Timestamp) -> Result<Manifest, LocalError> {
    Ok(crate::backup::snapshot_offline(config, dest, now).await?)
}

/// What a key change did.
#[derive(Debug)]
pub struct KeyChanged {
    /// The entry recording the hand-over.
    pub seq: i64,
    pub previous: String,
    pub new: String,
    /// Where the previous key file was kept.
    pub retired: std::path::PathBuf,
}

/// Changes the audit signing key, replid stopped: the current key signs the hand-over to a new
/// random key in one entry (`service.audit_key_changed`), the new key signs the head from there,
/// the new key file takes the configured path and the previous one is kept beside it
/// (`<key>.retired-<seq>`, 0600). Refused unless `audit.trusted_keys` pins the current key: the
/// verifiers' trust follows the hand-over from a pinned key, never the other way.
pub async fn change_audit_key(config: &Config, by: &Actor, now: Timestamp) -> Result<KeyChanged, LocalError> {
    use repli_core::audit::fingerprint;
    let path = config.audit_key_path();
    let current = crate::audit_key::load(&path).map_err(|e| LocalError::KeyFile(e.to_string()))?;
    let current_public = current.verifying_key();
    if !config.trusted_audit_keys().iter().any(|p| p.accepts(&current_public)) {
        return Err(LocalError::PinFirst(fingerprint(&current_public)));
    }
    let mut fresh = path.clone().into_os_string();
    fresh.push(".new");
    let fresh = std::path::PathBuf::from(fresh);
    let new = crate::audit_key::load_or_create(&fresh).map_err(|e| LocalError::KeyFile(e.to_string()))?;
    let seq = with_store(config, now, async |store| Ok(store.rotate_key(&new, By::User(by), now).await?)).await?;
    let mut retired = path.clone().into_os_string();
    retired.push(format!(".retired-{seq}"));
    let retired = std::path::PathBuf::from(retired);
    std::fs::rename(&path, &retired).map_err(|e| LocalError::KeyFile(format!("{}: {e}", path.display())))?;
    std::fs::rename(&fresh, &path).map_err(|e| LocalError::KeyFile(format!("{}: {e}", fresh.display())))?;
    Ok(KeyChanged { seq, previous: fingerprint(&current_public), new: fingerprint(&new.verifying_key()), retired })
}
