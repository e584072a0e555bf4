//! The `repli` command line, as a library so the end-to-end tests can run its demo.
//!
//! Every command except `demo` and `completions` talks to a replid through
//! [`repli_proto::Client`]: the CLI has no access of its own to the database.

pub mod audit;
mod commands;
mod confirm;
pub mod dns;
pub mod engine;
pub mod exercise;
pub mod french;
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
    long_about = "Repli pilote le kit de repli que la Métropole Aix-Marseille-Provence prête à une commune victime \
                  d'une cyberattaque : demande, activation, préparation en 48 heures ouvrées, livraison, restitution."
)]
pub struct Cli {
    /// Adresse de replid.
    #[arg(long, global = true, env = "REPLI_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Jeton d'accès (remis une seule fois à la création du compte).
    #[arg(long, global = true, env = "REPLI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Certificat (PEM) de l'autorité qui a signé le certificat TLS de replid.
    #[arg(long, global = true, env = "REPLI_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Les communes de la métropole et leur convention de prêt.
    #[command(subcommand)]
    Communes(CommunesCmd),
    /// Les crises : demandes de kit et leur avancement.
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
    /// Les exercices : crises d'entraînement marquées EXERCICE de bout en bout.
    #[command(subcommand)]
    Exercise(exercise::ExerciseCmd),
    /// The crisis zone in DNS: what each authoritative server serves.
    #[command(subcommand)]
    Dns(dns::DnsCmd),
    /// À qui appartient le jeton.
    Whoami(JsonFlag),
    /// Complétion des commandes pour le shell.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Sortie JSON au lieu d'un tableau.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CommunesCmd {
    /// Lister les communes et l'état de leur convention.
    List(JsonFlag),
    /// Afficher une commune.
    Show {
        insee: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrisisCmd {
    /// Demander le kit de repli pour une commune.
    Request(RequestArgs),
    /// Lister les crises.
    List {
        /// Code INSEE de la commune.
        #[arg(long)]
        commune: Option<InseeCode>,
        /// Seulement les crises dans cet état.
        #[arg(long)]
        state: Option<CrisisStateArg>,
        /// Seulement les crises en cours.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Suivre l'avancement d'une crise jusqu'au kit prêt ou à la clôture (code de sortie 1 si
    /// une étape échoue) ; hors terminal, une ligne par changement.
    Watch {
        /// Numéro de la crise (13005-2026-001).
        id: String,
    },
    /// Afficher une crise et son historique récent (les 20 dernières entrées).
    Show {
        /// Numéro de la crise (13005-2026-001).
        id: String,
        /// Tout l'historique, pas seulement les 20 dernières entrées.
        #[arg(long)]
        history: bool,
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
    /// Annuler un kit ; si sa préparation a commencé, ce qui existe est défait (demande
    /// confirmation).
    Cancel {
        /// Numéro de la crise.
        id: String,
        /// Motif (inscrit au journal d'audit).
        #[arg(long)]
        reason: String,
        /// Confirmer sans poser la question (scripts).
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
    /// Noter les faits qui font courir les échéances légales, ou qu'une démarche est faite.
    Legal {
        /// Numéro de la crise.
        id: String,
        /// Quand la commune a découvert l'attaque (RFC 3339, 2026-11-30T07:40:00+01:00).
        #[arg(long)]
        aware_at: Option<jiff::Timestamp>,
        /// Des données personnelles sont-elles touchées (true ou false) ?
        #[arg(long)]
        personal_data: Option<bool>,
        /// Noter la notification à la CNIL (`cnil`) ou le dépôt de plainte (`complaint`).
        #[arg(long, value_name = "cnil|complaint")]
        done: Option<String>,
        /// Quand (par défaut : maintenant).
        #[arg(long, requires = "done")]
        at: Option<jiff::Timestamp>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Les agents de la commune : les lister, remplacer la liste par un CSV `nom,service`
    /// (avant la création des comptes), ou en ajouter (jusqu'à la restitution).
    Agents {
        /// Numéro de la crise.
        id: String,
        /// Remplacer la liste par ce fichier CSV.
        #[arg(long, conflicts_with = "add")]
        set: Option<PathBuf>,
        /// Ajouter les agents de ce fichier CSV.
        #[arg(long)]
        add: Option<PathBuf>,
        /// Exploitation : accepter les noms donnés comme liste complète (moins que déclaré).
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
    /// La main courante de la crise : la lire, ou y ajouter une entrée avec --add.
    Log {
        /// Numéro de la crise.
        id: String,
        /// Ajouter une entrée au lieu de lister.
        #[arg(long, requires_all = ["kind", "text"])]
        add: bool,
        /// information, demande, action, décision, point de situation.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Le texte de l'entrée.
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
    /// Code INSEE de la commune (13005 pour Aubagne).
    #[arg(long)]
    pub commune: InseeCode,
    /// Nom de la personne à rappeler (hors messagerie de la commune).
    #[arg(long)]
    pub contact_name: String,
    /// Téléphone pour la joindre (mobile), par exemple 06 12 34 56 78.
    #[arg(long)]
    pub contact_phone: String,
    /// Adresse électronique de secours (pas la messagerie de la commune).
    #[arg(long)]
    pub contact_email: Option<String>,
    /// Nombre d'agents qui ont besoin d'un compte.
    #[arg(long)]
    pub agents: u32,
    /// Lieu de livraison du kit.
    #[arg(long)]
    pub delivery_address: Option<String>,
    /// Remarques.
    #[arg(long)]
    pub notes: Option<String>,
    /// Quand la commune a découvert l'attaque (RFC 3339) : fait courir les échéances légales de 72 h.
    #[arg(long)]
    pub aware_at: Option<jiff::Timestamp>,
    /// Des données personnelles sont-elles touchées (true ou false) ? Notification CNIL sous 72 h.
    #[arg(long)]
    pub personal_data: Option<bool>,
    /// Rend une demande relancée sans risque : la même clé renvoie la même crise.
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
    /// Download the data hand-back's archive (the commune's mail and files, zip) to a file or
    /// removable media; a partial file is resumed.
    Archive {
        id: String,
        /// Where to write it (default: `restitution-<crisis>.zip` here).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Check a data hand-back archive offline (its zip or folder): the manifest signed by the
    /// key you hold, every file present with its size and SHA-256, nothing added.
    VerifyArchive {
        path: std::path::PathBuf,
        /// The audit public key you trust (64 hex digits, its `SHA256:…` fingerprint, or a file
        /// holding either); repeat for several. Required: the archive's own key proves nothing.
        #[arg(long, required = true)]
        public_key: Vec<String>,
    },
}

/// `CrisisState` for clap.
#[derive(Debug, Clone, Copy)]
pub struct CrisisStateArg(pub CrisisState);

impl std::str::FromStr for CrisisStateArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|_| {
            format!("état inconnu (valeurs possibles : {})", CrisisState::ALL.map(CrisisState::as_str).join(", "))
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
            format!("action inconnue (valeurs possibles : {})", CrisisAction::ALL.map(CrisisAction::as_str).join(", "))
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
