//! `repli inventory`, `repli loan`, `repli crisis agents`, and hand-back check-in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use repli_core::text::csv_cell;
use repli_proto::Client;
use repli_proto::api::{
    AgentInput, AgentsRequest, CheckinRequest, ImportFile, ImportRequest, LendRequest, LoanView, WipeRequest,
    WriteOffRequest,
};

use crate::output;

#[derive(Debug, Subcommand)]
pub enum InventoryCmd {
    /// Import a CSV file, or every .csv file of a folder, all or nothing (Repli or Snipe-IT columns).
    Import { path: PathBuf },
    /// Every item as CSV on standard output.
    Export {
        #[arg(long)]
        csv: bool,
    },
    /// Counts per kind: available, reserved, lent, wiping, out of service.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// One item (serial or asset tag) with its history.
    Show {
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Move an item outside a loan: prepared, wiping, maintenance, available (back from
    /// maintenance), retired.
    Service {
        serial: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: String,
    },
    /// Record the wipe of a returned device; it goes back to the pool.
    Wipe {
        serial: String,
        #[arg(long)]
        method: String,
        #[arg(long)]
        operator: String,
        /// Reference of the wipe certificate.
        #[arg(long)]
        certificate: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoanCmd {
    /// The loans of a crisis.
    List {
        crisis: String,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        #[arg(long)]
        json: bool,
    },
    /// Lend a reserved item (laptops and phones to a named agent).
    Add {
        crisis: String,
        #[arg(long)]
        serial: String,
        /// Agent id (see `repli crisis agents`).
        #[arg(long)]
        agent: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConditionArg {
    Ok,
    Damaged,
    Missing,
}

#[derive(Debug, Args)]
pub struct CheckinArgs {
    pub crisis: String,
    /// One item.
    #[arg(long, conflicts_with = "scan", required_unless_present = "scan")]
    pub serial: Option<String>,
    #[arg(long, value_enum, default_value = "ok")]
    pub condition: ConditionArg,
    #[arg(long)]
    pub note: Option<String>,
    /// A scan file: one serial (or asset tag) per line, all in good condition.
    #[arg(long)]
    pub scan: Option<PathBuf>,
}

fn read_files(path: &Path) -> anyhow::Result<Vec<ImportFile>> {
    let mut paths = Vec::new();
    if path.is_dir() {
        for e in std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")) {
                paths.push(p);
            }
        }
        paths.sort();
        if paths.is_empty() {
            bail!("{} holds no .csv file", path.display());
        }
    } else {
        paths.push(path.to_owned());
    }
    paths
        .iter()
        .map(|p| {
            let csv = crate::read_file(p)?;
            let source = p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
            Ok(ImportFile { source, csv })
        })
        .collect()
}

pub async fn inventory(c: &Client, cmd: &InventoryCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        InventoryCmd::Import { path } => {
            let files = read_files(path)?;
            match c.import_inventory(&ImportRequest { files }).await {
                Ok(v) => println!("{} équipement(s) importé(s).", v.imported),
                Err(e) => {
                    if let Some(p) = e.problem().filter(|p| !p.errors.is_empty()) {
                        for err in &p.errors {
                            eprintln!("{}", err.message);
                        }
                        eprintln!("Import refusé : rien n'a été importé ({} erreur(s)).", p.errors.len());
                        return Ok(ExitCode::FAILURE);
                    }
                    return Err(e.into());
                }
            }
        }
        InventoryCmd::Export { .. } => {
            let items = c.inventory_items().await?;
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record([
                "asset_tag",
                "serial",
                "kind",
                "model",
                "imei",
                "iccid",
                "msisdn",
                "apn",
                "location",
                "state",
                "crisis",
            ])?;
            for i in &items {
                let it = &i.item;
                w.write_record([
                    csv_cell(&it.asset_tag).as_ref(),
                    csv_cell(&it.serial).as_ref(),
                    it.kind.as_str(),
                    csv_cell(&it.model).as_ref(),
                    it.imei.as_deref().unwrap_or(""),
                    it.iccid.as_deref().unwrap_or(""),
                    // E.164 starts with '+': neutralised like any formula-looking cell.
                    csv_cell(it.msisdn.as_deref().unwrap_or("")).as_ref(),
                    csv_cell(it.apn.as_deref().unwrap_or("")).as_ref(),
                    csv_cell(it.location.as_deref().unwrap_or("")).as_ref(),
                    i.state.as_str(),
                    i.crisis.as_deref().unwrap_or(""),
                ])?;
            }
            w.flush()?;
        }
        InventoryCmd::Status { json } => {
            let lines = c.inventory_status().await?;
            if *json { output::print_json(&lines)? } else { output::inventory_status(&lines) }
        }
        InventoryCmd::Show { serial, json } => {
            let d = c.item(serial).await?;
            if *json { output::print_json(&d)? } else { output::item(&d) }
        }
        InventoryCmd::Service { serial, to, reason } => {
            let to: repli_core::ItemState =
                to.parse().map_err(|_| anyhow::anyhow!("--to: prepared, wiping, maintenance, available or retired"))?;
            let d = c.service_item(serial, &repli_proto::api::ServiceRequest { to, reason: reason.clone() }).await?;
            println!("{} : {}.", d.item.item.asset_tag, d.item.state_label);
        }
        InventoryCmd::Wipe { serial, method, operator, certificate } => {
            let req =
                WipeRequest { method: method.clone(), operator: operator.clone(), certificate: certificate.clone() };
            let d = c.wipe(serial, &req).await?;
            println!("{} : effacement enregistré, de nouveau {}.", d.item.item.asset_tag, d.item.state_label);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn loan(c: &Client, cmd: &LoanCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LoanCmd::List { crisis, csv: as_csv, json } => {
            let loans = c.loans(crisis).await?;
            if *json {
                output::print_json(&loans)?;
            } else if *as_csv {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                w.write_record([
                    "asset_tag",
                    "serial",
                    "kind",
                    "model",
                    "agent",
                    "service",
                    "lent_at",
                    "due_back",
                    "returned_at",
                    "condition",
                    "written_off_at",
                    "write_off_reason",
                ])?;
                for l in &loans {
                    let (name, service) = l.agent.as_ref().map_or(("", ""), |a| (a.name.as_str(), a.service.as_str()));
                    w.write_record([
                        csv_cell(&l.asset_tag).into_owned(),
                        csv_cell(&l.serial).into_owned(),
                        l.kind.as_str().to_owned(),
                        csv_cell(&l.model).into_owned(),
                        csv_cell(name).into_owned(),
                        csv_cell(service).into_owned(),
                        l.lent_at.to_string(),
                        l.due_back.to_string(),
                        l.returned_at.map(|t| t.to_string()).unwrap_or_default(),
                        l.condition.clone().unwrap_or_default(),
                        l.written_off_at.map(|t| t.to_string()).unwrap_or_default(),
                        csv_cell(l.write_off_reason.as_deref().unwrap_or_default()).into_owned(),
                    ])?;
                }
                w.flush()?;
            } else {
                output::loans(&loans);
            }
        }
        LoanCmd::Add { crisis, serial, agent } => {
            let loans = c.lend(crisis, &LendRequest { serial: serial.clone(), agent_id: *agent }).await?;
            println!("{serial} prêté ({} prêt(s) pour la crise {crisis}).", loans.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets the agents list from a CSV file `name,service`.
/// Replaces (`add` false) or completes the agents list from a CSV file `name,service`.
pub async fn set_agents(c: &Client, crisis: &str, file: &Path, add: bool) -> anyhow::Result<ExitCode> {
    let text = crate::read_file(file)?;
    repli_core::text::csv_quotes_closed(&text).map_err(|line| {
        anyhow::anyhow!(
            "{}:{line}: guillemet ouvert jamais fermé : fichier refusé, rien n'a été enregistré",
            file.display()
        )
    })?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let mut agents = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}", file.display(), i + 2))?;
        agents.push(AgentInput {
            name: rec.get(0).unwrap_or("").to_owned(),
            service: rec.get(1).unwrap_or("").to_owned(),
        });
    }
    let req = AgentsRequest { agents };
    let list = if add { c.add_agents(crisis, &req).await? } else { c.set_agents(crisis, &req).await? };
    println!("{} agent(s) enregistré(s) pour la crise {crisis}.", list.len());
    Ok(ExitCode::SUCCESS)
}

/// What a scan found.
#[derive(Debug, Default, serde::Serialize)]
pub struct ScanSummary {
    pub expected: usize,
    pub returned: usize,
    pub still_out: Vec<String>,
    pub unknown: Vec<String>,
}

pub async fn checkin(c: &Client, a: &CheckinArgs) -> anyhow::Result<ExitCode> {
    let condition = match a.condition {
        ConditionArg::Ok => "ok",
        ConditionArg::Damaged => "damaged",
        ConditionArg::Missing => "missing",
    };
    if let Some(serial) = &a.serial {
        c.check_in(
            &a.crisis,
            &CheckinRequest { serial: serial.clone(), condition: condition.into(), note: a.note.clone() },
        )
        .await?;
        println!("{serial} : retour enregistré ({condition}).");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(scan) = &a.scan else { bail!("--serial or --scan") };
    let text = crate::read_file(scan)?;
    let scanned: BTreeSet<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let loans = c.loans(&a.crisis).await?;
    let out: Vec<&LoanView> = loans.iter().filter(|l| l.is_open()).collect();
    let mut summary = ScanSummary { expected: out.len(), ..Default::default() };
    for s in &scanned {
        match out.iter().find(|l| &l.serial == s || &l.asset_tag == s) {
            Some(l) => {
                c.check_in(
                    &a.crisis,
                    &CheckinRequest { serial: l.serial.clone(), condition: "ok".into(), note: a.note.clone() },
                )
                .await?;
                summary.returned += 1;
            }
            None => summary.unknown.push(s.clone()),
        }
    }
    summary.still_out = out
        .iter()
        .filter(|l| !scanned.contains(&l.serial) && !scanned.contains(&l.asset_tag))
        .map(|l| l.asset_tag.clone())
        .collect();
    println!(
        "Attendus : {} — rendus : {} — encore dehors : {} — inconnus : {}",
        summary.expected,
        summary.returned,
        summary.still_out.len(),
        summary.unknown.len()
    );
    for s in &summary.still_out {
        println!("  encore dehors : {s}");
    }
    for s in &summary.unknown {
        println!("  inconnu pour cette crise : {s}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn write_off(c: &Client, crisis: &str, serial: &str, reason: &str) -> anyhow::Result<ExitCode> {
    c.write_off(crisis, &WriteOffRequest { serial: serial.to_owned(), reason: reason.to_owned() }).await?;
    println!("{serial} passé en perte pour la crise {crisis}.");
    Ok(ExitCode::SUCCESS)
}
