//! A real `replid` process for the harnesses that measure it from outside (`backup-load`,
//! `disk-full`): its configuration file, its users made on the host, the daemon started and
//! waited for, and the crisis request the harnesses write to.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use repli_proto::Client;
use tokio::process::Command;

/// The `repli*` binary `name`, built beside this one.
pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("no current executable")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!("{} not found next to repli-bench: build it (cargo build --bins)", path.display());
    }
    Ok(path)
}

/// A configured replid, not started yet.
pub(crate) struct Configured {
    pub bin: PathBuf,
    /// The configuration file, as `--config` takes it.
    pub cfg: String,
    port: u16,
}

/// Writes `dir/replid.toml` for a replid on a free loopback port with its database at `db`;
/// `database_extra` is added to its `[database]` section.
pub(crate) fn configure(dir: &Path, db: &Path, database_extra: &str) -> anyhow::Result<Configured> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.join("replid.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\npath = \"{}\"\n{database_extra}",
            db.display()
        ),
    )?;
    Ok(Configured { bin: sibling("replid")?, cfg: config.to_string_lossy().into_owned(), port })
}

impl Configured {
    /// A user made on the host (`replid user add`): its token.
    pub(crate) fn user(&self, role: &str, name: &str) -> anyhow::Result<String> {
        let out = std::process::Command::new(&self.bin)
            .args(["--config", &self.cfg, "user", "add", "--role", role, "--name", name])
            .output()?;
        anyhow::ensure!(out.status.success(), "replid user add: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts `replid run`, its log in `log`; returns once it answers (30 s at most). The
    /// process is killed when the returned handle is dropped.
    pub(crate) async fn run(&self, log: &Path) -> anyhow::Result<(String, tokio::process::Child)> {
        let child = Command::new(&self.bin)
            .args(["--config", &self.cfg, "run"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start replid")?;
        let url = format!("http://127.0.0.1:{}", self.port);
        let anon = Client::new(&url, None)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while anon.health().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "replid did not answer within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok((url, child))
    }
}

/// The crisis request every harness opens (Aubagne).
pub(crate) fn request() -> anyhow::Result<repli_proto::api::CrisisRequest> {
    Ok(repli_proto::api::CrisisRequest {
        commune: repli_core::InseeCode::parse("13005")?,
        contact: repli_proto::api::Contact { name: "Banc".into(), phone: "06 00 00 00 01".into(), email: None },
        agents: 5,
        delivery_address: None,
        notes: None,
        needs: None,
        aware_at: None,
        personal_data: None,
    })
}
