//! The Microsoft 365 port: the operations the engine needs from a tenant, and the plain types
//! they speak. `repli-m365` implements it over graph-rs-sdk; the engine and the operations layer
//! see only this module, so they compile without the SDK.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that [`M365`] can be used as `dyn M365`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A secret string: never printed by `Debug`, never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send or show it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The application permissions Repli needs on a tenant, no more (docs/M365.md explains each).
/// The last two (Mail.Read, Files.Read.All) read what the kit's agents wrote, for the data hand-back: each message's MIME
/// (message-get with `$value`: Mail.Read; Mail.ReadBasic.All leaves the body out) and the
/// accounts' and the Team's files (driveitem-delta, driveitem-get-content: Files.Read.All).
pub const LEAST_PRIVILEGE: [&str; 11] = [
    "Application.Read.All",
    "RoleManagement.Read.Directory",
    "Domain.ReadWrite.All",
    "User.ReadWrite.All",
    "User.RevokeSessions.All",
    "User.DeleteRestore.All",
    "Group.ReadWrite.All",
    "Organization.Read.All",
    "OnlineMeetings.ReadWrite.All",
    "Mail.Read",
    "Files.Read.All",
];

/// The directory role password resets need app-only, and its template id (a token's `wids`).
pub const USER_ADMINISTRATOR: (&str, &str) = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1");

/// What ops must do when Teams refuses the app's meetings, in French: the same words in the
/// failed visio step, its manual task and the preflight. The kits' organisers are accounts
/// created at activation, which only a `-Global` grant covers
/// (cloud-communication-online-meeting-application-access-policy: changes "can take up to 30
/// minutes to take effect").
pub const MEETING_POLICY_FR: &str = "une stratégie d'accès aux applications Teams couvrant l'organisateur des visios. Dans PowerShell (module MicrosoftTeams) : « New-CsApplicationAccessPolicy -Identity Repli -AppIds <identifiant d'application de Repli> », puis « Grant-CsApplicationAccessPolicy -PolicyName Repli -Global » (les comptes des kits sont créés à l'activation : une attribution par utilisateur ne peut pas les couvrir, sauf à désigner un organisateur permanent couvert, m365.preflight_organizer). Une nouvelle stratégie peut mettre jusqu'à 30 minutes à s'appliquer";

/// What a tenant administrator must grant the app for a call Graph refused with 403.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Grant {
    /// An application permission, with admin consent.
    Permission(String),
    /// A directory role assigned to the app (with the permission it goes with).
    Role(String),
    /// A directory role assigned to the app on an administrative unit (`m365.admin_unit`): it
    /// covers the unit's members only, so the account must be one.
    UnitRole { role: String, unit: String },
    /// A Teams application access policy granted for the meeting organiser.
    MeetingPolicy,
    /// A licence that includes Teams for the Team's owner (Graph refuses the Team otherwise).
    TeamsLicence,
}

impl Grant {
    /// What is missing and where to grant it, in French for ops.
    pub fn fr(&self) -> String {
        match self {
            Grant::Permission(p) => format!(
                "la permission d'application {p} (Entra ID › Inscriptions d'applications › Autorisations de l'API, puis « Accorder un consentement d'administrateur »)"
            ),
            Grant::Role(r) => format!(
                "le rôle d'annuaire « {r} » (Entra ID › Rôles et administrateurs, de préférence sur une unité administrative qui ne contient que les comptes des kits)"
            ),
            Grant::UnitRole { role, unit } => format!(
                "le rôle d'annuaire « {role} » sur l'unité administrative {unit}, qui doit contenir les comptes du kit (Entra ID › Unités administratives : règle d'appartenance dynamique sur le domaine des kits, dont le traitement peut prendre quelques minutes après la création d'un compte)"
            ),
            Grant::MeetingPolicy => MEETING_POLICY_FR.into(),
            Grant::TeamsLicence => "une licence incluant Teams pour le propriétaire de l'espace collaboratif (centre d'administration Microsoft 365 › Facturation › Licences ; la licence Teams configurée dans [m365] sku_part_numbers)".into(),
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Permission(p) => write!(f, "application permission {p}"),
            Grant::Role(r) => write!(f, "directory role {r}"),
            Grant::UnitRole { role, unit } => {
                write!(f, "directory role {role} on administrative unit {unit}, the account among its members")
            }
            Grant::MeetingPolicy => f.write_str("a Teams application access policy"),
            Grant::TeamsLicence => f.write_str("a licence including Teams for the Team's owner"),
        }
    }
}

