//! `repli-bench`: measured figures for docs/PERFORMANCE.md and the SIGKILL crash harness.
//! Never a timed assertion: each command prints its figures (`--json` for one line).

mod api;
mod bench;
mod campaign;
mod crash;
mod crash_export;
mod diskfull;
mod handback;
mod inventory;
mod replid_proc;
mod snapshots;

use std::process::ExitCode;

use clap::Parser;

/// Repli's benchmarks (SIMULATION: local simulator and loopback only).
#[derive(Debug, Parser)]
#[command(name = "repli-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: bench::BenchCmd,
}

pub(crate) fn failure() -> ExitCode {
    ExitCode::from(1)
}

/// The same allocator as the `replid` binary, so the in-process daemon measures as it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `RUST_LOG=repli_m365=trace` shows each Graph exchange with its timing (on stderr).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .init();
    }
    match bench::run(&cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("repli-bench: {e:#}");
            failure()
        }
    }
}
