//! Ops' forms during a crisis, besides the crisis actions: lending items to named agents, the
//! SLA clock, the legal clocks, an item's wipe, maintenance and retirement, the pool's import
//! and export, and the notifications page. Each parses its
//! form, calls one operation of `repli_app`, and sends the person back to the page with a
//! French message next to the form it concerns.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_core::{Actor, ItemState, fr};
use repli_proto::api::{ImportFile, ImportRequest, LegalFactsRequest, ServiceRequest, WipeRequest};

use crate::AppState;
use crate::auth::Authed;
use crate::web::{
    Form, SessionCsrf, api_error_page, back, back_field, base, check_csrf, error_page, form_crisis, local_instant,
    reason_of, redirect_with, render, when,
};
use repli_app::crises;
use repli_app::inventory::{self, LoanLine, LoanTo};
use serde_json::{Value, json};

/// Most lines in the scan box (a scanner types one label and Enter per item).
const MAX_SCAN_CHARS: usize = 64 * 1024;

/// The loan form: for each item of the crisis, a choice (an agent, the commune, or not now),
/// plus a box where a scanner types « label ; agent » lines. All or nothing.
pub async fn lend(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = form_crisis(&st, &a, &csrf, &form, &id).await {
        return *page;
    }
    let lines = match loan_lines(&form) {
        Ok(l) => l,
        Err(msg) => return back_field(&id, "prets", &msg),
    };
    if lines.is_empty() {
        return back_field(&id, "prets", "Choisissez au moins un équipement à prêter, ou scannez-en un.");
    }
    match inventory::lend_many(&st, &a, &id, &lines).await {
        Ok(_) => back(&id, "ok", &format!("{} équipement(s) prêté(s).", lines.len())),
        Err(e) => back_field(&id, "prets", &e.to_problem().detail),
    }
}

/// The lines of the loan form: picked items first (`pret-SERIAL` = agent id or `commune`),
/// then the scanned lines (`code` or `code ; agent name`).
fn loan_lines(form: &BTreeMap<String, String>) -> Result<Vec<LoanLine>, String> {
    let mut lines = Vec::new();
    for (key, choice) in form {
        let Some(code) = key.strip_prefix("pret-") else { continue };
        let to = match choice.trim() {
            "" => continue,
            "commune" => LoanTo::Commune,
            n => LoanTo::Agent(n.parse().map_err(|_| format!("{code} : agent inconnu."))?),
        };
        lines.push(LoanLine { code: code.to_owned(), to });
    }
    let scan = form.get("scan").map(String::as_str).unwrap_or("");
    if scan.len() > MAX_SCAN_CHARS {
        return Err("Trop de lignes scannées à la fois (64 Kio au plus).".into());
    }
    for raw in scan.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (code, who) = match raw.split_once(';') {
            Some((c, w)) => (c.trim(), w.trim()),
            None => (raw, ""),
        };
        let to = if who.is_empty() { LoanTo::Commune } else { LoanTo::AgentNamed(who.to_owned()) };
        lines.push(LoanLine { code: code.to_owned(), to });
    }
    Ok(lines)
}

/// Suspends or resumes the 48-hour clock (the commune asked to wait, premises closed…).
pub async fn sla_clock(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = form_crisis(&st, &a, &csrf, &form, &id).await {
        return *page;
    }
    let done = match form.get("action").map(String::as_str) {
        Some("suspendre") => {
            let reason = reason_of(&form);
            if reason.is_empty() {
                return back_field(&id, "delai", "Indiquez le motif de la suspension.");
            }
            crises::suspend_sla(&st, &a, &id, &reason).await.map(|_| "Délai suspendu.")
        }
        Some("reprendre") => crises::resume_sla(&st, &a, &id).await.map(|_| "Délai repris."),
        _ => return back_field(&id, "delai", "Action inconnue."),
    };
    match done {
        Ok(msg) => back(&id, "ok", msg),
        Err(e) => back_field(&id, "delai", &e.to_problem().detail),
    }
}

/// Records when the commune learnt of the attack and whether personal data are involved:
/// the CNIL's and the complaint's 72-hour clocks start from there.
pub async fn legal_facts(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = form_crisis(&st, &a, &csrf, &form, &id).await {
        return *page;
    }
    let Ok(aware_at) = form_instant(&st, &form, "aware_at") else {
        return back_field(&id, "echeances", "Date et heure de découverte illisibles (jj/mm/aaaa hh:mm).");
    };
    let personal_data = match form.get("personal_data").map(String::as_str) {
        Some("oui") => Some(true),
        Some("non") => Some(false),
        _ => None,
    };
    if aware_at.is_none() && personal_data.is_none() {
        return back_field(
            &id,
            "echeances",
            "Indiquez la date de découverte ou la réponse sur les données personnelles.",
        );
    }
    match crises::set_legal_facts(&st, &a, &id, LegalFactsRequest { aware_at, personal_data }).await {
        Ok(_) => back(&id, "ok", "Échéances légales mises à jour."),
        Err(e) => back_field(&id, "echeances", &e.to_problem().detail),
    }
}

