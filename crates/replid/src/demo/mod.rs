//! `replid demo`: a whole crisis, played as the three roles would, on a fresh in-process replid
//! with its own SQLite file. Everything goes through the real HTTP API and the typed client.

pub mod exercise;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use jiff::Timestamp;
use repli_core::{CrisisAction, CrisisState, InseeCode, Role, SlaStatus, StepState};
use repli_proto::Client;
use repli_proto::api::{
    AgentInput, AgentsRequest, CheckinRequest, Contact, CrisisRequest, ImportFile, ImportRequest, KitNeeds,
    LendRequest, StepsView, WipeRequest,
};
use std::collections::BTreeSet;

/// The sample pool shipped in `inventory/pool.csv` (fictitious).
const SAMPLE_POOL: &str = include_str!("../../../../inventory/pool.csv");
use repli_core::fr;
use repli_core::run::{PlaybookName, RunState};
use serde::Serialize;

use crate::Daemon;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Folder for the database and documents (default: a new temporary folder, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// INSEE code of the commune hit (it must have signed the convention).
    #[arg(long, default_value = "13005")]
    pub commune: InseeCode,
    /// Number of agents who need an account (default: the deliberation's kit, 50 laptops).
    #[arg(long, default_value_t = 50)]
    pub agents: u32,
    /// Print the timeline on stderr and one JSON summary as the last line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Provision against this Graph endpoint instead of the embedded simulator: an external
    /// `repli-graph-sim` (http://127.0.0.1:PORT/v1.0), or a tenant with --tenant-id,
    /// --client-id and the secret in REPLI_GRAPH_CLIENT_SECRET.
    #[arg(long)]
    pub graph_url: Option<String>,
    #[arg(long, requires = "graph_url", default_value = "simulation")]
    pub tenant_id: String,
    #[arg(long, requires = "graph_url", default_value = "repli-demo")]
    pub client_id: String,
    /// Publish the crisis zone in this DNS server with TSIG-signed RFC 2136 updates
    /// (`address:port`, a local `named` say: docs/DNS.md), instead of the simulator's zone API.
    #[arg(long, requires_all = ["dns_zone", "dns_key_name", "dns_key_file"])]
    pub dns_primary: Option<std::net::SocketAddr>,
    /// The zone the crisis domains go in (`secours-amp.test`): the kit's domain is
    /// `<commune>.<zone>`.
    #[arg(long, requires = "dns_primary")]
    pub dns_zone: Option<String>,
    #[arg(long, requires = "dns_primary")]
    pub dns_key_name: Option<String>,
    /// The TSIG key: `tsig-keygen`'s block or the bare base64 secret.
    #[arg(long, requires = "dns_primary")]
    pub dns_key_file: Option<PathBuf>,
    /// Play a two-commune exercise (drill) instead: the example scenario, its inject, the
    /// RETEX of each crisis; checks the watermark and that nothing reaches the SLA report.
    #[arg(long)]
    pub exercise: bool,
}

impl DemoArgs {
    /// The command line's defaults, in `dir` (the embedded simulator, 50 agents of Aubagne).
    pub fn in_dir(dir: &Path) -> Self {
        DemoArgs {
            dir: Some(dir.to_owned()),
            commune: InseeCode::parse("13005").unwrap_or_else(|_| unreachable!("a valid INSEE code")),
            agents: 50,
            json: false,
            graph_url: None,
            tenant_id: "simulation".into(),
            client_id: "repli-demo".into(),
            dns_primary: None,
            dns_zone: None,
            dns_key_name: None,
            dns_key_file: None,
            exercise: false,
        }
    }
}

