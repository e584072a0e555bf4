//! Equipment: import, pool status, item history, agents, loans, check-in, wipe, write-off, and
//! the waiting list's priority rule.

use jiff::Timestamp;
use repli_core::inventory::{identifier, parse_items};
use repli_core::{Actor, FieldError, ItemKind, ItemState, text};
use repli_proto::api::{
    AgentView, AgentsRequest, CheckRequest, CheckinRequest, ImportRequest, InventoryStatusLine, ItemDetail,
    ItemEventView, ItemView, LendRequest, LoanView, NeedView, ServiceRequest, WipeRequest, WriteOffRequest,
};
use repli_store::{By, Condition, CrisisRecord, ItemList, ItemQuery, ItemRecord, Need, StoreError, Wipe};

use crate::crises::visible_crisis;
use crate::{AppError, Services};

pub use repli_core::inventory::MAX_LAPTOPS;
/// Loan period before a reminder (days).
pub const LOAN_DAYS: u32 = 30;
pub use repli_core::inventory::MAX_AGENTS_LIST;
use repli_core::inventory::MAX_IMPORT_FILES;

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

fn item_error(e: StoreError) -> AppError {
    match e {
        StoreError::Import(errors) => {
            AppError::Validation(errors.into_iter().map(|m| FieldError::new("csv", m)).collect())
        }
        other => other.into(),
    }
}

/// Imports pool CSV files, all or nothing; returns how many items were imported.
pub async fn import(st: &Services, a: &Actor, req: &ImportRequest) -> Result<usize, AppError> {
    let items = parsed_files(req)?;
    let imported = st.store.import_items(&items, By::User(a), st.clock.now()).await.map_err(item_error)?;
    // New stock may serve a crisis on the waiting list.
    fill_waiting(st, st.clock.now()).await?;
    Ok(imported)
}

/// What an import would bring, checked as the import checks it, without writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPreview {
    /// Items per kind, in `ItemKind::ALL` order (kinds absent from the files left out).
    pub by_kind: Vec<(ItemKind, usize)>,
    pub total: usize,
}