/// What went wrong, with Graph's own code and message when Graph refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Graph endpoint refused: {0}")]
    Endpoint(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{op}: Graph answered {status} {code}: {message}")]
    Graph { op: String, status: u16, code: String, message: String },
    #[error("{op}: Graph answered 403 {code}: {message} (the app lacks the {missing})")]
    Forbidden { op: String, code: String, message: String, missing: Grant },
    #[error("{op}: gave up after {attempts} attempts in {elapsed_ms} ms (time budget); last: {last}")]
    Budget { op: String, attempts: u32, elapsed_ms: u64, last: String },
    #[error("not enough {sku} licences: {needed} needed, {available} available ({missing} missing)")]
    LicencesExhausted { sku: String, needed: u32, available: u32, missing: u32 },
    #[error("no subscribed SKU with part number {0}")]
    SkuNotFound(String),
    #[error("domain {domain} is still referenced by {} object(s) ({}); wind the accounts down first, or confirm a forced delete", references.len(), references.join(", "))]
    DomainReferenced { domain: String, references: Vec<String> },
    /// Unreachable server, propagation not yet seen: retrying may help.
    #[error("DNS : {0}")]
    Dns(String),
    /// The server refused the update under its policy (REFUSED, NOTAUTH with a valid
    /// signature: the key is known but not granted this name or type, or the server is not
    /// authoritative for the zone): retrying cannot help.
    #[error("DNS : {0}")]
    DnsRefused(String),
    /// The server did not accept the TSIG signature (BADKEY: unknown key name or algorithm;
    /// BADSIG: wrong secret; BADTIME: clocks apart), or its answer is not signed by the key:
    /// retrying cannot help.
    #[error("DNS : {0}")]
    DnsTsig(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Graph does not see yet what was published or created (a verification record not found
    /// yet, say): retrying later may succeed.
    #[error("{op}: {detail}")]
    NotYetVisible { op: String, detail: String },
    /// Graph answered 2xx with a body that lacks a required field or has one of the wrong
    /// type: `call` names the request (`GET /domains/{id}`). Retrying cannot help.
    #[error("{op}: Graph's answer to {call} does not decode: {detail}")]
    Decode { op: String, call: String, detail: String },
}

impl Error {
    /// Whether retrying the same step later may succeed (throttling, outage, propagation).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Budget { .. } | Error::Dns(_) | Error::NotYetVisible { .. })
            || matches!(self, Error::Graph { status, .. } if *status >= 500 || *status == 429 || *status == 404)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One DNS record of the crisis zone, as Graph describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Fully qualified owner name, without the final dot.
    pub name: String,
    /// `TXT`, `MX`, `CNAME` or `SRV`.
    pub kind: String,
    pub ttl: u32,
    /// The record data in zone-file form (`0 x.mail.protection.outlook.com.` for an MX).
    pub value: String,
    /// The Microsoft 365 service the record is for (`Email`, `OfficeCommunicationsOnline`).
    pub service: String,
    /// Graph's `isOptional`: Microsoft 365 works without it; published only when
    /// `[dns] optional_records` says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// What a crisis zone holds besides Graph's records: the DMARC policy, and whether Graph's
/// optional records are published (`[dns] dmarc_policy`, `dmarc_rua`, `optional_records`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZonePolicy {
    /// (policy, aggregate report address); none: no DMARC record.
    pub dmarc: Option<(String, Option<String>)>,
    /// Publish the records Graph marks `isOptional`.
    pub optional: bool,
}

/// The records a crisis zone holds once its records are published: the verification TXT
/// (never Graph's MX alternative, which would sit beside the real MX), and, once the services
/// are enabled, Graph's service records (the optional ones only if `policy` says so) and the
/// DMARC policy. The one definition: the `dns.publish` step publishes it, `repli dns check`
/// expects it.
pub fn kit_records(
    domain: &str,
    verification: &[DnsRecord],
    services: Option<&[DnsRecord]>,
    policy: &ZonePolicy,
) -> Vec<DnsRecord> {
    let mut records: Vec<DnsRecord> =
        verification.iter().filter(|r| r.kind.eq_ignore_ascii_case("TXT")).cloned().collect();
    if let Some(services) = services {
        records.extend(services.iter().filter(|r| policy.optional || !r.optional).cloned());
        if let Some((p, rua)) = &policy.dmarc {
            records.push(dmarc_record(domain, p, rua.as_deref()));
        }
    }
    records
}

/// The backup domain's state in the tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainState {
    pub name: String,
    pub verified: bool,
    pub services: Vec<String>,
    pub verification: Vec<DnsRecord>,
    /// Whether this run created it (false when it already existed).
    pub created: bool,
}

/// One agent who needs an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub service: String,
}

