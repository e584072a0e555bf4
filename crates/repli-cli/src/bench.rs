//! `repli bench`: measured figures for docs/PERFORMANCE.md (never timed assertions in tests).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use repli_store::{By, Checkpointing, Record, Store};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Audit chain: append rate, and verify rate against raw SHA-256 over the same bytes.
    Audit(AuditBench),
}

#[derive(Debug, Args)]
pub struct AuditBench {
    /// Entries to append.
    #[arg(long, default_value_t = 100_000)]
    pub entries: u32,
    /// Entries per transaction (1 = one transaction per entry, as a state change does).
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// Folder for the database (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct AuditFigures {
    entries: u32,
    batch: u32,
    append_seconds: f64,
    append_per_second: f64,
    /// End to end: SQLite read + decoding + chain verification, one page at a time.
    verify_seconds: f64,
    verify_per_second: f64,
    /// The chain verification itself over entries in memory (as `audit verify --bundle`).
    chain_seconds: f64,
    chain_per_second: f64,
    canonical_bytes: u64,
    raw_sha256_seconds: f64,
    raw_sha256_per_second: f64,
    /// chain verification rate ÷ raw SHA-256 rate over the same bytes (target ≥ 0.5).
    ratio: f64,
    /// end-to-end verify rate from the SQLite file ÷ raw SHA-256 rate.
    ratio_from_sqlite: f64,
    database_bytes: u64,
}

fn record(i: u32) -> Record {
    Record {
        commune: Some("13005".into()),
        crisis: Some("13005-2026-001".into()),
        action: "graph.call".into(),
        target: format!("users/agent{i:06}@aubagne.secours-amp.fr"),
        details: json!({ "method": "POST", "path": "/v1.0/users", "status": 201, "id": format!("{i:08x}-0000-4000-8000-00000000abcd") }),
    }
}

async fn audit(a: &AuditBench) -> anyhow::Result<AuditFigures> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let db = dir.join("bench-audit.db");
    if db.exists() {
        anyhow::bail!("{} exists: choose an empty --dir", db.display());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).context("no randomness")?;
    let store =
        Store::open_with(&db, Some(Checkpointing::new(ed25519_dalek::SigningKey::from_bytes(&seed), 1000))).await?;
    let now: jiff::Timestamp = "2026-11-23T08:00:00Z".parse()?;
    let batch = a.batch.max(1);

    let t = Instant::now();
    let mut i = 0;
    while i < a.entries {
        let n = batch.min(a.entries - i);
        let recs: Vec<Record> = (i..i + n).map(record).collect();
        store.record(&recs, By::System, now).await?;
        i += n;
    }
    let append = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let summary = store.verify_audit(None).await?;
    let verify = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.entries == u64::from(a.entries),
        "verified {} entries, appended {}",
        summary.entries,
        a.entries
    );

    // The same bytes, hashed with nothing else around them.
    let bundle = store.audit_bundle().await?;
    let t = Instant::now();
    let chain = repli_core::audit::verify_chain(&bundle.entries)?;
    let chain_seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(chain.entries == u64::from(a.entries), "in-memory verification disagrees");
    let bytes: Vec<Vec<u8>> = bundle.entries.iter().map(repli_core::AuditEntry::canonical_bytes).collect();
    let total: u64 = bytes.iter().map(|b| b.len() as u64).sum();
    let t = Instant::now();
    let mut acc = 0u8;
    for b in &bytes {
        acc ^= Sha256::digest(b)[0];
    }
    let raw = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    store.close().await;
    let database_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let n = f64::from(a.entries);
    Ok(AuditFigures {
        entries: a.entries,
        batch,
        append_seconds: append,
        append_per_second: n / append,
        verify_seconds: verify,
        verify_per_second: n / verify,
        canonical_bytes: total,
        raw_sha256_seconds: raw,
        raw_sha256_per_second: n / raw,
        chain_seconds,
        chain_per_second: n / chain_seconds,
        ratio: raw / chain_seconds,
        ratio_from_sqlite: raw / verify,
        database_bytes,
    })
}

pub async fn run(cmd: &BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Audit(a) => {
            let f = audit(a).await?;
            if a.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!("audit bench: {} entries, {} per transaction", f.entries, f.batch);
                println!("  append        {:>10.0} entries/s  ({:.2} s)", f.append_per_second, f.append_seconds);
                println!(
                    "  verify        {:>10.0} entries/s  ({:.2} s, SQLite read + canonical encoding + SHA-256 + links)",
                    f.verify_per_second, f.verify_seconds
                );
                println!(
                    "  raw SHA-256   {:>10.0} entries/s  ({:.2} s over the same {} bytes)",
                    f.raw_sha256_per_second, f.raw_sha256_seconds, f.canonical_bytes
                );
                println!(
                    "  chain verify  {:>10.0} entries/s  ({:.2} s, entries in memory, as for a bundle)",
                    f.chain_per_second, f.chain_seconds
                );
                println!("  ratio chain verify / raw SHA-256 = {:.2} (target ≥ 0.5)", f.ratio);
                println!("  ratio end-to-end verify from SQLite / raw SHA-256 = {:.2}", f.ratio_from_sqlite);
                println!("  database size {} MB", f.database_bytes / 1_000_000);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
