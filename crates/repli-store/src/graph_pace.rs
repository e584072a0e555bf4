//! What each tenant's Graph throttle taught replid ([`GraphPace`]), kept across restarts.

use jiff::Timestamp;
use repli_core::AuditAction;
use repli_core::m365::GraphPace;
use serde_json::json;
use sqlx::Row;

use crate::audit::NewEntry;
use crate::{By, Store, StoreError, time};

impl Store {
    /// The pace kept for `tenant`, if any.
    pub async fn graph_pace(&self, tenant: &str) -> Result<Option<GraphPace>, StoreError> {
        let row = sqlx::query("SELECT limit_per_second, open, batch_counted FROM graph_pace WHERE tenant = ?")
            .bind(tenant)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            let limit: Option<i64> = r.try_get("limit_per_second")?;
            let open: bool = r.try_get("open")?;
            let batch_counted: bool = r.try_get("batch_counted")?;
            Ok(GraphPace { limit_per_second: limit.and_then(|l| u32::try_from(l).ok()), open, batch_counted })
        })
        .transpose()
    }

    /// Keeps `pace` for `tenant`, audited; nothing is written when it is the one kept already.
    /// Returns whether it changed. (Callers read [`Store::graph_pace`] first to decide whether
    /// the change is worth keeping, so an unchanged pace never takes the writer.)
    pub async fn keep_graph_pace(&self, tenant: &str, pace: GraphPace, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let kept: Option<(Option<i64>, bool, bool)> =
            sqlx::query_as("SELECT limit_per_second, open, batch_counted FROM graph_pace WHERE tenant = ?")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let limit = pace.limit_per_second.map(i64::from);
        if kept == Some((limit, pace.open, pace.batch_counted)) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO graph_pace (tenant, limit_per_second, open, batch_counted, learnt_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant) DO UPDATE SET limit_per_second = ?2, \
             open = ?3, batch_counted = ?4, learnt_at = ?5",
        )
        .bind(tenant)
        .bind(limit)
        .bind(pace.open)
        .bind(pace.batch_counted)
        .bind(time::to_db(now))
        .execute(&mut *tx)
        .await?;
        let target = format!("tenant:{tenant}");
        let e = NewEntry {
            by: By::System,
            commune: None,
            crisis: None,
            action: AuditAction::ServiceGraphPace,
            target: &target,
            details: json!({
                "limit_per_second": pace.limit_per_second,
                "open": pace.open,
                "batch_counted": pace.batch_counted,
                "before": kept.map(|(l, o, b)| json!({ "limit_per_second": l, "open": o, "batch_counted": b })),
            }),
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of the version before `batch_counted` (migration 17): its kept limits were
    /// learnt counting every `$batch` as one more request, and are dropped at the upgrade;
    /// "never throttled" is kept.
    #[tokio::test]
    async fn limits_kept_before_batches_were_told_apart_are_dropped_at_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let pool = crate::database_as_of(&path, 17).await;
        sqlx::query(
            "INSERT INTO graph_pace (tenant, limit_per_second, open, learnt_at) VALUES \
             ('throttled', 40, 0, '2026-12-07T10:00:00Z'), ('never', NULL, 1, '2026-12-07T10:00:00Z')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.graph_pace("throttled").await.unwrap(), None, "learnt in units no longer told apart");
        assert_eq!(store.graph_pace("never").await.unwrap(), Some(GraphPace { open: true, ..GraphPace::default() }));
    }

    #[tokio::test]
    async fn a_pace_is_kept_per_tenant_audited_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("repli.db")).await.unwrap();
        let now = time::from_db("t", "2026-12-07T10:00:00Z").unwrap();
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), None);
        let forty = GraphPace { limit_per_second: Some(40), ..GraphPace::default() };
        assert!(store.keep_graph_pace("tenant-a", forty, now).await.unwrap());
        assert!(!store.keep_graph_pace("tenant-a", forty, now).await.unwrap(), "unchanged: nothing written");
        let open = GraphPace { open: true, ..GraphPace::default() };
        assert!(store.keep_graph_pace("tenant-b", open, now).await.unwrap());
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), Some(forty));
        assert_eq!(store.graph_pace("tenant-b").await.unwrap(), Some(open));
        let thirty = GraphPace { limit_per_second: Some(30), ..GraphPace::default() };
        assert!(store.keep_graph_pace("tenant-a", thirty, now).await.unwrap());
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), Some(thirty));
        let counted = GraphPace { batch_counted: true, ..thirty };
        assert!(store.keep_graph_pace("tenant-a", counted, now).await.unwrap(), "batches found counted");
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), Some(counted));
        let actions: Vec<String> =
            sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'service.graph_pace' ORDER BY seq")
                .fetch_all(&store.read)
                .await
                .unwrap();
        assert_eq!(actions.len(), 4, "{actions:?}");
        let details: Vec<serde_json::Value> = actions.iter().map(|a| serde_json::from_str(a).unwrap()).collect();
        assert_eq!(details[2]["before"]["limit_per_second"], 40, "{}", actions[2]);
        assert_eq!(
            (details[3]["batch_counted"].as_bool(), details[3]["before"]["batch_counted"].as_bool()),
            (Some(true), Some(false))
        );
    }
}
