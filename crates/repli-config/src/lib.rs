//! replid's configuration: a TOML file with a version field, unknown keys refused, and an
//! environment overlay (`REPLI_<SECTION>__<KEY>`) applied before validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use repli_core::calendar::CalendarSpec;
use repli_core::sla::DEFAULT_BUSINESS_HOURS;
use serde::{Deserialize, Serialize};

/// The example configuration, printed by `replid config example`.
pub const EXAMPLE: &str = include_str!("../replid.example.toml");
/// The only configuration version this build understands.
pub const CONFIG_VERSION: u32 = 1;
/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "REPLI_";
/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why [`read_capped`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CappedRead {
    #[error("larger than the limit")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A secret the configuration names by file, or else the environment variable `env`: the
/// file's text without its trailing newline; None when neither is set. Secrets never sit in
/// the configuration itself.
pub fn secret(file: Option<&Path>, env: &str) -> Result<Option<String>, String> {
    match file {
        Some(p) => std::fs::read_to_string(p)
            .map(|s| Some(s.trim_end().to_owned()))
            .map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => Ok(std::env::var(env).ok().filter(|v| !v.is_empty())),
    }
}

/// Reads a UTF-8 text file of at most `max` bytes. The size is checked while reading, not
/// from the file's metadata: `/dev/zero` or a pipe report a length of 0 and never end.
pub fn read_capped(path: &Path, max: u64) -> Result<String, CappedRead> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(CappedRead::TooLarge);
    }
    String::from_utf8(bytes).map_err(|e| CappedRead::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{origin}: unsupported configuration version {found} (this replid reads version {CONFIG_VERSION})")]
    Version { origin: String, found: u32 },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub reference: ReferenceConfig,
    #[serde(default)]
    pub sla: SlaConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub inventory: InventoryConfig,
    #[serde(default)]
    pub documents: DocumentsConfig,
    #[serde(default)]
    pub m365: M365Config,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub exercise: ExerciseConfig,
    #[serde(default)]
    pub backup: BackupConfig,
    #[serde(default)]
    pub accounts: AccountsConfig,
}

/// Whether web sign-ins of ops, admin and auditor accounts need a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondFactor {
    /// A TOTP code (RFC 6238) after the password; the account enrols at its first sign-in.
    #[default]
    Required,
    /// The password alone. Only for the test kit and a throw-away demo on loopback: docs say so.
    Off,
}

/// Web accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// `required` (default) or `off`. A DGS never uses TOTP (its sign-in does not change).
    pub second_factor: SecondFactor,
    /// The key sealing TOTP secrets in the database (ChaCha20-Poly1305; created, mode 0600,
    /// if missing). Unset: next to the database, as `<database>.totp-key`.
    pub totp_key_file: Option<PathBuf>,
}

/// Where exercises (drills) provision Microsoft 365: never the real tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExerciseTarget {
    /// A Graph simulator started with replid, apart from the one `m365.mode = "simulator"` uses.
    #[default]
    Simulator,
    /// A separate exercise tenant, configured in `[exercise.m365]` like `[m365]`.
    Tenant,
}

/// Exercises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExerciseConfig {
    pub target: ExerciseTarget,
    /// The exercise tenant (`target = "tenant"`): the keys of `[m365]`.
    pub m365: Option<M365Config>,
}

/// Where Microsoft 365 is provisioned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum M365Mode {
    /// An in-process Graph simulator (SIMULATION: no tenant is touched).
    #[default]
    Simulator,
    /// Microsoft Graph at `graph_url` (or an external simulator on loopback).
    Graph,
}

/// How the crisis zone's DNS records get published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsMode {
    /// Through the simulator's zone API (`dns_url`, or the embedded simulator).
    #[default]
    Simulator,
    /// Ops publish the written zone fragment at the registrar: a manual task.
    Manual,
    /// RFC 2136 dynamic updates signed with TSIG to the zone's primary server (`[dns]`).
    Rfc2136,
}

/// The métropole's authoritative DNS for `dns = "rfc2136"`, and the DMARC policy published
/// with every crisis zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// The zone's primary server, `address:port`, where updates go; unset: the primary the
    /// zone's SOA names (asked of `servers`, or else of the system's resolvers).
    pub primary: Option<SocketAddr>,
    /// The zone the crisis domains live in (the root of `m365.domain_pattern` or above it).
    pub zone: String,
    /// The TSIG key's name, as the servers know it.
    pub key_name: String,
    /// A file holding the key: its base64 secret, or BIND's `key { … secret "…"; }` as
    /// `tsig-keygen` writes it. Or the REPLI_DNS_TSIG_SECRET environment variable.
    pub key_file: Option<PathBuf>,
    /// `hmac-sha256` or `hmac-sha512`.
    pub algorithm: String,
    /// Every authoritative server to check after an update (`address:port`); when empty,
    /// the zone's NS records (port 53) and the primary.
    pub servers: Vec<SocketAddr>,
    /// How long every server may take to serve an update.
    pub propagation_timeout_seconds: u32,
    /// `quarantine`, `reject` or `none`; `""` publishes no DMARC record.
    pub dmarc_policy: String,
    /// Where DMARC aggregate reports go (an address), if anywhere.
    pub dmarc_rua: Option<String>,
    /// Also publish the service records Graph marks `isOptional` (Intune's
    /// `enterpriseregistration`/`enterpriseenrollment`, …); `repli dns check` expects them then.
    pub optional_records: bool,
    /// How long a DNS step keeps retrying an update the servers do not take (primary
    /// unreachable, a server not serving it yet), from its first attempt, before handing the
    /// fragment to a person as a manual task.
    pub retry_budget_minutes: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            primary: None,
            zone: String::new(),
            key_name: String::new(),
            key_file: None,
            algorithm: "hmac-sha256".into(),
            servers: Vec::new(),
            propagation_timeout_seconds: 300,
            dmarc_policy: "quarantine".into(),
            dmarc_rua: None,
            optional_records: false,
            retry_budget_minutes: 15,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct M365Config {
    pub mode: M365Mode,
    pub graph_url: String,
    pub login_url: String,
    pub tenant_id: String,
    pub client_id: String,
    /// A file holding the client secret (or set REPLI_GRAPH_CLIENT_SECRET). Never the secret.
    pub client_secret_file: Option<PathBuf>,
    /// When the client secret expires (`YYYY-MM-DD`, as Entra ID shows it), for the preflight.
    pub secret_expires_on: Option<String>,
    /// Certificate sign-in instead of a secret: the certificate uploaded to the app
    /// registration (PEM) and its RSA private key (PEM, file readable by replid only).
    pub client_certificate_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Licence SKUs every account gets, by part number (suite and Teams apart in the EEA).
    pub sku_part_numbers: Vec<String>,
    /// Object id of an account the Teams application access policy covers: the preflight's
    /// canary meeting is made in its name.
    pub preflight_organizer: Option<String>,
    /// The administrative unit (object id) the User Administrator role is scoped to, if it is:
    /// the preflight checks the assignment there, a refused reset names it.
    pub admin_unit: Option<String>,
    /// Agents of the largest kit the tenant must be able to license at once (preflight).
    pub largest_kit: u32,
    /// The backup domain of a commune: `{slug}` (commune name folded) and `{insee}` are replaced.
    pub domain_pattern: String,
    pub dns: DnsMode,
    /// Zone API base URL for `dns = "simulator"` with `mode = "graph"` (an external simulator).
    pub dns_url: Option<String>,
    /// Time budget of one Graph operation, retries included.
    pub budget_seconds: u32,
    /// Channels of the crisis Team besides « General ».
    pub channels: Vec<String>,
}

