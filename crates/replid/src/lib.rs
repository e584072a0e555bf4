//! replid: the daemon, the HTTP edge of the operations layer (`repli-app`). It serves the
//! versioned JSON API under `/api/v1` and the French web pages, runs the engine and the
//! maintenance timer. Handlers parse, call one operation, and render.
//!
//! The same [`Daemon`] runs as the `replid` binary, inside `replid demo`, and inside the
//! end-to-end tests, so all three exercise the real server on a real socket and SQLite file.

mod api;
pub mod demo;
pub mod http;
pub mod startup;
pub mod web;

pub use http::{auth, error, openapi, request_id, routes, spec};
pub use startup::{logging, tls};

pub use repli_app::{
    By, EMBEDDED_COMMUNES, EMBEDDED_CONVENTIONS, Maintenance, audit_key, backup, clock, config, load_reference,
};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request, header};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::config::Config;

/// Content-Security-Policy of every response: no script, no inline style, nothing from
/// elsewhere, no framing.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every request handler shares, behind one `Arc` (a request clones it a few times).
#[derive(Clone)]
pub struct AppState(Arc<WebApp>);

impl std::ops::Deref for AppState {
    type Target = WebApp;
    fn deref(&self) -> &WebApp {
        &self.0
    }
}

/// The application, and what only the web edge needs.
pub struct WebApp {
    pub app: repli_app::App,
    pub pages: Arc<handlebars::Handlebars<'static>>,
    /// Cookies get `Secure` when replid serves TLS.
    pub secure_cookies: bool,
    /// False once the engine's task has ended (stopped or panicked): `/readyz` says so.
    pub engine_running: Arc<std::sync::atomic::AtomicBool>,
}

/// Clears the engine's running flag when its task ends, by return or by panic.
struct EngineDown(Arc<std::sync::atomic::AtomicBool>);

impl Drop for EngineDown {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl std::ops::Deref for WebApp {
    type Target = repli_app::App;
    fn deref(&self) -> &repli_app::App {
        &self.app
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for WebApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApp").field("app", &self.app).finish_non_exhaustive()
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

/// A request path as logged: a one-time password link's secret is replaced by `…` (secrets are
/// never logged; the path still says which page it was).
pub fn logged_path(path: &str) -> &str {
    match path.strip_prefix("/mot-de-passe/") {
        Some(secret) if !secret.is_empty() => "/mot-de-passe/…",
        _ => path,
    }
}

/// The application: routes plus the layers every request goes through.
pub fn app(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            let id = req.headers().get(&request_id::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %logged_path(req.uri().path()), user = tracing::field::Empty)
        })
        .on_response(access_log);
    routes::routes(&state)
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::request_limits))
        .with_state(state)
        .layer(DefaultBodyLimit::max(repli_proto::MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(trace)
        .layer(axum::middleware::from_fn(request_id::layer))
}

/// Requests slower than this are logged at WARN whatever their status.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(2);

/// One access-log line per request that matters: server errors at ERROR, slow requests at
/// WARN; successes (probes included) and client errors at DEBUG — an API refusal already has
/// its INFO line with its problem code (`error.rs`), and an unauthenticated client cannot
/// fill the disk with `/healthz`.
fn access_log(resp: &axum::http::Response<axum::body::Body>, latency: std::time::Duration, _: &tracing::Span) {
    let status = resp.status().as_u16();
    let ms = latency.as_millis() as u64;
    if status >= 500 {
        tracing::error!(status, ms, "request failed");
    } else if latency >= SLOW_REQUEST {
        tracing::warn!(status, ms, "slow request");
    } else if status >= 400 {
        tracing::debug!(status, ms, "request refused");
    } else {
        tracing::debug!(status, ms, "request served");
    }
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
        let maintenance = tokio::spawn(maintenance_timer(
            state.app.services().clone(),
            std::time::Duration::from_secs(60 * u64::from(config.audit.checkpoint_minutes)),
        ));
        let preflight = tokio::spawn(repli_app::preflight::daily(state.app.services().clone()));
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
            preflight.abort();
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
