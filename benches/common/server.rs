//! CPU the PostgreSQL server's processes spend on one pool's connections, per operation
//! (Linux `/proc/<pid>/schedstat`, so only for a server on this machine).
//!
//! On `SELECT 1` with one connection the server's process bounds the rate. Its time per query
//! moved from 43 to 98 µs between half-second runs, and by 9-15% within a sweep with the
//! client's task count (CONTRIBUTING, "PostgreSQL's `SELECT 1` on a pool of one"). A sweep's
//! figure that came with a slower server says so beside it.

use leakproof::db::{Backend, Db, sql};
use sqlx::Row;
use std::fs;

/// The pool's server processes, as last listed.
pub struct ServerCpu {
    db: Db,
    pids: Vec<i32>,
}

/// More backends than any pool here holds (8 at most): a bound on the files read per slice.
const MAX_BACKENDS: usize = 16;

impl ServerCpu {
    /// `None` on SQLite, which has no server.
    pub fn of(db: &Db) -> Option<ServerCpu> {
        (db.backend() == Backend::Postgres).then(|| ServerCpu {
            db: db.clone(),
            pids: Vec::new(),
        })
    }

    /// Lists the pool's backends again (a pool opens connections as it needs them), by its
    /// unique `application_name`; through the pool itself, outside any timed slice. A listing
    /// that fails leaves none listed: nothing is read until the next.
    pub async fn refresh(&mut self) {
        self.pids = match self.list().await {
            Ok(mut pids) => {
                pids.truncate(MAX_BACKENDS);
                pids
            }
            Err(e) => {
                eprintln!("server CPU: could not list the pool's backends: {e}");
                Vec::new()
            }
        };
    }

    async fn list(&self) -> Result<Vec<i32>, Box<dyn std::error::Error>> {
        let mut session = self.db.session("bench.server_cpu").await?;
        let rows = session
            .fetch_all(
                sql("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
                    .bind(self.db.application_name().to_owned()),
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<i32, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// Nanoseconds the listed backends have run, in all; `None` if there are none or one
    /// cannot be read (a remote server, or a backend gone since the listing).
    pub fn ran_ns(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().try_fold(0u64, |sum, pid| {
            let schedstat = fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
            Some(sum + run_ns(&schedstat)?)
        })
    }
}

/// `/proc/<pid>/schedstat`: time on the CPU (ns), time waiting to run, timeslices.
pub fn run_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}
