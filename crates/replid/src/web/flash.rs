//! The message a page shows after a form (« Entrée ajoutée à la main courante. », or why it was
//! refused), held by the server, never carried in the URL.
//!
//! A form handler answers [`redirect`] (a `303` to the page, the [`Flash`] riding in the
//! response's extensions, not in its headers); the authorization layer, which knows the
//! caller's web session, moves it into the [`FlashStore`] under that session and the target
//! path ([`keep_pending`]). The page at that path takes it once ([`Flashes`], an extractor),
//! and the next load of the page shows nothing. Text in a link's query string (`?ok=`,
//! `?erreur=`, `?champ=`) is never read: a link sent by someone else cannot put words on an
//! official page.
//!
//! Held in memory only, a few per session for a few minutes: a restart between a form and
//! its page loses the message, never the action (the page itself shows the new state). Only
//! pages behind a session redirect with a message; the public forms (sign-in, request,
//! password link) answer their page directly with what happened.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::LOCATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use crate::AppState;
use crate::web::SessionCsrf;

/// How long a message waits for its page.
const TTL: Duration = Duration::from_secs(10 * 60);
/// Messages held per session (the oldest goes first).
const PER_SESSION: usize = 8;
/// Sessions holding messages at once; beyond, expired ones are dropped, then new messages.
const SESSIONS: usize = 10_000;

/// Whether the form did what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Done: shown as a confirmation.
    Done,
    /// Refused or failed: shown as an error.
    Refused,
}

/// A form of the crisis page that shows its error beside it (anchor `#<section>-erreur`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Loans.
    Prets,
    /// The SLA's suspensions.
    Delai,
    /// The legal clocks.
    Echeances,
    /// Returns (check-in by scan).
    Retour,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Prets => "prets",
            Section::Delai => "delai",
            Section::Echeances => "echeances",
            Section::Retour => "retour",
        }
    }
}

/// One message, written by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub level: Level,
    pub text: String,
    /// Shown beside this form rather than at the top of the page.
    pub section: Option<Section>,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Self {
        Flash { level: Level::Done, text: text.into(), section: None }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Flash { level: Level::Refused, text: text.into(), section: None }
    }

    /// The same message, shown beside `section`'s form.
    pub fn beside(mut self, section: Section) -> Self {
        self.section = Some(section);
        self
    }
}

/// A flash on its way from a form's answer to the store (a response extension).
#[derive(Debug, Clone)]
struct Pending(Flash);

/// After a form: back to `path` (a fragment allowed: `/crises/X#prets-erreur`), the message
/// held for the page.
pub fn redirect(path: &str, flash: Flash) -> Response {
    let mut r = Redirect::to(path).into_response();
    r.extensions_mut().insert(Pending(flash));
    r
}

struct Held {
    path: String,
    flash: Flash,
    at: Instant,
}

/// The messages waiting for their page, per session.
#[derive(Default)]
pub struct FlashStore {
    held: Mutex<HashMap<String, Vec<Held>>>,
}

impl std::fmt::Debug for FlashStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashStore").finish_non_exhaustive()
    }
}

/// The session's key in the store: a digest of its CSRF token (a per-session secret), so the
/// store holds no secret.
fn key(session: &str) -> String {
    repli_app::accounts::token_hash(session)
}

/// The page a redirect goes to: its path, without query or fragment.
fn page_path(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

impl FlashStore {
    /// Holds `flash` for the session's next load of `path`.
    pub fn keep(&self, session: &str, path: &str, flash: Flash) {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = key(session);
        if !held.contains_key(&k) && held.len() >= SESSIONS {
            held.retain(|_, v| {
                v.retain(|h| now.duration_since(h.at) < TTL);
                !v.is_empty()
            });
            if held.len() >= SESSIONS {
                tracing::warn!("too many sessions holding page messages: this one is dropped");
                return;
            }
        }
        let list = held.entry(k).or_default();
        list.retain(|h| now.duration_since(h.at) < TTL);
        if list.len() >= PER_SESSION {
            list.remove(0);
        }
        list.push(Held { path: page_path(path).to_owned(), flash, at: now });
    }

    /// Takes the session's messages for `path` (once: they are gone afterwards).
    pub fn take(&self, session: &str, path: &str) -> Vec<Flash> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = key(session);
        let Some(list) = held.get_mut(&k) else { return Vec::new() };
        let mut taken = Vec::new();
        list.retain(|h| {
            let fresh = now.duration_since(h.at) < TTL;
            if fresh && h.path == path {
                taken.push(h.flash.clone());
                false
            } else {
                fresh
            }
        });
        if list.is_empty() {
            held.remove(&k);
        }
        taken
    }
}

