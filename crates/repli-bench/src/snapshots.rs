//! `repli-bench backup-load`: `replid backup` run again and again, as separate processes, beside
//! a running `replid` that clients keep writing to; reports failed backups, failed writes (5xx
//! among them), write latencies, and whether every snapshot and every acknowledged write is
//! whole. `repli-bench tamper`: the snapshot tamper suite (`repli_app::backup::tamper`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use repli_app::backup::tamper::{Variant, suite};
use repli_proto::{Client, ClientError};
use serde::Serialize;
use tokio::process::Command;

#[derive(Debug, Args)]
pub struct BackupLoadBench {
    /// Snapshots to take, one after the other, each by a new `replid backup` process.
    #[arg(long, default_value_t = 20)]
    pub backups: u32,
    /// Clients writing (main-courante entries) without pause meanwhile.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct BackupLoadFigures {
    pub backups: u32,
    pub backup_failures: u32,
    /// The first failure's message, if any.
    pub first_backup_error: Option<String>,
    pub backup_seconds_mean: f64,
    pub backup_seconds_max: f64,
    /// Snapshots that `replid restore --check` accepted afterwards.
    pub snapshots_verified: u32,
    pub writers: u32,
    pub writes_ok: u64,
    pub writes_failed: u64,
    pub writes_5xx: u64,
    /// Write latencies while a `replid backup` process ran…
    pub write_ms_p50: f64,
    pub write_ms_p99: f64,
    pub write_ms_max: f64,
    /// …and, for comparison, over the same writers before the first backup (no backup).
    pub baseline_writes: u64,
    pub baseline_ms_p50: f64,
    pub baseline_ms_p99: f64,
    pub baseline_ms_max: f64,
    /// Acknowledged writes found in the crisis's log afterwards (must equal writes_ok).
    pub writes_stored: u64,
    pub seconds: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Default)]
struct WriterTally {
    ok: u64,
    failed: u64,
    server_errors: u64,
    latencies_ms: Vec<f64>,
    baseline_ms: Vec<f64>,
}