/// One account on the backup domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub upn: String,
    pub id: String,
    pub display_name: String,
    pub service: String,
    pub created: bool,
    pub licensed: bool,
}

/// The collaborative space to ensure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamSpec {
    /// Deterministic key: the group's mailNickname (e.g. `crise-13005-2026-001`).
    pub nickname: String,
    pub display_name: String,
    pub description: String,
    /// Object ids (Graph's `directoryObjects/{id}` binds take ids, not UPNs).
    pub owners: Vec<String>,
    /// Object ids.
    pub members: Vec<String>,
    /// (name, description) of each channel besides « General ».
    pub channels: Vec<(String, String)>,
}

/// The collaborative space as provisioned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamInfo {
    pub group_id: String,
    pub mail: String,
    pub web_url: String,
    pub channels: Vec<String>,
    pub created: bool,
}

/// The standing visio of the crisis cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeetingSpec {
    /// The organiser's object id (app-only `createOrGet` by UPN answers 404).
    pub organizer: String,
    /// Deterministic key (`createOrGet` returns the same meeting for the same one).
    pub external_id: String,
    pub subject: String,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeetingInfo {
    pub id: String,
    pub join_url: String,
}

/// What the hand-back wind-down did to the accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindDown {
    /// Accounts revoked and disabled; the commune retrieves their mail and files.
    pub accounts: Vec<String>,
    pub licences_removed: u32,
    /// The kit's online meetings deleted (none in outputs written before they were).
    #[serde(default)]
    pub meetings_removed: u32,
}

/// How the domain was removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DomainRemoval {
    Deleted,
    ForceDeleted { renamed: usize },
    AlreadyAbsent,
}

/// One isolation check, worded in French for the crisis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationCheck {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// Evidence that the kit is isolated from the commune's IT and from the metropole's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationReport {
    pub domain: String,
    pub ok: bool,
    pub checks: Vec<IsolationCheck>,
}

/// What the data hand-back exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// A message, as MIME (`.eml`) from `/users/{id}/messages/{id}/$value`.
    Message,
    /// A file of an account's OneDrive or of the Team's drive, by the download redirect.
    File,
    /// A Team channel's messages with their replies, as JSON (`handback::ChannelExport`), when
    /// the tenant lets the app read them (channel-list-messages, chatmessage-list-replies).
    ChannelMessages,
    /// The same conversation as a page to read (`handback::channel_html`).
    ChannelPage,
}

