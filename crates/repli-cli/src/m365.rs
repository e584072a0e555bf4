//! `repli m365 preflight`: is the Microsoft 365 tenant ready for an activation?

use crate::JsonFlag;
use crate::output::{print_json, table, when};
use clap::Subcommand;
use repli_core::m365::CheckStatus;
use repli_proto::Client;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum M365Cmd {
    /// Check the tenant now (read-only, plus one canary meeting): permissions, directory role,
    /// licences, root domain, Teams access policy, credential expiry. Exits 1 on any failure.
    Preflight(JsonFlag),
}

pub async fn run(c: &Client, cmd: &M365Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        M365Cmd::Preflight(out) => {
            let run = c.m365_preflight().await?;
            if out.json {
                print_json(&run)?;
            } else {
                let mut t = table(&["Contrôle", "Résultat", "Constat", "Que faire"]);
                for check in &run.report.checks {
                    let result = match check.status {
                        CheckStatus::Ok => "conforme",
                        CheckStatus::Warn => "à revoir",
                        CheckStatus::Fail => "ÉCHEC",
                    };
                    t.add_row(vec![
                        check.title.as_str(),
                        result,
                        check.detail.as_str(),
                        check.fix.as_deref().unwrap_or(""),
                    ]);
                }
                println!("{t}");
                println!(
                    "Contrôle du {} : {}",
                    when(run.at),
                    if run.report.ok { "le locataire est prêt." } else { "le locataire n'est PAS prêt." }
                );
            }
            Ok(if run.report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
