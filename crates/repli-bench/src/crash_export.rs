//! `repli-bench crash --export`: kill -9 during the hand-back's export, for real. One crisis is
//! provisioned, filled in the simulator with mail and (slowly downloaded) files, and handed
//! back; each round waits until the running export has written at least one item of this
//! attempt (a new line in its journal), lets it go on a random while, and SIGKILLs replid.
//! After the last round the hand-back runs to its end. The verdict: the archive (zip and
//! folder) verifies against the audit key read from the daemon's own key file (pinned, never
//! taken from the archive); the manifest lists every item the simulator holds exactly once,
//! each exported; no item was fetched again beyond those in flight at a kill; the deletions
//! ran (no account, no group left); every step succeeded and the audit log verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use repli_core::audit::KeyPin;
use repli_core::handback::EntryStatus;
use repli_core::run::RunState;
use repli_core::{CrisisAction, CrisisState, StepState};
use repli_proto::Client;
use repli_proto::api::{AgentInput, AgentsRequest, ImportFile, ImportRequest};
use serde::Serialize;
use serde_json::{Value, json};

use crate::crash::{CrashBench, CrashFigures, SAMPLE_POOL, confirm_tasks, harness, request, start_simulator, user};

/// Items the export fetches at once (`repli_app::handback::ExportOptions::default`): at most
/// this many are in flight when a kill lands, so fetched again.
const IN_FLIGHT: u64 = 8;
/// Bytes per second each download URL sends: a file of the kit takes seconds.
const BANDWIDTH: u64 = 250_000;

#[derive(Debug, Serialize)]
pub struct ExportFigures {
    /// Kills that landed while the export step ran, after this attempt had written an item.
    pub kills_during_export: u32,
    /// Journal lines (items written) seen at each kill: it only grows.
    pub journal_at_kills: Vec<usize>,
    /// Items the simulator holds for the kit (messages and files).
    pub items: usize,
    /// Entries of the signed manifest.
    pub manifest_entries: usize,
    /// The zip and the folder verify against the pinned audit key.
    pub archive_verified: bool,
    /// Every item of the simulator once in the manifest, exported, none else; no file twice.
    pub items_exactly_once: bool,
    /// Fetches beyond one per item (those cut by a kill, fetched again).
    pub refetched: u64,
    /// Bound on `refetched`: items in flight at each kill.
    pub refetch_bound: u64,
    /// No account of the kit's domain and no group left in the tenant.
    pub deletions_ran: bool,
}

fn journal_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

async fn export_state(ops: &Client, id: &str) -> Option<StepState> {
    let v = ops.steps(id).await.ok()?;
    v.runs
        .iter()
        .filter(|r| r.playbook.as_str() == "handback")
        .flat_map(|r| &r.steps)
        .find(|s| s.step == "export")
        .map(|s| s.state)
}

/// The item a recorded request fetched: a message's MIME or a file's download URL.
fn fetched_item(line: &Value) -> Option<String> {
    let path = line["path"].as_str()?;
    if line["method"] != "GET" {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/_sim/download/") {
        return rest.split('/').nth(1).map(str::to_string);
    }
    let segs: Vec<&str> = path.trim_start_matches("/v1.0/").split('/').collect();
    match segs.as_slice() {
        ["users", _, "messages", m, "$value"] => Some((*m).to_string()),
        _ => None,
    }
}

