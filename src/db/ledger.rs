//! The ledger: every session and transaction guard counts itself in when created and out when
//! dropped, on every path (return, `?`, panic unwind, a cancelled future). It names the holder
//! of each open session, so a leak report says who leaked, as HikariCP's leak detection does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardKind {
    Session,
    Transaction,
}

/// One open session, as the ledger saw it begin.
#[derive(Debug, Clone)]
pub struct Holding {
    pub id: u64,
    /// The operation that opened it, like `registry.publish`.
    pub holder: &'static str,
    pub kind: GuardKind,
    pub since: Instant,
}

/// A snapshot of the ledger.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    pub open: usize,
    pub opened_total: u64,
    pub closed_total: u64,
    pub peak: usize,
    pub holders: Vec<Holding>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    open: BTreeMap<u64, Holding>,
    closed_total: u64,
    peak: usize,
}

#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` inconsistent: every mutation is
        // a single insert or remove. Keep counting after a poison.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn open(self: &Arc<Self>, holder: &'static str, kind: GuardKind) -> Ticket {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.open.insert(
            id,
            Holding {
                id,
                holder,
                kind,
                since: Instant::now(),
            },
        );
        state.peak = state.peak.max(state.open.len());
        Ticket {
            ledger: Arc::clone(self),
            id,
        }
    }

    fn close(&self, id: u64) {
        let mut state = self.state();
        let removed = state.open.remove(&id);
        assert!(removed.is_some(), "ledger ticket {id} closed twice");
        state.closed_total += 1;
    }

    pub fn view(&self) -> LedgerView {
        let state = self.state();
        LedgerView {
            open: state.open.len(),
            opened_total: state.next_id,
            closed_total: state.closed_total,
            peak: state.peak,
            holders: state.open.values().cloned().collect(),
        }
    }

    /// Resets the high-water mark, so a harness can measure the peak of one phase.
    pub fn reset_peak(&self) {
        let mut state = self.state();
        state.peak = state.open.len();
    }
}

/// The ledger's half of a guard: counted out when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    ledger: Arc<Ledger>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.ledger.close(self.id);
    }
}

impl Holding {
    pub fn held_for(&self) -> Duration {
        self.since.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_in_and_out_and_name_their_holder() {
        let ledger = Arc::new(Ledger::default());
        let a = ledger.open("op.a", GuardKind::Session);
        let b = ledger.open("op.b", GuardKind::Transaction);
        let view = ledger.view();
        assert_eq!((view.open, view.peak), (2, 2));
        assert_eq!(view.holders[1].holder, "op.b");
        std::thread::sleep(Duration::from_millis(2));
        assert!(view.holders[0].held_for() >= Duration::from_millis(2));
        drop(a);
        ledger.reset_peak();
        assert_eq!(
            ledger.view().peak,
            1,
            "the peak starts again from what is open"
        );
        drop(b);
        let view = ledger.view();
        assert_eq!((view.open, view.opened_total, view.closed_total), (0, 2, 2));
    }

    #[test]
    fn a_forgotten_ticket_stays_open() {
        let ledger = Arc::new(Ledger::default());
        std::mem::forget(ledger.open("op.leaky", GuardKind::Session));
        let view = ledger.view();
        assert_eq!(view.open, 1);
        assert_eq!(view.holders[0].holder, "op.leaky");
    }
}