/// One item a kit mailbox or drive holds, as listed before the export fetches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportItem {
    pub kind: ExportKind,
    /// Whose: the account's UPN, or `equipe` for the Team's drive.
    pub owner: String,
    /// The folders above it, from the top, as Graph names them.
    pub folder: Vec<String>,
    /// The file's name, or the message's subject.
    pub name: String,
    pub graph_id: String,
    /// Relative to the Graph base: `/users/{id}/messages/{id}/$value`,
    /// `/drives/{drive}/items/{id}/content`.
    pub content_url: String,
    /// The size Graph announces (files; messages have none before they are fetched).
    pub size: Option<u64>,
    pub last_modified: String,
}

/// Everything the kit holds, listed: the items, and what could not be listed (in French).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInventory {
    pub items: Vec<ExportItem>,
    pub notes: Vec<String>,
}

/// How fetching one item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Every byte written to the sink.
    Complete { bytes: u64 },
    /// Graph answered 404: the item was deleted since it was listed.
    Gone,
    /// Larger than the limit: nothing (more) written.
    TooLarge { size: u64 },
}

/// Where a fetched item's bytes go (the export's temporary file). A fetch cut mid-way either
/// resumes (a download URL takes ranges: bytes already written are kept) or starts again
/// after [`ItemSink::restart`].
pub trait ItemSink: Send {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Forgets what was written (the source cannot resume).
    fn restart(&mut self) -> std::io::Result<()>;
}

/// Microsoft 365 operations the engine needs, each idempotent.
pub trait M365: Send + Sync {
    /// Creates the domain unless it exists; returns its verification records.
    fn ensure_domain<'a>(&'a self, name: &'a str) -> BoxFut<'a, Result<DomainState>>;
    /// Asks Graph to verify the domain (its TXT record must be published). `seen`: the domain
    /// as this same run's [`M365::ensure_domain`] has just answered it, so it is not read
    /// again; `None` (a step retried perhaps hours later) reads `isVerified` first.
    fn verify_domain<'a>(&'a self, name: &'a str, seen: Option<&'a DomainState>) -> BoxFut<'a, Result<()>>;
    /// Enables Email and Teams on the verified domain; returns the records to publish.
    fn enable_services<'a>(&'a self, name: &'a str) -> BoxFut<'a, Result<Vec<DnsRecord>>>;
    /// One account per agent on the domain (created unless it exists), once every SKU has a
    /// unit for each account that lacks it; licences are [`M365::ensure_licences`]'s.
    fn ensure_accounts<'a>(&'a self, domain: &'a str, agents: &'a [AgentSpec]) -> BoxFut<'a, Result<Vec<Account>>>;
    /// Every SKU configured for the kit on each account (object ids); assigning a held licence
    /// changes nothing.
    fn ensure_licences<'a>(&'a self, account_ids: &'a [String]) -> BoxFut<'a, Result<()>>;
    /// Group, Team, channels and drive.
    fn ensure_team<'a>(&'a self, spec: &'a TeamSpec) -> BoxFut<'a, Result<TeamInfo>>;
    fn ensure_meeting<'a>(&'a self, spec: &'a MeetingSpec) -> BoxFut<'a, Result<MeetingInfo>>;
    /// New one-time passwords (change forced at first sign-in), returned once, never stored.
    fn reset_passwords<'a>(&'a self, upns: &'a [String]) -> BoxFut<'a, Result<Vec<(String, Secret)>>>;
    /// Deletes the kit's online meetings (`external_id`, organised by the standing organiser or
    /// by an account of `domain`); returns how many existed. Nothing left counts as done.
    fn remove_meetings<'a>(&'a self, domain: &'a str, external_id: &'a str) -> BoxFut<'a, Result<u32>>;
    /// Revokes sessions, disables the accounts and removes their licences.
    fn wind_down_accounts<'a>(&'a self, domain: &'a str) -> BoxFut<'a, Result<WindDown>>;
    /// Deletes the accounts of the domain (after the commune retrieved their data).
    fn delete_accounts<'a>(&'a self, domain: &'a str) -> BoxFut<'a, Result<usize>>;
    /// Deletes the group (and its Team); false when it was already gone.
    fn delete_group<'a>(&'a self, nickname: &'a str) -> BoxFut<'a, Result<bool>>;
    /// Removes the domain; `force` renames remaining references (explicit confirmation only).
    fn remove_domain<'a>(&'a self, name: &'a str, force: bool) -> BoxFut<'a, Result<DomainRemoval>>;
    /// Checks the accounts of `domain` and the members of group `group_id`.
    fn isolation_report<'a>(
        &'a self,
        domain: &'a str,
        group_id: &'a str,
        commune_domain: Option<&'a str>,
    ) -> BoxFut<'a, Result<IsolationReport>>;
    /// Read-only checks of the tenant (plus an idempotent canary meeting): what the app is
    /// granted, licences, the root domain, the meeting policy, the credential's expiry.
    fn preflight<'a>(&'a self, spec: &'a PreflightSpec) -> BoxFut<'a, PreflightReport>;
    /// Counters of what the provider sent.
    fn stats(&self) -> CallStats;
    /// What the provider's throttle gate knows of the tenant's pace, to be kept across
    /// restarts ([`M365::recall_pace`]).
    fn pace(&self) -> GraphPace {
        GraphPace::default()
    }
    /// Starts from a pace kept from an earlier run, unless this run already learnt one.
    fn recall_pace(&self, _pace: GraphPace) {}
    /// Lists what the kit holds for the hand-back: every message of every folder of the
    /// accounts of `domain`, their OneDrive files, and the files of the Team whose group has
    /// `nickname`. Read-only.
    fn export_inventory<'a>(&'a self, _domain: &'a str, _nickname: &'a str) -> BoxFut<'a, Result<ExportInventory>> {
        Box::pin(async { Err(Error::Invalid("this Microsoft 365 provider cannot export".into())) })
    }
    /// Streams one item into `sink`; refuses (without fetching more) past `max_bytes`.
    fn fetch_item<'a>(
        &'a self,
        _item: &'a ExportItem,
        _max_bytes: u64,
        _sink: &'a mut dyn ItemSink,
    ) -> BoxFut<'a, Result<Fetched>> {
        Box::pin(async { Err(Error::Invalid("this Microsoft 365 provider cannot export".into())) })
    }
}

