//! What every web page shares: the templates (handlebars in strict mode with HTML escaping,
//! embedded in the binary), rendering and error pages, the sign-in throttle, the client address
//! and the session's CSRF token. The sign-in handlers are in `signin`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use handlebars::Handlebars;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::AppState;

pub use crate::auth::SESSION_COOKIE;
/// Double-submit cookie protecting the sign-in form itself.
pub(crate) const LOGIN_CSRF_COOKIE: &str = "repli_login_csrf";
/// How long a web session lasts.
pub const SESSION_HOURS: i64 = 8;
/// Failed sign-ins allowed per login, and per client address, in [`THROTTLE_WINDOW_MINUTES`].
pub(crate) const MAX_FAILURES_PER_LOGIN: usize = 5;
const MAX_FAILURES_PER_ADDRESS: usize = 20;
const THROTTLE_WINDOW_MINUTES: i64 = 15;

/// The page templates.
pub fn templates() -> Result<Handlebars<'static>, handlebars::TemplateError> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    h.register_template_string("layout", include_str!("../web/layout.hbs"))?;
    h.register_template_string("connexion", include_str!("../web/connexion.hbs"))?;
    h.register_template_string("accueil", include_str!("../web/accueil.hbs"))?;
    h.register_template_string("erreur", include_str!("../web/erreur.hbs"))?;
    h.register_template_string("demande", include_str!("../web/demande.hbs"))?;
    h.register_template_string("crise", include_str!("../web/crise.hbs"))?;
    h.register_template_string("taches", include_str!("../web/taches.hbs"))?;
    h.register_template_string("inventaire", include_str!("../web/inventaire.hbs"))?;
    h.register_template_string("equipement", include_str!("../web/equipement.hbs"))?;
    h.register_template_string("journal", include_str!("../web/journal.hbs"))?;
    h.register_template_string("rapport-sla", include_str!("../web/rapport-sla.hbs"))?;
    Ok(h)
}

/// Renders a page; a template error is logged and shown as a plain French message.
pub fn render(st: &AppState, status: StatusCode, name: &str, data: &serde_json::Value) -> Response {
    match st.pages.render(name, data) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Erreur interne.").into_response()
        }
    }
}

/// An error page.
pub fn error_page(st: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    render(st, status, "erreur", &json!({ "title": title, "message": message, "nav": null }))
}

/// Failed sign-ins, remembered for a window (in memory: a restart forgets them).
#[derive(Debug, Default)]
pub struct Throttle(Mutex<HashMap<String, Vec<Timestamp>>>);

impl Throttle {
    fn recent(&self, key: &str, now: Timestamp) -> usize {
        let window = SignedDuration::from_mins(THROTTLE_WINDOW_MINUTES);
        let Ok(mut map) = self.0.lock() else { return usize::MAX };
        let list = map.entry(key.to_owned()).or_default();
        list.retain(|t| now.duration_since(*t) < window);
        list.len()
    }

    /// Whether a sign-in attempt for `login` from `addr` may be tried now.
    pub fn allowed(&self, login: &str, addr: &str, now: Timestamp) -> bool {
        self.recent(&format!("login:{login}"), now) < MAX_FAILURES_PER_LOGIN
            && self.recent(&format!("addr:{addr}"), now) < MAX_FAILURES_PER_ADDRESS
    }

    pub fn failed(&self, login: &str, addr: &str, now: Timestamp) {
        if let Ok(mut map) = self.0.lock() {
            map.entry(format!("login:{login}")).or_default().push(now);
            map.entry(format!("addr:{addr}")).or_default().push(now);
        }
    }

    pub fn succeeded(&self, login: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&format!("login:{login}"));
        }
    }
}

/// The client's address, when the server recorded it.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<crate::tls::PeerAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.0.ip().to_string());
        Ok(ClientAddr(addr))
    }
}

/// The CSRF token of the caller's web session (set by the authorization layer).
#[derive(Debug, Clone)]
pub struct SessionCsrf(pub String);

/// Compares two secrets without stopping at the first difference.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn random_hex() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_escape() {
        let h = templates().unwrap();
        let html =
            h.render("erreur", &json!({ "title": "<b>x</b>", "message": "<script>alert(1)</script> {{x}}" })).unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}"), "{html}");
        assert!(!html.contains("<script>"));
        // Strict mode: a missing variable is an error, not an empty string.
        assert!(h.render("accueil", &json!({ "name": "x" })).is_err());
    }

    #[test]
    fn throttle_counts_failures_per_login_and_address() {
        let t = Throttle::default();
        let now: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_LOGIN {
            assert!(t.allowed("anne", "10.0.0.1", now));
            t.failed("anne", "10.0.0.1", now);
        }
        assert!(!t.allowed("anne", "10.0.0.2", now));
        assert!(t.allowed("paul", "10.0.0.1", now));
        let later = now.checked_add(SignedDuration::from_mins(THROTTLE_WINDOW_MINUTES)).unwrap();
        assert!(t.allowed("anne", "10.0.0.1", later));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
