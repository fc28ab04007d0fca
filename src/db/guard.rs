//! The only handles to a connection the rest of the crate gets: [`Session`] (autocommit) and
//! [`Tx`] (one transaction). Both are counted in the ledger for exactly as long as they live.
//!
//! Dropping a `Tx` without [`Tx::commit`] rolls back: sqlx queues the `ROLLBACK` and sends it
//! when the connection is released, before it can be handed out again. So a `?`, a panic or a
//! cancelled future between two statements can never leave half a write behind.

use super::DbError;
use super::ledger::Ticket;
use sqlx::AnyConnection;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, Transaction};

/// A statement ready to run: `db::sql("…").bind(x)`.
pub type Statement<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// SQL with `$1`-style placeholders, which both SQLite and PostgreSQL accept.
pub fn sql<'q>(text: &'static str) -> Statement<'q> {
    sqlx::query(text)
}

/// A connection checked out for one operation, in autocommit mode.
pub struct Session {
    pub(crate) conn: PoolConnection<Any>,
    pub(crate) holder: &'static str,
    pub(crate) _ticket: Ticket,
}

/// A transaction on a checked-out connection. Commit explicitly; drop means roll back.
pub struct Tx {
    pub(crate) tx: Transaction<'static, Any>,
    pub(crate) holder: &'static str,
    pub(crate) _ticket: Ticket,
}

impl Tx {
    pub async fn commit(self) -> Result<(), DbError> {
        let holder = self.holder;
        self.tx.commit().await.map_err(|e| DbError::sqlx(holder, e))
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        let holder = self.holder;
        self.tx
            .rollback()
            .await
            .map_err(|e| DbError::sqlx(holder, e))
    }
}

/// The statement methods, identical for both guards: only the way to the connection differs.
macro_rules! statement_methods {
    ($guard:ty, |$this:ident| $conn:expr) => {
        impl $guard {
            fn connection(&mut self) -> &mut AnyConnection {
                let $this = self;
                $conn
            }

            /// Runs a statement; returns the number of rows it changed.
            pub async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, DbError> {
                let holder = self.holder;
                let done = self
                    .connection()
                    .execute(statement)
                    .await
                    .map_err(|e| DbError::sqlx(holder, e))?;
                Ok(done.rows_affected())
            }

            pub async fn fetch_optional(
                &mut self,
                statement: Statement<'_>,
            ) -> Result<Option<AnyRow>, DbError> {
                let holder = self.holder;
                self.connection()
                    .fetch_optional(statement)
                    .await
                    .map_err(|e| DbError::sqlx(holder, e))
            }

            pub async fn fetch_one(&mut self, statement: Statement<'_>) -> Result<AnyRow, DbError> {
                let holder = self.holder;
                self.connection()
                    .fetch_one(statement)
                    .await
                    .map_err(|e| DbError::sqlx(holder, e))
            }

            pub async fn fetch_all(
                &mut self,
                statement: Statement<'_>,
            ) -> Result<Vec<AnyRow>, DbError> {
                let holder = self.holder;
                self.connection()
                    .fetch_all(statement)
                    .await
                    .map_err(|e| DbError::sqlx(holder, e))
            }
        }
    };
}

statement_methods!(Session, |this| &mut this.conn);
statement_methods!(Tx, |this| &mut this.tx);

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