/// Checks pool CSV files as [`import`] would (format of every line, duplicates, items already
/// in the pool): every refusal as a validation error `source:line: why`, or what would come in.
pub async fn preview(st: &Services, req: &ImportRequest) -> Result<ImportPreview, AppError> {
    let items = parsed_files(req)?;
    let clashes = st.store.check_items(&items).await?;
    if !clashes.is_empty() {
        return Err(AppError::Validation(clashes.into_iter().map(|m| FieldError::new("csv", m)).collect()));
    }
    let by_kind = ItemKind::ALL
        .into_iter()
        .map(|k| (k, items.iter().filter(|(_, _, i)| i.kind == k).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(ImportPreview { by_kind, total: items.len() })
}

/// The pool as CSV, in Repli's import columns (a file that imports back into an empty pool),
/// its free-text cells formula-safe (`text::csv_cell`).
pub async fn export_csv(st: &Services) -> Result<String, AppError> {
    let items = st.store.items(None).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = ["asset_tag", "serial", "kind", "model", "imei", "iccid", "msisdn", "apn", "location"];
    let fail = |e: csv::Error| AppError::Internal(format!("CSV export: {e}"));
    w.write_record(header).map_err(fail)?;
    for r in &items {
        let i = &r.item;
        // Free text (model, location) could hold a formula; the other columns are checked
        // identifiers, digits and phone numbers, written as they are so the file imports back.
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        w.write_record([
            i.asset_tag.clone(),
            i.serial.clone(),
            i.kind.as_str().to_owned(),
            text::csv_cell(&i.model).into_owned(),
            o(&i.imei),
            o(&i.iccid),
            o(&i.msisdn),
            o(&i.apn),
            text::csv_cell(i.location.as_deref().unwrap_or_default()).into_owned(),
        ])
        .map_err(fail)?;
    }
    let bytes = w.into_inner().map_err(|e| AppError::Internal(format!("CSV export: {e}")))?;
    String::from_utf8(bytes).map_err(|e| AppError::Internal(format!("CSV export: {e}")))
}

/// Longest search or filter text of the inventory list.
pub const LIST_TEXT_MAX: usize = 100;
/// Rows of a page of the inventory list.
pub const LIST_PAGE: u32 = 50;

/// A list filter's text: trimmed, empty as none, refused when too long or holding control
/// characters (a fixed message that never repeats it).
pub fn list_text(field: &str, v: &str) -> Result<Option<String>, FieldError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > LIST_TEXT_MAX || v.chars().any(char::is_control) {
        return Err(FieldError::new(field, format!("{LIST_TEXT_MAX} caractères au plus, sans caractère de contrôle")));
    }
    Ok(Some(v.to_owned()))
}

/// A page of the pool, searched, filtered and sorted in the store.
pub async fn list(st: &Services, q: &ItemQuery) -> Result<ItemList, AppError> {
    Ok(st.store.item_list(q).await?)
}

/// The items a list's filters match (every page) as CSV: where each is and who holds it,
/// every cell formula-safe.
pub async fn export_list_csv(st: &Services, q: &ItemQuery) -> Result<String, AppError> {
    let all = st.store.item_list(&ItemQuery { offset: 0, limit: None, ..q.clone() }).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::Internal(format!("CSV export: {e}"));
    w.write_record([
        "asset_tag",
        "serial",
        "kind",
        "model",
        "imei",
        "iccid",
        "msisdn",
        "state",
        "crisis",
        "commune",
        "holder",
        "updated_at",
    ])
    .map_err(fail)?;
    let cell = |v: Option<&str>| text::csv_cell(v.unwrap_or_default()).into_owned();
    for l in &all.items {
        let (r, i) = (&l.record, &l.record.item);
        w.write_record([
            cell(Some(&i.asset_tag)),
            cell(Some(&i.serial)),
            i.kind.as_str().to_owned(),
            cell(Some(&i.model)),
            cell(i.imei.as_deref()),
            cell(i.iccid.as_deref()),
            cell(i.msisdn.as_deref()),
            r.state.as_str().to_owned(),
            cell(r.crisis.as_deref()),
            cell(l.commune.as_deref()),
            cell(l.holder.as_deref()),
            r.updated_at.to_string(),
        ])
        .map_err(fail)?;
    }
    csv_text(w)
}

/// Every loan of every crisis as CSV (a write-off with its date and reason, never a return
/// date), every cell formula-safe.
pub async fn export_loans_csv(st: &Services) -> Result<String, AppError> {
    let loans = st.store.loans_all().await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::Internal(format!("CSV export: {e}"));
    w.write_record([
        "crisis",
        "commune",
        "asset_tag",
        "serial",
        "kind",
        "model",
        "agent",
        "service",
        "lent_at",
        "due_back",
        "returned_at",
        "condition",
        "written_off_at",
        "write_off_reason",
    ])
    .map_err(fail)?;
    let cell = |v: Option<&str>| text::csv_cell(v.unwrap_or_default()).into_owned();
    let at = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    for x in &loans {
        let l = &x.loan;
        let end = LoanEnd::of(l);
        w.write_record([
            cell(Some(&l.crisis)),
            cell(Some(&x.commune)),
            cell(Some(&l.asset_tag)),
            cell(Some(&l.serial)),
            l.kind.as_str().to_owned(),
            cell(Some(&l.model)),
            cell(l.agent.as_ref().map(|a| a.name.as_str())),
            cell(l.agent.as_ref().map(|a| a.service.as_str())),
            l.lent_at.to_string(),
            l.due_back.to_string(),
            at(end.returned_at),
            cell(l.condition.as_deref()),
            at(end.written_off_at),
            cell(end.write_off_reason.as_deref()),
        ])
        .map_err(fail)?;
    }
    csv_text(w)
}

fn csv_text(w: csv::Writer<Vec<u8>>) -> Result<String, AppError> {
    let bytes = w.into_inner().map_err(|e| AppError::Internal(format!("CSV export: {e}")))?;
    String::from_utf8(bytes).map_err(|e| AppError::Internal(format!("CSV export: {e}")))
}

/// Every file's lines parsed, or every refusal (`source:line: why`).
fn parsed_files(req: &ImportRequest) -> Result<Vec<(String, u64, repli_core::inventory::Item)>, AppError> {
    if req.files.is_empty() || req.files.len() > MAX_IMPORT_FILES {
        return Err(AppError::Validation(vec![FieldError::new("files", format!("1 à {MAX_IMPORT_FILES} fichiers"))]));
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
        return Err(AppError::Validation(errors));
    }
    Ok(items)
}

/// How many items of each kind are in each state (the kinds and states that have some).
pub async fn counts(st: &Services) -> Result<Vec<(ItemKind, ItemState, i64)>, AppError> {
    Ok(st.store.inventory_counts().await?)
}

/// The pool by kind and state.
pub async fn status(st: &Services) -> Result<Vec<InventoryStatusLine>, AppError> {
    let counts = st.store.inventory_counts().await?;
    Ok(ItemKind::ALL
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
        .collect())
}

pub async fn items(st: &Services) -> Result<Vec<ItemView>, AppError> {
    Ok(st.store.items(None).await?.into_iter().map(item_view).collect())
}

/// One item (by serial or asset tag) with its history.
pub async fn item(st: &Services, serial: &str) -> Result<ItemDetail, AppError> {
    let (rec, events) =
        st.store.item(serial).await?.ok_or_else(|| item_error(StoreError::UnknownItem(serial.to_owned())))?;
    let extras = st.store.item_extras(&rec.item.serial).await?;
    let history = events
        .into_iter()
        .map(|e| ItemEventView { at: e.at, actor: e.actor, crisis: e.crisis, from: e.from, to: e.to, note: e.note })
        .collect();
    Ok(ItemDetail {
        item: item_view(rec),
        history,
        notes: extras.notes,
        condition: extras.condition,
        sim: extras.sim.map(|s| s.1),
        in_device: extras.in_device.map(|d| d.1),
    })
}

/// What ops change of an item, as typed (the item's page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemEditForm {
    pub asset_tag: String,
    pub model: String,
    pub notes: String,
    /// `ok` or `damaged`.
    pub condition: String,
}

