//! `repli-bench crash`: the engine's reliability harness. It starts the real `replid` and the
//! Graph simulator as separate processes, activates crises, sends SIGKILL to replid at random
//! moments, restarts it, and repeats until every crisis is ready. Then it checks that every
//! step succeeded, that the simulator holds exactly the expected objects, that no item was
//! allocated twice, and that the audit log verifies. With `--mixed`, every commune is in flight
//! at once, some called off during provisioning and some handed back, and it also checks that
//! no crisis is left without the run its state calls for and that no cancelled or closed kit
//! keeps an enabled account. With `--export` (`crash_export.rs`), every kill lands during a
//! hand-back's export. The test suite runs the first two with 10 rounds, the third with 3.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use repli_core::run::RunState;
use repli_core::{CrisisAction, CrisisId, CrisisState, InseeCode, StepState};
use repli_proto::Client;
use repli_proto::api::{AgentInput, AgentsRequest, Contact, CrisisRequest, ImportFile, ImportRequest, KitNeeds};
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// The sample pool shipped in `inventory/pool.csv` (fictitious).
pub(crate) const SAMPLE_POOL: &str = include_str!("../../../inventory/pool.csv");
/// Communes activated one after the other (all have signed the convention).
const COMMUNES: [&str; 6] = ["13005", "13001", "13007", "13041", "84089", "13002"];

#[derive(Debug, Args)]
pub struct CrashBench {
    /// SIGKILLs to send: at least (more crises are activated while rounds remain); with
    /// `--mixed`, at most (the harness stops once every commune's crisis reached its end).
    #[arg(long, default_value_t = 100)]
    pub rounds: u32,
    /// Agents per crisis (accounts to create).
    #[arg(long, default_value_t = 12)]
    pub agents: u32,
    /// Simulated Graph latency (long enough for kills to land mid-step).
    #[arg(long, default_value_t = 120)]
    pub latency_ms: u64,
    /// Random seed of the kill moments.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the working folder (database, logs) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Every commune at once, each with a fate: provisioned, called off during provisioning,
    /// or handed back once ready; kills land on activations, cancellations and hand-backs.
    #[arg(long)]
    pub mixed: bool,
    /// One crisis handed back, every kill landing during its export (after this attempt
    /// wrote at least one item): the export resumes, its archive verifies against the pinned
    /// audit key with every item exactly once, then the deletions run.
    #[arg(long, conflicts_with = "mixed")]
    pub export: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct CrashFigures {
    pub rounds: u32,
    pub kills: u32,
    /// Steps found running under a dead daemon's lease and run again after it expired.
    pub reclaimed_steps: u64,
    pub crises: Vec<String>,
    pub seconds: f64,
    pub all_steps_succeeded: bool,
    pub exactly_expected_objects: bool,
    /// Not checked by `--export` (none).
    pub no_item_allocated_twice: Option<bool>,
    pub audit_verified: bool,
    pub audit_entries: u64,
    /// `--mixed`: no crisis left in a state that calls for a run it does not have.
    pub no_crisis_stranded: Option<bool>,
    /// `--mixed`: no enabled account left in a cancelled or closed kit's domain.
    pub cancelled_kits_wound_down: Option<bool>,
    /// `--export`: the hand-back's export under SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<crate::crash_export::ExportFigures>,
    pub problems: Vec<String>,
    pub workdir: Option<PathBuf>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) struct Harness {
    pub(crate) replid: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) url: String,
    pub(crate) sim_url: String,
    pub(crate) secret: String,
}

