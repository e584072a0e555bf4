//! Appending to and reading the audit chain; signed checkpoints; the main courante.

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use repli_core::audit::{
    ActionFilter, AuditAction, AuditBundle, AuditEntry, BUNDLE_FORMAT, ChainSummary, ChainVerifier, Checkpoint,
    GENESIS_HASH, parse_public_key,
};
use repli_core::{Actor, CrisisId, LogKind};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::{By, Store, StoreError, time};

/// What one state change records.
pub(crate) struct NewEntry<'a> {
    pub by: By<'a>,
    pub commune: Option<&'a str>,
    pub crisis: Option<&'a str>,
    pub action: AuditAction,
    pub target: &'a str,
    pub details: serde_json::Value,
}

impl<'a> NewEntry<'a> {
    /// An entry about one crisis of one commune.
    pub fn crisis(
        actor: &'a Actor,
        commune: &'a str,
        crisis: &'a str,
        action: AuditAction,
        target: &'a str,
        details: serde_json::Value,
    ) -> Self {
        Self { by: By::User(actor), commune: Some(commune), crisis: Some(crisis), action, target, details }
    }
}

pub(crate) fn entry_from_row(r: &SqliteRow) -> Result<AuditEntry, StoreError> {
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

fn checkpoint_from_row(r: &SqliteRow) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
        at: r.try_get("at")?,
        public_key: r.try_get("public_key")?,
        signature: r.try_get("signature")?,
    })
}

/// Filters for reading the log; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub crisis: Option<String>,
    pub commune: Option<String>,
    /// Actor name, exact.
    pub actor: Option<String>,
    /// Action, exact (`crisis.activate`) or a prefix ending in `.` (`crisis.`).
    pub action: Option<ActionFilter>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only entries after this sequence number (paging).
    pub after_seq: i64,
    /// At most this many (1 to 10,000; 0 means 1,000).
    pub limit: u32,
}

/// One main-courante entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: LogKind,
    pub author: String,
    pub role: String,
    pub text: String,
}

/// An event to record that changes no other table: an external effect (a Graph call summary),
/// an operator's note. Never a secret or a password.
#[derive(Debug, Clone)]
pub struct Record {
    pub commune: Option<String>,
    pub crisis: Option<String>,
    pub action: AuditAction,
    pub target: String,
    pub details: serde_json::Value,
}

/// Rows read per round trip while verifying.
const VERIFY_PAGE: i64 = 10_000;

const SELECT_ENTRIES: &str = "SELECT seq, at, actor_id, actor_name, actor_role, auth, commune, crisis, action, target, \
     details, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?";

impl Store {
    /// Appends one entry on `conn`, which must be inside the write transaction of the change it
    /// records, and signs a checkpoint when one is due.
    pub(crate) async fn append(
        &self,
        conn: &mut SqliteConnection,
        e: NewEntry<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut head = self.load_head(conn).await?;
        self.append_at(conn, &mut head, e, now).await
    }

    /// The chain's head, read once per appending transaction. When this store signs, the head
    /// must be the one it signed last: a log changed behind its back (a tail rewritten, cut,
    /// or extended) is refused, and writes stop until an operator looks (`/readyz` says why).
    async fn load_head(&self, conn: &mut SqliteConnection) -> Result<ChainHead, StoreError> {
        let head = ChainHead::load(conn).await?;
        if let Some(c) = &self.checkpointing {
            let row = head_row(conn).await?;
            let last = (head.seq > 0).then(|| (head.seq, head.hash.clone()));
            let own = c.key.verifying_key();
            let unsigned = row.as_ref().is_some_and(|r| r.4.is_none());
            let covered = unsigned && head.last_checkpoint == head.seq && {
                let cp =
                    sqlx::query("SELECT seq, hash, at, public_key, signature FROM audit_checkpoints WHERE seq = ?")
                        .bind(head.seq)
                        .fetch_optional(&mut *conn)
                        .await?;
                cp.as_ref()
                    .map(checkpoint_from_row)
                    .transpose()?
                    .is_some_and(|cp| cp.hash == head.hash && cp.verify(&own))
            };
            if let Err(e) = head_matches(row.as_ref(), last.as_ref(), Some(&own), covered) {
                tracing::error!(error = %e, "the audit log changed behind replid's back: writes stop");
                self.write.freeze(format!("the audit chain changed behind replid's back: {e}"));
                return Err(StoreError::Chain(e));
            }
        }
        Ok(head)
    }