/// The summary printed at the end (the last line of stdout with `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DemoSummary {
    pub simulation: bool,
    pub crisis_id: String,
    pub commune: String,
    pub commune_name: String,
    pub requested_at: Timestamp,
    pub due_at: Timestamp,
    pub ready_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub sla_status: SlaStatus,
    pub sla_met: bool,
    /// Equipment lent to the commune, and returned.
    pub items_lent: u32,
    pub items_returned: u32,
    /// Microsoft 365 accounts created (in the embedded Graph simulator) and disabled at hand-back.
    pub accounts_created: u32,
    pub accounts_disabled: u32,
    pub audit_verified: bool,
    pub audit_entries: u64,
    pub audit_last_checkpoint: Option<i64>,
    /// Hex Ed25519 key signing the checkpoints (`repli audit verify --db … --public-key …`).
    pub audit_public_key: Option<String>,
    pub database: PathBuf,
    pub documents_dir: PathBuf,
}

/// Prints the timeline: to stdout for people, to stderr when stdout carries JSON.
pub(crate) struct Narrator {
    json: bool,
    /// The configured calendar's time zone (the one time-zone source).
    tz: jiff::tz::TimeZone,
}

impl Narrator {
    pub(crate) fn when(&self, t: Timestamp) -> String {
        fr::datetime(t, &self.tz)
    }

    pub(crate) fn say(&self, who: &str, what: &str) {
        let line = format!("[{}] {who:<12} {what}", now().to_zoned(self.tz.clone()).strftime("%H:%M:%S"));
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn prepare_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.to_owned()
        }
        None => tempfile::Builder::new()
            .prefix("repli-demo-")
            .tempdir_in(std::env::temp_dir())
            .context("cannot create a temporary folder")?
            .keep(),
    };
    if dir.join("repli.db").exists() {
        bail!(
            "{} contient déjà une base de démonstration (repli.db) : choisissez un autre --dir \
             ou supprimez-la ; rien n'a été modifié",
            dir.display()
        );
    }
    Ok(dir)
}

/// Runs the demo and returns its summary.
pub async fn run(args: &DemoArgs) -> anyhow::Result<DemoSummary> {
    let (say, dir, daemon) = start(args).await?;
    let result = play(&say, &daemon, &dir, args).await;
    daemon.shutdown().await.context("replid did not stop cleanly")?;
    result
}

/// Runs the exercise demo (`--exercise`) and returns its summary.
pub async fn run_exercise(args: &DemoArgs) -> anyhow::Result<crate::demo::exercise::ExerciseSummary> {
    let (say, dir, daemon) = start(args).await?;
    let result = crate::demo::exercise::play(&say, &daemon, &dir).await;
    daemon.shutdown().await.context("replid did not stop cleanly")?;
    result
}

