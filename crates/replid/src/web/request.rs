//! The kit request form (a DGS, or ops for a commune) and its confirmation page: every field
//! checked by the operation, errors beside their field and in a summary at the top.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use repli_app::{AppError, crises, inventory};
use repli_core::{Actor, FieldError, InseeCode, Role, fr, text};
use repli_proto::api::{Contact, CrisisRequest, KitNeeds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{CsrfForm, Layout, page};
use crate::web::{SessionCsrf, agents_from_text, api_error_page, when};

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

/// The request form as posted, and as shown again after an error (the values as typed; a
/// field left out is empty).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RequestForm {
    /// The idempotency key of the form (a double submission records one request).
    idem: String,
    /// Chosen by ops; a DGS's is their own (the page shows the choice in `communes`).
    #[serde(skip_serializing)]
    commune: String,
    contact_name: String,
    contact_phone: String,
    contact_email: String,
    /// `2026-11-30T08:15`, in the calendar's time zone.
    aware_at: String,
    /// `oui`, `non` or `nsp`.
    personal_data: String,
    agents: String,
    laptops: String,
    routers: String,
    phones: String,
    printers: String,
    /// « Nom ; Service » per line.
    agents_list: String,
    delivery_address: String,
    notes: String,
}

/// The error beside each field, when it has one.
#[derive(Debug, Default, Serialize)]
struct FieldErrors {
    commune: Option<String>,
    contact_name: Option<String>,
    contact_phone: Option<String>,
    contact_email: Option<String>,
    aware_at: Option<String>,
    agents: Option<String>,
    laptops: Option<String>,
    routers: Option<String>,
    phones: Option<String>,
    printers: Option<String>,
    agents_list: Option<String>,
    delivery_address: Option<String>,
    notes: Option<String>,
}

impl FieldErrors {
    /// From the errors by web field name.
    fn of(errors: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| errors.get(k).cloned();
        FieldErrors {
            commune: get("commune"),
            contact_name: get("contact_name"),
            contact_phone: get("contact_phone"),
            contact_email: get("contact_email"),
            aware_at: get("aware_at"),
            agents: get("agents"),
            laptops: get("laptops"),
            routers: get("routers"),
            phones: get("phones"),
            printers: get("printers"),
            agents_list: get("agents_list"),
            delivery_address: get("delivery_address"),
            notes: get("notes"),
        }
    }
}

/// A wrong field in the summary at the top, linked to it.
#[derive(Debug, Serialize)]
struct SummaryLine {
    field: &'static str,
    label: &'static str,
    message: String,
}

/// A commune the actor may request for.
#[derive(Debug, Serialize)]
struct CommuneChoice {
    insee: String,
    name: String,
    selected: bool,
}

#[derive(Debug, Serialize)]
struct RequestPage<'a> {
    v: &'a RequestForm,
    e: FieldErrors,
    /// The summary's heading (the form has errors, or the request was refused).
    general: Option<String>,
    summary: Vec<SummaryLine>,
    /// Ops choose the commune; a DGS requests for their own.
    choose_commune: bool,
    communes: Vec<CommuneChoice>,
}

#[allow(clippy::too_many_arguments)]
fn request_page(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    status: StatusCode,
    values: &RequestForm,
    errors: &BTreeMap<String, String>,
    general: Option<String>,
    communes: Vec<CommuneChoice>,
) -> Response {
    // The error summary: each wrong field, in page order, linked to it.
    let summary = REQUEST_LABELS
        .iter()
        .filter_map(|(field, label)| errors.get(*field).map(|m| SummaryLine { field, label, message: m.clone() }))
        .collect();
    let body = RequestPage {
        v: values,
        e: FieldErrors::of(errors),
        general,
        summary,
        choose_commune: a.role != Role::Dgs,
        communes,
    };
    page(st, status, "demande", &Layout::signed_in(a, csrf, "Demander le kit de repli"), &body)
}