impl Harness {
    pub(crate) async fn start_replid(&self, round: u32) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.dir.join(format!("replid-{round:03}.log")))?;
        let child = Command::new(&self.replid)
            .args(["--config", &self.config.to_string_lossy(), "run"])
            .env("REPLI_GRAPH_CLIENT_SECRET", &self.secret)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start replid")?;
        let health = Client::new(&self.url, None)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while health.health().await.is_err() {
            if Instant::now() > deadline {
                bail!("replid did not answer within 30 s (see {})", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(child)
    }
}

/// A user created on the daemon's host; returns their API token.
pub(crate) fn user(h: &Harness, role: &str, name: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(&h.replid)
        .args(["--config", &h.config.to_string_lossy(), "user", "add", "--role", role, "--name", name])
        .env("REPLI_GRAPH_CLIENT_SECRET", &h.secret)
        .output()?;
    anyhow::ensure!(out.status.success(), "replid user add: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) async fn start_simulator(
    dir: &Path,
    latency_ms: u64,
    secret: &str,
    extra: &[String],
) -> anyhow::Result<(Child, String)> {
    let log = std::fs::File::create(dir.join("graph-sim.log"))?;
    let mut child = Command::new(crate::replid_proc::sibling("repli-graph-sim")?)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            &latency_ms.to_string(),
            "--consistency-ms",
            "150",
            "--team-delay-ms",
            "400",
            // What the métropole's administrators did once (docs/M365.md): the Teams access
            // policy granted -Global; a new tenant has none.
            "--meeting-policy",
            "global",
        ])
        .args(["--record", &dir.join("graph-requests.jsonl").to_string_lossy()])
        .args(extra)
        .env("REPLI_SIM_CLIENT_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start repli-graph-sim")?;
    let stdout = child.stdout.take().context("simulator stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("the simulator did not print its URL")??
        .context("the simulator exited")?;
    Ok((child, url.trim().to_string()))
}

pub(crate) fn request(insee: &str, agents: u32) -> anyhow::Result<CrisisRequest> {
    Ok(CrisisRequest {
        commune: InseeCode::parse(insee)?,
        contact: Contact { name: "Contact de test".into(), phone: "06 00 00 00 01".into(), email: None },
        agents,
        delivery_address: Some("Hôtel de ville".into()),
        notes: None,
        needs: Some(KitNeeds { laptop: agents.min(20), router: 1, phone: 2, printer: 1 }),
        aware_at: None,
        personal_data: None,
    })
}

/// Confirms every manual task of the harness's crises (ops at work).
pub(crate) async fn confirm_tasks(ops: &Client) {
    if let Ok(tasks) = ops.tasks().await {
        for t in tasks {
            let _ = ops.task_done(t.crisis.as_str(), &t.step, Some("banc de reprise")).await;
        }
    }
}

/// What a crisis of the mixed harness is driven to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ready,
    Cancelled,
    HandedBack,
}

struct Driven {
    id: CrisisId,
    fate: Fate,
    /// When a crisis to call off is cancelled (if still in preparation then).
    cancel_at: Instant,
    settled: bool,
}

/// Moves each crisis toward its fate; true when every one got there with no run left running.
async fn drive(ops: &Client, crises: &mut [Driven]) -> bool {
    let mut all = true;
    for d in crises.iter_mut().filter(|d| !d.settled) {
        let (Ok(c), Ok(v)) = (ops.crisis(d.id.as_str()).await, ops.steps(d.id.as_str()).await) else {
            all = false;
            continue;
        };
        let idle = v.runs.iter().all(|r| r.state != RunState::Running);
        let early = matches!(c.state, CrisisState::Activated | CrisisState::Provisioning);
        match (d.fate, c.state) {
            (Fate::Ready, CrisisState::Ready) | (Fate::HandedBack, CrisisState::Closed) if idle => d.settled = true,
            (Fate::Cancelled, CrisisState::Cancelled | CrisisState::Closed) if idle => d.settled = true,
            (Fate::Cancelled, _) if early && Instant::now() >= d.cancel_at => {
                let _ = ops.act(&d.id, CrisisAction::Cancel, Some("banc de reprise : annulation")).await;
            }
            (Fate::HandedBack | Fate::Cancelled, CrisisState::Ready) if idle => {
                let _ = ops.act(&d.id, CrisisAction::StartHandback, Some("banc de reprise : restitution")).await;
            }
            _ => {}
        }
        all &= d.settled;
    }
    all
}

/// replid's configuration in `dir` against the simulator at `sim_url`.
pub(crate) fn harness(dir: &Path, sim_url: String, secret: String) -> anyhow::Result<Harness> {
    let port = free_port()?;
    let config = dir.join("replid.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\npath = \"{db}\"\n[audit]\ncheckpoint_every = 25\n\
             [m365]\nmode = \"graph\"\ngraph_url = \"{sim_url}/v1.0\"\nlogin_url = \"{sim_url}\"\ntenant_id = \"harness\"\n\
             client_id = \"repli\"\ndns = \"simulator\"\ndns_url = \"{sim_url}\"\nbudget_seconds = 60\n[engine]\nlease_seconds = 2\n",
            db = dir.join("repli.db").display()
        ),
    )?;
    Ok(Harness {
        replid: crate::replid_proc::sibling("replid")?,
        config,
        dir: dir.to_owned(),
        url: format!("http://127.0.0.1:{port}"),
        sim_url,
        secret,
    })
}

