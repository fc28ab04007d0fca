//! The ledger: every session and transaction guard counts itself in when created and out when
//! dropped, on every path (return, `?`, panic unwind, a cancelled future). It names the holder
//! of each open session, so a leak report says who leaked, as HikariCP's leak detection does.

use super::shard::{self, SHARDS};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
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
    /// The most open at once since [`Ledger::reset_peak`]; `None` if it was never called.
    pub peak: Option<usize>,
    pub holders: Vec<Holding>,
}

/// One shard's holdings, in slots reused as they close: opening and closing a session touch one
/// slot and allocate nothing once the shard has seen its peak.
#[derive(Debug, Default)]
struct Shard {
    /// Tickets this shard has issued; a ticket's id is `issued * SHARDS + shard`, so ids are
    /// unique across shards.
    issued: u64,
    slots: Vec<Option<Holding>>,
    free: Vec<usize>,
    /// Slots that hold a session.
    open: usize,
    closed_total: u64,
}

/// Sharded by thread (`shard.rs`): a guard counts itself in and out on the shard of the thread
/// that opened it, so two cores checking out at once do not queue on one lock (on the pool's
/// bare cycle at two tasks, the one lock was a fifth of the time; benches/pool.rs).
#[derive(Debug)]
pub struct Ledger {
    /// Each alone on its cache lines: two shards never share one.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// The peak is counted: set by `reset_peak` with every shard locked, so every open and
    /// close after it (each under its shard's lock) sees it. Until then a checkout writes no
    /// line another thread's checkouts write: one total for every shard, written per checkout
    /// and per release, was the last line two cores passed between them on the bare cycle.
    counting: AtomicBool,
    /// While counting: open across all shards, changed under the shard's lock, so while every
    /// shard is locked (`view`) it equals the sum of theirs.
    total: CachePadded<AtomicUsize>,
    peak: CachePadded<AtomicUsize>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
            counting: AtomicBool::new(false),
            total: CachePadded::new(AtomicUsize::new(0)),
            peak: CachePadded::new(AtomicUsize::new(0)),
        }
    }
}

impl Ledger {
    fn shard(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding this lock cannot leave a shard inconsistent: every mutation
        // completes before anything that can panic. Keep counting after a poison.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every shard, locked in order: nothing opens or closes until they are dropped.
    fn all_shards(&self) -> Vec<MutexGuard<'_, Shard>> {
        (0..self.shards.len()).map(|i| self.shard(i)).collect()
    }

