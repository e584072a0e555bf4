//! Repli's persistence: one SQLite file through sqlx. This is the only crate that uses sqlx.
//!
//! - One writer connection: SQLite serialises writers anyway, and a single connection makes
//!   every write transaction see the audit chain's latest hash without lock upgrades.
//! - A small pool of read-only connections for reads (WAL lets them run beside the writer).
//! - Every state change appends its audit entry in the same transaction ([`audit`]).

mod audit;
mod crises;
mod engine;
mod exercises;
#[cfg(feature = "forge")]
pub mod forge;
mod graph_pace;
mod inventory;
mod item_search;
mod ports;
mod read;
mod reference;
mod second_factor;
mod sheets;
mod sla;
mod tallies;
mod time;
mod users;
mod writer;

#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod tamper_tests;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use repli_core::run::PlaybookName;
use repli_core::{ChainError, CrisisId, CrisisState, InseeCode, ItemKind, ItemState, StepState, TransitionError};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use audit::{AuditFilter, LogEntry, Record};
pub use crises::{CrisisFilter, CrisisRecord, NewCrisis, SuspensionRecord};
pub use exercises::{ExerciseRecord, InjectRecord, NewExercise, NewInject};
pub use inventory::{
    Agent, BulkOp, Condition, ItemEdit, ItemEvent, ItemExtras, ItemRecord, Loan, Need, Preempted, SimLinkRefusal, Wipe,
};
pub use item_search::{ItemList, ItemListed, ItemQuery, ItemSort, LoanListed};
pub use read::{CrisisFacts, CrisisList, CrisisRead, HISTORY_ENTRIES, HISTORY_PAGE_MAX, HistoryRow, StepEstimate};
pub use reference::{CommuneRecord, ReferenceSync};
pub use repli_core::run::{By, NewStep, RunRecord, RunState, StepFinish, StepRecord};
pub use second_factor::{NewSession, SecondFactorProof, SecondFactorRecord};
pub use sheets::SheetsIssue;
pub use sla::{NewNotification, Notification};
pub use tallies::{NotificationTally, StepTally, Tallies};
pub use time::{from_db as ts_from_db, to_db as ts_to_db};
pub use users::{NewUser, Session, UserRecord, UserSummary};

/// Why the storage refused a write, from SQLite's primary result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// SQLITE_FULL: the disk (or the database's size limit) is full.
    Full,
    /// SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_CORRUPT, SQLITE_NOTADB: the file could not be
    /// written or read back.
    Io,
    /// SQLITE_READONLY: the file or its directory is not writable.
    ReadOnly,
    /// SQLITE_BUSY, SQLITE_LOCKED, or no connection within the pool's timeout: another writer
    /// held the lock.
    Busy,
    /// SQLITE_NOMEM.
    Memory,
    /// Any other failure of a write (its cause is in the log).
    Other,
}

impl StorageFault {
    /// The fault of a sqlx error, when it is one of the storage's (not a constraint or a bug).
    pub fn of(e: &sqlx::Error) -> Option<Self> {
        match e {
            sqlx::Error::Database(db) => {
                let code = db.code()?.parse::<i32>().ok()?;
                match code & 0xff {
                    13 => Some(Self::Full),
                    10 | 11 | 14 | 26 => Some(Self::Io),
                    8 => Some(Self::ReadOnly),
                    5 | 6 => Some(Self::Busy),
                    7 => Some(Self::Memory),
                    _ => None,
                }
            }
            sqlx::Error::Io(_) => Some(Self::Io),
            sqlx::Error::PoolTimedOut => Some(Self::Busy),
            _ => None,
        }
    }

    /// As metrics, logs and readiness spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Io => "io_error",
            Self::ReadOnly => "read_only",
            Self::Busy => "busy",
            Self::Memory => "out_of_memory",
            Self::Other => "write_failed",
        }
    }

    pub const ALL: [StorageFault; 6] = [Self::Full, Self::Io, Self::ReadOnly, Self::Busy, Self::Memory, Self::Other];
}

impl StoreError {
    /// A refusal of one item by the pool's rules (a bulk step names it and goes on checking
    /// the others), not a fault of the database.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnknownItem(_)
                | Self::ItemInState { .. }
                | Self::ItemNotHeldFor { .. }
                | Self::WipeRequired { .. }
                | Self::ItemMoveRefused { .. }
                | Self::TagTaken { .. }
                | Self::SimLink(_)
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match StorageFault::of(&e) {
            Some(fault) => StoreError::Storage { fault, source: e },
            None => StoreError::Db(e),
        }
    }
}

