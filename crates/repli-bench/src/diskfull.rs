//! `repli-bench disk-full`: the real `replid` with its data directory on a small tmpfs, filled by
//! clients writing main-courante entries until the storage refuses them; then space is given
//! back. Reports what was acknowledged against what is stored, how refusals were answered,
//! what `/readyz` said, and whether writes succeed again without a restart. Needs root (mount).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use repli_proto::{Client, ClientError};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct DiskFullBench {
    /// Size of the tmpfs holding replid's data directory, in MiB.
    #[arg(long, default_value_t = 24)]
    pub size_mb: u32,
    /// Clients writing at once.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    /// Bytes of text per entry.
    #[arg(long, default_value_t = 2000)]
    pub entry_bytes: usize,
    /// Refusals each writer takes before it stops.
    #[arg(long, default_value_t = 20)]
    pub refusals: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct DiskFullFigures {
    pub size_mb: u32,
    pub writers: u32,
    /// Writes answered 201.
    pub acknowledged: u64,
    /// Acknowledged writes found in the crisis's log afterwards (must equal `acknowledged`).
    pub stored: u64,
    /// Writes refused, by `status code`.
    pub refused: BTreeMap<String, u64>,
    /// Entries stored that nobody saw acknowledged (must be 0).
    pub stored_not_acknowledged: u64,
    /// Entries stored twice (must be 0).
    pub duplicates: u64,
    /// What `/readyz` answered while full.
    pub readyz_while_full: String,
    /// Whether `/readyz` was 200 again and a write succeeded once space was freed, same process.
    pub recovered_without_restart: bool,
    /// Whether the audit chain verified afterwards.
    pub audit_verified: bool,
    pub seconds: f64,
}

impl DiskFullFigures {
    pub fn ok(&self) -> bool {
        self.acknowledged == self.stored
            && self.stored_not_acknowledged == 0
            && self.duplicates == 0
            && !self.refused.is_empty()
            && self
                .refused
                .keys()
                .all(|k| k.starts_with("507 storage_full") || k.starts_with("503 storage_unavailable"))
            && self.recovered_without_restart
            && self.audit_verified
    }
}

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0)
}

pub async fn disk_full(a: &DiskFullBench) -> anyhow::Result<DiskFullFigures> {
    anyhow::ensure!((8..=4096).contains(&a.size_mb), "--size-mb must be between 8 and 4096");
    anyhow::ensure!((1..=64).contains(&a.writers), "--writers must be between 1 and 64");
    anyhow::ensure!((1..=1_000_000).contains(&a.entry_bytes), "--entry-bytes must be between 1 and 1000000");
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("repli-disk-full-").tempdir()?;
    let mnt = tmp.path().join("data");
    std::fs::create_dir_all(&mnt)?;
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={}m,mode=0700", a.size_mb), "tmpfs"])
        .arg(&mnt)
        .output()
        .context("cannot run mount")?;
    if !out.status.success() {
        bail!("cannot mount a tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let _mounted = Tmpfs(mnt.clone());
    let replid = crate::replid_proc::configure(tmp.path(), &mnt.join("repli.db"), "min_free_mb = 1\n")?;
    let token = replid.user("ops", "Banc disque plein")?;
    let auditor_token = replid.user("auditor", "Banc disque plein (audit)")?;
    let (url, _daemon) = replid.run(&tmp.path().join("replid.log")).await?;
    let ops = Client::new(&url, Some(token))?;
    let request = crate::replid_proc::request()?;
    let crisis = ops.request_crisis(&request, None).await?.id;
    // A filler leaves a few MiB: the writers fill those, and removing it gives space back.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 256 * 1024];
        while free_bytes(&mnt) > 3 * 1024 * 1024 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        f.sync_all().ok();
    }

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let mut writers = Vec::new();
    for w in 0..a.writers {
        let (ops, id, ack, refused) = (ops.clone(), crisis.clone(), acknowledged.clone(), refused.clone());
        let (limit, pad) = (a.refusals, "x".repeat(a.entry_bytes));
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            for i in 0u64.. {
                let text = format!("banc {w}-{i} {pad}");
                match ops.add_log(id.as_str(), "information", &text).await {
                    Ok(_) => ack.lock().map(|mut v| v.push(text)).unwrap_or(()),
                    Err(e) => {
                        let key = match &e {
                            ClientError::Api { status, problem } => format!("{} {}", status.as_u16(), problem.code),
                            ClientError::Http { status, .. } => format!("{} (not a problem document)", status.as_u16()),
                            other => format!("transport: {other}"),
                        };
                        if let Ok(mut r) = refused.lock() {
                            *r.entry(key).or_default() += 1;
                        }
                        n += 1;
                        if n >= limit {
                            break;
                        }
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let ready = reqwest::get(format!("{url}/readyz")).await?;
    let readyz_while_full = format!("{} {}", ready.status().as_u16(), ready.text().await.unwrap_or_default());

    // Space comes back: the same process must take writes again.
    std::fs::remove_file(&filler)?;
    let ready_again = reqwest::get(format!("{url}/readyz")).await?.status().is_success();
    let write_again = ops.add_log(crisis.as_str(), "information", "après").await.is_ok();

    let acknowledged = acknowledged.lock().map(|v| v.clone()).unwrap_or_default();
    let log = ops.crisis_log(crisis.as_str()).await?;
    let written: Vec<&String> = log.iter().map(|e| &e.text).filter(|t| t.starts_with("banc ")).collect();
    let distinct: BTreeSet<&String> = written.iter().copied().collect();
    let acked: BTreeSet<&String> = acknowledged.iter().collect();
    let verify = Client::new(&url, Some(auditor_token))?.audit_verify().await;
    Ok(DiskFullFigures {
        size_mb: a.size_mb,
        writers: a.writers,
        acknowledged: acknowledged.len() as u64,
        stored: acked.iter().filter(|t| distinct.contains(**t)).count() as u64,
        refused: refused.lock().map(|r| r.clone()).unwrap_or_default(),
        stored_not_acknowledged: distinct.iter().filter(|t| !acked.contains(**t)).count() as u64,
        duplicates: (written.len() - distinct.len()) as u64,
        readyz_while_full,
        recovered_without_restart: ready_again && write_again,
        audit_verified: verify.is_ok_and(|v| v.verified),
        seconds: started.elapsed().as_secs_f64(),
    })
}
