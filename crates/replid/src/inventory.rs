//! Equipment: import, pool status, item history, agents, loans, check-in, wipe, write-off.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use repli_core::inventory::{identifier, parse_items};
use repli_core::{FieldError, ItemKind, ItemState, text};
use repli_proto::api::{
    AgentView, AgentsRequest, CheckinRequest, ImportRequest, ImportView, InventoryStatusLine, ItemDetail,
    ItemEventView, ItemView, KitNeeds, LendRequest, LoanView, NeedView, WipeRequest, WriteOffRequest,
};
use repli_store::{By, Condition, ItemRecord, Need, StoreError, Wipe};

use crate::AppState;
use crate::api::{ApiJson, visible_crisis};
use crate::auth::Authed;
use crate::error::ApiError;

/// Laptops the deliberation lends at most.
pub const MAX_LAPTOPS: u32 = 50;
/// Loan period before a reminder (days).
pub const LOAN_DAYS: u32 = 30;
/// Most agents in one list.
const MAX_AGENTS_LIST: usize = 500;

/// What a request asked for, per kind (SIMs follow phones and routers); the default is a
/// laptop per agent up to 50, a router and a printer.
pub fn needs_of(needs: Option<KitNeeds>, agents: u32) -> Result<Vec<(ItemKind, u32)>, FieldError> {
    let n = needs.unwrap_or(KitNeeds { laptop: agents.min(MAX_LAPTOPS), router: 1, phone: 0, printer: 1 });
    if n.laptop > MAX_LAPTOPS {
        return Err(FieldError::new(
            "needs.laptop",
            format!("{MAX_LAPTOPS} ordinateurs portables au plus (délibération du 12 octobre 2023)"),
        ));
    }
    for (field, v) in [("needs.router", n.router), ("needs.phone", n.phone), ("needs.printer", n.printer)] {
        if v > 100 {
            return Err(FieldError::new(field, "100 au plus"));
        }
    }
    Ok(vec![
        (ItemKind::Laptop, n.laptop),
        (ItemKind::Router, n.router),
        (ItemKind::Phone, n.phone),
        (ItemKind::Sim, n.phone + n.router),
        (ItemKind::Printer, n.printer),
    ])
}

pub fn need_view(n: &Need) -> NeedView {
    NeedView {
        kind: n.kind,
        label: n.kind.label_fr().to_owned(),
        wanted: n.wanted,
        allocated: n.allocated,
        shortage: n.shortage(),
    }
}

fn item_view(r: ItemRecord) -> ItemView {
    ItemView {
        state_label: r.state.label_fr().to_owned(),
        item: r.item,
        state: r.state,
        crisis: r.crisis,
        updated_at: r.updated_at,
    }
}

fn item_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Import(errors) => {
            ApiError::Validation(errors.into_iter().map(|m| FieldError::new("csv", m)).collect())
        }
        StoreError::UnknownItem(s) => {
            ApiError::NotFound { code: "unknown_item", detail: format!("Équipement inconnu : {s}.") }
        }
        StoreError::Item(msg) => ApiError::Conflict { code: "item_conflict", detail: format!("{msg}.") },
        other => other.into(),
    }
}

