//! `repli-bench handback`: the data hand-back's export against the Graph simulator at a
//! latency, under a throttle, with mailboxes of many messages and drives of large files.
//! Reports the time against the lower bound (requests ÷ the throttle's rate, bytes ÷ the
//! download bandwidth), and the process's peak RSS (memory must not grow with file sizes:
//! everything is streamed).

use std::time::{Duration, Instant};

use clap::Args;
use repli_app::handback::{ExportOptions, KitRef, write_archive};
use repli_core::CrisisId;
use repli_core::m365::M365 as _;
use repli_graph_sim::{ContentSpec, Faults, SimConfig, Simulator};
use repli_m365::{GraphConfig, GraphProvider, Secret};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct HandbackBench {
    /// Kit accounts (one mailbox and one OneDrive each).
    #[arg(long, default_value_t = 50)]
    pub mailboxes: usize,
    /// Messages per mailbox.
    #[arg(long, default_value_t = 200)]
    pub messages: u32,
    /// Bytes of each message's MIME.
    #[arg(long, default_value_t = 4_000)]
    pub message_bytes: usize,
    /// Total bytes of files: one file in each account's OneDrive.
    #[arg(long, default_value_t = 2_000_000_000)]
    pub file_bytes: u64,
    /// Simulated Graph round-trip latency.
    #[arg(long, default_value_t = 100)]
    pub latency_ms: u64,
    /// Graph requests per second the tenant admits (429 beyond).
    #[arg(long, default_value_t = 150)]
    pub throttle_rps: u32,
    /// Bytes per second each download URL sends.
    #[arg(long, default_value_t = 50_000_000)]
    pub download_bytes_per_s: u64,
    /// Items fetched at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// One JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct HandbackFigures {
    pub items: usize,
    pub bytes: u64,
    pub graph_requests: u64,
    pub throttled: u64,
    pub seconds: f64,
    /// max(requests ÷ rate, bytes ÷ (bandwidth × streams)): no export can beat it.
    pub lower_bound_seconds: f64,
    pub ratio: f64,
    pub peak_rss_mib: f64,
    pub complete: bool,
}

/// The process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub async fn run(b: &HandbackBench) -> anyhow::Result<HandbackFigures> {
    // The files: one per OneDrive, the total spread evenly over the accounts.
    let per_file = b.file_bytes / (b.mailboxes.max(1) as u64);
    let content = ContentSpec {
        messages: b.messages,
        message_bytes: b.message_bytes,
        files: if per_file > 0 { vec![per_file] } else { Vec::new() },
        awkward: false,
        vanishing: 0,
        channel_messages: 0,
        channel_replies: 0,
    };
    let sim = Simulator::start("127.0.0.1:0", SimConfig { content, ..SimConfig::default() }).await?;
    // The accounts: made by hand on the initial domain (the provisioning has its own bench).
    for i in 0..b.mailboxes {
        sim.seed_user(&format!("agent{i:03}"));
    }
    let mut config =
        GraphConfig::new(&sim.graph_url(), sim.base_url(), "tenant-amp", "client-repli", Secret::new("s3cret"));
    config.concurrency = b.concurrency.max(1);
    config.budget = Duration::from_secs(600);
    let m365 = GraphProvider::new(config)?;
    sim.set_faults(Faults {
        latency_ms: b.latency_ms,
        throttle_rps: Some(b.throttle_rps),
        download_bytes_per_s: Some(b.download_bytes_per_s),
        ..Faults::default()
    });
    let dir = tempfile::tempdir()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let crisis = CrisisId::parse("13005-2026-001").map_err(|e| anyhow::anyhow!("{e}"))?;
    let options = ExportOptions { concurrency: b.concurrency.max(1), ..ExportOptions::default() };
    let started = Instant::now();
    let w = write_archive(
        dir.path(),
        &key,
        &KitRef { crisis: &crisis, domain: "amp-secours.onmicrosoft.com", nickname: "aucun-groupe" },
        &m365,
        &options,
        jiff::Timestamp::UNIX_EPOCH,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = m365.stats();
    let (items, bytes, _) = w.manifest.tally();
    let streams = b.concurrency.max(1).min(b.mailboxes.max(1)) as f64;
    let lower_bound_seconds = (stats.distinct_requests as f64 / f64::from(b.throttle_rps))
        .max(b.file_bytes as f64 / (b.download_bytes_per_s as f64 * streams));
    Ok(HandbackFigures {
        items,
        bytes,
        graph_requests: stats.graph_requests,
        throttled: stats.throttled,
        seconds,
        lower_bound_seconds,
        ratio: seconds / lower_bound_seconds.max(f64::EPSILON),
        peak_rss_mib: peak_rss_mib(),
        complete: w.manifest.complete(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness at a small scale (CI): every item exported, the figures filled in.
    #[tokio::test]
    async fn a_small_hand_back_bench_exports_everything() {
        let b = HandbackBench {
            mailboxes: 3,
            messages: 5,
            message_bytes: 500,
            file_bytes: 3_000_000,
            latency_ms: 5,
            throttle_rps: 40,
            download_bytes_per_s: 20_000_000,
            concurrency: 4,
            json: true,
        };
        let f = run(&b).await.unwrap();
        assert!(f.complete);
        assert_eq!(f.items, 3 * 5 + 3);
        // Each message is at least its size (its headers may take it a little over).
        let messages = f.bytes - 3_000_000;
        assert!((3 * 5 * 500..3 * 5 * 600).contains(&messages), "{f:?}");
        assert!(f.lower_bound_seconds > 0.0 && f.seconds > 0.0 && f.peak_rss_mib > 0.0, "{f:?}");
    }
}
