//! Three independent views of open sessions. Each can catch what another misses:
//! the ledger sees a guard that was forgotten (`mem::forget`) before sqlx ever knew; the pool
//! sees a connection that never came back; the server sees a transaction left open and a
//! connection that outlived its pool.

use super::ledger::LedgerView;
use std::fmt;
use std::time::Duration;

/// sqlx's own count: connections it created and has not got back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolView {
    pub size: u32,
    pub idle: u32,
}

impl PoolView {
    pub fn checked_out(&self) -> u32 {
        self.size.saturating_sub(self.idle)
    }

    /// sqlx 0.9 counts a released connection idle only after it is back in the queue, so a
    /// checkout that takes it at once can make the count wrap below zero for a moment (seen
    /// as `idle` = `u32::MAX`). Such a torn reading says nothing; look again.
    pub fn is_consistent(&self) -> bool {
        self.idle <= self.size
    }
}

/// What the database server (or, for SQLite, the operating system) sees of this `Db`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerView {
    /// PostgreSQL: backends with this pool's `application_name`.
    /// SQLite: file descriptors this process holds on the database file (one per connection;
    /// SQLite may keep a closed connection's descriptor until no lock remains in the process).
    pub connections: u32,
    /// PostgreSQL: backends running a statement. SQLite: not observable, always 0.
    pub active: u32,
    /// PostgreSQL: backends `idle in transaction` (or aborted). SQLite: 1 if a `BEGIN IMMEDIATE`
    /// probe finds the write lock taken.
    pub in_transaction: u32,
}

/// The three views, taken together.
#[derive(Debug, Clone, Default)]
pub struct SessionViews {
    pub ledger: LedgerView,
    pub pool: PoolView,
    pub server: ServerView,
}

impl SessionViews {
    /// No session open by any view: what must hold whenever no operation runs.
    /// Connections idle in the pool are not sessions. A server backend the pool does not count
    /// is one (it outlived its pool); the reverse is not: a backend the server killed stays in
    /// the pool's count until sqlx next touches it. SQLite's descriptors bound connections only
    /// from above, so there `counts_connections` is false and only the probe counts.
    pub fn is_quiescent(&self, counts_connections: bool) -> bool {
        let no_stray_connection = !counts_connections || self.server.connections <= self.pool.size;
        self.ledger.open == 0
            && self.pool.is_consistent()
            && self.pool.checked_out() == 0
            && self.server.active == 0
            && self.server.in_transaction == 0
            && no_stray_connection
    }

    /// Nothing left at all: what must hold after `Db::close`.
    pub fn is_closed(&self) -> bool {
        self.ledger.open == 0 && self.pool.size == 0 && self.server.connections == 0
    }
}

impl fmt::Display for SessionViews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ledger {} open; pool {} checked out of {}; server {} connections, {} active, {} in transaction",
            self.ledger.open,
            self.pool.checked_out(),
            self.pool.size,
            self.server.connections,
            self.server.active,
            self.server.in_transaction
        )
    }
}

/// Sessions still open after a bounded wait, with the ledger's word on who holds them.
#[derive(Debug, Clone)]
pub struct LeakReport {
    /// What the wait was for: `quiescence` between operations, or `close`.
    pub waiting_for: &'static str,
    pub waited: Duration,
    pub views: SessionViews,
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "session leak: no {} after {:?} ({})",
            self.waiting_for, self.waited, self.views
        )?;
        for h in &self.views.ledger.holders {
            write!(
                f,
                "; held by {} ({:?} #{}, for {:?})",
                h.holder,
                h.kind,
                h.id,
                h.held_for()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for LeakReport {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ledger::{GuardKind, Holding};
    use std::time::Instant;

    fn quiet() -> SessionViews {
        SessionViews {
            pool: PoolView { size: 2, idle: 2 },
            server: ServerView {
                connections: 2,
                ..ServerView::default()
            },
            ..SessionViews::default()
        }
    }

    /// Every clause of the quiescence check fails on its own seeded violation.
    #[test]
    fn each_view_alone_breaks_quiescence() {
        assert!(quiet().is_quiescent(true));
        let mut ledger = quiet();
        ledger.ledger.open = 1;
        ledger.ledger.holders.push(Holding {
            id: 7,
            holder: "op.x",
            kind: GuardKind::Session,
            since: Instant::now(),
        });
        let mut pool = quiet();
        pool.pool.idle = 1;
        let mut torn = quiet();
        torn.pool.idle = u32::MAX;
        let mut active = quiet();
        active.server.active = 1;
        let mut in_tx = quiet();
        in_tx.server.in_transaction = 1;
        let mut stray = quiet();
        stray.server.connections = 3;
        let mut killed = quiet();
        killed.server.connections = 1;
        for (name, views) in [
            ("ledger", &ledger),
            ("pool", &pool),
            ("a torn idle count", &torn),
            ("active", &active),
            ("in_tx", &in_tx),
        ] {
            assert!(!views.is_quiescent(true), "{name}");
            assert!(!views.is_quiescent(false), "{name}");
        }
        assert!(!stray.is_quiescent(true), "a backend outside the pool");
        assert!(killed.is_quiescent(true), "a killed backend is not a leak");
        let report = LeakReport {
            waiting_for: "quiescence",
            waited: Duration::from_millis(5),
            views: ledger,
        };
        assert!(report.to_string().contains("held by op.x (Session #7"));
    }

    #[test]
    fn closed_means_nothing_anywhere() {
        assert!(SessionViews::default().is_closed());
        assert!(!quiet().is_closed());
        let mut server_only = SessionViews::default();
        server_only.server.connections = 1;
        assert!(!server_only.is_closed());
    }
}
