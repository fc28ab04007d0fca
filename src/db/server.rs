//! The server's view of this `Db`'s sessions, taken over a connection outside the pool so the
//! probe never counts itself.

use super::DbError;
use super::views::ServerView;
use sqlx::AnyConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) enum Probe {
    /// PostgreSQL: `pg_stat_activity`, filtered by the pool's unique `application_name`.
    Postgres {
        monitor_url: String,
        application_name: String,
        monitor: Option<AnyConnection>,
    },
    /// SQLite: descriptors on the database file, and a `BEGIN IMMEDIATE` probe with no busy
    /// wait, which fails exactly when some connection holds a write transaction open.
    Sqlite {
        path: PathBuf,
        probe: Option<SqliteConnection>,
    },
}

const HOLDER: &str = "db.server_view";

impl Probe {
    pub(crate) async fn view(&mut self) -> Result<ServerView, DbError> {
        match self {
            Probe::Postgres {
                monitor_url,
                application_name,
                monitor,
            } => {
                let monitor = connect_monitor(monitor, monitor_url).await?;
                let row = sqlx::query(
                    "SELECT COUNT(*) AS connections, \
                       COUNT(*) FILTER (WHERE state = 'active') AS active, \
                       COUNT(*) FILTER (WHERE state LIKE 'idle in transaction%') AS in_transaction \
                     FROM pg_stat_activity WHERE application_name = $1",
                )
                .bind(application_name.as_str())
                .fetch_one(&mut *monitor)
                .await
                .map_err(|e| DbError::sqlx(HOLDER, e))?;
                let count = |col: &str| -> Result<u32, DbError> {
                    let n: i64 = row.try_get(col).map_err(|e| DbError::sqlx(HOLDER, e))?;
                    Ok(u32::try_from(n).unwrap_or(u32::MAX))
                };
                Ok(ServerView {
                    connections: count("connections")?,
                    active: count("active")?,
                    in_transaction: count("in_transaction")?,
                })
            }
            Probe::Sqlite { path, probe } => {
                // The probe's own connection holds one descriptor on the file.
                let descriptors = open_descriptors(path).saturating_sub(u32::from(probe.is_some()));
                let probe = match probe {
                    Some(p) => p,
                    None => {
                        let options = SqliteConnectOptions::new()
                            .filename(&*path)
                            .busy_timeout(Duration::ZERO);
                        probe.insert(
                            SqliteConnection::connect_with(&options)
                                .await
                                .map_err(|e| DbError::sqlx(HOLDER, e))?,
                        )
                    }
                };
                // One round trip to SQLite's thread: the probe runs after every step.
                let probed = sqlx::raw_sql("BEGIN IMMEDIATE; ROLLBACK")
                    .execute(&mut *probe)
                    .await;
                let in_transaction = match probed {
                    Ok(_) => 0,
                    Err(sqlx::Error::Database(_)) => {
                        // Busy: the write lock is held. Should it have been the ROLLBACK that
                        // failed, this ends the probe's own transaction; else it is a no-op
                        // error ("no transaction is active"), ignored.
                        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *probe).await;
                        1
                    }
                    Err(e) => return Err(DbError::sqlx(HOLDER, e)),
                };
                Ok(ServerView {
                    connections: descriptors,
                    active: 0,
                    in_transaction,
                })
            }
        }
    }

    /// PostgreSQL: `pg_terminate_backend` on every backend of the pool, over the monitor.
    pub(crate) async fn kill(&mut self, application_name: &str) -> Result<u32, DbError> {
        let Probe::Postgres {
            monitor_url,
            monitor,
            ..
        } = self
        else {
            return Ok(0);
        };
        let monitor = connect_monitor(monitor, monitor_url).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS killed FROM \
               (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k",
        )
        .bind(application_name)
        .fetch_one(&mut *monitor)
        .await
        .map_err(|e| DbError::sqlx(HOLDER, e))?;
        let killed: i64 = row
            .try_get("killed")
            .map_err(|e| DbError::sqlx(HOLDER, e))?;
        Ok(u32::try_from(killed).unwrap_or(u32::MAX))
    }

    /// Closes the probe's own connection; for SQLite, before counting descriptors at close.
    pub(crate) async fn shut(&mut self) {
        let connection = match self {
            Probe::Postgres { monitor, .. } => monitor.take().map(|c| c.close()),
            Probe::Sqlite { probe, .. } => {
                if let Some(p) = probe.take() {
                    let _ = p.close().await;
                }
                None
            }
        };
        if let Some(close) = connection {
            let _ = close.await;
        }
    }
}

/// The monitor connection, opened on first use (outside the pool, under its own name).
async fn connect_monitor<'m>(
    monitor: &'m mut Option<AnyConnection>,
    url: &str,
) -> Result<&'m mut AnyConnection, DbError> {
    if monitor.is_none() {
        let conn = AnyConnection::connect(url)
            .await
            .map_err(|e| DbError::sqlx(HOLDER, e))?;
        *monitor = Some(conn);
    }
    monitor
        .as_mut()
        .ok_or(DbError::Inconsistent("the monitor connection vanished"))
}

/// Descriptors this process holds on `path`, per `/proc/self/fd` (Linux). Elsewhere: 0, and the
/// SQLite server view rests on the write-lock probe alone.
pub(crate) fn open_descriptors(path: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let count = entries
        .filter_map(Result::ok)
        .filter(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target == path))
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}
