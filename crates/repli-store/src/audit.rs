//! Appending to and reading the audit chain.

use jiff::Timestamp;
use repli_core::audit::{AuditEntry, ChainVerifier, GENESIS_HASH};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::{By, Store, StoreError, time};

/// What one state change records.
pub(crate) struct NewEntry<'a> {
    pub by: By<'a>,
    pub commune: Option<&'a str>,
    pub crisis: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub details: serde_json::Value,
}

/// Appends one entry on the given connection, which must be inside the write transaction of
/// the change it records.
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    e: NewEntry<'_>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let (actor_id, actor_name, actor_role, auth) = match e.by {
        By::User(a) => (a.user_id, a.name.clone(), a.role.as_str(), a.auth.as_str()),
        By::System => (0, "replid".to_owned(), "system", "system"),
    };
    let mut entry = AuditEntry {
        seq,
        at: time::to_db(now),
        actor_id,
        actor_name,
        actor_role: actor_role.to_owned(),
        auth: auth.to_owned(),
        commune: e.commune.map(str::to_owned),
        crisis: e.crisis.map(str::to_owned),
        action: e.action.to_owned(),
        target: e.target.to_owned(),
        details: e.details.to_string(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, actor_name, actor_role, auth, commune, crisis, action, target, \
         details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.seq)
    .bind(&entry.at)
    .bind(entry.actor_id)
    .bind(&entry.actor_name)
    .bind(&entry.actor_role)
    .bind(&entry.auth)
    .bind(&entry.commune)
    .bind(&entry.crisis)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(&entry.details)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *conn)
    .await?;
    tracing::info!(seq, action = e.action, target = e.target, "audit");
    Ok(seq)
}

fn entry_from_row(r: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor_id: r.try_get("actor_id")?,
        actor_name: r.try_get("actor_name")?,
        actor_role: r.try_get("actor_role")?,
        auth: r.try_get("auth")?,
        commune: r.try_get("commune")?,
        crisis: r.try_get("crisis")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        details: r.try_get("details")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// Filters for reading the log; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub crisis: Option<String>,
    pub commune: Option<String>,
    pub after_seq: i64,
    pub limit: u32,
}

/// The result of verifying the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditSummary {
    pub entries: u64,
    pub last_seq: i64,
    pub last_hash: String,
}

/// Rows read per round trip while verifying.
const VERIFY_PAGE: i64 = 10_000;

impl Store {
    /// Entries matching `f`, in sequence order.
    pub async fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor_id, actor_name, actor_role, auth, commune, crisis, action, target, details, \
             prev_hash, hash FROM audit_log WHERE seq > ?1 AND (?2 IS NULL OR crisis = ?2) \
             AND (?3 IS NULL OR commune = ?3) ORDER BY seq LIMIT ?4",
        )
        .bind(f.after_seq)
        .bind(&f.crisis)
        .bind(&f.commune)
        .bind(i64::from(if f.limit == 0 { 1000 } else { f.limit }))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Recomputes every hash and link of the chain, reading it page by page.
    pub async fn verify_audit(&self) -> Result<AuditSummary, StoreError> {
        let mut v = ChainVerifier::default();
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor_id, actor_name, actor_role, auth, commune, crisis, action, target, details, \
                 prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
            )
            .bind(v.last_seq())
            .bind(VERIFY_PAGE)
            .fetch_all(&self.read)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                v.push(&entry_from_row(r)?)?;
            }
        }
        Ok(AuditSummary {
            entries: v.count(),
            last_seq: v.last_seq(),
            last_hash: v.last_hash().to_owned(),
        })
    }
}
