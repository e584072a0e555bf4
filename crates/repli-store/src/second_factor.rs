//! The TOTP second factor: the sealed secret (replid seals and opens it; the store only keeps
//! the text), the last time step accepted, single-use recovery codes. Enrolment, a recovery
//! code's use and a reset are audited; a code's use is recorded on the session it opens.

use jiff::Timestamp;
use repli_core::AuditAction;
use serde_json::json;

use crate::audit::NewEntry;
use crate::users::user_exists;
use crate::{By, Store, StoreError, time};

/// An account's enrolled second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondFactorRecord {
    /// The secret as sealed by replid.
    pub sealed: String,
    /// The highest time step a code was accepted for.
    pub last_step: i64,
}

/// What proves the second factor at a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactorProof {
    /// A TOTP code, valid for this time step (accepted only above the last one used).
    Totp { step: i64 },
    /// A recovery code, by its SHA-256 (accepted once).
    Recovery { code_sha256: String },
}

/// A web session to open once the second factor is proven.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub user_id: i64,
    pub id_sha256: &'a str,
    pub csrf: &'a str,
    pub expires_at: Timestamp,
}

impl Store {
    /// The enrolled second factor of `user_id`, if any.
    pub async fn second_factor(&self, user_id: i64) -> Result<Option<SecondFactorRecord>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT sealed, last_step FROM second_factors WHERE user_id = ?")
                .bind(user_id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|(sealed, last_step)| SecondFactorRecord { sealed, last_step }))
    }

    /// Enrols `user_id`'s second factor and its recovery codes, and opens the session the
    /// enrolment's first code proves, in one transaction (audited: the enrolment, then the
    /// session). False, and nothing written, when the account is enrolled already.
    pub async fn enrol_second_factor(
        &self,
        session: &NewSession<'_>,
        sealed: &str,
        step: i64,
        recovery_sha256: &[String],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        user_exists(&mut tx, session.user_id).await?;
        let at = time::to_db(now);
        let inserted = sqlx::query(
            "INSERT INTO second_factors (user_id, sealed, last_step, enrolled_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(session.user_id)
        .bind(sealed)
        .bind(step)
        .bind(&at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(session.user_id).execute(&mut *tx).await?;
        for h in recovery_sha256 {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_sha256) VALUES (?, ?)")
                .bind(session.user_id)
                .bind(h)
                .execute(&mut *tx)
                .await?;
        }
        let target = format!("user:{}", session.user_id);
        let actor = crate::users::actor_of(&mut tx, session.user_id).await?;
        let details = json!({ "method": "totp", "recovery_codes": recovery_sha256.len() });
        let e = NewEntry {
            by: By::User(&actor),
            commune: None,
            crisis: None,
            action: AuditAction::SecondFactorEnrol,
            target: &target,
            details,
        };
        self.append(&mut tx, e, now).await?;
        self.open_session_in(
            &mut tx,
            session.user_id,
            session.id_sha256,
            session.csrf,
            session.expires_at,
            Some("totp"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Spends `proof` and opens the session, in one transaction. False, and nothing written,
    /// when the proof was used already (a TOTP step at or below the last accepted, a spent or
    /// unknown recovery code) or the account has no second factor.
    pub async fn open_session_with(
        &self,
        session: &NewSession<'_>,
        proof: &SecondFactorProof,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let at = time::to_db(now);
        let method = match proof {
            SecondFactorProof::Totp { step } => {
                let n = sqlx::query("UPDATE second_factors SET last_step = ?1 WHERE user_id = ?2 AND last_step < ?1")
                    .bind(step)
                    .bind(session.user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                "totp"
            }
            SecondFactorProof::Recovery { code_sha256 } => {
                let n = sqlx::query(
                    "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_sha256 = ? AND used_at IS NULL \
                     AND EXISTS (SELECT 1 FROM second_factors f WHERE f.user_id = recovery_codes.user_id)",
                )
                .bind(&at)
                .bind(session.user_id)
                .bind(code_sha256)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let left: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL")
                        .bind(session.user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let target = format!("user:{}", session.user_id);
                let actor = crate::users::actor_of(&mut tx, session.user_id).await?;
                let e = NewEntry {
                    by: By::User(&actor),
                    commune: None,
                    crisis: None,
                    action: AuditAction::SecondFactorRecoveryUsed,
                    target: &target,
                    details: json!({ "codes_left": left }),
                };
                self.append(&mut tx, e, now).await?;
                "recovery_code"
            }
        };
        self.open_session_in(
            &mut tx,
            session.user_id,
            session.id_sha256,
            session.csrf,
            session.expires_at,
            Some(method),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes `user_id`'s second factor and recovery codes and closes their web sessions
    /// (audited): the account enrols again at its next sign-in. False when there was none.
    pub async fn reset_second_factor(&self, user_id: i64, by: By<'_>, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        user_exists(&mut tx, user_id).await?;
        let removed = sqlx::query("DELETE FROM second_factors WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        let codes = sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let sessions = sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(time::to_db(now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let target = format!("user:{user_id}");
        let details = json!({ "recovery_codes_removed": codes, "sessions_closed": sessions });
        let e = NewEntry {
            by,
            commune: None,
            crisis: None,
            action: AuditAction::SecondFactorReset,
            target: &target,
            details,
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many unused recovery codes `user_id` holds.
    pub async fn recovery_codes_left(&self, user_id: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL")
            .bind(user_id)
            .fetch_one(&self.read)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn t0() -> Timestamp {
        t("2026-11-02T09:00:00Z")
    }

    fn session(user_id: i64, n: u8) -> (String, NewSession<'static>) {
        let id = format!("{n:064}");
        let leaked: &'static str = Box::leak(id.clone().into_boxed_str());
        (id, NewSession { user_id, id_sha256: leaked, csrf: "c", expires_at: t0() })
    }

    #[tokio::test]
    async fn a_step_and_a_recovery_code_are_accepted_once_and_a_reset_starts_over() {
        let (_d, store) = store().await;
        let id = user(&store, repli_core::Role::Ops, None).await.user_id;
        let (_, s1) = session(id, 1);
        let codes = vec!["h1".to_owned(), "h2".to_owned()];
        assert!(store.enrol_second_factor(&s1, "sealed", 100, &codes, t0()).await.unwrap());
        let (_, s2) = session(id, 2);
        assert!(!store.enrol_second_factor(&s2, "other", 100, &codes, t0()).await.unwrap(), "enrolled once");
        assert_eq!(store.second_factor(id).await.unwrap().unwrap().sealed, "sealed");
        // The enrolment's step, or an older one, is a replay; a later one passes once.
        for step in [99, 100] {
            assert!(!store.open_session_with(&s2, &SecondFactorProof::Totp { step }, t0()).await.unwrap());
        }
        assert!(store.open_session_with(&s2, &SecondFactorProof::Totp { step: 101 }, t0()).await.unwrap());
        let (_, s3) = session(id, 3);
        assert!(!store.open_session_with(&s3, &SecondFactorProof::Totp { step: 101 }, t0()).await.unwrap());
        let r = SecondFactorProof::Recovery { code_sha256: "h1".into() };
        assert!(store.open_session_with(&s3, &r, t0()).await.unwrap());
        let (_, s4) = session(id, 4);
        assert!(!store.open_session_with(&s4, &r, t0()).await.unwrap(), "spent");
        let unknown = SecondFactorProof::Recovery { code_sha256: "zz".into() };
        assert!(!store.open_session_with(&s4, &unknown, t0()).await.unwrap());
        assert_eq!(store.recovery_codes_left(id).await.unwrap(), 1);
        // Reset: nothing left, sessions closed, the remaining code is gone too.
        assert!(store.reset_second_factor(id, By::System, t0()).await.unwrap());
        assert!(!store.reset_second_factor(id, By::System, t0()).await.unwrap());
        assert!(store.second_factor(id).await.unwrap().is_none());
        let h2 = SecondFactorProof::Recovery { code_sha256: "h2".into() };
        assert!(!store.open_session_with(&s4, &h2, t0()).await.unwrap());
        let actions: Vec<String> =
            sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq").fetch_all(&store.read).await.unwrap();
        for a in ["second_factor.enrol", "second_factor.recovery_used", "second_factor.reset"] {
            assert_eq!(actions.iter().filter(|x| *x == a).count(), 1, "{a}: {actions:?}");
        }
        assert_eq!(actions.iter().filter(|x| *x == "session.open").count(), 3);
    }
}

/// An upgrade: a database made by the version before the second factor (migrations up to 13)
/// opens with this one, which migrates it at open; its accounts are kept and gain the tables.
#[cfg(test)]
mod upgrade_tests {
    use super::*;

    #[tokio::test]
    async fn a_database_of_the_previous_version_is_migrated_at_open_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let pool = crate::database_as_of(&path, 13).await;
        let all = crate::migrator();
        sqlx::query(
            "INSERT INTO users (id, name, role, created_at) VALUES (7, 'Claire Ops', 'ops', '2026-11-02T08:00:00Z')",
        )
        .execute(&pool)
        .await
        .unwrap();
        let missing: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE name = 'second_factors'")
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert!(missing.is_none());
        pool.close().await;

        let store = Store::open(&path).await.unwrap();
        let users = store.users(time::from_db("t", "2026-11-02T09:00:00Z").unwrap()).await.unwrap();
        assert_eq!(users.iter().map(|u| (u.id, u.second_factor)).collect::<Vec<_>>(), vec![(7, false)]);
        assert!(store.second_factor(7).await.unwrap().is_none());
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&store.read)
            .await
            .unwrap();
        assert_eq!(versions.last(), all.iter().last().map(|m| &m.version), "every migration applied");
    }
}
