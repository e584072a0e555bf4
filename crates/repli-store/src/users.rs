//! Users and their API tokens (only a token's SHA-256 is stored).

use jiff::Timestamp;
use repli_core::{Actor, AuthMethod, InseeCode, Role};
use serde_json::json;

use crate::audit::NewEntry;
use crate::{By, Store, StoreError, time};

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub commune: Option<InseeCode>,
    /// SHA-256 (hex) of the user's first API token.
    pub token_sha256: String,
    pub token_expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub commune: Option<InseeCode>,
}

impl Store {
    /// Creates a user with one API token, audited.
    pub async fn create_user(
        &self,
        u: &NewUser,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.write.begin().await?;
        if let Some(c) = &u.commune {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM communes WHERE insee = ?")
                .bind(c.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Err(StoreError::UnknownCommune(c.clone()));
            }
        }
        let created = time::to_db(now);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, role, commune, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(&u.name)
        .bind(u.role.as_str())
        .bind(u.commune.as_ref().map(InseeCode::as_str))
        .bind(&created)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO api_tokens (user_id, token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(id)
            .bind(&u.token_sha256)
            .bind(&created)
            .bind(u.token_expires_at.map(time::to_db))
            .execute(&mut *tx)
            .await?;
        let target = format!("user:{id}");
        let details = json!({ "name": u.name, "role": u.role.as_str(), "commune": u.commune });
        let e = NewEntry {
            by,
            commune: u.commune.as_ref().map(InseeCode::as_str),
            crisis: None,
            action: "user.create",
            target: &target,
            details,
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(UserRecord {
            id,
            name: u.name.clone(),
            role: u.role,
            commune: u.commune.clone(),
        })
    }

    /// The actor holding the token whose SHA-256 is `token_sha256`, if it is valid at `now`.
    pub async fn actor_by_token(
        &self,
        token_sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Actor>, StoreError> {
        let row: Option<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT u.id, u.name, u.role, u.commune FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
        )
        .bind(token_sha256)
        .bind(time::to_db(now))
        .fetch_optional(&self.read)
        .await?;
        let Some((user_id, name, role, commune)) = row else {
            return Ok(None);
        };
        let role = role.parse::<Role>().map_err(|_| StoreError::Corrupt {
            column: "users.role",
            value: role,
        })?;
        let commune = commune
            .map(|c| {
                InseeCode::parse(&c).map_err(|_| StoreError::Corrupt {
                    column: "users.commune",
                    value: c,
                })
            })
            .transpose()?;
        Ok(Some(Actor {
            user_id,
            name,
            role,
            commune,
            auth: AuthMethod::Token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[tokio::test]
    async fn tokens_resolve_until_expiry() {
        let (_d, store) = store().await;
        let u = NewUser {
            name: "Claire Ops".into(),
            role: Role::Ops,
            commune: None,
            token_sha256: "abc".into(),
            token_expires_at: Some(t("2026-12-01T00:00:00Z")),
        };
        store
            .create_user(&u, By::System, t("2026-11-02T08:00:00Z"))
            .await
            .unwrap();
        let a = store
            .actor_by_token("abc", t("2026-11-20T00:00:00Z"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.name.as_str(), a.role), ("Claire Ops", Role::Ops));
        assert!(
            store
                .actor_by_token("abc", t("2026-12-01T00:00:00Z"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .actor_by_token("nope", t("2026-11-20T00:00:00Z"))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn dgs_must_name_a_known_commune() {
        let (_d, store) = store().await;
        let mut u = NewUser {
            name: "DGS".into(),
            role: Role::Dgs,
            commune: Some(InseeCode::parse("13999").unwrap()),
            token_sha256: "x".into(),
            token_expires_at: None,
        };
        assert!(matches!(
            store
                .create_user(&u, By::System, t("2026-11-02T08:00:00Z"))
                .await,
            Err(StoreError::UnknownCommune(_))
        ));
        // The schema itself refuses a DGS without a commune.
        u.commune = None;
        assert!(matches!(
            store
                .create_user(&u, By::System, t("2026-11-02T08:00:00Z"))
                .await,
            Err(StoreError::Db(_))
        ));
    }
}