/// Called by the authorization layer on a page's answer: a [`redirect`]'s message goes into
/// the store under the caller's session. Without a session (a bearer token, which opens no
/// page), it is dropped.
pub fn keep_pending(st: &AppState, session: Option<&str>, resp: &mut Response) {
    let Some(Pending(flash)) = resp.extensions_mut().remove::<Pending>() else { return };
    let target = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok());
    match (session, target) {
        (Some(s), Some(t)) => st.flashes.keep(s, t, flash),
        _ => tracing::debug!("page message without a session or a target: dropped"),
    }
}

/// The messages held for this page and session, taken from the store as the page is read.
#[derive(Debug, Clone, Default)]
pub struct Flashes(pub Vec<Flash>);

impl Flashes {
    /// The last confirmation for the top of the page.
    pub fn done(&self) -> Option<String> {
        self.0.iter().rev().find(|f| f.level == Level::Done && f.section.is_none()).map(|f| f.text.clone())
    }

    /// The last error for the top of the page.
    pub fn refused(&self) -> Option<String> {
        self.0.iter().rev().find(|f| f.level == Level::Refused && f.section.is_none()).map(|f| f.text.clone())
    }

    /// The same messages, those about a form the page does not show moved to its top.
    pub fn placed(mut self, shown: impl Fn(Section) -> bool) -> Self {
        for f in &mut self.0 {
            if f.section.is_some_and(|s| !shown(s)) {
                f.section = None;
            }
        }
        self
    }

    /// The last message of success shown beside `section`'s form (what a scan did).
    pub fn done_beside(&self, section: Section) -> Option<String> {
        self.0.iter().rev().find(|f| f.level == Level::Done && f.section == Some(section)).map(|f| f.text.clone())
    }

    /// The last error shown beside `section`'s form.
    pub fn beside(&self, section: Section) -> Option<String> {
        self.0.iter().rev().find(|f| f.level == Level::Refused && f.section == Some(section)).map(|f| f.text.clone())
    }
}

impl FromRequestParts<AppState> for Flashes {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let Some(SessionCsrf(session)) = parts.extensions.get::<SessionCsrf>() else { return Ok(Flashes::default()) };
        Ok(Flashes(st.flashes.take(session, parts.uri.path())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_shown_once_on_its_own_page_of_its_own_session() {
        let s = FlashStore::default();
        s.keep(
            "session-a",
            "/crises/13005-2026-001#prets-erreur",
            Flash::error("Aucun équipement").beside(Section::Prets),
        );
        s.keep("session-a", "/crises/13005-2026-001", Flash::ok("Entrée ajoutée."));
        // Another session, another page: nothing.
        assert!(s.take("session-b", "/crises/13005-2026-001").is_empty());
        assert!(s.take("session-a", "/inventaire").is_empty());
        let got = Flashes(s.take("session-a", "/crises/13005-2026-001"));
        assert_eq!(got.beside(Section::Prets).as_deref(), Some("Aucun équipement"));
        assert_eq!(got.done().as_deref(), Some("Entrée ajoutée."));
        assert_eq!(got.refused(), None);
        let moved = got.clone().placed(|s| s != Section::Prets);
        assert_eq!((moved.beside(Section::Prets), moved.refused().as_deref()), (None, Some("Aucun équipement")));
        // Taken once.
        assert!(s.take("session-a", "/crises/13005-2026-001").is_empty());
    }

    #[test]
    fn a_session_holds_a_bounded_number_of_messages() {
        let s = FlashStore::default();
        for i in 0..(PER_SESSION + 5) {
            s.keep("s", "/p", Flash::ok(format!("m{i}")));
        }
        let got = s.take("s", "/p");
        assert_eq!(got.len(), PER_SESSION);
        assert_eq!(got.last().map(|f| f.text.as_str()), Some(format!("m{}", PER_SESSION + 4).as_str()));
    }
}