pub async fn run(a: &CrashBench) -> anyhow::Result<CrashFigures> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("repli-crash-export-").tempdir()?;
    let dir = tmp.path().to_owned();
    let secret = "harness-secret".to_string();
    let extra = ["--download-bytes-per-s".to_string(), BANDWIDTH.to_string()];
    let (_sim, sim_url) = start_simulator(&dir, a.latency_ms, &secret, &extra).await?;
    let http = reqwest::Client::new();
    // Before any mailbox is read: enough for several kills to land mid-export.
    let spec = json!({
        "messages": 40,
        "message_bytes": 4_000,
        "files": [1_000, 400_000, 900_000],
        "awkward": true,
        "vanishing": 0,
    });
    let r = http.post(format!("{sim_url}/_sim/content")).json(&spec).send().await?;
    anyhow::ensure!(r.status().is_success(), "simulator content: {}", r.status());
    let h = harness(&dir, sim_url, secret)?;
    let token = user(&h, "ops", "Banc de reprise")?;
    let mut child = h.start_replid(0).await?;
    let ops = Client::new(&h.url, Some(token))?;
    ops.import_inventory(&ImportRequest {
        files: vec![ImportFile { source: "pool.csv".into(), csv: SAMPLE_POOL.into() }],
    })
    .await?;
    let c = ops.request_crisis(&request("13005", a.agents)?, None).await?;
    let agents = (1..=a.agents)
        .map(|i| AgentInput { name: format!("Agent Reprise{i:03}"), service: "Services".into() })
        .collect();
    ops.set_agents(c.id.as_str(), &AgentsRequest { agents }).await?;
    ops.act(&c.id, CrisisAction::Activate, None).await?;
    let id = c.id.as_str().to_string();
    let deadline = Instant::now() + Duration::from_secs(120 + u64::from(a.rounds) * 30);
    let idle = |v: &repli_proto::api::StepsView| v.runs.iter().all(|r| r.state != RunState::Running);
    loop {
        let (c, v) = (ops.crisis(&id).await?, ops.steps(&id).await?);
        if c.state == CrisisState::Ready && idle(&v) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the kit did not get ready in time (see {})", dir.display());
        confirm_tasks(&ops).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ops.act(&c.id, CrisisAction::StartHandback, Some("banc de reprise : restitution")).await?;

    let db = dir.join("repli.db");
    let root = db.with_file_name("repli.db.handback");
    let journal = root.join(".work").join(&id).join("journal.jsonl");
    let mut rng = fastrand::Rng::with_seed(a.seed);
    let mut kills = 0u32;
    let mut journal_at_kills = Vec::new();
    let mut problems = Vec::new();
    while kills < a.rounds {
        anyhow::ensure!(Instant::now() < deadline, "kills did not all land in time (see {})", dir.display());
        let state = export_state(&ops, &id).await;
        if state == Some(StepState::Succeeded) {
            problems.push(format!(
                "the export finished after {kills} kill(s) of {}: more content is needed for the rounds asked",
                a.rounds
            ));
            break;
        }
        // This attempt wrote something: a kill now lands mid-export, with items in flight.
        let before = journal_lines(&journal);
        if state != Some(StepState::Running) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let wrote = Instant::now() + Duration::from_secs(60);
        while journal_lines(&journal) <= before && Instant::now() < wrote {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
        if export_state(&ops, &id).await != Some(StepState::Running) {
            continue;
        }
        child.start_kill()?;
        let _ = child.wait().await;
        kills += 1;
        journal_at_kills.push(journal_lines(&journal));
        child = h.start_replid(kills).await?;
    }

    // Then to its end: ops confirm the retrieval and the reception.
    loop {
        let (c, v) = (ops.crisis(&id).await?, ops.steps(&id).await?);
        if c.state == CrisisState::Closed && idle(&v) {
            break;
        }
        if Instant::now() > deadline {
            let open: Vec<String> = v
                .runs
                .iter()
                .flat_map(|r| r.steps.iter())
                .filter(|s| s.state != StepState::Succeeded)
                .map(|s| format!("{}={:?} {}", s.step, s.state, s.last_error.as_deref().unwrap_or("")))
                .collect();
            bail!("the hand-back did not end in time (see {}): {}", dir.display(), open.join("; "));
        }
        confirm_tasks(&ops).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The verdict.
    let v = ops.steps(&id).await?;
    let mut all_steps = true;
    for s in v.runs.iter().flat_map(|r| &r.steps) {
        if s.state != StepState::Succeeded {
            all_steps = false;
            problems.push(format!("step {} is {}", s.step, s.state));
        }
    }
    // The key comes from the daemon's own key file, never from the archive.
    let key = repli_app::audit_key::load(&db.with_file_name("repli.db.audit-key")).context("the audit key")?;
    let trust = repli_app::handback::trust_of(&[KeyPin::Key(key.verifying_key())]);
    let mut archive_verified = true;
    let mut manifest = None;
    for path in [root.join(format!("{id}.zip")), root.join(&id)] {
        match repli_app::handback::verify_archive(&path, &trust) {
            Ok(v) => manifest = Some(v.manifest),
            Err(e) => {
                archive_verified = false;
                problems.push(format!("{}: {e}", path.display()));
            }
        }
    }
    let listing: Value = http.get(format!("{}/_sim/content", h.sim_url)).send().await?.json().await?;
    let held: BTreeSet<String> = ["messages", "files"]
        .iter()
        .flat_map(|k| listing[k].as_array().into_iter().flatten())
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    let mut exactly_once = manifest.is_some();
    let entries = manifest.as_ref().map_or(0, |m| m.entries.len());
    if let Some(m) = &manifest {
        let mut ids = BTreeSet::new();
        for e in &m.entries {
            if !ids.insert(e.graph_id.clone()) {
                exactly_once = false;
                problems.push(format!("{} is listed twice", e.graph_id));
            }
            if e.status != EntryStatus::Exported {
                exactly_once = false;
                problems.push(format!("{} ({}) is {:?}", e.original, e.graph_id, e.status));
            }
        }
        if ids != held {
            exactly_once = false;
            let missing = held.difference(&ids).count();
            let extra = ids.difference(&held).count();
            problems
                .push(format!("the manifest misses {missing} item(s) and lists {extra} the simulator does not hold"));
        }
        if !m.notes.iter().all(|n| !n.contains("tentative interrompue")) {
            problems.push("a file of an interrupted attempt was set aside".into());
        }
    }
    // Fetches per item, from the simulator's request log.
    let mut fetches: BTreeMap<String, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("graph-requests.jsonl"))?.lines() {
        let Ok(l) = serde_json::from_str::<Value>(line) else { continue };
        // A resumed download (`Range`) of the same fetch is not a new fetch: the log has no
        // headers, so count every request and bound by what was in flight.
        if let Some(item) = fetched_item(&l) {
            *fetches.entry(item).or_default() += 1;
        }
    }
    let refetched: u64 = fetches.values().map(|n| n.saturating_sub(1)).sum();
    let refetch_bound = u64::from(kills) * IN_FLIGHT;
    if refetched > refetch_bound {
        problems.push(format!(
            "{refetched} fetches beyond one per item, more than the {refetch_bound} in flight at the kills"
        ));
    }
    if journal_at_kills.windows(2).any(|w| w[1] < w[0]) {
        problems.push(format!("the journal shrank between kills: {journal_at_kills:?}"));
    }
    let state: Value = http.get(format!("{}/_sim/state", h.sim_url)).send().await?.json().await?;
    let users = state["counts"]["users"].as_u64().unwrap_or(u64::MAX);
    let groups = state["counts"]["groups"].as_u64().unwrap_or(u64::MAX);
    let deletions_ran = users == 0 && groups == 0;
    if !deletions_ran {
        problems.push(format!("the tenant still holds {users} user(s) and {groups} group(s)"));
    }
    // The manifest's hash is in the audit log, recorded complete.
    let auditor = Client::new(&h.url, Some(user(&h, "auditor", "Auditeur du banc")?))?;
    let log = auditor.audit_entries_all(&Default::default()).await?;
    let recorded =
        log.iter().filter(|e| e.action == "handback.exported").any(|e| e.details.contains("\"complete\":true"));
    if !recorded {
        problems.push("no complete handback.exported entry in the audit log".into());
    }
    let verify = auditor.audit_verify().await?;
    if !verify.verified {
        problems.push(format!("audit: {}", verify.error.as_deref().unwrap_or("?")));
    }
    child.start_kill()?;
    let _ = child.wait().await;
    let reclaimed = repli_app::offline::bundle(&db)
        .await?
        .entries
        .iter()
        .filter(|e| e.action_kind() == Some(repli_core::AuditAction::EngineStepReclaimed))
        .count() as u64;
    let workdir = if a.keep { Some(tmp.keep()) } else { None };
    Ok(CrashFigures {
        rounds: a.rounds,
        kills,
        reclaimed_steps: reclaimed,
        crises: vec![id],
        seconds: started.elapsed().as_secs_f64(),
        all_steps_succeeded: all_steps,
        exactly_expected_objects: deletions_ran,
        // Not what this mode checks.
        no_item_allocated_twice: None,
        audit_verified: verify.verified,
        audit_entries: verify.entries,
        no_crisis_stranded: None,
        cancelled_kits_wound_down: None,
        export: Some(ExportFigures {
            kills_during_export: kills,
            journal_at_kills,
            items: held.len(),
            manifest_entries: entries,
            archive_verified,
            items_exactly_once: exactly_once,
            refetched,
            refetch_bound,
            deletions_ran,
        }),
        problems,
        workdir,
    })
}
