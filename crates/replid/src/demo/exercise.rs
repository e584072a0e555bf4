//! `replid demo --exercise`: a two-commune drill from the example scenario, played through the
//! HTTP API: started, its inject delivered and answered, both kits made ready on the exercise's
//! own Microsoft 365 target and handed back, then the RETEX of each crisis. Checks what a drill
//! promises: the watermark on its documents, nothing in the SLA report, the audit chain intact.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use repli_core::run::PlaybookName;
use repli_core::{CrisisAction, CrisisState};
use repli_proto::api::{AgentInput, AgentsRequest, ExerciseRequest};
use serde::Serialize;

use crate::Daemon;
use crate::demo::{DemoArgs, Narrator, cast, follow, run_done};

/// What the exercise demo did and checked (the last line of stdout with `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExerciseSummary {
    pub exercise_id: i64,
    pub name: String,
    pub crises: Vec<String>,
    pub injects_delivered: usize,
    /// Injects a person answered in the main courante.
    pub injects_answered: usize,
    /// The RETEX of each crisis, as JSON files.
    pub retex: Vec<PathBuf>,
    /// Every document of every crisis carries the watermark.
    pub documents_watermarked: bool,
    /// No crisis of the exercise is in the SLA compliance report.
    pub absent_from_sla_report: bool,
    pub audit_verified: bool,
    pub database: PathBuf,
}

impl ExerciseSummary {
    fn ok(&self) -> bool {
        self.documents_watermarked && self.absent_from_sla_report && self.audit_verified && self.injects_answered > 0
    }
}

/// Plays the exercise on `daemon`.
pub(crate) async fn play(say: &Narrator, daemon: &Daemon, dir: &Path) -> anyhow::Result<ExerciseSummary> {
    say.say(
        "EXERCICE",
        &format!("replid sur {} — base {}", daemon.url(), daemon.state().config.database.path.display()),
    );
    let (ops, auditor, _) = cast(daemon).await?;

    let mut scenario = ExerciseRequest::from_toml(repli_app::exercises::example_scenario())
        .map_err(|e| anyhow::anyhow!("playbooks/exercises/exemple.toml: {e}"))?;
    // The demo does not wait half an hour: its inject comes at once.
    for i in &mut scenario.injects {
        i.after_minutes = 0;
    }
    let x = ops.start_exercise(&scenario).await.context("start the exercise")?;
    let ids: Vec<_> = x.crises.iter().map(|c| c.id.clone()).collect();
    say.say(
        "Ops",
        &format!(
            "commence l'exercice « {} » ({}) : crises {}",
            x.name,
            x.mode_label,
            ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
    );
    say.say("", &format!("seules adresses joignables : {}", x.recipients.join(", ")));

    daemon.state().maintenance().await.context("maintenance round")?;
    let mut answered = 0;
    for id in &ids {
        for inject in ops.crisis_log(id.as_str()).await?.iter().filter(|e| e.kind == repli_core::LogKind::Inject) {
            say.say("Animation", &format!("inject sur {id} : {}", inject.text));
            ops.add_log(
                id.as_str(),
                "décision",
                "Licences redistribuées : les agents prioritaires d'abord, les autres sur postes partagés.",
            )
            .await
            .context("answer the inject")?;
            say.say("Ops", "répond à l'inject dans la main courante");
            answered += 1;
        }
    }

    let mut seen = BTreeSet::new();
    for id in &ids {
        let c = ops.act(id, CrisisAction::Activate, None).await.context("activate")?;
        let agents: Vec<AgentInput> = (1..=c.agents)
            .map(|i| AgentInput { name: format!("Agent d'exercice {i:02}"), service: "Cellule de crise".into() })
            .collect();
        ops.set_agents(id.as_str(), &AgentsRequest { agents }).await.context("agents")?;
        say.say("Ops", &format!("active {id} et nomme ses {} agents", c.agents));
    }
    for id in &ids {
        follow(say, &ops, id, &mut seen, |v| v.state == CrisisState::Ready && run_done(v, PlaybookName::Activation))
            .await?;
        say.say("", &format!("{id} : kit prêt (locataire d'exercice)"));
    }

    let mut watermarked = true;
    for id in &ids {
        for file in ops.documents(id.as_str()).await.context("documents")? {
            // The credential sheets are issued once, not read as a document.
            let text = if file == repli_docs::CREDENTIAL_SHEETS {
                ops.issue_sheets(id.as_str()).await.context("credential sheets")?
            } else {
                ops.document(id.as_str(), &file).await.context("document")?
            };
            let marked =
                if file.ends_with(".html") { text.contains("class=\"filigrane\"") } else { text.contains("EXERCICE") };
            if !marked {
                say.say("ERREUR", &format!("{id} : {file} sans la marque EXERCICE"));
                watermarked = false;
            }
        }
    }
    say.say("", "documents édités avec le filigrane EXERCICE");

    for id in &ids {
        ops.act(id, CrisisAction::StartHandback, Some("fin de l'exercice")).await.context("start hand-back")?;
    }
    for id in &ids {
        follow(say, &ops, id, &mut seen, |v| v.state == CrisisState::Closed && run_done(v, PlaybookName::Handback))
            .await?;
        say.say("", &format!("{id} : restitué et clos"));
    }

    let mut retex = Vec::new();
    for id in &ids {
        let r = auditor.retex(id.as_str()).await.context("RETEX")?;
        let path = dir.join(format!("retex-{id}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&r)?)?;
        let late = r.steps.iter().filter(|s| s.actual_secs.is_some_and(|a| a > s.planned_secs)).count();
        say.say(
            "Auditeur",
            &format!(
                "RETEX {id} : {} étape(s), {late} plus longue(s) que prévu, {} inject(s) — {}",
                r.steps.len(),
                r.injects.len(),
                path.display()
            ),
        );
        retex.push(path);
    }
    let report = auditor.sla_report().await.context("SLA report")?;
    let absent = report.iter().all(|l| !ids.contains(&l.crisis));
    say.say(
        "Auditeur",
        if absent {
            "rapport des délais : l'exercice n'y figure pas"
        } else {
            "ERREUR : l'exercice figure au rapport des délais"
        },
    );
    let verify = auditor.audit_verify().await.context("audit verify")?;
    say.say(
        "Auditeur",
        &format!(
            "journal d'audit : {} entrées, {}",
            verify.entries,
            if verify.verified { "intact" } else { "NON vérifié" }
        ),
    );
    let x = ops.exercise(x.id).await.context("exercise")?;
    if x.open {
        bail!("the exercise is still open after its crises were closed");
    }
    Ok(ExerciseSummary {
        exercise_id: x.id,
        name: x.name,
        crises: ids.iter().map(ToString::to_string).collect(),
        injects_delivered: x.injects.iter().filter(|i| i.delivered_at.is_some()).count(),
        injects_answered: answered,
        retex,
        documents_watermarked: watermarked,
        absent_from_sla_report: absent,
        audit_verified: verify.verified,
        database: daemon.state().config.database.path.clone(),
    })
}

/// `replid demo --exercise`: runs, prints, and exits non-zero if a check failed.
pub async fn main(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let s = crate::demo::run_exercise(args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!();
        println!(
            "Résumé : exercice « {} » — crises {} — RETEX : {}",
            s.name,
            s.crises.join(", "),
            s.retex.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        println!("Base : {}", s.database.display());
    }
    Ok(if s.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
