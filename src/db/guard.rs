//! The only handles to a connection the rest of the crate gets: [`Session`] (autocommit) and
//! [`Tx`] (one transaction). Both are counted in the ledger for exactly as long as they live.
//!
//! Dropping a `Tx` without [`Tx::commit`] rolls back: sqlx queues the `ROLLBACK` and sends it
//! when the connection is released, before it can be handed out again. So a `?`, a panic or a
//! cancelled future between two statements can never leave half a write behind.

use super::DbError;
use super::fault::{DbAwait, Faults, Point};
use super::handoff::Claim;
use super::ledger::Ticket;
use super::spin::AnswerSpin;
use sqlx::AnyConnection;
use sqlx::Executor;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;

/// A statement ready to run: `db::sql("…").bind(x)`.
pub type Statement<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// SQL with `$1`-style placeholders, which both SQLite and PostgreSQL accept.
pub fn sql<'q>(text: &'static str) -> Statement<'q> {
    sqlx::query(text)
}

/// A connection checked out for one operation, in autocommit mode.
pub struct Session<'db> {
    /// `Some` for the whole life of the guard; taken only by `Drop`.
    pub(crate) conn: Option<PoolConnection<Any>>,
    pub(crate) claim: Claim<'db>,
    pub(crate) holder: &'static str,
    pub(crate) faults: &'db Faults,
    pub(crate) suspect: &'db Suspect,
    /// How long a statement's answer is polled for before the task sleeps (`PoolConfig`).
    pub(crate) answer_spin: &'db AnswerSpin,
    pub(crate) statements: u32,
    /// A statement started and has not finished: if the guard drops now, it was cancelled.
    pub(crate) in_flight: bool,
    /// A statement failed with an injected fault.
    pub(crate) faulted: bool,
    /// A statement failed: the connection goes back through sqlx's release, never parked.
    pub(crate) errored: bool,
    pub(crate) _ticket: Ticket<'db>,
}

/// A transaction on a checked-out connection. Commit explicitly; drop means roll back.
///
/// leakproof runs `BEGIN`/`COMMIT`/`ROLLBACK` itself rather than through `sqlx::Transaction`:
/// sqlx 0.9 counts a transaction only once `BEGIN` has answered, so a future cancelled between
/// sending `BEGIN` and reading the answer returned the connection to the pool *inside* a
/// transaction, and the next caller's autocommit statements ran in it, uncommitted (the
/// harness found this; see tests/cancellation.rs). Here a `Tx` is open from before `BEGIN` is
/// sent until `COMMIT` answers, and dropping an open `Tx` always rolls back.
pub struct Tx<'db> {
    /// `Some` for the whole life of the guard; taken only by `Drop`.
    pub(crate) conn: Option<PoolConnection<Any>>,
    pub(crate) claim: Claim<'db>,
    /// `BEGIN` may have reached the server and no `COMMIT` or `ROLLBACK` has answered.
    pub(crate) open: bool,
    pub(crate) holder: &'static str,
    pub(crate) faults: &'db Faults,
    pub(crate) suspect: &'db Suspect,
    /// How long a statement's answer is polled for before the task sleeps (`PoolConfig`).
    pub(crate) answer_spin: &'db AnswerSpin,
    pub(crate) statements: u32,
    /// An await on the connection (BEGIN, a statement, COMMIT) started and has not finished: if
    /// the guard drops now, its future was cancelled there. (Read only by a seeded bug.)
    pub(crate) in_flight: bool,
    /// A statement failed with an injected fault. (Read only by a seeded bug.)
    pub(crate) faulted: bool,
    /// BEGIN or a statement failed: the connection is never parked. (A failed COMMIT or
    /// ROLLBACK leaves the guard open, and an open guard's drop never parks.)
    pub(crate) errored: bool,
    /// SQLite: this transaction's turn as the one writer; given back once it has ended.
    pub(crate) writer: Option<tokio::sync::OwnedSemaphorePermit>,
    pub(crate) _ticket: Ticket<'db>,
}