pub async fn import(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<Json<ImportView>, ApiError> {
    if req.files.is_empty() || req.files.len() > 100 {
        return Err(ApiError::Validation(vec![FieldError::new("files", "1 à 100 fichiers")]));
    }
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for f in &req.files {
        let source = match text::name("source", &f.source) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match parse_items(&source, &f.csv) {
            Ok(parsed) => items.extend(parsed.into_iter().map(|(line, item)| (source.clone(), line, item))),
            Err(e) => errors.extend(e.errors.into_iter().map(|m| FieldError::new("csv", m))),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let imported = st.store.import_items(&items, By::User(a), st.clock.now()).await.map_err(item_error)?;
    // New stock may serve a crisis on the waiting list.
    fill_waiting(&st, st.clock.now()).await?;
    Ok(Json(ImportView { imported }))
}

pub async fn status(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<InventoryStatusLine>>, ApiError> {
    let counts = st.store.inventory_counts().await?;
    let lines = ItemKind::ALL
        .into_iter()
        .map(|kind| {
            let sum = |states: &[ItemState]| {
                counts.iter().filter(|(k, s, _)| *k == kind && states.contains(s)).map(|c| c.2).sum()
            };
            InventoryStatusLine {
                kind,
                available: sum(&[ItemState::Available]),
                reserved: sum(&[ItemState::Reserved, ItemState::Prepared]),
                lent: sum(&[ItemState::Lent]),
                wiping: sum(&[ItemState::Returned, ItemState::Wiping]),
                out_of_service: sum(&[ItemState::Maintenance, ItemState::Lost, ItemState::Retired]),
            }
        })
        .collect();
    Ok(Json(lines))
}

pub async fn items(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<ItemView>>, ApiError> {
    Ok(Json(st.store.items(None).await?.into_iter().map(item_view).collect()))
}

pub async fn item(
    State(st): State<AppState>,
    _: Authed,
    Path(serial): Path<String>,
) -> Result<Json<ItemDetail>, ApiError> {
    let (rec, events) =
        st.store.item(&serial).await?.ok_or_else(|| item_error(StoreError::UnknownItem(serial.clone())))?;
    let history = events
        .into_iter()
        .map(|e| ItemEventView { at: e.at, actor: e.actor, crisis: e.crisis, from: e.from, to: e.to, note: e.note })
        .collect();
    Ok(Json(ItemDetail { item: item_view(rec), history }))
}

pub async fn wipe(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(serial): Path<String>,
    ApiJson(req): ApiJson<WipeRequest>,
) -> Result<Json<ItemDetail>, ApiError> {
    let mut errors = Vec::new();
    let mut keep = |r: Result<String, FieldError>| r.map_err(|e| errors.push(e)).ok();
    let method = keep(text::name("method", &req.method));
    let operator = keep(text::name("operator", &req.operator));
    let certificate = keep(text::name("certificate", &req.certificate));
    let (Some(method), Some(operator), Some(certificate)) = (method, operator, certificate) else {
        return Err(ApiError::Validation(errors));
    };
    st.store.wipe(&serial, &Wipe { method, operator, certificate }, a, st.clock.now()).await.map_err(item_error)?;
    fill_waiting(&st, st.clock.now()).await?;
    item(State(st), Authed(a.clone()), Path(serial)).await
}

pub async fn service(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(serial): Path<String>,
    ApiJson(req): ApiJson<repli_proto::api::ServiceRequest>,
) -> Result<Json<ItemDetail>, ApiError> {
    let reason = text::free_text("reason", &req.reason, 500, true).map_err(|e| ApiError::Validation(vec![e]))?;
    st.store.service_item(&serial, req.to, &reason, a, st.clock.now()).await.map_err(item_error)?;
    if req.to == ItemState::Available {
        fill_waiting(&st, st.clock.now()).await?;
    }
    item(State(st), Authed(a.clone()), Path(serial)).await
}

fn agent_view(a: repli_store::Agent) -> AgentView {
    AgentView { id: a.id, name: a.name, service: a.service }
}

/// A refused line of a list: its position (from 0) and why.
pub(crate) type LineError = (usize, FieldError);

/// An agents list as typed (API, web form, CSV file): every name and service checked, every bad
/// one reported with its position.
pub(crate) fn checked_agents<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<(String, String)>, Vec<LineError>> {
    let mut errors = Vec::new();
    let mut list = Vec::new();
    for (i, (name, service)) in rows.into_iter().enumerate() {
        let name = text::name(&format!("agents[{i}].name"), name);
        let service = text::free_text(&format!("agents[{i}].service"), service, text::NAME_MAX, false);
        match (name, service) {
            (Ok(n), Ok(s)) => list.push((n, s)),
            (n, s) => errors.extend(n.err().into_iter().chain(s.err()).map(|e| (i, e))),
        }
    }
    if errors.is_empty() { Ok(list) } else { Err(errors) }
}

pub async fn set_agents(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AgentsRequest>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    if req.agents.len() > MAX_AGENTS_LIST {
        return Err(ApiError::Validation(vec![FieldError::new("agents", format!("{MAX_AGENTS_LIST} agents au plus"))]));
    }
    let list = checked_agents(req.agents.iter().map(|ag| (ag.name.as_str(), ag.service.as_str())))
        .map_err(|errors| ApiError::Validation(errors.into_iter().map(|(_, e)| e).collect()))?;
    let agents = st.store.set_agents(&r.id, &list, a, st.clock.now()).await.map_err(item_error)?;
    st.engine.wake();
    Ok(Json(agents.into_iter().map(agent_view).collect()))
}

pub async fn agents(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(st.store.agents(&r.id).await?.into_iter().map(agent_view).collect()))
}

pub async fn loans(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<LoanView>>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(loans_of(&st, &r.id).await?))
}

/// The loans of a crisis as the API shows them.
pub async fn loans_of(st: &AppState, id: &repli_core::CrisisId) -> Result<Vec<LoanView>, ApiError> {
    let now = st.clock.now();
    let list = st.store.loans(id).await?;
    Ok(list
        .into_iter()
        .map(|l| LoanView {
            overdue: l.returned_at.is_none() && l.due_back < now,
            serial: l.serial,
            asset_tag: l.asset_tag,
            kind: l.kind,
            model: l.model,
            imei: l.imei,
            iccid: l.iccid,
            msisdn: l.msisdn,
            agent: l.agent.map(agent_view),
            lent_at: l.lent_at,
            due_back: l.due_back,
            returned_at: l.returned_at,
            condition: l.condition,
        })
        .collect())
}

fn serial(field: &str, s: &str) -> Result<String, ApiError> {
    identifier(field, s).map_err(|e| ApiError::Validation(vec![e]))
}

pub async fn lend(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LendRequest>,
) -> Result<(StatusCode, Json<Vec<LoanView>>), ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let s = serial("serial", &req.serial)?;
    st.store.lend(&r.id, &s, req.agent_id, LOAN_DAYS, a, st.clock.now()).await.map_err(item_error)?;
    Ok((StatusCode::CREATED, loans(State(st), Authed(a.clone()), Path(id)).await?))
}

pub async fn check_in(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CheckinRequest>,
) -> Result<Json<Vec<LoanView>>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let s = serial("serial", &req.serial)?;
    let condition = match req.condition.as_str() {
        "ok" => Condition::Ok,
        "damaged" => Condition::Damaged,
        "missing" => Condition::Missing,
        _ => return Err(ApiError::Validation(vec![FieldError::new("condition", "ok, damaged ou missing")])),
    };
    let note = req
        .note
        .as_deref()
        .map(|n| text::free_text("note", n, 500, false))
        .transpose()
        .map_err(|e| ApiError::Validation(vec![e]))?;
    st.store.check_in(&r.id, &s, condition, note.as_deref(), a, st.clock.now()).await.map_err(item_error)?;
    st.engine.wake();
    loans(State(st), Authed(a.clone()), Path(id)).await
}

pub async fn write_off(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<WriteOffRequest>,
) -> Result<Json<Vec<LoanView>>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let s = serial("serial", &req.serial)?;
    let reason = text::free_text("reason", &req.reason, 500, true).map_err(|e| ApiError::Validation(vec![e]))?;
    st.store.write_off(&r.id, &s, &reason, a, st.clock.now()).await.map_err(item_error)?;
    st.engine.wake();
    loans(State(st), Authed(a.clone()), Path(id)).await
}

