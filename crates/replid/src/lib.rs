//! replid: the daemon. It owns the store, serves the versioned JSON API under `/api/v1`, and
//! (as later issues land) runs the playbook engine and the scheduler.
//!
//! The same [`Daemon`] runs as the `replid` binary, inside `repli demo`, and inside the
//! end-to-end tests, so all three exercise the real server on a real socket and SQLite file.

pub mod api;
pub mod audit_key;
pub mod auth;
pub mod clock;
pub mod config;
pub mod documents;
pub mod engine;
pub mod error;
pub mod inventory;
mod notify;
pub mod pages;
pub mod steps;
pub mod tls;
mod users;
mod views;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request, header};
use repli_core::reference::{MAX_REFERENCE_BYTES, parse_communes, parse_conventions};
use repli_core::{BusinessCalendar, Commune, Convention};
pub use repli_store::{By, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::clock::Clock;
use crate::config::Config;

/// The communes of the métropole, as shipped in `inventory/communes.csv`.
pub const EMBEDDED_COMMUNES: &str = include_str!("../../../inventory/communes.csv");
/// The signed conventions, as shipped in `inventory/conventions.csv`.
pub const EMBEDDED_CONVENTIONS: &str = include_str!("../../../inventory/conventions.csv");

/// Content-Security-Policy of every response: no script, no inline style, nothing from
/// elsewhere, no framing.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub calendar: Arc<BusinessCalendar>,
    pub clock: Arc<dyn Clock>,
    /// For webhook notifications.
    pub http: reqwest::Client,
    pub pages: Arc<handlebars::Handlebars<'static>>,
    /// The procedures pack's templates, compiled once (after the start-up check).
    pub documents: Arc<repli_docs::Documents>,
    pub throttle: Arc<web::Throttle>,
    /// Cookies get `Secure` when replid serves TLS.
    pub secure_cookies: bool,
    /// Microsoft 365 (the real Graph client; see [`engine::m365_setup`]).
    pub m365: Arc<dyn repli_m365::M365>,
    /// True when Microsoft 365 is an embedded simulator (outputs say SIMULATION).
    pub simulation: bool,
    zone_api: Option<String>,
    pub engine: Arc<repli_engine::Engine>,
    /// Credential sheets are issued one at a time ([`documents`]).
    pub credential_sheets: Arc<tokio::sync::Mutex<()>>,
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

impl AppState {
    /// Signs a due audit checkpoint, erases expired contact details, queues SLA escalations and
    /// legal reminders, and delivers due notifications.
    pub async fn maintenance(&self) -> Result<Maintenance, repli_store::StoreError> {
        let now = self.clock.now();
        let checkpoint = self.store.checkpoint_now(now).await?;
        inventory::fill_waiting(self, now).await?;
        let queued = notify::queue(self, now).await?;
        let attempted = notify::deliver(self, now).await?;
        let retention = jiff::SignedDuration::from_hours(24 * i64::from(self.config.privacy.contact_retention_days));
        let cutoff = now.checked_sub(retention).unwrap_or(now);
        let purged = self.store.purge_personal_data(cutoff, now).await?;
        if !purged.is_empty() {
            tracing::info!(count = purged.len(), "contact details erased (RGPD retention)");
        }
        Ok(Maintenance { checkpoint, purged, queued, attempted })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read reference file {path}: {message}")]
    ReferenceFile { path: String, message: String },
    #[error("invalid reference data:\n{0}")]
    Reference(#[from] repli_core::ReferenceError),
    #[error("invalid SLA calendar: {0}")]
    Calendar(#[from] repli_core::CalendarError),
    #[error(transparent)]
    Store(#[from] repli_store::StoreError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    AuditKey(#[from] audit_key::KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("document templates:\n{0}")]
    DocumentTemplates(String),
    #[error("page templates: {0}")]
    Templates(#[from] handlebars::TemplateError),
    #[error(transparent)]
    Engine(#[from] engine::SetupError),
}

impl AppState {
    /// The zone API of the embedded Graph simulator (it stands in for the registrar too), when
    /// Microsoft 365 is simulated in-process.
    pub fn m365_zone_api(&self) -> Option<String> {
        self.zone_api.clone()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("simulation", &self.simulation)
            .finish_non_exhaustive()
    }
}

fn read_reference(path: Option<&Path>, embedded: &'static str) -> Result<(String, String), DaemonError> {
    let Some(p) = path else {
        return Ok(("built-in".to_owned(), embedded.to_owned()));
    };
    let err = |message: String| DaemonError::ReferenceFile { path: p.display().to_string(), message };
    let len = std::fs::metadata(p).map_err(|e| err(e.to_string()))?.len();
    if len > MAX_REFERENCE_BYTES as u64 {
        return Err(err(format!("larger than {MAX_REFERENCE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
    Ok((p.display().to_string(), text))
}

/// Reads and validates the communes and conventions named by the configuration.
pub fn load_reference(config: &Config) -> Result<(Vec<Commune>, Vec<Convention>), DaemonError> {
    let (src, text) = read_reference(config.reference.communes.as_deref(), EMBEDDED_COMMUNES)?;
    let communes = parse_communes(&format!("{src} communes"), &text)?;
    let (src, text) = read_reference(config.reference.conventions.as_deref(), EMBEDDED_CONVENTIONS)?;
    let conventions = parse_conventions(&format!("{src} conventions"), &text, &communes)?;
    Ok((communes, conventions))
}

/// Opens the store (signing audit checkpoints with the configured key) and brings its
/// reference data up to date with the configuration.
pub async fn open_store(config: &Config, now: jiff::Timestamp) -> Result<Store, DaemonError> {
    let (communes, conventions) = load_reference(config)?;
    let key = audit_key::load_or_create(&config.audit_key_path())?;
    let checkpointing = repli_store::Checkpointing::new(key, config.audit.checkpoint_every);
    let store = Store::open_with(&config.database.path, Some(checkpointing)).await?;
    let sync = store.sync_reference(&communes, &conventions, now).await?;
    if !sync.is_empty() {
        tracing::info!(?sync, "reference data updated");
    }
    Ok(store)
}

/// The application: routes plus the layers every request goes through.
pub fn app(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), user = tracing::field::Empty)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    api::routes(&state)
        .with_state(state)
        .layer(DefaultBodyLimit::max(repli_proto::MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(trace)
}

/// Runs [`AppState::maintenance`] every `period`.
async fn maintenance_timer(state: AppState, period: std::time::Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = state.maintenance().await {
            tracing::error!(error = %e, "maintenance failed");
        }
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), DaemonError>>,
    tls: bool,
}

impl Daemon {
    /// Opens the store, binds `config.server.listen` (port 0 picks a free port) and serves
    /// until [`Daemon::shutdown`].
    pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, DaemonError> {
        let (tx, rx) = oneshot::channel::<()>();
        Self::start_with_shutdown(config, clock, async move {
            let _ = rx.await;
        })
        .await
        .map(|mut d| {
            d.shutdown = Some(tx);
            d
        })
    }

    /// Like [`Daemon::start`], stopping gracefully when `signal` completes.
    pub async fn start_with_shutdown(
        config: &Config,
        clock: Arc<dyn Clock>,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self, DaemonError> {
        let calendar = Arc::new(BusinessCalendar::from_spec(&config.sla.calendar)?);
        if let Some(dir) = &config.documents.templates_dir {
            let errors = repli_docs::check_templates(dir);
            if !errors.is_empty() {
                return Err(DaemonError::DocumentTemplates(errors.join("\n")));
            }
        }
        let playbooks = engine::load_playbooks(config)?;
        let store = open_store(config, clock.now()).await?;
        let m365 = engine::m365_setup(config).await?;
        let host = Arc::new(engine::DaemonHost::default());
        let engine = engine::engine(config, store.clone(), &m365, host.clone(), playbooks);
        let tls = match &config.server.tls {
            Some(t) => Some(tls::server_config(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| DaemonError::Bind { addr: config.server.listen, source })?;
        let addr = listener.local_addr().map_err(|source| DaemonError::Bind { addr: config.server.listen, source })?;
        let state = AppState {
            store: store.clone(),
            config: Arc::new(config.clone()),
            calendar,
            clock: clock.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| DaemonError::Serve(std::io::Error::other(e.to_string())))?,
            pages: Arc::new(web::templates()?),
            documents: Arc::new(
                repli_docs::Documents::new(config.documents.templates_dir.as_deref())
                    .map_err(|e| DaemonError::DocumentTemplates(e.to_string()))?,
            ),
            throttle: Arc::new(web::Throttle::default()),
            secure_cookies: tls.is_some(),
            m365: m365.provider.clone(),
            simulation: m365.simulator.is_some(),
            zone_api: m365.simulator.as_ref().map(|s| s.base_url().to_string()),
            engine: engine.clone(),
            credential_sheets: Arc::new(tokio::sync::Mutex::new(())),
        };
        host.attach(state.clone());
        // Resumes every unfinished run found in the database, then keeps scheduling.
        let (engine_stop, engine_stopped) = oneshot::channel::<()>();
        let engine_task = tokio::spawn(engine.clone().run_forever(async {
            let _ = engine_stopped.await;
        }));
        let router = app(state.clone());
        let maintenance = tokio::spawn(maintenance_timer(
            state.clone(),
            std::time::Duration::from_secs(60 * u64::from(config.audit.checkpoint_minutes)),
        ));
        let service = router.into_make_service_with_connect_info::<tls::PeerAddr>();
        let tls_on = tls.is_some();
        let task = tokio::spawn(async move {
            let served = match tls {
                Some(cfg) => {
                    let listener = tls::TlsListener::new(listener, cfg).map_err(DaemonError::Serve)?;
                    axum::serve(listener, service).with_graceful_shutdown(signal).await
                }
                None => axum::serve(listener, service).with_graceful_shutdown(signal).await,
            };
            maintenance.abort();
            let _ = engine_stop.send(());
            let _ = engine_task.await;
            host.detach();
            if let Some(sim) = m365.simulator {
                sim.stop().await;
            }
            store.close().await;
            served.map_err(DaemonError::Serve)
        });
        tracing::info!(%addr, db = %config.database.path.display(), "replid listening");
        Ok(Self { addr, state, shutdown: None, task, tls: tls_on })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://localhost:PORT` under TLS (certificates name hosts).
    pub fn url(&self) -> String {
        if self.tls { format!("https://localhost:{}", self.addr.port()) } else { format!("http://{}", self.addr) }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish, closes the database.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops (after its shutdown signal).
    pub async fn wait(self) -> Result<(), DaemonError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(DaemonError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}