/// Evidence that pooled connections may be dead (one died, or the server was told to kill
/// them): the next checkouts ping before use, at most one per connection the pool may hold.
/// Without such evidence a checkout costs no round trip (`test_before_acquire` is off).
#[derive(Debug)]
pub(crate) struct Suspect {
    /// The pool's size: after one connection died, any of them may have.
    connections: u32,
    checkouts_to_test: std::sync::atomic::AtomicU32,
}

impl Suspect {
    pub(crate) fn new(connections: u32) -> Self {
        Self {
            connections,
            checkouts_to_test: Default::default(),
        }
    }

    /// Every connection the pool may hold is suspect.
    pub(crate) fn raise(&self) {
        self.checkouts_to_test
            .fetch_max(self.connections, std::sync::atomic::Ordering::Relaxed);
    }

    /// Should this checkout ping first? Consumes one from the count.
    pub(crate) fn take(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.checkouts_to_test
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn noticed(&self, error: &DbError) {
        if error.is_connection_lost() {
            self.raise();
        }
    }
}

impl Tx<'_> {
    fn raw(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("a live Tx holds its connection")
    }

    /// Sends `BEGIN` (or `BEGIN IMMEDIATE`). The guard counts as open before it is sent.
    pub(crate) async fn begin(&mut self, statement: &'static str) -> Result<(), DbError> {
        self.open = true;
        let holder = self.holder;
        self.in_flight = true;
        let wait = self.next_await();
        let begun = wait.run(sqlx::raw_sql(statement).execute(self.raw())).await;
        self.in_flight = false;
        if let Err(e) = begun {
            // An answered error: no transaction was started.
            self.open = false;
            self.errored = true;
            return Err(DbError::sqlx(holder, e));
        }
        Ok(())
    }

    /// Runs several `;`-separated statements built by the crate itself (never from input) in
    /// one round trip. For scratch databases only: it takes no binds.
    pub(crate) async fn execute_script(&mut self, script: String) -> Result<(), DbError> {
        let wait = self.before_statement()?;
        let holder = self.holder;
        let done = wait
            .run(sqlx::raw_sql(sqlx::AssertSqlSafe(script)).execute(self.raw()))
            .await;
        self.mark(false, false);
        done.map_err(|e| self.noticed(DbError::sqlx(holder, e)))?;
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), DbError> {
        let holder = self.holder;
        self.faults.point(holder, Point::Commit)?;
        self.in_flight = true;
        let wait = self.next_await();
        let committed = wait.run(sqlx::raw_sql("COMMIT").execute(self.raw())).await;
        self.in_flight = false;
        // Failed: still open, so the drop rolls back (and never parks the connection).
        committed.map_err(|e| DbError::sqlx(holder, e))?;
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), DbError> {
        let holder = self.holder;
        self.in_flight = true;
        let wait = self.next_await();
        let rolled_back = wait
            .run(sqlx::raw_sql("ROLLBACK").execute(self.raw()))
            .await;
        self.in_flight = false;
        rolled_back.map_err(|e| DbError::sqlx(holder, e))?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    /// An open transaction is rolled back in a task before its connection goes back to the
    /// pool; if that cannot happen (no runtime, the rollback fails, the task is dropped), the
    /// connection is closed instead, which ends the transaction on the server.
    fn drop(&mut self) {
        if !self.open {
            let clean = !self.in_flight && !self.errored;
            self.claim.end(self.conn.take(), clean);
            return;
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Seeded bug: a connection dropped mid-statement (a cancelled future) is kept alive.
        #[cfg(feature = "mutant-leak-on-cancel")]
        if self.in_flight {
            std::mem::forget(conn);
            return;
        }
        // Seeded bug: after an injected error the rollback is skipped; the connection goes
        // back to the pool with its transaction open.
        #[cfg(feature = "mutant-open-tx-on-error")]
        if self.faulted {
            drop(conn);
            return;
        }
        let mut guard = CloseUnlessReleased(Some(conn));
        let writer = self.writer.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(conn) = guard.0.as_mut()
                    && sqlx::raw_sql("ROLLBACK").execute(&mut **conn).await.is_ok()
                {
                    // Rolled back: back to the pool as usual.
                    drop(guard.0.take());
                }
                // The next writer's turn only once this transaction has ended.
                drop(writer);
            });
        }
    }
}

