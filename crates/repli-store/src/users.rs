//! Users and their API tokens (only a token's SHA-256 is stored).

use jiff::Timestamp;
use repli_core::{Actor, AuditAction, AuthMethod, InseeCode, Role};
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

/// A user as listed to admins: never a token or a password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub commune: Option<InseeCode>,
    pub login: Option<String>,
    pub has_password: bool,
    pub active_tokens: i64,
    pub created_at: Timestamp,
    /// A TOTP second factor is enrolled.
    pub second_factor: bool,
}

/// A web session, found by the SHA-256 of its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub actor: Actor,
    pub csrf: String,
    pub expires_at: Timestamp,
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
    pub async fn create_user(&self, u: &NewUser, by: By<'_>, now: Timestamp) -> Result<UserRecord, StoreError> {
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
        let id: i64 =
            sqlx::query_scalar("INSERT INTO users (name, role, commune, created_at) VALUES (?, ?, ?, ?) RETURNING id")
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
            action: AuditAction::UserCreate,
            target: &target,
            details,
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(UserRecord { id, name: u.name.clone(), role: u.role, commune: u.commune.clone() })
    }

    /// The actor holding the token whose SHA-256 is `token_sha256`, if it is valid at `now`.
    pub async fn actor_by_token(&self, token_sha256: &str, now: Timestamp) -> Result<Option<Actor>, StoreError> {
        Ok(self.token_actor(token_sha256, now).await?.map(|(a, _)| a))
    }

    /// The actor a token stands for, and when the token expires.
    pub async fn token_actor(
        &self,
        token_sha256: &str,
        now: Timestamp,
    ) -> Result<Option<(Actor, Option<Timestamp>)>, StoreError> {
        /// id, name, role, commune, token expiry.
        type Row = (i64, String, String, Option<String>, Option<String>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT u.id, u.name, u.role, u.commune, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
        )
        .bind(token_sha256)
        .bind(time::to_db(now))
        .fetch_optional(&self.read)
        .await?;
        let Some((user_id, name, role, commune, expires)) = row else {
            return Ok(None);
        };
        let actor =
            Actor { user_id, name, role: parse_role(role)?, commune: parse_commune(commune)?, auth: AuthMethod::Token };
        Ok(Some((actor, time::opt_from_db("api_tokens.expires_at", expires)?)))
    }
}

fn parse_role(role: String) -> Result<Role, StoreError> {
    role.parse().map_err(|_| StoreError::Corrupt { column: "users.role", value: role })
}

fn parse_commune(commune: Option<String>) -> Result<Option<InseeCode>, StoreError> {
    commune
        .map(|c| InseeCode::parse(&c).map_err(|_| StoreError::Corrupt { column: "users.commune", value: c }))
        .transpose()
}

pub(crate) async fn user_exists(conn: &mut sqlx::SqliteConnection, id: i64) -> Result<(), StoreError> {
    let known: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM users WHERE id = ?").bind(id).fetch_optional(&mut *conn).await?;
    known.map(|_| ()).ok_or(StoreError::UnknownUser(id))
}

/// A login another user already has is refused.
async fn login_free(conn: &mut sqlx::SqliteConnection, login: &str, user_id: i64) -> Result<(), StoreError> {
    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE login = ? AND id <> ?")
        .bind(login)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    match taken {
        Some(_) => Err(StoreError::LoginTaken(login.to_owned())),
        None => Ok(()),
    }
}