/// What a preflight checks the tenant against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightSpec {
    /// Agents of the largest kit: every SKU needs that many free units.
    pub largest_kit: u32,
    /// The verified root the backup domains hang from (`secours-amp.fr`), if the pattern has one.
    pub root_domain: Option<String>,
    /// Object id of a designated meeting organiser, for the canary `createOrGet`.
    pub organizer: Option<String>,
    /// When the client secret expires (`YYYY-MM-DD`), as ops recorded it; a certificate
    /// states its own.
    pub secret_expires_on: Option<String>,
    /// The administrative unit the User Administrator role is scoped to, when it is (such an
    /// assignment does not show in the token).
    pub admin_unit: Option<String>,
    /// Today, `YYYY-MM-DD`, and the days of warning before a credential expires.
    pub today: String,
    pub warn_days: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    /// Works, but not as it should be set up (more privilege than needed, say).
    Warn,
    /// An activation would fail, or will soon.
    Fail,
}

/// One line of a preflight, in French for ops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreflightCheck {
    /// Stable key (`permissions`, `directory_role`, `licences`, `root_domain`,
    /// `meeting_policy`, `credential`, `token`).
    pub key: String,
    pub title: String,
    pub status: CheckStatus,
    pub detail: String,
    /// How to fix it, when it is not ok.
    pub fix: Option<String>,
}

/// A whole preflight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreflightReport {
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<PreflightCheck>,
}

impl PreflightReport {
    pub fn new(checks: Vec<PreflightCheck>) -> Self {
        PreflightReport { ok: checks.iter().all(|c| c.status != CheckStatus::Fail), checks }
    }
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &PreflightCheck> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Fail)
    }
}

/// The verified root a domain pattern's backup domains hang from: `secours-amp.fr` for
/// `{slug}.secours-amp.fr`; `None` when the placeholders are not one whole first label.
pub fn root_domain(pattern: &str) -> Option<String> {
    let (first, rest) = pattern.split_once('.')?;
    (first.contains('{') && !rest.contains('{') && rest.contains('.')).then(|| rest.to_ascii_lowercase())
}

