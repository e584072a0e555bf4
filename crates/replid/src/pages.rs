//! The web pages (French), server-rendered: the DGS's request and crisis follow-up, the ops
//! dashboard, tasks, inventory and hand-back scan, the auditors' journal and SLA report.
//! Every form carries the session's CSRF token and is validated here, errors shown next to
//! the field; every value goes through handlebars' HTML escaping.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use repli_core::{Actor, CrisisAction, CrisisState, FieldError, InseeCode, Role, SlaStatus, StepState, fr, text};
use repli_proto::api::{Contact, CrisisRequest, CrisisView, KitNeeds};
use repli_store::{AuditFilter, By, CrisisFilter};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Authed;
use crate::web::{Form, SessionCsrf, api_error_page, back, base, check_csrf, error_page, form_crisis, render, when};
use repli_app::AppError;
use repli_app::crises::{self, visible_crisis};
use repli_app::{inventory, steps};

/// Every key a form template reads, present (strict templates refuse a missing one).
fn complete(map: &BTreeMap<String, String>, keys: &[&str]) -> BTreeMap<String, String> {
    let mut out = map.clone();
    for k in keys {
        out.entry((*k).to_string()).or_default();
    }
    out
}

const REQUEST_FIELDS: [&str; 16] = [
    "idem",
    "commune",
    "contact_name",
    "contact_phone",
    "contact_email",
    "aware_at",
    "personal_data",
    "agents",
    "laptops",
    "routers",
    "phones",
    "printers",
    "agents_list",
    "delivery_address",
    "notes",
    "csrf",
];
/// The request form's fields in page order, with their labels, for the error summary.
const REQUEST_LABELS: [(&str, &str); 13] = [
    ("commune", "Commune"),
    ("contact_name", "Nom et fonction"),
    ("contact_phone", "Téléphone"),
    ("contact_email", "Adresse électronique de secours"),
    ("aware_at", "Constatée le"),
    ("agents", "Nombre d'agents"),
    ("laptops", "Ordinateurs portables"),
    ("routers", "Routeurs 4G/5G"),
    ("phones", "Téléphones mobiles"),
    ("printers", "Imprimantes"),
    ("agents_list", "Liste des agents"),
    ("delivery_address", "Lieu de livraison"),
    ("notes", "Remarques"),
];

const FILTERS: [&str; 7] = ["crise", "commune", "acteur", "action", "du", "au", "apres"];

/// Status shown with a colour class **and** words (never colour alone).
fn sla(status: SlaStatus) -> Value {
    let class = match status {
        SlaStatus::Breached => "alerte",
        SlaStatus::AtRisk => "risque",
        SlaStatus::Suspended => "pause",
        SlaStatus::MetLate => "retard",
        _ => "ok",
    };
    json!({ "class": class, "label": status.label_fr() })
}

fn severity(s: SlaStatus) -> u8 {
    match s {
        SlaStatus::Breached => 0,
        SlaStatus::AtRisk => 1,
        SlaStatus::Suspended => 2,
        SlaStatus::OnTrack => 3,
        _ => 4,
    }
}

fn crisis_line(st: &AppState, c: &CrisisView) -> Value {
    json!({
        "id": c.id.as_str(),
        "commune": c.commune_name,
        "state": c.state_label,
        "sla": sla(c.sla.status),
        "due": when(st, Some(c.sla.due_at)),
        "left": fr::duration(jiff::SignedDuration::from_secs(c.sla.remaining_seconds)),
        "exercice": c.exercise.is_some(),
        "used": c.sla.used_percent.min(100),
    })
}

/// The campaign on the ops dashboard: the shared stock, the waiting list and its rule, the
/// tenant's Graph budget (every open crisis's SLA clock is in the table above it).
fn campaign_json(c: &repli_app::campaign::Shared) -> Value {
    json!({
        "stock": c.stock.iter().filter(|s| s.available + s.held + s.missing > 0).map(|s| json!({
            "label": s.label, "available": s.available, "held": s.held, "missing": s.missing,
        })).collect::<Vec<_>>(),
        "waiting": c.waiting.iter().map(|w| json!({
            "position": w.position, "id": w.crisis.as_str(), "commune": w.commune_name, "exercice": w.exercise,
            "missing": w.missing.iter().map(|n| format!("{} {}", n.shortage, n.label)).collect::<Vec<_>>().join(", "),
        })).collect::<Vec<_>>(),
        "rule": c.priority_rule,
        "graph": {
            "limit": c.graph.limit_per_second, "sent": c.graph.sent_last_second,
            "throttled": c.graph.throttled, "retries": c.graph.retries,
        },
    })
}

