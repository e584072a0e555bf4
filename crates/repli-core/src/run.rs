//! Playbook runs as the engine, the store and the operations layer share them: typed playbook
//! names and run states, the records of runs and steps, the typed output of each step kind, and
//! the store port the engine is written against ([`RunStore`]).
//!
//! Step outputs are stored as JSON (the same shapes the API shows) but never read by key: the
//! store decodes each into [`StepOutput`] with the step's kind, so renaming a field is a compile
//! error wherever it is read.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::m365::{BoxFut, DnsRecord, DomainRemoval, IsolationReport, WindDown};
use crate::playbook::StepKind;
use crate::{Actor, CrisisAction, CrisisId, CrisisState, ItemKind, StepState};

/// Who makes a change: a person, or the daemon itself.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    User(&'a Actor),
    /// The daemon itself (engine, reference data sync at start-up).
    System,
}

/// The playbooks a crisis runs. Their behaviour around the crisis's state is here, typed, so the
/// generic executor never branches on a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlaybookName {
    /// Reserves the kit and provisions it (`playbooks/activation.toml`).
    Activation,
    /// Winds the kit down and takes it back (`playbooks/handback.toml`).
    Handback,
}

impl PlaybookName {
    pub const ALL: [PlaybookName; 2] = [Self::Activation, Self::Handback];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activation => "activation",
            Self::Handback => "handback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the run goes on once the crisis is called off (the wind-down must finish).
    pub fn survives_cancel(self) -> bool {
        self == Self::Handback
    }

    /// The transition the run makes when it starts working on a crisis in a given state.
    pub fn entry_transition(self) -> Option<(CrisisState, CrisisAction)> {
        match self {
            Self::Activation => Some((CrisisState::Activated, CrisisAction::StartProvisioning)),
            Self::Handback => None,
        }
    }

    /// Whether `action` starts this playbook from any state (the steps to prepare before the
    /// transaction, which then learns the state it leaves).
    pub fn could_start(self, action: CrisisAction) -> bool {
        CrisisState::ALL.into_iter().any(|from| Self::started_by(action, from) == Some(self))
    }

    /// The playbook a transition starts, given the state it left.
    pub fn started_by(action: CrisisAction, from: CrisisState) -> Option<Self> {
        match action {
            CrisisAction::Activate => Some(Self::Activation),
            CrisisAction::StartHandback => Some(Self::Handback),
            // Called off after activation: wind down whatever was provisioned.
            CrisisAction::Cancel if matches!(from, CrisisState::Activated | CrisisState::Provisioning) => {
                Some(Self::Handback)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for PlaybookName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    /// A step failed for good; ops retry or skip it.
    Failed,
    /// The crisis was called off before the run finished.
    Cancelled,
}

impl RunState {
    /// Whether ops may retry or skip a step of a run in this state: while it runs, or once it
    /// failed (a finished or cancelled run is history).
    pub fn takes_step_operations(self) -> bool {
        matches!(self, Self::Running | Self::Failed)
    }

    pub const ALL: [RunState; 4] = [Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step as written when a run starts (templates still unrendered).
#[derive(Debug, Clone)]
pub struct NewStep {
    pub step_id: String,
    pub kind: StepKind,
    pub title: String,
    pub needs: Vec<String>,
    pub params: Value,
    pub instructions: Option<String>,
    pub checklist: Vec<String>,
    pub estimate_secs: i64,
    pub budget_secs: i64,
    pub max_attempts: u32,
}

/// A run of a playbook for a crisis.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub crisis_id: CrisisId,
    pub commune: String,
    pub playbook: PlaybookName,
    pub state: RunState,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// What a person is asked to do at a manual step (templates rendered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualTask {
    pub instructions: Option<String>,
    #[serde(default)]
    pub checklist: Vec<String>,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub run_id: i64,
    pub step_id: String,
    pub position: i64,
    pub kind: StepKind,
    pub title: String,
    pub needs: Vec<String>,
    pub params: Value,
    pub instructions: Option<String>,
    pub checklist: Vec<String>,
    pub estimate_secs: i64,
    pub budget_secs: i64,
    pub max_attempts: u32,
    pub state: StepState,
    pub attempts: u32,
    pub not_before: Option<Timestamp>,
    pub first_started_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub output: Option<StepOutput>,
    pub rendered: Option<ManualTask>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<Timestamp>,
    pub note: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum StepFinish {
    Succeeded(StepOutput),
    /// Failed this time; pending again from `not_before`.
    Retry {
        error: String,
        not_before: Timestamp,
    },
    Failed(String),
    /// Waits for a person: rendered instructions and checklist.
    Manual(ManualTask),
    /// Cannot start yet and costs no attempt: pending again from `not_before`, or as soon as
    /// what it waits for changes (the store re-arms the crisis's steps then).
    Wait {
        reason: String,
        not_before: Timestamp,
    },
}

/// One kind the kit is short of after allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub kind: ItemKind,
    pub wanted: i64,
    pub allocated: i64,
}

/// `inventory.reserve`: what could not be reserved (the crisis waits for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    pub short: Vec<Shortage>,
}

/// Which laptop goes to which agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub agent: String,
    pub service: String,
    pub serial: String,
}

/// `inventory.assign`: the crisis's items and the laptop plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    pub items: usize,
    pub assignments: Vec<Assignment>,
}

/// `m365.domain`: the backup domain and its verification records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCreated {
    pub domain: String,
    pub created: bool,
    pub records: Vec<DnsRecord>,
    /// The verification records as a BIND fragment.
    pub zone: String,
}

