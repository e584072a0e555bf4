//! The inventory pages (ops): the pool, an item and its history, wipes, maintenance and
//! retirement, the pool's import (with its preview) and export.

use axum::Extension;
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::inventory;
use repli_core::{Actor, ItemKind, ItemState, Permission};
use repli_proto::api::{ImportFile, ImportRequest, ItemView, ServiceRequest, WipeRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::{Flash, Flashes};
use crate::web::view::{CsrfForm, Layout, page};
use crate::web::{SessionCsrf, api_error_page, check_csrf, error_page, redirect_with, when};

/// How many items of a kind are in each state.
#[derive(Debug, Serialize)]
struct KindSummary {
    kind: &'static str,
    /// « 3 disponible, 1 prêté ».
    states: String,
}

/// An item, in the pool's table and on its own page.
#[derive(Debug, Serialize)]
struct ItemLine {
    tag: String,
    serial: String,
    kind: &'static str,
    model: String,
    state: &'static str,
    crisis: Option<String>,
}

impl ItemLine {
    fn of(i: &ItemView) -> Self {
        ItemLine {
            tag: i.item.asset_tag.clone(),
            serial: i.item.serial.clone(),
            kind: i.item.kind.label_fr(),
            model: i.item.model.clone(),
            state: i.state.label_fr(),
            crisis: i.crisis.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct InventoryPage {
    /// Shows the import form.
    can_import: bool,
    total: usize,
    summary: Vec<KindSummary>,
    /// The first 500.
    items: Vec<ItemLine>,
}

pub async fn inventory(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    flashes: Flashes,
) -> Response {
    let items = match inventory::items(&st).await {
        Ok(i) => i,
        Err(e) => return api_error_page(&st, &e),
    };
    let mut counts: BTreeMap<&'static str, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for i in &items {
        *counts.entry(i.item.kind.label_fr()).or_default().entry(i.state.label_fr()).or_default() += 1;
    }
    let summary = counts
        .iter()
        .map(|(kind, states)| KindSummary {
            kind,
            states: states.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", "),
        })
        .collect();
    let body = InventoryPage {
        can_import: a.may(Permission::ManageInventory),
        total: items.len(),
        summary,
        items: items.iter().take(500).map(ItemLine::of).collect(),
    };
    page(&st, StatusCode::OK, "inventaire", &Layout::signed_in(&a, &csrf, "Inventaire").flashes(&flashes), &body)
}

/// A move in an item's history.
#[derive(Debug, Serialize)]
struct Event {
    at: String,
    who: String,
    crisis: Option<String>,
    from: Option<String>,
    to: String,
    note: Option<String>,
}

/// The forms the item's page shows: what ops may do from its state.
#[derive(Debug, Default, Serialize)]
struct Can {
    /// Record a wipe (and its certificate): laptops and phones.
    wipe: bool,
    /// Record the check that puts a returned router, SIM or printer back in stock.
    check: bool,
    start_wipe: bool,
    maintenance: bool,
    /// Back to service from maintenance.
    back: bool,
    retire: bool,
}

impl Can {
    /// As the pool's moves allow them from `state` (none for who may not manage the pool).
    fn of(ops: bool, kind: ItemKind, state: ItemState) -> Self {
        if !ops {
            return Can::default();
        }
        Can {
            wipe: kind.needs_wipe() && state.may_record_wipe(),
            check: !kind.needs_wipe() && state.may_record_wipe(),
            start_wipe: kind.needs_wipe() && state.may_service_to(ItemState::Wiping),
            maintenance: state.may_service_to(ItemState::Maintenance),
            back: state.may_service_to(ItemState::Available),
            retire: state.may_service_to(ItemState::Retired),
        }
    }
}

#[derive(Debug, Serialize)]
struct ItemPage {
    i: ItemLine,
    can: Can,
    history: Vec<Event>,
}

pub async fn item(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(serial): Path<String>,
    flashes: Flashes,
) -> Response {
    let repli_proto::api::ItemDetail { item: found, history } = match inventory::item(&st, &serial).await {
        Ok(i) => i,
        Err(e) => return api_error_page(&st, &e),
    };
    let history = history
        .into_iter()
        .map(|h| Event {
            at: when(&st, Some(h.at)),
            who: h.actor,
            crisis: h.crisis,
            from: h.from.as_deref().map(repli_core::inventory::state_label),
            to: repli_core::inventory::state_label(&h.to),
            note: h.note,
        })
        .collect();
    let can = Can::of(a.may(Permission::ManageInventory), found.item.kind, found.state);
    let body = ItemPage { can, i: ItemLine::of(&found), history };
    let layout = Layout::signed_in(&a, &csrf, format!("Équipement {}", found.item.asset_tag)).flashes(&flashes);
    page(&st, StatusCode::OK, "equipement", &layout, &body)
}

/// The wipe form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WipeForm {
    methode: String,
    operateur: String,
    certificat: String,
}

/// An item's wipe, recorded with its certificate.
pub async fn wipe(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(serial): Path<String>,
    CsrfForm(form): CsrfForm<WipeForm>,
) -> Response {
    let req = WipeRequest {
        method: form.methode.trim().to_owned(),
        operator: form.operateur.trim().to_owned(),
        certificate: form.certificat.trim().to_owned(),
    };
    match inventory::wipe(&st, &a, &serial, &req).await {
        Ok(d) if d.item.state == ItemState::Maintenance => item_back(
            &serial,
            Flash::ok(
                "Effacement enregistré. Rendu endommagé, l'équipement part en maintenance avant tout nouveau prêt.",
            ),
        ),
        Ok(_) => item_back(&serial, Flash::ok("Effacement enregistré : l'équipement est de nouveau disponible.")),
        Err(e) => item_back(&serial, Flash::error(e.to_problem().detail)),
    }
}

/// The check form of a returned router, SIM or printer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CheckForm {
    /// What was checked.
    controle: String,
}

