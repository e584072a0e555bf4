//! The one writer connection, and the generation it advances. Every write goes through a
//! [`WriteTx`] or a [`WriteConn`], and each bumps the generation when it ends (after its commit,
//! or on drop), so a read cached at generation `g` is known current while the generation is
//! still `g`. The types make it impossible to write without bumping: the pool is private here.
//!
//! This holds for one process writing the database, which is how replid runs (a second replid
//! on the same file would not see the first one's bumps).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};

/// The writer pool (one connection) and its generation.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pool: SqlitePool,
    generation: Arc<AtomicU64>,
    health: Arc<WriteHealth>,
    frozen: Arc<std::sync::RwLock<Option<String>>>,
}

impl Writer {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Writer { pool, generation: Arc::new(AtomicU64::new(0)), health: Arc::default(), frozen: Arc::default() }
    }

    /// The generation now: read it before a read whose result is cached.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Opens a write transaction (`BEGIN IMMEDIATE`: the write lock is taken now, so a
    /// conflict shows here rather than at the first write).
    pub(crate) async fn begin(&self) -> Result<WriteTx, crate::StoreError> {
        self.check_frozen()?;
        let mut conn = self.pool.acquire().await?;
        if let Err(e) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
            conn.close_on_drop();
            self.health.failed(&e);
            return Err(e.into());
        }
        Ok(WriteTx { conn: Some(conn), generation: self.generation.clone(), health: self.health.clone() })
    }

    /// Stops every write (the audit chain does not verify): each is refused with the reason.
    pub(crate) fn freeze(&self, why: String) {
        if let Ok(mut f) = self.frozen.write() {
            *f = Some(why);
        }
    }

    /// Lets writes through again (an operator accepted the break, audited).
    pub(crate) fn thaw(&self) {
        if let Ok(mut f) = self.frozen.write() {
            *f = None;
        }
    }

    /// Why writes are stopped, if they are.
    pub(crate) fn frozen(&self) -> Option<String> {
        self.frozen.read().ok().and_then(|f| f.clone())
    }

    fn check_frozen(&self) -> Result<(), crate::StoreError> {
        match self.frozen() {
            Some(why) => Err(crate::StoreError::WritesStopped(why)),
            None => Ok(()),
        }
    }

    /// What the writer has seen of the storage: its last write failure, if no commit
    /// succeeded since, and how many failed.
    pub(crate) fn health(&self) -> &WriteHealth {
        &self.health
    }

    /// The connection outside a transaction (single statements).
    pub(crate) async fn acquire(&self) -> Result<WriteConn, crate::StoreError> {
        self.check_frozen()?;
        Ok(WriteConn { conn: self.pool.acquire().await?, generation: self.generation.clone() })
    }

    /// The pool itself, for tests that write behind the store's back (tampering).
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

fn bump(generation: &AtomicU64) {
    generation.fetch_add(1, Ordering::AcqRel);
}

/// A write transaction: commit it, or drop it to roll back; either way the generation moves.
///
/// The transaction is ours, not sqlx's: SQLite rolls a transaction back by itself on some
/// errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_NOMEM), and a pool that went on
/// counting it as open would turn every later "commit" into the release of a savepoint inside
/// a transaction that never commits — acknowledged writes, all lost. So a transaction that
/// does not commit cleanly takes its connection with it: the connection is closed (which rolls
/// back whatever is left) and the pool opens a fresh one for the next write. Only a `COMMIT`
/// that SQLite answered with success is reported as committed.
#[derive(Debug)]
pub(crate) struct WriteTx {
    conn: Option<PoolConnection<Sqlite>>,
    generation: Arc<AtomicU64>,
    health: Arc<WriteHealth>,
}

impl WriteTx {
    /// Commits, then bumps the generation (after, so a read that saw the old generation cannot
    /// be taken for one that saw this commit).
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        // The connection stays in `self` until SQLite answered: if this future is dropped while
        // COMMIT is in flight, `Drop` closes the connection rather than return it to the pool
        // inside a transaction.
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        match sqlx::raw_sql("COMMIT").execute(&mut **conn).await {
            Ok(_) => {
                // Committed: the connection goes back to the pool as it is.
                self.conn.take();
                self.health.committed();
                Ok(())
            }
            Err(e) => {
                self.health.failed(&e);
                Err(e)
            }
        }
    }

    /// Ends the transaction without writing (a read under the write lock, a probe); the
    /// connection is closed if SQLite does not answer the ROLLBACK.
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        sqlx::raw_sql("ROLLBACK").execute(&mut **conn).await?;
        self.conn.take();
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Not committed: an error on the way, or a refusal. Closing the connection rolls back
        // whatever SQLite still holds, and no state of this connection outlives the attempt.
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
        bump(&self.generation);
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        // `conn` is only taken by `commit`, which consumes the value.
        match &self.conn {
            Some(c) => c,
            None => unreachable_connection(),
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable_connection(),
        }
    }
}

#[allow(clippy::panic)] // `commit` consumes the transaction: no caller can reach this
fn unreachable_connection() -> ! {
    panic!("write transaction used after commit")
}

/// The writer connection outside a transaction; the generation moves when it is released.
#[derive(Debug)]
pub(crate) struct WriteConn {
    conn: PoolConnection<Sqlite>,
    generation: Arc<AtomicU64>,
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        bump(&self.generation);
    }
}

impl Deref for WriteConn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// What the writer saw of the storage: the fault of the last failed write, cleared by the next
/// commit that succeeds, and a count of failures since the process started.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failures: AtomicU64,
    fault: std::sync::Mutex<Option<crate::StorageFault>>,
}

impl WriteHealth {
    pub(crate) fn failed(&self, e: &sqlx::Error) {
        let fault = crate::StorageFault::of(e).unwrap_or(crate::StorageFault::Other);
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, fault = fault.as_str(), "database write failed: nothing of it was kept");
        if let Ok(mut f) = self.fault.lock() {
            *f = Some(fault);
        }
    }

    pub(crate) fn committed(&self) {
        if let Ok(mut f) = self.fault.lock()
            && f.take().is_some()
        {
            tracing::info!("database writes succeed again");
        }
    }

    pub(crate) fn fault(&self) -> Option<crate::StorageFault> {
        self.fault.lock().ok().and_then(|f| *f)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}
