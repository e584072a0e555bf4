//! The inventory pages (ops): the pool, an item and its history, wipes, maintenance and
//! retirement, the pool's import (with its preview) and export.

use axum::Extension;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::inventory;
use repli_app::records::{ItemListed, ItemQuery, ItemSort};
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

/// The list's filters as the page reads them from its query, each checked for its shape. Free
/// text (search, crisis or commune, holder) is shown again in its field, or put in a link, only
/// when it matched items: a link can carry any words, and an official page must not show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
struct ListFilters {
    q: String,
    #[serde(rename = "type")]
    kind: String,
    etat: String,
    crise: String,
    detenteur: String,
    tri: String,
    ordre: String,
}

impl ListFilters {
    /// The filters as query pairs (the empty ones left out), for the sort, page and export links.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("q", self.q.as_str()),
            ("type", &self.kind),
            ("etat", &self.etat),
            ("crise", &self.crise),
            ("detenteur", &self.detenteur),
            ("tri", &self.tri),
            ("ordre", &self.ordre),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs(self.pairs());
        ser.extend_pairs(extra);
        ser.finish()
    }
}

/// The sort keys of the page's links, in French, and the column each sorts.
const SORTS: [(&str, ItemSort); 7] = [
    ("etiquette", ItemSort::Tag),
    ("serie", ItemSort::Serial),
    ("type", ItemSort::Kind),
    ("modele", ItemSort::Model),
    ("etat", ItemSort::State),
    ("crise", ItemSort::Crisis),
    ("maj", ItemSort::Updated),
];

/// The page's query read into the store's, the filters to show again, and why any was refused
/// (a fixed message, never the refused text). The page number is from 1.
fn list_query(q: &BTreeMap<String, String>) -> (ListFilters, ItemQuery, u32, Vec<&'static str>) {
    let get = |k: &str| q.get(k).map(|v| v.trim()).unwrap_or_default();
    let mut errors = Vec::new();
    let mut shown = ListFilters::default();
    let mut query = ItemQuery { limit: Some(inventory::LIST_PAGE), ..Default::default() };
    let mut text = |k: &str, refused: &'static str| match inventory::list_text(k, get(k)) {
        Ok(v) => v,
        Err(_) => {
            errors.push(refused);
            None
        }
    };
    query.text = text("q", "Recherche refusée : 100 caractères au plus.");
    query.crisis = text("crise", "Filtre « crise ou commune » refusé : 100 caractères au plus.");
    query.holder = text("detenteur", "Filtre « détenteur » refusé : 100 caractères au plus.");
    shown.q = query.text.clone().unwrap_or_default();
    shown.crise = query.crisis.clone().unwrap_or_default();
    shown.detenteur = query.holder.clone().unwrap_or_default();
    if !get("type").is_empty() {
        match ItemKind::ALL.into_iter().find(|k| k.as_str() == get("type")) {
            Some(k) => {
                query.kind = Some(k);
                shown.kind = k.as_str().to_owned();
            }
            None => errors.push("Type inconnu : filtre ignoré."),
        }
    }
    if !get("etat").is_empty() {
        match ItemState::ALL.into_iter().find(|s| s.as_str() == get("etat")) {
            Some(s) => {
                query.state = Some(s);
                shown.etat = s.as_str().to_owned();
            }
            None => errors.push("État inconnu : filtre ignoré."),
        }
    }
    if !get("tri").is_empty() {
        match SORTS.iter().find(|(k, _)| *k == get("tri")) {
            Some((k, s)) => {
                query.sort = *s;
                shown.tri = (*k).to_owned();
            }
            None => errors.push("Tri inconnu : par étiquette."),
        }
    }
    if get("ordre") == "desc" {
        query.descending = true;
        shown.ordre = "desc".to_owned();
    }
    let page = match get("page") {
        "" => 1,
        p => match p.parse::<u32>() {
            Ok(n) if (1..=100_000).contains(&n) => n,
            _ => {
                errors.push("Numéro de page invalide : première page.");
                1
            }
        },
    };
    query.offset = (page - 1) * inventory::LIST_PAGE;
    (shown, query, page, errors)
}