/// Everything that can go wrong in the store, with the domain refusals as their own variants
/// so that the API can map each to its HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The storage refused a write (disk full, I/O error, read-only, locked): nothing of the
    /// operation was kept.
    #[error("storage {}: {source}", fault.as_str())]
    Storage { fault: StorageFault, source: sqlx::Error },
    /// Writes are stopped: the audit chain did not verify (at start, or changed behind
    /// replid's back) and no operator accepted the break.
    #[error("writes are stopped: {0}")]
    WritesStopped(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unknown commune {0}")]
    UnknownCommune(InseeCode),
    #[error("commune {0} has not signed the loan convention")]
    NoConvention(InseeCode),
    #[error("commune {commune} already has an open crisis: {open}")]
    OpenCrisis { commune: InseeCode, open: CrisisId },
    #[error("crisis {0} not found")]
    CrisisNotFound(CrisisId),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    #[error("corrupt value in column {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    #[error("audit chain does not verify: {0}")]
    Chain(#[from] ChainError),
    #[error("unknown user {0}")]
    UnknownUser(i64),
    #[error("login `{0}` is already taken")]
    LoginTaken(String),
    /// The 48-hour clock runs only until the kit is ready: nothing to suspend.
    #[error("crisis {id}: the SLA clock no longer runs")]
    SlaNotRunning { id: CrisisId },
    #[error("crisis {id}: the SLA clock is already suspended")]
    SlaAlreadySuspended { id: CrisisId },
    #[error("crisis {id}: the SLA clock is not suspended")]
    SlaNotSuspended { id: CrisisId },
    /// Inventory import refused: every problem, as `file:line: message`.
    #[error("{}", .0.join("\n"))]
    Import(Vec<String>),
    #[error("unknown item {0}")]
    UnknownItem(String),
    /// The item's state does not allow the operation.
    #[error("item {serial} is {state}: the operation does not apply in that state")]
    ItemInState { serial: String, state: ItemState },
    /// The item is not held for that crisis the way the operation needs.
    #[error("item {serial} is not {holding} for crisis {id}")]
    ItemNotHeldFor { serial: String, id: CrisisId, holding: Holding },
    /// An asset tag already on another item.
    #[error("asset tag {tag} is already item {serial}'s")]
    TagTaken { tag: String, serial: String },
    /// A SIM link refused: not a SIM, not a phone or router, or the SIM is in another device.
    #[error("SIM link refused: {0}")]
    SimLink(SimLinkRefusal),
    /// A step on many items refused: each item that could not, with why; nothing changed.
    #[error("refused for {} item(s)", .0.len())]
    Refused(Vec<(String, StoreError)>),
    /// A laptop or phone returns to stock through a certified wipe, not a check.
    #[error("item {serial} is a {kind}: it returns to stock through a certified wipe")]
    WipeRequired { serial: String, kind: ItemKind },
    /// This way of changing an item's state does not lead to `to`.
    #[error("an item cannot be moved to {to} this way")]
    ItemMoveRefused { to: ItemState },
    /// A personal item (laptop, phone) is lent to a named agent.
    #[error("a {kind} is lent to a named agent")]
    AgentRequired { kind: ItemKind },
    #[error("agent {agent} is not in the agents list of crisis {id}")]
    UnknownAgent { id: CrisisId, agent: i64 },
    /// The agents list of a crisis no longer changes (hand-back opened, or the crisis ended).
    #[error("crisis {id} is {state}: its agents list no longer changes")]
    AgentsListClosed { id: CrisisId, state: CrisisState },
    /// The agents list can only be completed now, not replaced.
    #[error("crisis {id}: the agents list can only be completed now: {because}")]
    AgentsListLocked { id: CrisisId, because: AgentsLock },
    #[error("crisis {id}: no agent is named yet")]
    NoAgentsNamed { id: CrisisId },
    /// Accepting a short agents list when it is complete, or already accepted.
    #[error("crisis {id}: the agents list is complete or already accepted ({named} named, {declared} declared)")]
    AgentsListComplete { id: CrisisId, named: i64, declared: i64 },
    /// New credential sheets asked for accounts whose sheets were already issued (a reissue
    /// says why). The accounts are not named: logins are built from people's names.
    #[error("crisis {id}: the credential sheets of these accounts were already issued")]
    SheetsAlreadyIssued { id: CrisisId },
    /// A value the store writes as JSON could not be encoded.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    #[error("crisis {id}: {count} item(s) still out")]
    ItemsOutstanding { id: CrisisId, count: i64 },
    /// The crisis has no step of that id in any of its runs.
    #[error("crisis {crisis} has no step {step:?}")]
    NoSuchStep { crisis: CrisisId, step: String },
    /// A run, or a step of a run, the engine named is not stored.
    #[error("run {run} has no step {step:?}")]
    UnknownRunStep { run: i64, step: String },
    #[error("unknown run {0}")]
    UnknownRun(i64),
    /// Only a manual task waiting to be done can be confirmed.
    #[error("step {step:?} is {state}: only a manual task waiting to be done can be confirmed")]
    StepNotWaitingManual { step: String, state: StepState },
    /// A step can be retried only when it failed, skipped only when failed, pending or waiting.
    #[error("step {step:?} is {state}: it cannot be {}", if *.skip { "skipped" } else { "retried" })]
    StepNotOperable { step: String, state: StepState, skip: bool },
    /// The run a step belongs to is over: its steps no longer change.
    #[error("run {playbook} is {state}: its steps no longer change")]
    RunOver { playbook: PlaybookName, state: RunState },
    /// The hand-back's reception cannot be confirmed yet: items still out (neither returned nor
    /// written off), returned laptops or phones without a wipe record (asset tags).
    #[error("crisis {id}: reception incomplete ({} out, {} not wiped)", out.len(), unwiped.len())]
    ReceptionIncomplete { id: CrisisId, out: Vec<String>, unwiped: Vec<String> },
    #[error("crisis {id} is {state}: its log is closed")]
    CrisisEnded { id: CrisisId, state: repli_core::CrisisState },
}

/// The database. Cheap to clone (pools are shared handles).
#[derive(Debug, Clone)]
pub struct Store {
    write: writer::Writer,
    read: SqlitePool,
    /// Crisis reads, each with the writer generation it was read at ([`Store::crisis_read`]).
    read_cache: read::Cache,
    path: PathBuf,
    checkpointing: Option<std::sync::Arc<Checkpointing>>,
    /// A purge's WAL truncation could not finish (a reader held an old snapshot): retried at
    /// each maintenance round ([`Store::truncate_wal_if_pending`]).
    wal_truncate_pending: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn migrator() -> Migrator {
    let m = |version, description: &'static str, sql: &'static str| {
        Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
    };
    Migrator::with_migrations(vec![
        m(1, "init", include_str!("../migrations/0001_init.sql")),
        m(2, "checkpoints", include_str!("../migrations/0002_checkpoints.sql")),
        m(3, "accounts", include_str!("../migrations/0003_accounts.sql")),
        m(4, "sla", include_str!("../migrations/0004_sla.sql")),
        m(5, "inventory", include_str!("../migrations/0005_inventory.sql")),
        m(6, "engine", include_str!("../migrations/0006_engine.sql")),
        m(7, "read indexes", include_str!("../migrations/0007_read_indexes.sql")),
        m(8, "agents and sheets", include_str!("../migrations/0008_agents_and_sheets.sql")),
        m(9, "notification recipients", include_str!("../migrations/0009_notification_recipients.sql")),
        m(10, "password links", include_str!("../migrations/0010_password_links.sql")),
        m(11, "exercises", include_str!("../migrations/0011_exercises.sql")),
        m(12, "storage truth", include_str!("../migrations/0012_storage_truth.sql")),
        m(13, "notification outbox", include_str!("../migrations/0013_notification_outbox.sql")),
        m(14, "item notes and sims", include_str!("../migrations/0014_item_notes_and_sims.sql")),
        m(16, "second factor", include_str!("../migrations/0016_second_factor.sql")),
        m(17, "graph pace", include_str!("../migrations/0017_graph_pace.sql")),
        m(18, "graph pace batch counted", include_str!("../migrations/0018_graph_pace_batch_counted.sql")),
    ])
}

/// A database at `path` as a version that stopped at migration `last` made it (an upgrade
/// test fills it, closes the pool, then opens it with [`Store::open`]).
#[cfg(test)]
async fn database_as_of(path: &std::path::Path, last: i64) -> sqlx::SqlitePool {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite:")
        .expect("an in-memory URL parses")
        .filename(path)
        .create_if_missing(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.expect("opened");
    let old: Vec<_> = migrator().iter().filter(|m| m.version <= last).cloned().collect();
    Migrator::with_migrations(old).run(&pool).await.expect("migrated");
    pool
}

/// Why an agents list can no longer be replaced (only completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentsLock {
    /// Items are already lent to its agents.
    ItemsLent,
    /// Its agents' accounts are already created.
    AccountsMade,
}

impl std::fmt::Display for AgentsLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ItemsLent => "items are already lent to its agents",
            Self::AccountsMade => "its agents' accounts are already created",
        })
    }
}