async fn actor_in(conn: &mut sqlx::SqliteConnection, user_id: i64, auth: AuthMethod) -> Result<Actor, StoreError> {
    let row: Option<(String, String, Option<String>)> =
        sqlx::query_as("SELECT name, role, commune FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (name, role, commune) = row.ok_or(StoreError::UnknownUser(user_id))?;
    Ok(Actor { user_id, name, role: parse_role(role)?, commune: parse_commune(commune)?, auth })
}

/// The user as the actor of what they do after signing in on the web.
pub(crate) async fn actor_of(conn: &mut sqlx::SqliteConnection, user_id: i64) -> Result<Actor, StoreError> {
    actor_in(conn, user_id, AuthMethod::Password).await
}

/// Accounts: listing, tokens, passwords, web sessions. Every change is audited.
impl Store {
    /// Every user, with how many usable tokens they hold.
    pub async fn users(&self, now: Timestamp) -> Result<Vec<UserSummary>, StoreError> {
        type Row = (i64, String, String, Option<String>, Option<String>, bool, i64, String, bool);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT u.id, u.name, u.role, u.commune, u.login, u.password_phc IS NOT NULL, \
             (SELECT COUNT(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL \
              AND (t.expires_at IS NULL OR t.expires_at > ?1)), u.created_at, \
             EXISTS (SELECT 1 FROM second_factors f WHERE f.user_id = u.id) FROM users u ORDER BY u.id",
        )
        .bind(time::to_db(now))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, name, role, commune, login, has_password, active_tokens, created, second_factor)| {
                Ok(UserSummary {
                    id,
                    name,
                    role: parse_role(role)?,
                    commune: parse_commune(commune)?,
                    login,
                    has_password,
                    active_tokens,
                    created_at: time::from_db("users.created_at", &created)?,
                    second_factor,
                })
            })
            .collect()
    }

    /// Issues another API token to a user (only its hash is stored).
    pub async fn issue_token(
        &self,
        user_id: i64,
        token_sha256: &str,
        expires_at: Option<Timestamp>,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        user_exists(&mut tx, user_id).await?;
        sqlx::query("INSERT INTO api_tokens (user_id, token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(user_id)
            .bind(token_sha256)
            .bind(time::to_db(now))
            .bind(expires_at.map(time::to_db))
            .execute(&mut *tx)
            .await?;
        let target = format!("user:{user_id}");
        let details = json!({ "expires_at": expires_at.map(time::to_db) });
        let e = NewEntry { by, commune: None, crisis: None, action: AuditAction::TokenIssue, target: &target, details };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes every token and web session of a user. Returns how many were revoked.
    pub async fn revoke_tokens(&self, user_id: i64, by: By<'_>, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.write.begin().await?;
        user_exists(&mut tx, user_id).await?;
        let at = time::to_db(now);
        let tokens = sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(&at)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let sessions = sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(&at)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let target = format!("user:{user_id}");
        let details = json!({ "tokens": tokens, "sessions": sessions });
        let e =
            NewEntry { by, commune: None, crisis: None, action: AuditAction::TokenRevoke, target: &target, details };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(tokens + sessions)
    }

    /// Sets a user's web login and argon2id password hash (PHC string). The hash is never
    /// written to the audit log.
    pub async fn set_password(
        &self,
        user_id: i64,
        login: &str,
        phc: &str,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        user_exists(&mut tx, user_id).await?;
        self.write_password(&mut tx, user_id, login, phc, by, json!({ "login": login }), now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a one-time link for `user_id` to choose a web password under `login` (checked
    /// free now and again when used); any earlier unused link of theirs stops working. Audited
    /// (`user.password_link`) without the secret.
    pub async fn create_password_link(
        &self,
        user_id: i64,
        login: &str,
        token_sha256: &str,
        expires_at: Timestamp,
        by: By<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        user_exists(&mut tx, user_id).await?;
        login_free(&mut tx, login, user_id).await?;
        sqlx::query("DELETE FROM password_links WHERE user_id = ? AND used_at IS NULL")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO password_links (token_sha256, user_id, login, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(login)
        .bind(time::to_db(now))
        .bind(time::to_db(expires_at))
        .execute(&mut *tx)
        .await?;
        let target = format!("user:{user_id}");
        let e = NewEntry {
            by,
            commune: None,
            crisis: None,
            action: AuditAction::UserPasswordLink,
            target: &target,
            details: json!({ "login": login, "expires_at": time::to_db(expires_at) }),
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The person and login behind a link still usable (unused, unexpired); None otherwise.
    pub async fn password_link(
        &self,
        token_sha256: &str,
        now: Timestamp,
    ) -> Result<Option<(Actor, String)>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT user_id, login FROM password_links WHERE token_sha256 = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(token_sha256)
        .bind(time::to_db(now))
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some((id, login)) => Ok(Some((actor_in(&mut conn, id, AuthMethod::Password).await?, login))),
            None => Ok(None),
        }
    }

    /// Sets the password a link's holder chose and spends the link, in one transaction: a link
    /// works once. Audited as the person (`user.set_password`). Returns the login set, or None
    /// when the link is no longer usable.
    pub async fn use_password_link(
        &self,
        token_sha256: &str,
        phc: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.write.begin().await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "UPDATE password_links SET used_at = ?1 WHERE token_sha256 = ?2 AND used_at IS NULL AND expires_at > ?1 \
             RETURNING user_id, login",
        )
        .bind(time::to_db(now))
        .bind(token_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, login)) = row else { return Ok(None) };
        let actor = actor_in(&mut tx, user_id, AuthMethod::Password).await?;
        let details = json!({ "login": login, "by_link": true });
        self.write_password(&mut tx, user_id, &login, phc, By::User(&actor), details, now).await?;
        tx.commit().await?;
        Ok(Some(login))
    }

    /// Sets a login and password hash inside a transaction (the login must be free), audited
    /// as `user.set_password` with `details` (never the hash).
    #[allow(clippy::too_many_arguments)]
    async fn write_password(
        &self,
        tx: &mut sqlx::SqliteConnection,
        user_id: i64,
        login: &str,
        phc: &str,
        by: By<'_>,
        details: serde_json::Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        login_free(tx, login, user_id).await?;
        sqlx::query("UPDATE users SET login = ?, password_phc = ? WHERE id = ?")
            .bind(login)
            .bind(phc)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let target = format!("user:{user_id}");
        let e = NewEntry {
            by,
            commune: None,
            crisis: None,
            action: AuditAction::UserSetPassword,
            target: &target,
            details,
        };
        self.append(tx, e, now).await.map(|_| ())
    }

    /// The user id and password hash behind a login, for the web sign-in.
    pub async fn password_for_login(&self, login: &str) -> Result<Option<(i64, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT id, password_phc FROM users WHERE login = ? AND password_phc IS NOT NULL")
            .bind(login)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Opens a web session (audited as a sign-in).
    pub async fn create_session(
        &self,
        user_id: i64,
        id_sha256: &str,
        csrf: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Actor, StoreError> {
        let mut tx = self.write.begin().await?;
        let actor = self.open_session_in(&mut tx, user_id, id_sha256, csrf, expires_at, None, now).await?;
        tx.commit().await?;
        Ok(actor)
    }

    /// Inserts a session and its audit entry inside `conn`'s transaction; `second_factor`
    /// names the proof given after the password (`totp`, `recovery_code`), if any.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open_session_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        user_id: i64,
        id_sha256: &str,
        csrf: &str,
        expires_at: Timestamp,
        second_factor: Option<&str>,
        now: Timestamp,
    ) -> Result<Actor, StoreError> {
        let actor = actor_in(conn, user_id, AuthMethod::Password).await?;
        sqlx::query("INSERT INTO sessions (id_sha256, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id_sha256)
            .bind(user_id)
            .bind(csrf)
            .bind(time::to_db(now))
            .bind(time::to_db(expires_at))
            .execute(&mut *conn)
            .await?;
        let target = format!("user:{user_id}");
        let details = match second_factor {
            Some(f) => json!({ "expires_at": time::to_db(expires_at), "second_factor": f }),
            None => json!({ "expires_at": time::to_db(expires_at) }),
        };
        let e = NewEntry {
            by: By::User(&actor),
            commune: None,
            crisis: None,
            action: AuditAction::SessionOpen,
            target: &target,
            details,
        };
        self.append(conn, e, now).await?;
        Ok(actor)
    }

    /// Closes a web session (sign-out).
    pub async fn close_session(&self, id_sha256: &str, actor: &Actor, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id_sha256 = ? AND revoked_at IS NULL")
            .bind(time::to_db(now))
            .bind(id_sha256)
            .execute(&mut *tx)
            .await?;
        let target = format!("user:{}", actor.user_id);
        let e = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: None,
            action: AuditAction::SessionClose,
            target: &target,
            details: json!({}),
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session whose id hashes to `id_sha256`.
    pub async fn session(&self, id_sha256: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT user_id, csrf, expires_at FROM sessions WHERE id_sha256 = ? AND revoked_at IS NULL AND expires_at > ?",
        )
        .bind(id_sha256)
        .bind(time::to_db(now))
        .fetch_optional(&self.read)
        .await?;
        let Some((user_id, csrf, expires)) = row else { return Ok(None) };
        let mut conn = self.read.acquire().await?;
        let actor = actor_in(&mut conn, user_id, AuthMethod::Password).await?;
        Ok(Some(Session { actor, csrf, expires_at: time::from_db("sessions.expires_at", &expires)? }))
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
        store.create_user(&u, By::System, t("2026-11-02T08:00:00Z")).await.unwrap();
        let a = store.actor_by_token("abc", t("2026-11-20T00:00:00Z")).await.unwrap().unwrap();
        assert_eq!((a.name.as_str(), a.role), ("Claire Ops", Role::Ops));
        assert!(store.actor_by_token("abc", t("2026-12-01T00:00:00Z")).await.unwrap().is_none());
        assert!(store.actor_by_token("nope", t("2026-11-20T00:00:00Z")).await.unwrap().is_none());
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
            store.create_user(&u, By::System, t("2026-11-02T08:00:00Z")).await,
            Err(StoreError::UnknownCommune(_))
        ));
        // The schema itself refuses a DGS without a commune.
        u.commune = None;
        assert!(matches!(store.create_user(&u, By::System, t("2026-11-02T08:00:00Z")).await, Err(StoreError::Db(_))));
    }
}

#[cfg(test)]
mod account_tests {
    use super::*;
    use crate::testutil::*;

    #[tokio::test]
    async fn listing_revoking_and_sessions() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T08:00:00Z");
        store.issue_token(ops.user_id, "second", None, By::System, now).await.unwrap();
        let list = store.users(now).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].active_tokens, list[0].has_password), (2, false));
        store.set_password(ops.user_id, "ops.astreinte", "$argon2id$fake", By::System, now).await.unwrap();
        assert_eq!(store.password_for_login("ops.astreinte").await.unwrap().unwrap().0, ops.user_id);
        store.create_session(ops.user_id, "sid", "csrf", t("2026-11-23T20:00:00Z"), now).await.unwrap();
        let s = store.session("sid", now).await.unwrap().unwrap();
        assert_eq!((s.actor.user_id, s.actor.auth, s.csrf.as_str()), (ops.user_id, AuthMethod::Password, "csrf"));
        assert!(store.session("sid", t("2026-11-23T20:00:01Z")).await.unwrap().is_none(), "expired");
        assert_eq!(store.revoke_tokens(ops.user_id, By::System, now).await.unwrap(), 3);
        assert!(store.session("sid", now).await.unwrap().is_none());
        assert!(store.actor_by_token("second", now).await.unwrap().is_none());
        assert!(matches!(store.revoke_tokens(999, By::System, now).await, Err(StoreError::UnknownUser(999))));
        store.verify_audit(None).await.unwrap();
    }
}
