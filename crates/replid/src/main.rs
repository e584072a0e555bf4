//! `replid`: the Repli daemon.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use repli_core::{InseeCode, Role};
use replid::Daemon;
use replid::clock::{Clock, SystemClock};
use replid::config::{Config, EXAMPLE};

#[derive(Debug, Parser)]
#[command(
    name = "replid",
    version,
    about = "Repli daemon: crisis-kit provisioning for the communes of the Métropole Aix-Marseille-Provence"
)]
struct Cli {
    /// Configuration file (TOML). Without it, the built-in defaults (see `replid config example`).
    #[arg(long, short, global = true, env = "REPLI_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Run {
        /// Start even though the audit chain does not verify at entry SEQ (as the log line says),
        /// going on from where it stands. The decision, this reason and the local account are
        /// recorded in the log; another failure is not accepted. Without it replid serves reads
        /// and refuses every write (`/readyz` says why).
        #[arg(long, value_name = "SEQ:REASON")]
        accept_audit_break: Option<String>,
    },
    /// First start: create the database, the audit signing key and the first admin, whose
    /// token is printed once.
    Init {
        /// Name of the first administrator.
        #[arg(long, default_value = "Administrateur Repli")]
        admin_name: String,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Health probe for systemd, containers and monitoring: GET /readyz of the configured
    /// server (or --url); exit status 0 when ready, 1 with the reason otherwise.
    Probe {
        /// The server's base address (default: from `server.listen`, https with the configured
        /// certificate when `[server.tls]` is set).
        #[arg(long)]
        url: Option<String>,
    },
    /// Local user administration on the daemon's host (writes the database directly).
    #[command(subcommand)]
    User(UserCommand),
    /// Take a consistent snapshot while replid serves, without writing to its database:
    /// database, documents and a manifest signed with the audit key, in a new folder (written
    /// under a temporary name, then renamed). The signing key stays out: keep it apart.
    Backup {
        /// The folder to create.
        dest: PathBuf,
    },
    /// Restore a snapshot into a new or empty data directory; refused, naming the failed
    /// check, unless its manifest is signed by the trusted key and every file, the audit chain
    /// and its checkpoints are what it says.
    Restore {
        snapshot: PathBuf,
        /// The audit public key to trust: 64 hex digits, a `SHA256:` fingerprint, or a file
        /// holding either (repeatable; added to `audit.trusted_keys`). Without any, the signing
        /// key's public half is trusted.
        #[arg(long, value_parser = repli_app::backup::parse_key_arg)]
        public_key: Vec<repli_core::audit::KeyPin>,
        /// The audit signing key kept apart from the snapshot (installed at the configured key
        /// path). Needed unless the key is already there: a restored replid never makes one.
        #[arg(long)]
        audit_key: Option<PathBuf>,
        /// Only check the snapshot (signature, files, audit chain, checkpoints); restore nothing.
        #[arg(long)]
        check: bool,
    },
    /// Change the audit signing key (replid stopped): the current key signs the hand-over to a
    /// new one in the log; `audit.trusted_keys` must pin the current key first.
    ChangeAuditKey,
    /// Play a whole crisis on a fresh in-process replid (simulation): the README's main job.
    Demo(replid::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the example configuration (all defaults, commented).
    Example,
    /// Load the configuration (file + environment), validate it and print the result.
    Check,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and print their API token, once.
    Add {
        #[arg(long)]
        role: Role,
        #[arg(long)]
        name: String,
        /// Required for a DGS: the INSEE code of their commune.
        #[arg(long)]
        commune: Option<InseeCode>,
        /// Token lifetime in days (default: no expiry).
        #[arg(long)]
        expires_days: Option<u16>,
    },
}

fn init_tracing(format: LogFormat) {
    if let Err(e) = replid::logging::init(None, matches!(format, LogFormat::Json), std::io::stderr) {
        eprintln!("replid: logging not set up: {e}");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested, finishing in-flight requests");
}

/// mimalloc rather than glibc's malloc: replid allocates from many threads (tokio workers and
/// one SQLite thread per connection); see docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every failure ends with one line on stderr and a non-zero status: the error and its causes
/// joined (`anyhow`'s `{:#}`), never `main`'s debug print with its backtrace.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("erreur : {}", repli_core::text::one_line(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    // The demo narrates on its own; its daemon logs only when RUST_LOG asks for them.
    if !matches!(cli.command, Some(Command::Demo(_))) || std::env::var_os("RUST_LOG").is_some() {
        init_tracing(cli.log_format);
    }
    let load = || Config::load(cli.config.as_deref(), std::env::vars()).context("invalid configuration");
    match cli.command.unwrap_or(Command::Run { accept_audit_break: None }) {
        Command::Demo(args) => return replid::demo::main(&args).await,
        Command::Config(ConfigCommand::Example) => print!("{EXAMPLE}"),
        Command::Config(ConfigCommand::Check) => {
            let c = load()?;
            print!("{}", toml::to_string_pretty(&c).context("cannot print configuration")?);
        }
        Command::Run { accept_audit_break } => {
            let mut c = load()?;
            if let Some(decision) = accept_audit_break {
                let (seq, reason) = decision
                    .split_once(':')
                    .and_then(|(seq, reason)| Some((seq.trim().parse::<i64>().ok()?, reason.trim().to_owned())))
                    .filter(|(seq, _)| *seq >= 1)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--accept-audit-break takes SEQ:REASON, SEQ the entry the log names")
                    })?;
                if reason.chars().count() < 10 || reason.chars().count() > 500 {
                    anyhow::bail!("--accept-audit-break needs a reason of 10 to 500 characters (it goes in the log)");
                }
                c.audit.accept_break = Some(repli_app::config::AcceptBreak { seq, reason, operator: local_user() });
            }
            let stopping = async {
                shutdown_signal().await;
                let _ = replid::startup::notify::notify("STOPPING=1");
            };
            let daemon = Daemon::start_with_shutdown(&c, Arc::new(SystemClock), stopping).await?;
            eprintln!("replid listening on {}", daemon.url());
            // Under systemd (Type=notify) the unit is started only now: serving, chain verified.
            match replid::startup::notify::notify("READY=1") {
                Ok(true) => tracing::info!("systemd told: ready"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot tell systemd that replid is ready"),
            }
            daemon.wait().await?;
            tracing::info!("replid stopped");
        }
        Command::Probe { url } => {
            let c = load()?;
            return probe(&c, url.as_deref()).await;
        }
        Command::Init { admin_name } => {
            let c = load()?;
            let created = repli_app::local::init(&c, &admin_name, &local_actor(), SystemClock.now())
                .await
                .context("cannot create the admin")?;
            let key = created.audit_public_key.unwrap_or_default();
            eprintln!("database: {}", c.database.path.display());
            eprintln!("audit signing key: {} (public key {key})", c.audit_key_path().display());
            eprintln!("admin user {} created; its token is printed once, below:", created.id);
            println!("{}", created.token);
        }
        Command::Backup { dest } => {
            let c = load()?;
            let m = repli_app::local::backup(&c, &dest, SystemClock.now())
                .await
                .with_context(|| format!("snapshot into {} failed", dest.display()))?;
            eprintln!(
                "snapshot {}: audit head {} ({}), {} documents, signed by {}; the audit signing key is not in it",
                dest.display(),
                m.audit_last_seq,
                m.audit_last_hash,
                m.documents(),
                m.key_fingerprint()
            );
        }
        Command::Restore { snapshot, public_key, audit_key, check } => {
            let c = load()?;
            let v = if check {
                let trust = repli_app::backup::trust(&c, &public_key, audit_key.as_deref())?;
                repli_app::backup::check(&snapshot, &trust)
                    .await
                    .with_context(|| format!("snapshot {} refused", snapshot.display()))?
            } else {
                let local = local_actor();
                repli_app::backup::restore(
                    &snapshot,
                    &c,
                    &public_key,
                    audit_key.as_deref(),
                    replid::By::User(&local),
                    SystemClock.now(),
                )
                .await
                .with_context(|| format!("restore of {} refused", snapshot.display()))?
            };
            let m = &v.manifest;
            eprintln!(
                "snapshot {} taken {}: signed by {}, every file and the audit chain verified up to {} ({}){}",
                snapshot.display(),
                m.taken_at,
                repli_core::audit::fingerprint(&v.key),
                m.audit_last_seq,
                m.audit_last_hash,
                if check { "" } else { "; restored" }
            );
        }
        Command::ChangeAuditKey => {
            let c = load()?;
            let k = repli_app::local::change_audit_key(&c, &local_actor(), SystemClock.now())
                .await
                .context("the audit key was not changed")?;
            eprintln!(
                "audit key changed at entry {}: {} hands over to {}; the previous key file is kept at {}",
                k.seq,
                k.previous,
                k.new,
                k.retired.display()
            );
            eprintln!("give the new fingerprint to the auditors, and add it to audit.trusted_keys");
        }
        Command::User(UserCommand::Add { role, name, commune, expires_days }) => {
            let c = load()?;
            let now = SystemClock.now();
            let expires = match expires_days {
                Some(d) => Some(now.checked_add(jiff::SignedDuration::from_hours(24 * i64::from(d)))?),
                None => None,
            };
            let user = repli_app::local::add_user(&c, &name, role, commune, expires, &local_actor(), now)
                .await
                .context("cannot create user")?;
            eprintln!("user {} ({}) created; its token is printed once, below:", user.id, user.role);
            println!("{}", user.token);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// GET /readyz of the configured server: 0 when it answers 200, 1 otherwise (the reason on
/// stderr). Loopback addresses and a wildcard listen address are probed on 127.0.0.1.
async fn probe(c: &Config, url: Option<&str>) -> anyhow::Result<std::process::ExitCode> {
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5));
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let port = c.server.listen.port();
            let ip = c.server.listen.ip();
            let ip = if ip.is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { ip };
            let addr = std::net::SocketAddr::new(ip, port);
            match &c.server.tls {
                Some(t) => {
                    let pem = std::fs::read(&t.cert_file)
                        .with_context(|| format!("cannot read {}", t.cert_file.display()))?;
                    for cert in reqwest::Certificate::from_pem_bundle(&pem).context("invalid certificate")? {
                        http = http.add_root_certificate(cert);
                    }
                    // Certificates name hosts: `localhost` reaches the loopback address.
                    format!("https://localhost:{port}")
                }
                None => format!("http://{addr}"),
            }
        }
    };
    let http = http.build().context("HTTP client")?;
    let answer = http.get(format!("{base}/readyz")).send().await;
    match answer {
        Ok(r) if r.status().is_success() => {
            println!("ready");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Ok(r) => {
            let status = r.status();
            let body: String = r.text().await.unwrap_or_default().chars().take(500).collect();
            eprintln!("not ready: HTTP {status}: {}", repli_core::text::one_line(&body));
            Ok(std::process::ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("not ready: {}", repli_core::text::one_line(&format!("{e:#}")));
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// Someone acting on the daemon's host, with file access to its database: the local account
/// running the command, for the audit trail.
fn local_actor() -> repli_core::Actor {
    repli_app::local::local_actor(&local_user())
}

/// The local account running the command.
fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}