/// How an item is held for a crisis, as an operation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Reserved (or prepared) for it, not yet lent.
    Reserved,
    /// Lent for it.
    Lent,
    /// Reserved, prepared or lent for it.
    Held,
}

impl std::fmt::Display for Holding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reserved => "reserved",
            Self::Lent => "lent",
            Self::Held => "held",
        })
    }
}

/// The daemon's checkpoint signing key and how often it signs.
pub struct Checkpointing {
    key: ed25519_dalek::SigningKey,
    /// Sign after this many new entries.
    pub every: i64,
}

impl Checkpointing {
    pub fn new(key: ed25519_dalek::SigningKey, every: u32) -> Self {
        Self { key, every: i64::from(every.max(1)) }
    }

    pub fn public_key_hex(&self) -> String {
        hex_key(&self.key.verifying_key())
    }
}

impl std::fmt::Debug for Checkpointing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("Checkpointing").field("public_key", &self.public_key_hex()).field("every", &self.every).finish()
    }
}

pub(crate) fn hex_key(k: &ed25519_dalek::VerifyingKey) -> String {
    hex::encode(k.to_bytes())
}

/// The database and its WAL and SHM files are for replid alone (0600), whatever the umask: a
/// new database file is created so; an existing one more open is tightened, with a warning.
fn private_files(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !db.exists() {
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(db).map_err(sqlx::Error::Io)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let p = PathBuf::from(name);
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %p.display(), mode = format!("{mode:o}"), "database file readable by others: set to 0600");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(sqlx::Error::Io)?;
        }
    }
    Ok(())
}

