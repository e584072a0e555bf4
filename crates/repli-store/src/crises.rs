//! Crises: creation (with the convention, open-crisis and idempotency checks) and transitions,
//! each in one write transaction with its audit entry.

use jiff::Timestamp;
use repli_core::run::{NewStep, PlaybookName};
use repli_core::{Actor, AuditAction, CrisisAction, CrisisId, CrisisState, InseeCode};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::audit::NewEntry;
use crate::time::{self, opt_from_db};
use crate::{By, Store, StoreError};

/// A validated kit request.
#[derive(Debug, Clone)]
pub struct NewCrisis {
    pub commune: InseeCode,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: Option<String>,
    pub agents: u32,
    pub delivery_address: Option<String>,
    pub notes: String,
    pub due_at: Timestamp,
    /// When the commune became aware of the attack (starts the legal clocks).
    pub aware_at: Option<Timestamp>,
    /// Whether personal data is involved (None: not known yet).
    pub personal_data: Option<bool>,
    /// Equipment wanted, per kind.
    pub needs: Vec<(repli_core::ItemKind, u32)>,
}

/// A crisis as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrisisRecord {
    pub id: CrisisId,
    pub commune: InseeCode,
    pub commune_name: String,
    pub state: CrisisState,
    pub requested_at: Timestamp,
    pub requested_by: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: Option<String>,
    /// Agents declared in the request.
    pub agents: u32,
    /// Agents the commune named so far.
    pub agents_named: u32,
    /// The number of named agents ops accepted as the whole list, when shorter than declared.
    pub agents_short_ok: Option<u32>,
    pub delivery_address: Option<String>,
    pub notes: String,
    pub due_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub provisioning_at: Option<Timestamp>,
    pub ready_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub handback_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    pub updated_at: Timestamp,
    /// When the contact details were erased (RGPD minimisation), if they were.
    pub personal_data_purged_at: Option<Timestamp>,
    pub aware_at: Option<Timestamp>,
    pub personal_data: Option<bool>,
    pub cnil_notified_at: Option<Timestamp>,
    pub complaint_filed_at: Option<Timestamp>,
    /// The exercise this crisis is part of; None for a real crisis.
    pub exercise: Option<repli_core::ExerciseTag>,
}

/// One pause of the SLA clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspensionRecord {
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub reason: String,
}

/// Which crises to list.
#[derive(Debug, Clone, Default)]
pub struct CrisisFilter {
    pub commune: Option<InseeCode>,
    pub state: Option<CrisisState>,
    pub open_only: bool,
    /// Some(false): real crises only; Some(true): exercises only.
    pub exercise: Option<bool>,
}

/// The columns of a crisis record, read `FROM` [`CRISIS_FROM`].
pub(crate) const CRISIS_COLUMNS: &str = "k.*, c.name AS commune_name, u.name AS requested_by_name, \
     x.name AS exercise_name, x.mode AS exercise_mode";
/// The tables a crisis record joins.
pub(crate) const CRISIS_FROM: &str = "crises k JOIN communes c ON c.insee = k.commune \
     JOIN users u ON u.id = k.requested_by LEFT JOIN exercises x ON x.id = k.exercise_id";

fn corrupt(column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt { column, value: value.to_string() }
}

impl CrisisRecord {
    /// Fewer agents named than declared, unless ops accepted the smaller list.
    pub fn agents_gap(&self) -> Option<repli_core::run::AgentsGap> {
        repli_core::run::AgentsGap::of(self.agents_named, self.agents, self.agents_short_ok.is_some())
    }
}

