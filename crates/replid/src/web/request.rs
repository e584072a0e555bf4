//! The kit request form (a DGS, or ops for a commune) and its confirmation page: every field
//! checked by the operation, errors beside their field and in a summary at the top.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use repli_app::{AppError, crises, inventory};
use repli_core::{Actor, FieldError, InseeCode, Role, fr, text};
use repli_proto::api::{Contact, CrisisRequest, KitNeeds};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{Form, SessionCsrf, agents_from_text, api_error_page, base, check_csrf, complete, render, when};

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
    let list = crises::communes(st, a).await.map_err(|e| Box::new(api_error_page(st, &e)))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let insee = c.insee.as_str();
            json!({ "insee": insee, "name": c.name, "selected": selected == Some(insee) })
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

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/demande",
            Page(P::RequestCrisis),
            routing::get(request_form),
            Doc::page("The kit request form"),
        ),
        (Method::POST, "/demande", Page(P::RequestCrisis), routing::post(request_submit), Doc::form("Request a kit")),
        (
            Method::GET,
            "/crises/{id}/demande-enregistree",
            Page(P::ReadCrises),
            routing::get(request_recorded),
            Doc::page("What happens after a request"),
        ),
    ]
}