// ---------------------------------------------------------------- home

pub async fn home(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let mut data = base(&a, &csrf, "Accueil");
    if matches!(a.role, Role::Ops | Role::Dgs | Role::Auditor) {
        let filter =
            CrisisFilter { commune: if a.role == Role::Dgs { a.commune.clone() } else { None }, ..Default::default() };
        let records = match st.store.crises(&filter).await {
            Ok(r) => r,
            Err(e) => return api_error_page(&st, &e.into()),
        };
        let mut views = Vec::new();
        for r in records {
            if !a.may_see_commune(&r.commune) {
                continue;
            }
            match crises::view(&st, r).await {
                Ok(v) => views.push(v),
                Err(e) => return api_error_page(&st, &e),
            }
        }
        // Breached and at-risk first, then by due instant.
        views.sort_by_key(|v| (!v.state.is_open(), severity(v.sla.status), v.sla.due_at));
        let open: Vec<Value> = views.iter().filter(|v| v.state.is_open()).map(|v| crisis_line(&st, v)).collect();
        let ended: Vec<Value> =
            views.iter().filter(|v| !v.state.is_open()).take(20).map(|v| crisis_line(&st, v)).collect();
        // An exercise never stands in the way of a real request.
        let real_open = views.iter().any(|v| v.state.is_open() && v.exercise.is_none());
        data.insert("can_request".into(), json!(a.role == Role::Dgs && !real_open));
        data.insert("open".into(), json!(open));
        data.insert("ended".into(), json!(ended));
    }
    if a.role == Role::Ops {
        let tasks = st.store.waiting_tasks().await.map(|t| t.len()).unwrap_or(0);
        data.insert("tasks".into(), json!(tasks));
        data.insert("m365".into(), m365_line(&st));
        match repli_app::campaign::shared(&st).await {
            Ok(c) => data.insert("campagne".into(), campaign_json(&c)),
            Err(e) => return api_error_page(&st, &e),
        };
    }
    render(&st, StatusCode::OK, "accueil", &Value::Object(data))
}

/// The last Microsoft 365 preflight on the ops dashboard: passed or not, when, what failed.
fn m365_line(st: &AppState) -> Value {
    match repli_app::preflight::last(st.app.services()) {
        None => json!({ "pending": true }),
        Some(run) => json!({
            "ok": run.report.ok,
            "at": when(st, Some(run.at)),
            "failures": run.report.failures().map(|c| c.title.clone()).collect::<Vec<_>>(),
        }),
    }
}

// ---------------------------------------------------------------- request form

#[allow(clippy::too_many_arguments)]
fn request_page(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    status: StatusCode,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
    general: Option<String>,
    communes: Vec<Value>,
) -> Response {
    let mut data = base(a, csrf, "Demander le kit de repli");
    data.insert("v".into(), json!(complete(values, &REQUEST_FIELDS)));
    data.insert("e".into(), json!(complete(errors, &REQUEST_FIELDS)));
    data.insert("general".into(), json!(general));
    // The error summary: each wrong field, in page order, linked to it.
    let summary: Vec<Value> = REQUEST_LABELS
        .iter()
        .filter_map(|(f, label)| errors.get(*f).map(|m| json!({ "field": f, "label": label, "message": m })))
        .collect();
    data.insert("summary".into(), json!(summary));
    data.insert("communes".into(), json!(communes));
    data.insert("choose_commune".into(), json!(a.role != Role::Dgs));
    render(st, status, "demande", &Value::Object(data))
}

/// The communes the actor may request for; a database error is an error page, not an empty list.
async fn commune_choices(st: &AppState, a: &Actor, selected: Option<&str>) -> Result<Vec<Value>, Box<Response>> {
    let list = st.store.communes().await.map_err(|e| Box::new(api_error_page(st, &e.into())))?;
    Ok(list
        .into_iter()
        .filter(|c| a.may_see_commune(&c.commune.insee))
        .map(|c| {
            let insee = c.commune.insee.as_str();
            json!({ "insee": insee, "name": c.commune.name, "selected": selected == Some(insee) })
        })
        .collect())
}

