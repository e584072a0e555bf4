//! `repli sla`: the business calendar offline (no daemon), and the SLA compliance report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use repli_config::Config;
use repli_core::BusinessCalendar;
use repli_core::calendar::french_holidays;
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum SlaCmd {
    /// French public holidays of a year, one per line: `YYYY-MM-DD<TAB>name` (offline).
    Holidays {
        year: i16,
        #[arg(long)]
        json: bool,
    },
    /// The due instant of a request received at --start (offline).
    Due(DueArgs),
    /// SLA compliance report for auditors: per crisis, start, suspensions, due, ready, late by.
    Report {
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, Args)]
pub struct DueArgs {
    /// When the request was received, RFC 3339 with an offset (2026-05-13T10:00:00+02:00).
    #[arg(long)]
    pub start: Timestamp,
    /// Business hours (default: the configuration's, 48).
    #[arg(long)]
    pub hours: Option<u32>,
    /// replid's configuration file, for its [sla] calendar (default: the built-in calendar).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Holiday {
    date: String,
    name: &'static str,
}

#[derive(Debug, Serialize)]
struct Due {
    start: String,
    business_hours: u32,
    due: String,
    time_zone: String,
}

/// `repli sla report`, through the daemon.
pub async fn report(client: &repli_proto::Client, json: bool, csv_out: bool) -> anyhow::Result<ExitCode> {
    use repli_core::fr;
    let lines = client.sla_report().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else if csv_out {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record([
            "crisis",
            "commune",
            "state",
            "started_at",
            "suspensions",
            "suspended_seconds",
            "due_at",
            "ready_at",
            "status",
            "late_seconds",
        ])?;
        for l in &lines {
            let reasons: Vec<String> = l.suspensions.iter().map(|s| s.reason.clone()).collect();
            w.write_record([
                l.crisis.to_string(),
                l.commune.to_string(),
                l.state.to_string(),
                l.started_at.to_string(),
                repli_core::text::csv_cell(&reasons.join(" | ")).into_owned(),
                l.suspended_seconds.to_string(),
                l.due_at.to_string(),
                l.ready_at.map(|t| t.to_string()).unwrap_or_default(),
                format!("{:?}", l.status).to_lowercase(),
                l.late_seconds.to_string(),
            ])?;
        }
        w.flush()?;
    } else {
        let tz = crate::output::tz();
        // Fits the terminal's width (cells wrap between words).
        let mut t =
            crate::output::table(&["Crise", "Commune", "Demande", "Suspensions", "Échéance", "Prêt", "SLA", "Retard"]);
        for l in &lines {
            t.add_row(vec![
                l.crisis.to_string(),
                l.commune_name.clone(),
                fr::datetime(l.started_at, &tz),
                format!(
                    "{} ({})",
                    l.suspensions.len(),
                    fr::duration(jiff::SignedDuration::from_secs(l.suspended_seconds))
                ),
                fr::datetime(l.due_at, &tz),
                l.ready_at.map_or_else(|| "—".to_owned(), |t| fr::datetime(t, &tz)),
                l.status.label_fr().to_owned(),
                if l.late_seconds > 0 {
                    fr::duration(jiff::SignedDuration::from_secs(l.late_seconds))
                } else {
                    String::new()
                },
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: &SlaCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SlaCmd::Report { .. } => bail!("the report needs the daemon: use `repli sla report` with --server and --token"),
        SlaCmd::Holidays { year, json } => {
            if !(1583..=9999).contains(year) {
                bail!("year {year} is outside the Gregorian calendar range this computes (1583 to 9999)");
            }
            let list: Vec<Holiday> = french_holidays(*year)?
                .into_iter()
                .map(|(d, h)| Holiday { date: d.to_string(), name: h.name_fr() })
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for h in list {
                    println!("{}\t{}", h.date, h.name);
                }
            }
        }
        SlaCmd::Due(a) => {
            let config = Config::load(a.config.as_deref(), std::env::vars()).context("invalid configuration")?;
            let cal = BusinessCalendar::from_spec(&config.sla.calendar)?;
            let hours = a.hours.unwrap_or(config.sla.business_hours);
            if !(1..=10_000).contains(&hours) {
                bail!("--hours must be between 1 and 10000");
            }
            let due = cal.add_hours(a.start, hours)?;
            let tz = cal.time_zone();
            let fmt = |t: Timestamp| t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
            let d = Due {
                start: fmt(a.start),
                business_hours: hours,
                due: fmt(due),
                time_zone: config.sla.calendar.time_zone.clone(),
            };
            if a.json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!("{}", d.due);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
