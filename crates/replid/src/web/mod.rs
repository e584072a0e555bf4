//! The French web pages, one module per area (each declaring its routes), and what every page
//! shares: the templates (handlebars in strict mode with HTML escaping, embedded in the
//! binary), rendering and error pages, the client address, the session's CSRF token, the
//! confirmation page of destructive actions, and small helpers (a form's crisis, redirects with
//! a message, French instants). An area module imports this module, never another area.

pub(crate) mod accounts;
pub(crate) mod confirm;
pub(crate) mod crisis;
pub(crate) mod dns;
pub(crate) mod exercises;
pub mod flash;
pub(crate) mod home;
pub(crate) mod inventory;
pub(crate) mod journal;
pub(crate) mod m365;
pub(crate) mod notifications;
pub(crate) mod request;
pub(crate) mod retex;
pub(crate) mod sheets;
pub(crate) mod signin;
pub(crate) mod sla;
pub(crate) mod tasks;
pub(crate) mod view;

use std::collections::BTreeMap;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use handlebars::Handlebars;
use jiff::Timestamp;
use repli_app::AppError;
use repli_core::{Actor, Destructive, Role, SlaStatus};
use serde::Serialize;
use serde_json::json;

use crate::AppState;

pub use crate::http::auth::SESSION_COOKIE;
/// Double-submit cookie protecting the sign-in form itself.
pub(crate) const LOGIN_CSRF_COOKIE: &str = "repli_login_csrf";
/// The cookie holding a sign-in's ticket between the password and the second factor.
pub(crate) const SECOND_FACTOR_COOKIE: &str = "repli_2fa";

/// The page templates.
pub fn templates() -> Result<Handlebars<'static>, handlebars::TemplateError> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    h.register_template_string("layout", include_str!("../../web/layout.hbs"))?;
    h.register_template_string("connexion", include_str!("../../web/connexion.hbs"))?;
    h.register_template_string("connexion-code", include_str!("../../web/connexion-code.hbs"))?;
    h.register_template_string("connexion-enrolement", include_str!("../../web/connexion-enrolement.hbs"))?;
    h.register_template_string("codes-secours", include_str!("../../web/codes-secours.hbs"))?;
    h.register_template_string("accueil", include_str!("../../web/accueil.hbs"))?;
    h.register_template_string("erreur", include_str!("../../web/erreur.hbs"))?;
    h.register_template_string("demande", include_str!("../../web/demande.hbs"))?;
    h.register_template_string("crise", include_str!("../../web/crise.hbs"))?;
    h.register_template_string("notifications", include_str!("../../web/notifications.hbs"))?;
    h.register_template_string("accessibilite", include_str!("../../web/accessibilite.hbs"))?;
    h.register_template_string("inventaire-import", include_str!("../../web/inventaire-import.hbs"))?;
    h.register_template_string("inventaire-lot", include_str!("../../web/inventaire-lot.hbs"))?;
    h.register_template_string("etiquettes", include_str!("../../web/etiquettes.hbs"))?;
    h.register_template_string("comptes", include_str!("../../web/comptes.hbs"))?;
    h.register_template_string("retex", include_str!("../../web/retex.hbs"))?;
    h.register_template_string("compte-cree", include_str!("../../web/compte-cree.hbs"))?;
    h.register_template_string("lien", include_str!("../../web/lien.hbs"))?;
    h.register_template_string("mot-de-passe", include_str!("../../web/mot-de-passe.hbs"))?;
    h.register_template_string("demande-enregistree", include_str!("../../web/demande-enregistree.hbs"))?;
    h.register_template_string("confirmer", include_str!("../../web/confirmer.hbs"))?;
    h.register_template_string("fiches", include_str!("../../web/fiches.hbs"))?;
    h.register_template_string("zone-dns", include_str!("../../web/zone-dns.hbs"))?;
    h.register_template_string("taches", include_str!("../../web/taches.hbs"))?;
    h.register_template_string("m365", include_str!("../../web/m365.hbs"))?;
    h.register_template_string("exercices", include_str!("../../web/exercices.hbs"))?;
    h.register_template_string("inventaire", include_str!("../../web/inventaire.hbs"))?;
    h.register_template_string("equipement", include_str!("../../web/equipement.hbs"))?;
    h.register_template_string("journal", include_str!("../../web/journal.hbs"))?;
    h.register_template_string("rapport-sla", include_str!("../../web/rapport-sla.hbs"))?;
    Ok(h)
}

