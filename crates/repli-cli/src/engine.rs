//! `repli playbook check|plan`, `repli task list|done`, `repli step retry|skip`, and
//! `repli crisis watch`: the engine seen from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::{SignedDuration, Timestamp};
use repli_core::playbook::format_duration;
use repli_core::run::{PlaybookName, RunState};
use repli_core::{BusinessCalendar, InseeCode, StepState, fr};
use repli_engine::context::Context as TemplateContext;
use repli_proto::Client;
use repli_proto::api::StepsView;
use serde::Serialize;

use crate::output;

#[derive(Debug, Subcommand)]
pub enum PlaybookCmd {
    /// Check the playbooks (DIR/activation.toml, DIR/handback.toml) and the document templates
    /// (DIR/templates), offline: every error at once, as file:line:col: message; exit 1 on any.
    Check {
        /// The playbooks folder.
        #[arg(default_value = "playbooks")]
        dir: PathBuf,
    },
    /// The activation plan for a commune (offline): steps in order, the critical path, and the
    /// estimated ready instant against the SLA due instant.
    Plan(PlanArgs),
    /// Compare each step's estimate with the durations measured in the crises and exercises
    /// that ran (their RETEX), and propose the median; with --write, update the estimates in
    /// DIR's playbooks (comments and layout kept), so the risk forecast learns from drills.
    Calibrate(CalibrateArgs),
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The playbooks folder to compare with, and to update with --write (default: the
    /// built-in playbooks, compared only).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the proposed estimates into DIR/activation.toml and DIR/handback.toml.
    #[arg(long, requires = "dir")]
    pub write: bool,
    /// Measures a step needs before its estimate is changed.
    #[arg(long, default_value_t = 3)]
    pub min_samples: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[arg(long)]
    pub commune: InseeCode,
    #[arg(long, default_value_t = 20)]
    pub agents: u32,
    /// When the request is received (RFC 3339; default: now).
    #[arg(long)]
    pub start: Option<Timestamp>,
    /// The playbooks folder (default: the built-in playbooks).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Manual steps waiting for ops, with their instructions.
    List {
        /// Only this crisis.
        #[arg(long)]
        crisis: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Confirm a manual step as done (who and when are recorded). A DNS step is refused
    /// while the authoritative servers do not serve what it was to do, unless
    /// --dns-unchecked gives the reason (recorded in the audit log).
    Done {
        crisis: String,
        step: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, value_name = "RAISON")]
        dns_unchecked: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StepCmd {
    /// Send a failed step, or a DNS task handed to a person, back to the engine (its attempts
    /// start again).
    Retry {
        crisis: String,
        step: String,
        #[arg(long)]
        reason: String,
    },
    /// Skip a step (failed, pending or manual): its dependants may run. Audited with the reason.
    Skip {
        crisis: String,
        step: String,
        #[arg(long)]
        reason: String,
        /// Confirm without asking (scripts).
        #[arg(long)]
        yes: bool,
    },
}

pub fn check(dir: &std::path::Path) -> ExitCode {
    let (_, diags) = repli_engine::load::load_dir(dir);
    let templates = dir.join("templates");
    let template_errors = repli_docs::check_templates(&templates);
    for d in &diags {
        println!("{d}");
    }
    for e in &template_errors {
        println!("{e}");
    }
    let n = diags.len() + template_errors.len();
    if n > 0 {
        eprintln!("{n} erreur(s) dans {}", dir.display());
        return crate::failure();
    }
    println!("{} : déroulés et gabarits vérifiés, aucune erreur.", dir.display());
    ExitCode::SUCCESS
}

#[derive(Debug, Serialize)]
struct PlanStep {
    step: String,
    kind: String,
    title: String,
    needs: Vec<String>,
    estimate: String,
    finishes_after: String,
    critical: bool,
}

#[derive(Debug, Serialize)]
struct Plan {
    commune: String,
    domain: String,
    start: Timestamp,
    critical_path: Vec<String>,
    work: String,
    ready: Timestamp,
    due: Timestamp,
    /// Business time between the estimated ready instant and the due instant (negative: late).
    margin_seconds: i64,
    steps: Vec<PlanStep>,
}

pub fn plan(a: &PlanArgs) -> anyhow::Result<ExitCode> {
    let books = repli_engine::engine_playbooks(a.dir.as_deref()).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    let book = books.get(&PlaybookName::Activation).context("no activation playbook")?;
    let communes = repli_core::reference::parse_communes("communes", repli_core::reference::EMBEDDED_COMMUNES)?;
    let commune = communes
        .iter()
        .find(|c| c.insee == a.commune)
        .with_context(|| format!("commune inconnue : {} n'est pas une commune de la métropole", a.commune))?;
    let config = repli_config::Config::default();
    let domain = repli_core::m365::backup_domain(&config.m365.domain_pattern, &commune.name, commune.insee.as_str())?;
    #[allow(clippy::disallowed_methods)] // an offline plan from now: the CLI's one read of the clock
    let start = a.start.unwrap_or_else(Timestamp::now);
    let calendar = BusinessCalendar::from_spec(&config.sla.calendar)?;
    let due = calendar.add_hours(start, config.sla.business_hours)?;
    let ctx = TemplateContext {
        commune: commune.name.clone(),
        de_commune: fr::de(&commune.name),
        insee: commune.insee.to_string(),
        domain: domain.clone(),
        agents: a.agents,
        laptops: a.agents.min(50),
        routers: 1,
        printers: 1,
        sims: 1,
        due: fr::datetime(due, calendar.time_zone()),
        ..TemplateContext::default()
    };
    let schedule = book.schedule().map_err(|cycle| anyhow::anyhow!("dependency cycle: {}", cycle.join(" → ")))?;
    let ready = calendar.add(start, schedule.total)?;
    let margin = if ready <= due {
        calendar.business_time_between(ready, due)?
    } else {
        -calendar.business_time_between(due, ready)?
    };
    let steps: Vec<PlanStep> = schedule
        .order
        .iter()
        .filter_map(|id| book.step(id))
        .map(|s| PlanStep {
            step: s.id.clone(),
            kind: s.kind.to_string(),
            title: repli_engine::context::render(&s.title, &ctx).unwrap_or_else(|_| s.title.clone()),
            needs: s.needs.clone(),
            estimate: format_duration(s.estimate),
            finishes_after: format_duration(schedule.finish.get(&s.id).copied().unwrap_or(SignedDuration::ZERO)),
            critical: schedule.critical_path.contains(&s.id),
        })
        .collect();
    let plan = Plan {
        commune: format!("{} ({})", commune.name, commune.insee),
        domain,
        start,
        critical_path: schedule.critical_path.clone(),
        work: format_duration(schedule.total),
        ready,
        due,
        margin_seconds: margin.as_secs(),
        steps,
    };
    if a.json {
        output::print_json(&plan)?;
    } else {
        println!("Déroulé d'activation pour {} — domaine de secours {}", plan.commune, plan.domain);
        let mut t = output::table(&["", "Étape", "Type", "Durée estimée", "Fin au plus tôt", "Après"]);
        for s in &plan.steps {
            t.add_row(vec![
                if s.critical { "●".to_string() } else { String::new() },
                s.title.clone(),
                s.kind.clone(),
                s.estimate.clone(),
                s.finishes_after.clone(),
                s.needs.join(", "),
            ]);
        }
        println!("{t}");
        println!("● chemin critique : {} ({} de travail ouvré)", plan.critical_path.join(" → "), plan.work);
        println!("Demande reçue : {}", output::when(plan.start));
        println!("Prêt estimé   : {}", output::when(plan.ready));
        println!("Échéance SLA  : {} ({} h ouvrées)", output::when(plan.due), config.sla.business_hours);
        let m = SignedDuration::from_secs(plan.margin_seconds.abs());
        if plan.margin_seconds >= 0 {
            println!("Marge         : {} ouvrées", fr::duration(m));
        } else {
            println!("RETARD estimé : {} ouvrées au-delà de l'échéance", fr::duration(m));
        }
    }
    Ok(if plan.margin_seconds >= 0 { ExitCode::SUCCESS } else { crate::failure() })
}

pub async fn task(c: &Client, cmd: &TaskCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TaskCmd::List { crisis, json } => {
            let tasks: Vec<_> = c
                .tasks()
                .await?
                .into_iter()
                .filter(|t| crisis.as_ref().is_none_or(|id| t.crisis.as_str() == id))
                .collect();
            if *json {
                output::print_json(&tasks)?;
            } else if tasks.is_empty() {
                println!("Aucune tâche manuelle en attente.");
            } else {
                for t in &tasks {
                    println!("■ {} — {} ({}) — étape « {} »", t.crisis, t.commune_name, t.playbook, t.step);
                    println!("  {}", t.title);
                    if let Some(i) = &t.instructions {
                        for line in i.trim().lines() {
                            println!("    {line}");
                        }
                    }
                    for item in &t.checklist {
                        println!("    ☐ {item}");
                    }
                    println!("  → repli task done {} {}", t.crisis, t.step);
                    println!();
                }
            }
        }
        TaskCmd::Done { crisis, step, note, dns_unchecked } => {
            let s = c.task_done_unchecked(crisis, step, note.as_deref(), dns_unchecked.as_deref()).await?;
            println!(
                "« {} » confirmée par {} ({}).",
                s.title,
                s.confirmed_by.as_deref().unwrap_or("?"),
                output::opt_when(s.confirmed_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn step(c: &Client, cmd: &StepCmd) -> anyhow::Result<ExitCode> {
    let (crisis, step, action, reason) = match cmd {
        StepCmd::Retry { crisis, step, reason } => (crisis, step, "retry", reason),
        StepCmd::Skip { crisis, step, reason, yes } => {
            crate::confirm::confirm(repli_core::Destructive::SkipStep, &format!("étape {step}, crise {crisis}"), *yes)?;
            (crisis, step, "skip", reason)
        }
    };
    let s = c.step_action(crisis, step, action, reason).await?;
    println!("« {} » : {}", s.title, s.state_label);
    Ok(ExitCode::SUCCESS)
}

fn group_counts(v: &StepsView) -> BTreeMap<(usize, String), (u64, u64, Option<String>)> {
    // (run index, group) → (done, total, what runs now)
    let mut out: BTreeMap<(usize, String), (u64, u64, Option<String>)> = BTreeMap::new();
    for (i, run) in v.runs.iter().enumerate() {
        for s in &run.steps {
            let e = out.entry((i, format!("{} — {}", run.playbook, s.group))).or_default();
            e.1 += 1;
            if s.state.is_done() {
                e.0 += 1;
            } else if matches!(s.state, StepState::Running | StepState::WaitingManual | StepState::Failed) {
                e.2 = Some(format!("{} ({})", s.title, s.state_label));
            }
        }
    }
    out
}

/// The steps whose state changed since the last look, as plain lines
/// (« Créer les comptes des 25 agents : terminée »), in playbook order.
fn changed_steps(v: &repli_proto::api::StepsView, seen: &mut BTreeMap<(String, String), String>) -> Vec<String> {
    let mut out = Vec::new();
    for run in &v.runs {
        for s in &run.steps {
            let key = (run.playbook.as_str().to_owned(), s.step.clone());
            if seen.get(&key) != Some(&s.state_label) {
                seen.insert(key, s.state_label.clone());
                out.push(format!("{} : {}", s.title, s.state_label));
            }
        }
    }
    out
}

/// `repli crisis watch`: one progress bar per step group until the kit is ready (or the
/// hand-back closes the crisis); exits 1 as soon as a step fails. When the output is not a
/// terminal (a pipe, a log file), one plain line per step that changes instead of bars.
pub async fn watch(c: &Client, id: &str) -> anyhow::Result<ExitCode> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    let plain = !std::io::stdout().is_terminal();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:42} {bar:30} {pos}/{len} {wide_msg}")?.progress_chars("█▓░");
    let mut by_group: BTreeMap<(usize, String), ProgressBar> = BTreeMap::new();
    loop {
        let v = c.steps(id).await.with_context(|| format!("crise {id}"))?;
        if v.simulation && by_group.is_empty() && seen.is_empty() {
            if plain {
                println!("SIMULATION : Microsoft 365 est un simulateur intégré, aucun tenant n'est touché");
            } else {
                bars.println("SIMULATION : Microsoft 365 est un simulateur intégré, aucun tenant n'est touché")?;
            }
        }
        if plain {
            for line in changed_steps(&v, &mut seen) {
                println!("{line}");
            }
        }
        for (key, (done, total, now)) in group_counts(&v).into_iter().filter(|_| !plain) {
            let bar = by_group.entry(key.clone()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(total));
                b.set_style(style.clone());
                b.set_prefix(key.1.clone());
                b
            });
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(now.unwrap_or_default());
        }
        if let Some(failed) = v.runs.iter().flat_map(|r| &r.steps).find(|s| s.state == StepState::Failed) {
            for b in by_group.values() {
                b.abandon();
            }
            eprintln!("échec de l'étape « {} » : {}", failed.title, failed.last_error.as_deref().unwrap_or("?"));
            return Ok(crate::failure());
        }
        let finished = v.runs.last().is_some_and(|r| r.state == RunState::Succeeded)
            && matches!(
                v.state,
                repli_core::CrisisState::Ready
                    | repli_core::CrisisState::Delivered
                    | repli_core::CrisisState::Closed
                    | repli_core::CrisisState::Cancelled
            );
        if finished || matches!(v.state, repli_core::CrisisState::Rejected) {
            for b in by_group.values() {
                b.finish();
            }
            println!("Crise {id} : {}", v.state.label_fr());
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// One playbook's calibration, as printed.
#[derive(Debug, Serialize)]
struct Calibrated {
    playbook: PlaybookName,
    /// The crises whose RETEX was measured.
    crises: usize,
    steps: Vec<repli_core::playbook::Calibration>,
}

/// `repli playbook calibrate`: the estimates against what the RETEX of every crisis measured.
pub async fn calibrate(c: &Client, a: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let books = repli_engine::engine_playbooks(a.dir.as_deref()).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    let mut measured: BTreeMap<PlaybookName, BTreeMap<String, Vec<i64>>> = BTreeMap::new();
    let mut crises = 0;
    for crisis in c.crises(&Default::default()).await? {
        if crisis.timeline.ready_at.is_none() {
            continue;
        }
        crises += 1;
        for s in c.retex(crisis.id.as_str()).await?.steps {
            if let (StepState::Succeeded, Some(secs)) = (s.state, s.actual_secs) {
                measured.entry(s.playbook).or_default().entry(s.step).or_default().push(secs);
            }
        }
    }
    let empty = BTreeMap::new();
    let result: Vec<Calibrated> = books
        .iter()
        .map(|(name, book)| Calibrated {
            playbook: *name,
            crises,
            steps: repli_core::playbook::calibrate(book, measured.get(name).unwrap_or(&empty), a.min_samples),
        })
        .collect();
    if a.json {
        output::print_json(&result)?;
    } else {
        println!(
            "{crises} crise(s) et exercice(s) mesurés (kit prêt), {} mesure(s) au moins pour changer une estimation.",
            a.min_samples
        );
        let mut t = output::table(&["Déroulé", "Étape", "Estimation", "Mesuré (médiane)", "Mesures", "Proposé"]);
        for r in &result {
            for s in &r.steps {
                t.add_row(vec![
                    r.playbook.to_string(),
                    s.step.clone(),
                    format_duration(s.estimate),
                    s.measured.map_or_else(|| "—".to_owned(), format_duration),
                    s.samples.to_string(),
                    match s.proposed {
                        Some(p) if p != s.estimate => format_duration(p),
                        Some(_) => "inchangé".to_owned(),
                        None => "—".to_owned(),
                    },
                ]);
            }
        }
        println!("{t}");
    }
    if a.write
        && let Some(dir) = &a.dir
    {
        // Every file is rewritten and checked before any is written: all or nothing.
        let mut writes = Vec::new();
        for r in &result {
            let changes: BTreeMap<String, SignedDuration> = r
                .steps
                .iter()
                .filter_map(|s| s.proposed.filter(|p| *p != s.estimate).map(|p| (s.step.clone(), p)))
                .collect();
            if changes.is_empty() {
                continue;
            }
            let path = dir.join(format!("{}.toml", r.playbook));
            let text = std::fs::read_to_string(&path).with_context(|| format!("lecture de {}", path.display()))?;
            let new = repli_engine::load::set_estimates(&text, &changes)
                .map_err(|e| anyhow::anyhow!("{} : {e}", path.display()))?;
            if !repli_engine::load::parse(&new).1.is_empty() {
                anyhow::bail!(
                    "{} : les estimations proposées rendraient le déroulé invalide ; rien n'est écrit",
                    path.display()
                );
            }
            writes.push((path, new, changes.len()));
        }
        for (path, new, n) in writes {
            std::fs::write(&path, new).with_context(|| format!("écriture de {}", path.display()))?;
            println!("{} : {n} estimation(s) mises à jour.", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