/// Holds a connection whose transaction state is unknown: closes it on drop unless released.
struct CloseUnlessReleased(Option<PoolConnection<Any>>);

impl Drop for CloseUnlessReleased {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}

/// The statement methods, identical for both guards: only the way to the connection differs.
macro_rules! statement_methods {
    ($guard:ident, |$this:ident| $conn:expr) => {
        impl<'db> $guard<'db> {
            fn connection(&mut self) -> &mut AnyConnection {
                let $this = self;
                $conn
            }

            /// A lost connection makes the next checkouts test theirs.
            fn noticed(&mut self, error: DbError) -> DbError {
                self.errored = true;
                self.suspect.noticed(&error);
                error
            }

            /// Records a fault that fired and whether a statement is in flight.
            fn mark(&mut self, faulted: bool, in_flight: bool) {
                self.faulted |= faulted;
                self.in_flight = in_flight && !faulted;
            }

            /// The next await on the connection: counted for cuts, its answer awaited through
            /// the `Db`'s answer spin.
            fn next_await(&self) -> DbAwait<'db> {
                self.faults.next_await(Some(self.answer_spin))
            }

            /// The fault point every statement passes, then its await.
            fn before_statement(&mut self) -> Result<DbAwait<'db>, DbError> {
                self.statements += 1;
                let passed = self
                    .faults
                    .point(self.holder, Point::Statement(self.statements));
                self.mark(passed.is_err(), true);
                passed?;
                Ok(self.next_await())
            }

            /// Runs a statement; returns the number of rows it changed.
            pub async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, DbError> {
                let wait = self.before_statement()?;
                let holder = self.holder;
                let done = wait.run(self.connection().execute(statement)).await;
                self.mark(false, false);
                let done = done.map_err(|e| self.noticed(DbError::sqlx(holder, e)))?;
                Ok(done.rows_affected())
            }

            pub async fn fetch_optional(
                &mut self,
                statement: Statement<'_>,
            ) -> Result<Option<AnyRow>, DbError> {
                let wait = self.before_statement()?;
                let holder = self.holder;
                let result = wait.run(self.connection().fetch_optional(statement)).await;
                self.mark(false, false);
                result.map_err(|e| self.noticed(DbError::sqlx(holder, e)))
            }

            pub async fn fetch_one(&mut self, statement: Statement<'_>) -> Result<AnyRow, DbError> {
                let wait = self.before_statement()?;
                let holder = self.holder;
                let result = wait.run(self.connection().fetch_one(statement)).await;
                self.mark(false, false);
                result.map_err(|e| self.noticed(DbError::sqlx(holder, e)))
            }

            pub async fn fetch_all(
                &mut self,
                statement: Statement<'_>,
            ) -> Result<Vec<AnyRow>, DbError> {
                let wait = self.before_statement()?;
                let holder = self.holder;
                let result = wait.run(self.connection().fetch_all(statement)).await;
                self.mark(false, false);
                result.map_err(|e| self.noticed(DbError::sqlx(holder, e)))
            }
        }
    };
}

impl Session<'_> {
    fn raw(&mut self) -> &mut AnyConnection {
        self.conn
            .as_mut()
            .expect("a live Session holds its connection")
    }
}

impl Drop for Session<'_> {
    /// A session has no transaction to end: its connection is clean unless a statement was
    /// cancelled in flight or failed.
    fn drop(&mut self) {
        let clean = !self.in_flight && !self.errored;
        self.claim.end(self.conn.take(), clean);
    }
}

statement_methods!(Session, |this| this.raw());
statement_methods!(Tx, |this| this.raw());

/// Reads a column; a missing column or a type mismatch is a storage error, never a panic.
pub fn get<T>(row: &AnyRow, column: &'static str) -> Result<T, DbError>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row;
    row.try_get(column).map_err(|source| DbError::Sqlx {
        holder: "decode",
        source,
    })
}
