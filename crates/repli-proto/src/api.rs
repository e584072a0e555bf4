//! The JSON documents exchanged with replid. Requests refuse unknown fields.

use jiff::Timestamp;
use jiff::civil::Date;
use repli_core::audit::{AuditEntry, Tamper};
use repli_core::{
    CrisisAction, CrisisId, CrisisState, FieldError, InseeCode, Item, ItemKind, ItemState, LegalKind, LegalStatus,
    LogKind, Role, SlaStatus,
};
use serde::{Deserialize, Serialize};

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /readyz`: whether replid can do its work now (`/healthz` only says it is alive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The database takes writes.
    pub database: bool,
    /// The playbook engine is running.
    pub engine: bool,
    /// The last Microsoft 365 preflight did not fail (true before the first one ends).
    pub m365: bool,
    /// The audit chain verified at start (or its break was overridden, audited).
    pub audit: bool,
    /// Why not ready, one line each, starting with a code (`storage_full: …`); empty when ready.
    pub reasons: Vec<String>,
}

/// `GET /api/v1/me`: who the token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    pub commune: Option<InseeCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConventionView {
    pub signed_on: Date,
    pub deliberation_ref: String,
}

/// A commune and whether it can borrow the kit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommuneView {
    pub insee: InseeCode,
    pub name: String,
    pub population: u32,
    pub convention: Option<ConventionView>,
    pub open_crisis: Option<CrisisId>,
}

/// Out-of-band contact of the person who asked: the commune's own mail and phones may be down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[schema(schema_with = repli_core::schema::name)]
    pub name: String,
    /// French or E.164 number; stored in E.164.
    #[schema(schema_with = repli_core::schema::phone)]
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::email_optional)]
    pub email: Option<String>,
}

/// `POST /api/v1/crises`: a DGS (or ops on their behalf) requests the kit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"commune": "13005", "contact": {"name": "Claire Martin", "phone": "06 12 34 56 78", "email": "claire.martin@exemple.fr"}, "agents": 25, "delivery_address": "Hôtel de ville, 13400 Aubagne", "aware_at": "2026-11-30T07:45:00Z", "personal_data": true}))]
pub struct CrisisRequest {
    pub commune: InseeCode,
    pub contact: Contact,
    /// How many agents need an account (and, up to the pool's limit, a laptop).
    #[schema(minimum = 1, maximum = 500)]
    pub agents: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::short_text_if_given)]
    pub delivery_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::note_optional)]
    pub notes: Option<String>,
    /// What the commune needs (default: a laptop per agent up to 50, a router, a printer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<KitNeeds>,
    /// When the commune became aware of the attack: starts the 72-hour legal clocks. Not more
    /// than 5 minutes in the future (refused with `invalid_fields`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aware_at: Option<Timestamp>,
    /// Whether personal data is involved (the CNIL must then be notified within 72 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<bool>,
}

pub use repli_core::inventory::KitNeeds;

/// What a crisis wanted of a kind, got, and still waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NeedView {
    pub kind: ItemKind,
    pub label: String,
    pub wanted: i64,
    pub allocated: i64,
    pub shortage: i64,
}

/// `POST /api/v1/inventory/import`: one or more CSV files, imported all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"files": [{"source": "pool.csv", "csv": "asset_tag,serial,kind,model\nAMP-LAP-0101,FICTIF-LAP-0101,laptop,ThinkPad T14\n"}]}))]
pub struct ImportRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub files: Vec<ImportFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    /// Shown in error messages (`pool.csv:12: …`).
    #[schema(schema_with = repli_core::schema::name)]
    pub source: String,
    pub csv: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportView {
    pub imported: usize,
}

/// Pool counts for one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InventoryStatusLine {
    pub kind: ItemKind,
    pub available: i64,
    pub reserved: i64,
    pub lent: i64,
    /// Returned, being wiped.
    pub wiping: i64,
    /// Maintenance, lost, retired.
    pub out_of_service: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemView {
    pub item: Item,
    pub state: ItemState,
    pub state_label: String,
    pub crisis: Option<String>,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemEventView {
    pub at: Timestamp,
    pub actor: String,
    pub crisis: Option<String>,
    pub from: Option<String>,
    pub to: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemDetail {
    pub item: ItemView,
    pub history: Vec<ItemEventView>,
    /// Ops' notes.
    #[serde(default)]
    pub notes: String,
    /// Physical condition: `ok` or `damaged`.
    #[serde(default)]
    pub condition: String,
    /// The asset tag of the SIM card this phone or router holds.
    #[serde(default)]
    pub sim: Option<String>,
    /// The asset tag of the phone or router this SIM card sits in.
    #[serde(default)]
    pub in_device: Option<String>,
}

/// `PUT /api/v1/crises/{id}/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"agents": [{"name": "Léa Durand", "service": "État civil"}, {"name": "Marc Roux", "service": "Accueil"}]}))]
pub struct AgentsRequest {
    /// Replacing (`PUT`): 0 to 500 agents; adding (`POST`): 1 to 500.
    #[schema(max_items = 500)]
    pub agents: Vec<AgentInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    #[schema(schema_with = repli_core::schema::name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = repli_core::schema::service)]
    pub service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    pub id: i64,
    pub name: String,
    pub service: String,
}

