use super::views::LeakReport;
use std::time::Duration;
use thiserror::Error;

/// A storage failure. To a caller it means: the outcome of the operation is unknown to it, but
/// the operation was applied whole or not at all (every write is one transaction).
#[derive(Debug, Error)]
pub enum DbError {
    #[error("{holder}: {source}")]
    Sqlx {
        holder: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{holder}: no connection available within {waited:?} (pool exhausted)")]
    AcquireTimeout {
        holder: &'static str,
        waited: Duration,
    },
    #[error("{holder}: injected fault")]
    Injected { holder: &'static str },
    #[error("inconsistent rows: {0}")]
    Inconsistent(&'static str),
    #[error("the database is closed")]
    Closed,
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("invalid pool settings: {0}")]
    BadConfig(String),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Leak(#[from] Box<LeakReport>),
}

impl DbError {
    pub(crate) fn sqlx(holder: &'static str, source: sqlx::Error) -> Self {
        match source {
            sqlx::Error::PoolClosed => DbError::Closed,
            source => DbError::Sqlx { holder, source },
        }
    }

    /// The connection died under the statement (the server terminated it, the network went):
    /// the operation's outcome is unknown to the caller, and it was applied whole or not at all.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Sqlx { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
                // SQLSTATE class 08 (connection exception), 57P01-03 (admin/crash shutdown).
                sqlx::Error::Database(e) => e
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
                _ => false,
            },
            _ => false,
        }
    }

    /// A unique constraint refused the write: a concurrent twin got there first.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx { source: sqlx::Error::Database(e), .. } if e.is_unique_violation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broken socket, a crashed SQLite worker or a garbled protocol all mean the connection
    /// is gone; a pool timeout or an injected fault do not.
    #[test]
    fn lost_connections_are_told_apart() {
        let sqlx = |source| DbError::sqlx("test", source);
        assert!(sqlx(sqlx::Error::Io(std::io::Error::other("reset"))).is_connection_lost());
        assert!(sqlx(sqlx::Error::WorkerCrashed).is_connection_lost());
        assert!(sqlx(sqlx::Error::Protocol("garbled".into())).is_connection_lost());
        assert!(!sqlx(sqlx::Error::PoolTimedOut).is_connection_lost());
        assert!(!DbError::Injected { holder: "test" }.is_connection_lost());
        assert!(!sqlx(sqlx::Error::RowNotFound).is_unique_violation());
    }
}
