//! SLA suspensions, legal facts, and the notifications queue.

use jiff::Timestamp;
use repli_core::{Actor, AuditAction, CrisisId, CrisisState, LegalKind};
use serde_json::json;

use crate::audit::NewEntry;
use crate::crises::SuspensionRecord;
use crate::time::{self, opt_from_db};
use crate::{By, Store, StoreError};
use sqlx::SqliteConnection;

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub key: String,
    pub channel: String,
    pub crisis: Option<String>,
    /// A phone number or an address; None: the channel's configured (ops) recipients.
    pub recipient: Option<String>,
    /// `dgs`, `ops` or `auditors`.
    pub audience: String,
    pub subject: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

type NotificationRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

const NOTIFICATION_COLUMNS: &str = "id, key, channel, crisis_id, subject, body, status, attempts, next_attempt_at, \
                                    last_error, created_at, sent_at, recipient, \
                                    COALESCE(audience, CASE WHEN recipient IS NULL THEN 'ops' ELSE 'dgs' END)";

/// A notification to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewNotification<'a> {
    /// Sent once per key and channel.
    pub key: &'a str,
    pub channel: &'a str,
    pub crisis: Option<&'a str>,
    /// A phone number or an address; None: the channel's configured (ops) recipients.
    pub recipient: Option<&'a str>,
    /// `dgs`, `ops` or `auditors`.
    pub audience: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Queues `n` in `conn` (once per key and channel). An exercise's notification is prefixed
/// « [EXERCICE] » and goes only to the addresses its scenario names: a recipient it does not
/// name is withheld, and a notification to the channel's ops recipients goes to the scenario's
/// addresses of that channel instead (none: withheld). True when something was queued.
pub(crate) async fn enqueue_in(
    conn: &mut SqliteConnection,
    n: &NewNotification<'_>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let exercise = match n.crisis {
        Some(crisis) => crate::audit::exercise_of_in(conn, crisis).await?,
        None => None,
    };
    let Some(exercise) = exercise else {
        return insert_notification(conn, n, n.key, n.subject, n.body, now).await;
    };
    let allowed = crate::exercises::recipients_in(conn, exercise).await?;
    let subject = repli_core::exercise::prefixed(n.subject);
    let body = repli_core::exercise::prefixed(n.body);
    let of_channel = |phone: bool| -> Vec<Option<&str>> {
        allowed.iter().filter(|a| a.contains('@') != phone).map(|a| Some(a.as_str())).collect()
    };
    let targets: Vec<Option<&str>> = match (n.channel, n.recipient) {
        // The log reaches no one.
        ("log", to) => vec![to],
        (_, Some(to)) if repli_core::exercise::may_reach(&allowed, to) => vec![Some(to)],
        (_, Some(_)) => Vec::new(),
        ("sms", None) => of_channel(true),
        ("smtp", None) => of_channel(false),
        // A webhook reaches ops' tools, not the scenario's people.
        _ => Vec::new(),
    };
    if targets.is_empty() {
        tracing::info!(
            key = n.key,
            channel = n.channel,
            exercise,
            "exercise notification withheld: no scenario address"
        );
        return Ok(false);
    }
    let mut queued = false;
    for to in targets {
        let key = match (n.recipient, to) {
            (None, Some(to)) => format!("{}:{to}", n.key),
            _ => n.key.to_owned(),
        };
        let one = NewNotification { recipient: to, ..*n };
        queued |= insert_notification(conn, &one, &key, &subject, &body, now).await?;
    }
    Ok(queued)
}

async fn insert_notification(
    conn: &mut SqliteConnection,
    n: &NewNotification<'_>,
    key: &str,
    subject: &str,
    body: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO notifications (key, channel, crisis_id, recipient, subject, body, created_at, status, \
         next_attempt_at, audience) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?7, ?8) \
         ON CONFLICT (key, channel) DO NOTHING",
    )
    .bind(key)
    .bind(n.channel)
    .bind(n.crisis)
    .bind(n.recipient)
    .bind(subject)
    .bind(body)
    .bind(time::to_db(now))
    .bind(n.audience)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn notification(r: NotificationRow) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: r.0,
        key: r.1,
        channel: r.2,
        crisis: r.3,
        subject: r.4,
        body: r.5,
        status: r.6,
        attempts: r.7,
        next_attempt_at: time::from_db("notifications.next_attempt_at", &r.8)?,
        last_error: r.9,
        created_at: time::from_db("notifications.created_at", &r.10)?,
        sent_at: opt_from_db("notifications.sent_at", r.11)?,
        recipient: r.12,
        audience: r.13,
    })
}