/// A fresh in-process replid for a demo, on a new database in its folder.
async fn start(args: &DemoArgs) -> anyhow::Result<(Narrator, PathBuf, Daemon)> {
    // The demo runs on the default configuration: its calendar's time zone is the daemon's.
    let tz = repli_core::BusinessCalendar::from_spec(&Config::default().sla.calendar)
        .map(|c| c.time_zone().clone())
        .context("calendar")?;
    let say = Narrator { json: args.json, tz };
    let dir = prepare_dir(args.dir.as_deref())?;
    let db = dir.join("repli.db");
    let mut config = Config::default();
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.database.path.clone_from(&db);
    // A short demo log: sign a checkpoint every 10 entries so the demo shows one.
    config.audit.checkpoint_every = 10;
    // Fictitious contacts in the documents (ARCEP's 04 65 71 range is reserved for fiction).
    config.documents.astreinte_phone = "04 65 71 00 00 (fictif)".into();
    config.documents.astreinte_email = "astreinte-dsi@exemple.fr".into();
    config.documents.csirt_phone = "04 65 71 00 01 (fictif)".into();
    if let Some(url) = &args.graph_url {
        let root = url.trim_end_matches('/').trim_end_matches("/v1.0").to_string();
        let loopback =
            root.starts_with("http://127.") || root.starts_with("http://localhost") || root.starts_with("http://[::1]");
        config.m365.mode = crate::config::M365Mode::Graph;
        config.m365.graph_url = format!("{root}/v1.0");
        config.m365.tenant_id.clone_from(&args.tenant_id);
        config.m365.client_id.clone_from(&args.client_id);
        if loopback {
            config.m365.login_url.clone_from(&root);
            config.m365.dns_url = Some(root.clone());
            if std::env::var_os("REPLI_GRAPH_CLIENT_SECRET").is_none() {
                // A simulator accepts any secret: no real credential is written here.
                let file = dir.join("graph-simulator-secret");
                std::fs::write(&file, "simulation")?;
                config.m365.client_secret_file = Some(file);
            }
        } else {
            config.m365.dns = crate::config::DnsMode::Manual;
        }
    }
    if let (Some(primary), Some(zone), Some(key_name), Some(key_file)) =
        (args.dns_primary, &args.dns_zone, &args.dns_key_name, &args.dns_key_file)
    {
        config.m365.dns = crate::config::DnsMode::Rfc2136;
        config.m365.domain_pattern = format!("{{slug}}.{}", zone.trim_end_matches('.'));
        config.dns.primary = Some(primary);
        // A local server: its NS records would point at port 53.
        config.dns.servers = vec![primary];
        config.dns.zone.clone_from(zone);
        config.dns.key_name.clone_from(key_name);
        config.dns.key_file = Some(key_file.clone());
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let daemon = Daemon::start(&config, clock.clone()).await.context("cannot start the in-process replid")?;
    Ok((say, dir, daemon))
}

async fn play(say: &Narrator, daemon: &Daemon, dir: &Path, args: &DemoArgs) -> anyhow::Result<DemoSummary> {
    say.say(
        "SIMULATION",
        &format!("replid sur {} — base {}", daemon.url(), daemon.state().config.database.path.display()),
    );
    match &daemon.state().config.m365.mode {
        crate::config::M365Mode::Simulator => {
            say.say("SIMULATION", "Microsoft 365 : client Graph réel contre un simulateur intégré ; aucun tenant ni matériel réel n'est touché")
        }
        crate::config::M365Mode::Graph => say.say("", &format!("Microsoft 365 : {}", daemon.state().config.m365.graph_url)),
    }
    let commune = args.commune.clone();
    let dgs_token = account(daemon, &format!("DGS de la commune {commune}"), Role::Dgs, Some(commune.clone())).await?;
    let (ops, auditor, imported) = cast(daemon).await?;
    let dgs = Client::new(&daemon.url(), None)?.with_token(dgs_token);
    say.say("Ops", &format!("charge le parc de la métropole : {imported} équipements (données fictives)"));

    // The DGS, whose commune mail is down, requests the kit with an out-of-band contact.
    let info = dgs.commune(commune.as_str()).await.context("commune")?;
    let req = CrisisRequest {
        commune: commune.clone(),
        contact: Contact {
            name: format!("DGS {} (contact fictif)", repli_core::fr::de(&info.name)),
            phone: "06 00 00 00 01".into(),
            email: Some("dgs.secours@exemple.fr".into()),
        },
        agents: args.agents,
        delivery_address: Some(format!("Hôtel de ville {}", repli_core::fr::de(&info.name))),
        notes: Some("Rançongiciel : messagerie et postes de la mairie hors service.".into()),
        needs: Some(KitNeeds { laptop: args.agents.min(50), router: 2, phone: 5, printer: 1 }),
        // Noticed two hours ago; the file server held personal data.
        aware_at: Some(now().checked_sub(jiff::SignedDuration::from_hours(2))?),
        personal_data: Some(true),
    };
    let key = format!("demo-{}", now().as_millisecond());
    let crisis = dgs.request_crisis(&req, Some(&key)).await.context("request")?;
    say.say("DGS", &format!("demande le kit pour {} ({} agents) → crise {}", info.name, crisis.agents, crisis.id));
    say.say("", &format!("échéance : {} ({} h ouvrées)", say.when(crisis.sla.due_at), crisis.sla.business_hours));
    let again = dgs.request_crisis(&req, Some(&key)).await.context("idempotent retry")?;
    if again.id != crisis.id {
        bail!("an idempotent retry created a second crisis ({} then {})", crisis.id, again.id);
    }
    say.say("DGS", "renvoie la même demande (réseau instable) : même crise, rien en double");
    dgs.add_log(
        crisis.id.as_str(),
        "information",
        "Rançongiciel détecté à 7 h 40 : serveurs et messagerie de la mairie arrêtés.",
    )
    .await
    .context("main courante")?;
    say.say("DGS", "consigne l'attaque dans la main courante");
    let services =
        ["Direction générale", "État civil", "Accueil", "Finances", "Services techniques", "Police municipale", "CCAS"];
    let agents: Vec<AgentInput> = (1..=args.agents)
        .map(|i| AgentInput {
            name: format!("Agent fictif {i:02}"),
            service: services[(i as usize) % services.len()].to_owned(),
        })
        .collect();
    let agents = dgs.set_agents(crisis.id.as_str(), &AgentsRequest { agents }).await.context("agents list")?;
    say.say("DGS", &format!("transmet la liste de ses {} agents", agents.len()));
    for l in &crisis.legal {
        say.say("", &format!("{} : au plus tard {}", l.label, say.when(l.deadline)));
    }
    dgs.legal_done(crisis.id.as_str(), repli_core::LegalKind::Complaint, &Default::default())
        .await
        .context("legal clock")?;
    say.say("DGS", "signale le dépôt de plainte (assurance cyber)");

    let conv = info
        .convention
        .as_ref()
        .map_or_else(String::new, |c| format!(" (délibération {} du {})", c.deliberation_ref, c.signed_on));
    let c = ops.act(&crisis.id, CrisisAction::Activate, None).await.context("activate")?;
    say.say("Ops", &format!("vérifie la convention{conv} et active la crise : le déroulé d'activation démarre"));
    ops.add_log(c.id.as_str(), "décision", "Kit engagé ; livraison sur site après préparation.")
        .await
        .context("main courante")?;
    say.say("Ops", "consigne la décision dans la main courante");
    let mut seen = BTreeSet::new();
    follow(say, &ops, &c.id, &mut seen, |v| v.state == CrisisState::Ready && run_done(v, PlaybookName::Activation))
        .await?;
    let c = ops.crisis(c.id.as_str()).await.context("ready")?;
    say.say("Ops", &format!("kit prêt — SLA : {}", sla_text(&c)));
    let sheet = ops.issue_sheets(c.id.as_str()).await.context("credential sheets")?;
    let accounts_created = sheet.matches("class=\"secret\"").count() / 2;
    say.say(
        "Ops",
        &format!("imprime les {accounts_created} fiches identifiants (mots de passe à usage unique, remis une fois)"),
    );
    // Laptops and phones to named agents, the rest to the commune.
    let held: Vec<_> =
        ops.inventory_items().await?.into_iter().filter(|i| i.crisis.as_deref() == Some(c.id.as_str())).collect();
    let (mut next_laptop, mut next_phone) = (0usize, 0usize);
    for i in &held {
        let agent = match i.item.kind {
            repli_core::ItemKind::Laptop => {
                next_laptop += 1;
                agents.get((next_laptop - 1) % agents.len().max(1)).map(|a| a.id)
            }
            repli_core::ItemKind::Phone => {
                next_phone += 1;
                agents.get((next_phone - 1) % agents.len().max(1)).map(|a| a.id)
            }
            _ => None,
        };
        ops.lend(c.id.as_str(), &LendRequest { serial: i.item.serial.clone(), agent_id: agent })
            .await
            .context("lend")?;
    }
    say.say("Ops", &format!("remet {} équipements (ordinateurs et téléphones nominatifs)", held.len()));
    ops.act(&c.id, CrisisAction::Deliver, None).await.context("deliver")?;
    say.say("Ops", "livre le kit sur site");
    ops.act(&c.id, CrisisAction::StartHandback, Some("démonstration : retour à la normale"))
        .await
        .context("start hand-back")?;
    say.say("Ops", "ouvre la restitution : le déroulé de restitution démarre");
    let loans = ops.loans(c.id.as_str()).await.context("loans")?;
    for l in &loans {
        ops.check_in(c.id.as_str(), &CheckinRequest { serial: l.serial.clone(), condition: "ok".into(), note: None })
            .await
            .context("check-in")?;
        let wipe = WipeRequest {
            method: "Effacement NIST 800-88 (purge) — simulation".into(),
            operator: "Atelier DSI métropole".into(),
            certificate: format!("CERT-DEMO-{}", l.asset_tag),
        };
        ops.wipe(&l.serial, &wipe).await.context("wipe")?;
    }
    say.say("Ops", &format!("récupère, contrôle et efface les {} équipements (certificats d'effacement)", loans.len()));
    let steps =
        follow(say, &ops, &c.id, &mut seen, |v| v.state == CrisisState::Closed && run_done(v, PlaybookName::Handback))
            .await?;
    // The wind-down's output, read as its typed form (the API carries it as JSON).
    let kind = repli_core::StepKind::M365WindDown;
    let wind_down = steps
        .runs
        .iter()
        .flat_map(|r| &r.steps)
        .find(|s| s.kind == kind.as_str())
        .and_then(|s| s.output.clone())
        .and_then(|v| repli_core::run::StepOutput::decode(kind, v).ok());
    let accounts_disabled = match wind_down {
        Some(repli_core::run::StepOutput::WindDown(w)) => w.accounts.len(),
        _ => 0,
    };
    say.say("", "crise close par la dernière étape de la restitution");

    let verify = auditor.audit_verify().await.context("audit verify")?;
    say.say(
        "Auditeur",
        &if verify.verified {
            format!(
                "vérifie le journal d'audit : {} entrées, chaîne intacte, {}",
                verify.entries,
                verify.last_checkpoint.map_or_else(
                    || "aucun point de contrôle signé".to_owned(),
                    |s| format!("dernier point de contrôle signé : n° {s}")
                )
            )
        } else {
            format!("journal d'audit NON vérifié : {}", verify.error.as_deref().unwrap_or("?"))
        },
    );
    let last = auditor.crisis(c.id.as_str()).await.context("final read")?;
    let loans = auditor.loans(c.id.as_str()).await.context("loans")?;
    std::fs::write(dir.join(format!("crise-{}.json", last.id)), serde_json::to_vec_pretty(&last)?)?;
    let documents_dir = repli_app::documents::documents_dir(daemon.state()).join(last.id.as_str());
    say.say("", &format!("documents (édités par le déroulé) : {}", documents_dir.display()));

    Ok(DemoSummary {
        // Plain http is only ever allowed to a loopback simulator.
        simulation: daemon.state().simulation || daemon.state().config.m365.graph_url.starts_with("http://"),
        crisis_id: last.id.to_string(),
        commune: last.commune.to_string(),
        commune_name: last.commune_name.clone(),
        requested_at: last.requested_at,
        due_at: last.sla.due_at,
        ready_at: last.timeline.ready_at,
        closed_at: last.timeline.closed_at,
        sla_status: last.sla.status,
        sla_met: last.sla.status == SlaStatus::Met,
        items_lent: u32::try_from(loans.len()).unwrap_or(u32::MAX),
        items_returned: u32::try_from(loans.iter().filter(|l| l.returned_at.is_some()).count()).unwrap_or(u32::MAX),
        accounts_created: u32::try_from(accounts_created).unwrap_or(u32::MAX),
        accounts_disabled: u32::try_from(accounts_disabled).unwrap_or(u32::MAX),
        audit_verified: verify.verified,
        audit_entries: verify.entries,
        audit_last_checkpoint: verify.last_checkpoint,
        audit_public_key: verify.public_key.clone(),
        database: daemon.state().config.database.path.clone(),
        documents_dir,
    })
}

/// An account made by the demo itself (audited as the system), and its API token.
pub(crate) async fn account(
    daemon: &Daemon,
    name: &str,
    role: Role,
    commune: Option<repli_core::InseeCode>,
) -> anyhow::Result<String> {
    let req = repli_proto::api::NewUserRequest { name: name.to_owned(), role, commune, expires_days: None };
    let created = repli_app::accounts::create(daemon.state(), crate::By::System, &req)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the account {name:?}: {e}"))?;
    Ok(created.token.token)
}

/// The métropole's side of a demo: an ops and an auditor account, and the pool imported (its
/// fictitious sample). Returns both clients and how many items were imported.
pub(crate) async fn cast(daemon: &Daemon) -> anyhow::Result<(Client, Client, usize)> {
    let ops_token = account(daemon, "Cellule d'astreinte DSI métropole", Role::Ops, None).await?;
    let auditor_token = account(daemon, "Auditeur interne", Role::Auditor, None).await?;
    let anon = Client::new(&daemon.url(), None)?;
    let (ops, auditor) = (anon.with_token(ops_token), anon.with_token(auditor_token));
    let imported = ops
        .import_inventory(&ImportRequest {
            files: vec![ImportFile { source: "inventory/pool.csv".into(), csv: SAMPLE_POOL.into() }],
        })
        .await
        .context("inventory import")?;
    Ok((ops, auditor, imported.imported))
}

pub(crate) fn run_done(v: &StepsView, playbook: PlaybookName) -> bool {
    v.runs.iter().any(|r| r.playbook == playbook && r.state == RunState::Succeeded)
}

/// Follows the engine until `done`: narrates each step as it finishes and confirms each
/// manual task as ops would (in the demo, the hands-on work is simulated).
pub(crate) async fn follow(
    say: &Narrator,
    ops: &Client,
    id: &repli_core::CrisisId,
    seen: &mut BTreeSet<String>,
    done: impl Fn(&StepsView) -> bool,
) -> anyhow::Result<StepsView> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let v = ops.steps(id.as_str()).await.context("steps")?;
        for run in &v.runs {
            for s in &run.steps {
                let key = format!("{id}/{}/{}", run.playbook, s.step);
                match s.state {
                    StepState::Succeeded if seen.insert(key) => {
                        let who = if s.kind == "manual" { "Ops" } else { "replid" };
                        say.say(who, &format!("✓ {}", s.title));
                    }
                    StepState::Failed => {
                        bail!("l'étape « {} » a échoué : {}", s.title, s.last_error.as_deref().unwrap_or("?"))
                    }
                    _ => {}
                }
            }
        }
        if done(&v) {
            return Ok(v);
        }
        for task in ops.tasks().await.context("tasks")?.into_iter().filter(|t| t.crisis == *id) {
            ops.task_done(id.as_str(), &task.step, Some("simulation : fait")).await.context("task done")?;
        }
        if std::time::Instant::now() > deadline {
            bail!("le déroulé n'a pas abouti en 5 minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `replid demo`: runs, prints, and exits non-zero if the SLA or the audit chain failed.
pub async fn main(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if args.exercise {
        return crate::demo::exercise::main(args).await;
    }
    let s = run(args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!();
        println!(
            "Résumé : crise {} ({}) — SLA {} — journal d'audit {}",
            s.crisis_id,
            s.commune_name,
            if s.sla_met { "respecté" } else { "NON respecté" },
            if s.audit_verified { "vérifié" } else { "NON vérifié" }
        );
        println!("Base : {}", s.database.display());
        if let Some(k) = &s.audit_public_key {
            println!("Vérification hors ligne : repli audit verify --db {} --public-key {k}", s.database.display());
        }
        println!("Documents : {}", s.documents_dir.display());
    }
    Ok(if s.sla_met && s.audit_verified { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn sla_text(c: &repli_proto::api::CrisisView) -> String {
    if c.sla.remaining_seconds > 0 {
        format!(
            "{} — reste {}",
            c.sla.status_label,
            fr::duration(jiff::SignedDuration::from_secs(c.sla.remaining_seconds))
        )
    } else {
        c.sla.status_label.clone()
    }
}