pub async fn run(a: &CrashBench) -> anyhow::Result<CrashFigures> {
    anyhow::ensure!((1..=10_000).contains(&a.rounds), "--rounds must be between 1 and 10000");
    anyhow::ensure!((1..=200).contains(&a.agents), "--agents must be between 1 and 200");
    if a.export {
        return crate::crash_export::run(a).await;
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("repli-crash-").tempdir()?;
    let dir = tmp.path().to_owned();
    let secret = "harness-secret".to_string();
    let (_sim, sim_url) = start_simulator(&dir, a.latency_ms, &secret, &[]).await?;
    let h = harness(&dir, sim_url, secret)?;
    let token = user(&h, "ops", "Banc de reprise")?;
    let mut child = h.start_replid(0).await?;
    let ops = Client::new(&h.url, Some(token))?;
    ops.import_inventory(&ImportRequest {
        files: vec![ImportFile { source: "pool.csv".into(), csv: SAMPLE_POOL.into() }],
    })
    .await?;

    let mut rng = fastrand::Rng::with_seed(a.seed);
    let mut crises: Vec<CrisisId> = Vec::new();
    let mut driven: Vec<Driven> = Vec::new();
    let mut kills = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60 + u64::from(a.rounds) * 20);
    let new_crisis = |insee: &'static str| {
        let ops = &ops;
        async move {
            let c = ops.request_crisis(&request(insee, a.agents)?, None).await?;
            let agents = (1..=a.agents)
                .map(|i| AgentInput { name: format!("Agent Reprise{i:03}"), service: "Services".into() })
                .collect();
            ops.set_agents(c.id.as_str(), &AgentsRequest { agents }).await?;
            ops.act(&c.id, CrisisAction::Activate, None).await?;
            anyhow::Ok(c.id)
        }
    };
    if a.mixed {
        for (i, insee) in COMMUNES.iter().enumerate() {
            let fate = [Fate::Cancelled, Fate::HandedBack, Fate::Ready][i % 3];
            let id = new_crisis(insee).await?;
            let cancel_at = Instant::now() + Duration::from_millis(rng.u64(0..3_000));
            crises.push(id.clone());
            driven.push(Driven { id, fate, cancel_at, settled: false });
        }
    }
    loop {
        let settled = if a.mixed {
            drive(&ops, &mut driven).await
        } else {
            // A new crisis whenever every activated one is ready and its activation run
            // finished (its last step announces the kit after the ready transition).
            let mut all_ready = true;
            for id in &crises {
                let c = ops.crisis(id.as_str()).await?;
                let runs = ops.steps(id.as_str()).await?.runs;
                all_ready &= c.state == CrisisState::Ready && runs.iter().all(|r| r.state != RunState::Running);
            }
            if all_ready && kills < a.rounds {
                let Some(insee) = COMMUNES.get(crises.len()) else { break };
                crises.push(new_crisis(insee).await?);
                false
            } else {
                all_ready
            }
        };
        if settled && (a.mixed || kills >= a.rounds) {
            break;
        }
        if Instant::now() > deadline {
            // Say where each crisis stands: its state and every step of a run not succeeded.
            let mut stuck = Vec::new();
            for id in &crises {
                let state = ops.crisis(id.as_str()).await.map(|c| format!("{:?}", c.state)).unwrap_or_default();
                let steps = ops.steps(id.as_str()).await.map(|v| v.runs).unwrap_or_default();
                let open: Vec<String> = steps
                    .iter()
                    .flat_map(|r| {
                        r.steps.iter().filter(|s| s.state != StepState::Succeeded).map(move |s| {
                            let why = s.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                            format!("{}/{}={:?}{why}", r.playbook.as_str(), s.step, s.state)
                        })
                    })
                    .collect();
                stuck.push(format!("{id} {state} [{}]", open.join(" ")));
            }
            bail!("not every crisis reached its end in time (see {}): {}", dir.display(), stuck.join("; "));
        }
        if kills < a.rounds {
            // Let it work for a random while, ops confirming tasks meanwhile, then SIGKILL.
            let work = Duration::from_millis(rng.u64(100..1_500));
            let until = Instant::now() + work;
            while Instant::now() < until {
                confirm_tasks(&ops).await;
                if a.mixed {
                    drive(&ops, &mut driven).await;
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(20..200))).await;
            }
            child.start_kill()?;
            let _ = child.wait().await;
            kills += 1;
            child = h.start_replid(kills).await?;
        } else {
            confirm_tasks(&ops).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The verdict.
    let mut problems = Vec::new();
    let mut all_steps = true;
    let mut allocation_ok = true;
    for id in &crises {
        let v = ops.steps(id.as_str()).await?;
        // A run a cancellation stopped keeps the steps it never reached.
        for s in v.runs.iter().filter(|r| r.state != RunState::Cancelled).flat_map(|r| &r.steps) {
            if s.state != StepState::Succeeded {
                all_steps = false;
                problems.push(format!("{id}: step {} is {}", s.step, s.state));
            }
        }
        let c = ops.crisis(id.as_str()).await?;
        if c.state != CrisisState::Ready {
            continue; // the kit went back: nothing is held
        }
        let items = ops.inventory_items().await?;
        for n in &c.needs {
            let held =
                items.iter().filter(|i| i.crisis.as_deref() == Some(id.as_str()) && i.item.kind == n.kind).count()
                    as i64;
            if held != n.wanted || n.allocated != n.wanted {
                allocation_ok = false;
                problems.push(format!("{id}: {} held {held}, wanted {}", n.kind.as_str(), n.wanted));
            }
        }
    }
    let state: Value = reqwest::get(format!("{}/_sim/state", h.sim_url)).await?.json().await?;
    // Kits handed back or called off are deleted: only the ready ones remain in the tenant.
    let mut ready = 0u64;
    let mut wound_down = true;
    for id in &crises {
        let c = ops.crisis(id.as_str()).await?;
        if c.state == CrisisState::Ready {
            ready += 1;
            continue;
        }
        let domain = repli_core::m365::backup_domain("{slug}.secours-amp.fr", &c.commune_name, c.commune.as_str())?;
        let suffix = format!("@{domain}");
        for u in state["users"].as_array().into_iter().flatten() {
            let upn = u["userPrincipalName"].as_str().unwrap_or_default().to_ascii_lowercase();
            if upn.ends_with(&suffix) && u["accountEnabled"] != Value::Bool(false) {
                wound_down = false;
                problems.push(format!("{id} ({}): account {upn} still enabled", c.state));
            }
        }
    }
    let n = ready;
    let agents = u64::from(a.agents);
    let expected = [
        ("domains", n),
        ("users", n * agents),
        // Each account holds every configured SKU (a suite and Teams by default).
        ("licensesAssigned", n * agents * repli_m365::DEFAULT_SKUS.len() as u64),
        ("groups", n),
        ("teams", n),
        ("channels", 3 * n),
    ];
    let mut objects_ok = true;
    let meetings = state["counts"]["onlineMeetings"].as_u64().unwrap_or(u64::MAX);
    // Meetings are not deleted at hand-back (they end on their own): one per provisioned kit.
    if (!a.mixed && meetings != n) || meetings > crises.len() as u64 {
        objects_ok = false;
        problems.push(format!("simulator holds {meetings} onlineMeetings for {n} ready kits"));
    }
    for (kind, want) in expected {
        let got = state["counts"][kind].as_u64().unwrap_or(u64::MAX);
        if got != want {
            objects_ok = false;
            problems.push(format!("simulator holds {got} {kind}, expected {want}"));
        }
    }
    if let Some(groups) = state["groups"].as_array() {
        for g in groups {
            if g["members"].as_u64() != Some(agents) {
                objects_ok = false;
                problems.push(format!("group {} has {} members", g["mailNickname"], g["members"]));
            }
        }
    }
    let auditor = Client::new(&h.url, Some(user(&h, "auditor", "Auditeur du banc")?))?;
    let verify = auditor.audit_verify().await?;
    if !verify.verified {
        problems.push(format!("audit: {}", verify.error.as_deref().unwrap_or("?")));
    }
    let (audit_verified, audit_entries) = (verify.verified, verify.entries);
    child.start_kill()?;
    let _ = child.wait().await;
    let db = dir.join("repli.db");
    let reclaimed = repli_app::offline::bundle(&db)
        .await?
        .entries
        .iter()
        .filter(|e| e.action_kind() == Some(repli_core::AuditAction::EngineStepReclaimed))
        .count() as u64;
    let stranded = repli_app::offline::missing_runs(&db).await?;
    for (id, playbook) in &stranded {
        problems.push(format!("{id}: stranded without its {playbook} run"));
    }
    let workdir = if a.keep { Some(tmp.keep()) } else { None };
    Ok(CrashFigures {
        rounds: a.rounds,
        kills,
        reclaimed_steps: reclaimed,
        crises: crises.iter().map(ToString::to_string).collect(),
        seconds: started.elapsed().as_secs_f64(),
        all_steps_succeeded: all_steps,
        exactly_expected_objects: objects_ok,
        no_item_allocated_twice: Some(allocation_ok),
        audit_verified,
        audit_entries,
        no_crisis_stranded: a.mixed.then_some(stranded.is_empty()),
        cancelled_kits_wound_down: a.mixed.then_some(wound_down),
        export: None,
        problems,
        workdir,
    })
}