pub(crate) fn from_row(r: &SqliteRow) -> Result<CrisisRecord, StoreError> {
    let id: String = r.try_get("id")?;
    let commune: String = r.try_get("commune")?;
    let state: String = r.try_get("state")?;
    let agents: i64 = r.try_get("agents")?;
    let requested_at: String = r.try_get("requested_at")?;
    let due_at: String = r.try_get("due_at")?;
    let updated_at: String = r.try_get("updated_at")?;
    Ok(CrisisRecord {
        id: CrisisId::parse(&id).map_err(|_| corrupt("crises.id", &id))?,
        commune: InseeCode::parse(&commune).map_err(|_| corrupt("crises.commune", &commune))?,
        commune_name: r.try_get("commune_name")?,
        state: state.parse().map_err(|_| corrupt("crises.state", &state))?,
        requested_at: time::from_db("crises.requested_at", &requested_at)?,
        requested_by: r.try_get("requested_by_name")?,
        contact_name: r.try_get("contact_name")?,
        contact_phone: r.try_get("contact_phone")?,
        contact_email: r.try_get("contact_email")?,
        agents: u32::try_from(agents).map_err(|_| corrupt("crises.agents", agents))?,
        agents_named: {
            let n: i64 = r.try_get("agents_named")?;
            u32::try_from(n).map_err(|_| corrupt("crises.agents_named", n))?
        },
        agents_short_ok: match r.try_get::<Option<i64>, _>("agents_short_ok")? {
            Some(n) => Some(u32::try_from(n).map_err(|_| corrupt("crises.agents_short_ok", n))?),
            None => None,
        },
        delivery_address: r.try_get("delivery_address")?,
        notes: r.try_get("notes")?,
        due_at: time::from_db("crises.due_at", &due_at)?,
        activated_at: opt_from_db("crises.activated_at", r.try_get("activated_at")?)?,
        provisioning_at: opt_from_db("crises.provisioning_at", r.try_get("provisioning_at")?)?,
        ready_at: opt_from_db("crises.ready_at", r.try_get("ready_at")?)?,
        delivered_at: opt_from_db("crises.delivered_at", r.try_get("delivered_at")?)?,
        handback_at: opt_from_db("crises.handback_at", r.try_get("handback_at")?)?,
        closed_at: opt_from_db("crises.closed_at", r.try_get("closed_at")?)?,
        end_reason: r.try_get("end_reason")?,
        updated_at: time::from_db("crises.updated_at", &updated_at)?,
        personal_data_purged_at: opt_from_db("crises.personal_data_purged_at", r.try_get("personal_data_purged_at")?)?,
        aware_at: opt_from_db("crises.aware_at", r.try_get("aware_at")?)?,
        personal_data: r.try_get::<Option<i64>, _>("personal_data")?.map(|v| v != 0),
        cnil_notified_at: opt_from_db("crises.cnil_notified_at", r.try_get("cnil_notified_at")?)?,
        complaint_filed_at: opt_from_db("crises.complaint_filed_at", r.try_get("complaint_filed_at")?)?,
        exercise: match r.try_get::<Option<i64>, _>("exercise_id")? {
            None => None,
            Some(id) => {
                let mode: String = r.try_get("exercise_mode")?;
                Some(repli_core::ExerciseTag {
                    id,
                    name: r.try_get("exercise_name")?,
                    mode: mode.parse().map_err(|_| corrupt("exercises.mode", &mode))?,
                })
            }
        },
    })
}

/// The statement that records a transition: one fixed statement per timestamp column.
fn update_sql(action: CrisisAction) -> &'static str {
    match action {
        CrisisAction::Activate => {
            "UPDATE crises SET state = ?1, activated_at = ?2, updated_at = ?2, end_reason = ?3 WHERE id = ?4 AND state = ?5"
        }
        CrisisAction::StartProvisioning => {
            "UPDATE crises SET state = ?1, provisioning_at = ?2, updated_at = ?2, end_reason = ?3 WHERE id = ?4 AND state = ?5"
        }
        CrisisAction::MarkReady => {
            "UPDATE crises SET state = ?1, ready_at = ?2, updated_at = ?2, end_reason = ?3 WHERE id = ?4 AND state = ?5"
        }
        CrisisAction::Deliver => {
            "UPDATE crises SET state = ?1, delivered_at = ?2, updated_at = ?2, end_reason = ?3 WHERE id = ?4 AND state = ?5"
        }
        CrisisAction::StartHandback => {
            "UPDATE crises SET state = ?1, handback_at = ?2, updated_at = ?2, end_reason = ?3 WHERE id = ?4 AND state = ?5"
        }
        CrisisAction::Close | CrisisAction::Reject | CrisisAction::Cancel => {
            "UPDATE crises SET state = ?1, closed_at = ?2, updated_at = ?2, end_reason = ?3 WHERE id = ?4 AND state = ?5"
        }
    }
}