/// Edits an item's asset tag, model, notes or condition, every field checked (all refusals at
/// once); audited with each change. Returns whether anything changed.
pub async fn edit(st: &Services, a: &Actor, serial: &str, f: &ItemEditForm) -> Result<bool, AppError> {
    let mut errors = Vec::new();
    let mut keep = |r: Result<String, FieldError>| r.map_err(|e| errors.push(e)).ok();
    let tag = keep(identifier("etiquette", f.asset_tag.trim()));
    let model = keep(text::name("modele", &f.model));
    let notes = keep(text::free_text("notes", &f.notes, text::SHORT_TEXT_MAX, false));
    let condition = match f.condition.as_str() {
        "ok" => Some(Condition::Ok),
        "damaged" => Some(Condition::Damaged),
        _ => {
            errors.push(FieldError::new("etat", "bon état ou endommagé"));
            None
        }
    };
    let (Some(asset_tag), Some(model), Some(notes), Some(condition)) = (tag, model, notes, condition) else {
        return Err(AppError::Validation(errors));
    };
    let s = scanned(st, "serial", serial).await?;
    let edit = repli_store::ItemEdit { asset_tag, model, notes, condition };
    st.store.edit_item(&s, &edit, a, st.clock.now()).await.map_err(item_error)
}

/// Puts a SIM card (serial or asset tag) in a phone or router, or takes it out (`None`).
pub async fn link_sim(st: &Services, a: &Actor, device: &str, sim: Option<&str>) -> Result<(), AppError> {
    let d = scanned(st, "serial", device).await?;
    let s = match sim.map(str::trim).filter(|s| !s.is_empty()) {
        Some(code) => match st.store.item_serial(&serial("sim", code)?).await? {
            Some(s) => Some(s),
            None => {
                return Err(AppError::Validation(vec![FieldError::new(
                    "sim",
                    "carte SIM inconnue (ni ce numéro de série ni cette étiquette)",
                )]));
            }
        },
        None => None,
    };
    st.store.link_sim(&d, s.as_deref(), a, st.clock.now()).await.map_err(item_error)
}

/// Records a wipe with its certificate.
pub async fn wipe(st: &Services, a: &Actor, serial: &str, req: &WipeRequest) -> Result<ItemDetail, AppError> {
    let mut errors = Vec::new();
    let mut keep = |r: Result<String, FieldError>| r.map_err(|e| errors.push(e)).ok();
    let method = keep(text::name("method", &req.method));
    let operator = keep(text::name("operator", &req.operator));
    let certificate = keep(text::name("certificate", &req.certificate));
    let (Some(method), Some(operator), Some(certificate)) = (method, operator, certificate) else {
        return Err(AppError::Validation(errors));
    };
    st.store.wipe(serial, &Wipe { method, operator, certificate }, a, st.clock.now()).await.map_err(item_error)?;
    fill_waiting(st, st.clock.now()).await?;
    item(st, serial).await
}

/// A returned router, SIM or printer checked and put back in stock (or in maintenance when it
/// came back damaged); a laptop or a phone is refused: it returns through its wipe.
pub async fn check(st: &Services, a: &Actor, serial: &str, req: &CheckRequest) -> Result<ItemDetail, AppError> {
    let note =
        text::free_text("note", &req.note, text::SHORT_TEXT_MAX, true).map_err(|e| AppError::Validation(vec![e]))?;
    let s = scanned(st, "serial", serial).await?;
    st.store.check_returned(&s, &note, a, st.clock.now()).await.map_err(item_error)?;
    fill_waiting(st, st.clock.now()).await?;
    item(st, &s).await
}