/// Serves crises on the waiting list from free stock, in the configured priority order
/// (first come by default; or larger communes first).
pub async fn fill_waiting(st: &AppState, now: Timestamp) -> Result<usize, StoreError> {
    let waiting: Vec<Need> = st.store.needs(None).await?.into_iter().filter(|n| n.shortage() > 0).collect();
    let mut crises: Vec<String> = Vec::new();
    for n in &waiting {
        if !crises.contains(&n.crisis) {
            crises.push(n.crisis.clone());
        }
    }
    if st.config.inventory.priority == crate::config::Priority::Population {
        let mut with_pop = Vec::new();
        for c in crises {
            let id = repli_core::CrisisId::parse(&c)
                .map_err(|_| StoreError::Corrupt { column: "crisis_needs.crisis_id", value: c.clone() })?;
            let pop = match st.store.crisis(&id).await? {
                Some(r) => st.store.commune(&r.commune).await?.map_or(0, |c| c.commune.population),
                None => 0,
            };
            with_pop.push((pop, c));
        }
        // Stable: equal populations keep the order of their requests.
        with_pop.sort_by_key(|(pop, _)| std::cmp::Reverse(*pop));
        crises = with_pop.into_iter().map(|(_, c)| c).collect();
    }
    let mut served = 0;
    for c in crises {
        let Ok(id) = repli_core::CrisisId::parse(&c) else { continue };
        let Some(r) = st.store.crisis(&id).await? else { continue };
        // Only crises whose kit is still being prepared wait for equipment.
        if !matches!(r.state, repli_core::CrisisState::Activated | repli_core::CrisisState::Provisioning) {
            continue;
        }
        st.store.allocate(&id, By::System, now).await?;
        served += 1;
    }
    Ok(served)
}