pub async fn request_form(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let values = BTreeMap::new();
    let communes = match commune_choices(&st, &a, None).await {
        Ok(c) => c,
        Err(page) => return *page,
    };
    request_page(&st, &a, &csrf, StatusCode::OK, &values, &BTreeMap::new(), None, communes)
}

fn number(form: &BTreeMap<String, String>, name: &str, field: &str, errors: &mut Vec<FieldError>) -> u32 {
    let raw = form.get(name).map(|s| s.trim()).unwrap_or("");
    if raw.is_empty() {
        return 0;
    }
    raw.parse::<u32>().unwrap_or_else(|_| {
        errors.push(FieldError::new(field, "nombre entier positif attendu"));
        0
    })
}

/// « Nom ; Service » per line (a comma or a tab also separates); blank lines ignored.
fn agents_from_text(textarea: &str) -> Vec<(String, String)> {
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

/// Web field names for the API's field names.
fn web_field(api: &str) -> String {
    match api {
        "contact.name" => "contact_name".into(),
        "contact.phone" => "contact_phone".into(),
        "contact.email" => "contact_email".into(),
        "needs.laptop" => "laptops".into(),
        "needs.router" => "routers".into(),
        "needs.phone" => "phones".into(),
        "needs.printer" => "printers".into(),
        other if other.starts_with("agents[") => "agents_list".into(),
        other => other.replace('.', "_"),
    }
}

pub async fn request_submit(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    axum::Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&st, &csrf, &form) {
        return *r;
    }
    let mut errors: Vec<FieldError> = Vec::new();
    let commune_raw = if a.role == Role::Dgs {
        a.commune.as_ref().map(ToString::to_string).unwrap_or_default()
    } else {
        form.get("commune").cloned().unwrap_or_default()
    };
    let commune = InseeCode::parse(commune_raw.trim())
        .map_err(|_| errors.push(FieldError::new("commune", "choisissez une commune")))
        .ok();
    let agents = number(&form, "agents", "agents", &mut errors);
    // All blank: the default kit (a laptop per agent up to 50, a router, a printer).
    let blank =
        ["laptops", "routers", "phones", "printers"].iter().all(|k| form.get(*k).is_none_or(|v| v.trim().is_empty()));
    let needs = (!blank).then(|| KitNeeds {
        laptop: number(&form, "laptops", "needs.laptop", &mut errors),
        router: number(&form, "routers", "needs.router", &mut errors),
        phone: number(&form, "phones", "needs.phone", &mut errors),
        printer: number(&form, "printers", "needs.printer", &mut errors),
    });
    let aware_at = match form.get("aware_at").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match crate::web::local_instant(&st, s) {
            Some(t) => Some(t),
            None => {
                errors.push(FieldError::new("aware_at", "date et heure attendues (jj/mm/aaaa hh:mm)"));
                None
            }
        },
    };
    let personal_data = match form.get("personal_data").map(String::as_str) {
        Some("oui") => Some(true),
        Some("non") => Some(false),
        _ => None,
    };
    let opt = |k: &str| form.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let list = agents_from_text(form.get("agents_list").map(String::as_str).unwrap_or(""));
    let mut field_errors: BTreeMap<String, String> = BTreeMap::new();
    let communes = match commune_choices(&st, &a, commune.as_ref().map(InseeCode::as_str)).await {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let fail = |field_errors: &BTreeMap<String, String>, general: Option<String>, communes: Vec<Value>| {
        request_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, &form, field_errors, general, communes)
    };
    let Some(commune) = commune else {
        for e in &errors {
            field_errors.insert(web_field(&e.field), e.message.clone());
        }
        return fail(
            &field_errors,
            Some("Le formulaire contient des erreurs : voir les champs signalés.".into()),
            communes,
        );
    };
    let req = CrisisRequest {
        commune,
        contact: Contact {
            name: form.get("contact_name").cloned().unwrap_or_default(),
            phone: form.get("contact_phone").cloned().unwrap_or_default(),
            email: opt("contact_email"),
        },
        agents,
        delivery_address: opt("delivery_address"),
        notes: opt("notes"),
        needs,
        aware_at,
        personal_data,
    };
    // Validation of the request itself (the API's), with these form-level errors.
    let now = st.clock.now();
    let due = st.calendar.add_hours(now, st.config.sla.business_hours).unwrap_or(now);
    if let Err(AppError::Validation(v)) = crises::validate(&req, due, now) {
        errors.extend(v);
    }
    let agent_rows = match inventory::checked_agents(list.iter().map(|(n, sv)| (n.as_str(), sv.as_str()))) {
        Ok(rows) => rows,
        Err(bad) => {
            errors.extend(
                bad.into_iter()
                    .map(|(i, e)| FieldError::new("agents_list", format!("ligne {} : {}", i + 1, e.message))),
            );
            Vec::new()
        }
    };
    if let Err(line) = text::csv_quotes_closed(form.get("agents_list").map(String::as_str).unwrap_or("")) {
        errors.push(FieldError::new("agents_list", format!("ligne {line} : guillemet ouvert jamais fermé")));
    }
    if !errors.is_empty() {
        for e in &errors {
            field_errors.entry(web_field(&e.field)).or_insert_with(|| e.message.clone());
        }
        return fail(
            &field_errors,
            Some("Le formulaire contient des erreurs : voir les champs signalés.".into()),
            communes,
        );
    }
    let key = form.get("idem").cloned().filter(|k| !k.is_empty() && k.len() <= 100);
    match crises::request(&st, &a, &req, key.as_deref()).await {
        Ok((rec, _)) => {
            if !agent_rows.is_empty()
                && let Err(e) =
                    inventory::record_agents(&st, &a, rec.id.as_str(), &agent_rows, inventory::ListChange::Replace)
                        .await
            {
                tracing::warn!(error = %e, "agents list from the request form refused");
            }
            Redirect::to(&format!("/crises/{}/demande-enregistree", rec.id)).into_response()
        }
        Err(e) => fail(&field_errors, Some(e.to_problem().detail), communes),
    }
}