/// `POST /api/v1/crises/{id}/loans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"serial": "FICTIF-LAP-0101", "agent_id": 4}))]
pub struct LendRequest {
    #[schema(schema_with = repli_core::schema::identifier)]
    pub serial: String,
    /// Required for laptops and phones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoanView {
    pub serial: String,
    pub asset_tag: String,
    pub kind: ItemKind,
    pub model: String,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub msisdn: Option<String>,
    pub agent: Option<AgentView>,
    pub lent_at: Timestamp,
    pub due_back: Timestamp,
    /// When the item came back (never set for an item written off).
    pub returned_at: Option<Timestamp>,
    /// `ok` or `damaged` once returned, `missing` once written off.
    pub condition: Option<String>,
    /// When the item was written off (lost, stolen, destroyed, or declared missing at check-in).
    #[serde(default)]
    pub written_off_at: Option<Timestamp>,
    /// Why it was written off.
    #[serde(default)]
    pub write_off_reason: Option<String>,
    /// The SIM card this phone or router holds (asset tag and ICCID), on the receipt.
    #[serde(default)]
    pub sim: Option<String>,
    /// This device came back while the SIM it holds (asset tag) is still out.
    #[serde(default)]
    pub sim_not_returned: Option<String>,
    pub overdue: bool,
}

impl LoanView {
    /// Still with the commune: neither returned nor written off.
    pub fn is_open(&self) -> bool {
        self.returned_at.is_none() && self.written_off_at.is_none()
    }
}

/// `POST /api/v1/crises/{id}/credential-sheets/reissue`: why the passwords are set again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Fiches perdues lors de la livraison"}))]
pub struct ReissueRequest {
    #[schema(schema_with = repli_core::schema::note_required)]
    pub reason: String,
}

/// `POST /api/v1/crises/{id}/checkin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"serial": "FICTIF-LAP-0101", "condition": "damaged", "note": "Écran fêlé"}))]
pub struct CheckinRequest {
    #[schema(schema_with = repli_core::schema::identifier)]
    pub serial: String,
    /// ok, damaged, missing.
    #[schema(value_type = repli_core::inventory::Condition)]
    pub condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::short_text_optional)]
    pub note: Option<String>,
}

/// `POST /api/v1/crises/{id}/write-off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"serial": "FICTIF-LAP-0101", "reason": "Perdu lors du déménagement du service"}))]
pub struct WriteOffRequest {
    #[schema(schema_with = repli_core::schema::identifier)]
    pub serial: String,
    #[schema(schema_with = repli_core::schema::short_text_required)]
    pub reason: String,
}