impl Default for M365Config {
    fn default() -> Self {
        Self {
            mode: M365Mode::Simulator,
            graph_url: "https://graph.microsoft.com/v1.0".into(),
            login_url: "https://login.microsoftonline.com".into(),
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret_file: None,
            secret_expires_on: None,
            client_certificate_file: None,
            client_key_file: None,
            sku_part_numbers: vec![
                "Microsoft_365_Business_Standard_EEA_(no_Teams)".into(),
                "Microsoft_Teams_EEA_New".into(),
            ],
            preflight_organizer: None,
            admin_unit: None,
            largest_kit: 50,
            domain_pattern: "{slug}.secours-amp.fr".into(),
            dns: DnsMode::Simulator,
            dns_url: None,
            budget_seconds: 300,
            channels: vec!["Cellule de crise".into(), "Services".into()],
        }
    }
}

impl M365Config {
    /// What ops pages say in their banner when Microsoft 365 or the DNS is simulated (the
    /// embedded Graph simulator, the simulator's zone API), None when both are real.
    pub fn simulation_fr(&self) -> Option<&'static str> {
        match (self.mode == M365Mode::Simulator, self.dns == DnsMode::Simulator) {
            (true, true) => Some(
                "SIMULATION — Microsoft 365 et le DNS sont simulés : aucun compte, aucune équipe, aucune visio \
                 ni aucun enregistrement DNS réel n'est créé.",
            ),
            (true, false) => Some(
                "SIMULATION — Microsoft 365 est simulé : aucun compte, aucune équipe ni aucune visio réelle n'est \
                 créé dans le locataire.",
            ),
            (false, true) => {
                Some("SIMULATION — Le DNS est simulé : aucun enregistrement n'est publié dans la zone réelle.")
            }
            (false, false) => None,
        }
    }
}

impl std::fmt::Debug for M365Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M365Config")
            .field("mode", &self.mode)
            .field("graph_url", &self.graph_url)
            .field("login_url", &self.login_url)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file.as_ref().map(|_| "<redacted path>"))
            .field("secret_expires_on", &self.secret_expires_on)
            .field("client_certificate_file", &self.client_certificate_file)
            .field("client_key_file", &self.client_key_file.as_ref().map(|_| "<redacted path>"))
            .field("sku_part_numbers", &self.sku_part_numbers)
            .field("preflight_organizer", &self.preflight_organizer)
            .field("admin_unit", &self.admin_unit)
            .field("largest_kit", &self.largest_kit)
            .field("domain_pattern", &self.domain_pattern)
            .field("dns", &self.dns)
            .field("dns_url", &self.dns_url)
            .field("budget_seconds", &self.budget_seconds)
            .field("channels", &self.channels)
            .finish()
    }
}

/// The playbook engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// A folder with `activation.toml` and `handback.toml` replacing the built-in playbooks.
    pub playbooks_dir: Option<PathBuf>,
    /// Steps running at once, across crises.
    pub concurrency: u32,
    /// A running step's lease: after a crash, its step runs again once the lease expires.
    pub lease_seconds: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { playbooks_dir: None, concurrency: 8, lease_seconds: 30 }
    }
}

/// The procedures pack: templates and the contacts printed in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    /// A folder whose `NAME.hbs` files replace the built-in templates of the same name.
    pub templates_dir: Option<PathBuf>,
    pub astreinte_phone: String,
    pub astreinte_email: String,
    pub csirt_phone: String,
}

