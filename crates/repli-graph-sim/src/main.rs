//! `repli-graph-sim --listen 127.0.0.1:PORT`: a Microsoft Graph simulator on its own.

use anyhow::Context;
use clap::Parser;
use repli_graph_sim::{Faults, PolicyGrant, RetryAfterFormat, SimConfig, Simulator};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "repli-graph-sim", version, about = "Microsoft Graph simulator (SIMULATION: no real tenant)")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Latency added to every HTTP request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Requests admitted per second (each request of a `$batch` counts); 429 beyond.
    #[arg(long)]
    throttle_rps: Option<u32>,
    /// Count a `$batch` request itself against `--throttle-rps` too (Microsoft's pages speak
    /// only of its requests).
    #[arg(long)]
    batch_envelope_counts: bool,
    /// How a 429 states its `Retry-After` (decimal, as Graph's documented sample answer).
    #[arg(long, value_enum, default_value = "decimal")]
    retry_after_format: Format,
    /// Probability of a 503 per request (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Probability that a connection is dropped (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Probability that a `$batch` as a whole answers 424 Failed Dependency (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    batch_424_rate: f64,
    /// Answer a `$batch` with a throttled request 424 as a whole (throttling.md's wording),
    /// each request's answer in its body; 200 otherwise (json-batching.md).
    #[arg(long)]
    throttled_batch_424: bool,
    /// Teams application access policy in force from the start: `none` (a new tenant), or
    /// `global` (Grant-CsApplicationAccessPolicy -Global).
    #[arg(long, value_enum, default_value = "none")]
    meeting_policy: Policy,
    /// How long a policy granted while running (`POST /_sim/meeting-policy`) takes to apply,
    /// in seconds (Microsoft: up to 30 minutes).
    #[arg(long, default_value_t = 1800)]
    policy_delay_s: u64,
    /// Issue opaque access tokens (no JWT payload), as a gateway may.
    #[arg(long)]
    opaque_tokens: bool,
    /// How long a new object stays invisible, in milliseconds.
    #[arg(long, default_value_t = 0)]
    consistency_ms: u64,
    /// How long a Team creation stays in progress, in milliseconds.
    #[arg(long, default_value_t = 300)]
    team_delay_ms: u64,
    /// Licences of the subscribed SKU.
    #[arg(long, default_value_t = 500)]
    licences: u32,
    /// Only this client secret gets a token (any non-empty one otherwise).
    #[arg(long, env = "REPLI_SIM_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The app's certificate (PEM): the token endpoint then also accepts a client assertion
    /// signed with its key (certificate sign-in).
    #[arg(long)]
    client_certificate: Option<PathBuf>,
    /// Append one JSON line per request to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long, default_value_t = 0x5EC0_0125)]
    seed: u64,
    /// Bytes per second each download URL (a drive item's content) sends; 0: unlimited.
    #[arg(long, default_value_t = 0)]
    download_bytes_per_s: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Seconds,
    HttpDate,
    Decimal,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Policy {
    None,
    Global,
}

fn rate(name: &str, value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!((0.0..=1.0).contains(&value), "--{name} must be between 0.0 and 1.0, got {value}");
    Ok(value)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client_certificate = match &args.client_certificate {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let config = SimConfig {
        faults: Faults {
            latency_ms: args.latency_ms,
            throttle_rps: args.throttle_rps.filter(|r| *r > 0),
            batch_envelope_counts: args.batch_envelope_counts,
            retry_after_format: match args.retry_after_format {
                Format::Seconds => RetryAfterFormat::Seconds,
                Format::HttpDate => RetryAfterFormat::HttpDate,
                Format::Decimal => RetryAfterFormat::Decimal,
            },
            fail_rate: rate("fail-rate", args.fail_rate)?,
            reset_rate: rate("reset-rate", args.reset_rate)?,
            batch_424_rate: rate("batch-424-rate", args.batch_424_rate)?,
            throttled_batch_424: args.throttled_batch_424,
            download_bytes_per_s: Some(args.download_bytes_per_s).filter(|b| *b > 0),
            ..Faults::default()
        },
        meeting_policies: match args.meeting_policy {
            Policy::None => Vec::new(),
            Policy::Global => vec![PolicyGrant::Global],
        },
        policy_delay: Duration::from_secs(args.policy_delay_s),
        opaque_tokens: args.opaque_tokens,
        consistency: Duration::from_millis(args.consistency_ms),
        team_delay: Duration::from_millis(args.team_delay_ms),
        licences: args.licences,
        seed: args.seed,
        record: args.record,
        client_secret: args.client_secret,
        client_certificate,
        ..SimConfig::default()
    };
    let sim =
        Simulator::start(&args.listen, config).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("{}", sim.base_url());
    eprintln!("SIMULATION: Microsoft Graph simulator at {} (Graph endpoint {})", sim.base_url(), sim.graph_url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.stop().await;
    Ok(())
}