/// The page after a request: its number, when the kit is due, what happens next and how the
/// DGS will be told, and the astreinte's number.
pub async fn request_recorded(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    let view = match crises::get(&st, &a, &id).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&st, &e),
    };
    let channels = repli_app::notify::dgs_channels(&st);
    let mut data = base(&a, &csrf, "Demande enregistrée");
    data.insert(
        "d".into(),
        json!({
            "id": view.id.as_str(),
            "commune": view.commune_name,
            "de_commune": fr::de(&view.commune_name),
            "due": when(&st, Some(view.sla.due_at)),
            "phone": fr::phone(&view.contact.phone),
            "email": view.contact.email,
            "sms": channels.sms,
            "mail": channels.email && view.contact.email.is_some(),
            "delivery": view.delivery_address,
            "astreinte": st.config.documents.astreinte_phone(),
        }),
    );
    render(&st, StatusCode::OK, "demande-enregistree", &Value::Object(data))
}

// ---------------------------------------------------------------- crisis page

pub async fn crisis(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let r = match visible_crisis(&st, &a, &id).await {
        Ok(r) => r,
        Err(e) => return api_error_page(&st, &e),
    };
    let crisis_id = r.id.clone();
    // A database error is an error page, never an empty section.
    let read = async {
        let convention = st.store.commune(&r.commune).await?.and_then(|c| c.convention);
        let view = crises::view(&st, r).await?;
        let steps = steps::steps_of(&st, &a, crisis_id.as_str()).await?;
        let loans = inventory::loans_of(&st, &crisis_id).await?;
        let log = st.store.log_entries(&crisis_id).await?;
        let agents = inventory::agents(&st, &a, crisis_id.as_str()).await?;
        let outputs = steps::kit_outputs(&st, &crisis_id).await?;
        let lendable =
            if a.role == Role::Ops { inventory::lendable(&st, &crisis_id, &outputs).await? } else { Vec::new() };
        Ok::<_, AppError>((convention, view, Some(steps), loans, log, agents, lendable, outputs))
    };
    let (convention, view, steps, loans, log, agents, lendable, outputs) = match read.await {
        Ok(v) => v,
        Err(e) => return api_error_page(&st, &e),
    };
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
                    "retry": is_ops && s.state == StepState::Failed,
                    "skip": is_ops && matches!(run.state, repli_core::run::RunState::Running | repli_core::run::RunState::Failed) && matches!(s.state, StepState::Failed | StepState::Pending | StepState::WaitingManual),
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
            "sla": sla(view.sla.status),
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
    let kind = form.get("type").and_then(|k| k.parse::<repli_core::LogKind>().ok());
    let entry = text::free_text("texte", form.get("texte").map(String::as_str).unwrap_or(""), text::NOTE_MAX, true);
    match (kind, entry) {
        (Some(kind), Ok(t)) => match st.store.add_log_entry(&r.id, kind, &t, &a, st.clock.now()).await {
            Ok(_) => back(&id, "ok", "Entrée ajoutée à la main courante."),
            Err(e) => back(&id, "erreur", &AppError::from(e).to_problem().detail),
        },
        (None, _) => back(&id, "erreur", "Type d'entrée inconnu."),
        (_, Err(e)) => back(&id, "erreur", &format!("Main courante : {}", e.message)),
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
    if note.as_ref().is_some_and(|n| text::free_text("note", n, text::NOTE_MAX, false).is_err()) {
        return back(&id, "erreur", "Note invalide (caractères de contrôle ou trop longue).");
    }
    let target =
        if form.get("retour").is_some_and(|v| v == "taches") { "/taches".to_string() } else { format!("/crises/{id}") };
    match st.store.confirm_task(&r.id, &step, note.as_deref(), By::User(&a), st.clock.now()).await {
        Ok(s) => {
            st.engine.wake();
            crate::web::redirect_with(&target, "ok", &format!("« {} » confirmée.", s.title))
        }
        Err(e) => back(&id, "erreur", &AppError::from(e).to_problem().detail),
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

// ---------------------------------------------------------------- ops pages

pub async fn tasks(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let list = match steps::task_views(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let tasks: Vec<Value> = list
        .iter()
        .map(|t| {
            json!({
                "crisis": t.crisis.as_str(), "commune": t.commune_name, "step": t.step, "title": t.title,
                "instructions": t.instructions, "checklist": t.checklist, "since": when(&st, t.since),
                "exercice": t.exercise,
            })
        })
        .collect();
    let mut data = base(&a, &csrf, "Tâches manuelles");
    data.insert("tasks".into(), json!(tasks));
    data.insert("flash".into(), json!(q.get("ok")));
    render(&st, StatusCode::OK, "taches", &Value::Object(data))
}

pub async fn inventory(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let items = match st.store.items(None).await {
        Ok(i) => i,
        Err(e) => return api_error_page(&st, &e.into()),
    };
    let mut counts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for i in &items {
        *counts.entry(i.item.kind.label_fr()).or_default().entry(i.state.label_fr()).or_default() += 1;
    }
    let summary: Vec<Value> = counts
        .iter()
        .map(|(kind, states)| json!({ "kind": kind, "states": states.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ") }))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .take(500)
        .map(|i| json!({ "tag": i.item.asset_tag, "serial": i.item.serial, "kind": i.item.kind.label_fr(), "model": i.item.model, "state": i.state.label_fr(), "crisis": i.crisis }))
        .collect();
    let mut data = base(&a, &csrf, "Inventaire");
    data.insert("can_import".into(), json!(a.may(repli_core::Permission::ManageInventory)));
    data.insert("flash".into(), json!(q.get("ok")));
    data.insert("summary".into(), json!(summary));
    data.insert("items".into(), json!(rows));
    data.insert("total".into(), json!(items.len()));
    render(&st, StatusCode::OK, "inventaire", &Value::Object(data))
}

pub async fn item(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(serial): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (found, history) = match st.store.item(&serial).await {
        Ok(Some(i)) => i,
        Ok(None) => return error_page(&st, StatusCode::NOT_FOUND, "Introuvable", "Équipement inconnu."),
        Err(e) => return api_error_page(&st, &e.into()),
    };
    let mut data = base(&a, &csrf, &format!("Équipement {}", found.item.asset_tag));
    data.insert(
        "i".into(),
        json!({ "tag": found.item.asset_tag, "serial": found.item.serial, "kind": found.item.kind.label_fr(), "model": found.item.model, "state": found.state.label_fr(), "crisis": found.crisis }),
    );
    data.insert(
        "history".into(),
        json!(history.iter().map(|h| json!({ "at": when(&st, Some(h.at)), "who": h.actor, "crisis": h.crisis, "from": h.from.as_deref().map(repli_core::inventory::state_label), "to": repli_core::inventory::state_label(&h.to), "note": h.note })).collect::<Vec<_>>()),
    );
    // What ops may do from here, as the store's rules allow it from this state.
    let ops = a.may(repli_core::Permission::ManageInventory);
    let st_now = found.state;
    data.insert(
        "can".into(),
        json!({
            "wipe": ops && matches!(st_now, repli_core::ItemState::Returned | repli_core::ItemState::Wiping),
            "start_wipe": ops && st_now == repli_core::ItemState::Returned,
            "maintenance": ops && matches!(st_now, repli_core::ItemState::Available | repli_core::ItemState::Returned),
            "back": ops && st_now == repli_core::ItemState::Maintenance,
            "retire": ops && matches!(st_now, repli_core::ItemState::Available | repli_core::ItemState::Maintenance | repli_core::ItemState::Lost),
        }),
    );
    data.insert("flash".into(), json!(q.get("ok")));
    data.insert("flash_error".into(), json!(q.get("erreur")));
    render(&st, StatusCode::OK, "equipement", &Value::Object(data))
}

// ---------------------------------------------------------------- auditor pages

const PAGE: u32 = 50;

/// The journal's filters; dates are days in `tz` (the configured calendar's).
fn audit_filter(q: &BTreeMap<String, String>, tz: &jiff::tz::TimeZone) -> Result<AuditFilter, String> {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    for k in ["crise", "commune", "acteur", "action"] {
        if get(k).is_some_and(|v| v.chars().count() > 200 || v.chars().any(char::is_control)) {
            return Err(format!("Filtre « {k} » invalide (200 caractères au plus)."));
        }
    }
    let day = |k: &str, end: bool| -> Result<Option<jiff::Timestamp>, String> {
        match get(k) {
            None => Ok(None),
            Some(d) => {
                let date: jiff::civil::Date = d.parse().map_err(|_| format!("Date « {d} » invalide (aaaa-mm-jj)."))?;
                let date = if end { date.tomorrow().map_err(|e| e.to_string())? } else { date };
                let z = date.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
                Ok(Some(z.timestamp()))
            }
        }
    };
    Ok(AuditFilter {
        crisis: get("crise"),
        commune: get("commune"),
        actor: get("acteur"),
        action: get("action")
            .map(|a| {
                a.parse().map_err(|_| format!("Action « {a} » inconnue du journal (ou préfixe terminé par un point)."))
            })
            .transpose()?,
        from: day("du", false)?,
        to: day("au", true)?,
        after_seq: q.get("apres").and_then(|v| v.parse().ok()).unwrap_or(0),
        limit: PAGE,
    })
}

pub async fn journal(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut data = base(&a, &csrf, "Journal d'audit");
    let verify = st.store.verify_audit(None).await;
    data.insert(
        "verify".into(),
        match &verify {
            Ok(s) => json!({ "ok": true, "entries": s.entries, "checkpoint": s.last_checkpoint, "key": st.store.checkpoint_public_key() }),
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        },
    );
    let filter = match audit_filter(&q, &st.time_zone().clone()) {
        Ok(f) => f,
        Err(m) => {
            data.insert("filter_error".into(), json!(m));
            AuditFilter { limit: PAGE, ..Default::default() }
        }
    };
    let entries = match st.store.audit_entries(&filter).await {
        Ok(e) => e,
        Err(e) => return api_error_page(&st, &e.into()),
    };
    let next = (entries.len() as u32 == PAGE).then(|| entries.last().map(|e| e.seq)).flatten();
    let mut next_q = q.clone();
    if let Some(n) = next {
        next_q.insert("apres".into(), n.to_string());
    }
    let mut export_q = q.clone();
    export_q.remove("apres");
    let qs =
        |m: &BTreeMap<String, String>| form_urlencoded::Serializer::new(String::new()).extend_pairs(m.iter()).finish();
    data.insert("q".into(), json!(complete(&q, &FILTERS)));
    data.insert("next".into(), json!(next.map(|_| format!("/journal?{}", qs(&next_q)))));
    data.insert("export_csv".into(), json!(format!("/journal/export?format=csv&{}", qs(&export_q))));
    data.insert("export_jsonl".into(), json!(format!("/journal/export?format=jsonl&{}", qs(&export_q))));
    data.insert(
        "entries".into(),
        json!(entries.iter().map(|e| json!({ "seq": e.seq, "at": e.at, "who": e.actor_name, "role": e.actor_role, "crisis": e.crisis, "action": e.action, "target": e.target, "details": e.details })).collect::<Vec<_>>()),
    );
    render(&st, StatusCode::OK, "journal", &Value::Object(data))
}

pub async fn journal_export(
    State(st): State<AppState>,
    _: Authed,
    Query(mut q): Query<BTreeMap<String, String>>,
) -> Response {
    let format = q.remove("format").unwrap_or_else(|| "csv".into());
    let mut filter = match audit_filter(&q, &st.time_zone().clone()) {
        Ok(f) => f,
        Err(m) => return error_page(&st, StatusCode::BAD_REQUEST, "Filtre invalide", &m),
    };
    let mut all = Vec::new();
    loop {
        filter.limit = 5000;
        let page = match st.store.audit_entries(&filter).await {
            Ok(p) => p,
            Err(e) => return api_error_page(&st, &e.into()),
        };
        let last = page.last().map(|e| e.seq);
        let n = page.len();
        all.extend(page);
        match last {
            Some(s) if n == 5000 => filter.after_seq = s,
            _ => break,
        }
    }
    let (body, ct, ext) = match format.as_str() {
        "jsonl" => (
            all.iter().filter_map(|e| serde_json::to_string(e).ok()).map(|l| l + "\n").collect::<String>().into_bytes(),
            "application/x-ndjson",
            "jsonl",
        ),
        _ => {
            let mut out = Vec::new();
            if let Err(e) = repli_core::audit::write_csv(&mut out, &all) {
                return api_error_page(&st, &AppError::Internal(e.to_string()));
            }
            (out, "text/csv; charset=utf-8", "csv")
        }
    };
    let disposition = format!("attachment; filename=\"journal-audit.{ext}\"");
    (StatusCode::OK, [(header::CONTENT_TYPE, ct.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

pub async fn sla_report(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let lines = match crises::sla_report(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let rows: Vec<Value> = lines
        .iter()
        .map(|l| json!({
            "id": l.crisis.as_str(), "commune": l.commune_name, "state": l.state.label_fr(), "started": when(&st, Some(l.started_at)),
            "due": when(&st, Some(l.due_at)), "ready": when(&st, l.ready_at), "sla": sla(l.status),
            "late": if l.late_seconds > 0 { fr::duration(jiff::SignedDuration::from_secs(l.late_seconds)) } else { String::new() },
            "suspensions": l.suspensions.len(),
        }))
        .collect();
    let met = lines.iter().filter(|l| l.status == SlaStatus::Met).count();
    let mut data = base(&a, &csrf, "Respect du délai de 48 h ouvrées");
    data.insert("rows".into(), json!(rows));
    data.insert("met".into(), json!(met));
    data.insert("total".into(), json!(lines.len()));
    render(&st, StatusCode::OK, "rapport-sla", &Value::Object(data))
}

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

    fn paris() -> jiff::tz::TimeZone {
        repli_core::BusinessCalendar::from_spec(&repli_core::CalendarSpec::default()).unwrap().time_zone().clone()
    }

    #[test]
    fn audit_filters_are_checked() {
        let mut q = BTreeMap::new();
        q.insert("du".to_string(), "2026-11-23".to_string());
        q.insert("au".to_string(), "2026-11-23".to_string());
        let f = audit_filter(&q, &paris()).unwrap();
        assert_eq!(f.to.unwrap().duration_since(f.from.unwrap()), jiff::SignedDuration::from_hours(24));
        q.insert("du".to_string(), "23/11/2026".to_string());
        assert!(audit_filter(&q, &paris()).is_err());
        let mut q = BTreeMap::new();
        q.insert("acteur".to_string(), "x".repeat(201));
        assert!(audit_filter(&q, &paris()).is_err());
    }
}
