//! Connections handed from one operation straight to the next, skipping sqlx's release.
//!
//! sqlx 0.9 pings every connection it gets back (`Floating::return_to_pool`), and no option
//! turns that off: an operation of one statement paid two round trips, and on PostgreSQL the
//! pool reached about 0.6 of what the same connections did held directly (benches/ops.rs).
//! So a guard that ends cleanly gives its connection to the longest-waiting checkout, or, if
//! none waits, parks it for the next checkout.
//!
//! This never hides a session, because of two rules kept under one lock:
//! - A connection is parked only while another claim is live, or for at most [`LINGER`] after
//!   the last claim ended: that claim schedules a sweep, which sends every parked connection
//!   back to sqlx unless a claim is live again (whose end schedules the next). With no
//!   operation running nothing stays parked, so quiescence and `close` see what they would
//!   without this module, `LINGER` later (at once when they ask: `release_idle`). A sweep
//!   that never gets to run (no runtime, or one shutting down) sweeps when it is dropped.
//! - Nothing is parked while a checkout waits: it gets the connection.
//!
//! A waiting checkout also waits on sqlx's pool (for a new connection, or one a guard could
//! not hand over), whichever comes first. Only a clean connection is handed over: no statement
//! in flight, no transaction open, no error seen. Anything else takes sqlx's path (its ping, or
//! a close), as before.

use sqlx::any::Any;
use sqlx::pool::PoolConnection;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

type Conn = PoolConnection<Any>;

/// How long the last operation's connection waits, parked, for the next checkout. Back-to-back
/// operations from one caller then skip sqlx's release ping and acquire between them, as
/// concurrent ones do; one that comes later finds it back in sqlx's pool. A millisecond is
/// tokio's timer tick: long enough for a caller's next operation, short enough that settling
/// at quiescence (which polls the views) does not notice.
pub(crate) const LINGER: Duration = Duration::from_millis(1);

/// The parked connections of one `Db`, and who may still want one.
#[derive(Debug)]
pub(crate) struct Handoff {
    state: Mutex<State>,
    /// The pool's size: more can never be parked.
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    parked: Vec<Conn>,
    /// Live claims: guards holding a connection and checkouts getting one.
    claims: usize,
    /// Checkouts waiting, oldest first; each also waits on sqlx's pool. An entry whose
    /// checkout is gone (it got a pooled connection, or was cancelled) is closed; hand-overs
    /// skip those, and a claim's end clears them once they would outnumber the claims, so
    /// there are never more entries than claims and no step walks them all per checkout.
    waiters: VecDeque<oneshot::Sender<Conn>>,
    /// A sweep is scheduled: what is parked may outlive the last claim until it runs.
    sweep_due: bool,
}

impl State {
    fn check(&self, capacity: usize) {
        assert!(
            self.parked.len() <= capacity,
            "more parked than the pool holds"
        );
        assert!(
            self.waiters.len() <= self.claims,
            "more waiters than claims"
        );
        assert!(
            self.claims > 0 || self.parked.is_empty() || self.sweep_due,
            "parked with no claim live and no sweep due"
        );
        assert!(
            self.parked.is_empty() || self.waiters.iter().all(|w| w.is_closed()),
            "parked while a checkout waits"
        );
    }

    /// Gives `conn` to the oldest waiter still waiting; back if there is none.
    fn hand_over(&mut self, mut conn: Conn) -> Option<Conn> {
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(conn) {
                Ok(()) => return None,
                Err(unsent) => conn = unsent,
            }
        }
        Some(conn)
    }
}

impl Handoff {
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            state: Mutex::default(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
        }
    }

    /// A claim for one guard's connection, held for the guard's whole life.
    pub(crate) fn claim(self: &Arc<Self>) -> Claim {
        self.lock().claims += 1;
        Claim {
            handoff: Arc::clone(self),
            live: true,
        }
    }

    /// Ends the linger at once: with no claim live, every parked connection goes back to sqlx
    /// now rather than at the sweep. `Db::quiesce` and `Db::close` ask for this: nothing runs,
    /// so nothing should wait for a next checkout, and the views should not wait for the sweep.
    pub(crate) fn release_idle(&self) {
        self.release(false);
    }

    /// With no claim live, every parked connection goes back to sqlx; with one, they stay
    /// parked under the first rule. `sweep_ran`: the due sweep is this, so none is due after.
    fn release(&self, sweep_ran: bool) {
        let released = {
            let mut state = self.lock();
            state.sweep_due &= !sweep_ran;
            let released = match state.claims {
                0 => std::mem::take(&mut state.parked),
                _ => Vec::new(),
            };
            state.check(self.capacity);
            released
        };
        // Dropped outside the lock: each drop spawns sqlx's return-to-pool task.
        drop(released);
    }

    /// The state is only ever changed in a few lines that cannot panic, so a poisoned lock
    /// still holds consistent counts.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A waiting checkout's place among the waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Behind those already waiting.
    Queue,
    /// Ahead of them: the SQLite writer whose turn it is, which every other writer waits for.
    First,
}

/// Where a checkout's connection comes from.
pub(crate) enum Source {
    /// A parked one, or one idle in sqlx's pool: no wait.
    Ready(Conn),
    /// None ready: wait for a guard's hand-over (or on sqlx's pool, whichever is first).
    HandedOver(oneshot::Receiver<Conn>),
}

