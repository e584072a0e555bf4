//! `repli audit`: verify the chain (online, offline on a database file, or on an export
//! bundle) and export it for auditors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use repli_core::audit::{AuditBundle, AuditEntry, BUNDLE_FORMAT, ChainError, ChainSummary, KeyPin, Pin};
use repli_proto::Client;
use repli_proto::api::AuditQuery;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the audit chain: on the server, offline on a database file, or on a bundle.
    Verify(VerifyArgs),
    /// Export entries (JSON lines or CSV), or the whole log as a verifiable bundle.
    Export(ExportArgs),
    /// The signed head of the log (sequence, hash, signature): keep it, and pass it later to
    /// `verify --pin` to prove nothing up to it was cut or rewritten.
    Head {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify this SQLite file offline, read-only (no daemon needed).
    #[arg(long, conflicts_with = "bundle")]
    pub db: Option<PathBuf>,
    /// Verify an export bundle (`repli audit export --format bundle`).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// The audit public key you hold (64 hex digits, or its `SHA256:…` fingerprint as the
    /// journal page shows it); repeat for a key change. Checkpoints and the signed head must be
    /// signed by it. Without it, only the chain's integrity is checked, not who signed: say so.
    #[arg(long)]
    pub public_key: Vec<String>,
    /// A head pinned earlier (`SEQ:HASH` from `repli audit head`): the log must still hold it.
    #[arg(long)]
    pub pin: Option<Pin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Bundle,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[arg(long)]
    pub crisis: Option<String>,
    #[arg(long)]
    pub commune: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (`crisis.`, `log.`).
    #[arg(long)]
    pub action: Option<String>,
    /// From this instant (RFC 3339), inclusive.
    #[arg(long)]
    pub from: Option<jiff::Timestamp>,
    /// Until this instant (RFC 3339), exclusive.
    #[arg(long)]
    pub to: Option<jiff::Timestamp>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn pins(args: &[String]) -> anyhow::Result<Vec<KeyPin>> {
    args.iter().map(|k| KeyPin::parse(k).map_err(|e| anyhow::anyhow!("--public-key: {e}"))).collect()
}

fn report(result: Result<ChainSummary, ChainError>) -> ExitCode {
    match result {
        Ok(s) => {
            match s.last_checkpoint {
                Some(c) => println!("{} entries verified, last checkpoint at seq {c}", s.entries),
                None => println!("{} entries verified, no signed checkpoint yet", s.entries),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("audit verification FAILED at seq {}: {e}", e.seq());
            ExitCode::FAILURE
        }
    }
}

/// Verifies a database file offline.
pub async fn verify_db(path: &Path, pins: &[KeyPin]) -> anyhow::Result<Result<ChainSummary, ChainError>> {
    Ok(repli_app::offline::verify_database(path, pins).await?)
}

fn read_bundle(path: &Path) -> anyhow::Result<AuditBundle> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let b: AuditBundle = serde_json::from_reader(std::io::BufReader::new(f))
        .with_context(|| format!("{} is not an audit bundle", path.display()))?;
    if b.format != BUNDLE_FORMAT {
        bail!("{}: unsupported bundle format `{}` (expected {BUNDLE_FORMAT})", path.display(), b.format);
    }
    Ok(b)
}

/// Verifies a bundle file.
pub fn verify_bundle(path: &Path, pins: &[KeyPin]) -> anyhow::Result<Result<ChainSummary, ChainError>> {
    Ok(read_bundle(path)?.verify(pins))
}

/// Adds the pin check to a verification's exit code.
async fn pinned<F, Fut>(code: ExitCode, pin: Option<&Pin>, found: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<AuditEntry>>>,
{
    let Some(pin) = pin else { return Ok(code) };
    match pin.check(found().await?.as_ref()) {
        Ok(()) => {
            println!("pinned head {} found unchanged", pin.seq);
            Ok(code)
        }
        Err(why) => {
            println!("audit verification FAILED against the pinned head: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn pinned_in_db(path: &Path, pin: Option<&Pin>) -> anyhow::Result<Option<AuditEntry>> {
    let Some(pin) = pin else { return Ok(None) };
    Ok(repli_app::offline::entry_in_database(path, pin.seq).await?)
}

fn pinned_in_bundle(path: &Path, pin: Option<&Pin>) -> anyhow::Result<Option<AuditEntry>> {
    let Some(pin) = pin else { return Ok(None) };
    Ok(read_bundle(path)?.entries.into_iter().find(|e| e.seq == pin.seq))
}

pub async fn run(cmd: &AuditCmd, client: impl FnOnce() -> anyhow::Result<Client>) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify(a) => {
            let pins = pins(&a.public_key)?;
            if pins.is_empty() {
                eprintln!(
                    "note: no --public-key given: the chain's integrity is checked, not who signed it \
                     (a log re-signed with another key would pass). Pass the key you hold."
                );
            } else {
                let shown: Vec<String> = pins.iter().map(ToString::to_string).collect();
                eprintln!("trusted key(s): {}", shown.join(", "));
            }
            if let Some(db) = &a.db {
                let code = report(verify_db(db, &pins).await?);
                return pinned(code, a.pin.as_ref(), || pinned_in_db(db, a.pin.as_ref())).await;
            }
            if let Some(b) = &a.bundle {
                let code = report(verify_bundle(b, &pins)?);
                return pinned(code, a.pin.as_ref(), || async { pinned_in_bundle(b, a.pin.as_ref()) }).await;
            }
            let c = client()?;
            if !pins.is_empty() {
                // With a key of its own, the auditor does not take the server's word: the whole
                // log is fetched and verified here.
                let bundle = c.audit_bundle().await?;
                let code = report(bundle.verify(&pins));
                let found = a.pin.as_ref().and_then(|p| bundle.entries.iter().find(|e| e.seq == p.seq).cloned());
                return pinned(code, a.pin.as_ref(), || async { Ok(found) }).await;
            }
            let v = c.audit_verify().await?;
            if let Some(pin) = &a.pin {
                let q = AuditQuery { after: Some(pin.seq - 1), limit: Some(1), ..Default::default() };
                let found = c.audit_entries(&q).await?.entries.into_iter().next();
                if let Err(why) = pin.check(found.as_ref()) {
                    println!("audit verification FAILED against the pinned head: {why}");
                    return Ok(ExitCode::FAILURE);
                }
                println!("pinned head {} found unchanged", pin.seq);
            }
            if v.verified {
                println!(
                    "{} entries verified by the server against its pinned key(s) {}, {}",
                    v.entries,
                    v.trusted_keys.join(", "),
                    v.last_checkpoint.map_or_else(
                        || "no signed checkpoint yet".to_owned(),
                        |c| format!("last checkpoint at seq {c}")
                    )
                );
                if let Some(k) = v.public_key {
                    println!("checkpoint public key: {k}");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                println!("audit verification FAILED: {}", v.error.unwrap_or_default());
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCmd::Head { json } => {
            let h = client()?.audit_head().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                println!("audit head: seq {}, hash {}", h.seq, h.hash);
                println!("signed at {} by key {}", h.at, h.public_key);
                println!("signature {}", h.signature);
                println!("keep it, then check later: repli audit verify --pin {}:{}", h.seq, h.hash);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export(a) => {
            let c = client()?;
            let mut out: Box<dyn Write> = match &a.out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            if a.format == ExportFormat::Bundle {
                if a.crisis.is_some()
                    || a.commune.is_some()
                    || a.actor.is_some()
                    || a.action.is_some()
                    || a.from.is_some()
                    || a.to.is_some()
                {
                    bail!("a bundle is the whole log (a filtered chain cannot be verified): drop the filters");
                }
                serde_json::to_writer(&mut out, &c.audit_bundle().await?)?;
                writeln!(out)?;
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            let q = AuditQuery {
                crisis: a.crisis.clone(),
                commune: a.commune.clone(),
                actor: a.actor.clone(),
                action: a.action.clone(),
                from: a.from,
                to: a.to,
                after: None,
                limit: Some(5000),
            };
            let entries = c.audit_entries_all(&q).await?;
            match a.format {
                ExportFormat::Jsonl => {
                    for e in &entries {
                        serde_json::to_writer(&mut out, e)?;
                        writeln!(out)?;
                    }
                }
                ExportFormat::Csv | ExportFormat::Bundle => write_csv(&mut out, &entries)?,
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Entries as CSV, every text cell neutralised against formula injection.
pub fn write_csv(out: &mut impl Write, entries: &[AuditEntry]) -> anyhow::Result<()> {
    repli_core::audit::write_csv(out, entries)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_export_neutralises_formulas() {
        let e = AuditEntry {
            seq: 1,
            at: "2026-11-23T08:00:00Z".into(),
            actor_id: 2,
            actor_name: "=HYPERLINK(\"http://x\")".into(),
            actor_role: "ops".into(),
            auth: "token".into(),
            commune: Some("13005".into()),
            crisis: None,
            action: repli_core::AuditAction::LogInformation.to_string(),
            target: "@SUM(A1)".into(),
            details: "{\"text\":\"-1+1\"}".into(),
            prev_hash: "0".into(),
            hash: "1".into(),
        };
        let mut out = Vec::new();
        write_csv(&mut out, &[e]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{row}");
        assert!(row.contains(",'@SUM(A1),"), "{row}");
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        for rec in rdr.records() {
            for cell in rec.unwrap().iter() {
                assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell}");
            }
        }
    }
}