/// `POST /api/v1/inventory/items/{serial}/service`: prepared, wiping, maintenance,
/// available (back from maintenance), retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "maintenance", "reason": "Batterie à remplacer"}))]
pub struct ServiceRequest {
    pub to: ItemState,
    #[schema(schema_with = repli_core::schema::short_text_required)]
    pub reason: String,
}

/// `POST /api/v1/inventory/items/{serial}/check`: a returned router, SIM or printer checked
/// and put back in stock (laptops and phones return through a wipe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "Réinitialisé, APN vérifié, chargeur présent"}))]
pub struct CheckRequest {
    /// What was checked.
    #[schema(schema_with = repli_core::schema::short_text_required)]
    pub note: String,
}

/// `POST /api/v1/inventory/items/{serial}/wipe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"method": "NIST 800-88 Purge", "operator": "Atelier DSI", "certificate": "CERT-2026-0142"}))]
pub struct WipeRequest {
    #[schema(schema_with = repli_core::schema::name)]
    pub method: String,
    #[schema(schema_with = repli_core::schema::name)]
    pub operator: String,
    #[schema(schema_with = repli_core::schema::name)]
    pub certificate: String,
}

/// `PUT /api/v1/crises/{id}/legal`: facts that start the legal clocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"aware_at": "2026-11-30T07:45:00Z", "personal_data": true}))]
pub struct LegalFactsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aware_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<bool>,
}

/// `POST /api/v1/crises/{id}/legal/{cnil|complaint}/done`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"at": "2026-11-30T16:00:00Z"}))]
pub struct LegalDoneRequest {
    /// When it was done (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// `POST /api/v1/crises/{id}/sla/suspend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "La commune a demandé de suspendre la livraison (locaux fermés)."}))]
pub struct SuspendRequest {
    #[schema(schema_with = repli_core::schema::short_text_required)]
    pub reason: String,
}

/// One legal clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LegalClockView {
    pub kind: LegalKind,
    pub label: String,
    pub deadline: Timestamp,
    pub done_at: Option<Timestamp>,
    pub status: LegalStatus,
    /// Calendar seconds left.
    pub remaining_seconds: i64,
}

/// One pause of the SLA clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SuspensionView {
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub reason: String,
}

/// One step in an after-action report: planned against actual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetexStep {
    pub playbook: repli_core::run::PlaybookName,
    pub step: String,
    pub title: String,
    pub manual: bool,
    pub state: repli_core::StepState,
    /// The playbook's estimate.
    pub planned_secs: i64,
    /// From its first start to its end (calendar seconds); none while unfinished.
    pub actual_secs: Option<i64>,
    pub attempts: u32,
    /// Manual steps: how long it waited for a person, and who confirmed it.
    pub waited_secs: Option<i64>,
    pub confirmed_by: Option<String>,
}

/// `GET /api/v1/crises/{id}/retex`: the after-action report (RETEX) of a crisis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetexView {
    pub crisis: CrisisId,
    pub commune_name: String,
    pub requested_at: Timestamp,
    pub ready_at: Option<Timestamp>,
    /// The promise, in business hours (48).
    pub business_hours: u32,
    /// Business seconds from the request to the ready kit (suspensions excluded).
    pub business_secs_to_ready: i64,
    pub sla_status: SlaStatus,
    /// The activation's critical path by the playbook's estimates.
    pub planned_critical_secs: i64,
    /// From the activation's start to its last step's end (calendar seconds).
    pub actual_activation_secs: Option<i64>,
    pub steps: Vec<RetexStep>,
    /// Manual steps, the longest wait first.
    pub longest_waits: Vec<RetexStep>,
    pub log: Vec<LogEntryView>,
    /// The exercise this crisis was part of (its report is a drill's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exercise: Option<repli_core::ExerciseTag>,
    /// The exercise's injects, each with the first main-courante entry a person wrote after it.
    #[serde(default)]
    pub injects: Vec<RetexInject>,
}