impl DocumentsConfig {
    /// The contacts still at their placeholder, in French (« le numéro d'astreinte »…): they
    /// are printed in every DGS's dossier and must be set before a crisis.
    pub fn placeholders(&self) -> Vec<&'static str> {
        let d = DocumentsConfig::default();
        let mut out = Vec::new();
        if self.astreinte_phone.trim().is_empty() || self.astreinte_phone == d.astreinte_phone {
            out.push("le numéro d'astreinte");
        }
        if self.astreinte_email.trim().is_empty() || self.astreinte_email == d.astreinte_email {
            out.push("l'adresse d'astreinte");
        }
        if self.csirt_phone.trim().is_empty() || self.csirt_phone == d.csirt_phone {
            out.push("le numéro du CSIRT régional");
        }
        out
    }

    /// The astreinte's phone number, once it is set.
    pub fn astreinte_phone(&self) -> Option<&str> {
        let set = !self.astreinte_phone.trim().is_empty()
            && self.astreinte_phone != DocumentsConfig::default().astreinte_phone;
        set.then_some(self.astreinte_phone.as_str())
    }

    /// The astreinte's address, once it is set.
    pub fn astreinte_email(&self) -> Option<&str> {
        let set = !self.astreinte_email.trim().is_empty()
            && self.astreinte_email != DocumentsConfig::default().astreinte_email;
        set.then_some(self.astreinte_email.as_str())
    }

    /// The astreinte's contacts as a text names them (« 04 91 00 00 00 ou astreinte@… »),
    /// from whichever are set; None while both are at their placeholder. The one wording of
    /// the contacts, for the DGS's messages, the playbooks' `{{astreinte}}` and page footers.
    pub fn astreinte_contacts(&self) -> Option<String> {
        match (self.astreinte_phone(), self.astreinte_email()) {
            (Some(p), Some(e)) => Some(format!("{} ou {e}", repli_core::fr::phone(p))),
            (Some(p), None) => Some(repli_core::fr::phone(p)),
            (None, Some(e)) => Some(e.to_owned()),
            (None, None) => None,
        }
    }
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        Self {
            templates_dir: None,
            astreinte_phone: "numéro d'astreinte à configurer".into(),
            astreinte_email: "adresse d'astreinte à configurer".into(),
            csirt_phone: "Urgence Cyber Région Sud — numéro à configurer".into(),
        }
    }
}

/// Who is served first when stock is short.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// In the order the requests came.
    #[default]
    FirstCome,
    /// Larger communes first.
    Population,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Days after a crisis ends before its contact details are erased (RGPD minimisation).
    pub contact_retention_days: u32,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { contact_retention_days: 90 }
    }
}

/// Scheduled snapshots, taken by the daemon itself (docs/OPERATIONS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The folder scheduled snapshots go to, one sub-folder each (`repli-YYYYMMDDTHHMMSSZ`).
    /// Unset: no scheduled snapshot.
    pub destination: Option<PathBuf>,
    /// Minutes between two scheduled snapshots (the first one at start).
    pub interval_minutes: u32,
    /// How many scheduled snapshots are kept in `destination`; older ones are removed.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self { destination: None, interval_minutes: 60, keep: 48 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The Ed25519 checkpoint signing key (created, mode 0600, if missing). Unset: next to
    /// the database, as `<database>.audit-key`.
    pub key_file: Option<PathBuf>,
    /// Sign a checkpoint after this many entries…
    pub checkpoint_every: u32,
    /// …and at least this often while entries keep coming.
    pub checkpoint_minutes: u32,
    /// The audit public keys this host trusts, pinned by the operator: each a public key (64
    /// hex digits) or its fingerprint (`SHA256:` and 32 hex digits, as `repli audit key`
    /// shows). Verification and restore use these, never the key named inside the data they
    /// check. Empty: the key of `key_file` is trusted (it is this host's own).
    pub trusted_keys: Vec<String>,
    /// Set by `replid run --accept-audit-break REASON`, never from the file: start even if
    /// the audit chain does not verify, recording the decision, who took it and why in the log.
    #[serde(skip)]
    pub accept_break: Option<AcceptBreak>,
}

/// An operator's decision to start over an audit chain that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcceptBreak {
    /// The entry the verification failed at, as replid logged it: the decision covers that
    /// failure only (a flag left in a unit file does not accept the next one).
    pub seq: i64,
    pub reason: String,
    /// The local account that took it.
    pub operator: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            checkpoint_every: 100,
            checkpoint_minutes: 10,
            trusted_keys: Vec::new(),
            accept_break: None,
        }
    }
}

impl Config {
    /// The pinned audit keys (`audit.trusted_keys`), parsed (validation refused bad ones).
    pub fn trusted_audit_keys(&self) -> Vec<repli_core::audit::KeyPin> {
        self.audit.trusted_keys.iter().filter_map(|k| repli_core::audit::KeyPin::parse(k).ok()).collect()
    }

    /// Where the key sealing TOTP secrets lives.
    pub fn totp_key_path(&self) -> PathBuf {
        self.accounts.totp_key_file.clone().unwrap_or_else(|| {
            let mut name = self.database.path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
            name.push(".totp-key");
            self.database.path.with_file_name(name)
        })
    }

    /// Where the audit signing key lives.
    pub fn audit_key_path(&self) -> PathBuf {
        self.audit.key_file.clone().unwrap_or_else(|| {
            let mut name = self.database.path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
            name.push(".audit-key");
            self.database.path.with_file_name(name)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain and key (PEM). Without it, plain HTTP: keep
    /// replid on loopback, or behind a TLS reverse proxy.
    pub tls: Option<TlsConfig>,
    /// The address people reach replid at (`https://repli.ampmetropole.fr`), for the links
    /// replid writes (one-time password links). Default: the address the admin's browser used.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8640)), tls: None, public_url: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub path: PathBuf,
    /// Free space (MiB) the database's filesystem must keep: below it replid says so at
    /// start, and `/readyz` is not ready until space returns.
    pub min_free_mb: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("repli.db"), min_free_mb: 64 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    pub communes: Option<PathBuf>,
    pub conventions: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    pub business_hours: u32,
    pub calendar: CalendarSpec,
    pub forecast: ForecastConfig,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            business_hours: DEFAULT_BUSINESS_HOURS,
            calendar: CalendarSpec::default(),
            forecast: ForecastConfig::default(),
        }
    }
}

/// Estimated business time of the work left before the kit is ready, for the risk forecast,
/// until the crisis is activated (then the activation playbook's step estimates are used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// From the request to the activation.
    pub activation_minutes: u32,
    /// From the activation to a ready kit.
    pub preparation_minutes: u32,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self { activation_minutes: 60, preparation_minutes: 8 * 60 }
    }
}