/// Bytes available to an unprivileged writer on the filesystem that holds `path` (a file or
/// a folder; a file that does not exist yet is looked up by its folder).
pub fn free_bytes(path: &Path) -> Result<u64, std::io::Error> {
    let dir = if path.is_dir() {
        path
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    };
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl Store {
    /// Opens (creating if needed) the database file, switches it to WAL and applies migrations.
    /// Audit entries are not checkpointed (see [`Store::open_with`]).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, None).await
    }

    /// Like [`Store::open`], signing checkpoints of the audit chain with `checkpointing`.
    pub async fn open_with(path: &Path, checkpointing: Option<Checkpointing>) -> Result<Self, StoreError> {
        private_files(path)?;
        let base = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted content is overwritten, not left in free pages (an RGPD purge must
            // leave nothing readable in the file).
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        migrator().run(&write).await?;
        // SQLite gives the WAL and SHM files the database file's permissions; check all three.
        private_files(path)?;
        let write = writer::Writer::new(write);
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        tracing::debug!(path = %path.display(), "database open");
        Ok(Self {
            write,
            read,
            read_cache: read::Cache::default(),
            path: path.to_owned(),
            checkpointing: checkpointing.map(std::sync::Arc::new),
            wal_truncate_pending: std::sync::Arc::default(),
        })
    }

    /// Opens an existing database for reading only: no migration, no write, no file created.
    /// For offline verification by auditors.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Db(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no database file at {}", path.display()),
            ))));
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10));
        let read = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
        Ok(Self {
            write: writer::Writer::new(read.clone()),
            read,
            read_cache: read::Cache::default(),
            path: path.to_owned(),
            checkpointing: None,
            wal_truncate_pending: std::sync::Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database takes a write now (readiness). While the last write succeeded,
    /// the write lock is taken and released without writing; after a failed write, a row is
    /// really written and committed, since only a commit proves the storage takes writes again
    /// (and clears the fault).
    pub async fn writable(&self, now: jiff::Timestamp) -> Result<(), StoreError> {
        if self.write.health().fault().is_none() {
            // A transaction of ours: if this probe is cut short, the connection is closed, never
            // returned to the pool inside a transaction.
            self.write.begin().await?.rollback().await?;
            return Ok(());
        }
        self.probe_write(now).await
    }

    /// Writes and commits the probe row.
    pub async fn probe_write(&self, now: jiff::Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO write_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at")
            .bind(time::to_db(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stops every write with `why` (the audit chain does not verify).
    pub fn stop_writes(&self, why: String) {
        self.write.freeze(why);
    }

    /// Lets writes through again.
    pub fn resume_writes(&self) {
        self.write.thaw();
    }

    /// Why writes are stopped, if they are.
    pub fn writes_stopped(&self) -> Option<String> {
        self.write.frozen()
    }

    /// Checkpoints and truncates the WAL when a purge left it holding erased values; returns
    /// whether it is clean now. Called after a purge and at every maintenance round.
    pub async fn truncate_wal_if_pending(&self) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        if !self.wal_truncate_pending.load(Ordering::Acquire) {
            return Ok(true);
        }
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *self.write.acquire().await?).await?;
        if busy == 0 {
            self.wal_truncate_pending.store(false, Ordering::Release);
            Ok(true)
        } else {
            tracing::warn!(
                "WAL not truncated after a purge (a reader was active): retried at the next maintenance round"
            );
            Ok(false)
        }
    }

    /// The fault of the last write that failed, while no commit succeeded since.
    pub fn write_fault(&self) -> Option<StorageFault> {
        self.write.health().fault()
    }

    /// How many writes failed since this store was opened.
    pub fn write_failures(&self) -> u64 {
        self.write.health().failures()
    }

    /// Bytes available to this process on the filesystem holding the database.
    pub fn free_bytes(&self) -> Result<u64, std::io::Error> {
        free_bytes(&self.path)
    }

    /// Writes a consistent copy of the whole database to `dest` (a new file) while the daemon
    /// keeps serving: SQLite's `VACUUM INTO` reads one snapshot of the database (a read
    /// transaction) and writes it compacted, in one file without a WAL.
    pub async fn snapshot_into(&self, dest: &Path) -> Result<(), StoreError> {
        let dest = dest.to_str().ok_or_else(|| {
            StoreError::Db(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the snapshot path {} is not UTF-8", dest.display()),
            )))
        })?;
        sqlx::query("VACUUM INTO ?").bind(dest).execute(&self.read).await?;
        Ok(())
    }

    /// Closes both pools, waiting for connections to finish (graceful shutdown).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn database_files_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("repli.db");
        let store = Store::open(&db).await.unwrap();
        // A write, so that the WAL and SHM files exist.
        store.sync_reference(&[], &[], "2026-11-23T08:00:00Z".parse().unwrap()).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        store.close().await;
        // An existing database left readable by others is tightened at open.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&db).await.unwrap();
        assert_eq!(mode(&db), 0o600);
        store.close().await;
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use jiff::Timestamp;
    use repli_core::reference::{parse_communes, parse_conventions};
    use repli_core::{Actor, AuthMethod, Role};

    pub const COMMUNES: &str =
        "insee,name,population\n13005,Aubagne,47529\n13001,Aix-en-Provence,149695\n13055,Marseille,886040\n";
    pub const CONVENTIONS: &str =
        "insee,signed_on,deliberation_ref\n13005,2023-12-14,DCM-2023-187\n13001,2024-02-15,DCM-2024-031\n";

    pub fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    pub async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let communes = parse_communes("c", COMMUNES).unwrap();
        let conventions = parse_conventions("v", CONVENTIONS, &communes).unwrap();
        store.sync_reference(&communes, &conventions, t("2026-11-02T08:00:00Z")).await.unwrap();
        (dir, store)
    }

    pub async fn user(store: &Store, role: Role, commune: Option<&str>) -> Actor {
        let u = store
            .create_user(
                &NewUser {
                    name: format!("{role} user"),
                    role,
                    commune: commune.map(|c| InseeCode::parse(c).unwrap()),
                    token_sha256: format!("{role}{commune:?}"),
                    token_expires_at: None,
                },
                By::System,
                t("2026-11-02T08:00:00Z"),
            )
            .await
            .unwrap();
        Actor { user_id: u.id, name: u.name, role, commune: u.commune, auth: AuthMethod::Token }
    }
}
