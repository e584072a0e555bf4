//! Reads shaped for a crisis view: everything one view needs in one statement (the crisis, its
//! suspensions, needs, the activation run's step estimates and its recent history, the lists as
//! JSON aggregates), and the same facts for a whole list of crises in a fixed number of queries.
//! sqlx-sqlite runs each statement on a connection thread, so every statement saved is two
//! thread hand-offs saved.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex};

use jiff::Timestamp;
use repli_core::{CrisisId, CrisisState, InseeCode, ItemKind, StepState};
use serde_json::Value;
use sqlx::Row;

use crate::crises::{CRISIS_COLUMNS, CRISIS_FROM, from_row};
use crate::time::{self, opt_from_db};
use crate::writer::Writer;
use crate::{CrisisFilter, CrisisRecord, Need, Store, StoreError, SuspensionRecord};

/// Most reads kept per cache (a cache is emptied when full).
const CACHE_MAX: usize = 1024;

/// Reads kept with the writer generation they were read at (see `writer.rs`). A read made at
/// generation `g` holds every write that ended before `g` was reached, so it answers any request
/// that began at generation `g` or earlier. When it is too old, one request per key reads again
/// while the others wait for its result (a write followed by a burst of reads costs one
/// statement, not one per request in flight).
#[derive(Debug)]
pub(crate) struct GenCache<K, V> {
    entries: Mutex<HashMap<K, (u64, V)>>,
    flights: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K, V> Default for GenCache<K, V> {
    fn default() -> Self {
        GenCache { entries: Mutex::new(HashMap::new()), flights: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> GenCache<K, V> {
    fn get(&self, key: &K, since: u64) -> Option<V> {
        let map = self.entries.lock().ok()?;
        map.get(key).filter(|(g, _)| *g >= since).map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, generation: u64, value: V) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CACHE_MAX && !map.contains_key(&key) {
                map.clear();
            }
            if map.get(&key).is_none_or(|(g, _)| *g <= generation) {
                map.insert(key, (generation, value));
            }
        }
    }

    /// The lock that lets one request per key read at a time.
    fn flight(&self, key: &K) -> Arc<tokio::sync::Mutex<()>> {
        match self.flights.lock() {
            Ok(mut map) => {
                if map.len() >= CACHE_MAX && !map.contains_key(key) {
                    map.clear();
                }
                map.entry(key.clone()).or_default().clone()
            }
            // A poisoned map only loses the coalescing, never a write.
            Err(_) => Arc::default(),
        }
    }

    /// The value of `key` as of now: from memory when it was read at the current generation or
    /// later, else by `read`.
    async fn get_or_read<F, Fut>(&self, writer: &Writer, key: &K, read: F) -> Result<V, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        // Taken before anything is read: a write that ends later is not owed to this request.
        let since = writer.generation();
        if let Some(hit) = self.get(key, since) {
            return Ok(hit);
        }
        let flight = self.flight(key);
        let _one_reader = flight.lock().await;
        if let Some(hit) = self.get(key, since) {
            return Ok(hit);
        }
        // Taken before the statement: a write that ends meanwhile makes this read too old.
        let generation = writer.generation();
        let value = read().await?;
        self.put(key.clone(), generation, value.clone());
        Ok(value)
    }
}

/// A crisis and what its view needs.
pub type CrisisRead = (CrisisRecord, CrisisFacts);

/// Which crises a list holds (a [`CrisisFilter`] as a cache key).
type ListKey = (Option<InseeCode>, Option<CrisisState>, bool, Option<bool>);

/// The crises of a list, newest first, and the facts of every crisis by id.
pub type CrisisList = (Vec<CrisisRecord>, HashMap<String, CrisisFacts>);

/// The store's read caches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    crises: Arc<GenCache<CrisisId, Option<Arc<CrisisRead>>>>,
    lists: Arc<GenCache<ListKey, Arc<CrisisList>>>,
}

/// The history a crisis view carries: its most recent entries (`Store::crisis_history` pages
/// through all).
pub const HISTORY_ENTRIES: u32 = 20;

