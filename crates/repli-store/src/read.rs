//! Reads shaped for a crisis view: everything one view needs in one statement (the crisis, its
//! suspensions, needs, the activation run's step estimates and its recent history, the lists as
//! JSON aggregates), and the same facts for a whole list of crises in a fixed number of queries.
//! sqlx-sqlite runs each statement on a connection thread, so every statement saved is two
//! thread hand-offs saved.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jiff::Timestamp;
use repli_core::{CrisisId, ItemKind, StepState};
use serde_json::Value;
use sqlx::Row;

use crate::crises::{CRISIS_COLUMNS, CRISIS_FROM, from_row};
use crate::time::{self, opt_from_db};
use crate::{CrisisRecord, Need, Store, StoreError, SuspensionRecord};

/// Most crises whose read is kept (the cache is emptied when full).
const CACHE_MAX: usize = 1024;

/// Crisis reads kept with the writer generation they were read at: valid while no write has
/// ended since (see `writer.rs`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache(Arc<Mutex<HashMap<CrisisId, Cached>>>);

/// A crisis read and the writer generation it was read at.
type Cached = (u64, CrisisRecord, CrisisFacts);

impl Cache {
    fn get(&self, id: &CrisisId, generation: u64) -> Option<(CrisisRecord, CrisisFacts)> {
        let map = self.0.lock().ok()?;
        map.get(id).filter(|(g, _, _)| *g == generation).map(|(_, r, f)| (r.clone(), f.clone()))
    }

    fn put(&self, generation: u64, record: &CrisisRecord, facts: &CrisisFacts) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHE_MAX {
                map.clear();
            }
            map.insert(record.id.clone(), (generation, record.clone(), facts.clone()));
        }
    }
}

/// The history a crisis view carries: its most recent entries (the journal pages through all).
pub const HISTORY_ENTRIES: u32 = 200;

/// One step of a crisis's activation run, as the work-left estimate needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEstimate {
    pub step_id: String,
    pub needs: Vec<String>,
    pub estimate_secs: i64,
    pub state: StepState,
}

/// One audit entry as a crisis's history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub details: Value,
}

/// What a crisis view needs besides the crisis record.
#[derive(Debug, Clone, Default)]
pub struct CrisisFacts {
    pub suspensions: Vec<SuspensionRecord>,
    pub needs: Vec<Need>,
    /// The activation run's steps, in playbook order (empty before activation).
    pub activation_steps: Vec<StepEstimate>,
    /// The most recent history entries, oldest first (empty in lists).
    pub history: Vec<HistoryRow>,
}

const SUSPENSIONS: &str = "(SELECT json_group_array(json_array(s.started_at, s.ended_at, s.reason) \
     ORDER BY s.started_at, s.id) FROM sla_suspensions s WHERE s.crisis_id = k.id)";
const NEEDS: &str = "(SELECT json_group_array(json_array(n.kind, n.wanted, COALESCE(n.counted, (SELECT COUNT(*) FROM items i \
     WHERE i.crisis_id = n.crisis_id AND i.kind = n.kind AND i.state IN ('reserved', 'prepared', 'lent')))) \
     ORDER BY n.kind) FROM crisis_needs n WHERE n.crisis_id = k.id)";
const STEPS: &str = "(SELECT json_group_array(json_array(s.step_id, s.needs, s.estimate_secs, s.state) \
     ORDER BY s.position) FROM steps s JOIN runs r ON r.id = s.run_id \
     WHERE r.crisis_id = k.id AND r.playbook = 'activation')";
/// `{limit}` is written into the statement, not bound: a bound LIMIT makes SQLite re-prepare
/// this large statement at every run (28 % of a crisis read's time, measured with perf).
const HISTORY: &str = "(SELECT json_group_array(json_array(h.seq, h.at, h.actor_name, h.actor_role, h.action, \
     h.details) ORDER BY h.seq) FROM (SELECT seq, at, actor_name, actor_role, action, details \
     FROM audit_log WHERE crisis = k.id ORDER BY seq DESC LIMIT {limit}) h)";

fn corrupt(column: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::Corrupt { column, value: value.into() }
}

/// A JSON aggregate read straight into typed tuples (no intermediate `Value` tree).
fn rows<T: serde::de::DeserializeOwned>(column: &'static str, raw: Option<String>) -> Result<Vec<T>, StoreError> {
    match raw {
        // json_group_array gives `[]` for no rows; NULL is a part the statement did not read
        // (`CASE … END` without ELSE, the steps of a crisis not being prepared): nothing to show.
        None => Ok(Vec::new()),
        Some(s) => serde_json::from_str(&s).map_err(|e| corrupt(column, format!("{e}: {s}"))),
    }
}