/// Renders a page; a template error is logged and shown as a plain French message.
pub fn render(st: &AppState, status: StatusCode, name: &str, data: &serde_json::Value) -> Response {
    // Ops see, on every page, the contacts still to configure (they are printed for the DGS).
    let mut data = data.clone();
    if let Some(obj) = data.as_object_mut() {
        let placeholders = st.config.documents.placeholders();
        let ops = obj.get("nav").is_some_and(|n| n["ops"] == json!(true) || n["admin"] == json!(true));
        let warning = (ops && !placeholders.is_empty()).then(|| placeholders.join(", "));
        obj.insert("a_configurer".into(), json!(warning));
        // Ops see, on every page, that Microsoft 365 or the DNS is simulated (configuration).
        obj.insert("simulation".into(), json!(ops.then(|| st.config.m365.simulation_fr()).flatten()));
        // Everyone sees, at the foot of every page, how to reach the astreinte (as configured).
        obj.insert("pied_astreinte".into(), footer_astreinte(&st.config.documents));
    }
    match st.pages.render(name, &data) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Erreur interne.").into_response()
        }
    }
}

/// The astreinte's contacts for the footer of every page: the number as written, a `tel:`
/// link a phone can dial (digits and `+` only), the address; null while both are placeholders.
fn footer_astreinte(d: &repli_app::config::DocumentsConfig) -> serde_json::Value {
    let phone = d.astreinte_phone().map(repli_core::fr::phone);
    let tel = phone.as_ref().map(|p| p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>());
    let email = d.astreinte_email();
    if phone.is_none() && email.is_none() {
        return serde_json::Value::Null;
    }
    json!({ "phone": phone, "tel": tel, "email": email })
}

/// An instant in French, in the calendar's time zone (« — » when there is none).
pub fn when(st: &AppState, t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".to_string(), |t| repli_core::fr::datetime(t, &st.time_zone().clone()))
}

/// What the error page shows (public: no menu, whoever asked).
#[derive(Debug, Serialize)]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    nav: Option<view::Nav>,
    /// The request id, for ops to find the logs.
    reference: Option<String>,
}

/// An error page.
pub fn error_page(st: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    let reference = crate::http::request_id::current();
    let page = ErrorPage { title, message, nav: None, reference };
    match serde_json::to_value(&page) {
        Ok(data) => render(st, status, "erreur", &data),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Erreur interne.").into_response(),
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
            .get::<ConnectInfo<crate::startup::tls::PeerAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.0.ip().to_string());
        Ok(ClientAddr(addr))
    }
}

/// The CSRF token of the caller's web session (set by the authorization layer).
#[derive(Debug, Clone)]
pub struct SessionCsrf(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_lists_read_from_text() {
        let rows = agents_from_text("Nom;Service\nAnne Martin ; Accueil\n\nLuc, État civil\nSeul\n");
        assert_eq!(
            rows,
            [
                ("Anne Martin".into(), "Accueil".into()),
                ("Luc".into(), "État civil".into()),
                ("Seul".into(), String::new())
            ]
        );
    }

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
}

// ---------------------------------------------------------------- shared by the pages

pub fn role_fr(r: Role) -> &'static str {
    match r {
        Role::Admin => "administrateur",
        Role::Ops => "exploitation (métropole)",
        Role::Dgs => "DGS",
        Role::Auditor => "auditeur",
    }
}

