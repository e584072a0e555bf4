//! The operations layer: every operation a person can perform on a crisis — request, act on it,
//! read it, the SLA report, inventory and loans, hand-back, documents, notifications,
//! maintenance — and the engine it hosts. replid's API handlers and web pages parse, call one
//! operation here, and render; they hold no business rule.
//!
//! Every operation returns one coded error, [`AppError`], whose problem code (an enum in
//! `repli-proto`) gives the HTTP status.

pub mod accounts;
pub mod audit_key;
pub mod backup;
pub mod campaign;
pub mod clock;
pub mod crises;
pub mod dns;
pub mod documents;
pub mod engine;
mod error;
pub mod exercises;
pub mod handback;
pub mod inventory;
pub mod local;
pub mod metrics;
pub mod notify;
pub mod offline;
pub mod preflight;
pub mod retex;
pub mod second_factor;
pub mod steps;
pub mod views;

pub use error::AppError;
pub use repli_config as config;
pub use repli_core::run::By;
use repli_store::Store;

/// The plain records operations hand out: data read from the store, never a handle to it. The
/// store itself is private to this crate ([`Services`] holds it): every read and write goes
/// through an operation here.
pub mod records {
    /// An audit entry to append (the benchmark's synthetic workload, `offline::audit_workload`).
    pub use repli_store::Record as AuditRecord;
    pub use repli_store::{
        AuditFilter, CommuneRecord, CrisisFilter, CrisisRecord, ItemEvent, ItemList, ItemListed, ItemQuery, ItemRecord,
        ItemSort, LogEntry, UserRecord,
    };
}

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use repli_core::reference::{MAX_REFERENCE_BYTES, parse_communes, parse_conventions};
use repli_core::{BusinessCalendar, Commune, Convention};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;

pub use repli_core::reference::{EMBEDDED_COMMUNES, EMBEDDED_CONVENTIONS};

/// Whether the database takes writes now ([`Services::storage_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageStatus {
    pub writable: bool,
    /// Why not, one line naming the fault (`storage_full`, `storage_low`, …).
    pub reason: Option<String>,
    /// Free bytes on the database's filesystem (None when it cannot be read).
    pub free_bytes: Option<u64>,
    /// Writes that failed since the daemon started.
    pub write_failures: u64,
}

/// What operations share: the store, the configuration, the calendar and clock, Microsoft 365
/// and the documents. The engine's host holds these too (not the engine itself).
#[derive(Clone)]
pub struct Services {
    /// The database: private to the operations layer (no other crate reaches it).
    pub(crate) store: Store,
    pub config: Arc<Config>,
    /// The SLA calendar, and the one time zone every French date is written in.
    pub calendar: Arc<BusinessCalendar>,
    pub clock: Arc<dyn Clock>,
    /// For webhook notifications.
    pub http: reqwest::Client,
    /// The procedures pack's templates, compiled once (after the start-up check).
    pub documents: Arc<repli_docs::Documents>,
    /// Microsoft 365 (the real Graph client; see [`engine::m365_setup`]).
    pub m365: Arc<dyn repli_core::m365::M365>,
    /// Where the crisis zones are published (`[m365] dns`).
    pub dns: Arc<dyn repli_core::m365::DnsPublisher>,
    /// Where exercises' crises are provisioned and published instead ([`engine::exercise_setup`]).
    pub exercise_target: (Arc<dyn repli_core::m365::M365>, Arc<dyn repli_core::m365::DnsPublisher>),
    /// The exercise simulator's address, when exercises go to one: injects' effects are applied
    /// through its control surface ([`exercises::deliver_injects`]).
    pub exercise_sim: Option<String>,
    /// True when Microsoft 365 is an embedded simulator (outputs say SIMULATION).
    pub simulation: bool,
    zone_api: Option<String>,
    /// The last Microsoft 365 preflight ([`preflight`]).
    pub preflight: Arc<std::sync::RwLock<Option<preflight::PreflightRun>>>,
    /// The account the preflight's canary meeting is made for.
    pub preflight_organizer: Option<String>,
    /// Credential sheets are issued one at a time ([`documents`]).
    pub credential_sheets: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the engine's scheduler (after a change that may unblock a step).
    wake: Arc<Notify>,
    /// What the process counts for `/metrics` ([`metrics`]).
    pub telemetry: Arc<metrics::Telemetry>,
    /// Credentials recently found valid ([`accounts::authenticate`]).
    pub(crate) auth_cache: Arc<accounts::AuthCache>,
    /// Sign-in attempts and concurrent password checks ([`accounts::sign_in`]).
    pub(crate) throttle: Arc<accounts::Throttle>,
    /// Sign-ins waiting for their second factor ([`second_factor::Tickets`]).
    pub(crate) tickets: Arc<second_factor::Tickets>,
    /// The key sealing TOTP secrets (`accounts.totp_key_file`).
    pub(crate) seal_key: Arc<second_factor::SealKey>,
}