/// Where notifications to ops go. The commune's mail is down, so nothing here relies on it.
/// A notification channel (the one type the configuration, the queue and delivery share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A WARN line in replid's log (the default: always works, reaches nobody by itself).
    Log,
    /// `notify.webhook_url`.
    Webhook,
    /// `[notify.smtp]`.
    Smtp,
    /// `[notify.sms]`: an HTTP SMS gateway.
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Self::Log, Self::Webhook, Self::Smtp, Self::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Webhook => "webhook",
            Self::Smtp => "smtp",
            Self::Sms => "sms",
        }
    }

    /// A channel as stored in the notifications queue.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Percentages of the SLA's business time used at which ops are warned, once each.
    pub thresholds: Vec<u32>,
    /// Where notifications go: `log`, `webhook` and/or `smtp`.
    pub channels: Vec<Channel>,
    /// Generic JSON webhook (fits SMS gateways): POST {"subject", "body", "crisis", "key"}.
    pub webhook_url: Option<String>,
    /// Delivery attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// The mail relay: to ops (`to`), and to the commune's out-of-band address (never its
    /// own mail, which is down).
    pub smtp: Option<SmtpConfig>,
    /// The SMS gateway: to the commune's out-of-band phone, and to ops (`to`) when `sms` is
    /// among `channels`.
    pub sms: Option<SmsConfig>,
    /// The auditors' addresses (mail, through `[notify.smtp]`) and numbers (SMS, through
    /// `[notify.sms]`): each transition reaches them with the signed audit head.
    pub auditors: Vec<String>,
    /// Who is told what, and when.
    pub plan: NotifyPlan,
}

/// A moment of a crisis someone is told about ([`NotifyPlan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanEvent {
    /// The request was recorded: its reference and what happens next.
    Requested,
    /// Ops decided the activation.
    Activated,
    /// The kit's accounts exist: how to collect the credential sheets.
    Accounts,
    /// The crisis visio's link.
    Visio,
    /// The equipment is ready: where and when it is delivered.
    Equipment,
    /// The SLA forecast passes the due instant.
    SlaAtRisk,
    /// The kit is ready (the activation playbook's `announce` step also says so).
    Ready,
    /// The kit was handed over.
    Delivered,
    /// The hand-back started.
    Handback,
    /// The crisis is closed (rejected, cancelled): the record, the PV.
    Closed,
    /// A playbook step failed for good.
    StepFailed,
    /// A manual task waits for someone.
    ManualTask,
    /// The DGS wrote in the main courante.
    DgsMessage,
    /// Any change of state (auditors: with the signed audit head).
    Transition,
}

impl PlanEvent {
    pub const ALL: [PlanEvent; 14] = [
        Self::Requested,
        Self::Activated,
        Self::Accounts,
        Self::Visio,
        Self::Equipment,
        Self::SlaAtRisk,
        Self::Ready,
        Self::Delivered,
        Self::Handback,
        Self::Closed,
        Self::StepFailed,
        Self::ManualTask,
        Self::DgsMessage,
        Self::Transition,
    ];
}

/// The notification plan: for each audience, the moments it is told about. The defaults tell
/// the DGS every step of their kit, ops what needs them, auditors every transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyPlan {
    /// The commune's DGS, on the out-of-band phone (SMS) and address (mail).
    pub dgs: Vec<PlanEvent>,
    /// Ops on call, on `notify.channels`.
    pub ops: Vec<PlanEvent>,
    /// `notify.auditors`.
    pub auditors: Vec<PlanEvent>,
}

impl NotifyPlan {
    pub fn dgs_told(&self, e: PlanEvent) -> bool {
        self.dgs.contains(&e)
    }
    pub fn ops_told(&self, e: PlanEvent) -> bool {
        self.ops.contains(&e)
    }
    pub fn auditors_told(&self, e: PlanEvent) -> bool {
        self.auditors.contains(&e)
    }
}

impl Default for NotifyPlan {
    fn default() -> Self {
        use PlanEvent::*;
        Self {
            // `ready` is said by the activation playbook's `announce` step (a playbook may
            // word it); listing it here too would say it twice.
            dgs: vec![Requested, Activated, Accounts, Visio, Equipment, SlaAtRisk, Delivered, Handback, Closed],
            ops: vec![Requested, StepFailed, ManualTask, SlaAtRisk, DgsMessage],
            auditors: vec![Transition],
        }
    }
}

/// An HTTP SMS gateway taking a generic JSON message:
/// `POST url` with `{"to": "+33612345678", "from": sender, "text": "…"}` and, when a token is
/// configured, `Authorization: Bearer <token>`; any 2xx answer means accepted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    pub url: String,
    /// A file holding the gateway's token (or set REPLI_SMS_TOKEN). Never the token itself.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The sender shown on the phone: 3 to 11 letters or digits.
    #[serde(default = "default_sms_sender")]
    pub sender: String,
    /// Ops' numbers, for the `sms` channel of ops notifications.
    #[serde(default)]
    pub to: Vec<String>,
}

fn default_sms_sender() -> String {
    "AMP Repli".into()
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a key in its query.
        f.debug_struct("SmsConfig")
            .field("url", &"<redacted>")
            .field("token_file", &self.token_file.as_ref().map(|_| "<redacted path>"))
            .field("sender", &self.sender)
            .field("to", &self.to.len())
            .finish()
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            thresholds: vec![50, 75, 90, 100],
            channels: vec![Channel::Log],
            webhook_url: None,
            max_attempts: 8,
            smtp: None,
            sms: None,
            auditors: Vec::new(),
            plan: NotifyPlan::default(),
        }
    }
}

