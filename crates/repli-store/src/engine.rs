//! The engine's durable state: runs of playbooks and the state of each step. Every state
//! change is a write with its audit entry in the same transaction.

use jiff::Timestamp;
use repli_core::run::{ManualTask, NewStep, PlaybookName, RunRecord, RunState, StepFinish, StepOutput, StepRecord};
use repli_core::{AuditAction, CrisisId, StepKind, StepState};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::audit::NewEntry;
use crate::inventory::actor_name;
use crate::time::{self, opt_from_db};
use crate::{By, Store, StoreError};

fn json_col(r: &SqliteRow, col: &'static str) -> Result<Option<Value>, StoreError> {
    let raw: Option<String> = r.try_get(col)?;
    raw.map(|s| serde_json::from_str(&s).map_err(|_| StoreError::Corrupt { column: col, value: s })).transpose()
}

/// A NOT NULL column holding a JSON array of strings (`steps.needs`, `steps.checklist`):
/// anything else is corruption, never an empty list (a step whose `needs` read as empty would
/// run before the steps it waits for).
fn strings(r: &SqliteRow, col: &str, column: &'static str) -> Result<Vec<String>, StoreError> {
    let raw: String = r.try_get(col)?;
    serde_json::from_str(&raw).map_err(|_| StoreError::Corrupt { column, value: raw })
}

/// A NOT NULL count column that must fit a `u32`.
fn count(r: &SqliteRow, col: &str, column: &'static str) -> Result<u32, StoreError> {
    let n: i64 = r.try_get(col)?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt { column, value: n.to_string() })
}

fn step_from_row(r: &SqliteRow) -> Result<StepRecord, StoreError> {
    let state: String = r.try_get("state")?;
    let kind: String = r.try_get("kind")?;
    let kind = StepKind::parse(&kind).ok_or(StoreError::Corrupt { column: "steps.kind", value: kind })?;
    let output = json_col(r, "output")?
        .map(|v| StepOutput::decode(kind, v))
        .transpose()
        .map_err(|e| StoreError::Corrupt { column: "steps.output", value: e.to_string() })?;
    let rendered = json_col(r, "rendered")?
        .map(serde_json::from_value::<ManualTask>)
        .transpose()
        .map_err(|e| StoreError::Corrupt { column: "steps.rendered", value: e.to_string() })?;
    Ok(StepRecord {
        run_id: r.try_get("run_id")?,
        step_id: r.try_get("step_id")?,
        position: r.try_get("position")?,
        kind,
        title: r.try_get("title")?,
        needs: strings(r, "needs", "steps.needs")?,
        params: json_col(r, "params")?.ok_or(StoreError::Corrupt { column: "steps.params", value: "NULL".into() })?,
        instructions: r.try_get("instructions")?,
        checklist: strings(r, "checklist", "steps.checklist")?,
        estimate_secs: r.try_get("estimate_secs")?,
        budget_secs: r.try_get("budget_secs")?,
        max_attempts: count(r, "max_attempts", "steps.max_attempts")?,
        state: StepState::parse(&state).ok_or(StoreError::Corrupt { column: "steps.state", value: state })?,
        attempts: count(r, "attempts", "steps.attempts")?,
        not_before: opt_from_db("steps.not_before", r.try_get("not_before")?)?,
        first_started_at: opt_from_db("steps.first_started_at", r.try_get("first_started_at")?)?,
        started_at: opt_from_db("steps.started_at", r.try_get("started_at")?)?,
        finished_at: opt_from_db("steps.finished_at", r.try_get("finished_at")?)?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: opt_from_db("steps.lease_until", r.try_get("lease_until")?)?,
        last_error: r.try_get("last_error")?,
        output,
        rendered,
        confirmed_by: r.try_get("confirmed_by")?,
        confirmed_at: opt_from_db("steps.confirmed_at", r.try_get("confirmed_at")?)?,
        note: r.try_get("note")?,
    })
}

fn run_from_row(r: &SqliteRow) -> Result<RunRecord, StoreError> {
    let crisis: String = r.try_get("crisis_id")?;
    let playbook: String = r.try_get("playbook")?;
    let state: String = r.try_get("state")?;
    Ok(RunRecord {
        id: r.try_get("id")?,
        crisis_id: CrisisId::parse(&crisis)
            .map_err(|_| StoreError::Corrupt { column: "runs.crisis_id", value: crisis })?,
        commune: r.try_get("commune")?,
        playbook: PlaybookName::parse(&playbook)
            .ok_or(StoreError::Corrupt { column: "runs.playbook", value: playbook })?,
        state: RunState::parse(&state).ok_or(StoreError::Corrupt { column: "runs.state", value: state })?,
        created_at: time::from_db("runs.created_at", &r.try_get::<String, _>("created_at")?)?,
        finished_at: opt_from_db("runs.finished_at", r.try_get("finished_at")?)?,
    })
}

