//! Web pages (French): sign-in with a password, server-side sessions, CSRF on every form.
//! Templates are handlebars in strict mode with HTML escaping, embedded in the binary.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use handlebars::Handlebars;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::{self, Authed};

/// Session cookie (HttpOnly, SameSite=Strict, Secure under TLS; no Max-Age: it dies with the
/// browser, and the server ends the session after [`SESSION_HOURS`] anyway).
pub const SESSION_COOKIE: &str = "repli_session";
/// Double-submit cookie protecting the sign-in form itself.
const LOGIN_CSRF_COOKIE: &str = "repli_login_csrf";
/// How long a web session lasts.
pub const SESSION_HOURS: i64 = 8;
/// Failed sign-ins allowed per login, and per client address, in [`THROTTLE_WINDOW_MINUTES`].
const MAX_FAILURES_PER_LOGIN: usize = 5;
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

pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../web/repli.css"))
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

fn random_hex() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

fn login_page(st: &AppState, jar: CookieJar, status: StatusCode, login: &str, error: Option<&str>) -> Response {
    let Ok(csrf) = random_hex() else {
        return error_page(st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    };
    let cookie = Cookie::build((LOGIN_CSRF_COOKIE, csrf.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/connexion");
    let page = render(
        st,
        status,
        "connexion",
        &json!({ "title": "Connexion", "csrf": csrf, "login": login, "error": error, "nav": null }),
    );
    (jar.add(cookie), page).into_response()
}

pub async fn show_login(State(st): State<AppState>, jar: CookieJar) -> Response {
    login_page(&st, jar, StatusCode::OK, "", None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    csrf: String,
}

/// A hash to verify against when the login is unknown, so that both paths take as long.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VsZGUtZmljdGlm$0b4KqXU9q0x3YkVqz4bQ3nZPj4nY2QvLkq1m3f6u3hA";

pub async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Response {
    let login: String = f.login.trim().chars().take(64).collect();
    let now = st.clock.now();
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &f.csrf) {
        return login_page(&st, jar, StatusCode::BAD_REQUEST, &login, Some("Formulaire expiré : veuillez réessayer."));
    }
    if !st.throttle.allowed(&login, &addr, now) {
        tracing::warn!(login = %login, addr = %addr, "sign-in throttled");
        let mut r = login_page(
            &st,
            jar,
            StatusCode::TOO_MANY_REQUESTS,
            &login,
            Some("Trop de tentatives : réessayez dans 15 minutes ou appelez l'astreinte de la métropole."),
        );
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("900"));
        return r;
    }
    let found = match st.store.password_for_login(&login).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "sign-in lookup failed");
            return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
        }
    };
    let phc = found.as_ref().map_or(DUMMY_PHC.to_owned(), |(_, p)| p.clone());
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc)).await.unwrap_or(false);
    let Some((user_id, _)) = found.filter(|_| ok) else {
        st.throttle.failed(&login, &addr, now);
        tracing::info!(login = %login, addr = %addr, "sign-in refused");
        return login_page(&st, jar, StatusCode::UNAUTHORIZED, &login, Some("Identifiant ou mot de passe incorrect."));
    };
    st.throttle.succeeded(&login);
    let (Ok(sid), Ok(csrf)) = (random_hex(), random_hex()) else {
        return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    };
    let expires = now.checked_add(SignedDuration::from_hours(SESSION_HOURS)).unwrap_or(now);
    if let Err(e) = st.store.create_session(user_id, &auth::token_hash(&sid), &csrf, expires, now).await {
        tracing::error!(error = %e, "cannot open a session");
        return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    }
    let cookie = Cookie::build((SESSION_COOKIE, sid))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/");
    let jar = jar.remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/connexion")).add(cookie);
    (jar, Redirect::to("/")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(expected)): Extension<SessionCsrf>,
    jar: CookieJar,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !same_secret(&expected, &f.csrf) {
        return error_page(
            &st,
            StatusCode::FORBIDDEN,
            "Action refusée",
            "Jeton de formulaire invalide : rechargez la page.",
        );
    }
    if let Some(c) = jar.get(SESSION_COOKIE)
        && let Err(e) = st.store.close_session(&auth::token_hash(c.value()), &a, st.clock.now()).await
    {
        tracing::error!(error = %e, "cannot close the session");
    }
    (jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Redirect::to("/connexion")).into_response()
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