fn suspensions(raw: Option<String>) -> Result<Vec<SuspensionRecord>, StoreError> {
    rows::<(String, Option<String>, String)>("sla_suspensions", raw)?
        .into_iter()
        .map(|(start, end, reason)| {
            Ok(SuspensionRecord {
                started_at: time::from_db("sla_suspensions.started_at", &start)?,
                ended_at: opt_from_db("sla_suspensions.ended_at", end)?,
                reason,
            })
        })
        .collect()
}

fn needs(crisis: &str, raw: Option<String>) -> Result<Vec<Need>, StoreError> {
    rows::<(String, i64, i64)>("crisis_needs", raw)?
        .into_iter()
        .map(|(kind, wanted, allocated)| {
            Ok(Need {
                crisis: crisis.to_owned(),
                kind: kind.parse::<ItemKind>().map_err(|_| corrupt("crisis_needs.kind", kind))?,
                wanted,
                allocated,
            })
        })
        .collect()
}

fn steps(raw: Option<String>) -> Result<Vec<StepEstimate>, StoreError> {
    rows::<(String, String, i64, String)>("steps", raw)?
        .into_iter()
        .map(|(step_id, needs, estimate_secs, state)| {
            Ok(StepEstimate {
                step_id,
                needs: serde_json::from_str(&needs).map_err(|_| corrupt("steps.needs", needs))?,
                estimate_secs,
                state: StepState::parse(&state).ok_or_else(|| corrupt("steps.state", state))?,
            })
        })
        .collect()
}

fn history(raw: Option<String>) -> Result<Vec<HistoryRow>, StoreError> {
    rows::<(i64, String, String, String, String, String)>("audit_log", raw)?
        .into_iter()
        .map(|(seq, at, actor, role, action, details)| {
            let details = serde_json::from_str(&details).map_err(|_| corrupt("audit_log.details", details))?;
            Ok(HistoryRow { seq, at: time::from_db("audit_log.at", &at)?, actor, role, action, details })
        })
        .collect()
}

impl Store {
    /// A crisis and everything its view needs, with its [`HISTORY_ENTRIES`] most recent history
    /// entries, in one statement, or from memory when nothing was written since it was read.
    pub async fn crisis_read(&self, id: &CrisisId) -> Result<Option<(CrisisRecord, CrisisFacts)>, StoreError> {
        // The generation is taken before the read: a write that ends meanwhile invalidates it.
        let generation = self.write.generation();
        if let Some(hit) = self.read_cache.get(id, generation) {
            return Ok(Some(hit));
        }
        let read = self.crisis_read_uncached(id).await?;
        if let Some((record, facts)) = &read {
            self.read_cache.put(generation, record, facts);
        }
        Ok(read)
    }