/// Marks the CNIL notification or the complaint as done (now, or at the instant given).
pub async fn legal_done(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path((id, kind)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = form_crisis(&st, &a, &csrf, &form, &id).await {
        return *page;
    }
    let Ok(at) = form_instant(&st, &form, "at") else {
        return back_field(&id, "echeances", "Date et heure illisibles (jj/mm/aaaa hh:mm).");
    };
    match crises::legal_done(&st, &a, &id, &kind, at).await {
        Ok(_) => back(&id, "ok", "Démarche enregistrée comme faite."),
        Err(e) => back_field(&id, "echeances", &e.to_problem().detail),
    }
}

/// An item's wipe, recorded with its certificate.
pub async fn wipe(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(serial): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = check_csrf(&st, &csrf, &form) {
        return *page;
    }
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let req = WipeRequest { method: field("methode"), operator: field("operateur"), certificate: field("certificat") };
    match inventory::wipe(&st, &a, &serial, &req).await {
        Ok(d) if d.item.state == ItemState::Maintenance => item_back(
            &serial,
            "ok",
            "Effacement enregistré. Rendu endommagé, l'équipement part en maintenance avant tout nouveau prêt.",
        ),
        Ok(_) => item_back(&serial, "ok", "Effacement enregistré : l'équipement est de nouveau disponible."),
        Err(e) => item_back(&serial, "erreur", &e.to_problem().detail),
    }
}

/// Maintenance, back to service, start of a wipe, or retirement (which asks for a tick that
/// says the item leaves the pool for good).
pub async fn service(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(serial): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = check_csrf(&st, &csrf, &form) {
        return *page;
    }
    let to = match form.get("vers").map(String::as_str) {
        Some("maintenance") => ItemState::Maintenance,
        Some("disponible") => ItemState::Available,
        Some("effacement") => ItemState::Wiping,
        Some("reforme") => ItemState::Retired,
        _ => return error_page(&st, StatusCode::BAD_REQUEST, "Action inconnue", "Action inconnue."),
    };
    if to == ItemState::Retired && form.get("confirme").is_none_or(|v| v != "oui") {
        return item_back(
            &serial,
            "erreur",
            "Cochez la case de confirmation : la réforme sort l'équipement du parc pour de bon.",
        );
    }
    let reason = reason_of(&form);
    let reason = if reason.is_empty() && to == ItemState::Wiping { "Effacement commencé".to_owned() } else { reason };
    match inventory::service(&st, &a, &serial, &ServiceRequest { to, reason }).await {
        Ok(d) => item_back(&serial, "ok", &format!("Équipement {} : {}.", d.item.item.asset_tag, d.item.state_label)),
        Err(e) => item_back(&serial, "erreur", &e.to_problem().detail),
    }
}

/// The notifications page: what was sent to whom, what failed, and a button to send a failed
/// one again.
pub async fn notifications(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let list = match crises::notifications(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let channel_fr = |c: &str| match c {
        "sms" => "SMS",
        "smtp" => "courriel",
        "log" => "journal de replid",
        "webhook" => "webhook",
        _ => "autre",
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            let (status, class) = match n.status.as_str() {
                "sent" => ("envoyée", "ok"),
                "failed" => ("en échec", "alerte"),
                _ if n.attempts > 0 => ("nouvel essai prévu", "risque"),
                _ => ("en attente", "pause"),
            };
            json!({
                "id": n.id, "at": when(&st, Some(n.created_at)), "crisis": n.crisis,
                "channel": channel_fr(&n.channel),
                "to": n.recipient.as_deref().map_or_else(|| "équipe métropole".to_owned(), |r| if n.channel == "sms" { fr::phone(r) } else { r.to_owned() }),
                "subject": n.subject, "body": n.body, "status": status, "class": class,
                "attempts": n.attempts, "error": n.last_error, "sent": n.sent_at.map(|t| when(&st, Some(t))),
                "retry": n.status == "failed",
            })
        })
        .collect();
    let failed = list.iter().filter(|n| n.status == "failed").count();
    let mut data = base(&a, &csrf, "Notifications");
    data.insert("rows".into(), json!(rows));
    data.insert("failed".into(), json!(failed));
    data.insert("flash".into(), json!(q.get("ok")));
    data.insert("flash_error".into(), json!(q.get("erreur")));
    render(&st, StatusCode::OK, "notifications", &Value::Object(data))
}

/// Sends a failed notification again.
pub async fn retry_notification(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(nid): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = check_csrf(&st, &csrf, &form) {
        return *page;
    }
    let Ok(nid) = nid.parse::<i64>() else {
        return error_page(&st, StatusCode::NOT_FOUND, "Introuvable", "Notification inconnue.");
    };
    let (key, msg) = match repli_app::notify::retry(&st, &a, nid).await {
        Ok(()) => ("ok", "Notification renvoyée : voir son état ci-dessous.".to_owned()),
        Err(e) => ("erreur", e.to_problem().detail),
    };
    redirect_with("/notifications", key, &msg)
}

/// The pool import, in two steps: the file uploaded is checked as the import would check it
/// (every refused line listed, nothing written); when it passes, the page shows what would come
/// in and a button that imports the same content, all or nothing.
pub async fn import_pool(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    mut multipart: Multipart,
) -> Response {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut unreadable = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_owned();
                let file = f.file_name().map(str::to_owned);
                match f.text().await {
                    Ok(t) => {
                        if let Some(file) = file.filter(|n| !n.is_empty()) {
                            fields.insert("source".into(), file);
                        }
                        fields.insert(name, t);
                    }
                    Err(_) => unreadable = Some("Fichier illisible : un CSV en UTF-8 est attendu."),
                }
            }
            Ok(None) => break,
            // Over the body limit (1 Mio) or a broken form.
            Err(_) => {
                unreadable = Some("Fichier trop gros ou formulaire illisible (1 Mio au plus, un CSV en UTF-8).");
                break;
            }
        }
    }
    if let Some(msg) = unreadable {
        return import_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, None, &[msg.to_owned()], None);
    }
    if let Err(page) = check_csrf(&st, &csrf, &fields) {
        return *page;
    }
    let csv = fields.get("fichier").filter(|t| !t.trim().is_empty()).or(fields.get("csv")).cloned().unwrap_or_default();
    if csv.trim().is_empty() {
        let msg = "Choisissez un fichier CSV du parc.".to_owned();
        return import_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, None, &[msg], None);
    }
    let source = fields.get("source").map(|s| s.trim()).filter(|s| !s.is_empty()).unwrap_or("parc.csv").to_owned();
    let req = ImportRequest { files: vec![ImportFile { source: source.clone(), csv: csv.clone() }] };
    if fields.get("confirmer").is_some_and(|v| v == "oui") {
        return match inventory::import(&st, &a, &req).await {
            Ok(n) => redirect_with("/inventaire", "ok", &format!("{n} équipement(s) importé(s) depuis {source}.")),
            Err(e) => {
                let errors = problem_lines(&e);
                import_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, None, &errors, None)
            }
        };
    }
    match inventory::preview(&st, &req).await {
        Ok(p) => import_page(&st, &a, &csrf, StatusCode::OK, Some(&p), &[], Some((&source, &csv))),
        Err(e) => import_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, None, &problem_lines(&e), None),
    }
}