/// The backup domain for a commune from a pattern such as `{slug}.secours-amp.fr`.
pub fn backup_domain(pattern: &str, commune_name: &str, insee: &str) -> Result<String> {
    let slug = crate::text::ascii_slug(commune_name, '-');
    let name = pattern.replace("{slug}", &slug).replace("{insee}", insee).to_ascii_lowercase();
    let valid = name.len() <= 253
        && name.contains('.')
        && !name.contains('{')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(name)
    } else {
        Err(Error::Invalid(format!("domain pattern {pattern:?} gives an invalid name {name:?}")))
    }
}

/// Counters of what the provider sent.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CallStats {
    /// HTTP requests sent (a `$batch` counts once; retries count).
    pub http_calls: u64,
    /// Graph requests, inner batch requests counted one by one (retries count).
    pub graph_requests: u64,
    /// Distinct Graph requests: each counted once however often it was retried.
    pub distinct_requests: u64,
    /// Requests that were retried (throttled, failed or dropped).
    pub retries: u64,
    /// Sends that met a 429 (a top-level answer, or a batch with throttled items).
    pub throttled: u64,
    /// The tenant's budget as its throttle gate learnt it from 429s: requests Graph admits per
    /// second (None: no 429 seen, no limit known).
    pub limit_per_second: Option<u64>,
    /// Requests sent in the last second, every crisis together.
    pub sent_last_second: u64,
}

/// What a tenant's throttle taught the Graph client: kept by replid per tenant, so a restarted
/// daemon does not learn it again from a 429 at its next activation (each lesson costs a whole
/// `Retry-After` while the kit waits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphPace {
    /// Requests Graph admitted per second when it last throttled (None: never throttled).
    pub limit_per_second: Option<u32>,
    /// Never throttled, and a full probe (three batches at once) came back unthrottled: waves go
    /// out whole from the first.
    pub open: bool,
    /// The tenant refused a `$batch` whole with a 429: it counts each batch against its limit
    /// besides the batch's requests (Microsoft's pages speak only of the requests), and
    /// `limit_per_second` counts them so.
    #[serde(default)]
    pub batch_counted: bool,
}

impl GraphPace {
    /// Nothing learnt.
    pub fn is_unknown(&self) -> bool {
        self.limit_per_second.is_none() && !self.open
    }

    /// Whether this pace tells something `kept` does not: a limit found or lost, or one that
    /// moved by more than a tenth, or batches found counted. A limit learnt from one 429 to the
    /// next wanders by a request or two; each would otherwise be written and audited.
    pub fn differs_from(&self, kept: &GraphPace) -> bool {
        if self.batch_counted != kept.batch_counted {
            return true;
        }
        match (self.limit_per_second, kept.limit_per_second) {
            (Some(now), Some(before)) => u64::from(now.abs_diff(before)) * 10 > u64::from(before),
            (None, None) => self.open != kept.open,
            _ => true,
        }
    }
}

/// The records as a BIND zone fragment (`$ORIGIN` + one line per record).
pub fn zone_fragment(domain: &str, comment: &str, records: &[DnsRecord]) -> String {
    let mut out = String::new();
    for line in comment.lines() {
        out.push_str(&format!("; {}\n", line.replace(['\r', '\n'], " ")));
    }
    out.push_str(&format!("$ORIGIN {domain}.\n$TTL 3600\n"));
    for r in records {
        let data = match r.kind.as_str() {
            "TXT" => format!("\"{}\"", r.value.replace('\\', "\\\\").replace('"', "\\\"")),
            _ => r.value.clone(),
        };
        out.push_str(&format!("{}. {} IN {} {} ; {}\n", r.name, r.ttl, r.kind, data, r.service));
    }
    out
}