/// A returned router, SIM or printer checked and put back in stock.
pub async fn check(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(serial): Path<String>,
    CsrfForm(form): CsrfForm<CheckForm>,
) -> Response {
    let req = repli_proto::api::CheckRequest { note: form.controle.trim().to_owned() };
    match inventory::check(&st, &a, &serial, &req).await {
        Ok(d) if d.item.state == ItemState::Maintenance => item_back(
            &serial,
            Flash::ok(
                "Vérification enregistrée. Rendu endommagé, l'équipement part en maintenance avant tout nouveau prêt.",
            ),
        ),
        Ok(_) => item_back(&serial, Flash::ok("Vérification enregistrée : l'équipement est de nouveau disponible.")),
        Err(e) => item_back(&serial, Flash::error(e.to_problem().detail)),
    }
}

/// The service forms: maintenance, back to service, start of a wipe, retirement.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceForm {
    /// `maintenance`, `disponible`, `effacement` or `reforme`.
    vers: String,
    /// `oui` when the retirement's box is ticked.
    confirme: String,
    motif: String,
}

/// Maintenance, back to service, start of a wipe, or retirement (which asks for a tick that
/// says the item leaves the pool for good).
pub async fn service(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(serial): Path<String>,
    CsrfForm(form): CsrfForm<ServiceForm>,
) -> Response {
    let to = match form.vers.as_str() {
        "maintenance" => ItemState::Maintenance,
        "disponible" => ItemState::Available,
        "effacement" => ItemState::Wiping,
        "reforme" => ItemState::Retired,
        _ => return error_page(&st, StatusCode::BAD_REQUEST, "Action inconnue", "Action inconnue."),
    };
    if to == ItemState::Retired && form.confirme != "oui" {
        return item_back(
            &serial,
            Flash::error("Cochez la case de confirmation : la réforme sort l'équipement du parc pour de bon."),
        );
    }
    let reason = form.motif.trim().to_owned();
    let reason = if reason.is_empty() && to == ItemState::Wiping { "Effacement commencé".to_owned() } else { reason };
    match inventory::service(&st, &a, &serial, &ServiceRequest { to, reason }).await {
        Ok(d) => {
            item_back(&serial, Flash::ok(format!("Équipement {} : {}.", d.item.item.asset_tag, d.item.state_label)))
        }
        Err(e) => item_back(&serial, Flash::error(e.to_problem().detail)),
    }
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
            Ok(n) => redirect_with("/inventaire", Flash::ok(format!("{n} équipement(s) importé(s) depuis {source}."))),
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

/// What the import would bring in, per kind.
#[derive(Debug, Serialize)]
struct KindCount {
    kind: &'static str,
    count: usize,
}

#[derive(Debug, Serialize)]
struct Preview {
    total: usize,
    kinds: Vec<KindCount>,
}

#[derive(Debug, Serialize)]
struct ImportPage<'a> {
    /// Why the file was refused, a line each.
    errors: &'a [String],
    /// What would come in, when the file passed.
    preview: Option<Preview>,
    /// The file's name and content, posted again by the confirmation's button.
    source: Option<&'a str>,
    csv: Option<&'a str>,
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
    let body = ImportPage {
        errors,
        preview: preview.map(|p| Preview {
            total: p.total,
            kinds: p.by_kind.iter().map(|(k, n)| KindCount { kind: k.label_fr(), count: *n }).collect(),
        }),
        source: content.map(|c| c.0),
        csv: content.map(|c| c.1),
    };
    page(st, status, "inventaire-import", &Layout::signed_in(a, csrf, "Importer le parc"), &body)
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

fn item_back(serial: &str, message: Flash) -> Response {
    let path: String = form_urlencoded::byte_serialize(serial.as_bytes()).collect();
    redirect_with(&format!("/inventaire/{path}"), message)
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Answer;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::POST,
            "/inventaire/{serial}/effacement",
            Page(P::ManageInventory),
            routing::post(wipe),
            Doc::form("Record an item's wipe and its certificate"),
        ),
        (
            Method::POST,
            "/inventaire/{serial}/verification",
            Page(P::ManageInventory),
            routing::post(check),
            Doc::form("Record the check that puts a returned router, SIM or printer back in stock"),
        ),
        (
            Method::POST,
            "/inventaire/{serial}/service",
            Page(P::ManageInventory),
            routing::post(service),
            Doc::form("Maintenance, back to service, start of a wipe, retirement"),
        ),
        (Method::GET, "/inventaire", Page(P::ReadInventory), routing::get(inventory), Doc::page("The equipment pool")),
        (
            Method::POST,
            "/inventaire/import",
            Page(P::ManageInventory),
            routing::post(import_pool),
            Doc::page("Check a pool CSV file (every refused line), then import it, all or nothing"),
        ),
        (
            Method::GET,
            "/inventaire/export",
            Page(P::ReadInventory),
            routing::get(export_pool),
            Doc::answering("The pool as CSV, in the import's columns (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/inventaire/{serial}",
            Page(P::ReadInventory),
            routing::get(item),
            Doc::page("An item and its history"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The item page's model through the real strict template, as `view::page` renders it.
    fn rendered(state: ItemState, ops: bool) -> String {
        rendered_kind(ItemKind::Laptop, state, ops)
    }

    fn rendered_kind(kind: ItemKind, state: ItemState, ops: bool) -> String {
        let a = Actor {
            user_id: 1,
            name: "Opé".into(),
            role: if ops { repli_core::Role::Ops } else { repli_core::Role::Auditor },
            commune: None,
            auth: repli_core::AuthMethod::Password,
        };
        let body = ItemPage {
            i: ItemLine {
                tag: "PC-1".into(),
                serial: "S1".into(),
                kind: kind.label_fr(),
                model: "X".into(),
                state: state.label_fr(),
                crisis: None,
            },
            can: Can::of(a.may(Permission::ManageInventory), kind, state),
            history: vec![Event {
                at: "hier".into(),
                who: "Opé".into(),
                crisis: None,
                from: None,
                to: "disponible".into(),
                note: None,
            }],
        };
        let mut data = serde_json::to_value(Layout::signed_in(&a, "jeton", "Équipement PC-1")).unwrap();
        data.as_object_mut().unwrap().extend(serde_json::to_value(&body).unwrap().as_object().unwrap().clone());
        data["a_configurer"] = serde_json::Value::Null;
        data["simulation"] = serde_json::Value::Null;
        crate::web::templates().unwrap().render("equipement", &data).unwrap()
    }

    #[test]
    fn the_item_page_offers_the_moves_its_state_allows() {
        let returned = rendered(ItemState::Returned, true);
        assert!(returned.contains("Commencer l'effacement") && returned.contains("Enregistrer l'effacement"));
        assert!(returned.contains("Envoyer en maintenance") && !returned.contains("Réformer"), "{returned}");
        let lent = rendered(ItemState::Lent, true);
        assert!(!lent.contains("name=\"vers\"") && !lent.contains("Enregistrer l'effacement"), "out with a commune");
        let available = rendered(ItemState::Available, false);
        assert!(!available.contains("name=\"vers\""), "an auditor sees no form");
    }

    #[test]
    fn a_returned_item_is_offered_its_kind_s_return_path() {
        let laptop = rendered_kind(ItemKind::Laptop, ItemState::Returned, true);
        assert!(laptop.contains("Enregistrer l'effacement") && !laptop.contains("Remettre en stock"), "{laptop}");
        for kind in [ItemKind::Router, ItemKind::Sim, ItemKind::Printer] {
            let page = rendered_kind(kind, ItemState::Returned, true);
            assert!(page.contains("/verification") && page.contains("Remettre en stock"), "{kind}: {page}");
            assert!(!page.contains("Enregistrer l'effacement"), "{kind}: {page}");
        }
        assert!(!rendered_kind(ItemKind::Router, ItemState::Returned, false).contains("/verification"));
        assert!(!rendered_kind(ItemKind::Router, ItemState::Lent, true).contains("/verification"));
    }

    #[test]
    fn the_service_form_without_its_tick_is_not_a_confirmation() {
        let posted =
            [("csrf", "jeton"), ("vers", "reforme"), ("motif", "cassé")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let de = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(posted.into_iter());
        let form = ServiceForm::deserialize(de).unwrap();
        assert_eq!((form.vers.as_str(), form.confirme.as_str(), form.motif.as_str()), ("reforme", "", "cassé"));
    }
}