    async fn crisis_read_uncached(&self, id: &CrisisId) -> Result<Option<(CrisisRecord, CrisisFacts)>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let history_sql = HISTORY.replace("{limit}", &HISTORY_ENTRIES.to_string());
            format!(
                "SELECT {CRISIS_COLUMNS}, {SUSPENSIONS} AS x_suspensions, \
                 {NEEDS} AS x_needs, {STEPS} AS x_steps, {history_sql} AS x_history FROM {CRISIS_FROM} WHERE k.id = ?1"
            )
        });
        let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())).bind(id.as_str()).fetch_optional(&self.read).await?
        else {
            return Ok(None);
        };
        let record = from_row(&row)?;
        let facts = CrisisFacts {
            suspensions: suspensions(row.try_get("x_suspensions")?)?,
            needs: needs(id.as_str(), row.try_get("x_needs")?)?,
            activation_steps: steps(row.try_get("x_steps")?)?,
            history: history(row.try_get("x_history")?)?,
        };
        Ok(Some((record, facts)))
    }

    /// The facts of every crisis (no history), by crisis id, in one statement.
    pub async fn crisis_facts_all(&self) -> Result<HashMap<String, CrisisFacts>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT k.id, {SUSPENSIONS} AS x_suspensions, {NEEDS} AS x_needs, \
                 CASE WHEN k.state IN ('activated', 'provisioning') THEN {STEPS} END AS x_steps FROM crises k"
            )
        });
        let rows = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())).fetch_all(&self.read).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            let facts = CrisisFacts {
                suspensions: suspensions(row.try_get("x_suspensions")?)?,
                needs: needs(&id, row.try_get("x_needs")?)?,
                activation_steps: steps(row.try_get("x_steps")?)?,
                history: Vec::new(),
            };
            out.insert(id, facts);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::{AuditFilter, By, NewStep};
    use repli_core::run::PlaybookName;
    use repli_core::{Role, StepKind};

    fn step(id: &str, needs: &[&str]) -> NewStep {
        NewStep {
            step_id: id.into(),
            kind: StepKind::Manual,
            title: id.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            params: serde_json::json!({}),
            instructions: None,
            checklist: Vec::new(),
            estimate_secs: 600,
            budget_secs: 3600,
            max_attempts: 3,
        }
    }

    #[tokio::test]
    async fn one_statement_reads_what_the_separate_queries_read() {
        let (_d, store) = store().await;
        let dgs = user(&store, Role::Dgs, Some("13005")).await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T08:00:00Z");
        let mut req = crate::crises::tests::request("13005");
        req.needs = vec![(ItemKind::Router, 1), (ItemKind::Laptop, 3)];
        let (c, _) = store.create_crisis(&req, &dgs, None, now).await.unwrap();
        let hostile = "attente « liste » \"</script>\" \\ ; DROP TABLE crises; -- é\u{1F600}";
        store.suspend_sla(&c.id, hostile, &ops, t("2026-11-23T09:00:00Z")).await.unwrap();
        store.resume_sla(&c.id, &ops, t("2026-11-23T10:00:00Z")).await.unwrap();

        let (rec, facts) = store.crisis_read(&c.id).await.unwrap().unwrap();
        assert_eq!(rec.id, c.id);
        assert_eq!(facts.suspensions, store.suspensions(&c.id).await.unwrap());
        assert_eq!(facts.suspensions[0].reason, hostile);
        assert_eq!(facts.needs, store.needs(Some(c.id.as_str())).await.unwrap());
        assert!(!facts.needs.is_empty());
        assert!(facts.activation_steps.is_empty(), "no run yet");
        // Past HISTORY_ENTRIES, the most recent entries, oldest first, as the journal has them.
        for i in 0..HISTORY_ENTRIES + 5 {
            store
                .add_log_entry(&c.id, repli_core::LogKind::PointDeSituation, &format!("point {i}"), &ops, now)
                .await
                .unwrap();
        }
        let all = store
            .audit_entries(&AuditFilter { crisis: Some(c.id.to_string()), limit: 1000, ..Default::default() })
            .await
            .unwrap();
        let (_, facts) = store.crisis_read(&c.id).await.unwrap().unwrap();
        let recent: Vec<i64> = all[all.len() - HISTORY_ENTRIES as usize..].iter().map(|e| e.seq).collect();
        assert_eq!(facts.history.iter().map(|h| h.seq).collect::<Vec<_>>(), recent);
        let newest = &all[all.len() - 1];
        assert_eq!(facts.history.last().map(|h| h.action.as_str()), Some(newest.action.as_str()));
        assert_eq!(facts.history.last().map(|h| h.details.clone()), serde_json::from_str(&newest.details).ok());

        store
            .create_run(&c.id, PlaybookName::Activation, &[step("b", &[]), step("a", &["b"])], By::System, now)
            .await
            .unwrap();
        let (_, facts) = store.crisis_read(&c.id).await.unwrap().unwrap();
        let ids: Vec<&str> = facts.activation_steps.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "playbook order");
        assert_eq!(facts.activation_steps[1].needs, ["b"]);
        assert_eq!(facts.history.last().map(|h| h.action.as_str()), Some("engine.run.started"));

        let every = store.crisis_facts_all().await.unwrap();
        assert_eq!(every[c.id.as_str()].suspensions, facts.suspensions);
        assert!(every[c.id.as_str()].history.is_empty());
        // Steps are read for lists only while the kit is being prepared.
        assert!(every[c.id.as_str()].activation_steps.is_empty(), "crisis still requested");

        // A write ends the cached read: the new entry is seen at once.
        let before = store.crisis_read(&c.id).await.unwrap().unwrap().1;
        assert_eq!(store.crisis_read(&c.id).await.unwrap().unwrap().1.history.len(), before.history.len());
        store.add_log_entry(&c.id, repli_core::LogKind::PointDeSituation, "après", &ops, now).await.unwrap();
        let after = store.crisis_read(&c.id).await.unwrap().unwrap().1;
        assert_eq!(after.history.last().map(|h| h.action.as_str()), Some("log.point_de_situation"));
        assert_ne!(after.history.last().map(|h| h.seq), before.history.last().map(|h| h.seq));

        let missing = CrisisId::parse("13005-2026-099").unwrap();
        assert!(store.crisis_read(&missing).await.unwrap().is_none());
    }
}
