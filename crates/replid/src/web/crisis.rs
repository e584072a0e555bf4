//! The crisis page and the forms on it: actions, main courante, agents, manual steps, the
//! hand-back scan, loans, the SLA clock and the legal clocks. Each form calls one operation of
//! `repli_app` and sends the person back to the page with a French message beside the form.

use axum::Extension;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::inventory::{LoanLine, LoanTo};
use repli_app::{AppError, crises, inventory, steps};
use repli_core::{Actor, CrisisAction, CrisisState, Role, StepState, fr, text};
use repli_proto::api::LegalFactsRequest;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{
    Form, SessionCsrf, agents_from_text, api_error_page, back, back_field, base, check_csrf, error_page, form_crisis,
    local_instant, reason_of, render, sla_badge, when,
};

pub async fn crisis(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let crises::CrisisPage { view, convention, steps, loans, log, agents, lendable, outputs } =
        match crises::page(&st, &a, &id).await {
            Ok(p) => p,
            Err(e) => return api_error_page(&st, &e),
        };
    let crisis_id = view.id.clone();
    let steps = Some(steps);
    let is_ops = a.role == Role::Ops;
    let mut runs = Vec::new();
    if let Some(s) = &steps {
        for run in &s.runs {
            let total = run.steps.len();
            let done = run.steps.iter().filter(|s| s.state.is_done()).count();
            runs.push(json!({
                "name": if run.playbook == repli_core::run::PlaybookName::Activation { "Préparation du kit" } else { "Restitution" },
                "done": done,
                "total": total,
                "percent": (done * 100).checked_div(total).unwrap_or(0),
                "steps": run.steps.iter().map(|s| json!({
                    "id": s.step,
                    "title": s.title,
                    "state": s.state_label,
                    "class": s.state.as_str(),
                    "error": s.last_error,
                    "waiting": is_ops && s.state == StepState::WaitingManual,
                    "retry": is_ops && s.state.may_be_retried(),
                    "skip": is_ops && run.state.takes_step_operations() && s.state.may_be_skipped(),
                    "instructions": s.instructions,
                    "checklist": s.checklist,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    let files: Vec<Value> = repli_docs::DOCUMENTS
        .iter()
        .filter(|(_, f)| is_ops || *f != repli_docs::CREDENTIAL_SHEETS)
        .map(|(_, f)| {
            let url = if *f == repli_docs::CREDENTIAL_SHEETS {
                format!("/crises/{crisis_id}/fiches-identifiants")
            } else {
                format!("/api/v1/crises/{crisis_id}/documents/{f}")
            };
            json!({ "file": f, "url": url })
        })
        .collect();
    let mut data = base(&a, &csrf, &format!("Crise {crisis_id}"));
    crate::web::mark_exercise(&mut data, view.exercise.as_ref());
    data.insert(
        "c".into(),
        json!({
            "id": crisis_id.as_str(),
            "commune": view.commune_name,
            "state": view.state_label,
            "ready": matches!(view.state, CrisisState::Ready | CrisisState::Delivered),
            "sla": sla_badge(view.sla.status),
            "due": when(&st, Some(view.sla.due_at)),
            "left": fr::duration(jiff::SignedDuration::from_secs(view.sla.remaining_seconds)),
            "used": view.sla.used_percent,
            "elapsed": fr::duration(jiff::SignedDuration::from_secs(view.sla.elapsed_seconds)),
            "hours": view.sla.business_hours,
            "contact": view.contact.name,
            "phone": fr::phone(&view.contact.phone),
            "agents": view.agents,
            "named": view.agents_named,
            "delivery": view.delivery_address,
            "notes": view.notes,
            "legal": view.legal.iter().map(|l| json!({ "label": l.label, "deadline": when(&st, Some(l.deadline)), "status": l.status.label_fr(jiff::SignedDuration::from_secs(l.remaining_seconds)), "done": l.done_at.is_some() })).collect::<Vec<_>>(),
            // Before activation nothing is reserved yet: no shortage to announce.
            "reserving": view.state != CrisisState::Requested,
            "needs": view.needs.iter().map(|n| json!({ "label": n.label, "wanted": n.wanted, "allocated": n.allocated, "shortage": if view.state == CrisisState::Requested { 0 } else { n.shortage } })).collect::<Vec<_>>(),
        }),
    );
    data.insert(
        "convention".into(),
        json!(convention.map(|c| format!("signée le {} (délibération {})", fr::date(c.signed_on), c.deliberation_ref))),
    );
    data.insert("can_activate".into(), json!(is_ops && view.next_actions.contains(&CrisisAction::Activate)));
    data.insert("m365_warning".into(), json!(crises::m365_warning(&st, &a, &view)));
    data.insert("can_deliver".into(), json!(is_ops && view.next_actions.contains(&CrisisAction::Deliver)));
    data.insert("can_handback".into(), json!(is_ops && view.next_actions.contains(&CrisisAction::StartHandback)));
    data.insert("can_scan".into(), json!(is_ops && view.state == CrisisState::Handback));
    data.insert("can_reject".into(), json!(is_ops && view.next_actions.contains(&CrisisAction::Reject)));
    data.insert(
        "can_cancel".into(),
        json!(a.may(repli_core::Permission::CancelCrisis) && view.next_actions.contains(&CrisisAction::Cancel)),
    );
    data.insert("can_log".into(), json!(a.may(repli_core::Permission::WriteCrisisLog) && view.state.is_open()));
    let agents_open = view.state.is_open() && view.state != CrisisState::Handback;
    data.insert("can_agents".into(), json!(a.may(repli_core::Permission::WriteCrisisLog) && agents_open));
    data.insert(
        "agents".into(),
        json!(agents.iter().map(|g| json!({ "name": g.name, "service": g.service })).collect::<Vec<_>>()),
    );
    let gap =
        repli_core::run::AgentsGap::of(view.agents_named, view.agents, view.agents_accepted).filter(|_| agents_open);
    data.insert(
        "agents_gap".into(),
        json!(gap.map(|g| json!({ "message": g.message_fr(), "named": g.named, "can_accept": is_ops && g.named > 0 }))),
    );
    data.insert("runs".into(), json!(runs));
    data.insert("documents".into(), json!(files));
    data.insert(
        "loans".into(),
        json!(loans.iter().map(|l| json!({
            "tag": l.asset_tag, "serial": l.serial, "kind": l.kind.label_fr(), "agent": l.agent.as_ref().map(|a| a.name.clone()),
            "due": when(&st, Some(l.due_back)), "returned": l.returned_at.map(|t| when(&st, Some(t))), "overdue": l.overdue,
            "write_off": (is_ops && l.returned_at.is_none()).then(|| format!("/crises/{crisis_id}/pertes/{}", form_urlencoded::byte_serialize(l.serial.as_bytes()).collect::<String>())),
        })).collect::<Vec<_>>()),
    );
    data.insert(
        "log".into(),
        json!(log.iter().rev().map(|e| json!({ "at": when(&st, Some(e.at)), "who": e.author, "kind": e.kind.label_fr(), "text": e.text })).collect::<Vec<_>>()),
    );
    data.insert("can_retex".into(), json!(a.may(repli_core::Permission::ReadSlaReport)));
    data.insert("lend".into(), lend_form(&lendable, &agents));
    data.insert("kit".into(), kit_links(&outputs, is_ops));
    let suspended = view.sla.suspensions.iter().find(|s| s.ended_at.is_none());
    data.insert(
        "delai".into(),
        json!({
            "suspended": suspended.map(|s| json!({ "since": when(&st, Some(s.started_at)), "reason": s.reason })),
            "past": view.sla.suspensions.iter().filter(|s| s.ended_at.is_some()).map(|s| json!({ "from": when(&st, Some(s.started_at)), "to": when(&st, s.ended_at), "reason": s.reason })).collect::<Vec<_>>(),
            "can": is_ops && view.state.is_open() && !matches!(view.state, CrisisState::Ready | CrisisState::Delivered | CrisisState::Handback),
        }),
    );
    data.insert(
        "legal_form".into(),
        json!({
            "can": a.may(repli_core::Permission::WriteCrisisLog) && view.state.is_open(),
            "open": view.legal.iter().filter(|l| l.done_at.is_none()).map(|l| json!({ "kind": l.kind.as_str(), "label": l.label })).collect::<Vec<_>>(),
        }),
    );
    // An error about one form is shown next to it; any other at the top of the page.
    let field = q.get("champ").map(String::as_str).filter(|f| FORM_SECTIONS.contains(f));
    let mut errors = serde_json::Map::new();
    for f in FORM_SECTIONS {
        errors.insert(f.to_owned(), json!(if field == Some(f) { q.get("erreur") } else { None }));
    }
    data.insert("errors".into(), Value::Object(errors));
    data.insert("flash".into(), json!(q.get("ok")));
    data.insert("flash_error".into(), json!(if field.is_none() { q.get("erreur") } else { None }));
    // No automatic refresh: it would wipe what someone is typing in the page's forms. The page
    // says when it was read and offers a refresh link while steps are running.
    data.insert(
        "live".into(),
        json!(matches!(view.state, CrisisState::Activated | CrisisState::Provisioning | CrisisState::Handback)),
    );
    data.insert("read_at".into(), json!(when(&st, Some(st.clock.now()))));
    render(&st, StatusCode::OK, "crise", &Value::Object(data))
}

/// The crisis page's forms that show their errors beside them (see [`crate::web::back_field`]).
const FORM_SECTIONS: [&str; 4] = ["prets", "delai", "echeances", "retour"];

/// The loan form: each item ready to lend with its choices (an agent, the commune, not now),
/// the laptop plan's agent chosen in advance.
fn lend_form(items: &[inventory::Lendable], agents: &[repli_proto::api::AgentView]) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|l| {
            let personal = l.item.item.kind.is_personal();
            let mut options = vec![json!({ "value": "", "label": "— pas maintenant —", "selected": l.proposed.is_none() })];
            if !personal {
                options.push(json!({ "value": "commune", "label": "la commune", "selected": false }));
            }
            options.extend(agents.iter().map(|g| {
                json!({ "value": g.id.to_string(), "label": format!("{} ({})", g.name, g.service), "selected": l.proposed == Some(g.id) })
            }));
            json!({
                "serial": l.item.item.serial, "tag": l.item.item.asset_tag, "kind": l.item.item.kind.label_fr(),
                "model": l.item.item.model, "options": options,
            })
        })
        .collect();
    json!({ "items": rows, "count": items.len() })
}

/// What the kit gives people: the collaborative space and the visio (short labels, the long
/// address as the link's target), which laptop goes to whom, and for ops the isolation checks.
fn kit_links(o: &repli_core::run::Outputs, is_ops: bool) -> Value {
    json!({
        "workspace": o.workspace().map(|w| json!({ "url": w.web_url, "mail": w.mail, "channels": w.channels.join(", ") })),
        "meeting": o.meeting().map(|m| m.join_url.clone()),
        "plan": o.assigned().map(|p| p.assignments.iter().map(|x| json!({ "agent": x.agent, "service": x.service, "serial": x.serial })).collect::<Vec<_>>()).unwrap_or_default(),
        "isolation": o.isolation().filter(|_| is_ops).map(|r| json!({
            "ok": r.ok,
            "checks": r.checks.iter().map(|c| json!({ "check": c.check, "ok": c.ok, "detail": c.detail })).collect::<Vec<_>>(),
        })),
    })
}

pub async fn crisis_action(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&st, &csrf, &form) {
        return *r;
    }
    let action = match form.get("action").map(String::as_str) {
        Some("activate") => CrisisAction::Activate,
        Some("deliver") => CrisisAction::Deliver,
        Some("reject") => CrisisAction::Reject,
        _ => return error_page(&st, StatusCode::BAD_REQUEST, "Action inconnue", "Action inconnue."),
    };
    act(&st, &a, &id, action, &form).await
}

async fn act(st: &AppState, a: &Actor, id: &str, action: CrisisAction, form: &BTreeMap<String, String>) -> Response {
    let reason = form.get("motif").map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
    let body = repli_proto::api::ActionRequest { reason };
    match crises::apply(st, a, id, action, body).await {
        Ok(v) => back(id, "ok", &format!("Crise {} : {}", v.id, v.state_label)),
        Err(e) => back(id, "erreur", &e.to_problem().detail),
    }
}

pub async fn add_log(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    let r = match form_crisis(&st, &a, &csrf, &form, &id).await {
        Ok(r) => r,
        Err(page) => return *page,
    };
    let kind = form.get("type").map(String::as_str).unwrap_or_default();
    let entry = form.get("texte").map(String::as_str).unwrap_or_default();
    match crises::add_log(&st, &a, r.id.as_str(), kind, entry).await {
        Ok(_) => back(&id, "ok", "Entrée ajoutée à la main courante."),
        Err(AppError::Validation(errors)) => back(
            &id,
            "erreur",
            &format!("Main courante : {}", errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join(" ; ")),
        ),
        Err(e) => back(&id, "erreur", &e.to_problem().detail),
    }
}

/// The agents list: typed or pasted in the text area, or a CSV file (multipart form).
pub async fn set_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Response {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_string();
                match f.text().await {
                    Ok(t) if t.len() <= 256 * 1024 => {
                        fields.insert(name, t);
                    }
                    _ => return back(&id, "erreur", "Fichier illisible ou trop gros (256 Kio au plus, texte UTF-8)."),
                }
            }
            Ok(None) => break,
            Err(_) => return back(&id, "erreur", "Formulaire illisible."),
        }
    }
    let r = match form_crisis(&st, &a, &csrf, &fields, &id).await {
        Ok(r) => r,
        Err(page) => return *page,
    };
    let source =
        fields.get("fichier").filter(|t| !t.trim().is_empty()).or(fields.get("liste")).cloned().unwrap_or_default();
    if let Err(line) = text::csv_quotes_closed(&source) {
        return back(&id, "erreur", &format!("Ligne {line} : guillemet ouvert jamais fermé. Rien n'a été enregistré."));
    }
    let rows = agents_from_text(&source);
    if rows.is_empty() || rows.len() > 500 {
        return back(&id, "erreur", "Liste des agents vide ou trop longue (500 au plus).");
    }
    let list = match inventory::checked_agents(rows.iter().map(|(n, sv)| (n.as_str(), sv.as_str()))) {
        Ok(list) => list,
        Err(bad) => {
            let (i, e) = &bad[0];
            return back(&id, "erreur", &format!("Ligne {} : {}", i + 1, e.message));
        }
    };
    match inventory::record_agents(&st, &a, r.id.as_str(), &list, inventory::ListChange::Add).await {
        Ok(agents) => {
            back(&id, "ok", &format!("{} agent(s) ajouté(s) : la liste compte {} agent(s).", list.len(), agents.len()))
        }
        Err(e) => back(&id, "erreur", &e.to_problem().detail),
    }
}

/// Ops accept the agents named so far as the whole list.
pub async fn accept_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    let r = match form_crisis(&st, &a, &csrf, &form, &id).await {
        Ok(r) => r,
        Err(page) => return *page,
    };
    match inventory::accept_agents(&st, &a, r.id.as_str()).await {
        Ok(n) => back(&id, "ok", &format!("Effectif réduit confirmé : les comptes sont créés pour {n} agent(s).")),
        Err(e) => back(&id, "erreur", &e.to_problem().detail),
    }
}

pub async fn confirm_task(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path((id, step)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Response {
    let r = match form_crisis(&st, &a, &csrf, &form, &id).await {
        Ok(r) => r,
        Err(page) => return *page,
    };
    let note = form.get("note").map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let target =
        if form.get("retour").is_some_and(|v| v == "taches") { "/taches".to_string() } else { format!("/crises/{id}") };
    match steps::confirm(&st, &a, r.id.as_str(), &step, note.as_deref()).await {
        Ok(s) => crate::web::redirect_with(&target, "ok", &format!("« {} » confirmée.", s.title)),
        Err(AppError::Validation(_)) => back(&id, "erreur", "Note invalide (caractères de contrôle ou trop longue)."),
        Err(e) => back(&id, "erreur", &e.to_problem().detail),
    }
}

/// The hand-back scan field: a barcode scanner types the serial and Enter.
pub async fn check_in(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = form_crisis(&st, &a, &csrf, &form, &id).await {
        return *page;
    }
    let serial = form.get("serial").map(|s| s.trim().to_string()).unwrap_or_default();
    if serial.is_empty() || serial.len() > 100 || serial.chars().any(char::is_control) {
        return crate::web::back_field(&id, "retour", "Numéro de série illisible : scannez à nouveau.");
    }
    let condition = match form.get("etat").map(String::as_str) {
        Some("damaged") => "damaged",
        Some("missing") => "missing",
        _ => "ok",
    };
    let req = repli_proto::api::CheckinRequest { serial: serial.clone(), condition: condition.into(), note: None };
    match repli_app::inventory::check_in(&st, &a, &id, &req).await {
        Ok(_) => back(&id, "ok", &format!("Retour enregistré : {serial}.")),
        Err(e) => crate::web::back_field(&id, "retour", &e.to_problem().detail),
    }
}

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

/// An optional date and time field of a form: None when blank, Err when unreadable.
fn form_instant(st: &AppState, form: &BTreeMap<String, String>, key: &str) -> Result<Option<jiff::Timestamp>, ()> {
    match form.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => local_instant(st, s).map(Some).ok_or(()),
    }
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (Method::GET, "/crises/{id}", Page(P::ReadCrises), routing::get(crisis), Doc::page("A crisis")),
        (
            Method::POST,
            "/crises/{id}/action",
            Page(P::OperateCrisis),
            routing::post(crisis_action),
            Doc::form("A crisis transition"),
        ),
        (
            Method::POST,
            "/crises/{id}/main-courante",
            Page(P::WriteCrisisLog),
            routing::post(add_log),
            Doc::form("Add a main-courante entry"),
        ),
        (
            Method::POST,
            "/crises/{id}/agents",
            Page(P::WriteCrisisLog),
            routing::post(set_agents),
            Doc::form("Name the agents"),
        ),
        (
            Method::POST,
            "/crises/{id}/agents/effectif",
            Page(P::OperateCrisis),
            routing::post(accept_agents),
            Doc::form("Accept the named agents as the whole list"),
        ),
        (
            Method::POST,
            "/crises/{id}/taches/{step}",
            Page(P::OperateCrisis),
            routing::post(confirm_task),
            Doc::form("Confirm a manual task"),
        ),
        (
            Method::POST,
            "/crises/{id}/retour",
            Page(P::ManageInventory),
            routing::post(check_in),
            Doc::form("Check an item in at the hand-back"),
        ),
        (
            Method::POST,
            "/crises/{id}/prets",
            Page(P::ManageInventory),
            routing::post(lend),
            Doc::form("Lend items to named agents or to the commune, all or none"),
        ),
        (
            Method::POST,
            "/crises/{id}/delai",
            Page(P::OperateCrisis),
            routing::post(sla_clock),
            Doc::form("Suspend or resume the SLA clock"),
        ),
        (
            Method::POST,
            "/crises/{id}/echeances",
            Page(P::WriteCrisisLog),
            routing::post(legal_facts),
            Doc::form("Record the facts that start the legal clocks"),
        ),
        (
            Method::POST,
            "/crises/{id}/echeances/{kind}/faite",
            Page(P::WriteCrisisLog),
            routing::post(legal_done),
            Doc::form("Record a legal obligation as done"),
        ),
    ]
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