/// Maintenance, retirement, or back to service.
pub async fn service(st: &Services, a: &Actor, serial: &str, req: &ServiceRequest) -> Result<ItemDetail, AppError> {
    let reason = text::free_text("reason", &req.reason, text::SHORT_TEXT_MAX, true)
        .map_err(|e| AppError::Validation(vec![e]))?;
    st.store.service_item(serial, req.to, &reason, a, st.clock.now()).await.map_err(item_error)?;
    if req.to == ItemState::Available {
        fill_waiting(st, st.clock.now()).await?;
    }
    item(st, serial).await
}

fn agent_view(a: repli_store::Agent) -> AgentView {
    AgentView { id: a.id, name: a.name, service: a.service }
}

/// A refused line of a list: its position (from 0) and why.
pub type LineError = (usize, FieldError);

/// An agents list as typed (API, web form, CSV file): every name and service checked, every bad
/// one reported with its position.
pub fn checked_agents<'a>(
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

/// How a list of names changes the commune's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListChange {
    /// The list is replaced (refused once accounts or loans exist).
    Replace,
    /// The names are added (until the hand-back); accounts follow once they exist.
    Add,
}

/// Records checked names in the commune's agents list.
pub async fn record_agents(
    st: &Services,
    a: &Actor,
    id: &str,
    list: &[(String, String)],
    change: ListChange,
) -> Result<Vec<AgentView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let now = st.clock.now();
    let agents = match change {
        ListChange::Replace => st.store.set_agents(&r.id, list, a, now).await,
        ListChange::Add => st.store.add_agents(&r.id, list, a, now).await,
    }
    .map_err(item_error)?;
    st.wake_engine();
    Ok(agents.into_iter().map(agent_view).collect())
}

/// Records the agents as the API sends them: every name checked, all or nothing. A replaced
/// list may be empty; an addition names one agent at least.
pub async fn agents_request(
    st: &Services,
    a: &Actor,
    id: &str,
    req: &AgentsRequest,
    change: ListChange,
) -> Result<Vec<AgentView>, AppError> {
    visible_crisis(st, a, id).await?;
    let least = usize::from(change == ListChange::Add);
    if req.agents.len() < least || req.agents.len() > MAX_AGENTS_LIST {
        return Err(AppError::Validation(vec![FieldError::new(
            "agents",
            format!("{least} à {MAX_AGENTS_LIST} agents"),
        )]));
    }
    let list = checked_agents(req.agents.iter().map(|ag| (ag.name.as_str(), ag.service.as_str())))
        .map_err(|errors| AppError::Validation(errors.into_iter().map(|(_, e)| e).collect()))?;
    record_agents(st, a, id, &list, change).await
}

/// Ops accept the agents named so far as the whole list; returns how many that is.
pub async fn accept_agents(st: &Services, a: &Actor, id: &str) -> Result<u32, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let n = st.store.accept_agents(&r.id, a, st.clock.now()).await.map_err(item_error)?;
    st.wake_engine();
    Ok(n)
}

pub async fn agents(st: &Services, a: &Actor, id: &str) -> Result<Vec<AgentView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    Ok(st.store.agents(&r.id).await?.into_iter().map(agent_view).collect())
}

/// The loans of a crisis the actor may see.
pub async fn loans(st: &Services, a: &Actor, id: &str) -> Result<Vec<LoanView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    loans_of(st, &r.id).await
}

/// The loans of a crisis as the API shows them.
pub async fn loans_of(st: &Services, id: &repli_core::CrisisId) -> Result<Vec<LoanView>, AppError> {
    let now = st.clock.now();
    let list = st.store.loans(id).await?;
    let sims = st.store.sim_links().await?;
    // SIMs of this crisis still out, by serial.
    let out: std::collections::HashSet<String> =
        list.iter().filter(|l| l.returned_at.is_none()).map(|l| l.serial.clone()).collect();
    Ok(list
        .into_iter()
        .map(|l| {
            let end = LoanEnd::of(&l);
            let sim = sims.get(&l.serial);
            LoanView {
                sim: sim.map(|(_, tag, iccid)| match iccid {
                    Some(i) => format!("{tag} (ICCID {i})"),
                    None => tag.clone(),
                }),
                sim_not_returned: sim
                    .filter(|(s, _, _)| l.returned_at.is_some() && out.contains(s))
                    .map(|(_, tag, _)| tag.clone()),
                overdue: l.returned_at.is_none() && l.due_back < now,
                written_off_at: end.written_off_at,
                write_off_reason: end.write_off_reason,
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
                returned_at: end.returned_at,
                condition: l.condition,
            }
        })
        .collect())
}