/// Inserts a validated request (with its needs and its audit entry) in `tx`: the commune must
/// be known and have signed the convention, and have no open crisis of the same kind (a real
/// crisis and an exercise may run side by side). An exercise's crisis is numbered from
/// [`repli_core::exercise::FIRST_SEQ`].
pub(crate) async fn insert_crisis_in(
    store: &Store,
    tx: &mut SqliteConnection,
    new: &NewCrisis,
    actor: &Actor,
    exercise: Option<i64>,
    now: Timestamp,
) -> Result<CrisisId, StoreError> {
    let insee = new.commune.as_str();
    let known: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM communes WHERE insee = ?").bind(insee).fetch_optional(&mut *tx).await?;
    if known.is_none() {
        return Err(StoreError::UnknownCommune(new.commune.clone()));
    }
    let signed: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM conventions WHERE insee = ?").bind(insee).fetch_optional(&mut *tx).await?;
    if signed.is_none() {
        return Err(StoreError::NoConvention(new.commune.clone()));
    }
    let open: Option<String> = sqlx::query_scalar(
        "SELECT id FROM crises WHERE commune = ? AND state NOT IN ('closed', 'rejected', 'cancelled') \
         AND (exercise_id IS NOT NULL) = ?",
    )
    .bind(insee)
    .bind(exercise.is_some())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(open) = open {
        let open = CrisisId::parse(&open).map_err(|_| corrupt("crises.id", &open))?;
        return Err(StoreError::OpenCrisis { commune: new.commune.clone(), open });
    }
    let year = now.to_zoned(jiff::tz::TimeZone::UTC).year();
    let first = if exercise.is_some() { repli_core::exercise::FIRST_SEQ } else { 1 };
    let seq: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq) + 1, ?3) FROM crises WHERE commune = ?1 AND year = ?2 AND (exercise_id IS NOT NULL) = ?4",
    )
    .bind(insee)
    .bind(i64::from(year))
    .bind(i64::from(first))
    .bind(exercise.is_some())
    .fetch_one(&mut *tx)
    .await?;
    let id = CrisisId::new(&new.commune, year, u32::try_from(seq).map_err(|_| corrupt("crises.seq", seq))?);
    let at = time::to_db(now);
    sqlx::query(
        "INSERT INTO crises (id, commune, year, seq, state, requested_at, requested_by, contact_name, \
         contact_phone, contact_email, agents, delivery_address, notes, due_at, updated_at, aware_at, personal_data, \
         exercise_id) VALUES (?1, ?2, ?3, ?4, 'requested', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?5, ?14, ?15, ?16)",
    )
    .bind(id.as_str())
    .bind(insee)
    .bind(i64::from(year))
    .bind(seq)
    .bind(&at)
    .bind(actor.user_id)
    .bind(&new.contact_name)
    .bind(&new.contact_phone)
    .bind(&new.contact_email)
    .bind(i64::from(new.agents))
    .bind(&new.delivery_address)
    .bind(&new.notes)
    .bind(time::to_db(new.due_at))
    .bind(new.aware_at.map(time::to_db))
    .bind(new.personal_data.map(i64::from))
    .bind(exercise)
    .execute(&mut *tx)
    .await?;
    for (kind, n) in &new.needs {
        sqlx::query("INSERT INTO crisis_needs (crisis_id, kind, wanted, requested_at) VALUES (?, ?, ?, ?)")
            .bind(id.as_str())
            .bind(kind.as_str())
            .bind(i64::from(*n))
            .bind(&at)
            .execute(&mut *tx)
            .await?;
    }
    // Contact details are personal data: the audit entry records that they were given,
    // not what they are.
    let needs: serde_json::Map<String, serde_json::Value> =
        new.needs.iter().map(|(k, n)| (k.as_str().to_owned(), json!(n))).collect();
    let details = json!({
        "agents": new.agents,
        "needs": needs,
        "due_at": time::to_db(new.due_at),
        "contact_email_given": new.contact_email.is_some(),
        "delivery_address_given": new.delivery_address.is_some(),
    });
    let e = NewEntry {
        by: By::User(actor),
        commune: Some(insee),
        crisis: Some(id.as_str()),
        action: AuditAction::CrisisRequest,
        target: id.as_str(),
        details,
    };
    store.append(tx, e, now).await?;
    Ok(id)
}