/// An inject and how it was handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetexInject {
    pub inject: LogEntryView,
    /// The first entry a person wrote in the main courante after it (none: unanswered).
    pub response: Option<LogEntryView>,
    /// Seconds from the inject to that response.
    pub response_secs: Option<i64>,
}

/// One line of the SLA compliance report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaReportLine {
    pub crisis: CrisisId,
    pub commune: InseeCode,
    pub commune_name: String,
    pub state: CrisisState,
    pub started_at: Timestamp,
    pub suspensions: Vec<SuspensionView>,
    pub suspended_seconds: i64,
    pub due_at: Timestamp,
    pub ready_at: Option<Timestamp>,
    pub status: SlaStatus,
    /// Business seconds late (ready after, or still running past, the due instant).
    pub late_seconds: i64,
}

/// A notification (to ops, or to the commune's out-of-band contact) and its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: i64,
    pub key: String,
    pub channel: String,
    pub crisis: Option<String>,
    /// The phone number or address it goes to; none: the channel's ops recipients (log,
    /// webhook).
    pub recipient: Option<String>,
    /// Who it is for: `dgs`, `ops` or `auditors`.
    pub audience: String,
    pub subject: String,
    pub body: String,
    /// pending, sent, failed.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// `POST /api/v1/crises/{id}/actions/{action}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Le kit a été livré en mairie à 14 h."}))]
pub struct ActionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::note_optional)]
    pub reason: Option<String>,
}

/// Where a crisis stands against the 48-business-hour promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaView {
    pub business_hours: u32,
    pub due_at: Timestamp,
    pub status: SlaStatus,
    pub status_label: String,
    /// Business seconds left before the due instant (0 once stopped or past).
    pub remaining_seconds: i64,
    /// Business seconds used so far, suspensions excluded (until ready, once ready).
    pub elapsed_seconds: i64,
    /// Business seconds the clock was suspended.
    pub suspended_seconds: i64,
    /// Share of the business time used, in percent (may exceed 100 once breached).
    pub used_percent: u32,
    /// When the kit should be ready at the estimated pace (running crises).
    pub projected_ready: Option<Timestamp>,
    pub suspensions: Vec<SuspensionView>,
}

/// When each stage was reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timeline {
    pub activated_at: Option<Timestamp>,
    pub provisioning_at: Option<Timestamp>,
    pub ready_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub handback_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

/// One audited event of a crisis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub details: serde_json::Value,
}

/// `GET /api/v1/crises/{id}/history`: a page of a crisis's history, going back in time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Entries before this sequence number (the `seq` of the oldest entry already shown); the
    /// most recent ones when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Entries per page: 100 by default, taken between 1 and 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// One page of a crisis's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Pass as `before` for the page of older entries; absent on the oldest page.
    pub next_before: Option<i64>,
}

/// A crisis: one kit loan to one commune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CrisisView {
    pub id: CrisisId,
    pub commune: InseeCode,
    pub commune_name: String,
    pub state: CrisisState,
    pub state_label: String,
    pub requested_at: Timestamp,
    pub requested_by: String,
    pub contact: Contact,
    /// Agents declared in the request.
    pub agents: u32,
    /// Agents the commune named so far.
    #[serde(default)]
    pub agents_named: u32,
    /// Ops accepted the named agents as the whole list (fewer than declared).
    #[serde(default)]
    pub agents_accepted: bool,
    pub delivery_address: Option<String>,
    pub notes: String,
    pub sla: SlaView,
    pub timeline: Timeline,
    /// Why it was rejected or cancelled.
    pub end_reason: Option<String>,
    /// When the contact details were erased (RGPD minimisation), if they were.
    pub personal_data_purged_at: Option<Timestamp>,
    pub aware_at: Option<Timestamp>,
    pub personal_data: Option<bool>,
    /// The 72-hour legal clocks, once `aware_at` is known.
    pub legal: Vec<LegalClockView>,
    /// Equipment wanted, allocated, and still missing (the waiting list).
    pub needs: Vec<NeedView>,
    /// The actions that can be taken now.
    pub next_actions: Vec<CrisisAction>,
    /// When the crisis can be activated and the last Microsoft 365 preflight failed: what
    /// failed, in French (activation stays possible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m365_warning: Option<String>,
    /// The 20 most recent audited events, oldest first (on single-crisis reads only); older
    /// ones at `GET /api/v1/crises/{id}/history?before=` the first one's `seq`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The exercise this crisis is part of: a drill, marked « EXERCICE » everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exercise: Option<repli_core::ExerciseTag>,
}