/// How a loan ended, as people read it: returned (ok, damaged) or written off (missing). The
/// store keeps either moment in `returned_at` and a write-off's reason in `note`; a write-off
/// is never shown as a return.
struct LoanEnd {
    returned_at: Option<Timestamp>,
    written_off_at: Option<Timestamp>,
    write_off_reason: Option<String>,
}

impl LoanEnd {
    fn of(l: &repli_store::Loan) -> Self {
        if l.condition.as_deref() == Some(Condition::Missing.as_str()) {
            LoanEnd {
                returned_at: None,
                written_off_at: l.returned_at,
                write_off_reason: Some(l.note.clone().unwrap_or_else(|| "déclaré manquant au retour".to_owned())),
            }
        } else {
            LoanEnd { returned_at: l.returned_at, written_off_at: None, write_off_reason: None }
        }
    }
}

fn serial(field: &str, s: &str) -> Result<String, AppError> {
    identifier(field, s).map_err(|e| AppError::Validation(vec![e]))
}

/// The serial a scanned or typed code names (serial or label, any case); the code itself when
/// no single item matches, for the store to refuse as unknown.
async fn scanned(st: &Services, field: &str, code: &str) -> Result<String, AppError> {
    let code = serial(field, code.trim())?;
    Ok(st.store.item_serial(&code).await?.unwrap_or(code))
}

/// Lends one item to the crisis (to a named agent or to the commune), as the API does: an
/// unknown code is a 404 `unknown_item` (the forms, which lend several at once, report every
/// refused line instead: [`lend_many`]).
pub async fn lend(st: &Services, a: &Actor, id: &str, req: &LendRequest) -> Result<Vec<LoanView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let s = scanned(st, "serial", &req.serial).await?;
    st.store.lend(&r.id, &s, req.agent_id, LOAN_DAYS, a, st.clock.now()).await.map_err(item_error)?;
    loans_of(st, &r.id).await
}

/// An item reserved for a crisis and not lent yet, with the agent the laptop plan proposes.
#[derive(Debug, Clone)]
pub struct Lendable {
    pub item: ItemRecord,
    /// The agent the `inventory.assign` plan gives this item to, if any.
    pub proposed: Option<i64>,
}

/// The crisis's items ready to lend, in label order, with the proposal of the laptop plan in
/// `outputs` (the kit's, as [`crate::steps::kit_outputs`] reads them).
pub async fn lendable(
    st: &Services,
    id: &repli_core::CrisisId,
    outputs: &repli_core::run::Outputs,
) -> Result<Vec<Lendable>, AppError> {
    let items = st.store.items(Some(id.as_str())).await?;
    let agents = st.store.agents(id).await?;
    let plan = outputs.assigned().map(|a| a.assignments.as_slice()).unwrap_or_default();
    Ok(items
        .into_iter()
        .filter(|i| matches!(i.state, ItemState::Reserved | ItemState::Prepared))
        .map(|item| {
            let proposed = plan
                .iter()
                .find(|p| p.serial == item.item.serial)
                .and_then(|p| agents.iter().find(|g| g.name == p.agent && g.service == p.service))
                .map(|g| g.id);
            Lendable { item, proposed }
        })
        .collect())
}

/// Whom a loan line goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoanTo {
    /// The commune itself (routers, printers).
    Commune,
    /// An agent of the crisis's list, by id (picked from the list).
    Agent(i64),
    /// An agent of the crisis's list, by name as typed beside a scan (any case).
    AgentNamed(String),
}

/// One item to lend: a serial or label (scanned or picked) and whom it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoanLine {
    pub code: String,
    pub to: LoanTo,
}

/// Most items lent in one go (the deliberation's kit is 50 laptops plus phones and routers).
pub const MAX_LOANS_AT_ONCE: usize = 200;

