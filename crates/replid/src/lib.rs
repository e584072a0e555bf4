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
pub use startup::daemon::{Daemon, DaemonError};
pub use startup::{logging, tls};

pub use repli_app::{
    By, EMBEDDED_COMMUNES, EMBEDDED_CONVENTIONS, Maintenance, audit_key, backup, clock, config, load_reference,
};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// Content-Security-Policy of every response: no script, no inline style, nothing from
/// elsewhere, no framing.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Strict-Transport-Security when replid serves TLS: a year, subdomains included (a browser
/// that once reached Repli over HTTPS never falls back to plain HTTP for it).
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Features no page uses, refused to any content (camera, microphone, location, payment…).
pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=()";

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
    /// The messages pages show after a form, held per session (`web::flash`).
    pub flashes: web::flash::FlashStore,
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
    let tls = state.secure_cookies;
    let router = routes::routes(&state)
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::request_limits))
        .with_state(state)
        .layer(DefaultBodyLimit::max(repli_proto::MAX_BODY_BYTES));
    let router = if tls {
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ))
    } else {
        router
    };
    router
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(PERMISSIONS_POLICY),
        ))
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