/// Every refusal of an error, one line each (`pool.csv:12: …`).
fn problem_lines(e: &repli_app::AppError) -> Vec<String> {
    let p = e.to_problem();
    if p.errors.is_empty() { vec![p.detail] } else { p.errors.iter().map(|f| f.message.clone()).collect() }
}

fn import_page(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    status: StatusCode,
    preview: Option<&inventory::ImportPreview>,
    errors: &[String],
    content: Option<(&str, &str)>,
) -> Response {
    let mut data = base(a, csrf, "Importer le parc");
    data.insert(
        "preview".into(),
        json!(preview.map(|p| json!({
            "total": p.total,
            "kinds": p.by_kind.iter().map(|(k, n)| json!({ "kind": k.label_fr(), "count": n })).collect::<Vec<_>>(),
        }))),
    );
    data.insert("errors".into(), json!(errors));
    data.insert("source".into(), json!(content.map(|c| c.0)));
    data.insert("csv".into(), json!(content.map(|c| c.1)));
    render(st, status, "inventaire-import", &Value::Object(data))
}

/// The pool as CSV, in the import's columns.
pub async fn export_pool(State(st): State<AppState>, Authed(_): Authed) -> Response {
    match inventory::export_csv(&st).await {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"parc-repli.csv\""),
            ],
            csv,
        )
            .into_response(),
        Err(e) => api_error_page(&st, &e),
    }
}

