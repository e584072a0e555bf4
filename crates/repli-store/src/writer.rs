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
}

impl Writer {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Writer { pool, generation: Arc::new(AtomicU64::new(0)) }
    }

    /// The generation now: read it before a read whose result is cached.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        Ok(WriteTx { tx: Some(self.pool.begin().await?), generation: self.generation.clone() })
    }

    /// The connection outside a transaction (single statements).
    pub(crate) async fn acquire(&self) -> Result<WriteConn, sqlx::Error> {
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
#[derive(Debug)]
pub(crate) struct WriteTx {
    tx: Option<sqlx::Transaction<'static, Sqlite>>,
    generation: Arc<AtomicU64>,
}

impl WriteTx {
    /// Commits, then bumps the generation (after, so a read that saw the old generation cannot
    /// be taken for one that saw this commit).
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        bump(&self.generation);
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        bump(&self.generation);
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        // `tx` is only taken by `commit`, which consumes the value.
        match &self.tx {
            Some(tx) => tx,
            None => unreachable_connection(),
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.tx {
            Some(tx) => tx,
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