/// Most history entries one page of `Store::crisis_history` returns.
pub const HISTORY_PAGE_MAX: u32 = 1000;

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
        let read = self
            .read_cache
            .crises
            .get_or_read(&self.write, id, || async { Ok(self.crisis_read_uncached(id).await?.map(Arc::new)) })
            .await?;
        Ok(read.map(|r| (*r).clone()))
    }

    /// The crises `filter` selects, newest first, and the facts of every crisis (no history), in
    /// two statements, or from memory when nothing was written since they were read.
    pub async fn crisis_list_read(&self, filter: &CrisisFilter) -> Result<Arc<CrisisList>, StoreError> {
        let key = (filter.commune.clone(), filter.state, filter.open_only, filter.exercise);
        self.read_cache
            .lists
            .get_or_read(&self.write, &key, || async {
                let records = self.crises(filter).await?;
                let facts = self.crisis_facts_all().await?;
                Ok(Arc::new((records, facts)))
            })
            .await
    }

    /// A page of a crisis's history, oldest first: the `limit` entries (at most
    /// [`HISTORY_PAGE_MAX`]) before the sequence number `before`, or the most recent ones.
    pub async fn crisis_history(
        &self,
        id: &CrisisId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor_name, actor_role, action, details FROM audit_log \
             WHERE crisis = ?1 AND (?2 IS NULL OR seq < ?2) ORDER BY seq DESC LIMIT ?3",
        )
        .bind(id.as_str())
        .bind(before)
        .bind(i64::from(limit.min(HISTORY_PAGE_MAX)))
        .fetch_all(&self.read)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                let at: String = row.try_get("at")?;
                let details: String = row.try_get("details")?;
                Ok(HistoryRow {
                    seq: row.try_get("seq")?,
                    at: time::from_db("audit_log.at", &at)?,
                    actor: row.try_get("actor_name")?,
                    role: row.try_get("actor_role")?,
                    action: row.try_get("action")?,
                    details: serde_json::from_str(&details).map_err(|_| corrupt("audit_log.details", details))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
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
    use crate::{AuditFilter, By, CrisisFilter, NewStep};
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

    async fn crisis_of(store: &Store, insee: &str) -> (CrisisId, repli_core::Actor) {
        let dgs = user(store, Role::Dgs, Some(insee)).await;
        let (c, _) = store
            .create_crisis(&crate::crises::tests::request(insee), &dgs, None, t("2026-11-23T08:00:00Z"))
            .await
            .unwrap();
        (c.id, dgs)
    }

    async fn log(store: &Store, id: &CrisisId, who: &repli_core::Actor, text: &str) {
        let now = t("2026-11-23T09:00:00Z");
        store.add_log_entry(id, repli_core::LogKind::PointDeSituation, text, who, now).await.unwrap();
    }

    fn last_seq(read: &Option<CrisisRead>) -> Option<i64> {
        read.as_ref().and_then(|(_, f)| f.history.last().map(|h| h.seq))
    }

    #[tokio::test]
    async fn a_read_after_a_write_sees_it_whichever_crisis_it_touched() {
        let (_d, store) = store().await;
        let (a, who_a) = crisis_of(&store, "13005").await;
        let (b, who_b) = crisis_of(&store, "13001").await;
        let a0 = store.crisis_read(&a).await.unwrap();
        let b0 = store.crisis_read(&b).await.unwrap();
        // Served again while nothing is written.
        assert_eq!(last_seq(&store.crisis_read(&a).await.unwrap()), last_seq(&a0));

        log(&store, &a, &who_a, "sur A").await;
        let a1 = store.crisis_read(&a).await.unwrap();
        assert!(last_seq(&a1) > last_seq(&a0), "the write to A is seen at once");
        assert_eq!(
            a1.as_ref().and_then(|(_, f)| f.history.last().map(|h| h.details["text"].clone())),
            Some("sur A".into())
        );
        // B is read again (the generation is global) and is unchanged.
        let b1 = store.crisis_read(&b).await.unwrap();
        assert_eq!(last_seq(&b1), last_seq(&b0));

        log(&store, &b, &who_b, "sur B").await;
        assert!(last_seq(&store.crisis_read(&b).await.unwrap()) > last_seq(&b1));
        assert_eq!(last_seq(&store.crisis_read(&a).await.unwrap()), last_seq(&a1));
    }

    #[tokio::test]
    async fn the_list_read_follows_the_writes() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let all = CrisisFilter::default();
        assert!(store.crisis_list_read(&all).await.unwrap().0.is_empty());
        let (a, _) = crisis_of(&store, "13005").await;
        let list = store.crisis_list_read(&all).await.unwrap();
        assert_eq!(list.0.iter().map(|r| &r.id).collect::<Vec<_>>(), [&a]);
        assert!(list.1[a.as_str()].suspensions.is_empty());

        store.suspend_sla(&a, "attente", &ops, t("2026-11-23T09:00:00Z")).await.unwrap();
        let list = store.crisis_list_read(&all).await.unwrap();
        assert_eq!(list.1[a.as_str()].suspensions.len(), 1, "a write to the crisis is seen in the list");

        let (b, _) = crisis_of(&store, "13001").await;
        let only_a = CrisisFilter { commune: Some(InseeCode::parse("13005").unwrap()), ..Default::default() };
        assert_eq!(store.crisis_list_read(&only_a).await.unwrap().0.len(), 1);
        let both = store.crisis_list_read(&all).await.unwrap();
        // Requested at the same instant: by id, descending.
        assert_eq!(both.0.iter().map(|r| &r.id).collect::<Vec<_>>(), [&a, &b], "a new crisis is seen in the list");
    }

    #[tokio::test]
    async fn concurrent_readers_never_see_a_read_older_than_a_committed_write() {
        use std::sync::atomic::{AtomicI64, Ordering};
        let (_d, store) = store().await;
        let (id, who) = crisis_of(&store, "13005").await;
        // The last history entry known committed: published only once its write has returned.
        let committed = Arc::new(AtomicI64::new(last_seq(&store.crisis_read(&id).await.unwrap()).unwrap_or(0)));
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, id, committed, finished) = (store.clone(), id.clone(), committed.clone(), finished.clone());
            tokio::spawn(async move {
                for i in 0..60 {
                    log(&store, &id, &who, &format!("point {i}")).await;
                    let newest = store.crisis_history(&id, None, 1).await.unwrap();
                    committed.store(newest[0].seq, Ordering::Release);
                }
                finished.store(true, Ordering::Release);
            })
        };
        let mut readers = Vec::new();
        for _ in 0..8 {
            let (store, id, committed, finished) = (store.clone(), id.clone(), committed.clone(), finished.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0;
                loop {
                    let known = committed.load(Ordering::Acquire);
                    let seen = last_seq(&store.crisis_read(&id).await.unwrap()).unwrap_or(0);
                    assert!(seen >= known, "read entry {seen} after entry {known} was committed");
                    reads += 1;
                    if finished.load(Ordering::Acquire) && reads > 100 {
                        return reads;
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        writer.await.unwrap();
        let done = committed.load(Ordering::Acquire);
        for r in readers {
            assert!(r.await.unwrap() > 100);
        }
        assert_eq!(last_seq(&store.crisis_read(&id).await.unwrap()), Some(done));
    }

    #[tokio::test]
    async fn the_history_pages_go_back_to_the_first_entry() {
        let (_d, store) = store().await;
        let (id, who) = crisis_of(&store, "13005").await;
        for i in 0..45 {
            log(&store, &id, &who, &format!("point {i}")).await;
        }
        let all = store
            .audit_entries(&AuditFilter { crisis: Some(id.to_string()), limit: 1000, ..Default::default() })
            .await
            .unwrap();
        let all: Vec<i64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(all.len(), 46, "the request and 45 entries");
        let (_, facts) = store.crisis_read(&id).await.unwrap().unwrap();
        assert_eq!(
            facts.history.iter().map(|h| h.seq).collect::<Vec<_>>(),
            all[all.len() - HISTORY_ENTRIES as usize..]
        );

        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = store.crisis_history(&id, before, 20).await.unwrap();
            let Some(first) = page.first() else { break };
            before = Some(first.seq);
            pages.push(page.iter().map(|h| h.seq).collect::<Vec<_>>());
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [20, 20, 6]);
        let back: Vec<i64> = pages.into_iter().rev().flatten().collect();
        assert_eq!(back, all, "every entry once, oldest first");
        let newest = store.crisis_history(&id, None, 1).await.unwrap();
        assert_eq!(newest.iter().map(|h| h.seq).collect::<Vec<_>>(), [all[45]]);
        assert_eq!(newest[0].details["text"], "point 44");
    }
}