/// The communes the actor may request for; a database error is an error page, not an empty list.
async fn commune_choices(
    st: &AppState,
    a: &Actor,
    selected: Option<&str>,
) -> Result<Vec<CommuneChoice>, Box<Response>> {
    let list = crises::communes(st, a).await.map_err(|e| Box::new(api_error_page(st, &e)))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let insee = c.insee.to_string();
            CommuneChoice { selected: selected == Some(insee.as_str()), insee, name: c.name }
        })
        .collect())
}

pub async fn request_form(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
) -> Response {
    let communes = match commune_choices(&st, &a, None).await {
        Ok(c) => c,
        Err(page) => return *page,
    };
    request_page(&st, &a, &csrf, StatusCode::OK, &RequestForm::default(), &BTreeMap::new(), None, communes)
}

/// A count typed in a field (blank: 0).
fn number(raw: &str, field: &str, errors: &mut Vec<FieldError>) -> u32 {
    let raw = raw.trim();
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
    CsrfForm(form): CsrfForm<RequestForm>,
) -> Response {
    let mut errors: Vec<FieldError> = Vec::new();
    let commune_raw = if a.role == Role::Dgs {
        a.commune.as_ref().map(ToString::to_string).unwrap_or_default()
    } else {
        form.commune.clone()
    };
    let commune = InseeCode::parse(commune_raw.trim())
        .map_err(|_| errors.push(FieldError::new("commune", "choisissez une commune")))
        .ok();
    let agents = number(&form.agents, "agents", &mut errors);
    // All blank: the default kit (a laptop per agent up to 50, a router, a printer).
    let blank = [&form.laptops, &form.routers, &form.phones, &form.printers].iter().all(|v| v.trim().is_empty());
    let needs = (!blank).then(|| KitNeeds {
        laptop: number(&form.laptops, "needs.laptop", &mut errors),
        router: number(&form.routers, "needs.router", &mut errors),
        phone: number(&form.phones, "needs.phone", &mut errors),
        printer: number(&form.printers, "needs.printer", &mut errors),
    });
    let aware_at = match Some(form.aware_at.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match crate::web::local_instant(&st, s) {
            Some(t) => Some(t),
            None => {
                errors.push(FieldError::new("aware_at", "date et heure attendues (jj/mm/aaaa hh:mm)"));
                None
            }
        },
    };
    let personal_data = match form.personal_data.as_str() {
        "oui" => Some(true),
        "non" => Some(false),
        _ => None,
    };
    let opt = |v: &str| Some(v.trim().to_string()).filter(|s| !s.is_empty());
    let list = agents_from_text(&form.agents_list);
    let mut field_errors: BTreeMap<String, String> = BTreeMap::new();
    let communes = match commune_choices(&st, &a, commune.as_ref().map(InseeCode::as_str)).await {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let fail = |field_errors: &BTreeMap<String, String>, general: Option<String>, communes: Vec<CommuneChoice>| {
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
            name: form.contact_name.clone(),
            phone: form.contact_phone.clone(),
            email: opt(&form.contact_email),
        },
        agents,
        delivery_address: opt(&form.delivery_address),
        notes: opt(&form.notes),
        needs,
        aware_at,
        personal_data,
    };
    // Validation of the request itself (the API's), with these form-level errors.
    match crises::check_request(&st, &req) {
        Ok(()) => {}
        Err(AppError::Validation(v)) => errors.extend(v),
        Err(e) => return api_error_page(&st, &e),
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
    if let Err(line) = text::csv_quotes_closed(&form.agents_list) {
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
    let key = Some(form.idem.clone()).filter(|k| !k.is_empty() && k.len() <= 100);
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

/// What the page after a request says.
#[derive(Debug, Serialize)]
struct Recorded {
    id: String,
    /// « de Marseille », « d'Aubagne ».
    de_commune: String,
    due: String,
    /// The out-of-band contact's phone, and their address when given.
    phone: String,
    email: Option<String>,
    /// The DGS is told by SMS, by mail (when they gave an address).
    sms: bool,
    mail: bool,
    delivery: Option<String>,
    /// The metropolis' on-call number, when configured.
    astreinte: Option<String>,
}

#[derive(Debug, Serialize)]
struct RecordedPage {
    d: Recorded,
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
    let d = Recorded {
        id: view.id.to_string(),
        de_commune: fr::de(&view.commune_name),
        due: when(&st, Some(view.sla.due_at)),
        phone: fr::phone(&view.contact.phone),
        mail: channels.email && view.contact.email.is_some(),
        email: view.contact.email,
        sms: channels.sms,
        delivery: view.delivery_address,
        astreinte: st.config.documents.astreinte_phone().map(str::to_owned),
    };
    let layout = Layout::signed_in(&a, &csrf, "Demande enregistrée");
    page(&st, StatusCode::OK, "demande-enregistree", &layout, &RecordedPage { d })
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

#[cfg(test)]
mod tests {
    use super::*;
    use repli_core::AuthMethod;

    fn ops() -> Actor {
        Actor { user_id: 1, name: "Opé".into(), role: Role::Ops, commune: None, auth: AuthMethod::Password }
    }

    /// The page's model through the real strict template, as `view::page` renders it.
    fn rendered<T: Serialize>(layout: &Layout, body: &T) -> Result<String, handlebars::RenderError> {
        let mut data = serde_json::to_value(layout).unwrap();
        let body = serde_json::to_value(body).unwrap();
        data.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        data["a_configurer"] = serde_json::Value::Null;
        data["simulation"] = serde_json::Value::Null;
        crate::web::templates().unwrap().render("demande", &data)
    }

    fn body<'a>(form: &'a RequestForm, errors: &BTreeMap<String, String>) -> RequestPage<'a> {
        RequestPage {
            v: form,
            e: FieldErrors::of(errors),
            general: (!errors.is_empty()).then(|| "Le formulaire contient des erreurs.".to_owned()),
            summary: errors
                .iter()
                .map(|(f, m)| SummaryLine {
                    field: "contact_phone", label: "Téléphone", message: format!("{f}: {m}")
                })
                .collect(),
            choose_commune: true,
            communes: vec![CommuneChoice { insee: "13005".into(), name: "Aubagne".into(), selected: true }],
        }
    }

    #[test]
    fn the_request_page_renders_blank_and_with_its_errors() {
        let layout = Layout::signed_in(&ops(), "jeton", "Demander le kit de repli");
        let blank = rendered(&layout, &body(&RequestForm::default(), &BTreeMap::new())).unwrap();
        assert!(blank.contains("Envoyer la demande") && !blank.contains("aria-invalid"), "{blank}");
        assert!(blank.contains(r#"<option value="13005" selected>Aubagne (13005)</option>"#));

        let typed = RequestForm { contact_phone: "<b>06</b>".into(), ..RequestForm::default() };
        let errors = BTreeMap::from([("contact_phone".to_owned(), "numéro invalide".to_owned())]);
        let html = rendered(&layout, &body(&typed, &errors)).unwrap();
        assert!(html.contains(r#"<p id="contact_phone-erreur" class="erreur">numéro invalide</p>"#), "{html}");
        assert!(html.contains("&lt;b&gt;06&lt;/b&gt;") && !html.contains("<b>06"), "what was typed is escaped");
        assert!(html.contains(r##"<a href="#contact_phone">"##), "the summary links to the field");
    }

    #[test]
    fn the_form_takes_the_posted_fields_and_leaves_the_others_empty() {
        let posted = [("csrf", "jeton"), ("contact_name", "Anne"), ("laptops", "3"), ("inconnu", "x")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let de = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(posted.into_iter());
        let form = RequestForm::deserialize(de).unwrap();
        assert_eq!((form.contact_name.as_str(), form.laptops.as_str()), ("Anne", "3"));
        assert_eq!((form.commune.as_str(), form.agents_list.as_str()), ("", ""));
    }
}
