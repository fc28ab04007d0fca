//! The ledger: every session and transaction guard counts itself in when created and out when
//! dropped, on every path (return, `?`, panic unwind, a cancelled future). It names the holder
//! of each open session, so a leak report says who leaked, as HikariCP's leak detection does.

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

/// Open holdings live in slots reused as they close: opening and closing a session touch one
/// slot and allocate nothing once the ledger has seen its peak (at most the pool's size, since a
/// guard is counted only once it holds a connection).
#[derive(Debug, Default)]
struct State {
    next_id: u64,
    slots: Vec<Option<Holding>>,
    free: Vec<usize>,
    open: usize,
    closed_total: u64,
    peak: usize,
}

#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` inconsistent: every mutation
        // completes before anything that can panic. Keep counting after a poison.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn open(self: &Arc<Self>, holder: &'static str, kind: GuardKind) -> Ticket {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let holding = Holding {
            id,
            holder,
            kind,
            since: Instant::now(),
        };
        let slot = match state.free.pop() {
            Some(slot) => {
                assert!(
                    state.slots[slot].is_none(),
                    "ledger slot {slot} reused while open"
                );
                state.slots[slot] = Some(holding);
                slot
            }
            None => {
                state.slots.push(Some(holding));
                state.slots.len() - 1
            }
        };
        state.open += 1;
        state.peak = state.peak.max(state.open);
        Ticket {
            ledger: Arc::clone(self),
            slot,
            id,
        }
    }

    fn close(&self, slot: usize, id: u64) {
        let mut state = self.state();
        let closed = state.slots[slot].take();
        assert!(
            closed.as_ref().is_some_and(|h| h.id == id),
            "ledger ticket {id} closed twice"
        );
        state.free.push(slot);
        state.open -= 1;
        state.closed_total += 1;
    }

    pub fn view(&self) -> LedgerView {
        let state = self.state();
        let mut holders: Vec<Holding> = state.slots.iter().flatten().cloned().collect();
        holders.sort_by_key(|h| h.id);
        assert_eq!(
            holders.len(),
            state.open,
            "ledger slots disagree with its count"
        );
        LedgerView {
            open: state.open,
            opened_total: state.next_id,
            closed_total: state.closed_total,
            peak: state.peak,
            holders,
        }
    }

    /// Resets the high-water mark, so a harness can measure the peak of one phase.
    pub fn reset_peak(&self) {
        let mut state = self.state();
        state.peak = state.open;
    }
}

/// The ledger's half of a guard: counted out when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    ledger: Arc<Ledger>,
    slot: usize,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.ledger.close(self.slot, self.id);
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
    fn a_reused_slot_keeps_holders_in_opening_order_and_the_ledger_at_its_peak() {
        let ledger = Arc::new(Ledger::default());
        let a = ledger.open("op.a", GuardKind::Session);
        let b = ledger.open("op.b", GuardKind::Session);
        drop(a);
        let c = ledger.open("op.c", GuardKind::Session);
        let names: Vec<_> = ledger.view().holders.iter().map(|h| h.holder).collect();
        assert_eq!(names, ["op.b", "op.c"], "c took a's slot but opened last");
        for _ in 0..100 {
            drop(ledger.open("op.cycle", GuardKind::Transaction));
        }
        assert_eq!(ledger.state().slots.len(), 3, "closed slots are reused");
        drop((b, c));
        let view = ledger.view();
        assert_eq!(
            (view.open, view.opened_total, view.closed_total),
            (0, 103, 103)
        );
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