    /// Accepts the chain as it stands after a failed verification, on an operator's explicit
    /// decision: the head is signed where the log ends now, an entry records the decision (with
    /// the failure and the reason) and a checkpoint covers it, so the next start verifies from
    /// there. The break itself stays in the log for every full verification to find.
    pub async fn accept_chain_break(
        &self,
        failure: &str,
        reason: &str,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        self.write.thaw();
        let mut tx = self.write.begin().await?;
        let mut head = ChainHead::load(&mut tx).await?;
        let e = NewEntry {
            by,
            commune: None,
            crisis: None,
            action: AuditAction::ServiceAuditBreakAccepted,
            target: "audit_log",
            details: json!({ "failure": failure, "reason": reason, "accepted_head_seq": head.seq }),
        };
        let seq = self.append_at(&mut tx, &mut head, e, now).await?;
        if let Some(c) = &self.checkpointing
            && head.last_checkpoint != seq
        {
            let cp = Checkpoint::sign(&c.key, seq, &head.hash, &time::to_db(now));
            insert_checkpoint(&mut tx, &cp).await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    /// Hands the audit over to `new`: one entry, `service.audit_key_changed`, whose details the
    /// current key signs ([`repli_core::audit::KeyChange`]); the head and a checkpoint at that
    /// entry are signed by `new`. Afterwards this store must be closed: replid restarts with the
    /// new key file. Returns the entry's sequence number.
    pub async fn rotate_key(
        &self,
        new: &ed25519_dalek::SigningKey,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let Some(c) = &self.checkpointing else {
            return Err(StoreError::WritesStopped("no audit key to hand over from".into()));
        };
        let mut tx = self.write.begin().await?;
        let mut head = self.load_head(&mut tx).await?;
        let seq = head.seq + 1;
        let change = repli_core::audit::KeyChange::sign(&c.key, &new.verifying_key(), seq, &head.hash);
        let details =
            serde_json::to_value(&change).map_err(|source| StoreError::Encode { what: "key change", source })?;
        let e = NewEntry {
            by,
            commune: None,
            crisis: None,
            action: AuditAction::ServiceAuditKeyChanged,
            target: "audit_key",
            details,
        };
        let seq = self.append_at(&mut tx, &mut head, e, now).await?;
        let at = time::to_db(now);
        upsert_head(&mut tx, &Checkpoint::sign(new, seq, &head.hash, &at)).await?;
        // A checkpoint at the hand-over (unless one fell due there, signed by the previous key,
        // which the verifier trusts at that entry too): the next start verifies from here.
        if head.last_checkpoint != seq {
            insert_checkpoint(&mut tx, &Checkpoint::sign(new, seq, &head.hash, &at)).await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    /// The signed head of the chain (`None` on an empty log, or one upgraded and not yet
    /// appended to).
    pub async fn signed_head(&self) -> Result<Option<Checkpoint>, StoreError> {
        let mut conn = self.read.acquire().await?;
        Ok(head_row(&mut conn).await?.as_ref().and_then(head_checkpoint))
    }

    /// Verifies the chain against the keys the operator pinned: every checkpoint and the signed
    /// head must be signed by one of them. With `since_last_trusted`, only the entries from the
    /// last checkpoint whose signature verifies are read (replid's start); otherwise the whole
    /// chain (an auditor's check).
    pub async fn verify_audit_trusted(
        &self,
        pins: &[repli_core::audit::KeyPin],
        since_last_trusted: bool,
    ) -> Result<ChainSummary, StoreError> {
        use repli_core::audit::trusted_signature;
        // One read transaction: the checkpoints, the entries and the head are one snapshot, so
        // a write landing during the verification cannot make them disagree.
        let mut snap = self.read.begin().await?;
        let rows = sqlx::query("SELECT seq, hash, at, public_key, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&mut *snap)
            .await?;
        let checkpoints = rows.iter().map(checkpoint_from_row).collect::<Result<Vec<_>, _>>()?;
        let resume = if since_last_trusted {
            checkpoints.iter().rposition(|c| trusted_signature(c, pins).is_ok())
        } else {
            None
        };
        let (mut v, after) = match resume {
            Some(i) => {
                let mut later = checkpoints;
                let rest = later.split_off(i + 1);
                let c = later.pop().ok_or(StoreError::Corrupt { column: "audit_checkpoints", value: String::new() })?;
                let from = c.seq - 1;
                (ChainVerifier::resume_at(c, rest, pins)?, from)
            }
            None => (ChainVerifier::with_trusted(checkpoints, pins)?, 0),
        };
        walk(&mut snap, &mut v, after).await?;
        // The keys trusted at the end of the walk: the pins, and any key they handed over to.
        let trusted = v.trusted().to_vec();
        let summary = v.finish()?;
        // The signed head: the chain's last entry, signed by a trusted key.
        let row = head_row(&mut snap).await?;
        snap.rollback().await?;
        let last = (summary.last_seq > 0).then(|| (summary.last_seq, summary.last_hash.clone()));
        let key = match row.as_ref().and_then(head_checkpoint) {
            Some(c) => {
                trusted_signature(&c, &trusted)?;
                parse_public_key(&c.public_key)
            }
            None => None,
        };
        // An unsigned head (a database upgraded to signed heads) is accepted only when a trusted
        // checkpoint covers the last entry: otherwise a tail rewritten behind replid, its head
        // row's signature cleared, would pass.
        let covered = summary.last_checkpoint == Some(summary.last_seq);
        head_matches(row.as_ref(), last.as_ref(), key.as_ref(), covered)?;
        Ok(summary)
    }

    /// Appends after `head` (read once per transaction) and moves it forward.
    async fn append_at(
        &self,
        conn: &mut SqliteConnection,
        head: &mut ChainHead,
        e: NewEntry<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let (actor_id, actor_name, actor_role, auth) = match e.by {
            By::User(a) => (a.user_id, a.name.clone(), a.role.as_str(), a.auth.as_str()),
            By::System => (0, "replid".to_owned(), "system", "system"),
        };
        // Every entry of an exercise's crisis says so, inside what the chain hashes.
        let mut details = e.details;
        if let Some(crisis) = e.crisis
            && let Some(exercise) = exercise_of_in(conn, crisis).await?
            && let Some(map) = details.as_object_mut()
        {
            map.insert("exercise".to_owned(), serde_json::Value::from(exercise));
        }
        let seq = head.seq + 1;
        let mut entry = AuditEntry {
            seq,
            at: time::to_db(now),
            actor_id,
            actor_name,
            actor_role: actor_role.to_owned(),
            auth: auth.to_owned(),
            commune: e.commune.map(str::to_owned),
            crisis: e.crisis.map(str::to_owned),
            action: e.action.as_str().to_owned(),
            target: e.target.to_owned(),
            details: details.to_string(),
            prev_hash: std::mem::take(&mut head.hash),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        insert_entry(conn, &entry).await?;
        tracing::debug!(seq, action = e.action.as_str(), target = e.target, "audit");
        if let Some(c) = &self.checkpointing {
            // The head is signed in the transaction that moves it: no entry is ever unsigned.
            upsert_head(conn, &Checkpoint::sign(&c.key, seq, &entry.hash, &entry.at)).await?;
        }
        if let Some(c) = &self.checkpointing
            && seq - head.last_checkpoint >= c.every
        {
            insert_checkpoint(conn, &Checkpoint::sign(&c.key, seq, &entry.hash, &entry.at)).await?;
            head.last_checkpoint = seq;
        }
        head.seq = seq;
        head.hash = entry.hash;
        Ok(seq)
    }

    /// Appends `records` in one transaction (all or none). Returns the last sequence number.
    pub async fn record(&self, records: &[Record], by: By<'_>, now: Timestamp) -> Result<i64, StoreError> {
        let mut tx = self.write.begin().await?;
        let mut head = self.load_head(&mut tx).await?;
        for r in records {
            let e = NewEntry {
                by,
                commune: r.commune.as_deref(),
                crisis: r.crisis.as_deref(),
                action: r.action,
                target: &r.target,
                details: r.details.clone(),
            };
            self.append_at(&mut tx, &mut head, e, now).await?;
        }
        tx.commit().await?;
        Ok(head.seq)
    }

    /// Signs a checkpoint at the last entry if entries were added since the last one (the
    /// daemon calls this on a timer). Returns the checkpoint's sequence number.
    pub async fn checkpoint_now(&self, now: Timestamp) -> Result<Option<i64>, StoreError> {
        let Some(c) = &self.checkpointing else {
            return Ok(None);
        };
        let mut tx = self.write.begin().await?;
        // Never sign over a log changed behind replid's back: the head must be the one it signed.
        self.load_head(&mut tx).await?;
        let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let last_cp: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints").fetch_one(&mut *tx).await?;
        let Some((seq, hash)) = last.filter(|(s, _)| Some(*s) > last_cp) else {
            return Ok(None);
        };
        insert_checkpoint(&mut tx, &Checkpoint::sign(&c.key, seq, &hash, &time::to_db(now))).await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    /// The checkpoint public key this store signs with, if any.
    pub fn checkpoint_public_key(&self) -> Option<String> {
        self.checkpointing.as_ref().map(|c| c.public_key_hex())
    }

    /// The most recent signed checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let row =
            sqlx::query("SELECT seq, hash, at, public_key, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT seq, hash, at, public_key, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// Entries matching `f`, in sequence order.
    pub async fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let action_exact = f.action.and_then(ActionFilter::exact).map(AuditAction::as_str);
        let action_prefix = f.action.and_then(ActionFilter::prefix);
        let limit = match f.limit {
            0 => 1000,
            n => n.min(10_000),
        };
        let rows = sqlx::query(
            "SELECT seq, at, actor_id, actor_name, actor_role, auth, commune, crisis, action, target, details, \
             prev_hash, hash FROM audit_log WHERE seq > ?1 AND (?2 IS NULL OR crisis = ?2) \
             AND (?3 IS NULL OR commune = ?3) AND (?4 IS NULL OR actor_name = ?4) \
             AND (?5 IS NULL OR action = ?5) AND (?6 IS NULL OR substr(action, 1, length(?6)) = ?6) \
             AND (?7 IS NULL OR at >= ?7) AND (?8 IS NULL OR at < ?8) ORDER BY seq LIMIT ?9",
        )
        .bind(f.after_seq)
        .bind(&f.crisis)
        .bind(&f.commune)
        .bind(&f.actor)
        .bind(action_exact)
        .bind(action_prefix)
        .bind(f.from.map(time::to_db))
        .bind(f.to.map(time::to_db))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Recomputes every hash and link of the chain, page by page, and checks the checkpoints
    /// against `trusted_key` (an auditor's copy of the public key). Without one, the key the
    /// checkpoints name is used: that still proves the chain matches what was signed, not who
    /// signed it.
    pub async fn verify_audit(&self, trusted_key: Option<&VerifyingKey>) -> Result<ChainSummary, StoreError> {
        let checkpoints = self.checkpoints().await?;
        let key = match (trusted_key, checkpoints.first()) {
            (Some(k), _) => Some(*k),
            (None, Some(c)) => parse_public_key(&c.public_key),
            (None, None) => None,
        };
        let mut v = match key {
            Some(k) => ChainVerifier::with_checkpoints(checkpoints, &k)?,
            None => ChainVerifier::default(),
        };
        walk(&mut *self.read.acquire().await?, &mut v, 0).await?;
        Ok(v.finish()?)
    }

    /// The whole log, its checkpoints and the public key: what auditors verify away from Repli.
    pub async fn audit_bundle(&self) -> Result<AuditBundle, StoreError> {
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let rows = sqlx::query(SELECT_ENTRIES).bind(after).bind(VERIFY_PAGE).fetch_all(&self.read).await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let e = entry_from_row(r)?;
                after = e.seq;
                entries.push(e);
            }
        }
        let checkpoints = self.checkpoints().await?;
        let public_key = self.checkpoint_public_key().or_else(|| checkpoints.first().map(|c| c.public_key.clone()));
        let head = self.signed_head().await?;
        Ok(AuditBundle { format: BUNDLE_FORMAT.to_owned(), public_key, entries, checkpoints, head })
    }

    /// Adds a main-courante entry to an open crisis.
    pub async fn add_log_entry(
        &self,
        id: &CrisisId,
        kind: LogKind,
        text: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<LogEntry, StoreError> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String)> = sqlx::query_as("SELECT commune, state FROM crises WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some((commune, state)) = row else {
            return Err(StoreError::CrisisNotFound(id.clone()));
        };
        let state: repli_core::CrisisState =
            state.parse().map_err(|_| StoreError::Corrupt { column: "crises.state", value: state })?;
        if !state.is_open() {
            return Err(StoreError::CrisisEnded { id: id.clone(), state });
        }
        let e = NewEntry {
            by: By::User(actor),
            commune: Some(&commune),
            crisis: Some(id.as_str()),
            action: AuditAction::log(kind),
            target: id.as_str(),
            details: log_details(kind, text),
        };
        let seq = self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(LogEntry {
            seq,
            at: time::from_db("audit_log.at", &time::to_db(now))?,
            kind,
            author: actor.name.clone(),
            role: actor.role.as_str().to_owned(),
            text: text.to_owned(),
        })
    }

    /// The main courante of a crisis, oldest first.
    pub async fn log_entries(&self, id: &CrisisId) -> Result<Vec<LogEntry>, StoreError> {
        let entries = self
            .audit_entries(&AuditFilter {
                crisis: Some(id.to_string()),
                action: Some(ActionFilter::main_courante()),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            // Only the main courante's own kinds: `log.` is theirs, and an action this version
            // does not know is not one it can show.
            let Some(kind) = e.action_kind().and_then(AuditAction::log_kind) else {
                continue;
            };
            let d: serde_json::Value = serde_json::from_str(&e.details)
                .map_err(|_| StoreError::Corrupt { column: "audit_log.details", value: e.details.clone() })?;
            out.push(LogEntry {
                seq: e.seq,
                at: time::from_db("audit_log.at", &e.at)?,
                kind,
                author: e.actor_name,
                role: e.actor_role,
                // Every main-courante entry is written with its text (log_details): one without
                // is not shown as an empty line.
                text: d["text"]
                    .as_str()
                    .ok_or_else(|| StoreError::Corrupt { column: "audit_log.details", value: e.details.clone() })?
                    .to_owned(),
            });
        }
        Ok(out)
    }
}

/// The details of a main-courante entry (what [`Store::log_entries`] reads back).
pub(crate) fn log_details(kind: LogKind, text: &str) -> serde_json::Value {
    json!({ "type": kind.as_str(), "text": text })
}

/// The exercise a crisis is part of, if any.
pub(crate) async fn exercise_of_in(conn: &mut SqliteConnection, crisis: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT exercise_id FROM crises WHERE id = ?")
        .bind(crisis)
        .fetch_optional(&mut *conn)
        .await?
        .flatten())
}

/// The end of the chain as seen inside a write transaction.
struct ChainHead {
    seq: i64,
    hash: String,
    last_checkpoint: i64,
}

impl ChainHead {
    async fn load(conn: &mut SqliteConnection) -> Result<Self, StoreError> {
        let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        let last_cp: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints").fetch_one(&mut *conn).await?;
        // An empty log: the first entry is seq 1, linked to the genesis hash (docs/AUDIT.md).
        let (seq, hash) = last.unwrap_or((0, GENESIS_HASH.to_owned()));
        // No checkpoint yet: entries since seq 0 count towards the first one.
        Ok(Self { seq, hash, last_checkpoint: last_cp.unwrap_or(0) })
    }
}

/// Pushes every entry after `after` through `v`, page by page; each page is read with one
/// extra row, the lookahead for the last entry of the page.
async fn walk(conn: &mut SqliteConnection, v: &mut ChainVerifier, mut after: i64) -> Result<(), StoreError> {
    loop {
        let rows = sqlx::query(SELECT_ENTRIES).bind(after).bind(VERIFY_PAGE + 1).fetch_all(&mut *conn).await?;
        let page = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
        let take = page.len().min(usize::try_from(VERIFY_PAGE).unwrap_or(usize::MAX));
        for i in 0..take {
            v.push(&page[i], page.get(i + 1))?;
        }
        match page.get(take.saturating_sub(1)) {
            Some(last) if page.len() > take => after = last.seq,
            _ => return Ok(()),
        }
    }
}

async fn upsert_head(conn: &mut SqliteConnection, c: &Checkpoint) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash, at, public_key, signature) VALUES (1, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, at = excluded.at, \
         public_key = excluded.public_key, signature = excluded.signature",
    )
    .bind(c.seq)
    .bind(&c.hash)
    .bind(&c.at)
    .bind(&c.public_key)
    .bind(&c.signature)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The head row: `(seq, hash, at, public_key, signature)`; the last two are NULL on a database
/// upgraded and not yet appended to.
type HeadRow = (i64, String, String, Option<String>, Option<String>);

/// The head row as a signed statement, when it is signed.
fn head_checkpoint(row: &HeadRow) -> Option<Checkpoint> {
    let (seq, hash, at, public_key, signature) = row;
    Some(Checkpoint {
        seq: *seq,
        hash: hash.clone(),
        at: at.clone(),
        public_key: public_key.clone()?,
        signature: signature.clone()?,
    })
}

async fn head_row(conn: &mut SqliteConnection) -> Result<Option<HeadRow>, StoreError> {
    Ok(sqlx::query_as("SELECT seq, hash, at, public_key, signature FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?)
}

/// Whether the signed head (`row`) is the chain's last entry (`last`), signed by `key`.
fn head_matches(
    row: Option<&HeadRow>,
    last: Option<&(i64, String)>,
    key: Option<&VerifyingKey>,
    unsigned_covered: bool,
) -> Result<(), repli_core::ChainError> {
    use repli_core::ChainError;
    match (row, last) {
        (None, None) => Ok(()),
        (None, Some((seq, _))) => Err(ChainError::HeadMismatch {
            seq: *seq,
            signed: "nothing".into(),
            found: "the signed head is missing".into(),
        }),
        (Some((seq, hash, ..)), None) => {
            Err(ChainError::HeadMismatch { seq: *seq, signed: hash.clone(), found: "the log is empty".into() })
        }
        (Some(head @ (seq, hash, ..)), Some((last_seq, last_hash))) => {
            if (seq, hash) != (last_seq, last_hash) {
                return Err(ChainError::HeadMismatch {
                    seq: *seq,
                    signed: hash.clone(),
                    found: format!("the log ends at entry {last_seq} with hash {last_hash}"),
                });
            }
            // Unsigned: a database upgraded to signed heads, not appended to since. Accepted
            // only when a signed checkpoint covers that same last entry.
            let Some(c) = head_checkpoint(head) else {
                return if unsigned_covered {
                    Ok(())
                } else {
                    Err(ChainError::HeadMismatch {
                        seq: *seq,
                        signed: hash.clone(),
                        found: "the head is not signed, and no checkpoint covers the last entry".into(),
                    })
                };
            };
            if key.is_some_and(|k| c.verify(k)) {
                Ok(())
            } else {
                Err(ChainError::HeadMismatch {
                    seq: *seq,
                    signed: hash.clone(),
                    found: "its signature is not the audit key's".into(),
                })
            }
        }
    }
}

pub(crate) async fn insert_entry(conn: &mut SqliteConnection, e: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, actor_name, actor_role, auth, commune, crisis, action, target, \
         details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.seq)
    .bind(&e.at)
    .bind(e.actor_id)
    .bind(&e.actor_name)
    .bind(&e.actor_role)
    .bind(&e.auth)
    .bind(&e.commune)
    .bind(&e.crisis)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.details)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_checkpoint(conn: &mut SqliteConnection, c: &Checkpoint) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_checkpoints (seq, hash, at, public_key, signature) VALUES (?, ?, ?, ?, ?)")
        .bind(c.seq)
        .bind(&c.hash)
        .bind(&c.at)
        .bind(&c.public_key)
        .bind(&c.signature)
        .execute(&mut *conn)
        .await?;
    tracing::info!(seq = c.seq, "audit checkpoint signed");
    Ok(())
}
