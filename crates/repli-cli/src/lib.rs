//! The `repli` command line, as a library so the end-to-end tests can run its demo.
//!
//! Every command except `demo` and `completions` talks to a replid through
//! [`repli_proto::Client`]: the CLI has no access of its own to the database.

pub mod audit;
mod commands;
mod confirm;
pub mod dns;
pub mod engine;
pub mod inventory;
pub mod m365;
mod output;
pub mod sla;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use repli_core::{CrisisAction, CrisisState, InseeCode};

pub use commands::run;

/// Default daemon address: replid binds to loopback.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8640";

#[derive(Debug, Parser)]
#[command(
    name = "repli",
    version,
    about = "Repli : kit de repli cyber des communes de la Métropole Aix-Marseille-Provence",
    long_about = "Repli orchestrates the fallback kit the Métropole Aix-Marseille-Provence lends a commune hit by a \
                  cyberattack: request, activation, provisioning within 48 business hours, delivery, hand-back."
)]
pub struct Cli {
    /// replid's URL.
    #[arg(long, global = true, env = "REPLI_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// API token (printed once when the user was created).
    #[arg(long, global = true, env = "REPLI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificate of the authority that signed replid's TLS certificate.
    #[arg(long, global = true, env = "REPLI_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The métropole's communes and their loan conventions.
    #[command(subcommand)]
    Communes(CommunesCmd),
    /// Crises: kit requests and their progress.
    #[command(subcommand)]
    Crisis(CrisisCmd),
    /// Hand-back of a kit.
    #[command(subcommand)]
    Handback(HandbackCmd),
    /// The audit log: verify it (online or offline), export it.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Playbooks and document templates.
    #[command(subcommand)]
    Playbook(engine::PlaybookCmd),
    /// Manual steps waiting for ops (the engine's task list).
    #[command(subcommand)]
    Task(engine::TaskCmd),
    /// Retry or skip a step of a crisis's playbook (audited, with a reason).
    #[command(subcommand)]
    Step(engine::StepCmd),
    /// The SLA calendar: public holidays and due instants (offline).
    #[command(subcommand)]
    Sla(sla::SlaCmd),
    /// Accounts (admin): create users, list them, issue tokens, set web passwords.
    #[command(subcommand)]
    User(UserCmd),
    /// API tokens (admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Notifications sent to ops (SLA escalations, legal reminders) and their delivery.
    Notifications(JsonFlag),
    /// The equipment pool.
    #[command(subcommand)]
    Inventory(inventory::InventoryCmd),
    /// Loans of equipment to a commune's agents.
    #[command(subcommand)]
    Loan(inventory::LoanCmd),
    /// The Microsoft 365 tenant: is it ready for an activation?
    #[command(subcommand)]
    M365(m365::M365Cmd),
    /// The crisis zone in DNS: what each authoritative server serves.
    #[command(subcommand)]
    Dns(dns::DnsCmd),
    /// Who the token belongs to.
    Whoami(JsonFlag),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CommunesCmd {
    /// List the communes with their convention status.
    List(JsonFlag),
    /// Show one commune.
    Show {
        insee: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrisisCmd {
    /// Request the kit for a commune.
    Request(RequestArgs),
    /// List crises.
    List {
        #[arg(long)]
        commune: Option<InseeCode>,
        #[arg(long)]
        state: Option<CrisisStateArg>,
        /// Only open crises.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Follow a crisis's playbook live (progress bars per step group) until the kit is ready
    /// or the crisis closes; exits 1 when a step fails.
    Watch { id: String },
    /// Show a crisis with its history.
    Show {
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Activate a requested crisis (ops; the convention is checked).
    Activate {
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Refuse a request (ops).
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Call a kit off; once its provisioning began, what exists is wound down (asks first).
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
        /// Confirm without asking (scripts).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Pause the SLA clock while waiting on the commune (ops).
    Suspend {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Restart the SLA clock (ops).
    Resume {
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Record the facts behind the legal clocks, or that one was done.
    Legal {
        id: String,
        /// When the commune became aware of the attack (RFC 3339).
        #[arg(long)]
        aware_at: Option<jiff::Timestamp>,
        #[arg(long)]
        personal_data: Option<bool>,
        /// Record that the CNIL was notified (`cnil`) or the complaint filed (`complaint`).
        #[arg(long, value_name = "cnil|complaint")]
        done: Option<String>,
        /// When it was done (default: now).
        #[arg(long, requires = "done")]
        at: Option<jiff::Timestamp>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The commune's agents (named borrowers): list them, replace them from a CSV
    /// `name,service` (before accounts exist), or add to them (at any time before hand-back).
    Agents {
        id: String,
        #[arg(long, conflicts_with = "add")]
        set: Option<PathBuf>,
        #[arg(long)]
        add: Option<PathBuf>,
        /// Ops: accept the names given so far as the whole list (fewer than declared).
        #[arg(long, conflicts_with_all = ["set", "add"])]
        accept: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Ops: the credential sheets of the accounts that have none yet, written once to a file
    /// (the one-time passwords exist nowhere else); --reissue sets every password again.
    Sheets {
        id: String,
        /// Where to write the sheets (HTML, to print at once); refused if the file exists.
        #[arg(long)]
        out: PathBuf,
        /// New passwords for every account (sheets lost), with --reason; asks first.
        #[arg(long, requires = "reason")]
        reissue: bool,
        #[arg(long)]
        reason: Option<String>,
        /// Confirm a re-issue without asking (scripts).
        #[arg(long)]
        yes: bool,
    },
    /// The crisis's main courante: list it, or add an entry with --add.
    Log {
        id: String,
        /// Add an entry instead of listing.
        #[arg(long, requires_all = ["kind", "text"])]
        add: bool,
        /// information, demande, action, décision, point de situation.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// The entry's text.
        text: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Take any action by name (start_provisioning, mark_ready, deliver…).
    Act {
        id: String,
        action: CrisisActionArg,
        #[arg(long)]
        reason: Option<String>,
        /// Confirm a destructive action (start_handback, cancel) without asking (scripts).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// INSEE code of the commune.
    #[arg(long)]
    pub commune: InseeCode,
    /// Name of the person to call back (out-of-band).
    #[arg(long)]
    pub contact_name: String,
    /// Out-of-band phone number (mobile), e.g. 06 12 34 56 78.
    #[arg(long)]
    pub contact_phone: String,
    /// Out-of-band e-mail address (not the commune's own mail).
    #[arg(long)]
    pub contact_email: Option<String>,
    /// Number of agents who need an account.
    #[arg(long)]
    pub agents: u32,
    #[arg(long)]
    pub delivery_address: Option<String>,
    #[arg(long)]
    pub notes: Option<String>,
    /// When the commune became aware of the attack (RFC 3339): starts the 72-hour legal clocks.
    #[arg(long)]
    pub aware_at: Option<jiff::Timestamp>,
    /// Whether personal data is involved (CNIL notification within 72 hours).
    #[arg(long)]
    pub personal_data: Option<bool>,
    /// Makes a retried request safe: the same key returns the same crisis.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user; their API token is printed once.
    Add {
        #[arg(long)]
        role: repli_core::Role,
        #[arg(long)]
        name: String,
        /// Required for a DGS: the INSEE code of their commune.
        #[arg(long)]
        commune: Option<InseeCode>,
        /// Token lifetime in days (default: no expiry).
        #[arg(long)]
        expires_days: Option<u16>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List users (never their tokens or passwords).
    List(JsonFlag),
    /// Issue another token to a user (printed once).
    Token {
        user_id: i64,
        #[arg(long)]
        expires_days: Option<u16>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Set a user's web login; the password is read from standard input (one line).
    Password {
        user_id: i64,
        #[arg(long)]
        login: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Revoke every token and web session of a user.
    Revoke { user_id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum HandbackCmd {
    /// Start the hand-back of a ready or delivered kit: the accounts are disabled (asks first).
    Start {
        id: String,
        /// Why the kit is handed back (audited).
        #[arg(long)]
        reason: String,
        /// Confirm without asking (scripts).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Close the crisis once everything came back.
    Close {
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Record items coming back: one (--serial) or a scan file (--scan).
    Checkin(inventory::CheckinArgs),
    /// Write off an item that will not come back, with a reason (asks first).
    WriteOff {
        crisis: String,
        #[arg(long)]
        serial: String,
        #[arg(long)]
        reason: String,
        /// Confirm without asking (scripts).
        #[arg(long)]
        yes: bool,
    },
}

/// `CrisisState` for clap.
#[derive(Debug, Clone, Copy)]
pub struct CrisisStateArg(pub CrisisState);

impl std::str::FromStr for CrisisStateArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|_| {
            format!("unknown state; expected one of {}", CrisisState::ALL.map(CrisisState::as_str).join(", "))
        })
    }
}

/// `CrisisAction` for clap.
#[derive(Debug, Clone, Copy)]
pub struct CrisisActionArg(pub CrisisAction);

impl std::str::FromStr for CrisisActionArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CrisisAction::ALL.into_iter().find(|a| a.as_str() == s).map(Self).ok_or_else(|| {
            format!("unknown action; expected one of {}", CrisisAction::ALL.map(CrisisAction::as_str).join(", "))
        })
    }
}

/// Reads a file given on the command line, at most the API's body limit: a larger one (or an
/// endless one such as `/dev/zero`) is refused with a clear message instead of filling memory.
pub(crate) fn read_file(path: &std::path::Path) -> anyhow::Result<String> {
    let max = repli_proto::MAX_BODY_BYTES as u64;
    repli_config::read_capped(path, max).map_err(|e| match e {
        repli_config::CappedRead::TooLarge => {
            anyhow::anyhow!("{} : fichier trop volumineux ({max} octets au plus)", path.display())
        }
        repli_config::CappedRead::Io(e) => anyhow::anyhow!("impossible de lire {} : {e}", path.display()),
    })
}

/// Exit code of a command that ran but found a problem (e.g. a failed verification).
pub(crate) fn failure() -> ExitCode {
    ExitCode::FAILURE
}