impl Services {
    /// The zone API of the embedded Graph simulator (it stands in for the registrar too), when
    /// Microsoft 365 is simulated in-process.
    pub fn m365_zone_api(&self) -> Option<String> {
        self.zone_api.clone()
    }

    /// The Microsoft 365 provider and DNS publisher of a crisis: an exercise's are the exercise
    /// target's, never the real tenant's.
    pub fn target(
        &self,
        r: &repli_store::CrisisRecord,
    ) -> (&Arc<dyn repli_core::m365::M365>, &Arc<dyn repli_core::m365::DnsPublisher>) {
        match r.exercise {
            Some(_) => (&self.exercise_target.0, &self.exercise_target.1),
            None => (&self.m365, &self.dns),
        }
    }

    /// Whether the database takes writes now (readiness), and if not why: the free space
    /// against `database.min_free_mb`, and a write that is tried, not assumed (after a failed
    /// write, a real commit).
    pub async fn storage_status(&self) -> StorageStatus {
        let min = self.config.database.min_free_mb.saturating_mul(1024 * 1024);
        let free = self.store.free_bytes().ok();
        let low = free.is_some_and(|f| f < min);
        if self.store.writes_stopped().is_some() {
            // Writes are refused on purpose (the audit chain): readiness says so on its own.
            return StorageStatus {
                writable: false,
                reason: None,
                free_bytes: free,
                write_failures: self.store.write_failures(),
            };
        }
        let probe = if low {
            self.store.probe_write(self.clock.now()).await
        } else {
            self.store.writable(self.clock.now()).await
        };
        let reason = match (probe, free) {
            (Err(e), _) => Some(match e {
                repli_store::StoreError::Storage { fault, .. } => {
                    format!("storage_{}: a test write failed ({e})", fault.as_str())
                }
                other => format!("storage_write_failed: a test write failed ({other})"),
            }),
            (Ok(()), Some(f)) if low => Some(format!(
                "storage_low: {} MiB free on the database's filesystem, under the minimum of {} MiB (database.min_free_mb)",
                f / (1024 * 1024),
                self.config.database.min_free_mb
            )),
            (Ok(()), _) => None,
        };
        StorageStatus {
            writable: reason.is_none(),
            reason,
            free_bytes: free,
            write_failures: self.store.write_failures(),
        }
    }

    /// The audit keys this host trusts ([`trusted_pins`]).
    pub fn audit_pins(&self) -> Vec<repli_core::audit::KeyPin> {
        let own = self.store.checkpoint_public_key().and_then(|k| repli_core::audit::parse_public_key(&k));
        match own {
            Some(k) => trusted_pins(&self.config, &k),
            None => self.config.trusted_audit_keys(),
        }
    }

    /// Why writes are stopped (the audit chain did not verify), if they are.
    pub fn writes_stopped(&self) -> Option<String> {
        self.store.writes_stopped()
    }

    /// Signs the entries since the last checkpoint (a clean stop leaves no unsigned tail) and
    /// closes the database: the last thing a stopping daemon does.
    pub async fn close(&self) {
        if let Err(e) = self.keep_graph_pace().await {
            tracing::warn!(error = %e, "cannot keep the tenant's Graph pace at shutdown");
        }
        match self.store.checkpoint_now(self.clock.now()).await {
            Ok(Some(seq)) => tracing::info!(seq, "audit checkpoint signed at shutdown"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "audit checkpoint at shutdown failed"),
        }
        self.store.close().await;
    }

    /// Keeps what the Graph client learnt of the tenant's throttle since it was last kept (a
    /// 429's lesson, or a tenant that never throttled), audited, so a restarted daemon starts
    /// from it instead of learning it again while a kit waits. Nothing learnt: nothing written.
    pub async fn keep_graph_pace(&self) -> Result<(), repli_store::StoreError> {
        let pace = self.m365.pace();
        if pace.is_unknown() {
            return Ok(());
        }
        let tenant = engine::pace_tenant(&self.config);
        if self.store.graph_pace(&tenant).await?.is_some_and(|kept| !pace.differs_from(&kept)) {
            return Ok(());
        }
        if self.store.keep_graph_pace(&tenant, pace, self.clock.now()).await? {
            tracing::info!(tenant, limit_per_second = ?pace.limit_per_second, open = pace.open, batch_counted = pace.batch_counted, "tenant's Graph pace kept");
        }
        Ok(())
    }