/// `dns.publish`: what was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub published: usize,
    /// The zone as published (BIND fragment).
    pub zone: String,
    /// The records as published (`repli dns check` compares the servers with them).
    #[serde(default)]
    pub records: Vec<crate::m365::DnsRecord>,
}

/// `dns.remove`: the names whose record sets were deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpublished {
    pub names: Vec<String>,
}

/// `m365.verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainVerified {
    pub domain: String,
    pub verified: bool,
}

/// `m365.services`: the records Microsoft 365 asks to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecords {
    pub records: Vec<DnsRecord>,
}

/// One account as the kit's documents need it (no password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMade {
    pub upn: String,
    /// The account's object id (Graph binds and meeting organisers take ids, not UPNs); empty
    /// in outputs written before it was kept.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub service: String,
    pub created: bool,
    /// Held every licence of the kit already (the `m365.licences` step skips it).
    #[serde(default)]
    pub licensed: bool,
}

/// `m365.accounts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    pub accounts: Vec<AccountMade>,
}

impl Accounts {
    /// The object ids of the accounts that did not hold the kit's licences.
    pub fn unlicensed_ids(&self) -> Vec<String> {
        self.accounts.iter().filter(|a| !a.licensed).map(|a| a.id.clone()).collect()
    }
}

/// `m365.licences`: every account holds the kit's licences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licences {
    /// The kit's accounts.
    pub accounts: u32,
    /// Of those, the ones this step assigned (the others held them already).
    pub assigned: u32,
}

/// `m365.team`: the collaborative space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub group_id: String,
    pub mail: String,
    pub web_url: String,
    pub channels: Vec<String>,
}

/// `m365.meeting`: the standing visio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub join_url: String,
    pub id: String,
}

/// `m365.delete_group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDeleted {
    pub deleted: bool,
}

/// `m365.delete_accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsDeleted {
    pub deleted: usize,
}

/// `m365.export`: the data hand-back's archive, complete (every item exported or known gone)
/// and verified against its signed manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The archive's folder, relative to the data directory (`handback/<crisis>`).
    pub archive: String,
    /// Items listed, and of them exported (the rest are gone: deleted in between).
    pub items: usize,
    pub exported: usize,
    pub bytes: u64,
    /// SHA-256 of the signed `manifest.json`, as the audit log records it.
    pub manifest_sha256: String,
    /// Team channels whose conversation is in the archive (0: not readable by the app, a manual
    /// step of the hand-back instead).
    #[serde(default)]
    pub channels: usize,
}