/// An optional date and time field of a form: None when blank, Err when unreadable.
fn form_instant(st: &AppState, form: &BTreeMap<String, String>, key: &str) -> Result<Option<jiff::Timestamp>, ()> {
    match form.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => local_instant(st, s).map(Some).ok_or(()),
    }
}

/// The after-action report (RETEX), in French, for print.
pub async fn retex(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    let r = match repli_app::retex::report(&st, &a, &id).await {
        Ok(r) => r,
        Err(e) => return api_error_page(&st, &e),
    };
    let d = |s: i64| fr::duration(jiff::SignedDuration::from_secs(s));
    let step = |s: &repli_proto::api::RetexStep| {
        let gap = s.actual_secs.map(|a| a - s.planned_secs);
        json!({
            "run": if s.playbook == repli_core::run::PlaybookName::Activation { "Préparation" } else { "Restitution" },
            "title": s.title, "planned": d(s.planned_secs), "actual": s.actual_secs.map(d),
            "late": gap.is_some_and(|g| g > 0), "gap": gap.map(|g| if g > 0 { format!("+{}", d(g)) } else { format!("−{}", d(-g)) }),
            "attempts": s.attempts, "waited": s.waited_secs.map(d), "who": s.confirmed_by, "state": s.state.label_fr(),
        })
    };
    let mut data = base(&a, &csrf, &format!("RETEX {}", r.crisis));
    crate::web::mark_exercise(&mut data, r.exercise.as_ref());
    let injects: Vec<Value> = r
        .injects
        .iter()
        .map(|i| {
            json!({
                "at": when(&st, Some(i.inject.at)), "text": i.inject.text,
                "response": i.response.as_ref().map(|e| json!({ "who": e.author, "kind": e.type_label, "text": e.text })),
                "after": i.response_secs.map(d),
            })
        })
        .collect();
    data.insert(
        "r".into(),
        json!({
            "id": r.crisis.as_str(), "commune": r.commune_name, "requested": when(&st, Some(r.requested_at)),
            "ready": r.ready_at.map(|t| when(&st, Some(t))), "to_ready": d(r.business_secs_to_ready),
            "hours": r.business_hours, "sla": r.sla_status.label_fr(),
            "planned": d(r.planned_critical_secs), "actual": r.actual_activation_secs.map(d),
            "steps": r.steps.iter().map(step).collect::<Vec<_>>(),
            "waits": r.longest_waits.iter().map(step).collect::<Vec<_>>(),
            "injects": injects,
            "log": r.log.iter().map(|e| json!({ "at": when(&st, Some(e.at)), "kind": e.type_label, "who": e.author, "text": e.text })).collect::<Vec<_>>(),
        }),
    );
    render(&st, StatusCode::OK, "retex", &Value::Object(data))
}

fn item_back(serial: &str, key: &str, message: &str) -> Response {
    let path: String = form_urlencoded::byte_serialize(serial.as_bytes()).collect();
    redirect_with(&format!("/inventaire/{path}"), key, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn picked_and_scanned_lines_are_read_in_order() {
        let f = form(&[
            ("csrf", "x"),
            ("pret-S1", "12"),
            ("pret-S2", ""),
            ("pret-S3", "commune"),
            ("scan", "AMP-LAP-0002 ; Anne Martin\n\n  amp-rtr-0001  \n"),
        ]);
        let lines = loan_lines(&f).unwrap();
        assert_eq!(
            lines,
            vec![
                LoanLine { code: "S1".into(), to: LoanTo::Agent(12) },
                LoanLine { code: "S3".into(), to: LoanTo::Commune },
                LoanLine { code: "AMP-LAP-0002".into(), to: LoanTo::AgentNamed("Anne Martin".into()) },
                LoanLine { code: "amp-rtr-0001".into(), to: LoanTo::Commune },
            ]
        );
    }

    #[test]
    fn a_forged_agent_choice_or_an_oversized_scan_is_refused() {
        assert!(loan_lines(&form(&[("pret-S1", "<script>")])).unwrap_err().contains("agent inconnu"));
        let big = "A;B\n".repeat(MAX_SCAN_CHARS / 4 + 1);
        assert!(loan_lines(&form(&[("scan", &big)])).is_err());
        assert!(loan_lines(&form(&[("scan", "  \n ")])).unwrap().is_empty());
    }
}