/// `POST /api/v1/exercises`: ops start a drill for one or several communes. The scenario file
/// of `repli exercise start --scenario` is this document in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExerciseRequest {
    #[schema(schema_with = repli_core::schema::exercise_name)]
    pub name: String,
    /// `table_top` (equipment only counted, the default) or `physical` (reserved for real).
    #[serde(default = "default_mode")]
    pub mode: repli_core::ExerciseMode,
    /// The only phone numbers and e-mail addresses the exercise's notifications may reach,
    /// besides each commune's contact.
    #[serde(default)]
    #[schema(schema_with = repli_core::schema::recipients)]
    pub recipients: Vec<String>,
    /// Each commune once.
    #[schema(min_items = 1, max_items = 92)]
    pub communes: Vec<ExerciseCommune>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub injects: Vec<InjectSpec>,
}

/// A scenario file that is not a valid [`ExerciseRequest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ligne {line} : {message}")]
pub struct ScenarioError {
    pub line: usize,
    pub message: String,
}

impl ExerciseRequest {
    /// Reads a scenario file (TOML), naming the line of the first error.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        toml::from_str(text).map_err(|e| ScenarioError {
            line: e.span().map_or(1, |s| text[..s.start.min(text.len())].lines().count().max(1)),
            message: e.message().to_owned(),
        })
    }
}

fn default_mode() -> repli_core::ExerciseMode {
    repli_core::ExerciseMode::TableTop
}

/// One commune of an exercise: its simulated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExerciseCommune {
    pub commune: InseeCode,
    #[schema(minimum = 1, maximum = 500)]
    pub agents: u32,
    /// Who plays the DGS: their phone and address are reached, and nothing else.
    pub contact: Contact,
}

/// A timed inject: a message the animators send into the exercise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectSpec {
    /// Minutes after the start, a week at most.
    #[schema(maximum = 10080)]
    pub after_minutes: u32,
    /// The commune it targets (default: every commune of the exercise); one of the exercise's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<InseeCode>,
    #[schema(schema_with = repli_core::schema::inject_text)]
    pub text: String,
    /// What it does to the exercise's simulated tenant (`effect = { licences_available = 0 }`):
    /// the drill then meets the failure through the real playbooks. Needs the exercise target
    /// `simulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<repli_core::exercise::InjectEffect>,
}

/// An exercise, its crises and its injects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExerciseView {
    pub id: i64,
    pub name: String,
    pub mode: repli_core::ExerciseMode,
    pub mode_label: String,
    pub started_at: Timestamp,
    pub started_by: String,
    pub recipients: Vec<String>,
    /// False once none of its crises is open.
    pub open: bool,
    pub crises: Vec<ExerciseCrisisView>,
    pub injects: Vec<InjectView>,
}

/// One crisis of an exercise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExerciseCrisisView {
    pub id: CrisisId,
    pub state: CrisisState,
    pub state_label: String,
}

/// A timed inject and when it was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InjectView {
    pub due_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<InseeCode>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<repli_core::exercise::InjectEffect>,
    pub delivered_at: Option<Timestamp>,
}