    /// Asks the engine to look for work now.
    pub fn wake_engine(&self) {
        self.wake.notify_one();
    }

    /// The time zone of every date shown to people (the configured calendar's).
    pub fn time_zone(&self) -> &jiff::tz::TimeZone {
        self.calendar.time_zone()
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("config", &self.config)
            .field("simulation", &self.simulation)
            .finish_non_exhaustive()
    }
}

/// The application: the services and the engine they host.
#[derive(Clone, Debug)]
pub struct App {
    services: Services,
    pub engine: Arc<repli_engine::Engine>,
}

impl Deref for App {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

/// What one maintenance round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub checkpoint: Option<i64>,
    pub purged: Vec<repli_core::CrisisId>,
    /// Notifications queued, and delivery attempts made, in this round.
    pub queued: usize,
    pub attempted: usize,
}

impl Services {
    /// Signs a due audit checkpoint, erases expired contact details, queues SLA escalations and
    /// legal reminders, and delivers due notifications.
    pub async fn maintenance(&self) -> Result<Maintenance, repli_store::StoreError> {
        let now = self.clock.now();
        // Keeping the pace is an optimisation: its failure does not stop the round.
        if let Err(e) = self.keep_graph_pace().await {
            tracing::warn!(error = %e, "cannot keep the tenant's Graph pace");
        }
        let checkpoint = self.store.checkpoint_now(now).await?;
        let injects = exercises::deliver_injects(self, now).await?;
        if injects > 0 {
            tracing::info!(injects, "exercise injects delivered");
        }
        inventory::fill_waiting(self, now).await?;
        let queued = notify::queue(self, now).await?;
        let attempted = notify::deliver(self, now).await?;
        let retention = jiff::SignedDuration::from_hours(24 * i64::from(self.config.privacy.contact_retention_days));
        let cutoff = now.checked_sub(retention).unwrap_or(now);
        let purged = self.store.purge_personal_data(cutoff, now).await?;
        if !purged.is_empty() {
            tracing::info!(count = purged.len(), "contact details erased (RGPD retention)");
        }
        // A purge whose WAL could not be truncated (a reader was active) is finished here.
        self.store.truncate_wal_if_pending().await?;
        // The documents of erased crises (dossier, credential list, loan forms) name people:
        // their folder goes too. Checked every round, so a failed removal is retried.
        for id in self.store.purged_crises().await? {
            let dir = documents::documents_dir(self).join(id.as_str());
            if dir.exists() {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => tracing::info!(crisis = %id, "documents erased (RGPD retention)"),
                    Err(e) => tracing::error!(crisis = %id, error = %e, "cannot erase the documents"),
                }
            }
        }
        Ok(Maintenance { checkpoint, purged, queued, attempted })
    }
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read reference file {path}: {message}")]
    ReferenceFile { path: String, message: String },
    #[error("invalid reference data:\n{0}")]
    Reference(#[from] repli_core::ReferenceError),
    #[error("invalid SLA calendar: {0}")]
    Calendar(#[from] repli_core::CalendarError),
    #[error(transparent)]
    Store(#[from] repli_store::StoreError),
    #[error("audit signing key: {0}")]
    AuditKey(#[from] audit_key::KeyError),
    #[error("TOTP sealing key: {0}")]
    TotpKey(audit_key::KeyError),
    #[error("document templates:\n{0}")]
    DocumentTemplates(String),
    #[error(transparent)]
    Engine(#[from] engine::SetupError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("cannot repair the runs missing at start: {0}")]
    Repair(String),
}

fn read_reference(path: Option<&Path>, embedded: &'static str) -> Result<(String, String), StartError> {
    let Some(p) = path else {
        return Ok(("built-in".to_owned(), embedded.to_owned()));
    };
    let text = config::read_capped(p, MAX_REFERENCE_BYTES as u64).map_err(|e| StartError::ReferenceFile {
        path: p.display().to_string(),
        message: match e {
            config::CappedRead::TooLarge => format!("larger than {MAX_REFERENCE_BYTES} bytes"),
            config::CappedRead::Io(e) => e.to_string(),
        },
    })?;
    Ok((p.display().to_string(), text))
}

/// Reads and validates the communes and conventions named by the configuration.
pub fn load_reference(config: &Config) -> Result<(Vec<Commune>, Vec<Convention>), StartError> {
    let (src, text) = read_reference(config.reference.communes.as_deref(), EMBEDDED_COMMUNES)?;
    let communes = parse_communes(&format!("{src} communes"), &text)?;
    let (src, text) = read_reference(config.reference.conventions.as_deref(), EMBEDDED_CONVENTIONS)?;
    let conventions = parse_conventions(&format!("{src} conventions"), &text, &communes)?;
    Ok((communes, conventions))
}

/// Opens the store (signing audit checkpoints with the configured key) and brings its
/// reference data up to date with the configuration.
pub(crate) async fn open_store(config: &Config, now: jiff::Timestamp) -> Result<Store, StartError> {
    let (communes, conventions) = load_reference(config)?;
    // A key is made only with a new database: for an existing one (a restored snapshot, a
    // moved host), a missing key is an error, never a new random key signing its chain.
    let key = if config.database.path.exists() {
        audit_key::load(&config.audit_key_path())?
    } else {
        audit_key::load_or_create(&config.audit_key_path())?
    };
    let pins = trusted_pins(config, &key.verifying_key());
    let checkpointing = repli_store::Checkpointing::new(key, config.audit.checkpoint_every);
    let store = Store::open_with(&config.database.path, Some(checkpointing)).await?;
    check_free_space(config, &store);
    // The chain is verified from the last checkpoint a trusted key signed before anything is
    // written: on a break, replid serves reads and refuses writes until an operator decides.
    match store.verify_audit_trusted(&pins, true).await {
        Ok(s) => tracing::info!(entries = s.entries, last_seq = s.last_seq, "audit chain verified at start"),
        Err(repli_store::StoreError::Chain(e)) => match &config.audit.accept_break {
            Some(decision) if decision.seq != e.seq() => {
                tracing::error!(error = %e, accepted = decision.seq, "--accept-audit-break names another entry: writes stay stopped");
                store.stop_writes(format!(
                    "the audit chain does not verify: {e} (the accepted break was at entry {}, this one is at entry {})",
                    decision.seq,
                    e.seq()
                ));
                return Ok(store);
            }
            Some(decision) => {
                let operator = local::local_actor(&decision.operator);
                let seq = store.accept_chain_break(&e.to_string(), &decision.reason, By::User(&operator), now).await?;
                tracing::warn!(error = %e, seq, reason = %decision.reason, operator = %decision.operator,
                    "audit chain break accepted by the operator (recorded in the log)");
            }
            None => {
                tracing::error!(
                    error = %e,
                    "the audit chain does not verify: replid serves reads and refuses every write. \
                     Investigate (repli audit verify --db), restore a snapshot, or restart with \
                     --accept-audit-break SEQ:REASON (SEQ: the entry named here) to go on from here \
                     (recorded in the log)"
                );
                store.stop_writes(format!("the audit chain does not verify: {e}"));
                return Ok(store);
            }
        },
        Err(e) => return Err(e.into()),
    }
    let sync = store.sync_reference(&communes, &conventions, now).await?;
    if !sync.is_empty() {
        tracing::info!(?sync, "reference data updated");
    }
    Ok(store)
}

/// The audit keys this host trusts: the pinned ones (`audit.trusted_keys`), or else its own
/// signing key's (read from the key file, outside the data it verifies).
pub fn trusted_pins(config: &Config, own: &ed25519_dalek::VerifyingKey) -> Vec<repli_core::audit::KeyPin> {
    let pinned = config.trusted_audit_keys();
    if pinned.is_empty() { vec![repli_core::audit::KeyPin::Key(*own)] } else { pinned }
}

/// Says, at start, whether the database's filesystem has the configured free space.
fn check_free_space(config: &Config, store: &Store) {
    let min = config.database.min_free_mb;
    match store.free_bytes() {
        Ok(free) if free < min.saturating_mul(1024 * 1024) => tracing::error!(
            free_mb = free / (1024 * 1024),
            min_free_mb = min,
            path = %config.database.path.display(),
            "too little free space for the database: writes may fail, /readyz is not ready until space returns"
        ),
        Ok(free) => tracing::info!(free_mb = free / (1024 * 1024), min_free_mb = min, "free space for the database"),
        Err(e) => tracing::warn!(error = %e, "cannot read the free space of the database's filesystem"),
    }
}

/// A started application, and the embedded Graph simulator to stop with it.
#[derive(Debug)]
pub struct Started {
    pub app: App,
    pub simulator: Option<repli_graph_sim::Simulator>,
    /// The exercises' own simulator (`exercise.target = "simulator"`).
    pub exercise_simulator: Option<repli_graph_sim::Simulator>,
}

impl App {
    /// Checks the templates and playbooks, opens the store, sets Microsoft 365 up and builds the
    /// engine (not yet running: see [`repli_engine::Engine::run_forever`]).
    pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> Result<Started, StartError> {
        let calendar = Arc::new(BusinessCalendar::from_spec(&config.sla.calendar)?);
        if let Some(dir) = &config.documents.templates_dir {
            let errors = repli_docs::check_templates(dir);
            if !errors.is_empty() {
                return Err(StartError::DocumentTemplates(errors.join("\n")));
            }
        }
        let playbooks = repli_engine::engine_playbooks(config.engine.playbooks_dir.as_deref())
            .map_err(|e| engine::SetupError::Playbooks(e.join("\n")))?;
        let store = open_store(config, clock.now()).await?;
        let placeholders = config.documents.placeholders();
        if !placeholders.is_empty() {
            tracing::warn!(
                missing = %placeholders.join(", "),
                "the astreinte contacts printed in each DGS's dossier are placeholders: set [documents] astreinte_phone, astreinte_email and csirt_phone"
            );
        }
        let m365 = engine::m365_setup(config).await?;
        // What an earlier run learnt of the tenant's throttle: the first kit after a restart
        // does not pay a 429 to learn it again.
        if let Some(p) = store.graph_pace(&engine::pace_tenant(config)).await? {
            tracing::info!(limit_per_second = ?p.limit_per_second, open = p.open, batch_counted = p.batch_counted, "tenant's Graph pace recalled");
            m365.provider.recall_pace(p);
        }
        let exercise = engine::exercise_setup(config).await?;
        let wake = Arc::new(Notify::new());
        let services = Services {
            store: store.clone(),
            config: Arc::new(config.clone()),
            calendar,
            clock,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| StartError::Http(e.to_string()))?,
            documents: Arc::new(
                repli_docs::Documents::new(config.documents.templates_dir.as_deref())
                    .map_err(|e| StartError::DocumentTemplates(e.to_string()))?,
            ),
            m365: m365.provider.clone(),
            dns: m365.dns.clone(),
            exercise_target: (exercise.provider.clone(), exercise.dns.clone()),
            exercise_sim: exercise.simulator.as_ref().map(|s| s.base_url().to_owned()),
            simulation: m365.simulator.is_some(),
            zone_api: m365.simulator.as_ref().map(|s| s.base_url().to_string()),
            preflight: Arc::new(std::sync::RwLock::new(None)),
            preflight_organizer: m365.organizer.clone(),
            credential_sheets: Arc::new(tokio::sync::Mutex::new(())),
            telemetry: Arc::default(),
            auth_cache: Arc::default(),
            throttle: Arc::default(),
            tickets: Arc::default(),
            seal_key: Arc::new(
                second_factor::SealKey::load_or_create(&config.totp_key_path()).map_err(StartError::TotpKey)?,
            ),
            wake: wake.clone(),
        };
        let host = Arc::new(engine::DaemonHost::new(services.clone()));
        let engine = engine::engine(config, Arc::new(store), &m365, &exercise, host, playbooks, wake);
        let app = App { services, engine };
        app.repair_runs().await?;
        Ok(Started { app, simulator: m365.simulator, exercise_simulator: exercise.simulator })
    }

    /// Creates the runs whose crisis's state calls for them and that do not exist (a crash
    /// between a transition and its run, before both were one transaction), each audited as a
    /// repair. Returns what was repaired.
    pub async fn repair_runs(&self) -> Result<Vec<(repli_core::CrisisId, repli_core::run::PlaybookName)>, StartError> {
        let missing = self.store.missing_runs().await?;
        for (crisis, playbook) in &missing {
            let steps = self
                .engine
                .new_steps(crisis, *playbook)
                .await
                .map_err(|e| StartError::Repair(format!("{crisis} {playbook}: {e}")))?;
            if self.store.repair_run(crisis, *playbook, &steps, self.clock.now()).await? {
                tracing::warn!(crisis = %crisis, %playbook, "run missing for the crisis's state: created (repair)");
            }
        }
        Ok(missing)
    }

    /// The services, without the engine.
    pub fn services(&self) -> &Services {
        &self.services
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_reference_file_is_refused_not_read_forever() {
        let mut config = Config::default();
        config.reference.communes = Some("/dev/zero".into());
        let e = load_reference(&config).unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("larger than"), "{e}");
    }
}
