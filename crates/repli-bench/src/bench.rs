//! `repli-bench`: measured figures for docs/PERFORMANCE.md (never timed assertions in tests).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use repli_app::records::AuditRecord as Record;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Audit chain: append rate, and verify rate against raw SHA-256 over the same bytes.
    Audit(AuditBench),
    /// Microsoft 365 provisioning against a fresh Graph simulator, batched and concurrent,
    /// next to a sequential baseline (one call at a time, no batch) as an admin script would.
    Provision(ProvisionBench),
    /// Several communes' kits provisioned at once against one simulated tenant and one Graph
    /// connection (its throttle gate shared): when each kit was ready against the lower bound.
    Campaign(crate::campaign::CampaignBench),
    /// The engine under SIGKILL: real replid and Graph simulator processes, replid killed at
    /// random moments and restarted until every crisis is ready; then the checks.
    Crash(crate::crash::CrashBench),
    /// replid's API reads (health, me, one crisis, the list) against a bare axum handler in the
    /// same run: requests/s in a closed loop, p50/p99 at a fixed rate.
    Api(crate::api::ApiBench),
    /// `replid backup` run again and again as separate processes beside a running replid that
    /// clients keep writing to: failed backups, failed writes (5xx), write latencies, and
    /// whether every snapshot verifies and every acknowledged write is stored.
    BackupLoad(crate::snapshots::BackupLoadBench),
    /// The snapshot tamper suite: each tampering of a genuine snapshot, and whether `restore
    /// --check` and `restore` refused it (0 accepted is the only passing result).
    Tamper(crate::snapshots::TamperBench),
    /// replid on a small tmpfs filled by writing clients: acknowledged against stored, how
    /// refusals were answered, `/readyz` while full, recovery without restart (needs root).
    DiskFull(crate::diskfull::DiskFullBench),
    /// The inventory page's list over a large pool (5,000 items by default): each search,
    /// filter, sort and page the page offers, p50/p99 of the statements it runs.
    Inventory(crate::inventory::InventoryBench),
    /// The data hand-back's export: mailboxes of many messages and large files against the
    /// simulator at a latency and a throttle; time against the lower bound, peak RSS.
    Handback(crate::handback::HandbackBench),
}

/// How the simulator states a 429's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryAfter {
    Decimal,
    Seconds,
    HttpDate,
}

impl From<RetryAfter> for repli_graph_sim::RetryAfterFormat {
    fn from(r: RetryAfter) -> Self {
        match r {
            RetryAfter::Decimal => Self::Decimal,
            RetryAfter::Seconds => Self::Seconds,
            RetryAfter::HttpDate => Self::HttpDate,
        }
    }
}

/// The simulated tenant and kit size both provisioning benchmarks take.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// Agents per kit.
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
    /// Simulated Graph round-trip latency.
    #[arg(long, default_value_t = 100)]
    pub latency_ms: u64,
    /// Simulated throttling: requests per second (each request of a `$batch` counts).
    #[arg(long)]
    pub throttle_rps: Option<u32>,
    /// Count each `$batch` itself against the throttle too (Microsoft's pages speak only of
    /// its requests; the client then learns from a batch refused whole that batches count).
    #[arg(long)]
    pub batch_envelope_counts: bool,
}

impl TenantArgs {
    /// The throttle as the bench's header states it.
    pub fn throttle_label(&self) -> String {
        match (self.throttle_rps, self.batch_envelope_counts) {
            (None, _) => "off".to_string(),
            (Some(r), false) => format!("{r} req/s"),
            (Some(r), true) => format!("{r} req/s, each $batch counted too"),
        }
    }

    /// One kit's critical path at this latency (the lower bound without throttling).
    pub fn critical_path_seconds(&self) -> f64 {
        f64::from(repli_m365::critical_path_calls(self.agents)) * self.latency_ms as f64 / 1000.0
    }
}