/// A choice of a select, with whether it is the one in force.
#[derive(Debug, Serialize)]
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// A column head: the link that sorts by it (the other way when it is the sort in force).
#[derive(Debug, Serialize)]
struct SortLink {
    label: &'static str,
    href: String,
    /// `ascending`, `descending` or `none` (the head's `aria-sort`).
    aria: &'static str,
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
    /// The commune of the crisis holding it (the list).
    commune: Option<String>,
    /// The agent holding it on an open loan (the list).
    holder: Option<String>,
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
            commune: None,
            holder: None,
        }
    }

    fn listed(l: &ItemListed) -> Self {
        let (r, i) = (&l.record, &l.record.item);
        ItemLine {
            tag: i.asset_tag.clone(),
            serial: i.serial.clone(),
            kind: i.kind.label_fr(),
            model: i.model.clone(),
            state: r.state.label_fr(),
            crisis: r.crisis.clone(),
            commune: l.commune.clone(),
            holder: l.holder.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct InventoryPage {
    /// Shows the import form.
    can_import: bool,
    /// Every item of the pool.
    total: i64,
    summary: Vec<KindSummary>,
    /// Why a filter was refused, a fixed line each.
    filter_errors: Vec<&'static str>,
    f: ListFilters,
    kinds: Vec<Choice>,
    states: Vec<Choice>,
    heads: Vec<SortLink>,
    /// Items the filters match, on every page.
    matched: i64,
    page: u32,
    pages: u32,
    previous: Option<String>,
    next: Option<String>,
    export_items: String,
    /// The labels of this search's items.
    labels: String,
    items: Vec<ItemLine>,
}

pub async fn inventory(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
    flashes: Flashes,
) -> Response {
    let (mut shown, query, page_no, filter_errors) = list_query(&q);
    let (list, counts) = match tokio::try_join!(inventory::list(&st, &query), inventory::counts(&st)) {
        Ok(x) => x,
        Err(e) => return api_error_page(&st, &e),
    };
    if list.total == 0 {
        // Words that matched nothing are not shown again (they could be anyone's).
        shown.q.clear();
        shown.crise.clear();
        shown.detenteur.clear();
    }
    let mut by_kind: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (kind, state, n) in &counts {
        by_kind.entry(kind.label_fr()).or_default().push(format!("{n} {}", state.label_fr()));
    }
    let summary = by_kind.into_iter().map(|(kind, states)| KindSummary { kind, states: states.join(", ") }).collect();
    let per = i64::from(inventory::LIST_PAGE);
    let pages = u32::try_from((list.total.max(1) + per - 1) / per).unwrap_or(u32::MAX);
    let link = |p: u32| format!("/inventaire?{}", shown.query(&[("page", &p.to_string())]));
    let heads =
        [("Étiquette", "etiquette"), ("Type", "type"), ("Modèle", "modele"), ("État", "etat"), ("Crise", "crise")]
            .into_iter()
            .map(|(label, key)| {
                let current = shown.tri == key || (shown.tri.is_empty() && key == "etiquette");
                let descending = current && shown.ordre == "desc";
                let mut f = shown.clone();
                f.tri = key.to_owned();
                f.ordre = if current && !descending { "desc".to_owned() } else { String::new() };
                SortLink {
                    label,
                    href: format!("/inventaire?{}", f.query(&[])),
                    aria: match (current, descending) {
                        (false, _) => "none",
                        (true, false) => "ascending",
                        (true, true) => "descending",
                    },
                }
            })
            .collect();
    let body = InventoryPage {
        can_import: a.may(Permission::ManageInventory),
        total: counts.iter().map(|c| c.2).sum(),
        summary,
        filter_errors,
        kinds: ItemKind::ALL
            .into_iter()
            .map(|k| Choice { value: k.as_str(), label: k.label_fr(), selected: shown.kind == k.as_str() })
            .collect(),
        states: ItemState::ALL
            .into_iter()
            .map(|s| Choice { value: s.as_str(), label: s.label_fr(), selected: shown.etat == s.as_str() })
            .collect(),
        heads,
        matched: list.total,
        page: page_no,
        pages,
        previous: (page_no > 1).then(|| link(page_no - 1)),
        next: (page_no < pages).then(|| link(page_no + 1)),
        export_items: format!("/inventaire/equipements/export?{}", shown.query(&[])),
        labels: format!("/inventaire/etiquettes?{}", shown.query(&[])),
        items: list.items.iter().map(ItemLine::listed).collect(),
        f: shown,
    };
    page(&st, StatusCode::OK, "inventaire", &Layout::signed_in(&a, &csrf, "Inventaire").flashes(&flashes), &body)
}

/// A label as the sheet shows it.
#[derive(Debug, Serialize)]
struct LabelView {
    tag: String,
    kind: &'static str,
    /// Inline SVG made by the QR encoder from the asset tag (no text of the item inside).
    qr: String,
}

/// A sheet of labels: A4, 3 × 8 labels of 70 × 37 mm, 24 per sheet.
#[derive(Debug, Serialize)]
struct LabelsPage {
    sheets: Vec<Vec<LabelView>>,
    count: usize,
    /// Set when more items matched than a print run holds.
    capped: bool,
}

const LABELS_PER_SHEET: usize = 24;

fn labels_page(st: &AppState, a: &Actor, csrf: &str, labels: Vec<inventory::Label>, capped: bool) -> Response {
    let count = labels.len();
    let views: Vec<LabelView> =
        labels.into_iter().map(|l| LabelView { tag: l.asset_tag, kind: l.kind.label_fr(), qr: l.qr_svg }).collect();
    let mut sheets = Vec::new();
    let mut it = views.into_iter().peekable();
    while it.peek().is_some() {
        sheets.push(it.by_ref().take(LABELS_PER_SHEET).collect());
    }
    let body = LabelsPage { sheets, count, capped };
    page(st, StatusCode::OK, "etiquettes", &Layout::signed_in(a, csrf, "Étiquettes à imprimer"), &body)
}

/// The labels of the items the list's filters match, on A4 sheets.
pub async fn labels(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (_, query, _, _) = list_query(&q);
    match inventory::labels(&st, &query).await {
        Ok(l) => {
            let capped = l.len() >= inventory::MAX_LABELS as usize;
            labels_page(&st, &a, &csrf, l, capped)
        }
        Err(e) => api_error_page(&st, &e),
    }
}

/// One item's label.
pub async fn label(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(serial): Path<String>,
) -> Response {
    match inventory::label(&st, &serial).await {
        Ok(l) => labels_page(&st, &a, &csrf, vec![l], false),
        Err(e) => api_error_page(&st, &e),
    }
}

/// The items the list's filters match (every page) as CSV, formula-safe.
pub async fn export_items(
    State(st): State<AppState>,
    Authed(_): Authed,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (_, query, _, _) = list_query(&q);
    match inventory::export_list_csv(&st, &query).await {
        Ok(csv) => csv_download(csv, "equipements-repli.csv"),
        Err(e) => api_error_page(&st, &e),
    }
}

/// Every loan of every crisis as CSV, formula-safe.
pub async fn export_loans(State(st): State<AppState>, Authed(_): Authed) -> Response {
    match inventory::export_loans_csv(&st).await {
        Ok(csv) => csv_download(csv, "prets-repli.csv"),
        Err(e) => api_error_page(&st, &e),
    }
}

fn csv_download(csv: String, file: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        csv,
    )
        .into_response()
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
    /// The sheet ops may edit.
    notes: String,
    damaged: bool,
    /// The SIM card this phone or router holds; the device this SIM sits in.
    sim: Option<String>,
    in_device: Option<String>,
    /// Shows the SIM form (a phone or router, for ops).
    holds_sim: bool,
    /// Shows the edit form (ops).
    can_edit: bool,
}

pub async fn item(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(serial): Path<String>,
    flashes: Flashes,
) -> Response {
    let repli_proto::api::ItemDetail { item: found, history, notes, condition, sim, in_device } =
        match inventory::item(&st, &serial).await {
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
    let ops = a.may(Permission::ManageInventory);
    let can = Can::of(ops, found.item.kind, found.state);
    let body = ItemPage {
        can,
        i: ItemLine::of(&found),
        history,
        notes,
        damaged: condition == "damaged",
        sim,
        in_device,
        holds_sim: ops && matches!(found.item.kind, ItemKind::Phone | ItemKind::Router),
        can_edit: ops,
    };
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

/// The item's sheet: asset tag, model, notes, condition.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EditForm {
    etiquette: String,
    modele: String,
    notes: String,
    etat: String,
}

/// An item's sheet edited (audited with each change).
pub async fn edit(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(serial): Path<String>,
    CsrfForm(form): CsrfForm<EditForm>,
) -> Response {
    let f = inventory::ItemEditForm {
        asset_tag: form.etiquette,
        model: form.modele,
        notes: form.notes,
        condition: form.etat,
    };
    match inventory::edit(&st, &a, &serial, &f).await {
        Ok(true) => item_back(&serial, Flash::ok("Fiche enregistrée.")),
        Ok(false) => item_back(&serial, Flash::ok("Rien n'a changé.")),
        Err(e) => {
            let p = e.to_problem();
            let lines: Vec<String> = p.errors.iter().map(|f| format!("{} : {}", f.field, f.message)).collect();
            let msg =
                if lines.is_empty() { p.detail } else { format!("Rien n'a été modifié. {}", lines.join(" ; ")) };
            item_back(&serial, Flash::error(msg))
        }
    }
}

/// The SIM form of a phone or router: the SIM's serial or label, empty to take it out.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SimForm {
    sim: String,
}

/// A SIM card put in, or taken out of, a phone or router.
pub async fn sim(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(serial): Path<String>,
    CsrfForm(form): CsrfForm<SimForm>,
) -> Response {
    let sim = Some(form.sim.trim()).filter(|s| !s.is_empty());
    match inventory::link_sim(&st, &a, &serial, sim).await {
        Ok(()) if sim.is_some() => item_back(&serial, Flash::ok("Carte SIM associée.")),
        Ok(()) => item_back(&serial, Flash::ok("Carte SIM retirée.")),
        Err(e) => {
            let p = e.to_problem();
            let msg = p.errors.first().map_or(p.detail.clone(), |f| f.message.clone());
            item_back(&serial, Flash::error(msg))
        }
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
    multipart: Multipart,
) -> Response {
    let (fields, unreadable) = multipart_fields(multipart).await;
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

/// A multipart form's fields as text (a file's name as `source`), or why it could not be read.
async fn multipart_fields(mut multipart: Multipart) -> (BTreeMap<String, String>, Option<&'static str>) {
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
    (fields, unreadable)
}

/// The bulk form: the items ticked (`lot-SERIAL` = `oui`), what to do, and its fields.
#[derive(Debug, Default, Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    crise: String,
    #[serde(default)]
    methode: String,
    #[serde(default)]
    operateur: String,
    #[serde(default)]
    certificat: String,
    #[serde(default)]
    controle: String,
    /// Every other field: the `lot-SERIAL` ticks (and the token, ignored).
    #[serde(flatten)]
    ticks: BTreeMap<String, String>,
}

impl BulkForm {
    fn action(&self) -> Option<inventory::BulkAction> {
        Some(match self.action.as_str() {
            "effacement" => inventory::BulkAction::Wipe {
                method: self.methode.trim().to_owned(),
                operator: self.operateur.trim().to_owned(),
                certificate: self.certificat.trim().to_owned(),
            },
            "verification" => inventory::BulkAction::Check { note: self.controle.trim().to_owned() },
            "retour" => inventory::BulkAction::Return,
            _ => return None,
        })
    }

    fn codes(&self) -> Vec<String> {
        self.ticks
            .iter()
            .filter(|(k, v)| k.starts_with("lot-") && v.as_str() == "oui")
            .filter_map(|(k, _)| k.strip_prefix("lot-").map(str::to_owned))
            .collect()
    }
}

/// One step for the items ticked: wiped, checked or taken back, all or nothing; a refusal
/// names every item that cannot, and nothing changes.
pub async fn bulk(State(st): State<AppState>, Authed(a): Authed, CsrfForm(form): CsrfForm<BulkForm>) -> Response {
    let Some(action) = form.action() else {
        return redirect_with(
            "/inventaire",
            Flash::error("Choisissez ce qu'il faut faire : effacement, vérification ou retour."),
        );
    };
    let codes = form.codes();
    if codes.is_empty() {
        return redirect_with("/inventaire", Flash::error("Cochez au moins un équipement."));
    }
    let crisis = Some(form.crise.trim()).filter(|c| !c.is_empty());
    match inventory::bulk(&st, &a, &codes, &action, crisis).await {
        Ok(done) => {
            redirect_with("/inventaire", Flash::ok(format!("{} équipement(s) : {}.", done.len(), action.done_fr())))
        }
        Err(e) => {
            let p = e.to_problem();
            let lines: Vec<String> = p.errors.iter().map(|f| format!("{} : {}", f.field, f.message)).collect();
            let msg = if lines.is_empty() {
                p.detail
            } else if p.status == 422 {
                format!("Rien n'a été fait. {}", lines.join(" ; "))
            } else {
                format!("{} {}", p.detail, lines.join(" ; "))
            };
            redirect_with("/inventaire", Flash::error(msg))
        }
    }
}

/// A line of the scanner file's preview.
#[derive(Debug, Serialize)]
struct ScanRow {
    line: u64,
    code: String,
    /// The item's label, when the line names one.
    tag: Option<String>,
    serial: Option<String>,
    /// In French: where the item is, or why the line cannot be used.
    what: String,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct ScanPage {
    errors: Vec<String>,
    rows: Vec<ScanRow>,
    /// Lines that cannot be used.
    refused: usize,
    /// The serials of the lines that can, for the confirmation's hidden ticks.
    serials: Vec<String>,
    count: usize,
    action: String,
    crise: String,
    /// Which fields the confirmation asks for.
    wipe: bool,
    check: bool,
}

/// A scanner's file (serials or asset tags, one per line or a CSV's first column) read against
/// the pool: each line says what it names, or why it cannot be used (unknown, a duplicate,
/// another crisis), before anything changes; when every line is usable, the page asks to
/// confirm the step for all of them.
pub async fn scan_upload(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    multipart: Multipart,
) -> Response {
    let (fields, unreadable) = multipart_fields(multipart).await;
    let empty = |errors: Vec<String>| ScanPage {
        errors,
        rows: Vec::new(),
        refused: 0,
        serials: Vec::new(),
        count: 0,
        action: String::new(),
        crise: String::new(),
        wipe: false,
        check: false,
    };
    let layout = Layout::signed_in(&a, &csrf, "Traiter un lot d'équipements");
    if let Some(msg) = unreadable {
        return page(&st, StatusCode::UNPROCESSABLE_ENTITY, "inventaire-lot", &layout, &empty(vec![msg.to_owned()]));
    }
    if let Err(page) = check_csrf(&st, &csrf, &fields) {
        return *page;
    }
    let action = fields.get("action").map(|s| s.trim()).unwrap_or_default();
    if !matches!(action, "effacement" | "verification" | "retour") {
        let msg = "Choisissez ce qu'il faut faire : effacement, vérification ou retour.".to_owned();
        return page(&st, StatusCode::UNPROCESSABLE_ENTITY, "inventaire-lot", &layout, &empty(vec![msg]));
    }
    let crise = fields.get("crise").map(|s| s.trim()).unwrap_or_default().to_owned();
    let text = fields.get("fichier").map(String::as_str).unwrap_or_default();
    let lines = match inventory::scan_file(&st, &a, text, Some(crise.as_str()).filter(|c| !c.is_empty())).await {
        Ok(l) => l,
        Err(e) => {
            return page(&st, StatusCode::UNPROCESSABLE_ENTITY, "inventaire-lot", &layout, &empty(problem_lines(&e)));
        }
    };
    let rows: Vec<ScanRow> = lines
        .iter()
        .map(|l| {
            let (rec, what, ok) = match &l.outcome {
                inventory::ScanOutcome::Item(r) => {
                    let at = r.crisis.as_deref().map(|c| format!(", crise {c}")).unwrap_or_default();
                    (Some(r), format!("{} {}, {}{at}", r.item.kind.label_fr(), r.item.model, r.state.label_fr()), true)
                }
                inventory::ScanOutcome::Unknown => {
                    (None, "inconnu : ni ce numéro de série ni cette étiquette".into(), false)
                }
                inventory::ScanOutcome::Duplicate(first) => (None, format!("en double : déjà ligne {first}"), false),
                inventory::ScanOutcome::OtherCrisis(r) => (
                    Some(r),
                    match r.crisis.as_deref() {
                        Some(c) => format!("détenu pour une autre crise ({c})"),
                        None => format!("détenu pour aucune crise ({})", r.state.label_fr()),
                    },
                    false,
                ),
            };
            ScanRow {
                line: l.line,
                code: l.code.clone(),
                tag: rec.map(|r| r.item.asset_tag.clone()),
                serial: rec.map(|r| r.item.serial.clone()),
                what,
                ok,
            }
        })
        .collect();
    let refused = rows.iter().filter(|r| !r.ok).count();
    let serials = if refused == 0 { rows.iter().filter_map(|r| r.serial.clone()).collect() } else { Vec::new() };
    let status = if refused == 0 { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let body = ScanPage {
        errors: Vec::new(),
        refused,
        count: serials.len(),
        serials,
        wipe: action == "effacement",
        check: action == "verification",
        action: action.to_owned(),
        crise,
        rows,
    };
    page(&st, status, "inventaire-lot", &layout, &body)
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
        Ok(csv) => csv_download(csv, "parc-repli.csv"),
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
            "/inventaire/{serial}/fiche",
            Page(P::ManageInventory),
            routing::post(edit),
            Doc::form("Edit an item's asset tag, model, notes and condition"),
        ),
        (
            Method::POST,
            "/inventaire/{serial}/sim",
            Page(P::ManageInventory),
            routing::post(sim),
            Doc::form("Put a SIM card in a phone or router, or take it out"),
        ),
        (
            Method::POST,
            "/inventaire/lot",
            Page(P::ManageInventory),
            routing::post(bulk),
            Doc::form("Wipe, check or take back the items ticked, in one step, all or nothing"),
        ),
        (
            Method::POST,
            "/inventaire/lot/fichier",
            Page(P::ManageInventory),
            routing::post(scan_upload),
            Doc::page(
                "Read a scanner's file of serials against the pool (unknown, duplicate, other crisis) before a bulk step",
            ),
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
        (
            Method::GET,
            "/inventaire",
            Page(P::ReadInventory),
            routing::get(inventory),
            Doc::page("The equipment pool: search, filters, sort and pages"),
        ),
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
            "/inventaire/etiquettes",
            Page(P::ReadInventory),
            routing::get(labels),
            Doc::page("Printable labels (A4, 3 × 8) of the items the inventory list's filters match"),
        ),
        (
            Method::GET,
            "/inventaire/{serial}/etiquette",
            Page(P::ReadInventory),
            routing::get(label),
            Doc::page("An item's printable label"),
        ),
        (
            Method::GET,
            "/inventaire/equipements/export",
            Page(P::ReadInventory),
            routing::get(export_items),
            Doc::answering("The items the inventory list's filters match, as CSV (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/inventaire/prets/export",
            Page(P::ReadInventory),
            routing::get(export_loans),
            Doc::answering("Every loan of every crisis, as CSV (a download)", Answer::Html),
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
                commune: None,
                holder: None,
            },
            can: Can::of(a.may(Permission::ManageInventory), kind, state),
            notes: "<script>x</script>".into(),
            damaged: false,
            sim: None,
            in_device: None,
            holds_sim: kind == ItemKind::Router,
            can_edit: ops,
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
