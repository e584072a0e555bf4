//! `repli exercise`: start a drill from a scenario file, list the exercises, show one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use repli_proto::Client;
use repli_proto::api::{ExerciseRequest, ExerciseView};

use crate::JsonFlag;
use crate::output::{print_json, table, when};

#[derive(Debug, Subcommand)]
pub enum ExerciseCmd {
    /// Commencer un exercice à partir d'un scénario (TOML : communes, agents, mode, adresses
    /// joignables, injects minutés ; exemple : playbooks/exercises/exemple.toml). Ses crises
    /// sont marquées EXERCICE partout et s'ouvrent à l'état « demandée ».
    Start {
        /// Le fichier de scénario.
        #[arg(long)]
        scenario: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Lister les exercices.
    List(JsonFlag),
    /// Afficher un exercice : ses crises et ses injects.
    Show {
        id: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Reads a scenario file, with the line of the first error.
pub fn read_scenario(path: &std::path::Path) -> anyhow::Result<ExerciseRequest> {
    let text = std::fs::read_to_string(path).with_context(|| format!("lecture de {}", path.display()))?;
    ExerciseRequest::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}:{} : scénario illisible : {}", path.display(), e.line, e.message))
}

fn print(x: &ExerciseView) {
    println!("Exercice {} — « {} » ({})", x.id, x.name, x.mode_label);
    println!(
        "Commencé le {} par {} ; {}.",
        when(x.started_at),
        x.started_by,
        if x.open { "en cours" } else { "terminé" }
    );
    println!("Seules adresses joignables : {}", x.recipients.join(", "));
    let mut t = table(&["Crise", "État"]);
    for c in &x.crises {
        t.add_row(vec![c.id.as_str(), c.state_label.as_str()]);
    }
    println!("{t}");
    if !x.injects.is_empty() {
        let mut t = table(&["Prévu", "Commune", "Inject", "Envoyé"]);
        for i in &x.injects {
            t.add_row(vec![
                when(i.due_at),
                i.commune.as_ref().map_or_else(|| "toutes".to_owned(), ToString::to_string),
                i.text.clone(),
                i.delivered_at.map_or_else(|| "à venir".to_owned(), when),
            ]);
        }
        println!("{t}");
    }
}

pub async fn run(c: &Client, cmd: &ExerciseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ExerciseCmd::Start { scenario, out } => {
            let req = read_scenario(scenario)?;
            let x = c.start_exercise(&req).await?;
            if out.json {
                print_json(&x)?;
            } else {
                print(&x);
                println!("Activez ses crises comme une vraie demande (repli crisis activate ID).");
            }
        }
        ExerciseCmd::List(out) => {
            let list = c.exercises().await?;
            if out.json {
                print_json(&list)?;
            } else {
                let mut t = table(&["N°", "Exercice", "Mode", "Commencé", "Crises", "État"]);
                for x in &list {
                    let crises: Vec<&str> = x.crises.iter().map(|c| c.id.as_str()).collect();
                    t.add_row(vec![
                        x.id.to_string(),
                        x.name.clone(),
                        x.mode.to_string(),
                        when(x.started_at),
                        crises.join(", "),
                        if x.open { "en cours" } else { "terminé" }.to_owned(),
                    ]);
                }
                println!("{t}");
            }
        }
        ExerciseCmd::Show { id, out } => {
            let x = c.exercise(*id).await?;
            if out.json {
                print_json(&x)?;
            } else {
                print(&x);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