/// The form's CSRF token against the session's; the refusal page when they differ. Only for
/// the multipart uploads (the pool import, the agents file), which `view::CsrfForm` cannot
/// read: every other form is checked by that extractor.
pub fn check_csrf(st: &AppState, expected: &str, form: &BTreeMap<String, String>) -> Result<(), Box<Response>> {
    if form.get("csrf").is_some_and(|c| repli_app::accounts::same_secret(expected, c)) {
        Ok(())
    } else {
        Err(Box::new(error_page(
            st,
            StatusCode::FORBIDDEN,
            "Action refusée",
            "Formulaire expiré ou jeton invalide : rechargez la page.",
        )))
    }
}

pub fn api_error_page(st: &AppState, e: &AppError) -> Response {
    let p = e.to_problem();
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = match p.status {
        404 => "Introuvable",
        403 => "Accès refusé",
        409 => "Action impossible",
        _ => "Erreur",
    };
    error_page(st, status, title, &p.detail)
}

/// A form about one crisis: its CSRF token checked, then the crisis as the caller may see it.
pub async fn form_crisis(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    form: &BTreeMap<String, String>,
    id: &str,
) -> Result<repli_app::records::CrisisRecord, Box<Response>> {
    check_csrf(st, csrf, form)?;
    repli_app::crises::visible_crisis(st, a, id).await.map_err(|e| Box::new(api_error_page(st, &e)))
}

/// After a form: back to `path` with a message the page shows, held by the server
/// ([`flash`]), never written in the URL.
pub fn redirect_with(path: &str, message: flash::Flash) -> Response {
    flash::redirect(path, message)
}

/// Back to the crisis page with a message.
pub fn back(id: &str, message: flash::Flash) -> Response {
    flash::redirect(&format!("/crises/{id}"), message)
}

/// Back to the crisis page with an error shown next to the form it concerns.
pub fn back_field(id: &str, section: flash::Section, message: &str) -> Response {
    let s = section.as_str();
    flash::redirect(&format!("/crises/{id}#{s}-erreur"), flash::Flash::error(message).beside(section))
}

/// A date and time as typed in a form (`2026-11-30T08:15` from a datetime-local field, or
/// `2026-11-30 08:15`), in the calendar's time zone.
pub fn local_instant(st: &AppState, s: &str) -> Option<Timestamp> {
    s.trim()
        .parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(st.time_zone().clone()).ok())
        .map(|z| z.timestamp())
}

/// What the confirmation page shows.
#[derive(Debug, Serialize)]
struct Confirmation {
    title: &'static str,
    crisis: String,
    commune: String,
    /// What the action is about, when not the whole crisis (a step, an item).
    subject: Option<String>,
    consequences: &'static [&'static str],
    /// Where the form posts.
    action: String,
    button: &'static str,
    /// The reason typed so far (kept when the action was refused).
    reason: String,
    error: Option<String>,
}

/// The confirmation page's model (`confirmer.hbs` reads it under `confirm`).
#[derive(Debug, Serialize)]
struct ConfirmationPage {
    confirm: Confirmation,
}

/// What a destructive action is about, and where its form posts.
#[derive(Debug)]
pub struct Target {
    pub what: Destructive,
    pub subject: Option<String>,
    pub action: String,
}

#[allow(clippy::too_many_arguments)]
pub fn confirmation_page(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    r: &repli_app::records::CrisisRecord,
    t: Target,
    reason: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let confirm = Confirmation {
        title: t.what.title_fr(),
        crisis: r.id.to_string(),
        commune: r.commune_name.clone(),
        subject: t.subject,
        consequences: t.what.consequences_fr(),
        action: t.action,
        button: t.what.button_fr(),
        reason: reason.to_owned(),
        error,
    };
    let layout = view::Layout::signed_in(a, csrf, t.what.title_fr()).exercise(r.exercise.as_ref());
    view::page(st, status, "confirmer", &layout, &ConfirmationPage { confirm })
}

/// The reason typed in the form, trimmed.
pub fn reason_of(form: &BTreeMap<String, String>) -> String {
    form.get("motif").map(|m| m.trim().to_owned()).unwrap_or_default()
}

