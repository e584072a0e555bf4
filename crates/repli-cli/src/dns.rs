//! `repli dns check`: the crisis zone on each authoritative server, against what was published.

use crate::JsonFlag;
use crate::output::{print_json, table};
use clap::{Args, Subcommand};
use repli_proto::Client;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// What each authoritative server serves for the crisis's records, compared with what
    /// Repli published. Exits 1 when a server differs or does not answer.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The crisis (13005-2026-001).
    pub crisis: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub async fn run(c: &Client, cmd: &DnsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DnsCmd::Check(a) => {
            let v = c.dns_check(&a.crisis).await?;
            if a.out.json {
                print_json(&v)?;
            } else if !v.checked {
                println!(
                    "La zone de {} n'est pas publiée par Repli (publication manuelle ou simulée) : vérifier avec dig @serveur.",
                    v.domain
                );
            } else {
                let mut t = table(&["Serveur", "Nom", "Type", "Attendu", "Servi", "Résultat"]);
                for r in &v.records {
                    let served = match &r.error {
                        Some(e) => format!("sans réponse : {e}"),
                        None if r.served.is_empty() => "rien".to_owned(),
                        None => r.served.join("\n"),
                    };
                    let expected = if r.expected.is_empty() { "rien".to_owned() } else { r.expected.join("\n") };
                    let result = if r.ok { "conforme" } else { "DIFFÉRENT" };
                    t.add_row(vec![&r.server, &r.name, &r.kind, &expected, &served, result]);
                }
                println!("{t}");
                println!(
                    "Zone {} : {}",
                    v.zone.as_deref().unwrap_or(""),
                    if v.ok {
                        "chaque serveur sert ce qui a été publié."
                    } else if v.records.is_empty() {
                        "rien n'a encore été publié pour cette crise."
                    } else {
                        "au moins un serveur ne sert PAS ce qui a été publié."
                    }
                );
            }
            Ok(if v.ok || !v.checked { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
