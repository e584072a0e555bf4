//! The daemon: the application started, its router served on the configured address (TLS
//! when configured), the engine and the maintenance timer running beside it, and a clean stop
//! (the engine stopped, the audit tail signed, the database closed).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::startup::{refusals, tls};
use crate::{AppState, WebApp, web};

/// Clears the engine's running flag when its task ends, by return or by panic.
struct EngineDown(Arc<std::sync::atomic::AtomicBool>);

impl Drop for EngineDown {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Start(#[from] repli_app::StartError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("page templates: {0}")]
    Templates(#[from] handlebars::TemplateError),
}

/// Runs [`repli_app::Services::maintenance`] every `period`.
async fn maintenance_timer(state: repli_app::Services, period: std::time::Duration) {
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
        let started = repli_app::App::start(config, clock.clone()).await?;
        let (app, simulators) = (started.app, [started.simulator, started.exercise_simulator]);
        let services = app.services().clone();
        let engine = app.engine.clone();
        let tls = match &config.server.tls {
            Some(t) => Some(tls::server_config(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| DaemonError::Bind { addr: config.server.listen, source })?;
        let addr = listener.local_addr().map_err(|source| DaemonError::Bind { addr: config.server.listen, source })?;
        let state = AppState(Arc::new(WebApp {
            app,
            pages: Arc::new(web::templates()?),
            secure_cookies: tls.is_some(),
            engine_running: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            flashes: web::flash::FlashStore::default(),
        }));
        // Resumes every unfinished run found in the database, then keeps scheduling.
        let (engine_stop, engine_stopped) = oneshot::channel::<()>();
        let down = EngineDown(state.engine_running.clone());
        let engine_task = tokio::spawn(async move {
            let _down = down;
            engine
                .run_forever(async {
                    let _ = engine_stopped.await;
                })
                .await
        });
        let router = crate::app(state.clone());
        let answers = Arc::new(refusals::Answers::render(&router).await);
        let maintenance = tokio::spawn(maintenance_timer(
            state.app.services().clone(),
            std::time::Duration::from_secs(60 * u64::from(config.audit.checkpoint_minutes)),
        ));
        let preflight = tokio::spawn(repli_app::preflight::daily(state.app.services().clone()));
        let backups = tokio::spawn(repli_app::backup::schedule(state.app.services().clone()));
        let service = router.into_make_service_with_connect_info::<tls::PeerAddr>();
        let tls_on = tls.is_some();
        let task = tokio::spawn(async move {
            let served = match tls {
                Some(cfg) => {
                    let listener = tls::TlsListener::new(listener, cfg).map_err(DaemonError::Serve)?;
                    let listener = refusals::GuardedListener::new(listener, answers);
                    axum::serve(listener, service).with_graceful_shutdown(signal).await
                }
                None => {
                    let listener = refusals::GuardedListener::new(listener, answers);
                    axum::serve(listener, service).with_graceful_shutdown(signal).await
                }
            };
            maintenance.abort();
            preflight.abort();
            backups.abort();
            let _ = engine_stop.send(());
            let _ = engine_task.await;
            for sim in simulators.into_iter().flatten() {
                sim.stop().await;
            }
            services.close().await;
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
