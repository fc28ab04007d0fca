//! Connections handed from one operation straight to the next, skipping sqlx's release.
//!
//! sqlx 0.9 pings every connection it gets back (`Floating::return_to_pool`), and no option
//! turns that off: an operation of one statement paid two round trips, and on PostgreSQL the
//! pool reached about 0.6 of what the same connections did held directly (benches/ops.rs).
//! So a guard that ends cleanly, while other operations are still running, parks its
//! connection here instead, and the next checkout takes it without a round trip.
//!
//! Parking never hides a session, because of two rules kept under one lock:
//! - Only while another claim is live: the last claim to end sends every parked connection
//!   back to sqlx. With no operation running nothing is parked, so quiescence and `close` see
//!   exactly what they saw without this module.
//! - Never while a checkout waits on sqlx's pool: that connection goes back to sqlx, which hands
//!   it to the waiter. A parked connection can never starve a caller.
//!
//! Only a clean connection is parked: no statement in flight, no transaction open, no error
//! seen. Anything else takes sqlx's path (ping, or close), as before.

use sqlx::any::Any;
use sqlx::pool::PoolConnection;
use std::sync::{Arc, Mutex, MutexGuard};

/// The parked connections of one `Db`, and who may still want one.
#[derive(Debug)]
pub(crate) struct Handoff {
    state: Mutex<State>,
    /// The pool's size: more can never be parked.
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    parked: Vec<PoolConnection<Any>>,
    /// Live claims: guards holding a connection and checkouts getting one.
    claims: usize,
    /// Claims waiting on sqlx's pool. While any waits, nothing is parked.
    waiting: usize,
}

impl State {
    fn check(&self, capacity: usize) {
        assert!(
            self.parked.len() <= capacity,
            "more parked than the pool holds"
        );
        assert!(self.waiting <= self.claims, "a waiter without a claim");
        assert!(
            self.claims > 0 || self.parked.is_empty(),
            "parked with no claim live"
        );
        assert!(
            self.waiting == 0 || self.parked.is_empty(),
            "parked while a checkout waits"
        );
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
            waiting: false,
            live: true,
        }
    }

    /// The state is only ever changed in a few lines that cannot panic, so a poisoned lock
    /// still holds consistent counts.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One guard's place among the claims. Dropping it without [`Claim::end`] ends it with no
/// connection to park (a cancelled checkout, a guard whose connection went elsewhere).
#[derive(Debug)]
pub(crate) struct Claim {
    handoff: Arc<Handoff>,
    waiting: bool,
    live: bool,
}

impl Claim {
    /// A parked connection, or `None`: then the claim counts as waiting on sqlx's pool until
    /// [`Claim::acquired`] (or its drop).
    pub(crate) fn take_parked(&mut self) -> Option<PoolConnection<Any>> {
        let mut state = self.handoff.lock();
        let conn = state.parked.pop();
        if conn.is_none() && !self.waiting {
            state.waiting += 1;
            self.waiting = true;
        }
        state.check(self.handoff.capacity);
        conn
    }

    /// The wait on sqlx's pool is over, whatever its outcome.
    pub(crate) fn acquired(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.handoff.lock().waiting -= 1;
        }
    }

    /// Ends the claim. A clean connection is parked if another claim is live and none waits;
    /// otherwise it, and if this was the last claim every parked one, goes back to sqlx.
    pub(crate) fn end(&mut self, conn: Option<PoolConnection<Any>>, clean: bool) {
        assert!(self.live, "a claim ended twice");
        self.live = false;
        let mut back_to_sqlx = Vec::new();
        {
            let mut state = self.handoff.lock();
            if std::mem::take(&mut self.waiting) {
                state.waiting -= 1;
            }
            state.claims -= 1;
            match conn {
                Some(conn) if clean && state.claims > 0 && state.waiting == 0 => {
                    state.parked.push(conn)
                }
                Some(conn) => back_to_sqlx.push(conn),
                None => {}
            }
            if state.claims == 0 {
                back_to_sqlx.append(&mut state.parked);
            }
            state.check(self.handoff.capacity);
        }
        // Dropped outside the lock: each drop spawns sqlx's return-to-pool task.
        drop(back_to_sqlx);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.live {
            self.end(None, false);
        }
    }
}