/// A run query: the columns and join, then `$tail` (literal SQL, so the query stays static).
macro_rules! run_select {
    ($tail:literal) => {
        concat!(
            "SELECT r.id, r.crisis_id, c.commune, r.playbook, r.state, r.created_at, r.finished_at ",
            "FROM runs r JOIN crises c ON c.id = r.crisis_id ",
            $tail
        )
    };
}

impl Store {
    /// Starts `playbook` for a crisis with its steps pending; returns the existing run when
    /// there is one (so a repeated activation starts nothing twice).
    pub async fn create_run(
        &self,
        crisis: &CrisisId,
        playbook: PlaybookName,
        steps: &[NewStep],
        by: By<'_>,
        now: Timestamp,
    ) -> Result<(i64, bool), StoreError> {
        let mut tx = self.write.begin().await?;
        let out = self.create_run_in(&mut tx, crisis, playbook, steps, by, now, false).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// [`Store::create_run`] inside a transaction (the transition that starts the work, or the
    /// repair at start, which `repaired` records in the audit entry).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create_run_in(
        &self,
        tx: &mut sqlx::SqliteConnection,
        crisis: &CrisisId,
        playbook: PlaybookName,
        steps: &[NewStep],
        by: By<'_>,
        now: Timestamp,
        repaired: bool,
    ) -> Result<(i64, bool), StoreError> {
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE crisis_id = ? AND playbook = ?")
            .bind(crisis.as_str())
            .bind(playbook.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(id) = existing {
            return Ok((id, false));
        }
        let commune = crate::inventory::commune_of(&mut *tx, crisis).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (crisis_id, playbook, state, created_at) VALUES (?, ?, 'running', ?) RETURNING id",
        )
        .bind(crisis.as_str())
        .bind(playbook.as_str())
        .bind(time::to_db(now))
        .fetch_one(&mut *tx)
        .await?;
        for (i, s) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO steps (run_id, step_id, position, kind, title, needs, params, instructions, checklist, \
                 estimate_secs, budget_secs, max_attempts, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            )
            .bind(id)
            .bind(&s.step_id)
            .bind(i as i64)
            .bind(s.kind.as_str())
            .bind(&s.title)
            .bind(json!(s.needs).to_string())
            .bind(s.params.to_string())
            .bind(&s.instructions)
            .bind(json!(s.checklist).to_string())
            .bind(s.estimate_secs)
            .bind(s.budget_secs)
            .bind(i64::from(s.max_attempts))
            .execute(&mut *tx)
            .await?;
        }
        let mut details = json!({ "run": id, "steps": steps.iter().map(|s| &s.step_id).collect::<Vec<_>>() });
        if repaired {
            details["repaired"] = json!(true);
        }
        let target = format!("run/{playbook}");
        self.append(
            &mut *tx,
            NewEntry {
                by,
                commune: Some(&commune),
                crisis: Some(crisis.as_str()),
                action: AuditAction::EngineRunStarted,
                target: &target,
                details,
            },
            now,
        )
        .await?;
        Ok((id, true))
    }

    /// The runs a crisis's state calls for and that do not exist: an activated or provisioning
    /// crisis without its activation run, a crisis in hand-back without its hand-back run, a
    /// crisis called off after its activation began without the hand-back that winds it down.
    /// (A crash between a transition and its run could leave these before both were one
    /// transaction; replid repairs them at start.)
    pub async fn missing_runs(&self) -> Result<Vec<(CrisisId, PlaybookName)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT k.id, 'activation' FROM crises k WHERE k.state IN ('activated', 'provisioning') \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.crisis_id = k.id AND r.playbook = 'activation') \
             UNION ALL SELECT k.id, 'handback' FROM crises k WHERE (k.state = 'handback' OR (k.state = 'cancelled' \
             AND EXISTS (SELECT 1 FROM runs r WHERE r.crisis_id = k.id AND r.playbook = 'activation'))) \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.crisis_id = k.id AND r.playbook = 'handback') ORDER BY 1",
        )
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, p)| {
                let crisis =
                    CrisisId::parse(&id).map_err(|_| StoreError::Corrupt { column: "crises.id", value: id })?;
                let playbook =
                    PlaybookName::parse(&p).ok_or(StoreError::Corrupt { column: "runs.playbook", value: p })?;
                Ok((crisis, playbook))
            })
            .collect()
    }

    /// Creates a run found missing ([`Store::missing_runs`]), audited as a repair.
    pub async fn repair_run(
        &self,
        crisis: &CrisisId,
        playbook: PlaybookName,
        steps: &[NewStep],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let (_, created) = self.create_run_in(&mut tx, crisis, playbook, steps, By::System, now, true).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query(run_select!("WHERE r.id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(run_from_row)
            .transpose()
    }

    /// Runs still going, oldest first (what the engine resumes on start).
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        sqlx::query(run_select!("WHERE r.state = 'running' ORDER BY r.id"))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    /// The runs of one crisis, in order of creation.
    pub async fn runs_of(&self, crisis: &CrisisId) -> Result<Vec<RunRecord>, StoreError> {
        sqlx::query(run_select!("WHERE r.crisis_id = ? ORDER BY r.id"))
            .bind(crisis.as_str())
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    pub async fn steps(&self, run: i64) -> Result<Vec<StepRecord>, StoreError> {
        sqlx::query("SELECT * FROM steps WHERE run_id = ? ORDER BY position")
            .bind(run)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(step_from_row)
            .collect()
    }

    /// Manual steps waiting for ops, across crises.
    pub async fn waiting_tasks(&self) -> Result<Vec<(RunRecord, StepRecord)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.*, r.id AS rid FROM steps s JOIN runs r ON r.id = s.run_id \
             WHERE s.state = 'waiting_manual' AND r.state = 'running' ORDER BY r.id, s.position",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let step = step_from_row(row)?;
            if let Some(run) = self.run(step.run_id).await? {
                out.push((run, step));
            }
        }
        Ok(out)
    }

    async fn step_in(tx: &mut sqlx::SqliteConnection, run: i64, step: &str) -> Result<StepRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM steps WHERE run_id = ? AND step_id = ?")
            .bind(run)
            .bind(step)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownRunStep { run, step: step.to_owned() })?;
        step_from_row(&row)
    }

    async fn run_in(tx: &mut sqlx::SqliteConnection, run: i64) -> Result<RunRecord, StoreError> {
        let row = sqlx::query(run_select!("WHERE r.id = ?"))
            .bind(run)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::UnknownRun(run))?;
        run_from_row(&row)
    }

    #[allow(clippy::too_many_arguments)]
    async fn step_audit(
        &self,
        tx: &mut sqlx::SqliteConnection,
        run: &RunRecord,
        step: &str,
        action: AuditAction,
        by: By<'_>,
        details: Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let target = format!("step/{}/{step}", run.playbook);
        self.append(
            tx,
            NewEntry {
                by,
                commune: Some(&run.commune),
                crisis: Some(run.crisis_id.as_str()),
                action,
                target: &target,
                details,
            },
            now,
        )
        .await?;
        Ok(())
    }

    /// Takes a pending step whose retry time has come: running, one more attempt, leased to
    /// `owner` until `lease_until`. Written (and audited) before the step's effect starts.
    pub async fn claim_step(
        &self,
        run: i64,
        step: &str,
        owner: &str,
        lease_until: Timestamp,
        wall: Timestamp,
        now: Timestamp,
    ) -> Result<Option<StepRecord>, StoreError> {
        let mut tx = self.write.begin().await?;
        let s = Self::step_in(&mut tx, run, step).await?;
        if s.state != StepState::Pending || s.not_before.is_some_and(|nb| nb > wall) {
            return Ok(None);
        }
        let r = Self::run_in(&mut tx, run).await?;
        if r.state != RunState::Running {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE steps SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_until = ?, \
             started_at = ?, first_started_at = COALESCE(first_started_at, ?), not_before = NULL \
             WHERE run_id = ? AND step_id = ?",
        )
        .bind(owner)
        .bind(time::to_db(lease_until))
        .bind(time::to_db(wall))
        .bind(time::to_db(wall))
        .bind(run)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        self.step_audit(
            &mut tx,
            &r,
            step,
            AuditAction::EngineStepStarted,
            By::System,
            json!({ "kind": s.kind, "attempt": s.attempts + 1 }),
            now,
        )
        .await?;
        let s = Self::step_in(&mut tx, run, step).await?;
        tx.commit().await?;
        Ok(Some(s))
    }

    /// Whether a person (not replid itself: the engine, maintenance) changed the crisis after
    /// the claim of `step`'s current attempt, as its audit log says (an indexed look-up on
    /// `audit_log (crisis, seq)`). Only people's changes count, so a waiting step that writes
    /// entries of its own cannot keep rearming itself.
    async fn changed_since_claim(
        conn: &mut sqlx::SqliteConnection,
        run: &RunRecord,
        step: &str,
    ) -> Result<bool, StoreError> {
        let target = format!("step/{}/{step}", run.playbook);
        let changed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_log WHERE crisis = ?1 AND actor_role <> 'system' AND seq > \
             (SELECT COALESCE(MAX(seq), 0) FROM audit_log WHERE crisis = ?1 AND action = ?2 AND target = ?3))",
        )
        .bind(run.crisis_id.as_str())
        .bind(AuditAction::EngineStepStarted.as_str())
        .bind(&target)
        .fetch_one(&mut *conn)
        .await?;
        Ok(changed)
    }

    /// Extends the lease of a running step; false when the lease was lost.
    pub async fn renew_lease(&self, run: i64, step: &str, owner: &str, until: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE steps SET lease_until = ? WHERE run_id = ? AND step_id = ? AND state = 'running' AND lease_owner = ?",
        )
        .bind(time::to_db(until))
        .bind(run)
        .bind(step)
        .bind(owner)
        .execute(&mut *self.write.acquire().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how an attempt ended (only by the lease holder). Written after the effect.
    pub async fn finish_step(
        &self,
        run: i64,
        step: &str,
        owner: &str,
        finish: &StepFinish,
        wall: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let s = Self::step_in(&mut tx, run, step).await?;
        if s.state != StepState::Running || s.lease_owner.as_deref() != Some(owner) {
            return Ok(false);
        }
        let r = Self::run_in(&mut tx, run).await?;
        // A step that waits on a change (the agents list, items back, a task confirmed) is
        // rearmed by that change's transaction; but a change committed while this attempt ran
        // found it running, not waiting. Anything people changed on the crisis since this
        // attempt was claimed makes the wait end now: the step looks again at once (its effect
        // is idempotent), instead of sleeping through the change it was waiting for.
        let rearmed = matches!(finish, StepFinish::Wait { .. }) && Self::changed_since_claim(&mut tx, &r, step).await?;
        let (state, action, details) = match finish {
            StepFinish::Succeeded(_) => {
                (StepState::Succeeded, AuditAction::EngineStepSucceeded, json!({ "attempt": s.attempts }))
            }
            StepFinish::Retry { error, not_before } => (
                StepState::Pending,
                AuditAction::EngineStepRetry,
                json!({ "attempt": s.attempts, "error": error, "not_before": time::to_db(*not_before) }),
            ),
            StepFinish::Failed(error) => {
                (StepState::Failed, AuditAction::EngineStepFailed, json!({ "attempt": s.attempts, "error": error }))
            }
            StepFinish::Manual(_) => (StepState::WaitingManual, AuditAction::EngineStepWaitingManual, json!({})),
            StepFinish::Wait { reason, not_before } => (
                StepState::Pending,
                AuditAction::EngineStepWaiting,
                if rearmed {
                    json!({ "reason": reason, "rearmed": true })
                } else {
                    json!({ "reason": reason, "not_before": time::to_db(*not_before) })
                },
            ),
        };
        let (output, rendered, error, not_before) = match finish {
            StepFinish::Succeeded(v) => (Some(v.to_json().to_string()), None, None, None),
            StepFinish::Retry { error, not_before } => {
                (None, None, Some(error.clone()), Some(time::to_db(*not_before)))
            }
            StepFinish::Failed(e) => (None, None, Some(e.clone()), None),
            StepFinish::Manual(v) => (None, Some(json!(v).to_string()), None, None),
            StepFinish::Wait { reason, not_before } => {
                (None, None, Some(reason.clone()), (!rearmed).then(|| time::to_db(*not_before)))
            }
        };
        if matches!(finish, StepFinish::Wait { .. }) {
            // Waiting costs no attempt, and the step's time budget starts when it can run.
            sqlx::query(
                "UPDATE steps SET attempts = MAX(attempts - 1, 0), first_started_at = NULL WHERE run_id = ? AND step_id = ?",
            )
            .bind(run)
            .bind(step)
            .execute(&mut *tx)
            .await?;
        }
        let finished = matches!(state, StepState::Succeeded | StepState::Failed).then(|| time::to_db(wall));
        sqlx::query(
            "UPDATE steps SET state = ?, lease_owner = NULL, lease_until = NULL, output = COALESCE(?, output), \
             rendered = COALESCE(?, rendered), last_error = ?, not_before = ?, finished_at = ? WHERE run_id = ? AND step_id = ?",
        )
        .bind(state.as_str())
        .bind(output)
        .bind(rendered)
        .bind(error)
        .bind(not_before)
        .bind(finished)
        .bind(run)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        self.step_audit(&mut tx, &r, step, action, By::System, details, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Running steps whose lease expired (their daemon died): pending again, audited.
    pub async fn reclaim_expired(&self, wall: Timestamp, now: Timestamp) -> Result<Vec<(i64, String)>, StoreError> {
        let mut tx = self.write.begin().await?;
        let rows: Vec<(i64, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT run_id, step_id, lease_owner, lease_until FROM steps WHERE state = 'running'")
                .fetch_all(&mut *tx)
                .await?;
        let mut out = Vec::new();
        for (run, step, owner, until) in rows {
            let expired = opt_from_db("steps.lease_until", until)?.is_none_or(|u| u <= wall);
            if !expired {
                continue;
            }
            sqlx::query("UPDATE steps SET state = 'pending', lease_owner = NULL, lease_until = NULL WHERE run_id = ? AND step_id = ?")
                .bind(run)
                .bind(&step)
                .execute(&mut *tx)
                .await?;
            let r = Self::run_in(&mut tx, run).await?;
            self.step_audit(
                &mut tx,
                &r,
                &step,
                AuditAction::EngineStepReclaimed,
                By::System,
                json!({ "lease_owner": owner }),
                now,
            )
            .await?;
            out.push((run, step));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Pending steps of the crisis waiting for a retry time become due now. The changes a step
    /// may wait on (agents list, items returned or written off, a task confirmed) do it in their
    /// own transaction.
    pub async fn rearm_steps(&self, crisis: &CrisisId) -> Result<u64, StoreError> {
        let mut conn = self.write.acquire().await?;
        Self::rearm_in(&mut conn, crisis).await
    }

    /// [`Store::rearm_steps`] inside the transaction of the change that unblocks them.
    pub(crate) async fn rearm_in(conn: &mut sqlx::SqliteConnection, crisis: &CrisisId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE steps SET not_before = NULL WHERE state = 'pending' AND not_before IS NOT NULL \
             AND run_id IN (SELECT id FROM runs WHERE crisis_id = ? AND state = 'running')",
        )
        .bind(crisis.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }

    /// Whether the crisis's accounts step has created accounts (succeeded in its latest
    /// activation run).
    pub(crate) async fn accounts_made_in(
        conn: &mut sqlx::SqliteConnection,
        crisis: &CrisisId,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM steps s JOIN runs r ON r.id = s.run_id WHERE r.crisis_id = ? \
             AND r.playbook = 'activation' AND s.kind = 'm365.accounts' AND s.state = 'succeeded'",
        )
        .bind(crisis.as_str())
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    }

    /// Agents were added after their accounts were made: the accounts step and the space's
    /// membership run again (both are idempotent: existing accounts and members are kept), in
    /// a run that is running again if it had finished. Audited.
    pub(crate) async fn reopen_accounts_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        crisis: &CrisisId,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let run: Option<(i64, String)> = sqlx::query_as(
            "SELECT r.id, r.state FROM runs r JOIN steps s ON s.run_id = r.id WHERE r.crisis_id = ? \
             AND r.playbook = 'activation' AND r.state IN ('running', 'succeeded', 'failed') \
             AND s.kind = 'm365.accounts' AND s.state = 'succeeded' ORDER BY r.id DESC LIMIT 1",
        )
        .bind(crisis.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((run, state)) = run else { return Ok(()) };
        let reopened: Vec<String> = sqlx::query_scalar(
            "UPDATE steps SET state = 'pending', attempts = 0, not_before = NULL, first_started_at = NULL, \
             finished_at = NULL, last_error = NULL WHERE run_id = ? AND kind IN ('m365.accounts', 'm365.team') \
             AND state = 'succeeded' RETURNING step_id",
        )
        .bind(run)
        .fetch_all(&mut *conn)
        .await?;
        if state != "running" {
            sqlx::query("UPDATE runs SET state = 'running', finished_at = NULL WHERE id = ?")
                .bind(run)
                .execute(&mut *conn)
                .await?;
        }
        let r = Self::run_in(conn, run).await?;
        for step in &reopened {
            self.step_audit(
                conn,
                &r,
                step,
                AuditAction::EngineStepReopened,
                by,
                json!({ "reason": "agents added" }),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Ends a run (all steps done, one failed, or the crisis ended).
    pub async fn finish_run(&self, run: i64, state: RunState, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let r = Self::run_in(&mut tx, run).await?;
        if r.state == state {
            return Ok(());
        }
        sqlx::query("UPDATE runs SET state = ?, finished_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(time::to_db(now))
            .bind(run)
            .execute(&mut *tx)
            .await?;
        let target = format!("run/{}", r.playbook);
        self.append(
            &mut tx,
            NewEntry {
                by: By::System,
                commune: Some(&r.commune),
                crisis: Some(r.crisis_id.as_str()),
                action: AuditAction::EngineRunFinished,
                target: &target,
                details: json!({ "state": state.as_str() }),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The step `step` of the crisis's most recent run that has it.
    async fn find_step(
        tx: &mut sqlx::SqliteConnection,
        crisis: &CrisisId,
        step: &str,
    ) -> Result<(RunRecord, StepRecord), StoreError> {
        let run: Option<i64> = sqlx::query_scalar(
            "SELECT r.id FROM runs r JOIN steps s ON s.run_id = r.id WHERE r.crisis_id = ? AND s.step_id = ? \
             ORDER BY (r.state = 'running') DESC, r.id DESC LIMIT 1",
        )
        .bind(crisis.as_str())
        .bind(step)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(run) = run else {
            return Err(StoreError::NoSuchStep { crisis: crisis.clone(), step: step.to_owned() });
        };
        Ok((Self::run_in(tx, run).await?, Self::step_in(tx, run, step).await?))
    }

    /// The reception of the equipment is done when every loan is closed (returned or written
    /// off) and every returned laptop and phone was wiped: checked in the transaction that
    /// would confirm (or skip) it, so no loan can slip in between.
    async fn reception_gate(
        tx: &mut sqlx::SqliteConnection,
        crisis: &CrisisId,
        s: &StepRecord,
    ) -> Result<(), StoreError> {
        if s.kind != StepKind::InventoryReception {
            return Ok(());
        }
        let (out, unwiped) = Self::reception_gaps_in(tx, crisis.as_str()).await?;
        if out.is_empty() && unwiped.is_empty() {
            return Ok(());
        }
        Err(StoreError::ReceptionIncomplete { id: crisis.clone(), out, unwiped })
    }

    /// Ops confirm a manual step: who and when are recorded.
    pub async fn confirm_task(
        &self,
        crisis: &CrisisId,
        step: &str,
        note: Option<&str>,
        dns_unchecked: Option<&str>,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<StepRecord, StoreError> {
        let mut tx = self.write.begin().await?;
        let (r, s) = Self::find_step(&mut tx, crisis, step).await?;
        if s.state != StepState::WaitingManual {
            return Err(StoreError::StepNotWaitingManual { step: step.to_owned(), state: s.state });
        }
        Self::reception_gate(&mut tx, crisis, &s).await?;
        let who = actor_name(by);
        sqlx::query(
            "UPDATE steps SET state = 'succeeded', confirmed_by = ?, confirmed_at = ?, note = ?, finished_at = ? \
             WHERE run_id = ? AND step_id = ?",
        )
        .bind(&who)
        .bind(time::to_db(now))
        .bind(note)
        .bind(time::to_db(now))
        .bind(r.id)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        // A DNS step confirmed although the servers did not serve it: why, and what differed.
        let details = match dns_unchecked {
            Some(why) => json!({ "note": note, "dns_unchecked": why }),
            None => json!({ "note": note }),
        };
        self.step_audit(&mut tx, &r, step, AuditAction::EngineTaskDone, by, details, now).await?;
        Self::rearm_in(&mut tx, crisis).await?;
        let s = Self::step_in(&mut tx, r.id, step).await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Ops send a failed step back to pending (attempts start again), or skip a step.
    pub async fn operate_step(
        &self,
        crisis: &CrisisId,
        step: &str,
        skip: bool,
        reason: &str,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<StepRecord, StoreError> {
        let mut tx = self.write.begin().await?;
        let (r, s) = Self::find_step(&mut tx, crisis, step).await?;
        let allowed = if skip { s.state.may_be_skipped() } else { s.state.may_be_retried(s.kind) };
        if !allowed {
            return Err(StoreError::StepNotOperable { step: step.to_owned(), state: s.state, skip });
        }
        if !r.state.takes_step_operations() {
            return Err(StoreError::RunOver { playbook: r.playbook, state: r.state });
        }
        if skip {
            // Skipping the reception would bypass its gate.
            Self::reception_gate(&mut tx, crisis, &s).await?;
        }
        let (state, action) = if skip {
            ("skipped", AuditAction::EngineStepSkipped)
        } else {
            ("pending", AuditAction::EngineStepRetried)
        };
        sqlx::query(
            "UPDATE steps SET state = ?, attempts = CASE WHEN ? THEN attempts ELSE 0 END, first_started_at = CASE WHEN ? THEN first_started_at ELSE NULL END, \
             not_before = NULL, note = ?, finished_at = CASE WHEN ? THEN ? ELSE NULL END WHERE run_id = ? AND step_id = ?",
        )
        .bind(state)
        .bind(skip)
        .bind(skip)
        .bind(reason)
        .bind(skip)
        .bind(time::to_db(now))
        .bind(r.id)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        if r.state == RunState::Failed {
            sqlx::query("UPDATE runs SET state = 'running', finished_at = NULL WHERE id = ?")
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
        }
        self.step_audit(&mut tx, &r, step, action, by, json!({ "reason": reason, "was": s.state.as_str() }), now)
            .await?;
        let s = Self::step_in(&mut tx, r.id, step).await?;
        tx.commit().await?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use repli_core::{CrisisAction, CrisisState, Role};

    fn step(id: &str, needs: &[&str]) -> NewStep {
        NewStep {
            step_id: id.into(),
            kind: StepKind::DocsRender,
            title: id.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            params: json!({}),
            instructions: None,
            checklist: Vec::new(),
            estimate_secs: 60,
            budget_secs: 600,
            max_attempts: 3,
        }
    }

    #[tokio::test]
    async fn a_change_made_while_a_step_ran_ends_its_wait() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let now = t("2026-11-23T08:00:00Z");
        let (c, _) = store.create_crisis(&crate::crises::tests::request("13005"), &dgs, None, now).await.unwrap();
        let (run, _) =
            store.create_run(&c.id, PlaybookName::Activation, &[step("a", &[])], By::System, now).await.unwrap();
        let lease = t("2026-11-23T08:00:30Z");
        let later = t("2026-11-23T09:00:00Z");
        let wait = StepFinish::Wait { reason: "waiting for the agents".into(), not_before: later };
        // Nobody changed anything while it ran: the step sleeps until its recheck.
        store.claim_step(run, "a", "engine", lease, now, now).await.unwrap().unwrap();
        assert!(store.finish_step(run, "a", "engine", &wait, now, now).await.unwrap());
        assert!(store.claim_step(run, "a", "engine", lease, now, now).await.unwrap().is_none(), "asleep");
        // Rearmed, it runs; while it runs, the DGS writes to the crisis (the agents list, in
        // life): its wait then ends at once instead of sleeping through that change.
        store.rearm_steps(&c.id).await.unwrap();
        store.claim_step(run, "a", "engine", lease, now, now).await.unwrap().unwrap();
        store.add_log_entry(&c.id, repli_core::LogKind::Information, "liste envoyée", &dgs, now).await.unwrap();
        assert!(store.finish_step(run, "a", "engine", &wait, now, now).await.unwrap());
        let s = store.claim_step(run, "a", "engine", lease, now, now).await.unwrap();
        assert!(s.is_some(), "the change made during the attempt ends the wait");
        // replid's own entries do not: a waiting step cannot keep rearming itself.
        let own = crate::Record {
            commune: Some("13005".into()),
            crisis: Some(c.id.to_string()),
            action: AuditAction::EngineStepSucceeded,
            target: "step/activation/b".into(),
            details: json!({}),
        };
        // (the attempt claimed just above is still running)
        store.record(&[own], By::System, now).await.unwrap();
        assert!(store.finish_step(run, "a", "engine", &wait, now, now).await.unwrap());
        assert!(store.claim_step(run, "a", "engine", lease, now, now).await.unwrap().is_none(), "asleep again");
    }

    #[tokio::test]
    async fn a_step_is_leased_to_one_owner_and_reclaimed_only_after_expiry() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let now = t("2026-11-23T08:00:00Z");
        let (c, _) = store.create_crisis(&crate::crises::tests::request("13005"), &dgs, None, now).await.unwrap();
        let (run, created) = store
            .create_run(&c.id, PlaybookName::Activation, &[step("a", &[]), step("b", &["a"])], By::System, now)
            .await
            .unwrap();
        assert!(created);
        let (again, created) =
            store.create_run(&c.id, PlaybookName::Activation, &[step("a", &[])], By::System, now).await.unwrap();
        assert_eq!((again, created), (run, false), "a run is started once");

        let lease = t("2026-11-23T08:00:30Z");
        let first = store.claim_step(run, "a", "owner-1", lease, now, now).await.unwrap().unwrap();
        assert_eq!((first.state, first.attempts), (StepState::Running, 1));
        // A second claimant, a renewal or an outcome from anyone but the holder change nothing.
        assert!(store.claim_step(run, "a", "owner-2", lease, now, now).await.unwrap().is_none());
        assert!(!store.renew_lease(run, "a", "owner-2", lease).await.unwrap());
        assert!(
            !store
                .finish_step(
                    run,
                    "a",
                    "owner-2",
                    &StepFinish::Succeeded(StepOutput::Rendered(Default::default())),
                    now,
                    now
                )
                .await
                .unwrap()
        );
        // Before expiry nothing is reclaimed; after it, the step is pending again.
        assert!(store.reclaim_expired(t("2026-11-23T08:00:10Z"), now).await.unwrap().is_empty());
        assert_eq!(store.reclaim_expired(t("2026-11-23T08:00:31Z"), now).await.unwrap(), [(run, "a".to_string())]);
        // The late holder's outcome is refused: the lease is gone.
        assert!(
            !store
                .finish_step(
                    run,
                    "a",
                    "owner-1",
                    &StepFinish::Succeeded(StepOutput::Rendered(Default::default())),
                    now,
                    now
                )
                .await
                .unwrap()
        );
        let retry_at = t("2026-11-23T08:05:00Z");
        store.claim_step(run, "a", "owner-2", lease, now, now).await.unwrap().unwrap();
        let retry = StepFinish::Retry { error: "Graph 503".into(), not_before: retry_at };
        assert!(store.finish_step(run, "a", "owner-2", &retry, now, now).await.unwrap());
        assert!(
            store.claim_step(run, "a", "owner-2", lease, now, now).await.unwrap().is_none(),
            "not before its retry time"
        );
        assert_eq!(store.rearm_steps(&c.id).await.unwrap(), 1);
        let third = store.claim_step(run, "a", "owner-2", lease, now, now).await.unwrap().unwrap();
        assert_eq!(third.attempts, 3);
        assert!(store.finish_step(run, "a", "owner-2", &StepFinish::Failed("gave up".into()), now, now).await.unwrap());

        // Ops: confirm refuses a step that is not a waiting task; retry and skip are audited.
        let ops = user(&store, Role::Ops, None).await;
        let e = store.confirm_task(&c.id, "a", None, None, By::User(&ops), now).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::StepNotWaitingManual { step, state: StepState::Failed } if step == "a"),
            "{e}"
        );
        let s = store.operate_step(&c.id, "a", false, "cause corrigée", By::User(&ops), now).await.unwrap();
        assert_eq!((s.state, s.attempts), (StepState::Pending, 0));
        let e = store.operate_step(&c.id, "a", false, "encore", By::User(&ops), now).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::StepNotOperable { step, state: StepState::Pending, skip: false } if step == "a"),
            "{e}"
        );
        let s = store.operate_step(&c.id, "b", true, "inutile ici", By::User(&ops), now).await.unwrap();
        assert_eq!(s.state, StepState::Skipped);
        let actions: Vec<String> = store.audit_bundle().await.unwrap().entries.into_iter().map(|e| e.action).collect();
        for a in [
            "engine.run.started",
            "engine.step.started",
            "engine.step.reclaimed",
            "engine.step.retry",
            "engine.step.failed",
            "engine.step.retried",
            "engine.step.skipped",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} not audited: {actions:?}");
        }
        store.verify_audit(None).await.unwrap();
    }

    #[tokio::test]
    async fn a_transition_and_its_run_commit_together_and_missing_runs_are_found() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T08:00:00Z");
        let (c, _) = store.create_crisis(&crate::crises::tests::request("13005"), &dgs, None, now).await.unwrap();
        // A run that cannot be written (two steps with one id) takes the transition down with it.
        let broken = vec![(PlaybookName::Activation, vec![step("a", &[]), step("a", &[])])];
        let e = store.transition_starting(&c.id, CrisisAction::Activate, None, By::User(&ops), now, &broken).await;
        assert!(e.is_err());
        assert_eq!(store.crisis(&c.id).await.unwrap().unwrap().state, CrisisState::Requested, "nothing half-done");
        assert!(store.runs_of(&c.id).await.unwrap().is_empty());
        // Steps prepared for a playbook this transition does not start are not written.
        let other = vec![(PlaybookName::Handback, vec![step("h", &[])])];
        let (rec, run) =
            store.transition_starting(&c.id, CrisisAction::Activate, None, By::User(&ops), now, &other).await.unwrap();
        assert_eq!((rec.state, run), (CrisisState::Activated, None));
        // That is the state a crash used to leave: activated, no run. It is found, and repaired once.
        assert_eq!(store.missing_runs().await.unwrap(), [(c.id.clone(), PlaybookName::Activation)]);
        assert!(store.repair_run(&c.id, PlaybookName::Activation, &[step("a", &[])], now).await.unwrap());
        assert!(!store.repair_run(&c.id, PlaybookName::Activation, &[step("a", &[])], now).await.unwrap());
        assert!(store.missing_runs().await.unwrap().is_empty());
        let started = store
            .audit_entries(&crate::AuditFilter {
                action: Some(repli_core::AuditAction::EngineRunStarted.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(started[0].details.contains("\"repaired\":true"), "{}", started[0].details);
        // Called off after activation without its wind-down: the hand-back is missing.
        store.transition(&c.id, CrisisAction::Cancel, Some("fausse alerte"), By::User(&ops), now).await.unwrap();
        assert_eq!(store.missing_runs().await.unwrap(), [(c.id.clone(), PlaybookName::Handback)]);
        let work = vec![(PlaybookName::Handback, vec![step("h", &[])])];
        // The normal path: the cancel writes the hand-back with it.
        let (d, _) = store.create_crisis(&crate::crises::tests::request("13001"), &ops, None, now).await.unwrap();
        store.transition(&d.id, CrisisAction::Activate, None, By::User(&ops), now).await.unwrap();
        let (_, run) = store
            .transition_starting(&d.id, CrisisAction::Cancel, Some("doublon"), By::User(&ops), now, &work)
            .await
            .unwrap();
        assert!(run.is_some());
        store.verify_audit(None).await.unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_step_row_is_an_error_not_a_default() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let now = t("2026-11-23T08:00:00Z");
        let (c, _) = store.create_crisis(&crate::crises::tests::request("13005"), &dgs, None, now).await.unwrap();
        let (run, _) = store
            .create_run(&c.id, PlaybookName::Activation, &[step("a", &[]), step("b", &["a"])], By::System, now)
            .await
            .unwrap();
        assert_eq!(store.steps(run).await.unwrap()[1].needs, ["a"]);
        let corrupt = |sql: &'static str| {
            let store = store.clone();
            async move {
                let mut tx = store.write.begin().await.unwrap();
                sqlx::query(sql).bind(run).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                store.steps(run).await.unwrap_err()
            }
        };
        // `needs` read as empty would let « b » run before « a ».
        let e = corrupt("UPDATE steps SET needs = '{\"a\":1}' WHERE run_id = ? AND step_id = 'b'").await;
        assert!(matches!(e, StoreError::Corrupt { column: "steps.needs", .. }), "{e}");
        let e = corrupt("UPDATE steps SET needs = '[]', checklist = 'oops' WHERE run_id = ? AND step_id = 'b'").await;
        assert!(matches!(e, StoreError::Corrupt { column: "steps.checklist", .. }), "{e}");
        let e = corrupt("UPDATE steps SET checklist = '[]', attempts = -1 WHERE run_id = ? AND step_id = 'b'").await;
        assert!(matches!(e, StoreError::Corrupt { column: "steps.attempts", .. }), "{e}");
        let e = corrupt("UPDATE steps SET attempts = 0, max_attempts = 5000000000 WHERE run_id = ? AND step_id = 'b'")
            .await;
        assert!(matches!(e, StoreError::Corrupt { column: "steps.max_attempts", .. }), "{e}");
    }
}