impl Store {
    /// Records a kit request. With an idempotency key, a repeat of the same request by the same
    /// user returns the crisis created the first time (`false` = not created now).
    pub async fn create_crisis(
        &self,
        new: &NewCrisis,
        actor: &Actor,
        idempotency: Option<(&str, &str)>,
        now: Timestamp,
    ) -> Result<(CrisisRecord, bool), StoreError> {
        let mut tx = self.write.begin().await?;
        if let Some((key, request_sha256)) = idempotency {
            let seen: Option<(String, String)> =
                sqlx::query_as("SELECT request_sha256, crisis_id FROM idempotency_keys WHERE user_id = ? AND key = ?")
                    .bind(actor.user_id)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((hash, crisis_id)) = seen {
                drop(tx);
                if hash != request_sha256 {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let id = CrisisId::parse(&crisis_id).map_err(|_| corrupt("idempotency_keys.crisis_id", &crisis_id))?;
                let existing = self.crisis(&id).await?.ok_or(StoreError::CrisisNotFound(id))?;
                return Ok((existing, false));
            }
        }
        let id = insert_crisis_in(self, &mut tx, new, actor, None, now).await?;
        let at = time::to_db(now);
        if let Some((key, request_sha256)) = idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request_sha256, crisis_id, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(actor.user_id)
            .bind(key)
            .bind(request_sha256)
            .bind(id.as_str())
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let rec = self.crisis(&id).await?.ok_or(StoreError::CrisisNotFound(id))?;
        Ok((rec, true))
    }

    /// Applies `action` to a crisis. Activation re-checks the signed convention.
    pub async fn transition(
        &self,
        id: &CrisisId,
        action: CrisisAction,
        reason: Option<&str>,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<CrisisRecord, StoreError> {
        Ok(self.transition_starting(id, action, reason, by, now, &[]).await?.0)
    }

    /// A transition and the run it starts, in one transaction: `work` holds the steps of each
    /// playbook the caller prepared; the one [`PlaybookName::started_by`] this transition (from
    /// the state it finds) is created with it, so no crash can leave the state without its run.
    /// Returns the crisis and the run started, if any.
    pub async fn transition_starting(
        &self,
        id: &CrisisId,
        action: CrisisAction,
        reason: Option<&str>,
        by: By<'_>,
        now: Timestamp,
        work: &[(PlaybookName, Vec<NewStep>)],
    ) -> Result<(CrisisRecord, Option<i64>), StoreError> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String)> = sqlx::query_as("SELECT state, commune FROM crises WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some((state, commune)) = row else {
            return Err(StoreError::CrisisNotFound(id.clone()));
        };
        let from: CrisisState = state.parse().map_err(|_| corrupt("crises.state", &state))?;
        let to = action.check(from, reason)?;
        if action == CrisisAction::Activate {
            let signed: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conventions WHERE insee = ?")
                .bind(&commune)
                .fetch_optional(&mut *tx)
                .await?;
            if signed.is_none() {
                let c = InseeCode::parse(&commune).map_err(|_| corrupt("crises.commune", &commune))?;
                return Err(StoreError::NoConvention(c));
            }
        }
        if action == CrisisAction::Close {
            let out = Store::outstanding_in(&mut tx, id.as_str()).await?;
            if out > 0 {
                return Err(StoreError::ItemsOutstanding { id: id.clone(), count: out });
            }
        }
        if matches!(action, CrisisAction::Cancel | CrisisAction::StartHandback) {
            // Equipment reserved but never handed over goes straight back to the pool.
            let handback = action == CrisisAction::StartHandback;
            Store::release_in(&mut tx, id.as_str(), handback, &crate::inventory::actor_name(by), now).await?;
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let done = sqlx::query(update_sql(action))
            .bind(to.as_str())
            .bind(time::to_db(now))
            .bind(if action.requires_reason() { reason } else { None })
            .bind(id.as_str())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            // Cannot happen with a single writer; refuse rather than audit a change not made.
            return Err(StoreError::Transition(repli_core::TransitionError::Illegal { action, from }));
        }
        let details = json!({ "from": from.as_str(), "to": to.as_str(), "reason": reason });
        let e = NewEntry {
            by,
            commune: Some(&commune),
            crisis: Some(id.as_str()),
            action: AuditAction::transition(action),
            target: id.as_str(),
            details,
        };
        self.append(&mut tx, e, now).await?;
        let mut run = None;
        if let Some(playbook) = PlaybookName::started_by(action, from)
            && let Some((_, steps)) = work.iter().find(|(p, _)| *p == playbook)
        {
            run = Some(self.create_run_in(&mut tx, id, playbook, steps, by, now, false).await?.0);
        }
        tx.commit().await?;
        let record = self.crisis(id).await?.ok_or_else(|| StoreError::CrisisNotFound(id.clone()))?;
        Ok((record, run))
    }