/// `GET /api/v1/campaign`: every open crisis together, for ops when several communes are hit
/// at once: SLA clocks side by side, the shared stock, the waiting list and its rule, and the
/// tenant's shared Graph budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignView {
    /// Open crises (exercises included, marked), the most urgent first.
    pub crises: Vec<CampaignCrisis>,
    pub stock: Vec<StockLine>,
    /// In the order equipment will be served.
    pub waiting: Vec<WaitingLine>,
    /// The priority rule in force, in French.
    pub priority_rule: String,
    pub graph: repli_core::m365::CallStats,
}

/// One open crisis's SLA clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignCrisis {
    pub id: CrisisId,
    pub commune_name: String,
    pub state_label: String,
    pub exercise: bool,
    pub sla_status: SlaStatus,
    pub sla_label: String,
    pub used_percent: u32,
    pub due_at: Timestamp,
    pub remaining_seconds: i64,
}

/// One kind of equipment across the pool: free, held by crises, and still missing for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockLine {
    pub kind: ItemKind,
    pub label: String,
    pub available: i64,
    /// Reserved, prepared or lent.
    pub held: i64,
    /// What open crises wait for.
    pub missing: i64,
}

/// A crisis on the waiting list and what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaitingLine {
    pub position: u32,
    pub crisis: CrisisId,
    pub commune_name: String,
    pub exercise: bool,
    pub missing: Vec<NeedView>,
}

/// `GET /api/v1/crises` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrisisQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<InseeCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CrisisState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<bool>,
}

/// `GET /api/v1/m365/preflight`: the tenant checked against what Repli needs, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreflightView {
    pub at: Timestamp,
    pub report: repli_core::m365::PreflightReport,
}

/// `GET /api/v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditVerifyView {
    pub verified: bool,
    pub entries: u64,
    pub last_seq: i64,
    pub last_hash: String,
    /// The last signed checkpoint.
    pub last_checkpoint: Option<i64>,
    /// Hex Ed25519 key signing the checkpoints: auditors keep a copy to verify offline.
    pub public_key: Option<String>,
    /// The fingerprints of the keys the verification trusted (`audit.trusted_keys`, or the
    /// host's own key): never a key read from the log.
    pub trusted_keys: Vec<String>,
    /// The signed head: the last entry, signed in the transaction that wrote it. Keep
    /// `seq:hash` to check later with `repli audit verify --pin`.
    pub head: Option<repli_core::audit::Checkpoint>,
    /// Why verification failed, naming the first bad sequence number.
    pub error: Option<String>,
    pub first_bad_seq: Option<i64>,
    pub tamper: Option<Tamper>,
}

/// `GET /api/v1/audit/entries` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::filter)]
    pub crisis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::filter)]
    pub commune: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::filter)]
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (`crisis.`, `log.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::action_filter)]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    /// Paging: entries after this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Entries per page: 500 by default, taken between 1 and 5,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// One page of audit entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// `POST /api/v1/crises/{id}/log`: a main-courante entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "décision", "text": "La mairie ouvre un guichet papier pour l'état civil."}))]
pub struct LogEntryRequest {
    /// information, demande, action, décision, point de situation; `inject` in an exercise's
    /// crisis only.
    #[serde(rename = "type")]
    #[schema(schema_with = repli_core::schema::log_kind)]
    pub kind: String,
    #[schema(schema_with = repli_core::schema::note_required)]
    pub text: String,
}

/// One main-courante entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntryView {
    pub seq: i64,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub kind: LogKind,
    pub type_label: String,
    pub author: String,
    pub role: String,
    pub text: String,
}

/// An error, as RFC 7807 `application/problem+json`. `detail` is French: a DGS may read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `convention_missing`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_state: Option<CrisisState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_crisis: Option<CrisisId>,
    /// The request's id (also in the `X-Request-Id` header and the log lines of the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /api/v1/users` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "DGS d'Aubagne", "role": "dgs", "commune": "13005", "expires_days": 90}))]
