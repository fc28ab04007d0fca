//! Per-thread shards, for the state every checkout and release changes (the ledger's
//! holdings, the handoff's parked connections). With one lock for the pool, two cores taking
//! it per checkout and per release spent most of a bare cycle passing its cache line between
//! them (benches/pool.rs: two tasks did 0.3 to 0.75 of one task's rate, depending on how far
//! apart the host put the two vCPUs); a thread's own shard stays in its own cache.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards per structure. Threads take them in turn as they first ask, so the first 16 (a
/// runtime's workers, here) each have their own; later ones share. At most half of
/// `usize::BITS`: the handoff keeps two flags per shard in one word.
pub(crate) const SHARDS: usize = 16;

const _: () = assert!(2 * SHARDS <= usize::BITS as usize);

/// The current thread's shard.
pub(crate) fn home() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    HOME.with(|home| *home)
}