/// `docs.render`: the files written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub documents: Vec<String>,
}

/// `notify`: to whom the message went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    pub audience: Audience,
}

/// `crisis.ready`, `crisis.close`: the crisis's state afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReached {
    pub state: Option<CrisisState>,
}

/// Who a playbook's `notify` step writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The métropole's ops team.
    Ops,
    /// The commune's DGS, by the out-of-band contact (the commune's mail is down).
    Dgs,
}

impl Audience {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "ops" => Some(Self::Ops),
            "dgs" => Some(Self::Dgs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ops => "ops",
            Self::Dgs => "dgs",
        }
    }
}

/// What a finished step produced, one variant per step kind.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutput {
    /// A manual step confirmed by a person (or a dns.publish handed to one): nothing produced.
    Confirmed,
    Reserved(Reserved),
    Assigned(Assigned),
    Domain(DomainCreated),
    Published(Published),
    Unpublished(Unpublished),
    Verified(DomainVerified),
    Services(ServiceRecords),
    Accounts(Accounts),
    Licences(Licences),
    Workspace(Workspace),
    Meeting(Meeting),
    Isolation(IsolationReport),
    WindDown(WindDown),
    GroupDeleted(GroupDeleted),
    AccountsDeleted(AccountsDeleted),
    DomainRemoved(DomainRemoval),
    Exported(Exported),
    Rendered(Rendered),
    Notified(Notified),
    State(StateReached),
}

impl Serialize for StepOutput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// A stored output that does not fit its step kind.
#[derive(Debug, thiserror::Error)]
#[error("output of a {kind} step: {message}")]
pub struct OutputError {
    pub kind: &'static str,
    pub message: String,
}

impl StepOutput {
    /// The JSON stored and shown (the variant's own fields, no tag: the kind says which).
    pub fn to_json(&self) -> Value {
        fn v<T: Serialize>(t: &T) -> Value {
            serde_json::to_value(t).unwrap_or(Value::Null)
        }
        match self {
            Self::Confirmed => Value::Object(Default::default()),
            Self::Reserved(o) => v(o),
            Self::Assigned(o) => v(o),
            Self::Domain(o) => v(o),
            Self::Published(o) => v(o),
            Self::Unpublished(o) => v(o),
            Self::Verified(o) => v(o),
            Self::Services(o) => v(o),
            Self::Accounts(o) => v(o),
            Self::Licences(o) => v(o),
            Self::Workspace(o) => v(o),
            Self::Meeting(o) => v(o),
            Self::Isolation(o) => v(o),
            Self::WindDown(o) => v(o),
            Self::GroupDeleted(o) => v(o),
            Self::AccountsDeleted(o) => v(o),
            Self::DomainRemoved(o) => v(o),
            Self::Exported(o) => v(o),
            Self::Rendered(o) => v(o),
            Self::Notified(o) => v(o),
            Self::State(o) => v(o),
        }
    }