/// Lends several items at once, all or none. Every line is checked first (code, agent) and
/// every refusal is reported; then the loans are written in
/// one transaction. Each refusal is named by the code scanned or picked (the line number when
/// blank).
pub async fn lend_many(st: &Services, a: &Actor, id: &str, lines: &[LoanLine]) -> Result<Vec<LoanView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    if lines.is_empty() || lines.len() > MAX_LOANS_AT_ONCE {
        return Err(AppError::Validation(vec![FieldError::new(
            "prets",
            format!("de 1 à {MAX_LOANS_AT_ONCE} équipements à la fois"),
        )]));
    }
    let agents = st.store.agents(&r.id).await?;
    let mut errors = Vec::new();
    let mut items: Vec<(String, Option<i64>)> = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        // Named by what was scanned or picked, so the person finds the line.
        let shown: String = line.code.trim().chars().take(40).collect();
        let field = if shown.is_empty() { format!("ligne {}", n + 1) } else { shown };
        let serial = match serial(&field, line.code.trim()) {
            Ok(code) => match st.store.item_serial(&code).await? {
                Some(s) => s,
                None => {
                    errors
                        .push(FieldError::new(&field, "équipement inconnu (ni ce numéro de série ni cette étiquette)"));
                    continue;
                }
            },
            Err(_) => {
                errors.push(FieldError::new(&field, "numéro de série ou étiquette illisible"));
                continue;
            }
        };
        if items.iter().any(|(s, _)| *s == serial) {
            errors.push(FieldError::new(&field, format!("{} figure deux fois", line.code.trim())));
            continue;
        }
        let agent = match &line.to {
            LoanTo::Commune => None,
            LoanTo::Agent(id) => Some(*id),
            LoanTo::AgentNamed(name) => {
                let wanted = name.trim().to_lowercase();
                match agents.iter().find(|g| g.name.trim().to_lowercase() == wanted) {
                    Some(g) => Some(g.id),
                    None => {
                        errors.push(FieldError::new(
                            &field,
                            format!("« {} » n'est pas dans la liste des agents", name.trim()),
                        ));
                        continue;
                    }
                }
            }
        };
        items.push((serial, agent));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    st.store.lend_all(&r.id, &items, LOAN_DAYS, a, st.clock.now()).await.map_err(item_error)?;
    loans_of(st, &r.id).await
}

/// Records an item's return with its condition.
pub async fn check_in(st: &Services, a: &Actor, id: &str, req: &CheckinRequest) -> Result<Vec<LoanView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let s = scanned(st, "serial", &req.serial).await?;
    let condition = req
        .condition
        .parse::<Condition>()
        .map_err(|_| AppError::Validation(vec![FieldError::new("condition", "ok, damaged ou missing")]))?;
    let note = req
        .note
        .as_deref()
        .map(|n| text::free_text("note", n, text::SHORT_TEXT_MAX, false))
        .transpose()
        .map_err(|e| AppError::Validation(vec![e]))?;
    st.store.check_in(&r.id, &s, condition, note.as_deref(), a, st.clock.now()).await.map_err(item_error)?;
    st.wake_engine();
    loans_of(st, &r.id).await
}

/// Writes an item off (lost or destroyed), with a reason.
pub async fn write_off(st: &Services, a: &Actor, id: &str, req: &WriteOffRequest) -> Result<Vec<LoanView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let s = scanned(st, "serial", &req.serial).await?;
    let reason = text::free_text("reason", &req.reason, text::SHORT_TEXT_MAX, true)
        .map_err(|e| AppError::Validation(vec![e]))?;
    st.store.write_off(&r.id, &s, &reason, a, st.clock.now()).await.map_err(item_error)?;
    st.wake_engine();
    loans_of(st, &r.id).await
}

/// The waiting list in the order it is served: crises whose kit is still being prepared
/// (activated or provisioning) and lack equipment, real crises before exercises, each group in
/// the configured priority order (first come by default; or larger communes first).
pub async fn waiting_list(st: &Services) -> Result<Vec<(CrisisRecord, Vec<Need>)>, StoreError> {
    let filter = repli_store::CrisisFilter { open_only: true, ..Default::default() };
    let mut preparing: std::collections::HashMap<String, CrisisRecord> = st
        .store
        .crises(&filter)
        .await?
        .into_iter()
        .filter(|r| matches!(r.state, repli_core::CrisisState::Activated | repli_core::CrisisState::Provisioning))
        .map(|r| (r.id.to_string(), r))
        .collect();
    let population: std::collections::HashMap<String, i64> = match st.config.inventory.priority {
        crate::config::Priority::Population => st
            .store
            .communes()
            .await?
            .into_iter()
            .map(|c| (c.commune.insee.to_string(), i64::from(c.commune.population)))
            .collect(),
        crate::config::Priority::FirstCome => Default::default(),
    };
    let mut waiting: Vec<(CrisisRecord, Vec<Need>)> = Vec::new();
    // Needs come in the order of their requests.
    for n in st.store.needs(None).await?.into_iter().filter(|n| n.shortage() > 0) {
        if let Some((_, needs)) = waiting.iter_mut().find(|(r, _)| r.id.as_str() == n.crisis) {
            needs.push(n);
        } else if let Some(r) = preparing.remove(&n.crisis) {
            waiting.push((r, vec![n]));
        }
    }
    // Stable: equal keys keep the order of their requests.
    waiting.sort_by_key(|(r, _)| {
        (r.exercise.is_some(), std::cmp::Reverse(population.get(r.commune.as_str()).copied().unwrap_or(0)))
    });
    Ok(waiting)
}

