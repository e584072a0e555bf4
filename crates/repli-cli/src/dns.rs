//! `repli dns check`: the crisis zone on each authoritative server, against the whole record
//! set the crisis's state expects.

use crate::JsonFlag;
use crate::output::{print_json, table};
use clap::{Args, Subcommand};
use repli_proto::Client;
use repli_proto::api::{DnsCheckView, DnsDiff, DnsExpectation};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// What each authoritative server serves at every name Repli owns under the crisis domain,
    /// compared with what the crisis's state expects (the kit's records while it lives,
    /// nothing after the hand-back). Exits 0 only when every server answers, with the same
    /// serial, and serves exactly that.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The crisis (13005-2026-001).
    pub crisis: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

fn diff_fr(d: DnsDiff) -> &'static str {
    match d {
        DnsDiff::Same => "conforme",
        DnsDiff::Missing => "MANQUANT",
        DnsDiff::Extra => "EN TROP",
        DnsDiff::Different => "DIFFÉRENT",
        DnsDiff::Unreadable => "ILLISIBLE",
    }
}

fn print_text(v: &DnsCheckView) {
    if v.domain.is_empty() {
        println!("Aucun domaine de secours n'a encore été créé pour cette crise : rien à vérifier.");
        return;
    }
    if !v.checked {
        println!(
            "La zone de {} n'est pas publiée par Repli (publication manuelle ou simulée) : Repli ne peut pas interroger ses serveurs ; vérifier avec dig @serveur.",
            v.domain
        );
        return;
    }
    let mut servers = table(&["Serveur", "Numéro de série (SOA)", "État"]);
    for s in &v.servers {
        let serial = s.serial.map(|n| n.to_string()).unwrap_or_else(|| "—".into());
        let state = match (&s.error, s.lagging) {
            (Some(e), _) => format!("sans réponse : {e}"),
            (None, true) => "EN RETARD : n'a pas reçu la dernière mise à jour".into(),
            (None, false) => "à jour".into(),
        };
        servers.add_row(vec![s.server.clone(), serial, state]);
    }
    println!("{servers}");
    if !v.records.is_empty() {
        let mut t = table(&["Serveur", "Nom", "Type", "Attendu", "Servi", "Résultat"]);
        for r in &v.records {
            let served = match &r.error {
                Some(e) => format!("sans réponse : {e}"),
                None if r.served.is_empty() => "rien".to_owned(),
                None => r.served.join("\n"),
            };
            let expected = if r.expected.is_empty() { "rien".to_owned() } else { r.expected.join("\n") };
            t.add_row(vec![&r.server, &r.name, &r.kind, &expected, &served, diff_fr(r.diff)]);
        }
        println!("{t}");
    }
    let expect = match v.expect {
        DnsExpectation::Present => "les enregistrements du kit",
        DnsExpectation::Absent => "aucun enregistrement (kit restitué)",
        DnsExpectation::Nothing => "rien",
    };
    println!(
        "Zone {} — attendu : {expect} — {}",
        v.zone.as_deref().unwrap_or(""),
        if v.ok {
            "chaque serveur sert exactement ce qui est attendu."
        } else {
            "au moins un serveur ne sert PAS ce qui est attendu (voir ci-dessus)."
        }
    );
}

pub async fn run(c: &Client, cmd: &DnsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DnsCmd::Check(a) => {
            let v = c.dns_check(&a.crisis).await?;
            if a.out.json {
                print_json(&v)?;
            } else {
                print_text(&v);
            }
            Ok(if v.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