    /// Erases the contact details of crises that ended before `cutoff` (RGPD minimisation),
    /// one audit entry each. Returns the crises purged.
    pub async fn purge_personal_data(&self, cutoff: Timestamp, now: Timestamp) -> Result<Vec<CrisisId>, StoreError> {
        let mut tx = self.write.begin().await?;
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, commune FROM crises WHERE state IN ('closed', 'rejected', 'cancelled') \
             AND closed_at < ? AND personal_data_purged_at IS NULL ORDER BY id",
        )
        .bind(time::to_db(cutoff))
        .fetch_all(&mut *tx)
        .await?;
        let mut purged = Vec::with_capacity(due.len());
        for (id, commune) in due {
            sqlx::query(
                "UPDATE crises SET contact_name = '[effacé]', contact_phone = '', contact_email = NULL, \
                 delivery_address = NULL, notes = '', personal_data_purged_at = ?1, updated_at = ?1 WHERE id = ?2",
            )
            .bind(time::to_db(now))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            // The agents' names too; their services and the loan records stay.
            sqlx::query("UPDATE agents SET name = '[effacé]' WHERE crisis_id = ?").bind(&id).execute(&mut *tx).await?;
            // Every copy: notifications to relay name the contact; manual steps' texts may name
            // them, and ops' notes anyone; outputs of the accounts, the laptop plan and the
            // wind-down list agents by name (their logins are built from their names).
            // The DGS's number or address a message went to is theirs too (ops' and auditors'
            // are the metropole's and stay, as the record of who was told).
            sqlx::query(
                "UPDATE notifications SET subject = '[effacé]', body = '[effacé]', last_error = NULL, \
                 recipient = CASE WHEN audience IN ('ops', 'auditors') THEN recipient \
                 WHEN recipient IS NULL THEN NULL ELSE '[effacé]' END WHERE crisis_id = ?",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE steps SET rendered = NULL, note = NULL, output = CASE WHEN kind IN \
                 ('m365.accounts', 'inventory.assign', 'm365.winddown') THEN NULL ELSE output END \
                 WHERE run_id IN (SELECT id FROM runs WHERE crisis_id = ?)",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM credential_sheets WHERE crisis_id = ?").bind(&id).execute(&mut *tx).await?;
            let details = json!({ "fields": ["contact_name", "contact_phone", "contact_email", "delivery_address", "notes", "agents.name", "notifications.text", "steps.texts", "steps.agent_outputs", "credential_sheets", "documents"], "ended_before": time::to_db(cutoff) });
            let e = NewEntry {
                by: By::System,
                commune: Some(&commune),
                crisis: Some(&id),
                action: AuditAction::CrisisPurgePersonalData,
                target: &id,
                details,
            };
            self.append(&mut tx, e, now).await?;
            purged.push(CrisisId::parse(&id).map_err(|_| corrupt("crises.id", &id))?);
        }
        // An exercise's scenario and recipients name its players: erased once every crisis of
        // the exercise was.
        let drills: Vec<i64> = sqlx::query_scalar(
            "SELECT x.id FROM exercises x WHERE (x.scenario != '' \
             OR EXISTS (SELECT 1 FROM exercise_recipients r WHERE r.exercise_id = x.id)) \
             AND NOT EXISTS (SELECT 1 FROM crises k WHERE k.exercise_id = x.id AND k.personal_data_purged_at IS NULL) \
             ORDER BY x.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        for x in drills {
            sqlx::query("UPDATE exercises SET scenario = '' WHERE id = ?").bind(x).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM exercise_recipients WHERE exercise_id = ?").bind(x).execute(&mut *tx).await?;
            let target = format!("exercise:{x}");
            let e = NewEntry {
                by: By::System,
                commune: None,
                crisis: None,
                action: AuditAction::ExercisePurgePersonalData,
                target: &target,
                details: json!({ "exercise": x, "fields": ["scenario", "recipients"] }),
            };
            self.append(&mut tx, e, now).await?;
        }
        tx.commit().await?;
        if !purged.is_empty() {
            // `secure_delete` overwrote the old values in the database's pages; the WAL still
            // holds the pages as they were before the purge until it is checkpointed and
            // truncated. A reader holding an old snapshot delays the truncation: it is retried
            // at every maintenance round until it succeeds.
            self.wal_truncate_pending.store(true, std::sync::atomic::Ordering::Release);
            self.truncate_wal_if_pending().await?;
        }
        Ok(purged)
    }

    /// The crises whose personal data were erased (their documents on disk go too).
    pub async fn purged_crises(&self) -> Result<Vec<CrisisId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM crises WHERE personal_data_purged_at IS NOT NULL ORDER BY id")
                .fetch_all(&self.read)
                .await?;
        ids.into_iter().map(|id| CrisisId::parse(&id).map_err(|_| corrupt("crises.id", &id))).collect()
    }

    pub async fn crisis(&self, id: &CrisisId) -> Result<Option<CrisisRecord>, StoreError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CRISIS_COLUMNS} FROM {CRISIS_FROM} WHERE k.id = ?")))
                .bind(id.as_str())
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Crises matching `f`, newest request first.
    pub async fn crises(&self, f: &CrisisFilter) -> Result<Vec<CrisisRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CRISIS_COLUMNS} FROM {CRISIS_FROM} \
             WHERE (?1 IS NULL OR k.commune = ?1) AND (?2 IS NULL OR k.state = ?2) \
             AND (?3 = 0 OR k.state NOT IN ('closed', 'rejected', 'cancelled')) \
             AND (?4 IS NULL OR (k.exercise_id IS NOT NULL) = ?4) \
             ORDER BY k.requested_at DESC, k.id DESC",
        )))
        .bind(f.commune.as_ref().map(InseeCode::as_str))
        .bind(f.state.map(CrisisState::as_str))
        .bind(f.open_only)
        .bind(f.exercise)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::AuditFilter;
    use crate::testutil::*;
    use repli_core::{Role, TransitionError};

    pub(crate) fn request(insee: &str) -> NewCrisis {
        NewCrisis {
            commune: InseeCode::parse(insee).unwrap(),
            contact_name: "Anne Martin".into(),
            contact_phone: "+33612345678".into(),
            contact_email: None,
            agents: 20,
            delivery_address: None,
            notes: String::new(),
            due_at: t("2026-11-26T17:00:00Z"),
            aware_at: None,
            personal_data: None,
            needs: Vec::new(),
        }
    }

    #[tokio::test]
    async fn full_lifecycle_is_audited_and_verifies() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let ops = user(&store, Role::Ops, None).await;
        let (c, created) = store.create_crisis(&request("13005"), &dgs, None, t("2026-11-23T09:00:00Z")).await.unwrap();
        assert!(created);
        assert_eq!(c.id.as_str(), "13005-2026-001");
        assert_eq!(c.state, CrisisState::Requested);
        assert_eq!(c.requested_by, dgs.name);
        let mut now = t("2026-11-23T10:00:00Z");
        for a in [
            CrisisAction::Activate,
            CrisisAction::StartProvisioning,
            CrisisAction::MarkReady,
            CrisisAction::Deliver,
            CrisisAction::StartHandback,
            CrisisAction::Close,
        ] {
            let reason = a.requires_reason().then_some("fin de crise");
            store.transition(&c.id, a, reason, By::User(&ops), now).await.unwrap();
            now += jiff::SignedDuration::from_mins(5);
        }
        let done = store.crisis(&c.id).await.unwrap().unwrap();
        assert_eq!(done.state, CrisisState::Closed);
        assert_eq!(done.ready_at, Some(t("2026-11-23T10:10:00Z")));
        let log =
            store.audit_entries(&AuditFilter { crisis: Some(c.id.to_string()), ..Default::default() }).await.unwrap();
        let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "crisis.request",
                "crisis.activate",
                "crisis.start_provisioning",
                "crisis.mark_ready",
                "crisis.deliver",
                "crisis.start_handback",
                "crisis.close"
            ]
        );
        assert!(!log[0].details.contains("612345678"), "contact data leaked into the audit log");
        store.verify_audit(None).await.unwrap();
        // The next crisis of the same commune gets the next number.
        let (c2, _) = store.create_crisis(&request("13005"), &dgs, None, now).await.unwrap();
        assert_eq!(c2.id.as_str(), "13005-2026-002");
    }

    #[tokio::test]
    async fn refusals_leave_nothing_behind() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T09:00:00Z");
        let before = store.verify_audit(None).await.unwrap();
        assert!(matches!(
            store.create_crisis(&request("13055"), &ops, None, now).await,
            Err(StoreError::NoConvention(_))
        ));
        assert!(matches!(
            store.create_crisis(&request("13999"), &ops, None, now).await,
            Err(StoreError::UnknownCommune(_))
        ));
        assert_eq!(store.verify_audit(None).await.unwrap(), before);
        let (c, _) = store.create_crisis(&request("13005"), &dgs, None, now).await.unwrap();
        match store.create_crisis(&request("13005"), &ops, None, now).await {
            Err(StoreError::OpenCrisis { open, .. }) => assert_eq!(open, c.id),
            other => panic!("{other:?}"),
        }
        let e = store.transition(&c.id, CrisisAction::Close, None, By::User(&ops), now).await.unwrap_err();
        assert!(matches!(e, StoreError::Transition(TransitionError::Illegal { from: CrisisState::Requested, .. })));
        let e = store.transition(&c.id, CrisisAction::Cancel, Some(" "), By::User(&dgs), now).await.unwrap_err();
        assert!(matches!(e, StoreError::Transition(TransitionError::ReasonRequired { .. })));
        assert_eq!(store.crisis(&c.id).await.unwrap().unwrap().state, CrisisState::Requested);
        assert_eq!(store.verify_audit(None).await.unwrap().entries, before.entries + 1);
        let cancelled =
            store.transition(&c.id, CrisisAction::Cancel, Some("fausse alerte"), By::User(&dgs), now).await.unwrap();
        assert_eq!(cancelled.end_reason.as_deref(), Some("fausse alerte"));
        // Cancelled crises no longer block a new request.
        store.create_crisis(&request("13005"), &dgs, None, now).await.unwrap();
    }

    #[tokio::test]
    async fn idempotency_keys_replay_or_refuse() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let now = t("2026-11-23T09:00:00Z");
        let (a, created_a) = store.create_crisis(&request("13005"), &dgs, Some(("k1", "h1")), now).await.unwrap();
        let (b, created_b) = store.create_crisis(&request("13005"), &dgs, Some(("k1", "h1")), now).await.unwrap();
        assert!(created_a && !created_b);
        assert_eq!(a.id, b.id);
        assert!(matches!(
            store.create_crisis(&request("13005"), &dgs, Some(("k1", "h2")), now).await,
            Err(StoreError::IdempotencyMismatch)
        ));
        assert_eq!(store.crises(&CrisisFilter::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_updated_or_deleted() {
        let (_d, store) = store().await;
        let err = sqlx::query("UPDATE audit_log SET actor_name = 'x' WHERE seq = 1").execute(store.write.pool()).await;
        assert!(err.is_err());
        let err = sqlx::query("DELETE FROM audit_log").execute(store.write.pool()).await;
        assert!(err.is_err());
        store.verify_audit(None).await.unwrap();
    }
}