/// Publishes the crisis domain's records where resolvers will find them.
pub trait DnsPublisher: Send + Sync {
    /// Replaces the record sets of `records` (each name and type) under the crisis `domain`,
    /// and returns once they are served; `Ok(false)` when publication is left to a person.
    fn publish<'a>(&'a self, domain: &'a str, records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>>;

    /// Removes what was published under the crisis `domain` (`records`: what the activation
    /// published, when known), and only there; `Ok(false)` when left to a person.
    fn remove<'a>(&'a self, domain: &'a str, records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>>;

    /// What each authoritative server serves at each of `names` (fully qualified, no final
    /// dot) for every type Repli publishes ([`OWNED_KINDS`]), and its zone's SOA serial;
    /// empty when this adapter cannot look (manual publication, the simulator).
    fn observe<'a>(&'a self, _names: &'a [String]) -> BoxFut<'a, Result<Vec<ServerSurvey>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Writes a TXT record at `name`, checks every server serves it, and removes it (the
    /// preflight's canary); `Ok(false)` when this adapter does not publish by itself.
    fn canary<'a>(&'a self, _name: &'a str, _value: &'a str) -> BoxFut<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    /// The zone the crisis domains are published in, when this adapter writes to one.
    fn zone(&self) -> Option<&str> {
        None
    }
}

/// The record types Repli publishes, and so looks for at the names it owns.
pub const OWNED_KINDS: [&str; 4] = ["TXT", "MX", "CNAME", "SRV"];

/// One authoritative server's answers for the names Repli owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSurvey {
    /// `address:port`.
    pub server: String,
    /// The zone's SOA serial as this server serves it; `Err` text when it did not answer
    /// (or answered without authority).
    pub serial: std::result::Result<u32, String>,
    /// One line per name and type (none when the serial could not be read).
    pub records: Vec<Observed>,
}

/// What one authoritative server serves for one name and type, in zone-file form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// `address:port`.
    pub server: String,
    pub name: String,
    pub kind: String,
    /// The values served; `Err` text when the server did not answer.
    pub served: std::result::Result<Vec<String>, String>,
}

/// No automatic publication: ops publish the written zone fragment at the registrar.
#[derive(Debug, Default, Clone, Copy)]
pub struct ManualDns;

impl DnsPublisher for ManualDns {
    fn publish<'a>(&'a self, _domain: &'a str, _records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    fn remove<'a>(&'a self, _domain: &'a str, _records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }
}

/// Names Repli or Microsoft 365 may use under a crisis domain, relative to it (`""` is the
/// domain itself): removal deletes every record set at each of them, and only there.
pub const CRISIS_NAMES: [&str; 12] = [
    "",
    "autodiscover",
    "sip",
    "lyncdiscover",
    "_sip._tls",
    "_sipfederationtls._tcp",
    "_dmarc",
    "selector1._domainkey",
    "selector2._domainkey",
    "enterpriseregistration",
    "enterpriseenrollment",
    "msoid",
];

/// The names a crisis domain may hold records at: the domain and its [`CRISIS_NAMES`].
pub fn crisis_names(domain: &str) -> Vec<String> {
    CRISIS_NAMES.iter().map(|l| if l.is_empty() { domain.to_owned() } else { format!("{l}.{domain}") }).collect()
}