/// The form of a destructive action's confirmation page (and of a step's retry): the reason.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    motif: String,
}

impl ReasonForm {
    /// The reason typed, trimmed.
    pub fn reason(&self) -> String {
        self.motif.trim().to_owned()
    }
}

pub fn status_of(e: &AppError) -> StatusCode {
    StatusCode::from_u16(e.to_problem().status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
}

/// What a destructive action is about, found for the person asking (or why it cannot be taken).
pub type Found = Result<(repli_app::records::CrisisRecord, Target), AppError>;

/// The GET side of a destructive action: its confirmation page, or a French error page.
pub fn confirmation_or_error(st: &AppState, a: &Actor, csrf: &str, found: Found) -> Response {
    match found {
        Ok((r, t)) => confirmation_page(st, a, csrf, &r, t, "", None, StatusCode::OK),
        Err(e) => api_error_page(st, &e),
    }
}

/// The POST side, its form's CSRF token already checked ([`view::CsrfForm`]): the target
/// found, then `run` with the reason typed; a refusal shows the confirmation again with the
/// error and the reason kept (`csrf` is the session's, for that page's form).
pub async fn confirmed<T, R>(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    form: &ReasonForm,
    target: T,
    run: impl FnOnce(String) -> R,
) -> Response
where
    T: std::future::Future<Output = Found>,
    R: std::future::Future<Output = Result<Response, AppError>>,
{
    let (r, t) = match target.await {
        Ok(v) => v,
        Err(e) => return api_error_page(st, &e),
    };
    let reason = form.reason();
    match run(reason.clone()).await {
        Ok(done) => done,
        Err(e) => {
            let status = status_of(&e);
            confirmation_page(st, a, csrf, &r, t, &reason, Some(e.to_problem().detail), status)
        }
    }
}

/// An SLA status as pages show it: a colour class **and** words (never colour alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct SlaBadge {
    pub class: &'static str,
    pub label: &'static str,
}

pub(crate) fn sla_badge(status: SlaStatus) -> SlaBadge {
    let class = match status {
        SlaStatus::Breached => "alerte",
        SlaStatus::AtRisk => "risque",
        SlaStatus::Suspended => "pause",
        SlaStatus::MetLate => "retard",
        _ => "ok",
    };
    SlaBadge { class, label: status.label_fr() }
}

/// « Nom ; Service » per line (a comma or a tab also separates); blank lines ignored.
pub(crate) fn agents_from_text(textarea: &str) -> Vec<(String, String)> {
    textarea
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.to_lowercase().starts_with("nom"))
        .map(|l| {
            let mut parts = l.splitn(2, [';', ',', '\t']);
            let name = parts.next().unwrap_or("").trim().to_string();
            let service = parts.next().unwrap_or("").trim().to_string();
            (name, service)
        })
        .collect()
}

/// A notification channel in French (the notifications page, the crisis page's outbox).
pub(crate) fn channel_fr(c: &str) -> &'static str {
    match c {
        "sms" => "SMS",
        "smtp" => "courriel",
        "log" => "journal de replid",
        "webhook" => "webhook",
        _ => "autre",
    }
}

/// A notification's delivery in words, and the colour class beside them.
pub(crate) fn notification_status(n: &repli_proto::api::NotificationView) -> (&'static str, &'static str) {
    match n.status.as_str() {
        "sent" => ("envoyée", "ok"),
        "failed" => ("en échec", "alerte"),
        _ if n.attempts > 0 => ("nouvel essai prévu", "risque"),
        _ => ("en attente", "pause"),
    }
}

/// Who a notification goes to, as shown.
pub(crate) fn notification_to(n: &repli_proto::api::NotificationView) -> String {
    n.recipient.as_deref().map_or_else(
        || "équipe métropole".to_owned(),
        |r| if n.channel == "sms" { repli_core::fr::phone(r) } else { r.to_owned() },
    )
}