/// How a mail relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// STARTTLS on the submission port (587).
    Starttls,
    /// Implicit TLS (465).
    Tls,
    /// No TLS: only for a relay on loopback.
    None,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_smtp_security")]
    pub security: SmtpSecurity,
    pub from: String,
    /// Ops' addresses (needed when `smtp` is among `channels`).
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (or set REPLI_SMTP_PASSWORD). Never the password itself.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_smtp_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("username", &self.username)
            .field("password_file", &self.password_file.as_ref().map(|_| "<redacted path>"))
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            reference: ReferenceConfig::default(),
            sla: SlaConfig::default(),
            audit: AuditConfig::default(),
            privacy: PrivacyConfig::default(),
            notify: NotifyConfig::default(),
            inventory: InventoryConfig::default(),
            documents: DocumentsConfig::default(),
            m365: M365Config::default(),
            engine: EngineConfig::default(),
            dns: DnsConfig::default(),
            exercise: ExerciseConfig::default(),
            backup: BackupConfig::default(),
            accounts: AccountsConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path` (or starts from the defaults), applies the environment overlay from `env`
    /// and validates the result.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = read_capped(p, MAX_CONFIG_BYTES).map_err(|e| match e {
                    CappedRead::TooLarge => ConfigError::TooLarge { path: p.to_owned() },
                    CappedRead::Io(source) => ConfigError::Read { path: p.to_owned(), source },
                })?;
                let origin = p.display().to_string();
                let table = text
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid { origin: origin.clone(), message: e.to_string() })?;
                (table, origin)
            }
            None => {
                let mut t = toml::Table::new();
                t.insert("version".into(), toml::Value::Integer(i64::from(CONFIG_VERSION)));
                (t, "built-in defaults".to_owned())
            }
        };
        let mut overridden = Vec::new();
        for (name, value) in env {
            if let Some(keys) = name.strip_prefix(ENV_PREFIX).filter(|k| k.contains("__")) {
                overlay(&mut table, keys, &value)
                    .map_err(|message| ConfigError::Env { name: name.clone(), message })?;
                overridden.push(name);
            }
        }
        let origin = if overridden.is_empty() { origin } else { format!("{origin} + {}", overridden.join(", ")) };
        let found = table.get("version").and_then(toml::Value::as_integer);
        match found {
            Some(v) if v == i64::from(CONFIG_VERSION) => {}
            Some(v) => {
                return Err(ConfigError::Version { origin, found: u32::try_from(v).unwrap_or(u32::MAX) });
            }
            None => {
                return Err(ConfigError::Invalid { origin, message: "missing `version = 1`".into() });
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid { origin: origin.clone(), message: e.to_string() })?;
        config.validate().map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        repli_core::BusinessCalendar::from_spec(&self.sla.calendar).map_err(|e| format!("sla.calendar: {e}"))?;
        if let Some(u) = &self.server.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err("server.public_url must be an http(s) URL".into());
        }
        if !(1..=1000).contains(&self.sla.business_hours) {
            return Err("sla.business_hours must be between 1 and 1000".into());
        }
        match (self.exercise.target, &self.exercise.m365) {
            (ExerciseTarget::Simulator, _) => {}
            (ExerciseTarget::Tenant, None) => {
                return Err("exercise.target = \"tenant\": configure the exercise tenant in [exercise.m365]".into());
            }
            (ExerciseTarget::Tenant, Some(x)) => {
                if x.mode != M365Mode::Graph {
                    return Err("exercise.m365.mode must be \"graph\" (target = \"simulator\" is the simulator)".into());
                }
                if self.m365.mode == M365Mode::Graph && x.tenant_id == self.m365.tenant_id {
                    return Err("exercise.m365.tenant_id is the real tenant's: an exercise needs its own tenant".into());
                }
                if x.dns == DnsMode::Rfc2136 {
                    return Err(
                        "exercise.m365.dns cannot be \"rfc2136\": an exercise never publishes to the real zone".into(),
                    );
                }
            }
        }
        for c in &self.notify.channels {
            match c {
                Channel::Log => {}
                Channel::Webhook
                    if self
                        .notify
                        .webhook_url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://")) => {}
                Channel::Webhook => {
                    return Err("notify.channels has webhook: set notify.webhook_url to an http(s) URL".into());
                }
                Channel::Smtp => {
                    let Some(s) = &self.notify.smtp else {
                        return Err("notify.channels has smtp: configure [notify.smtp]".into());
                    };
                    if s.host.trim().is_empty() || s.to.is_empty() {
                        return Err("notify.smtp needs a host and at least one recipient".into());
                    }
                    let loopback = matches!(s.host.as_str(), "localhost" | "127.0.0.1" | "::1");
                    if s.security == SmtpSecurity::None && !loopback {
                        return Err("notify.smtp.security = \"none\" is only allowed for a relay on loopback".into());
                    }
                }
                Channel::Sms => {
                    if self.notify.sms.as_ref().is_none_or(|s| s.to.is_empty()) {
                        return Err("notify.channels has sms: configure [notify.sms] with ops' numbers in `to`".into());
                    }
                }
            }
        }
        if let Some(s) = &self.notify.sms {
            let loopback = s.url.strip_prefix("http://").is_some_and(|rest| {
                rest.starts_with("[::1]") || matches!(rest.split(['/', ':']).next(), Some("localhost" | "127.0.0.1"))
            });
            if !(s.url.starts_with("https://") || loopback) {
                return Err("notify.sms.url must be an https URL (plain http only for a gateway on loopback)".into());
            }
            let n = s.sender.chars().count();
            if !(3..=11).contains(&n) || !s.sender.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
                return Err("notify.sms.sender must be 3 to 11 letters, digits or spaces".into());
            }
        }
        for a in &self.notify.auditors {
            if a.contains('@') {
                if repli_core::text::email("notify.auditors", a).is_err() {
                    return Err(format!("notify.auditors: {a:?} is not a valid address"));
                }
                if self.notify.smtp.is_none() {
                    return Err("notify.auditors has an address: configure [notify.smtp]".into());
                }
            } else if repli_core::text::phone("notify.auditors", a).is_err() {
                return Err(format!("notify.auditors: {a:?} is neither an address nor a phone number"));
            } else if self.notify.sms.is_none() {
                return Err("notify.auditors has a phone number: configure [notify.sms]".into());
            }
        }
        if self.notify.thresholds.iter().any(|t| !(1..=100).contains(t))
            || !(1..=50).contains(&self.notify.max_attempts)
        {
            return Err("notify.thresholds must be percentages from 1 to 100, notify.max_attempts 1 to 50".into());
        }
        if !(1..=3650).contains(&self.privacy.contact_retention_days) {
            return Err("privacy.contact_retention_days must be between 1 and 3650".into());
        }
        if !(1..=1_000_000).contains(&self.audit.checkpoint_every)
            || !(1..=1440).contains(&self.audit.checkpoint_minutes)
        {
            return Err("audit.checkpoint_every must be 1 to 1000000 and audit.checkpoint_minutes 1 to 1440".into());
        }
        if self.database.min_free_mb > 1_048_576 {
            return Err("database.min_free_mb must be at most 1048576 (1 TiB)".into());
        }
        if self.audit.trusted_keys.len() > 16 {
            return Err("audit.trusted_keys holds at most 16 keys".into());
        }
        for key in &self.audit.trusted_keys {
            repli_core::audit::KeyPin::parse(key).map_err(|e| format!("audit.trusted_keys: {e}"))?;
        }
        if !(5..=10_080).contains(&self.backup.interval_minutes) || !(1..=10_000).contains(&self.backup.keep) {
            return Err("backup.interval_minutes must be 5 to 10080, backup.keep 1 to 10000".into());
        }
        if self.backup.destination.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err("backup.destination is empty: remove it or name a folder".into());
        }
        let m = &self.m365;
        repli_core::m365::backup_domain(&m.domain_pattern, "Aix-en-Provence", "13001")
            .map_err(|e| format!("m365.domain_pattern: {e}"))?;
        if m.mode == M365Mode::Graph && (m.tenant_id.trim().is_empty() || m.client_id.trim().is_empty()) {
            return Err("m365.mode = \"graph\" needs m365.tenant_id and m365.client_id (and the secret in client_secret_file or REPLI_GRAPH_CLIENT_SECRET)".into());
        }
        if m.mode == M365Mode::Graph && m.dns == DnsMode::Simulator && m.dns_url.is_none() {
            return Err(
                "m365.dns = \"simulator\" with mode = \"graph\" needs m365.dns_url (or use dns = \"manual\")".into()
            );
        }
        if m.client_certificate_file.is_some() != m.client_key_file.is_some() {
            return Err("m365.client_certificate_file and m365.client_key_file go together".into());
        }
        if m.sku_part_numbers.is_empty()
            || m.sku_part_numbers.len() > 5
            || m.sku_part_numbers.iter().any(|p| p.trim().is_empty() || p.len() > 100)
        {
            return Err("m365.sku_part_numbers needs 1 to 5 part numbers".into());
        }
        if !(1..=500).contains(&m.largest_kit) {
            return Err("m365.largest_kit must be 1 to 500 agents".into());
        }
        if let Some(d) = &m.secret_expires_on
            && d.parse::<jiff::civil::Date>().is_err()
        {
            return Err(format!("m365.secret_expires_on must be a date YYYY-MM-DD, got {d:?}"));
        }
        // Object ids, as Entra ID shows them (a display name or a `/administrativeUnits/…` path
        // would never match what Graph answers, and the preflight's advice would mislead).
        let object_id = |v: &str| {
            let groups: Vec<&str> = v.split('-').collect();
            groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        };
        for (key, value) in [("m365.admin_unit", &m.admin_unit), ("m365.preflight_organizer", &m.preflight_organizer)] {
            if let Some(v) = value
                && !object_id(v)
            {
                return Err(format!(
                    "{key} must be an object id (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, Entra ID › its overview page), got {v:?}"
                ));
            }
        }
        if !(5..=86_400).contains(&m.budget_seconds) || m.channels.len() > 20 {
            return Err("m365.budget_seconds must be 5 to 86400, and at most 20 channels".into());
        }
        let d = &self.dns;
        if !["", "none", "quarantine", "reject"].contains(&d.dmarc_policy.as_str()) {
            return Err("dns.dmarc_policy must be \"none\", \"quarantine\", \"reject\" or \"\" (no record)".into());
        }
        if d.dmarc_rua.as_deref().is_some_and(|a| !a.contains('@') || a.len() > 200 || a.contains([';', ' ', ','])) {
            return Err("dns.dmarc_rua must be one e-mail address".into());
        }
        if m.dns == DnsMode::Rfc2136 {
            if d.zone.trim().is_empty() || d.key_name.trim().is_empty() {
                return Err("m365.dns = \"rfc2136\" needs dns.zone and dns.key_name (and the key in dns.key_file or REPLI_DNS_TSIG_SECRET; dns.primary, or the zone's SOA found through dns.servers or the system's resolvers)".into());
            }
            let zone = d.zone.trim_end_matches('.').to_ascii_lowercase();
            let root = repli_core::m365::root_domain(&m.domain_pattern).unwrap_or_default();
            if !(root == zone || root.ends_with(&format!(".{zone}"))) {
                return Err(format!("m365.domain_pattern ({}) must be inside dns.zone ({zone})", m.domain_pattern));
            }
            if !["hmac-sha256", "hmac-sha512"].contains(&d.algorithm.as_str()) {
                return Err("dns.algorithm must be hmac-sha256 or hmac-sha512".into());
            }
            if !(5..=86_400).contains(&d.propagation_timeout_seconds) || d.servers.len() > 16 {
                return Err("dns.propagation_timeout_seconds must be 5 to 86400, and at most 16 servers".into());
            }
        }
        if !(1..=64).contains(&self.engine.concurrency) || !(2..=3600).contains(&self.engine.lease_seconds) {
            return Err("engine.concurrency must be 1 to 64 and engine.lease_seconds 2 to 3600".into());
        }
        Ok(())
    }
}

/// Sets `a.b.c` (given as `A__B__C`) in `table`. The value is read as TOML when it parses as a
/// number, boolean or array, and as a string otherwise.
fn overlay(table: &mut toml::Table, keys: &str, value: &str) -> Result<(), String> {
    let path: Vec<String> = keys.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err("empty key segment".into());
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Datetime(_) | toml::Value::Table(_)))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    cur.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulation_banner_names_what_is_simulated() {
        let mut m = M365Config::default();
        assert!(m.simulation_fr().is_some_and(|b| b.contains("Microsoft 365 et le DNS")));
        m.dns = DnsMode::Rfc2136;
        assert!(m.simulation_fr().is_some_and(|b| b.contains("Microsoft 365 est simulé")));
        m.mode = M365Mode::Graph;
        assert_eq!(m.simulation_fr(), None);
        m.dns = DnsMode::Simulator;
        assert!(m.simulation_fr().is_some_and(|b| b.contains("Le DNS est simulé")));
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn pinned_audit_keys_and_the_free_space_minimum_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replid.toml");
        let load = |text: &str| {
            std::fs::write(&path, format!("version = 1\n{text}")).unwrap();
            Config::load(Some(&path), env(&[]))
        };
        let fp = format!("SHA256:{}", "ab".repeat(16));
        let c = load(&format!("[audit]\ntrusted_keys = [\"{fp}\", \"{}\"]\n", "11".repeat(32))).unwrap();
        assert_eq!(c.trusted_audit_keys().len(), 2);
        for bad in ["SHA256:zz", "<script>", "", &"0".repeat(63)] {
            let e = load(&format!("[audit]\ntrusted_keys = [{bad:?}]\n")).unwrap_err().to_string();
            assert!(e.contains("audit.trusted_keys"), "{bad:?}: {e}");
        }
        let many = vec![format!("{fp:?}"); 17].join(", ");
        assert!(load(&format!("[audit]\ntrusted_keys = [{many}]\n")).unwrap_err().to_string().contains("at most 16"));
        assert_eq!(load("[database]\nmin_free_mb = 10\n").unwrap().database.min_free_mb, 10);
        assert!(load("[database]\nmin_free_mb = 99999999\n").unwrap_err().to_string().contains("min_free_mb"));
        assert!(load("[database]\nmin_free_mb = -1\n").is_err());
        // The operator's decision over a broken chain never comes from the file.
        assert!(load("[audit]\naccept_break = \"x\"\n").is_err());
    }

    #[test]
    fn placeholder_contacts_are_named_until_set() {
        let mut d = DocumentsConfig::default();
        assert_eq!(d.placeholders().len(), 3);
        assert_eq!(d.astreinte_phone(), None);
        d.astreinte_phone = "04 91 00 00 00".into();
        d.csirt_phone = "  ".into();
        assert_eq!(d.placeholders(), ["l'adresse d'astreinte", "le numéro du CSIRT régional"]);
        assert_eq!(d.astreinte_phone(), Some("04 91 00 00 00"));
        assert_eq!(d.astreinte_email(), None);
        assert_eq!(d.astreinte_contacts().as_deref(), Some("04 91 00 00 00"));
        d.astreinte_email = "astreinte@metropole.example".into();
        assert_eq!(d.astreinte_contacts().as_deref(), Some("04 91 00 00 00 ou astreinte@metropole.example"));
        d.astreinte_phone = " ".into();
        assert_eq!(d.astreinte_contacts().as_deref(), Some("astreinte@metropole.example"));
    }

    #[test]
    fn example_is_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("replid.toml");
        std::fs::write(&p, EXAMPLE).unwrap();
        assert_eq!(Config::load(Some(&p), env(&[])).unwrap(), Config::default());
        assert_eq!(Config::load(None, env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn environment_overrides_and_is_validated() {
        let c = Config::load(
            None,
            env(&[
                ("REPLI_SERVER__LISTEN", "127.0.0.1:9999"),
                ("REPLI_SLA__BUSINESS_HOURS", "24"),
                ("REPLI_SLA__CALENDAR__WINDOWS", "[\"08:30-12:00\", \"13:30-17:30\"]"),
                ("REPLI_TOKEN", "ignored: not a config key"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.sla.business_hours, 24);
        assert_eq!(c.sla.calendar.windows.len(), 2);
        let e = Config::load(None, env(&[("REPLI_SERVER__LISTNE", "x")])).unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
        let e = Config::load(None, env(&[("REPLI_SLA__CALENDAR__TIME_ZONE", "Mars/Olympus")])).unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn endless_files_are_refused_not_read_forever() {
        let e = Config::load(Some(Path::new("/dev/zero")), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::TooLarge { .. }), "{e}");
        assert!(matches!(read_capped(Path::new("/dev/zero"), 10), Err(CappedRead::TooLarge)));
    }

    #[test]
    fn notification_channels_are_a_closed_list() {
        let c = Config::load(None, env(&[("REPLI_NOTIFY__CHANNELS", "[\"log\"]")])).unwrap();
        assert_eq!(c.notify.channels, [Channel::Log]);
        let e = Config::load(None, env(&[("REPLI_NOTIFY__CHANNELS", "[\"pigeon\"]")])).unwrap_err();
        assert!(e.to_string().contains("pigeon"), "{e}");
        let e = Config::load(None, env(&[("REPLI_NOTIFY__CHANNELS", "[\"webhook\"]")])).unwrap_err();
        assert!(e.to_string().contains("webhook_url"), "{e}");
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn microsoft_365_and_engine_settings_are_checked() {
        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let e = Config::load(None, env(pairs)).unwrap_err().to_string();
            assert!(e.contains(needle), "{pairs:?}: {e}");
        };
        refused(&[("REPLI_M365__MODE", "graph")], "tenant_id");
        refused(&[("REPLI_M365__MODE", "tenant")], "unknown variant");
        refused(&[("REPLI_M365__DOMAIN_PATTERN", "{slug}")], "m365.domain_pattern");
        refused(&[("REPLI_M365__DOMAIN_PATTERN", "<script>.{slug}.fr")], "m365.domain_pattern");
        refused(
            &[("REPLI_M365__MODE", "graph"), ("REPLI_M365__TENANT_ID", "t"), ("REPLI_M365__CLIENT_ID", "c")],
            "dns_url",
        );
        refused(&[("REPLI_M365__BUDGET_SECONDS", "0")], "budget_seconds");
        refused(&[("REPLI_M365__SKU_PART_NUMBERS", "[]")], "sku_part_numbers");
        refused(&[("REPLI_M365__SECRET_EXPIRES_ON", "demain")], "secret_expires_on");
        refused(&[("REPLI_M365__SECRET_EXPIRES_ON", "2027-02-30")], "secret_expires_on");
        refused(&[("REPLI_M365__LARGEST_KIT", "0")], "largest_kit");
        refused(&[("REPLI_M365__ADMIN_UNIT", "Kits de repli")], "m365.admin_unit must be an object id");
        refused(
            &[("REPLI_M365__ADMIN_UNIT", "/administrativeUnits/0b1e7c52-1111-2222-3333-444455556666")],
            "admin_unit",
        );
        refused(&[("REPLI_M365__ADMIN_UNIT", "")], "admin_unit");
        refused(&[("REPLI_M365__PREFLIGHT_ORGANIZER", "orga@secours-amp.fr")], "preflight_organizer");
        let unit = [("REPLI_M365__ADMIN_UNIT", "0b1e7c52-1111-2222-3333-444455556666")];
        assert!(Config::load(None, env(&unit)).unwrap().m365.admin_unit.is_some());
        refused(&[("REPLI_M365__CLIENT_CERTIFICATE_FILE", "/etc/repli/graph.crt")], "go together");
        refused(&[("REPLI_ENGINE__LEASE_SECONDS", "1")], "lease_seconds");
        // RFC 2136: the server, zone and key are required; the kits' domains must be inside the zone.
        refused(&[("REPLI_M365__DNS", "rfc2136")], "dns.zone");
        let rfc = [
            ("REPLI_M365__DNS", "rfc2136"),
            ("REPLI_DNS__PRIMARY", "192.0.2.53:53"),
            ("REPLI_DNS__ZONE", "secours-amp.fr"),
            ("REPLI_DNS__KEY_NAME", "repli"),
        ];
        assert_eq!(Config::load(None, env(&rfc)).unwrap().dns.zone, "secours-amp.fr");
        refused(&[&rfc[..], &[("REPLI_DNS__ZONE", "autre.fr")]].concat(), "inside dns.zone");
        refused(&[&rfc[..], &[("REPLI_DNS__ALGORITHM", "hmac-md5")]].concat(), "dns.algorithm");
        refused(&[&rfc[..], &[("REPLI_DNS__PRIMARY", "ns1.exemple.fr")]].concat(), "primary");
        refused(&[&rfc[..], &[("REPLI_DNS__PROPAGATION_TIMEOUT_SECONDS", "0")]].concat(), "propagation_timeout");
        refused(&[("REPLI_DNS__DMARC_POLICY", "p=reject")], "dmarc_policy");
        refused(&[("REPLI_DNS__DMARC_RUA", "a@b.fr; p=none")], "dmarc_rua");
        refused(&[("REPLI_ENGINE__CONCURRENCY", "1000")], "concurrency");
        let ok =
            Config::load(None, env(&[("REPLI_M365__DNS", "manual"), ("REPLI_ENGINE__LEASE_SECONDS", "5")])).unwrap();
        assert_eq!((ok.m365.dns, ok.engine.lease_seconds), (DnsMode::Manual, 5));
        // The secret is never in the file, and its file's path is redacted in Debug.
        let mut c = Config::default();
        c.m365.client_secret_file = Some("/etc/repli/secret-path".into());
        assert!(!format!("{c:?}").contains("secret-path"));
    }

    #[test]
    fn bad_files_are_refused_with_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for (text, needle) in [
            ("version = 2\n", "unsupported configuration version 2"),
            ("[server]\nlisten = \"127.0.0.1:1\"\n", "missing `version = 1`"),
            ("version = 1\n[server]\nport = 80\n", "unknown field `port`"),
            ("version = 1\n[sla]\nbusiness_hours = 0\n", "business_hours"),
            ("version = 1\n[server]\npublic_url = \"repli.exemple.fr\"\n", "public_url"),
            ("version = 1\n[notify.sms]\nurl = \"http://sms.exemple.fr/v1\"\n", "loopback"),
            ("version = 1\n[notify.sms]\nurl = \"https://sms.exemple.fr/v1\"\nsender = \"<b>\"\n", "sender"),
            ("version = = 1", "c.toml"),
            ("version = 1\n[exercise]\ntarget = \"tenant\"\n", "[exercise.m365]"),
            ("version = 1\n[exercise]\ntarget = \"tenant\"\n[exercise.m365]\nmode = \"simulator\"\n", "\"graph\""),
            (
                "version = 1\n[m365]\nmode = \"graph\"\ntenant_id = \"t1\"\n[exercise]\ntarget = \"tenant\"\n[exercise.m365]\nmode = \"graph\"\ntenant_id = \"t1\"\n",
                "its own tenant",
            ),
            (
                "version = 1\n[exercise]\ntarget = \"tenant\"\n[exercise.m365]\nmode = \"graph\"\ntenant_id = \"t2\"\ndns = \"rfc2136\"\n",
                "real zone",
            ),
            ("version = 1\n[exercise]\ntarget = \"prod\"\n", "unknown variant"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::load(Some(&p), env(&[])).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let e = Config::load(Some(&dir.path().join("missing.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }
}