    pub(crate) fn open(&self, holder: &'static str, kind: GuardKind) -> Ticket<'_> {
        let shard_index = shard::home();
        let mut shard = self.shard(shard_index);
        let id = shard.issued * SHARDS as u64 + shard_index as u64;
        shard.issued += 1;
        let holding = Holding {
            id,
            holder,
            kind,
            since: Instant::now(),
        };
        let slot = match shard.free.pop() {
            Some(slot) => {
                assert!(
                    shard.slots[slot].is_none(),
                    "ledger slot {slot} reused while open"
                );
                shard.slots[slot] = Some(holding);
                slot
            }
            None => {
                shard.slots.push(Some(holding));
                shard.slots.len() - 1
            }
        };
        shard.open += 1;
        if self.counting.load(Ordering::Relaxed) {
            let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
            if total > self.peak.load(Ordering::Relaxed) {
                self.peak.fetch_max(total, Ordering::Relaxed);
            }
        }
        Ticket {
            ledger: self,
            shard: shard_index,
            slot,
            id,
        }
    }

    fn close(&self, shard_index: usize, slot: usize, id: u64) {
        let mut shard = self.shard(shard_index);
        let closed = shard.slots[slot].take();
        assert!(
            closed.as_ref().is_some_and(|h| h.id == id),
            "ledger ticket {id} closed twice"
        );
        shard.free.push(slot);
        shard.open -= 1;
        shard.closed_total += 1;
        if self.counting.load(Ordering::Relaxed) {
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn view(&self) -> LedgerView {
        let shards = self.all_shards();
        let mut holders: Vec<Holding> = shards
            .iter()
            .flat_map(|shard| shard.slots.iter().flatten().cloned())
            .collect();
        holders.sort_by_key(|h| (h.since, h.id));
        let open = shards.iter().map(|shard| shard.open).sum();
        assert_eq!(
            holders.len(),
            open,
            "ledger slots disagree with their counts"
        );
        let counting = self.counting.load(Ordering::Relaxed);
        if counting {
            assert_eq!(
                self.total.load(Ordering::Relaxed),
                open,
                "ledger total disagrees with its shards"
            );
        }
        LedgerView {
            open,
            opened_total: shards.iter().map(|shard| shard.issued).sum(),
            closed_total: shards.iter().map(|shard| shard.closed_total).sum(),
            peak: counting.then(|| self.peak.load(Ordering::Relaxed)),
            holders,
        }
    }

    /// Starts the high-water mark again from what is open now, so a harness can measure the
    /// peak of one phase; the first call starts counting it.
    pub fn reset_peak(&self) {
        let shards = self.all_shards();
        let open = shards.iter().map(|shard| shard.open).sum();
        self.total.store(open, Ordering::Relaxed);
        self.peak.store(open, Ordering::Relaxed);
        self.counting.store(true, Ordering::Relaxed);
    }
}

/// The ledger's half of a guard: counted out when dropped.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    ledger: &'a Ledger,
    shard: usize,
    slot: usize,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.ledger.close(self.shard, self.slot, self.id);
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
        let ledger = Ledger::default();
        let uncounted = ledger.open("op.before", GuardKind::Session);
        assert_eq!(ledger.view().peak, None, "not counted until asked");
        ledger.reset_peak();
        drop(uncounted);
        let a = ledger.open("op.a", GuardKind::Session);
        let b = ledger.open("op.b", GuardKind::Transaction);
        let view = ledger.view();
        assert_eq!((view.open, view.peak), (2, Some(2)));
        assert_eq!(view.holders[1].holder, "op.b");
        std::thread::sleep(Duration::from_millis(2));
        assert!(view.holders[0].held_for() >= Duration::from_millis(2));
        drop(a);
        ledger.reset_peak();
        assert_eq!(
            ledger.view().peak,
            Some(1),
            "the peak starts again from what is open"
        );
        drop(b);
        let view = ledger.view();
        assert_eq!((view.open, view.opened_total, view.closed_total), (0, 3, 3));
    }

    #[test]
    fn a_reused_slot_keeps_holders_in_opening_order_and_the_ledger_at_its_peak() {
        let ledger = Ledger::default();
        let a = ledger.open("op.a", GuardKind::Session);
        let b = ledger.open("op.b", GuardKind::Session);
        drop(a);
        let c = ledger.open("op.c", GuardKind::Session);
        let names: Vec<_> = ledger.view().holders.iter().map(|h| h.holder).collect();
        assert_eq!(names, ["op.b", "op.c"], "c took a's slot but opened last");
        for _ in 0..100 {
            drop(ledger.open("op.cycle", GuardKind::Transaction));
        }
        assert_eq!(
            ledger.shard(shard::home()).slots.len(),
            3,
            "closed slots are reused"
        );
        drop((b, c));
        let view = ledger.view();
        assert_eq!(
            (view.open, view.opened_total, view.closed_total),
            (0, 103, 103)
        );
    }

    #[test]
    fn tickets_opened_on_other_threads_are_counted_together_and_close_anywhere() {
        let ledger = Ledger::default();
        ledger.reset_peak();
        let ledger = &ledger;
        let tickets: Vec<Ticket> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(move || {
                        (0..3)
                            .map(|_| ledger.open("op.thread", GuardKind::Session))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("a ledger thread panicked"))
                .collect()
        });
        // Threads take the shards in turn; tests running beside this one take turns too, so
        // only "not all on one shard" is certain.
        let shards: std::collections::HashSet<usize> = tickets.iter().map(|t| t.shard).collect();
        assert!(shards.len() > 1, "four threads counted on one shard");
        let view = ledger.view();
        assert_eq!(
            (view.open, view.peak, view.holders.len()),
            (12, Some(12), 12)
        );
        let mut ids: Vec<u64> = view.holders.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 12, "ids are unique across shards");
        drop(tickets);
        let view = ledger.view();
        assert_eq!(
            (view.open, view.peak, view.opened_total, view.closed_total),
            (0, Some(12), 12, 12)
        );
    }

    #[test]
    fn a_forgotten_ticket_stays_open() {
        let ledger = Ledger::default();
        std::mem::forget(ledger.open("op.leaky", GuardKind::Session));
        let view = ledger.view();
        assert_eq!(view.open, 1);
        assert_eq!(view.holders[0].holder, "op.leaky");
    }
}