#[derive(Debug, Args)]
pub struct ProvisionBench {
    #[command(flatten)]
    pub tenant: TenantArgs,
    /// Skip the sequential baseline (it takes calls × latency).
    #[arg(long)]
    pub no_baseline: bool,
    /// Then hand the kit back (wind-down, group, accounts, domain) and check nothing is left.
    #[arg(long)]
    pub handback: bool,
    /// How throttled answers state their `Retry-After`: `decimal` (the time left, as Graph's
    /// documented sample answer), `seconds` (whole, rounded up) or `http-date`.
    #[arg(long, value_enum, default_value = "decimal")]
    pub retry_after: RetryAfter,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ProvisionRun {
    seconds: f64,
    http_calls: u64,
    graph_requests: u64,
    distinct_requests: u64,
    /// Graph requests sent per distinct request (resends included; target ≤ 1.5 throttled).
    sent_per_request: f64,
    retries: u64,
    throttled: u64,
    /// The hand-back, when asked (`--handback`; everything gone, no licence left): wall time,
    /// Graph requests sent and distinct.
    handback_seconds: Option<f64>,
    handback_requests: Option<(u64, u64)>,
}

#[derive(Debug, Serialize)]
struct ProvisionFigures {
    agents: usize,
    latency_ms: u64,
    throttle_rps: Option<u32>,
    batch_envelope_counts: bool,
    critical_path_calls: u32,
    /// max(critical path × latency, requests ÷ throttle rate).
    lower_bound_seconds: f64,
    /// The first kit on a tenant the client knows nothing of: it learns the pace (a 429 when
    /// throttled; three batches held until answered when not).
    repli: ProvisionRun,
    /// repli wall time ÷ lower bound (target ≤ 1.25).
    ratio_to_bound: f64,
    /// What the first run learnt of the tenant's pace.
    pace: repli_m365::GraphPace,
    /// The same kit on a fresh tenant by a client that starts from that pace (replid keeps it
    /// per tenant across restarts: every kit but the first a tenant ever sees).
    known: ProvisionRun,
    known_ratio_to_bound: f64,
    baseline: Option<ProvisionRun>,
    /// baseline wall time ÷ repli wall time (target ≥ 10).
    speedup: Option<f64>,
}

/// A fresh simulated tenant at `tenant`'s latency and throttle, licences for `licences`
/// accounts, and a Graph client on it (batched or not, `concurrency` in flight).
pub(crate) async fn simulated_tenant(
    tenant: &TenantArgs,
    retry_after: RetryAfter,
    licences: usize,
    batch: bool,
    concurrency: usize,
) -> anyhow::Result<(repli_graph_sim::Simulator, repli_m365::GraphProvider)> {
    use repli_graph_sim::{Faults, SimConfig, Simulator};
    let config = SimConfig {
        faults: Faults {
            latency_ms: tenant.latency_ms,
            throttle_rps: tenant.throttle_rps,
            batch_envelope_counts: tenant.batch_envelope_counts,
            retry_after_format: retry_after.into(),
            ..Faults::default()
        },
        team_delay: std::time::Duration::ZERO,
        meeting_policies: vec![repli_graph_sim::PolicyGrant::Global],
        licences: u32::try_from(licences).unwrap_or(u32::MAX).saturating_add(10),
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", config).await?;
    let mut graph = repli_m365::GraphConfig::new(
        &sim.graph_url(),
        sim.base_url(),
        "bench",
        "repli-bench",
        repli_m365::Secret::new("bench"),
    );
    graph.batch = batch;
    graph.concurrency = concurrency;
    graph.budget = std::time::Duration::from_secs(3600);
    Ok((sim, repli_m365::GraphProvider::new(graph)?))
}

/// The kit of one commune, with `agents` agents.
pub(crate) fn kit_spec(crisis_id: &str, commune: &str, domain: &str, agents: usize) -> repli_m365::KitSpec {
    repli_m365::KitSpec {
        crisis_id: crisis_id.into(),
        commune: commune.into(),
        domain: domain.into(),
        agents: (0..agents)
            .map(|i| repli_m365::AgentSpec { name: format!("Agent {i}"), service: "Services".into() })
            .collect(),
        channels: vec![("Cellule de crise".into(), String::new()), ("Services".into(), String::new())],
        meeting_start: "2026-11-23T09:00:00+01:00".into(),
        meeting_end: "2026-11-23T09:30:00+01:00".into(),
    }
}

/// One kit on a fresh simulated tenant. `recall`: the client starts from this pace, as replid
/// does from the one it kept (`graph_pace`); the pace the run ends with is returned.
async fn provision_once(
    p: &ProvisionBench,
    batch: bool,
    concurrency: usize,
    recall: Option<repli_m365::GraphPace>,
) -> anyhow::Result<(ProvisionRun, repli_m365::GraphPace)> {
    let (sim, m365) = simulated_tenant(&p.tenant, p.retry_after, p.tenant.agents, batch, concurrency).await?;
    let dns = repli_m365::HttpDnsPublisher::new(sim.base_url());
    let spec = kit_spec("13005-2026-001", "Aubagne", "aubagne.secours-amp.fr", p.tenant.agents);
    if let Some(pace) = recall {
        repli_m365::M365::recall_pace(&m365, pace);
    }
    let t = Instant::now();
    repli_m365::provision(&m365, &dns, &spec).await?;
    let pace = repli_m365::M365::pace(&m365);
    let seconds = t.elapsed().as_secs_f64();
    let n = sim.counts();
    anyhow::ensure!(n.users == p.tenant.agents && n.groups == 1 && n.teams == 1, "incomplete provisioning: {n:?}");
    let s = repli_m365::M365::stats(&m365);
    // The hand-back is measured once, after the first kit.
    let handback_seconds = if p.handback && batch && recall.is_none() {
        use repli_m365::M365;
        let t = Instant::now();
        let down = m365.wind_down_accounts(&spec.domain).await?;
        anyhow::ensure!(down.accounts.len() == p.tenant.agents, "wind-down saw {} accounts", down.accounts.len());
        m365.delete_group(&spec.nickname()).await?;
        m365.delete_accounts(&spec.domain).await?;
        m365.remove_domain(&spec.domain, false).await?;
        let left = sim.counts();
        anyhow::ensure!(
            left.domains + left.users + left.groups + left.licenses_assigned == 0,
            "left after the hand-back: {left:?}"
        );
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    let after = repli_m365::M365::stats(&m365);
    let handback_requests = handback_seconds
        .map(|_| (after.graph_requests - s.graph_requests, after.distinct_requests - s.distinct_requests));
    sim.stop().await;
    let run = ProvisionRun {
        seconds,
        http_calls: s.http_calls,
        graph_requests: s.graph_requests,
        distinct_requests: s.distinct_requests,
        sent_per_request: s.graph_requests as f64 / s.distinct_requests.max(1) as f64,
        retries: s.retries,
        throttled: s.throttled,
        handback_seconds,
        handback_requests,
    };
    Ok((run, pace))
}

async fn provision_bench(p: &ProvisionBench) -> anyhow::Result<ProvisionFigures> {
    anyhow::ensure!((1..=5000).contains(&p.tenant.agents), "--agents must be between 1 and 5000");
    let (repli, pace) = provision_once(p, true, repli_m365::DEFAULT_CONCURRENCY, None).await?;
    // The same kit on a fresh tenant by a client that starts from what the first run learnt, as
    // replid does after a restart: the tenant's pace is kept in its database.
    let (known, _) = provision_once(p, true, repli_m365::DEFAULT_CONCURRENCY, Some(pace)).await?;
    let baseline = if p.no_baseline { None } else { Some(provision_once(p, false, 1, None).await?.0) };
    let critical = repli_m365::critical_path_calls(p.tenant.agents);
    let by_latency = p.tenant.critical_path_seconds();
    // Requests that had to be served once each (retries are the client's cost, not the bound's).
    let needed = repli.distinct_requests as f64;
    let by_rate = p.tenant.throttle_rps.map_or(0.0, |r| needed / f64::from(r.max(1)));
    let bound = by_latency.max(by_rate);
    let ratio = |seconds: f64| if bound > 0.0 { seconds / bound } else { 0.0 };
    Ok(ProvisionFigures {
        agents: p.tenant.agents,
        latency_ms: p.tenant.latency_ms,
        throttle_rps: p.tenant.throttle_rps,
        batch_envelope_counts: p.tenant.batch_envelope_counts,
        critical_path_calls: critical,
        lower_bound_seconds: bound,
        ratio_to_bound: ratio(repli.seconds),
        known_ratio_to_bound: ratio(known.seconds),
        speedup: baseline.as_ref().map(|b| b.seconds / repli.seconds),
        pace,
        repli,
        known,
        baseline,
    })
}

#[derive(Debug, Args)]
pub struct AuditBench {
    /// Entries to append.
    #[arg(long, default_value_t = 100_000)]
    pub entries: u32,
    /// Entries per transaction (1 = one transaction per entry, as a state change does).
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// Folder for the database (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct AuditFigures {
    entries: u32,
    batch: u32,
    append_seconds: f64,
    append_per_second: f64,
    /// End to end: SQLite read + decoding + chain verification, one page at a time.
    verify_seconds: f64,
    verify_per_second: f64,
    /// The chain verification itself over entries in memory (as `audit verify --bundle`).
    chain_seconds: f64,
    chain_per_second: f64,
    canonical_bytes: u64,
    raw_sha256_seconds: f64,
    raw_sha256_per_second: f64,
    /// chain verification rate ÷ raw SHA-256 rate over the same bytes (target ≥ 0.5).
    ratio: f64,
    /// end-to-end verify rate from the SQLite file ÷ raw SHA-256 rate.
    ratio_from_sqlite: f64,
    database_bytes: u64,
}

fn record(i: u32) -> Record {
    Record {
        commune: Some("13005".into()),
        crisis: Some("13005-2026-001".into()),
        // A realistic entry of the kind the engine writes most; the benchmark used to invent a
        // `graph.call` action, which nothing else writes and the action enum does not have.
        action: repli_core::AuditAction::EngineStepSucceeded,
        target: format!("users/agent{i:06}@aubagne.secours-amp.fr"),
        details: json!({ "method": "POST", "path": "/v1.0/users", "status": 201, "id": format!("{i:08x}-0000-4000-8000-00000000abcd") }),
    }
}

async fn audit(a: &AuditBench) -> anyhow::Result<AuditFigures> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let db = dir.join("bench-audit.db");
    if db.exists() {
        anyhow::bail!("{} exists: choose an empty --dir", db.display());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).context("no randomness")?;
    let now: jiff::Timestamp = "2026-11-23T08:00:00Z".parse()?;
    let batch = a.batch.max(1);
    let run = repli_app::offline::audit_workload(
        &db,
        a.entries,
        batch,
        ed25519_dalek::SigningKey::from_bytes(&seed),
        record,
        now,
    )
    .await?;
    let (append, verify, summary) = (run.append.as_secs_f64(), run.verify.as_secs_f64(), run.summary);
    anyhow::ensure!(
        summary.entries == u64::from(a.entries),
        "verified {} entries, appended {}",
        summary.entries,
        a.entries
    );

    // The same bytes, hashed with nothing else around them.
    let bundle = run.bundle;
    let t = Instant::now();
    let chain = repli_core::audit::verify_chain(&bundle.entries)?;
    let chain_seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(chain.entries == u64::from(a.entries), "in-memory verification disagrees");
    let bytes: Vec<Vec<u8>> = bundle.entries.iter().map(repli_core::AuditEntry::canonical_bytes).collect();
    let total: u64 = bytes.iter().map(|b| b.len() as u64).sum();
    let t = Instant::now();
    let mut acc = 0u8;
    for b in &bytes {
        acc ^= Sha256::digest(b)[0];
    }
    let raw = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    let database_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let n = f64::from(a.entries);
    Ok(AuditFigures {
        entries: a.entries,
        batch,
        append_seconds: append,
        append_per_second: n / append,
        verify_seconds: verify,
        verify_per_second: n / verify,
        canonical_bytes: total,
        raw_sha256_seconds: raw,
        raw_sha256_per_second: n / raw,
        chain_seconds,
        chain_per_second: n / chain_seconds,
        ratio: raw / chain_seconds,
        ratio_from_sqlite: raw / verify,
        database_bytes,
    })
}

pub async fn run(cmd: &BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Inventory(a) => {
            let f = crate::inventory::run(a).await?;
            if a.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!("inventory list bench: {} items, {} runs per query (statements only)", f.items, f.runs);
                for q in &f.queries {
                    println!(
                        "  {:<24} {:>5} matched   p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
                        q.name, q.matched, q.p50_ms, q.p99_ms, q.max_ms
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCmd::Api(a) => {
            let f = crate::api::run(a).await?;
            if a.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!(
                    "api bench (loopback): closed loop {} connections × {} s, open loop {} req/s, {} crises",
                    f.connections, f.seconds, f.rate, f.crises
                );
                for t in &f.targets {
                    println!(
                        "  {:<18} {:>7} B {:>9.0} req/s  {:>5.1} % of bare axum   p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}",
                        t.name,
                        t.response_bytes,
                        t.requests_per_second,
                        t.share_of_bare * 100.0,
                        t.p50_ms,
                        t.p99_ms,
                        t.max_ms,
                        t.errors
                    );
                    if let (Some(w), Some(e)) = (t.writes_per_second, t.write_errors) {
                        println!("  {:<18} {w:>9.0} writes/s during the measurement, {e} failed", "");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCmd::Crash(c) => {
            let f = crate::crash::run(c).await?;
            let ok = f.all_steps_succeeded
                && f.exactly_expected_objects
                && f.no_item_allocated_twice != Some(false)
                && f.audit_verified
                && f.problems.is_empty();
            if c.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!(
                    "crash bench (SIMULATION): {} SIGKILLs over {} crise(s) in {:.1} s",
                    f.kills,
                    f.crises.len(),
                    f.seconds
                );
                println!("  steps reclaimed after a dead daemon's lease: {}", f.reclaimed_steps);
                println!("  every step succeeded:            {}", f.all_steps_succeeded);
                println!("  exactly the expected M365 objects: {}", f.exactly_expected_objects);
                if let Some(once) = f.no_item_allocated_twice {
                    println!("  no item allocated twice:         {once}");
                }
                if let Some(e) = &f.export {
                    println!(
                        "  export: {} kill(s) mid-export (journal at each: {:?}), {} item(s), {} in the manifest",
                        e.kills_during_export, e.journal_at_kills, e.items, e.manifest_entries
                    );
                    println!("  archive verifies (pinned key):   {}", e.archive_verified);
                    println!("  every item exactly once:         {}", e.items_exactly_once);
                    println!("  fetched again:                   {} (at most {})", e.refetched, e.refetch_bound);
                    println!("  deletions ran:                   {}", e.deletions_ran);
                }
                println!("  audit log verifies:              {} ({} entries)", f.audit_verified, f.audit_entries);
                for p in &f.problems {
                    println!("  PROBLEM: {p}");
                }
                if let Some(d) = &f.workdir {
                    println!("  working folder kept: {}", d.display());
                }
            }
            Ok(if ok { ExitCode::SUCCESS } else { crate::failure() })
        }
        BenchCmd::DiskFull(b) => {
            let f = crate::diskfull::disk_full(b).await?;
            if b.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!(
                    "disk full: replid on a {} MiB tmpfs, {} writing clients, {:.1} s",
                    f.size_mb, f.writers, f.seconds
                );
                println!(
                    "  acknowledged {} · stored {} · stored but not acknowledged {} · duplicates {}",
                    f.acknowledged, f.stored, f.stored_not_acknowledged, f.duplicates
                );
                for (k, n) in &f.refused {
                    println!("  refused: {n} × {k}");
                }
                println!("  /readyz while full: {}", f.readyz_while_full);
                println!(
                    "  recovered without restart: {} · audit chain verified: {}",
                    f.recovered_without_restart, f.audit_verified
                );
            }
            Ok(if f.ok() { ExitCode::SUCCESS } else { crate::failure() })
        }
        BenchCmd::BackupLoad(b) => {
            let f = crate::snapshots::backup_load(b).await?;
            if b.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!(
                    "backup under load: {} `replid backup` processes beside replid and {} writing clients, {:.1} s",
                    f.backups, f.writers, f.seconds
                );
                println!(
                    "  backups failed: {} (mean {:.2} s, max {:.2} s); snapshots verified: {}",
                    f.backup_failures, f.backup_seconds_mean, f.backup_seconds_max, f.snapshots_verified
                );
                println!(
                    "  writes: {} ok, {} failed ({} 5xx); during backups p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    f.writes_ok, f.writes_failed, f.writes_5xx, f.write_ms_p50, f.write_ms_p99, f.write_ms_max
                );
                println!(
                    "  baseline (no backup, {} writes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    f.baseline_writes, f.baseline_ms_p50, f.baseline_ms_p99, f.baseline_ms_max
                );
                println!("  acknowledged writes stored: {} of {}", f.writes_stored, f.writes_ok);
                if let Some(e) = &f.first_backup_error {
                    println!("  first error: {e}");
                }
            }
            Ok(if f.ok() { ExitCode::SUCCESS } else { crate::failure() })
        }
        BenchCmd::Tamper(t) => {
            let f = crate::snapshots::tamper(t).await?;
            if t.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!("snapshot tamper suite: {} variants, {} accepted", f.variants, f.accepted);
                for r in &f.rows {
                    let said = r.check.as_deref().unwrap_or("ACCEPTED");
                    println!("  {:<42} {}", r.variant, if r.accepted { "ACCEPTED" } else { said });
                }
                if let Some(d) = &f.workdir {
                    println!("  working folder kept: {}", d.display());
                }
            }
            Ok(if f.accepted == 0 { ExitCode::SUCCESS } else { crate::failure() })
        }
        BenchCmd::Campaign(c) => crate::campaign::run(c).await,
        BenchCmd::Handback(h) => {
            let f = crate::handback::run(h).await?;
            if h.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!(
                    "handback bench (SIMULATION): {} mailboxes × {} messages, {} bytes of files, {} ms latency, throttle {} req/s, {} B/s per download, {} at once",
                    h.mailboxes,
                    h.messages,
                    h.file_bytes,
                    h.latency_ms,
                    h.throttle_rps,
                    h.download_bytes_per_s,
                    h.concurrency
                );
                println!(
                    "  {} items, {} bytes exported ({}), {} Graph requests ({} throttled)",
                    f.items,
                    f.bytes,
                    if f.complete { "complete" } else { "INCOMPLETE" },
                    f.graph_requests,
                    f.throttled
                );
                println!(
                    "  {:.1} s against a lower bound of {:.1} s: {:.2}×; peak RSS {:.0} MiB",
                    f.seconds, f.lower_bound_seconds, f.ratio, f.peak_rss_mib
                );
            }
            Ok(if f.complete { ExitCode::SUCCESS } else { crate::failure() })
        }
        BenchCmd::Provision(p) => {
            let f = provision_bench(p).await?;
            if p.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!(
                    "provision bench (SIMULATION): {} agents, {} ms latency, throttle {}",
                    f.agents,
                    f.latency_ms,
                    p.tenant.throttle_label()
                );
                let line = |name: &str, r: &ProvisionRun| {
                    println!(
                        "  {name:<10} {:>8.2} s  {:>5} HTTP calls  {:>5} Graph requests for {} distinct ({:.2} each)  {:>4} retries  {:>4} throttled",
                        r.seconds,
                        r.http_calls,
                        r.graph_requests,
                        r.distinct_requests,
                        r.sent_per_request,
                        r.retries,
                        r.throttled
                    )
                };
                line("repli", &f.repli);
                line("pace kept", &f.known);
                if let (Some(h), Some((sent, distinct))) = (f.repli.handback_seconds, f.repli.handback_requests) {
                    println!(
                        "  hand-back  {h:>8.2} s  {sent:>5} Graph requests for {distinct} distinct ({:.2} each); nothing left",
                        sent as f64 / distinct.max(1) as f64
                    );
                }
                if let Some(b) = &f.baseline {
                    line("sequential", b);
                }
                println!(
                    "  lower bound {:.2} s (critical path {} calls × {} ms{}); ratio {:.2} (target ≤ 1.25)",
                    f.lower_bound_seconds,
                    f.critical_path_calls,
                    f.latency_ms,
                    if f.throttle_rps.is_some() { ", or requests ÷ rate if larger" } else { "" },
                    f.ratio_to_bound
                );
                println!(
                    "  with the pace kept from the first run ({}): ratio {:.2} (target ≤ 1.25)",
                    match (f.pace.limit_per_second, f.pace.open) {
                        (Some(l), _) if f.pace.batch_counted => format!("{l} requests a second, each $batch one"),
                        (Some(l), _) => format!("{l} requests a second"),
                        (None, true) => "never throttled, waves whole".to_string(),
                        (None, false) => "nothing learnt".to_string(),
                    },
                    f.known_ratio_to_bound
                );
                if let Some(s) = f.speedup {
                    println!("  speed-up over the sequential baseline: {s:.1}× (target ≥ 10)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCmd::Audit(a) => {
            let f = audit(a).await?;
            if a.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!("audit bench: {} entries, {} per transaction", f.entries, f.batch);
                println!("  append        {:>10.0} entries/s  ({:.2} s)", f.append_per_second, f.append_seconds);
                println!(
                    "  verify        {:>10.0} entries/s  ({:.2} s, SQLite read + canonical encoding + SHA-256 + links)",
                    f.verify_per_second, f.verify_seconds
                );
                println!(
                    "  raw SHA-256   {:>10.0} entries/s  ({:.2} s over the same {} bytes)",
                    f.raw_sha256_per_second, f.raw_sha256_seconds, f.canonical_bytes
                );
                println!(
                    "  chain verify  {:>10.0} entries/s  ({:.2} s, entries in memory, as for a bundle)",
                    f.chain_per_second, f.chain_seconds
                );
                println!("  ratio chain verify / raw SHA-256 = {:.2} (target ≥ 0.5)", f.ratio);
                println!("  ratio end-to-end verify from SQLite / raw SHA-256 = {:.2}", f.ratio_from_sqlite);
                println!("  database size {} MB", f.database_bytes / 1_000_000);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness at a small scale (CI), on a throttled tenant that counts each `$batch` and on
    /// one that counts only its requests: the kit made, handed back with nothing left, then made
    /// again by a client starting from the pace the first run learnt.
    #[tokio::test]
    async fn a_small_provision_bench_provisions_hands_back_and_keeps_the_pace() {
        let run = |batch_envelope_counts: bool| async move {
            let p = ProvisionBench {
                tenant: TenantArgs { agents: 15, latency_ms: 5, throttle_rps: Some(20), batch_envelope_counts },
                no_baseline: true,
                handback: true,
                retry_after: RetryAfter::Decimal,
                json: true,
            };
            let f = provision_bench(&p).await.unwrap();
            assert!(f.repli.throttled > 0, "never throttled: the run proves nothing: {:?}", f.repli);
            assert!(f.repli.handback_seconds.is_some() && f.known.handback_seconds.is_none(), "{f:?}");
            assert!(f.pace.limit_per_second.is_some(), "a limit learnt from the 429s: {:?}", f.pace);
            if !batch_envelope_counts {
                assert!(!f.pace.batch_counted, "Graph never refused a batch whole: {:?}", f.pace);
            }
            assert_eq!(f.known.distinct_requests, f.repli.distinct_requests);
            assert!(f.lower_bound_seconds > 0.0 && f.ratio_to_bound > 0.0 && f.known_ratio_to_bound > 0.0, "{f:?}");
        };
        tokio::join!(run(false), run(true));
    }
}