/// One guard's place among the claims. Dropping it without [`Claim::end`] ends it with no
/// connection to give (a cancelled checkout, a guard whose connection went elsewhere).
#[derive(Debug)]
pub(crate) struct Claim {
    handoff: Arc<Handoff>,
    live: bool,
}

impl Claim {
    /// A parked connection, else one `idle` gives (sqlx's idle queue, taken without waiting,
    /// which sqlx grants only when none of its own waiters is queued), else a place among the
    /// waiters. One lock: nothing can be parked between the look and the wait.
    pub(crate) fn source(&mut self, turn: Turn, idle: impl FnOnce() -> Option<Conn>) -> Source {
        let mut state = self.handoff.lock();
        let source = match state.parked.pop().or_else(idle) {
            Some(conn) => Source::Ready(conn),
            None => {
                let (sender, receiver) = oneshot::channel();
                // A retried checkout (its connection was dead) left its first entry behind.
                if state.waiters.len() >= state.claims {
                    state.waiters.retain(|w| !w.is_closed());
                }
                match turn {
                    Turn::Queue => state.waiters.push_back(sender),
                    Turn::First => state.waiters.push_front(sender),
                }
                Source::HandedOver(receiver)
            }
        };
        state.check(self.handoff.capacity);
        source
    }

    /// Ends the claim. A clean connection goes to a waiter, else is parked; if this was the
    /// last claim, a sweep sends what is parked back to sqlx after [`LINGER`]. Anything else
    /// goes back to sqlx at once.
    pub(crate) fn end(&mut self, conn: Option<Conn>, clean: bool) {
        assert!(self.live, "a claim ended twice");
        self.live = false;
        // Nothing here allocates on the way through: a hand-over or a park moves one
        // connection, and only the last claim of a busy spell schedules a sweep.
        let (unclean, sweep) = {
            let mut state = self.handoff.lock();
            state.claims -= 1;
            if state.waiters.len() > state.claims {
                state.waiters.retain(|w| !w.is_closed());
            }
            let unclean = match conn {
                Some(conn) if clean => {
                    if let Some(conn) = state.hand_over(conn) {
                        state.parked.push(conn);
                    }
                    None
                }
                unclean => unclean,
            };
            let sweep = state.claims == 0 && !state.parked.is_empty() && !state.sweep_due;
            state.sweep_due |= sweep;
            state.check(self.handoff.capacity);
            (unclean, sweep)
        };
        // Dropped outside the lock: each drop spawns sqlx's return-to-pool task.
        drop(unclean);
        if sweep {
            Sweep(Arc::clone(&self.handoff)).after(LINGER);
        }
    }
}

/// A scheduled sweep of one `Handoff`. It sweeps when dropped, so a sweep whose task never
/// runs (spawned onto a runtime shutting down, or with no runtime at all) still sweeps.
struct Sweep(Arc<Handoff>);

impl Sweep {
    fn after(self, linger: Duration) {
        // Spawned outside the handoff's lock: a runtime that refuses the task drops it, and
        // with it this sweep, at once.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(linger).await;
                drop(self);
            });
        }
    }
}

impl Drop for Sweep {
    /// Sends every parked connection back to sqlx, unless a claim is live again: then they
    /// stay parked under the first rule, and the last claim to end schedules the next sweep.
    fn drop(&mut self) {
        self.0.release(true);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.live {
            self.end(None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::scratch::Scratch;

    fn parked(handoff: &Handoff) -> usize {
        handoff.lock().parked.len()
    }

    /// On a current-thread runtime a spawned sweep runs only when the test awaits, so each
    /// step below sees the state the rules leave, not a race with the sweep.
    #[tokio::test(flavor = "current_thread")]
    async fn what_is_parked_goes_back_at_the_sweep_or_at_release_idle_only_with_no_claim_live() {
        sqlx::any::install_default_drivers();
        let scratch = Scratch::sqlite().unwrap();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&format!("{}?mode=rwc", scratch.url))
            .await
            .unwrap();
        let handoff = Arc::new(Handoff::new(2));

        let mut first = handoff.claim();
        let beside = handoff.claim();
        first.end(Some(pool.acquire().await.unwrap()), true);
        assert_eq!(parked(&handoff), 1, "parked while another claim is live");
        handoff.release_idle();
        assert_eq!(parked(&handoff), 1, "a live claim may still take it");
        drop(beside);
        assert_eq!(parked(&handoff), 1, "the last claim schedules a sweep");
        assert!(handoff.lock().sweep_due);
        handoff.release_idle();
        assert_eq!(parked(&handoff), 0, "no claim live: back to sqlx at once");

        let mut last = handoff.claim();
        last.end(Some(pool.acquire().await.unwrap()), true);
        assert_eq!(parked(&handoff), 1);
        tokio::time::sleep(LINGER * 5).await;
        assert_eq!(parked(&handoff), 0, "the sweep sent it back");
        assert!(!handoff.lock().sweep_due);

        let mut unclean = handoff.claim();
        unclean.end(Some(pool.acquire().await.unwrap()), false);
        assert_eq!(parked(&handoff), 0, "an unclean connection is never parked");

        pool.close().await;
        scratch.remove().await.unwrap();
    }
}