    /// Reads a stored output back with the kind of the step that wrote it. A manual step's
    /// output (and a `dns.publish` that a person confirmed) is [`StepOutput::Confirmed`].
    pub fn decode(kind: StepKind, value: Value) -> Result<Self, OutputError> {
        fn d<T: serde::de::DeserializeOwned>(kind: StepKind, v: Value) -> Result<T, OutputError> {
            serde_json::from_value(v).map_err(|e| OutputError { kind: kind.as_str(), message: e.to_string() })
        }
        let empty = value.as_object().is_some_and(serde_json::Map::is_empty) || value.is_null();
        Ok(match kind {
            StepKind::Manual | StepKind::InventoryReception => Self::Confirmed,
            StepKind::DnsPublish | StepKind::DnsRemove if empty => Self::Confirmed,
            StepKind::InventoryReserve => Self::Reserved(d(kind, value)?),
            StepKind::InventoryAssign => Self::Assigned(d(kind, value)?),
            StepKind::M365Domain => Self::Domain(d(kind, value)?),
            StepKind::DnsPublish => Self::Published(d(kind, value)?),
            StepKind::DnsRemove => Self::Unpublished(d(kind, value)?),
            StepKind::M365Verify => Self::Verified(d(kind, value)?),
            StepKind::M365Services => Self::Services(d(kind, value)?),
            StepKind::M365Accounts => Self::Accounts(d(kind, value)?),
            StepKind::M365Licences => Self::Licences(d(kind, value)?),
            StepKind::M365Team => Self::Workspace(d(kind, value)?),
            StepKind::M365Meeting => Self::Meeting(d(kind, value)?),
            StepKind::M365Isolation => Self::Isolation(d(kind, value)?),
            StepKind::M365WindDown => Self::WindDown(d(kind, value)?),
            StepKind::M365DeleteGroup => Self::GroupDeleted(d(kind, value)?),
            StepKind::M365DeleteAccounts => Self::AccountsDeleted(d(kind, value)?),
            StepKind::M365RemoveDomain => Self::DomainRemoved(d(kind, value)?),
            StepKind::M365Export => Self::Exported(d(kind, value)?),
            StepKind::DocsRender => Self::Rendered(d(kind, value)?),
            StepKind::Notify => Self::Notified(d(kind, value)?),
            StepKind::CrisisReady | StepKind::CrisisClose => Self::State(d(kind, value)?),
        })
    }
}

/// One accessor per output kind: `name: Variant => Type` gives `fn name(&self) -> Option<&Type>`,
/// the first output of that variant.
macro_rules! outputs {
    ($($name:ident: $variant:ident => $ty:ty),* $(,)?) => {
        $(
            pub fn $name(&self) -> Option<&$ty> {
                self.all().find_map(|o| if let StepOutput::$variant(d) = o { Some(d) } else { None })
            }
        )*
    };
}

/// The outputs of a run's succeeded steps, read once and looked up by kind.
#[derive(Debug, Clone, Default)]
pub struct Outputs(Vec<(StepKind, StepOutput)>);

impl Outputs {
    /// Collects the outputs of the succeeded steps among `steps`.
    pub fn of<'a>(steps: impl IntoIterator<Item = &'a StepRecord>) -> Self {
        Outputs(
            steps
                .into_iter()
                .filter(|s| s.state == StepState::Succeeded)
                .filter_map(|s| s.output.clone().map(|o| (s.kind, o)))
                .collect(),
        )
    }

    fn all(&self) -> impl DoubleEndedIterator<Item = &StepOutput> {
        self.0.iter().map(|(_, o)| o)
    }

    outputs! {
        domain: Domain => DomainCreated,
        services: Services => ServiceRecords,
        accounts: Accounts => Accounts,
        workspace: Workspace => Workspace,
        meeting: Meeting => Meeting,
        wind_down: WindDown => WindDown,
        assigned: Assigned => Assigned,
        isolation: Isolation => IsolationReport,
        exported: Exported => Exported,
    }

    /// The last zone a `dns.publish` step published.
    pub fn last_published(&self) -> Option<&Published> {
        self.all().rev().find_map(|o| if let StepOutput::Published(d) = o { Some(d) } else { None })
    }
}

/// A store failure as the engine sees it: a message, and whether it was a refusal of the
/// transition because items are still out.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{count} item(s) still out")]
    ItemsOutstanding { count: i64 },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Store(String),
}

/// An agent named by the commune, as the engine uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentName {
    pub name: String,
    pub service: String,
}

/// Fewer agents named than declared, and ops did not accept the smaller number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentsGap {
    pub named: u32,
    pub declared: u32,
}

impl AgentsGap {
    /// The gap, if there is one: none once ops accepted the named agents as the whole list.
    pub fn of(named: u32, declared: u32, accepted: bool) -> Option<Self> {
        (!accepted && named < declared).then_some(Self { named, declared })
    }