pub struct NewUserRequest {
    #[schema(schema_with = repli_core::schema::name)]
    pub name: String,
    pub role: Role,
    /// Required for a DGS, refused for other roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<InseeCode>,
    /// Token lifetime in days (default: no expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 65535)]
    pub expires_days: Option<u16>,
}

/// A user as admins see it: never a token or a password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub commune: Option<InseeCode>,
    pub login: Option<String>,
    pub has_password: bool,
    pub active_tokens: i64,
    pub created_at: Option<Timestamp>,
    /// A TOTP second factor is enrolled (web sign-in of ops, admin and auditor accounts).
    #[serde(default)]
    pub second_factor: bool,
}

/// `POST /api/v1/users` answer: the user and their first token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    pub token: TokenView,
}

/// A new token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub user_id: i64,
    pub token: String,
    pub expires_at: Option<Timestamp>,
}

/// `POST /api/v1/users/{id}/tokens` (admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"expires_days": 30}))]
pub struct TokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 65535)]
    pub expires_days: Option<u16>,
}

/// `DELETE /api/v1/users/{id}/tokens` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokeView {
    pub user_id: i64,
    /// Tokens and web sessions revoked.
    pub revoked: u64,
}

/// `PUT /api/v1/users/{id}/password` (admin): sets the web login and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"login": "dgs.aubagne", "password": "une longue phrase de passe"}))]
pub struct PasswordRequest {
    #[schema(schema_with = repli_core::schema::login)]
    pub login: String,
    #[schema(schema_with = repli_core::schema::password)]
    pub password: String,
}

/// One step of a playbook run, as ops and the commune follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepView {
    pub step: String,
    pub kind: String,
    /// The progress-bar group (« Microsoft 365 », « Équipements »…).
    pub group: String,
    pub title: String,
    pub state: repli_core::StepState,
    pub state_label: String,
    pub needs: Vec<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub estimate_secs: i64,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Manual steps: what to do, rendered for this crisis.
    pub instructions: Option<String>,
    pub checklist: Vec<String>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<Timestamp>,
    pub note: Option<String>,
    /// What the step produced (ops and auditors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

/// One run of a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    pub playbook: repli_core::run::PlaybookName,
    pub state: repli_core::run::RunState,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Estimated work left along the longest chain of unfinished steps.
    pub remaining_secs: i64,
    pub steps: Vec<StepView>,
}

/// `GET /api/v1/crises/{id}/steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepsView {
    pub crisis: CrisisId,
    pub state: CrisisState,
    /// Microsoft 365 is an embedded simulator, not a tenant.
    pub simulation: bool,
    pub runs: Vec<RunView>,
}

/// `GET /api/v1/tasks`: a manual step waiting for ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    pub crisis: CrisisId,
    pub commune_name: String,
    pub playbook: repli_core::run::PlaybookName,
    pub step: String,
    pub title: String,
    pub instructions: Option<String>,
    pub checklist: Vec<String>,
    pub since: Option<Timestamp>,
    /// The task belongs to an exercise's crisis.
    #[serde(default)]
    pub exercise: bool,
}

/// `POST /api/v1/crises/{id}/steps/{step}/done`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "Routeur 4G remis au DGS"}))]
pub struct TaskDoneRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::note_optional)]
    pub note: Option<String>,
    /// A DNS step confirmed although the authoritative servers do not serve what it was to
    /// do: why (recorded in the audit entry with what differed). Without it such a
    /// confirmation is refused (409 `step_conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = repli_core::schema::note_optional)]
    pub dns_unchecked: Option<String>,
}

/// `POST /api/v1/crises/{id}/steps/{step}/retry` and `…/skip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Le registrar a publié l'enregistrement manuellement."}))]
pub struct StepActionRequest {
    #[schema(schema_with = repli_core::schema::note_required)]
    pub reason: String,
}