pub async fn backup_load(a: &BackupLoadBench) -> anyhow::Result<BackupLoadFigures> {
    anyhow::ensure!((1..=1000).contains(&a.backups), "--backups must be between 1 and 1000");
    anyhow::ensure!((1..=64).contains(&a.writers), "--writers must be between 1 and 64");
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("repli-backup-load-").tempdir()?;
    let dir = tmp.path().to_owned();
    std::fs::create_dir_all(dir.join("data"))?;
    let replid = crate::replid_proc::configure(&dir, &dir.join("data").join("repli.db"), "")?;
    let token = replid.user("ops", "Banc de sauvegarde")?;
    let (url, _daemon) = replid.run(&dir.join("replid.log")).await?;
    let ops = Client::new(&url, Some(token))?;
    let request = crate::replid_proc::request()?;
    let crisis = ops.request_crisis(&request, None).await?.id;

    let stop = Arc::new(AtomicBool::new(false));
    let backing_up = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..a.writers {
        let (ops, stop, id, backing_up) = (ops.clone(), stop.clone(), crisis.clone(), backing_up.clone());
        writers.push(tokio::spawn(async move {
            let mut t = WriterTally::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let during = backing_up.load(Ordering::Relaxed);
                let s = Instant::now();
                let r = ops.add_log(id.as_str(), "information", &format!("écriture {w}-{i}")).await;
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                if during && backing_up.load(Ordering::Relaxed) {
                    t.latencies_ms.push(ms);
                } else if !during {
                    t.baseline_ms.push(ms);
                }
                match r {
                    Ok(_) => t.ok += 1,
                    Err(e) => {
                        t.failed += 1;
                        let status = match &e {
                            ClientError::Api { status, .. } | ClientError::Http { status, .. } => Some(*status),
                            _ => None,
                        };
                        if status.is_some_and(|s| s.is_server_error()) {
                            t.server_errors += 1;
                        }
                    }
                }
            }
            t
        }));
    }
    // The writers alone first (the baseline), then the snapshots one after the other.
    tokio::time::sleep(Duration::from_secs(2)).await;
    backing_up.store(true, Ordering::Relaxed);
    let mut failures = 0u32;
    let mut first_error = None;
    let mut durations = Vec::new();
    let mut taken = Vec::new();
    for i in 0..a.backups {
        let dest = dir.join("snapshots").join(format!("snap-{i:03}"));
        let s = Instant::now();
        let out = Command::new(&replid.bin).args(["--config", &replid.cfg, "backup"]).arg(&dest).output().await?;
        durations.push(s.elapsed().as_secs_f64());
        if out.status.success() {
            taken.push(dest);
        } else {
            failures += 1;
            first_error.get_or_insert_with(|| String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
    }
    backing_up.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut tally = WriterTally::default();
    for w in writers {
        let t = w.await?;
        tally.ok += t.ok;
        tally.failed += t.failed;
        tally.server_errors += t.server_errors;
        tally.latencies_ms.extend(t.latencies_ms);
        tally.baseline_ms.extend(t.baseline_ms);
    }
    tally.latencies_ms.sort_by(f64::total_cmp);
    tally.baseline_ms.sort_by(f64::total_cmp);
    let written = ops.crisis_log(crisis.as_str()).await?;
    let writes_stored = written.iter().filter(|e| e.text.starts_with("écriture ")).count() as u64;
    let mut verified = 0u32;
    for snap in &taken {
        let out =
            Command::new(&replid.bin).args(["--config", &replid.cfg, "restore", "--check"]).arg(snap).output().await?;
        if out.status.success() {
            verified += 1;
        } else if first_error.is_none() {
            first_error = Some(format!("check of {}: {}", snap.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    Ok(BackupLoadFigures {
        backups: a.backups,
        backup_failures: failures,
        first_backup_error: first_error,
        backup_seconds_mean: durations.iter().sum::<f64>() / durations.len().max(1) as f64,
        backup_seconds_max: durations.iter().copied().fold(0.0, f64::max),
        snapshots_verified: verified,
        writers: a.writers,
        writes_ok: tally.ok,
        writes_failed: tally.failed,
        writes_5xx: tally.server_errors,
        write_ms_p50: percentile(&tally.latencies_ms, 0.5),
        write_ms_p99: percentile(&tally.latencies_ms, 0.99),
        write_ms_max: tally.latencies_ms.last().copied().unwrap_or(0.0),
        baseline_writes: tally.baseline_ms.len() as u64,
        baseline_ms_p50: percentile(&tally.baseline_ms, 0.5),
        baseline_ms_p99: percentile(&tally.baseline_ms, 0.99),
        baseline_ms_max: tally.baseline_ms.last().copied().unwrap_or(0.0),
        writes_stored,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl BackupLoadFigures {
    pub fn ok(&self) -> bool {
        self.backup_failures == 0
            && self.writes_failed == 0
            && self.snapshots_verified == self.backups
            && self.writes_stored == self.writes_ok
    }
}

#[derive(Debug, Args)]
pub struct TamperBench {
    /// Keep the working folder (the genuine and tampered snapshots) and print its path.
    #[arg(long)]
    pub keep: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct TamperRow {
    pub variant: &'static str,
    pub check: Option<String>,
    pub restore: Option<String>,
    pub target_untouched: bool,
    pub accepted: bool,
}

#[derive(Debug, Serialize)]
pub struct TamperFigures {
    pub variants: usize,
    pub accepted: usize,
    pub rows: Vec<TamperRow>,
    pub workdir: Option<PathBuf>,
}

pub async fn tamper(a: &TamperBench) -> anyhow::Result<TamperFigures> {
    let tmp = tempfile::Builder::new().prefix("repli-tamper-").tempdir()?;
    let out = suite(tmp.path(), &Variant::ALL).await.map_err(anyhow::Error::msg)?;
    let rows: Vec<TamperRow> = out
        .iter()
        .map(|o| TamperRow {
            variant: o.variant.name(),
            check: o.check.clone(),
            restore: o.restore.clone(),
            target_untouched: o.target_untouched,
            accepted: o.accepted(),
        })
        .collect();
    let workdir = if a.keep { Some(tmp.keep()) } else { None };
    Ok(TamperFigures { variants: rows.len(), accepted: rows.iter().filter(|r| r.accepted).count(), rows, workdir })
}