    /// What the crisis page and the step say (French).
    pub fn message_fr(&self) -> String {
        format!(
            "Liste des agents incomplète : {} nom(s) sur {} agent(s) déclaré(s). Les comptes seront créés quand la commune \
             aura complété la liste, ou dès que l'exploitation aura confirmé l'effectif réduit.",
            self.named, self.declared
        )
    }
}

/// The store operations the engine runs on. The SQLite store implements it; tests can use an
/// in-memory one. Every write is audited by the implementation.
pub trait RunStore: Send + Sync {
    fn unfinished_runs(&self) -> BoxFut<'_, Result<Vec<RunRecord>, PortError>>;
    fn finish_run(&self, run: i64, state: RunState, now: Timestamp) -> BoxFut<'_, Result<(), PortError>>;
    fn steps(&self, run: i64) -> BoxFut<'_, Result<Vec<StepRecord>, PortError>>;
    fn claim_step<'a>(
        &'a self,
        run: i64,
        step: &'a str,
        owner: &'a str,
        lease_until: Timestamp,
        wall: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Result<Option<StepRecord>, PortError>>;
    fn renew_lease<'a>(
        &'a self,
        run: i64,
        step: &'a str,
        owner: &'a str,
        until: Timestamp,
    ) -> BoxFut<'a, Result<bool, PortError>>;
    fn finish_step<'a>(
        &'a self,
        run: i64,
        step: &'a str,
        owner: &'a str,
        finish: &'a StepFinish,
        wall: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Result<bool, PortError>>;
    /// Running steps whose lease expired: pending again.
    fn reclaim_expired(&self, wall: Timestamp, now: Timestamp) -> BoxFut<'_, Result<Vec<(i64, String)>, PortError>>;
    /// The crisis's state, `None` when it does not exist.
    fn crisis_state<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Option<CrisisState>, PortError>>;
    /// A transition made by the engine; returns the new state.
    fn transition<'a>(
        &'a self,
        crisis: &'a CrisisId,
        action: CrisisAction,
        now: Timestamp,
    ) -> BoxFut<'a, Result<CrisisState, PortError>>;
    /// Reserves the kit from free stock; returns what is still short.
    fn allocate<'a>(&'a self, crisis: &'a CrisisId, now: Timestamp) -> BoxFut<'a, Result<Vec<Shortage>, PortError>>;
    /// The serials of the crisis's items, laptops first in their order, and how many items in all.
    fn laptops<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<(Vec<String>, usize), PortError>>;
    /// The agents the commune named.
    fn agents<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Vec<AgentName>, PortError>>;
    /// Whether fewer agents were named than declared (and ops did not accept it).
    fn agents_gap<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Option<AgentsGap>, PortError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_states_round_trip() {
        for p in PlaybookName::ALL {
            assert_eq!(PlaybookName::parse(p.as_str()), Some(p));
        }
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        assert_eq!(PlaybookName::parse("Activation"), None);
    }

    #[test]
    fn outputs_decode_by_kind_and_refuse_what_does_not_fit() {
        let accounts = StepOutput::Accounts(Accounts {
            accounts: vec![AccountMade {
                upn: "a@x.fr".into(),
                id: "0a1b".into(),
                name: "A".into(),
                service: "S".into(),
                created: true,
                licensed: true,
            }],
        });
        let json = accounts.to_json();
        assert_eq!(json["accounts"][0]["upn"], "a@x.fr");
        assert_eq!(StepOutput::decode(StepKind::M365Accounts, json.clone()).unwrap(), accounts);
        assert!(StepOutput::decode(StepKind::M365Team, json).is_err());
        assert_eq!(StepOutput::decode(StepKind::Manual, Value::Null).unwrap(), StepOutput::Confirmed);
        assert_eq!(StepOutput::decode(StepKind::DnsPublish, serde_json::json!({})).unwrap(), StepOutput::Confirmed);
    }
}