/// `GET /api/v1/crises/{id}/dns`: the crisis zone as each authoritative server serves it,
/// against the whole record set the crisis's state expects (whoever published or removed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnsCheckView {
    pub domain: String,
    /// The zone written to (`rfc2136`); none when publication is manual or simulated.
    pub zone: Option<String>,
    /// Whether the servers could be queried (only with `dns = "rfc2136"`).
    pub checked: bool,
    /// What the crisis's state expects of the zone.
    pub expect: DnsExpectation,
    /// Every server answers, with the same serial, and serves exactly what is expected.
    pub ok: bool,
    /// Each authoritative server: its zone serial, whether it lags behind the others.
    pub servers: Vec<DnsServerCheck>,
    /// One line per server, name and type where something is expected or served (or the
    /// server could not be read); names and types where nothing is expected and nothing is
    /// served are left out.
    pub records: Vec<DnsRecordCheck>,
}

/// What the crisis's state expects of its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DnsExpectation {
    /// No backup domain yet: nothing to look at.
    Nothing,
    /// The kit's records, as far as its publication steps got (by Repli or confirmed by a person).
    Present,
    /// The hand-back removed them (or the crisis ended): nothing at any name Repli owns.
    Absent,
}

/// One authoritative server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnsServerCheck {
    /// `address:port`.
    pub server: String,
    /// The zone's SOA serial it serves.
    pub serial: Option<u32>,
    /// Why it could not be read (no answer, no authority).
    pub error: Option<String>,
    /// Its serial is behind another server's: it has not got the last update.
    pub lagging: bool,
}

/// How one name and type on one server compares with what is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DnsDiff {
    /// Served exactly as expected.
    Same,
    /// Expected, served nothing.
    Missing,
    /// Served, not expected (left after a hand-back, added by someone).
    Extra,
    /// Served, but other values than expected.
    Different,
    /// The server did not answer for it.
    Unreadable,
}

/// One name and type on one authoritative server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnsRecordCheck {
    /// `address:port`.
    pub server: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub expected: Vec<String>,
    pub served: Vec<String>,
    /// Why the server could not be read.
    pub error: Option<String>,
    pub diff: DnsDiff,
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    use super::*;

    /// Each request's example in the OpenAPI document is a request replid accepts.
    #[test]
    fn request_examples_parse_as_their_type() {
        fn check<T: PartialSchema + serde::de::DeserializeOwned>(name: &str) {
            let RefOr::T(Schema::Object(o)) = T::schema() else { panic!("{name}: not an object schema") };
            let example = o.examples.first().cloned().or(o.example.clone());
            let example = example.unwrap_or_else(|| panic!("{name} has no example"));
            if let Err(e) = serde_json::from_value::<T>(example) {
                panic!("{name}'s example does not parse: {e}");
            }
        }
        check::<CrisisRequest>("CrisisRequest");
        check::<ActionRequest>("ActionRequest");
        check::<LendRequest>("LendRequest");
        check::<CheckinRequest>("CheckinRequest");
        check::<WriteOffRequest>("WriteOffRequest");
        check::<ServiceRequest>("ServiceRequest");
        check::<WipeRequest>("WipeRequest");
        check::<LogEntryRequest>("LogEntryRequest");
        check::<AgentsRequest>("AgentsRequest");
        check::<SuspendRequest>("SuspendRequest");
        check::<StepActionRequest>("StepActionRequest");
        check::<TaskDoneRequest>("TaskDoneRequest");
        check::<NewUserRequest>("NewUserRequest");
        check::<PasswordRequest>("PasswordRequest");
        check::<ReissueRequest>("ReissueRequest");
        check::<ImportRequest>("ImportRequest");
        check::<LegalFactsRequest>("LegalFactsRequest");
        check::<LegalDoneRequest>("LegalDoneRequest");
        check::<TokenRequest>("TokenRequest");
    }
}