/// The priority rule in force, in French.
pub fn priority_rule_fr(st: &Services) -> &'static str {
    match st.config.inventory.priority {
        crate::config::Priority::FirstCome => {
            "premier arrivé, premier servi ; les crises réelles avant les exercices, qu'elles peuvent reprendre"
        }
        crate::config::Priority::Population => {
            "les communes les plus peuplées d'abord ; les crises réelles avant les exercices, qu'elles peuvent reprendre"
        }
    }
}

/// Serves crises on the waiting list from free stock, in its order ([`waiting_list`]).
pub async fn fill_waiting(st: &Services, now: Timestamp) -> Result<usize, StoreError> {
    let mut served = 0;
    for (r, _) in waiting_list(st).await? {
        st.store.allocate(&r.id, By::System, now).await?;
        served += 1;
    }
    Ok(served)
}

/// Most items one bulk step or one scanner file handles.
pub const MAX_BULK: usize = 500;

/// What one step does to several items at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    /// Returned laptops and phones wiped, under one method, operator and certificate (a
    /// wiping station's batch report).
    Wipe { method: String, operator: String, certificate: String },
    /// Returned routers, SIMs and printers checked, with what was checked.
    Check { note: String },
    /// Lent items taken back in good condition, each by the crisis holding it.
    Return,
}

impl BulkAction {
    /// In French, for the confirmation (« effacés »).
    pub fn done_fr(&self) -> &'static str {
        match self {
            Self::Wipe { .. } => "effacement enregistré",
            Self::Check { .. } => "vérification enregistrée",
            Self::Return => "retour enregistré",
        }
    }
}

/// Wipes, checks or takes back several items in one step, all or nothing: every code (serial
/// or asset tag) read first — unknown, twice, or not for `crisis` when one is given —, then
/// every item the pool's rules refuse is named with why, and nothing changes; else each item
/// is moved and audited as if done alone. Returns each serial and where it went.
pub async fn bulk(
    st: &Services,
    a: &Actor,
    codes: &[String],
    action: &BulkAction,
    crisis: Option<&str>,
) -> Result<Vec<(String, ItemState)>, AppError> {
    if codes.is_empty() || codes.len() > MAX_BULK {
        return Err(AppError::Validation(vec![FieldError::new(
            "equipements",
            format!("de 1 à {MAX_BULK} équipements à la fois"),
        )]));
    }
    let op = match action {
        BulkAction::Wipe { method, operator, certificate } => {
            let mut errors = Vec::new();
            let mut keep = |r: Result<String, FieldError>| r.map_err(|e| errors.push(e)).ok();
            let (m, o, c) = (
                keep(text::name("methode", method)),
                keep(text::name("operateur", operator)),
                keep(text::name("certificat", certificate)),
            );
            let (Some(method), Some(operator), Some(certificate)) = (m, o, c) else {
                return Err(AppError::Validation(errors));
            };
            repli_store::BulkOp::Wipe(Wipe { method, operator, certificate })
        }
        BulkAction::Check { note } => repli_store::BulkOp::Check(
            text::free_text("controle", note, text::SHORT_TEXT_MAX, true).map_err(|e| AppError::Validation(vec![e]))?,
        ),
        BulkAction::Return => repli_store::BulkOp::Return,
    };
    let crisis = match crisis {
        Some(id) => Some(visible_crisis(st, a, id).await?.id),
        None => None,
    };
    let mut errors = Vec::new();
    let mut serials: Vec<String> = Vec::with_capacity(codes.len());
    for code in codes {
        let shown: String = code.trim().chars().take(40).collect();
        match serial(&shown, code.trim()) {
            Ok(c) => match st.store.item_serial(&c).await? {
                Some(s) if serials.contains(&s) => errors.push(FieldError::new(&shown, "figure deux fois")),
                Some(s) => serials.push(s),
                None => errors
                    .push(FieldError::new(&shown, "équipement inconnu (ni ce numéro de série ni cette étiquette)")),
            },
            Err(_) => errors.push(FieldError::new(&shown, "numéro de série ou étiquette illisible")),
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let done = st.store.bulk(&serials, &op, crisis.as_ref(), a, st.clock.now()).await?;
    match action {
        BulkAction::Return => st.wake_engine(),
        _ => {
            fill_waiting(st, st.clock.now()).await?;
        }
    }
    Ok(done)
}

/// What a line of a scanner's file names, before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// An item of the pool, with where it is.
    Item(Box<ItemRecord>),
    Unknown,
    /// The same item as an earlier line (its number).
    Duplicate(u64),
    /// Held for another crisis than the one the file is for.
    OtherCrisis(Box<ItemRecord>),
}

/// One line of a scanner's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanLine {
    /// From 1, in the file.
    pub line: u64,
    pub code: String,
    pub outcome: ScanOutcome,
}

