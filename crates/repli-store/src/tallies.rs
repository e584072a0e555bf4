//! Counts for supervision (`/metrics`): a few aggregate reads, nothing written.

use jiff::Timestamp;

use crate::{Store, StoreError, time};

/// What the database holds, counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tallies {
    /// Crises by state (`requested`, `ready`…).
    pub crises_by_state: Vec<(String, i64)>,
    /// Steps by kind and state, with the attempts beyond the first (retries).
    pub steps: Vec<StepTally>,
    /// Finished steps (succeeded or failed): kind and seconds from the first start to the end.
    pub step_durations: Vec<(String, f64)>,
    /// Notifications by channel and status, with their delivery attempts.
    pub notifications: Vec<NotificationTally>,
    pub audit_entries: i64,
    pub audit_last_seq: i64,
    /// The last signed checkpoint: its sequence number and when it was signed.
    pub last_checkpoint: Option<(i64, Timestamp)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTally {
    pub kind: String,
    pub state: String,
    pub count: i64,
    pub retries: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationTally {
    pub channel: String,
    pub status: String,
    pub count: i64,
    pub attempts: i64,
}

impl Store {
    /// Counts for supervision, read in one read transaction (a consistent snapshot).
    pub async fn tallies(&self) -> Result<Tallies, StoreError> {
        let mut tx = self.read.begin().await?;
        let crises_by_state = sqlx::query_as("SELECT state, COUNT(*) FROM crises GROUP BY state ORDER BY state")
            .fetch_all(&mut *tx)
            .await?;
        let steps = sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT kind, state, COUNT(*), SUM(MAX(attempts - 1, 0)) FROM steps GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(kind, state, count, retries)| StepTally { kind, state, count, retries })
        .collect();
        let step_durations = sqlx::query_as(
            "SELECT kind, CAST(MAX(unixepoch(finished_at) - unixepoch(COALESCE(first_started_at, started_at)), 0) AS REAL)
             FROM steps WHERE state IN ('succeeded', 'failed') AND finished_at IS NOT NULL
               AND COALESCE(first_started_at, started_at) IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        let notifications = sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT channel, status, COUNT(*), SUM(attempts) FROM notifications GROUP BY channel, status
             ORDER BY channel, status",
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(channel, status, count, attempts)| NotificationTally { channel, status, count, attempts })
        .collect();
        let (audit_entries, audit_last_seq): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_log").fetch_one(&mut *tx).await?;
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let last_checkpoint = match last {
            Some((seq, at)) => Some((seq, time::from_db("audit_checkpoints.at", &at)?)),
            None => None,
        };
        tx.commit().await?;
        Ok(Tallies {
            crises_by_state,
            steps,
            step_durations,
            notifications,
            audit_entries,
            // MAX over an empty log is NULL: 0, the seq before the first entry (seq starts at 1).
            audit_last_seq: audit_last_seq.unwrap_or(0),
            last_checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;

    #[tokio::test]
    async fn an_empty_database_counts_nothing_but_its_reference_sync() {
        let (_dir, store) = store().await;
        let t = store.tallies().await.unwrap();
        assert!(t.crises_by_state.is_empty());
        assert!(t.steps.is_empty() && t.step_durations.is_empty() && t.notifications.is_empty());
        assert_eq!(t.audit_entries, t.audit_last_seq);
    }
}
