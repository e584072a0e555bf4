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
        let row = sqlx::query("SELECT limit_per_second, open FROM graph_pace WHERE tenant = ?")
            .bind(tenant)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            let limit: Option<i64> = r.try_get("limit_per_second")?;
            let open: bool = r.try_get("open")?;
            Ok(GraphPace { limit_per_second: limit.and_then(|l| u32::try_from(l).ok()), open })
        })
        .transpose()
    }

    /// Keeps `pace` for `tenant`, audited; nothing is written when it is the one kept already.
    /// Returns whether it changed. (Callers read [`Store::graph_pace`] first to decide whether
    /// the change is worth keeping, so an unchanged pace never takes the writer.)
    pub async fn keep_graph_pace(&self, tenant: &str, pace: GraphPace, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let kept: Option<(Option<i64>, bool)> =
            sqlx::query_as("SELECT limit_per_second, open FROM graph_pace WHERE tenant = ?")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let limit = pace.limit_per_second.map(i64::from);
        if kept == Some((limit, pace.open)) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO graph_pace (tenant, limit_per_second, open, learnt_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant) DO UPDATE SET limit_per_second = ?2, open = ?3, learnt_at = ?4",
        )
        .bind(tenant)
        .bind(limit)
        .bind(pace.open)
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
                "before": kept.map(|(l, o)| json!({ "limit_per_second": l, "open": o })),
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

    #[tokio::test]
    async fn a_pace_is_kept_per_tenant_audited_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("repli.db")).await.unwrap();
        let now = time::from_db("t", "2026-12-07T10:00:00Z").unwrap();
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), None);
        let forty = GraphPace { limit_per_second: Some(40), open: false };
        assert!(store.keep_graph_pace("tenant-a", forty, now).await.unwrap());
        assert!(!store.keep_graph_pace("tenant-a", forty, now).await.unwrap(), "unchanged: nothing written");
        let open = GraphPace { limit_per_second: None, open: true };
        assert!(store.keep_graph_pace("tenant-b", open, now).await.unwrap());
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), Some(forty));
        assert_eq!(store.graph_pace("tenant-b").await.unwrap(), Some(open));
        let thirty = GraphPace { limit_per_second: Some(30), open: false };
        assert!(store.keep_graph_pace("tenant-a", thirty, now).await.unwrap());
        assert_eq!(store.graph_pace("tenant-a").await.unwrap(), Some(thirty));
        let actions: Vec<String> =
            sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'service.graph_pace' ORDER BY seq")
                .fetch_all(&store.read)
                .await
                .unwrap();
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert!(actions[2].contains("\"before\":{\"limit_per_second\":40"), "{}", actions[2]);
    }
}