/// Most bytes of a scanner's file.
pub const MAX_SCAN_FILE: usize = 256 * 1024;

/// Reads a scanner's file (one serial or asset tag per line, or a CSV whose first column holds
/// them, a header line allowed) against the pool, changing nothing: each line's item, or why it
/// cannot be used (unknown, a duplicate, held for another crisis than `crisis`).
pub async fn scan_file(st: &Services, a: &Actor, text: &str, crisis: Option<&str>) -> Result<Vec<ScanLine>, AppError> {
    if text.len() > MAX_SCAN_FILE {
        return Err(AppError::Validation(vec![FieldError::new("fichier", "256 Kio au plus")]));
    }
    let crisis = match crisis {
        Some(id) => Some(visible_crisis(st, a, id).await?.id),
        None => None,
    };
    let mut out: Vec<ScanLine> = Vec::new();
    let mut seen: std::collections::HashMap<String, u64> = Default::default();
    for (n, raw) in text.lines().enumerate() {
        let line = n as u64 + 1;
        let first = raw.split([',', ';', '\t']).next().unwrap_or_default().trim().trim_matches('"').trim();
        if first.is_empty()
            || (line == 1
                && ["serial", "serie", "numero", "numéro", "asset_tag", "etiquette", "étiquette", "code"]
                    .contains(&first.to_lowercase().as_str()))
        {
            continue;
        }
        if out.len() >= MAX_BULK {
            return Err(AppError::Validation(vec![FieldError::new(
                "fichier",
                format!("{MAX_BULK} lignes au plus par fichier"),
            )]));
        }
        let code: String = first.chars().filter(|c| !c.is_control()).take(60).collect();
        let found = match identifier("code", &code) {
            Ok(c) => st.store.item_serial(&c).await?,
            Err(_) => None,
        };
        let outcome = match found {
            None => ScanOutcome::Unknown,
            Some(s) => match seen.get(&s) {
                Some(first) => ScanOutcome::Duplicate(*first),
                None => {
                    seen.insert(s.clone(), line);
                    match st.store.item(&s).await? {
                        None => ScanOutcome::Unknown,
                        Some((rec, _)) => {
                            if crisis.as_ref().is_some_and(|id| rec.crisis.as_deref() != Some(id.as_str())) {
                                ScanOutcome::OtherCrisis(Box::new(rec))
                            } else {
                                ScanOutcome::Item(Box::new(rec))
                            }
                        }
                    }
                }
            },
        };
        out.push(ScanLine { line, code, outcome });
    }
    if out.is_empty() {
        return Err(AppError::Validation(vec![FieldError::new(
            "fichier",
            "aucun numéro de série ni étiquette dans ce fichier",
        )]));
    }
    Ok(out)
}

/// Most labels printed at once (ten A4 sheets of 24).
pub const MAX_LABELS: u32 = 240;

/// An item's label: its asset tag, kind, and a QR code of the asset tag (what the hand-back's
/// scan field and the bulk file accept), as inline SVG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub asset_tag: String,
    pub serial: String,
    pub kind: ItemKind,
    pub qr_svg: String,
}

fn label_of(r: &ItemRecord) -> Option<Label> {
    Some(Label {
        asset_tag: r.item.asset_tag.clone(),
        serial: r.item.serial.clone(),
        kind: r.item.kind,
        qr_svg: repli_docs::qr_svg_named(&r.item.asset_tag, "Code QR de l'étiquette")?,
    })
}

/// The labels of the items a list's filters match, in its order, at most [`MAX_LABELS`].
pub async fn labels(st: &Services, q: &ItemQuery) -> Result<Vec<Label>, AppError> {
    let list = st.store.item_list(&ItemQuery { offset: 0, limit: Some(MAX_LABELS), ..q.clone() }).await?;
    Ok(list.items.iter().filter_map(|l| label_of(&l.record)).collect())
}

/// One item's label (serial or asset tag).
pub async fn label(st: &Services, code: &str) -> Result<Label, AppError> {
    let (rec, _) = st.store.item(code).await?.ok_or_else(|| item_error(StoreError::UnknownItem(code.to_owned())))?;
    label_of(&rec).ok_or_else(|| AppError::Internal(format!("QR code of {}", rec.item.asset_tag)))
}