impl Store {
    async fn crisis_state(
        conn: &mut sqlx::SqliteConnection,
        id: &CrisisId,
    ) -> Result<(CrisisState, String), StoreError> {
        let row: Option<(String, String)> = sqlx::query_as("SELECT state, commune FROM crises WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        let (state, commune) = row.ok_or_else(|| StoreError::CrisisNotFound(id.clone()))?;
        let state = state.parse().map_err(|_| StoreError::Corrupt { column: "crises.state", value: state })?;
        Ok((state, commune))
    }

    /// Pauses the SLA clock while ops wait on the commune (before the kit is ready).
    pub async fn suspend_sla(
        &self,
        id: &CrisisId,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let (state, commune) = Self::crisis_state(&mut tx, id).await?;
        if !state.is_open() || state.is_ready_or_later() {
            return Err(StoreError::SlaNotRunning { id: id.clone() });
        }
        let open: Option<i64> =
            sqlx::query_scalar("SELECT id FROM sla_suspensions WHERE crisis_id = ? AND ended_at IS NULL")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if open.is_some() {
            return Err(StoreError::SlaAlreadySuspended { id: id.clone() });
        }
        sqlx::query("INSERT INTO sla_suspensions (crisis_id, started_at, reason, started_by) VALUES (?, ?, ?, ?)")
            .bind(id.as_str())
            .bind(time::to_db(now))
            .bind(reason)
            .bind(actor.user_id)
            .execute(&mut *tx)
            .await?;
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::SlaSuspend,
            id.as_str(),
            json!({ "reason": reason }),
        );
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Restarts the SLA clock.
    pub async fn resume_sla(&self, id: &CrisisId, actor: &Actor, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let (_, commune) = Self::crisis_state(&mut tx, id).await?;
        let done = sqlx::query(
            "UPDATE sla_suspensions SET ended_at = ?, ended_by = ? WHERE crisis_id = ? AND ended_at IS NULL",
        )
        .bind(time::to_db(now))
        .bind(actor.user_id)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::SlaNotSuspended { id: id.clone() });
        }
        let e = NewEntry::crisis(actor, &commune, id.as_str(), AuditAction::SlaResume, id.as_str(), json!({}));
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pauses of a crisis's clock, in start order.
    pub async fn suspensions(&self, id: &CrisisId) -> Result<Vec<SuspensionRecord>, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT started_at, ended_at, reason FROM sla_suspensions WHERE crisis_id = ? ORDER BY started_at, id",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(s, e, reason)| {
                Ok(SuspensionRecord {
                    started_at: time::from_db("sla_suspensions.started_at", &s)?,
                    ended_at: opt_from_db("sla_suspensions.ended_at", e)?,
                    reason,
                })
            })
            .collect()
    }

    /// Records when the commune became aware of the attack and whether personal data is
    /// involved (each only when given).
    pub async fn set_legal_facts(
        &self,
        id: &CrisisId,
        aware_at: Option<Timestamp>,
        personal_data: Option<bool>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let (_, commune) = Self::crisis_state(&mut tx, id).await?;
        sqlx::query(
            "UPDATE crises SET aware_at = COALESCE(?1, aware_at), personal_data = COALESCE(?2, personal_data), \
             updated_at = ?3 WHERE id = ?4",
        )
        .bind(aware_at.map(time::to_db))
        .bind(personal_data.map(i64::from))
        .bind(time::to_db(now))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let details = json!({ "aware_at": aware_at.map(time::to_db), "personal_data": personal_data });
        let e = NewEntry {
            by: By::User(actor),
            commune: Some(&commune),
            crisis: Some(id.as_str()),
            action: AuditAction::LegalFacts,
            target: id.as_str(),
            details,
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that the CNIL was notified, or the complaint filed, at `at`.
    pub async fn mark_legal_done(
        &self,
        id: &CrisisId,
        kind: LegalKind,
        at: Timestamp,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let (_, commune) = Self::crisis_state(&mut tx, id).await?;
        let sql = match kind {
            LegalKind::Cnil => "UPDATE crises SET cnil_notified_at = ?1, updated_at = ?2 WHERE id = ?3",
            LegalKind::Complaint => "UPDATE crises SET complaint_filed_at = ?1, updated_at = ?2 WHERE id = ?3",
        };
        sqlx::query(sql).bind(time::to_db(at)).bind(time::to_db(now)).bind(id.as_str()).execute(&mut *tx).await?;
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::legal_done(kind),
            id.as_str(),
            json!({ "at": time::to_db(at) }),
        );
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues a notification once per (key, channel); returns whether it is new.
    pub async fn enqueue_notification(&self, n: &NewNotification<'_>, now: Timestamp) -> Result<bool, StoreError> {
        // The plan re-derives every moment after each change: one already queued is answered
        // by a read, without taking the writer. (A row under another key, an exercise's, is
        // decided by the insert as before.)
        let queued: Option<i64> = sqlx::query_scalar("SELECT 1 FROM notifications WHERE key = ? AND channel = ?")
            .bind(n.key)
            .bind(n.channel)
            .fetch_optional(&self.read)
            .await?;
        if queued.is_some() {
            return Ok(false);
        }
        let mut tx = self.write.begin().await?;
        let queued = enqueue_in(&mut tx, n, now).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Pending notifications whose next attempt is due.
    pub async fn due_notifications(&self, now: Timestamp) -> Result<Vec<Notification>, StoreError> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id"
        );
        let rows: Vec<NotificationRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(time::to_db(now)).fetch_all(&self.read).await?;
        rows.into_iter().map(notification).collect()
    }

    /// Takes a due notification for one delivery attempt: its next attempt moves to `until`, so
    /// a concurrent delivery (the maintenance round, a playbook step, a transition) skips it and
    /// a daemon that dies while sending tries it again after `until`. False when another took it
    /// or it is no longer pending.
    pub async fn claim_notification(&self, id: i64, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE notifications SET next_attempt_at = ? WHERE id = ? AND status = 'pending' AND next_attempt_at <= ?",
        )
        .bind(time::to_db(until))
        .bind(id)
        .bind(time::to_db(now))
        .execute(&mut *self.write.acquire().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A crisis's notifications, newest first (its page shows them).
    pub async fn crisis_notifications(&self, crisis: &CrisisId, limit: u32) -> Result<Vec<Notification>, StoreError> {
        let sql =
            format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE crisis_id = ? ORDER BY id DESC LIMIT ?");
        let rows: Vec<NotificationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(crisis.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.into_iter().map(notification).collect()
    }

    /// Every notification, newest first (ops see failures here).
    pub async fn notifications(&self, limit: u32) -> Result<Vec<Notification>, StoreError> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications ORDER BY id DESC LIMIT ?");
        let rows: Vec<NotificationRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(i64::from(limit)).fetch_all(&self.read).await?;
        rows.into_iter().map(notification).collect()
    }

    /// Ops send a failed notification again: pending from now, with its attempts counted
    /// afresh. Audited. False when it is not failed (pending or sent ones are left alone).
    pub async fn retry_notification(&self, id: i64, actor: &Actor, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = ? \
             WHERE id = ? AND status = 'failed' RETURNING key, channel, crisis_id",
        )
        .bind(time::to_db(now))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((key, channel, crisis)) = row else { return Ok(false) };
        let commune = match &crisis {
            Some(c) => {
                sqlx::query_scalar::<_, String>("SELECT commune FROM crises WHERE id = ?")
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let e = NewEntry {
            by: By::User(actor),
            commune: commune.as_deref(),
            crisis: crisis.as_deref(),
            action: AuditAction::NotifyRetry,
            target: &id.to_string(),
            details: json!({ "key": key, "channel": channel }),
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records one delivery attempt: sent, retried at `retry_at`, or failed for good.
    pub async fn notification_attempt(
        &self,
        id: i64,
        result: Result<(), &str>,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match (result, retry_at) {
            (Ok(()), _) => {
                sqlx::query("UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = NULL WHERE id = ?")
                    .bind(time::to_db(now))
                    .bind(id)
                    .execute(&mut *self.write.acquire().await?)
                    .await?
            }
            (Err(e), Some(at)) => {
                sqlx::query("UPDATE notifications SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?")
                    .bind(time::to_db(at))
                    .bind(e)
                    .bind(id)
                    .execute(&mut *self.write.acquire().await?)
                    .await?
            }
            (Err(e), None) => {
                sqlx::query("UPDATE notifications SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?")
                    .bind(e)
                    .bind(id)
                    .execute(&mut *self.write.acquire().await?)
                    .await?
            }
        };
        Ok(())
    }
}