/// The DMARC policy record of a crisis domain (`_dmarc.<domain>`): mail that fails SPF (and
/// DKIM, once Exchange signs) is quarantined or rejected, and aggregate reports go to `rua`.
pub fn dmarc_record(domain: &str, policy: &str, rua: Option<&str>) -> DnsRecord {
    let mut value = format!("v=DMARC1; p={policy}");
    if let Some(rua) = rua {
        value.push_str(&format!("; rua=mailto:{rua}"));
    }
    DnsRecord {
        name: format!("_dmarc.{domain}"),
        kind: "TXT".into(),
        ttl: 3600,
        value,
        service: "Email".into(),
        optional: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_is_worth_keeping_when_it_moved_by_more_than_a_tenth() {
        let limit = |l| GraphPace { limit_per_second: Some(l), ..GraphPace::default() };
        let open = GraphPace { limit_per_second: None, open: true, batch_counted: false };
        assert!(!limit(40).differs_from(&limit(40)));
        assert!(!limit(39).differs_from(&limit(40)) && !limit(44).differs_from(&limit(40)), "a wander");
        assert!(limit(45).differs_from(&limit(40)) && limit(35).differs_from(&limit(40)));
        assert!(limit(1).differs_from(&limit(2)) && limit(u32::MAX).differs_from(&limit(1)));
        assert!(open.differs_from(&limit(40)) && limit(40).differs_from(&open));
        assert!(!open.differs_from(&open));
        assert!(open.differs_from(&GraphPace::default()));
        let counted = GraphPace { batch_counted: true, ..limit(40) };
        assert!(counted.differs_from(&limit(40)) && limit(40).differs_from(&counted), "batches found counted");
    }

    #[test]
    fn roots_of_patterns() {
        assert_eq!(root_domain("{slug}.secours-amp.fr").as_deref(), Some("secours-amp.fr"));
        assert_eq!(root_domain("{slug}-{insee}.secours.ampmetropole.fr").as_deref(), Some("secours.ampmetropole.fr"));
        assert_eq!(root_domain("secours-{slug}.fr"), None);
        assert_eq!(root_domain("{slug}.fr"), None);
        assert_eq!(root_domain("{slug}.{insee}.fr"), None);
    }

    #[test]
    fn backup_domains() {
        assert_eq!(
            backup_domain("{slug}.secours-amp.fr", "Saint-Rémy-de-Provence", "13100").unwrap(),
            "saint-remy-de-provence.secours-amp.fr"
        );
        assert_eq!(backup_domain("c{insee}.secours-amp.fr", "Aubagne", "13005").unwrap(), "c13005.secours-amp.fr");
        assert!(backup_domain("{slug}", "Aubagne", "13005").is_err());
        assert!(backup_domain("{slug}.x.fr", "日本", "13005").is_err());
        assert!(backup_domain("{slugs}.x.fr", "A", "1").is_err());
    }

    fn rec(name: &str, kind: &str, value: &str, optional: bool) -> DnsRecord {
        DnsRecord {
            name: name.into(),
            kind: kind.into(),
            ttl: 3600,
            value: value.into(),
            service: "x".into(),
            optional,
        }
    }

    #[test]
    fn a_kit_zone_is_the_verification_txt_then_the_services_and_dmarc() {
        let verification = [rec("a.fr", "TXT", "MS=ms1", false), rec("a.fr", "MX", "32767 ms1.msv1.invalid.", false)];
        let services = [
            rec("a.fr", "MX", "0 a-fr.mail.protection.outlook.com.", false),
            rec("enterpriseregistration.a.fr", "CNAME", "enterpriseregistration.windows.net.", true),
        ];
        let policy = ZonePolicy { dmarc: Some(("reject".into(), None)), optional: false };
        let before = kit_records("a.fr", &verification, None, &policy);
        assert_eq!(before, vec![verification[0].clone()], "no MX alternative, no DMARC before the services");
        let after = kit_records("a.fr", &verification, Some(&services), &policy);
        let names: Vec<_> = after.iter().map(|r| (r.name.as_str(), r.kind.as_str())).collect();
        assert_eq!(names, [("a.fr", "TXT"), ("a.fr", "MX"), ("_dmarc.a.fr", "TXT")], "optional left out");
        let all = kit_records("a.fr", &verification, Some(&services), &ZonePolicy { dmarc: None, optional: true });
        assert!(
            all.iter().any(|r| r.name == "enterpriseregistration.a.fr")
                && !all.iter().any(|r| r.name.starts_with("_dmarc"))
        );
        // An older stored record (no `optional` field) reads as required.
        let old: DnsRecord =
            serde_json::from_str(r#"{"name":"a.fr","kind":"TXT","ttl":1,"value":"v","service":"Email"}"#).unwrap();
        assert!(!old.optional);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
