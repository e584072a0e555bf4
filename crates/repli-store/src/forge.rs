//! Raw SQL on a database file nobody has open: how an attacker holding a copy of the file
//! (a snapshot) would change it. Only for the snapshot tamper suite (`repli-bench tamper` and
//! its test); built with the `forge` feature, never called by replid.

use std::path::Path;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::StoreError;

/// Runs `statements` in order on the database file at `path` (one connection, no migration,
/// no trigger kept: the append-only triggers are dropped first, as anyone with the file can).
pub async fn execute(path: &Path, statements: &[String]) -> Result<(), StoreError> {
    let opts = SqliteConnectOptions::from_str("sqlite:")?.filename(path).create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    for sql in [
        "DROP TRIGGER IF EXISTS audit_log_no_update",
        "DROP TRIGGER IF EXISTS audit_log_no_delete",
        "DROP TRIGGER IF EXISTS audit_checkpoints_no_update",
        "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str())).execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(())
}
