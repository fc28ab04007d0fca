//! Connections handed from one operation straight to the next, skipping sqlx's release.
//!
//! sqlx 0.9 pings every connection it gets back (`Floating::return_to_pool`), and no option
//! turns that off: an operation of one statement paid two round trips, and on PostgreSQL the
//! pool reached about 0.6 of what the same connections did held directly (benches/ops.rs).
//! So a guard that ends cleanly parks its connection for the next checkout.
//!
//! Who gets it: eventual fairness, as in parking_lot's mutex. Handing every connection to the
//! oldest waiter makes each checkout past the pool's size a switch between tasks (a wake, and
//! often a worker thread's park and unpark), and throughput fell to a fraction of one task's
//! (benches/pool.rs: 0.15 of it on the bare cycle). So a released connection is parked; if the
//! releasing task checks out again first (its next operation), it takes it back. Whether the
//! oldest waiter must be told to look is settled once the releasing thread has no ready task
//! left ([`Owed`]): by then a task whose next operation came at once holds the connection again,
//! and nobody is woken. Waking the waiter at every release instead, only for it to look and
//! sleep again, made every checkout past the pool's size a scheduler event: on PostgreSQL with
//! one connection, 2 to 128 tasks did 0.6 to 0.75 of what one task did, and 0.8 to 0.9 with
//! the look owed.
//! At least once per [`FAIR_TURN`] (divided among the pool's connections) a release hands its
//! connection to the oldest waiter outright, so no waiter is passed over for long; if the
//! releasing thread's next checkout finds a connection at once, it yields before using it
//! ([`yield_if_handed_over`]), so that waiter runs rather than waits behind the task that gave
//! it its connection; if it must wait, the waiter runs next anyway. So it waits rather than
//! take a connection parked in another shard that a look or a sweep will bring to a waiter
//! anyway ([`State::covered`]): on the bare cycle past the pool's size that was the one another
//! thread's task was between two checkouts with, and that task waited in turn, until every task
//! of its thread waited and the thread slept.
//!
//! Sharded by thread (`shard.rs`): a claim, its wait and the connection it parks belong to the
//! shard of the thread that began it, so two cores checking out do not pass one lock between
//! them (the bare cycle at two tasks did 0.3 to 0.75 of one task's rate with one lock, and
//! more than one task's with shards). A connection moves to another shard only for a waiter
//! there, under the same eventual fairness: a release whose own shard has no waiter parks, and
//! the look it owes tells a waiter in another shard (`Handoff::waiting`, a bit per shard,
//! names them), and a checkout about to wait, or told to look, takes one parked in any shard.
//! Outright hand-overs go to the oldest waiter of any shard (each waiter keeps the ticket of
//! its first wait), and to a SQLite writer whose turn it is ([`Turn::First`]) ahead of readers
//! waiting in the releaser's shard.
//!
//! This never hides a session, because of three rules kept under each shard's lock:
//! - A connection is parked only while another claim of its shard is live, or for at most
//!   [`LINGER`] after the last one ended: that claim schedules a sweep, which sends every
//!   parked connection of the shard back to sqlx unless a claim is live there again (whose end
//!   schedules the next). With no operation running nothing stays parked, so quiescence and
//!   `close` see what they would without this module, `LINGER` later (at once when they ask:
//!   `release_idle`). A sweep that never gets to run (no runtime, or one shutting down)
//!   sweeps when it is dropped.
//! - Nothing is parked while a checkout waits unless one waiter has been told to look, or a
//!   look is owed: the release that parked it left a check with its thread's scheduler
//!   ([`Owed`], at most one per shard), which tells the oldest waiter if anything is still
//!   parked when it runs. A told waiter takes a parked connection when it runs, or queues again
//!   at the front if another took it. A told waiter that stops waiting passes the word on.
//!   Across shards: a look owed where no one waits tells a waiter in another shard; and a
//!   checkout about to wait looks in every other shard after it has raised its shard's bit,
//!   so a connection parked elsewhere at the same moment is either seen by it or parked with
//!   a look owed to it. Right after its thread's hand-over it passes over only connections
//!   that reach a waiter without it: a look is due in their shard, or no claim is live there
//!   (the sweep sends them to sqlx, where every waiting checkout also waits).
//! - Releases hand over outright at least once per [`FAIR_TURN`] divided among the pool's
//!   connections (give or take [`RELEASES_PER_CLOCK`] releases): to the oldest waiter of all
//!   shards, or, if that is this shard's told waiter, kept parked for it alone. So a waiter is
//!   passed over for at most about that long per waiter ahead of it.
//!
//! A waiting checkout also waits on sqlx's pool (for a new connection, or one a guard could
//! not hand over), whichever comes first; what sqlx gives a wait that a hand-over served is
//! parked as a release would park it ([`Handoff::adopt`]). Only a clean connection is parked
//! or handed over: no statement in flight, no transaction open, no error seen. Anything else
//! takes sqlx's path (its ping, or a close), as before.

use super::shard::{self, SHARDS};
use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};
use sqlx::any::Any;
use sqlx::pool::PoolConnection;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Conn = PoolConnection<Any>;

/// A bit for each shard, as `Handoff::waiting` has them (and, shifted by `SHARDS`, the same
/// for the shards whose oldest waiter came first).
const ALL_SHARDS: usize = (1 << SHARDS) - 1;

/// How long the last operation's connection waits, parked, for the next checkout. Back-to-back
/// operations from one caller then skip sqlx's release ping and acquire between them, as
/// concurrent ones do; one that comes later finds it back in sqlx's pool. A millisecond is
/// tokio's timer tick: long enough for a caller's next operation, short enough that settling
/// at quiescence (which polls the views) does not notice.
pub(crate) const LINGER: Duration = Duration::from_millis(1);

/// How often, per connection, a release hands over to the oldest waiter instead of letting
/// the releasing task take its connection back: parking_lot's figure. On the bare cycle on one
/// connection, turns this often left 2 and 128 tasks at 0.94-1.00 of one task's rate, against
/// 0.95-0.995 with no turns at all; a waiter's extra wait is half a millisecond per
/// connection-turn ahead of it.
pub(crate) const FAIR_TURN: Duration = Duration::from_micros(500);

/// Releases with a checkout waiting between two looks at the clock: reading it cost a tenth
/// of a bare checkout cycle (benches/pool.rs), so a waiter may be passed over this many
/// releases past its turn.
const RELEASES_PER_CLOCK: u32 = 16;

/// The parked connections of one `Db`, and who may still want one.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// Each alone on its cache lines.
    shards: Box<[CachePadded<Mutex<State>>]>,
    /// Bit `s`: shard `s` has a checkout waiting (queued or told); bit `SHARDS + s`: its oldest
    /// came first ([`Turn::First`]). Changed under that shard's lock, only when they change, so
    /// a release reads a line no one writes while no one waits.
    waiting: CachePadded<AtomicUsize>,
    /// Bit `s`: shard `s` has had a claim. A checkout about to wait looks only in these.
    used: AtomicUsize,
    /// The ticket of each shard's oldest queued waiter ([`NO_WAITER`] if none), for fair turns
    /// to pick the oldest of all. Written under the shard's lock when it changes.
    oldest: Box<[AtomicU64]>,
    /// The next ticket: taken once per checkout that waits.
    tickets: AtomicU64,
    /// The pool's size: more can never be parked.
    capacity: usize,
    /// [`FAIR_TURN`] shared among the pool's connections: the longest a release may park
    /// while a checkout waits, counted from the last hand-over.
    fair_every: Duration,
    /// When the next fair turn is due, in nanoseconds from `epoch`: one clock for every shard.
    /// A turn handed to a waiter in another shard then lasts `fair_every` there too; with a
    /// clock per shard, the receiving shard's had long been due, and it handed back within
    /// [`RELEASES_PER_CLOCK`] releases (on the bare cycle at two tasks on one connection, a
    /// hand-over every ~125 µs instead of 500, and 0.88 of one task's rate).
    turn_due: CachePadded<AtomicU64>,
    epoch: Instant,
}

#[derive(Debug)]
struct State {
    /// Which shard this is.
    shard: usize,
    parked: Vec<Conn>,
    /// Live claims: guards holding a connection and checkouts getting one.
    claims: usize,
    /// Checkouts waiting, oldest first; each also waits on sqlx's pool. An entry whose
    /// checkout is gone (it got a pooled connection, or was cancelled) is closed; hand-overs
    /// skip those, and a claim's end clears them once they would outnumber the claims, so
    /// there are never more entries than claims and no step walks them all per checkout.
    waiters: VecDeque<Waiter>,
    /// Waits dropped unanswered, whose entries may still be queued, closed. While it is zero a
    /// release does not look at the front entry's sender: with a checkout waiting, that was 4%
    /// of a bare cycle's instructions. A hint: it may count an entry cleared already (releases
    /// then look until the queue is next cleared), or miss one cleared in another's place
    /// (answers skip closed entries, and the claims bound clears them all).
    gone: usize,
    /// A waiter has been told to look at what is parked and has not looked yet.
    told: bool,
    /// A look is owed: a release parked while a checkout waited, and whether a waiter must be
    /// told is settled when the releasing thread runs out of ready tasks ([`Owed`]).
    owed: bool,
    /// Parked connections kept for the told waiter: its turn came while it was told, so only
    /// it may take them. Never more than are parked, and none unless a waiter is told.
    reserved: usize,
    /// Releases with a checkout waiting since the clock was last read.
    unclocked: u32,
    /// A sweep is scheduled: what is parked may outlive the last claim until it runs.
    sweep_due: bool,
    /// The oldest waiter came first ([`Turn::First`]). Cleared whenever the oldest leaves,
    /// even if the next came first too: it only ever gives a shard precedence.
    first: bool,
    /// The flags this shard has raised in `Handoff::waiting`.
    flagged: usize,
    /// The shard the last hand-over from here went to: a writer's turn, and a word to look
    /// elsewhere, go round the shards after it.
    last_turn: usize,
    /// The ticket of the oldest waiter, as last published in `Handoff::oldest`.
    published: u64,
}

/// A queued checkout: its ticket (the order it first waited in, across shards) and where to
/// send its answer.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    sender: oneshot::Sender<Answer>,
}

impl Waiter {
    /// Its checkout went away.
    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// `Handoff::oldest` of a shard with no waiter queued.
const NO_WAITER: u64 = u64::MAX;

/// What a waiting checkout hears.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A connection handed over: it is yours.
    Yours(Conn),
    /// One was parked: look, and queue again at the front if another checkout took it.
    Look,
}

impl State {
    fn new(shard: usize) -> Self {
        Self {
            shard,
            parked: Vec::new(),
            claims: 0,
            waiters: VecDeque::new(),
            gone: 0,
            told: false,
            owed: false,
            reserved: 0,
            unclocked: 0,
            sweep_due: false,
            first: false,
            flagged: 0,
            last_turn: shard,
            published: NO_WAITER,
        }
    }

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
            self.parked.is_empty()
                || self.told
                || self.owed
                || self.waiters.iter().all(|w| w.is_closed()),
            "parked while a checkout waits untold: shard {}, {} parked, {} waiting ({} gone), {} claims",
            self.shard,
            self.parked.len(),
            self.waiters.len(),
            self.waiters.iter().filter(|w| w.is_closed()).count(),
            self.claims,
        );
        assert!(
            self.reserved <= self.parked.len() && (self.reserved == 0 || self.told),
            "reserved for nobody"
        );
    }

    /// A checkout of this shard waits, or may (a closed entry not cleared yet).
    fn waited_on(&self) -> bool {
        self.told || !self.waiters.is_empty()
    }

    /// Its flags in `Handoff::waiting`: bit `shard` while a checkout waits here, bit
    /// `SHARDS + shard` while the oldest came first.
    fn flags(&self) -> usize {
        let waiting = usize::from(self.waited_on()) << self.shard;
        let first = usize::from(self.first && !self.waiters.is_empty()) << (SHARDS + self.shard);
        waiting | first
    }

    /// Queues a checkout: behind the others, or ahead of them.
    fn queue(&mut self, sender: oneshot::Sender<Answer>, turn: Turn, ticket: u64) {
        let waiter = Waiter { ticket, sender };
        match turn {
            Turn::Queue => {
                self.first &= !self.waiters.is_empty();
                self.waiters.push_back(waiter);
            }
            Turn::Again => {
                self.first = false;
                self.waiters.push_front(waiter);
            }
            Turn::First => {
                self.first = true;
                self.waiters.push_front(waiter);
            }
        }
    }

    fn pop_oldest(&mut self) -> Option<Waiter> {
        self.first = false;
        self.waiters.pop_front()
    }

    /// Drops the entries of checkouts that went away from the front of the queue, where
    /// hand-overs look; `all`: from everywhere.
    fn drop_gone(&mut self, all: bool) {
        if self.gone == 0 && !all {
            return;
        }
        while self.waiters.front().is_some_and(|w| w.is_closed()) {
            self.pop_oldest();
            self.gone = self.gone.saturating_sub(1);
        }
        if all {
            self.waiters.retain(|w| !w.is_closed());
            self.gone = 0;
        }
        if self.waiters.is_empty() {
            self.gone = 0;
        }
    }

    /// Sends `answer` to the oldest waiter still waiting; back if there is none.
    fn answer_oldest(&mut self, mut answer: Answer) -> Option<Answer> {
        while let Some(waiter) = self.pop_oldest() {
            match waiter.sender.send(answer) {
                Ok(()) => return None,
                Err(unsent) => answer = unsent,
            }
        }
        Some(answer)
    }

    /// A clean connection no claim of this shard holds any more; `handoff` is this shard's.
    /// The caller has dropped the entries of checkouts that went away, but another may close
    /// at any moment (a wait is dropped on its own thread, without this lock), so every answer
    /// below passes closed entries over. With nobody waiting anywhere, parked. Else, as before
    /// sharding, with other shards' waiters (`Handoff::waiting`) taking part: to the oldest
    /// waiter of all shards if a turn is due, else parked with the oldest waiter told to look,
    /// here if one waits here, else in another shard (it looks in every shard). A waiter
    /// elsewhere that came first gets it at once, unless one here did too.
    fn give(&mut self, conn: Conn, handoff: &Handoff) -> Given {
        let (elsewhere, oldest) = (handoff.elsewhere(self.shard), &handoff.oldest);
        let (waiting, first) = (elsewhere & ALL_SHARDS, elsewhere >> SHARDS);
        let here = self.waited_on();
        let first_here = self.first && !self.waiters.is_empty();
        if !first_here && let Some(shard) = self.next_turn(first) {
            return Given::Deliver(shard, conn);
        }
        if !here && waiting == 0 {
            self.parked.push(conn);
            return Given::Kept;
        }
        self.unclocked += 1;
        if self.unclocked >= RELEASES_PER_CLOCK {
            self.unclocked = 0;
            if handoff.take_turn() {
                let own = usize::from(here) << self.shard;
                match self.oldest_waiting(waiting | own, oldest) {
                    Some(shard) if shard != self.shard => return Given::Deliver(shard, conn),
                    _ => {
                        self.hand_over(conn);
                        return Given::HandedOver;
                    }
                }
            }
        }
        self.parked.push(conn);
        if self.told || self.owed {
            return Given::Kept;
        }
        self.owed = true;
        Given::Owe(self.shard)
    }

    /// What a release that parked while a checkout waited owes, settled: the oldest waiter
    /// told to look, here if one waits here, else in another shard, if something is still
    /// parked here that it may take.
    fn look_owed(&mut self, elsewhere: usize) -> Given {
        assert!(self.owed, "a look settled that was not owed");
        self.owed = false;
        if self.parked.len() <= self.reserved {
            return Given::Kept;
        }
        if self.waited_on() {
            self.tell();
            return Given::Kept;
        }
        match self.next_turn(elsewhere & ALL_SHARDS) {
            Some(shard) => Given::Tell(shard),
            None => Given::Kept,
        }
    }
}

/// Where a connection a claim gave up went, beyond its own shard.
#[derive(Debug)]
enum Given {
    /// Parked here.
    Kept,
    /// Handed over here, or kept for the told waiter: its turn came.
    HandedOver,
    /// To this shard's waiters (`Handoff::deliver`).
    Deliver(usize, Conn),
    /// Parked here; this shard's oldest waiter is to be told to look (`Handoff::tell_in`).
    Tell(usize),
    /// Parked in this shard while a checkout waited: a look is owed ([`Owed`]).
    Owe(usize),
}

impl State {
    /// A connection whose turn has come: to the oldest waiter, or kept for the told one (it
    /// was the oldest, and has no entry to be sent to). Parked if no waiter is left.
    fn hand_over(&mut self, conn: Conn) {
        if self.told {
            self.parked.push(conn);
            self.reserved += 1;
            return;
        }
        if let Some(Answer::Yours(conn)) = self.answer_oldest(Answer::Yours(conn)) {
            self.parked.push(conn);
        }
    }

    /// A connection another shard gave for a waiter here: handed over. If that waiter is gone,
    /// it goes on to another shard with one (returned), else it is parked here.
    fn receive(&mut self, conn: Conn, elsewhere: usize) -> Option<(usize, Conn)> {
        self.drop_gone(false);
        if self.waited_on() {
            self.hand_over(conn);
            return None;
        }
        let (waiting, first) = (elsewhere & ALL_SHARDS, elsewhere >> SHARDS);
        match self.next_turn(if first != 0 { first } else { waiting }) {
            Some(shard) => Some((shard, conn)),
            None => {
                self.parked.push(conn);
                None
            }
        }
    }

    /// The shard in `candidates` (a bit per shard) whose oldest waiter came first of all, by
    /// the tickets in `oldest`: a fair turn goes to the oldest waiter of any shard. (Going
    /// round the shards instead gave a waiter alone in its shard as many turns as six waiting
    /// in another, and let it run all its operations before some of those ran one.) This
    /// shard's own told waiter, which has left the queue, was its oldest: it comes first.
    fn oldest_waiting(&mut self, candidates: usize, oldest: &[AtomicU64]) -> Option<usize> {
        let ticket = |shard: usize| match shard == self.shard && self.told {
            true => 0,
            false => oldest[shard].load(Ordering::SeqCst),
        };
        let shard = (0..SHARDS)
            .filter(|shard| candidates & (1 << shard) != 0)
            .min_by_key(|&shard| ticket(shard))?;
        self.last_turn = shard;
        Some(shard)
    }

    /// The first shard in `candidates` (a bit per shard) after the last one given a turn,
    /// going round; it has the turn now.
    fn next_turn(&mut self, candidates: usize) -> Option<usize> {
        if candidates == 0 {
            return None;
        }
        let shard = (1..=SHARDS)
            .map(|step| (self.last_turn + step) % SHARDS)
            .find(|shard| candidates & (1 << shard) != 0)?;
        self.last_turn = shard;
        Some(shard)
    }

    /// A parked connection this checkout may take: what is reserved only the told waiter
    /// takes (`told`: this is it). Another still parked: the next waiter is told it may take it.
    fn take_parked(&mut self, told: bool) -> Option<Conn> {
        let parked = match told {
            true => {
                self.reserved = self.reserved.saturating_sub(1);
                self.parked.pop()
            }
            false if self.parked.len() > self.reserved => self.parked.pop(),
            false => None,
        };
        if parked.is_some() {
            self.tell();
        }
        parked
    }

    /// What is parked here reaches a checkout waiting in another shard without its looking.
    /// One connection, and a waiter is told or a look is owed: the look takes it, or is passed
    /// on to a waiter of some shard, which looks in every shard. Or no claim is live: the next
    /// claim here takes it, or the sweep sends it to sqlx within [`LINGER`], where every
    /// waiting checkout also waits. A look covers one connection; and parked beside a live
    /// claim with no look due, one could stay there as long as that claim lives.
    fn covered(&self) -> bool {
        self.parked.len() == 1 && (self.told || self.owed || self.claims == 0)
    }

    /// Whether a sweep must be scheduled: no claim is live, something is parked, and no sweep
    /// is due yet (it is due from here on).
    fn sweep_needed(&mut self) -> bool {
        let sweep = self.claims == 0 && !self.parked.is_empty() && !self.sweep_due;
        self.sweep_due |= sweep;
        sweep
    }

    /// Tells the oldest waiter to look (it looks in every shard), unless one was told already.
    /// Nothing need be parked here: another shard may have parked one for it.
    fn tell_to_look_elsewhere(&mut self) {
        if !self.told {
            self.told = self.answer_oldest(Answer::Look).is_none();
        }
        if !self.told {
            self.reserved = 0;
        }
    }

    /// Tells the oldest waiter to look at what is parked here, if anything is.
    fn tell(&mut self) {
        if !self.parked.is_empty() {
            self.tell_to_look_elsewhere();
        }
    }
}

impl Handoff {
    pub(crate) fn new(capacity: u32) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|shard| CachePadded::new(Mutex::new(State::new(shard))))
                .collect(),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            used: AtomicUsize::new(0),
            oldest: (0..SHARDS).map(|_| AtomicU64::new(NO_WAITER)).collect(),
            tickets: AtomicU64::new(0),
            capacity,
            fair_every: FAIR_TURN / u32::try_from(capacity).unwrap_or(u32::MAX),
            turn_due: CachePadded::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a fair turn is due; if so this release takes it, and the next is due
    /// `fair_every` from now. Releases in two shards may find it due at once: one takes it.
    fn take_turn(&self) -> bool {
        let now = self.nanos_since_epoch(Instant::now());
        let due = self.turn_due.load(Ordering::Relaxed);
        let every = u64::try_from(self.fair_every.as_nanos()).unwrap_or(u64::MAX);
        let next = now.saturating_add(every);
        now >= due
            && self
                .turn_due
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// When the next fair turn is due.
    #[cfg(test)]
    fn turn_due_at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.turn_due.load(Ordering::Relaxed))
    }

    /// Makes the next fair turn due at `at`.
    #[cfg(test)]
    fn set_turn_due(&self, at: Instant) {
        let due = self.nanos_since_epoch(at);
        self.turn_due.store(due, Ordering::Relaxed);
    }

    /// A claim for one guard's connection, held for the guard's whole life, on the current
    /// thread's shard. In the same lock it takes a parked connection if one is free, for its
    /// first `source`: a checkout that finds one then locks once, not twice.
    pub(crate) fn claim(self: &Arc<Self>) -> Claim<'_> {
        self.claim_on(shard::home())
    }

    fn claim_on(self: &Arc<Self>, shard: usize) -> Claim<'_> {
        self.begin_on(shard, true)
    }

    /// A connection that sqlx gave a wait which no longer needed it (`Db::finish_connecting`)
    /// joins the parked ones as a guard's release would: to a waiter, else parked, else, with
    /// no claim left, back to sqlx at the sweep. Dropped into sqlx's idle queue instead, it
    /// stayed out of use under load with `test_before_acquire` on: no checkout takes from that
    /// queue untested, and a waiter's tested acquire there mostly lost to a hand-over, whose
    /// finisher put it back. So a slice of the bare cycle that began with a connection there
    /// ran on one connection of two: 8 and 32 tasks did 0.85 of two tasks' rate, 0.97-0.98
    /// adopted (benches/pool.rs, CONTRIBUTING.md).
    pub(crate) fn adopt(self: &Arc<Self>, conn: Conn) {
        self.begin_on(shard::home(), false).end(Some(conn), true);
    }

    /// A claim; `take`: with a parked connection if one is free.
    fn begin_on(self: &Arc<Self>, shard: usize, take: bool) -> Claim<'_> {
        if self.used.load(Ordering::Relaxed) & (1 << shard) == 0 {
            self.used.fetch_or(1 << shard, Ordering::SeqCst);
        }
        let mut state = self.lock(shard);
        state.claims += 1;
        let parked = if take { state.take_parked(false) } else { None };
        self.settle(&mut state);
        drop(state);
        Claim {
            handoff: self,
            shard,
            live: true,
            parked,
            ticket: None,
        }
    }

    /// Makes the next release in `shard` with a checkout waiting look at the clock, and find a
    /// turn due.
    #[cfg(test)]
    pub(crate) fn turn_due_at_next_release(&self, shard: usize) {
        self.lock(shard).unclocked = RELEASES_PER_CLOCK - 1;
        self.set_turn_due(Instant::now());
    }

    /// Connections parked, in every shard.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        (0..SHARDS).map(|shard| self.lock(shard).parked.len()).sum()
    }

    /// Checkouts queued, in every shard.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        (0..SHARDS)
            .map(|shard| self.lock(shard).waiters.len())
            .sum()
    }

    /// Ends the linger at once: in every shard with no claim live, every parked connection
    /// goes back to sqlx now rather than at the sweep. `Db::quiesce` and `Db::close` ask for
    /// this: nothing runs, so nothing should wait for a next checkout, and the views should not
    /// wait for the sweep.
    pub(crate) fn release_idle(&self) {
        for shard in 0..SHARDS {
            self.release(shard, false);
        }
    }

    /// With no claim of `shard` live, every connection parked there goes back to sqlx; with
    /// one, they stay parked under the first rule. `sweep_ran`: the due sweep is this, so none
    /// is due after.
    fn release(&self, shard: usize, sweep_ran: bool) {
        let released = {
            let mut state = self.lock(shard);
            state.sweep_due &= !sweep_ran;
            let released = match state.claims {
                0 => {
                    state.reserved = 0;
                    std::mem::take(&mut state.parked)
                }
                _ => Vec::new(),
            };
            self.settle(&mut state);
            released
        };
        // Dropped outside the lock: each drop spawns sqlx's return-to-pool task.
        drop(released);
    }

    /// parking_lot's lock, not std's: two cores taking one lock per checkout and per release
    /// fell into a convoy with std's (each sleeping on the futex, every unlock a syscall) in
    /// about one run in five, at a third of the throughput, for the whole run (before shards;
    /// a shard's lock is still taken by other threads when connections move). It has no
    /// poisoning; a state is only ever changed in a few lines that cannot panic.
    fn lock(&self, shard: usize) -> MutexGuard<'_, State> {
        self.shards[shard].lock()
    }

    /// The shards other than `shard` with a checkout waiting. Read under `shard`'s lock: a
    /// checkout raises its bit before it looks in the other shards, so a connection parked
    /// here while it does is either seen by it or given to it.
    fn elsewhere(&self, shard: usize) -> usize {
        self.waiting.load(Ordering::SeqCst) & !(1 << shard | 1 << (SHARDS + shard))
    }

    /// Every change to a shard ends here, under its lock: its bit follows whether a checkout
    /// waits there, and the rules are asserted.
    fn settle(&self, state: &mut State) {
        let flags = state.flags();
        if flags != state.flagged {
            let (raised, lowered) = (flags & !state.flagged, state.flagged & !flags);
            if raised != 0 {
                self.waiting.fetch_or(raised, Ordering::SeqCst);
            }
            if lowered != 0 {
                self.waiting.fetch_and(!lowered, Ordering::SeqCst);
            }
            state.flagged = flags;
        }
        let oldest = state
            .waiters
            .front()
            .map_or(NO_WAITER, |waiter| waiter.ticket);
        if oldest != state.published {
            self.oldest[state.shard].store(oldest, Ordering::SeqCst);
            state.published = oldest;
        }
        state.check(self.capacity);
    }

    /// Gives `conn`, which no claim holds, to `to`'s waiters; on to another shard's if they
    /// went away. Each step clears a bit that named a shard with no waiter left, so it ends;
    /// bounded all the same: the last step parks it where it is.
    fn deliver(self: &Arc<Self>, to: usize, conn: Conn) {
        let mut onward = Some((to, conn));
        for step in 1..=SHARDS {
            let Some((shard, conn)) = onward.take() else {
                return;
            };
            let sweep = {
                let mut state = self.lock(shard);
                let elsewhere = match step {
                    SHARDS => 0,
                    _ => self.elsewhere(shard),
                };
                onward = state.receive(conn, elsewhere);
                let sweep = state.sweep_needed();
                self.settle(&mut state);
                sweep
            };
            if sweep {
                Sweep(Arc::clone(self), shard).after(LINGER);
            }
        }
        assert!(
            onward.is_none(),
            "a connection moved on past the last shard"
        );
    }

    /// Tells `shard`'s oldest waiter to look: a release parked its connection in another shard
    /// while none waited there.
    fn tell_in(&self, shard: usize) {
        let mut state = self.lock(shard);
        state.tell_to_look_elsewhere();
        self.settle(&mut state);
    }

    /// Carries out, outside the giving shard's lock, what `State::give` left to do.
    fn follow(self: &Arc<Self>, given: Given) {
        match given {
            Given::Kept | Given::HandedOver => {}
            Given::Deliver(shard, conn) => self.deliver(shard, conn),
            Given::Tell(shard) => self.tell_in(shard),
            Given::Owe(shard) => Owed::defer(Arc::clone(self), shard),
        }
    }

    /// Settles a look owed in `shard` ([`Owed`]).
    fn settle_owed(self: &Arc<Self>, shard: usize) {
        let given = {
            let mut state = self.lock(shard);
            let elsewhere = self.elsewhere(shard);
            let given = state.look_owed(elsewhere);
            self.settle(&mut state);
            given
        };
        self.follow(given);
    }

    /// A connection parked in a shard other than `home`, free to take (not kept for a told
    /// waiter there), for a checkout of `home` about to wait. `leave_covered`: not one that
    /// reaches a waiter without this look ([`State::covered`]).
    fn take_elsewhere(&self, home: usize, leave_covered: bool) -> Option<Conn> {
        let others = self.used.load(Ordering::SeqCst) & !(1 << home);
        (0..SHARDS)
            .filter(|shard| others & (1 << shard) != 0)
            .find_map(|shard| {
                let mut state = self.lock(shard);
                if leave_covered && state.covered() {
                    return None;
                }
                let conn = state.take_parked(false);
                self.settle(&mut state);
                conn
            })
    }
}

/// A look owed in a shard, settled when the releasing thread's scheduler has run out of ready
/// tasks: `tokio::task::yield_now` hands the scheduler its waker, which tokio wakes only after
/// it has run the ready tasks and polled the driver (and at least every `event_interval`
/// polls, 61 by default); at once outside a runtime. Settled when dropped, so a waker a
/// runtime drops unwoken (at shutdown) still settles. Nothing here depends on that timing for
/// safety: woken early, it tells a waiter that finds nothing, as every release once did. A
/// task that blocks its thread after a release delays the look as long as it blocks.
struct Owed(Arc<Handoff>, usize);

impl Owed {
    fn defer(handoff: Arc<Handoff>, shard: usize) {
        let waker = std::task::Waker::from(Arc::new(Owed(handoff, shard)));
        let mut cx = Context::from_waker(&waker);
        let mut yielded = std::pin::pin!(tokio::task::yield_now());
        // Pending: the scheduler holds the waker now (or has woken it already).
        let _ = yielded.as_mut().poll(&mut cx);
    }
}

impl std::task::Wake for Owed {
    fn wake(self: Arc<Self>) {}
}

impl Drop for Owed {
    /// Runs inside tokio's scheduler, between tasks: a broken rule asserted here would unwind
    /// through it and leave a worker thread dead, every task on it hanging. The process stops
    /// instead (the panic has been reported by then).
    fn drop(&mut self) {
        let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.0.settle_owed(self.1);
        }));
        if settled.is_err() {
            std::process::abort();
        }
    }
}

thread_local! {
    /// A release on this thread handed its connection to a waiter, and no checkout here has
    /// yielded or begun to wait since ([`yield_if_handed_over`]).
    static HANDED_OVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lets the waiter that a release on this thread just handed its connection to run before
/// this thread's next checkout. Tokio runs a task woken by the running one next on the same
/// thread (its LIFO slot, which no other worker steals from); a releaser that went straight on
/// to its next checkout kept the thread, and took a connection parked in another shard, so the
/// waiter sat behind it with the connection it was given. On the bare cycle with two
/// connections, 8 to 128 tasks did 0.62 to 0.79 of what 2 tasks did (for up to a millisecond
/// at a time only one worker ran checkouts), and 0.77 to 1.00 (median 0.88) with this yield.
/// The task wakes itself and returns pending once, which tokio takes as a yield: to the back
/// of the run queue, where an idle worker can take it. `tokio::task::yield_now` would wake it
/// only when the thread runs out of tasks, and into the LIFO slot: one of two tasks waited
/// 63 ms there behind the other's whole run.
/// Called only by a checkout that found a connection at once, holding it (cancelled there, it
/// goes back to sqlx as any connection dropped outside a guard). One that must wait returns
/// pending, and the waiter runs next without it: yielding there first, before the claim, put
/// the releaser where the idle worker took it, only to queue and sleep again. On one connection
/// that woke the other worker at every fair turn, and it took the connection back in between
/// (three moves between shards per turn): 2 and 128 tasks did 0.87-0.91 of one task's rate on
/// the bare cycle and 0.73-0.85 on SQLite's `SELECT 1`; 0.94-1.00 and 0.93-1.11 now. But on
/// PostgreSQL's `SELECT 1` that wake had kept the idle worker stirring: without it two tasks
/// read 0.58-0.66 of one, against 0.81-0.84 (CONTRIBUTING.md, "the fair turn's wake"). That
/// gap is closed where it arises, in how a task waits for its answer (`db::answer_spin`).
pub(crate) async fn yield_if_handed_over() {
    if !HANDED_OVER.replace(false) {
        return;
    }
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// A waiting checkout's place among the waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Behind those already waiting.
    Queue,
    /// Ahead of those waiting in its shard: a waiter told to look that found nothing (it was
    /// the oldest there).
    Again,
    /// Ahead of them, and of other shards' waiters: the SQLite writer whose turn it is, which
    /// every other writer waits for.
    First,
}

impl Turn {
    /// The place of a checkout told to look that found nothing: the front, as the oldest;
    /// the writer keeps its precedence over other shards.
    pub(crate) fn again(self) -> Turn {
        match self {
            Turn::First => Turn::First,
            Turn::Queue | Turn::Again => Turn::Again,
        }
    }
}

/// Where a checkout's connection comes from.
pub(crate) enum Source {
    /// A parked one, or one idle in sqlx's pool: no wait.
    Ready(Conn),
    /// None ready: wait for a release's answer (or on sqlx's pool, whichever is first).
    Wait(Wait),
}

/// One guard's place among the claims. Dropping it without [`Claim::end`] ends it with no
/// connection to give (a cancelled checkout, a guard whose connection went elsewhere), or,
/// before its first `source`, with the parked connection it took as it began, still clean.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    handoff: &'a Arc<Handoff>,
    /// The shard it began on: its wait and its end go there, wherever its task runs then.
    shard: usize,
    live: bool,
    /// Taken with the claim, for the first `source`.
    parked: Option<Conn>,
    /// Its place in the order of waiters across shards, from its first wait on (a checkout
    /// told to look that queues again keeps it).
    ticket: Option<u64>,
}

impl Claim<'_> {
    /// A connection parked in its shard, else in another, else one `idle` gives (sqlx's idle
    /// queue, taken without waiting, which sqlx grants only when none of its own waiters is
    /// queued), else a place among the waiters: one lock for this shard, so nothing can be
    /// parked here between that last look and the wait; then, with its bit raised, a last look
    /// in the other shards. `told`: this checkout was told to look, so no waiter is told any
    /// more.
    pub(crate) fn source(
        &mut self,
        turn: Turn,
        told: bool,
        idle: impl FnOnce() -> Option<Conn>,
    ) -> Source {
        if let Some(conn) = self.parked.take() {
            // Taken as the claim began: it has not waited, so it cannot have been told.
            assert!(
                !told,
                "a told checkout still held what it took with its claim"
            );
            return Source::Ready(conn);
        }
        let mine = {
            let mut state = self.handoff.lock(self.shard);
            state.told &= !told;
            let mine = state.take_parked(told);
            self.handoff.settle(&mut state);
            mine
        };
        // Then one parked in another shard, before sqlx's idle queue: a caller whose next
        // operation runs on another worker thread would otherwise leave its last connection
        // to the sweep, and to sqlx's release ping.
        // Right after this thread handed its connection over, the waiter it woke runs next
        // here anyway: a connection another shard's task parked between two of its checkouts
        // stays there if a look or the sweep covers it (`State::covered`).
        let leave_covered = !told && HANDED_OVER.get();
        if let Some(conn) = mine.or_else(|| self.handoff.take_elsewhere(self.shard, leave_covered))
        {
            return Source::Ready(conn);
        }
        let wait = {
            let mut state = self.handoff.lock(self.shard);
            let source = match state.take_parked(false).or_else(idle) {
                Some(conn) => Source::Ready(conn),
                None => {
                    let (sender, receiver) = oneshot::channel();
                    // A retried checkout (its connection was dead) left its first entry behind.
                    let full = state.waiters.len() >= state.claims;
                    state.drop_gone(full);
                    let tickets = &self.handoff.tickets;
                    let ticket = *self
                        .ticket
                        .get_or_insert_with(|| tickets.fetch_add(1, Ordering::Relaxed));
                    state.queue(sender, turn, ticket);
                    // This task waits: whatever this thread handed over runs before it now.
                    HANDED_OVER.set(false);
                    Source::Wait(Wait {
                        receiver,
                        done: false,
                        handoff: Arc::clone(self.handoff),
                        shard: self.shard,
                    })
                }
            };
            self.handoff.settle(&mut state);
            match source {
                Source::Ready(conn) => return Source::Ready(conn),
                Source::Wait(wait) => wait,
            }
        };
        let Some(conn) = self.handoff.take_elsewhere(self.shard, leave_covered) else {
            return Source::Wait(wait);
        };
        // The wait, dropped, passes on anything sent to it meanwhile; then its entry goes, so
        // no release takes this shard's flag for a waiter.
        drop(wait);
        let mut state = self.handoff.lock(self.shard);
        state.drop_gone(true);
        self.handoff.settle(&mut state);
        Source::Ready(conn)
    }

    /// Ends the claim. A clean connection goes to a waiter or is parked (`State::give`), or
    /// to another shard's waiter (`Handoff::deliver`); if this was the last claim of its
    /// shard, a sweep sends what is parked there back to sqlx after [`LINGER`]. Anything else
    /// goes back to sqlx at once.
    pub(crate) fn end(&mut self, conn: Option<Conn>, clean: bool) {
        assert!(self.live, "a claim ended twice");
        assert!(
            self.parked.is_none(),
            "a claim ended before serving what it took as it began"
        );
        self.live = false;
        // Nothing here allocates on the way through: a hand-over or a park moves one
        // connection, and only the last claim of a busy spell schedules a sweep.
        let (unclean, given, sweep) = {
            let mut state = self.handoff.lock(self.shard);
            state.claims -= 1;
            let full = state.waiters.len() > state.claims;
            state.drop_gone(full);
            let (unclean, given) = match conn {
                Some(conn) if clean => (None, state.give(conn, self.handoff)),
                unclean => (unclean, Given::Kept),
            };
            let sweep = state.sweep_needed();
            self.handoff.settle(&mut state);
            (unclean, given, sweep)
        };
        // Dropped outside the lock: each drop spawns sqlx's return-to-pool task.
        drop(unclean);
        if matches!(given, Given::HandedOver | Given::Deliver(..)) {
            HANDED_OVER.set(true);
        }
        self.handoff.follow(given);
        if sweep {
            Sweep(Arc::clone(self.handoff), self.shard).after(LINGER);
        }
    }
}

/// A checkout's wait for a release's answer. Dropped unanswered-for, it does not strand
/// what it was sent: a connection handed over goes to the next waiter (or is parked), and
/// the word to look passes to the next waiter.
#[derive(Debug)]
pub(crate) struct Wait {
    receiver: oneshot::Receiver<Answer>,
    /// The receiver has returned, and polling it again would panic.
    done: bool,
    handoff: Arc<Handoff>,
    shard: usize,
}

impl Future for Wait {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        if self.done {
            return Poll::Pending;
        }
        let heard = std::task::ready!(Pin::new(&mut self.receiver).poll(cx));
        self.done = true;
        match heard {
            Ok(answer) => Poll::Ready(answer),
            // A sender dropped unanswered (only with the handoff itself): the checkout still
            // waits on sqlx's pool and its patience.
            Err(_) => Poll::Pending,
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.receiver.close();
        let unheard = match self.receiver.try_recv() {
            Ok(unheard) => unheard,
            // Answered and heard: its entry left the queue then.
            Err(_) if self.done => return,
            // Its entry may still be queued, closed: counted, for releases to clear it.
            Err(_) => {
                let mut state = self.handoff.lock(self.shard);
                state.gone += 1;
                self.handoff.settle(&mut state);
                return;
            }
        };
        let (given, sweep) = {
            let mut state = self.handoff.lock(self.shard);
            state.drop_gone(false);
            let given = match unheard {
                Answer::Yours(conn) => state.give(conn, &self.handoff),
                // The word passes on, wherever the parked connection is: to a waiter in
                // another shard if none is left here (it looks in every shard).
                Answer::Look => {
                    state.told = false;
                    state.tell_to_look_elsewhere();
                    let elsewhere = self.handoff.elsewhere(self.shard) & ALL_SHARDS;
                    match state.told {
                        true => Given::Kept,
                        false => state.next_turn(elsewhere).map_or(Given::Kept, Given::Tell),
                    }
                }
            };
            // Dropped after its checkout's claim: the sweep that claim's end would schedule.
            let sweep = state.sweep_needed();
            self.handoff.settle(&mut state);
            (given, sweep)
        };
        self.handoff.follow(given);
        if sweep {
            Sweep(Arc::clone(&self.handoff), self.shard).after(LINGER);
        }
    }
}

/// A scheduled sweep of one shard of a `Handoff`. It sweeps when dropped, so a sweep whose
/// task never runs (spawned onto a runtime shutting down, or with no runtime at all) still
/// sweeps.
struct Sweep(Arc<Handoff>, usize);

impl Sweep {
    fn after(self, linger: Duration) {
        // Spawned outside the handoff's locks: a runtime that refuses the task drops it, and
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
    /// Sends every connection parked in its shard back to sqlx, unless a claim is live there
    /// again: then they stay parked under the first rule, and the last claim to end schedules
    /// the next sweep.
    fn drop(&mut self) {
        self.0.release(self.1, true);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.live {
            // A connection taken with the claim and never sourced is as clean as when parked.
            let parked = self.parked.take();
            let clean = parked.is_some();
            self.end(parked, clean);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::scratch::Scratch;

    /// The shard of the test's thread, where its claims are.
    fn home(handoff: &Handoff) -> MutexGuard<'_, State> {
        handoff.lock(shard::home())
    }

    /// A handoff beside a sqlx pool of `size` on a scratch SQLite file.
    struct Rig {
        scratch: Scratch,
        pool: sqlx::AnyPool,
        handoff: Arc<Handoff>,
    }

    impl Rig {
        async fn new(size: u32) -> Rig {
            Rig::with_fair_turn(size, None).await
        }

        /// With `fair_every` in place of the pool size's share of [`FAIR_TURN`], if given.
        async fn with_fair_turn(size: u32, fair_every: Option<Duration>) -> Rig {
            sqlx::any::install_default_drivers();
            let scratch = Scratch::sqlite().unwrap();
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(size)
                .connect(&format!("{}?mode=rwc", scratch.url))
                .await
                .unwrap();
            let mut handoff = Handoff::new(size);
            handoff.fair_every = fair_every.unwrap_or(handoff.fair_every);
            Rig {
                scratch,
                pool,
                handoff: Arc::new(handoff),
            }
        }

        /// With every claim ended, nothing stays parked; then the pool and file go.
        async fn finish(self) {
            self.handoff.release_idle();
            assert_eq!(self.handoff.parked(), 0);
            self.pool.close().await;
            self.scratch.remove().await.unwrap();
        }
    }

    /// On a current-thread runtime a spawned sweep runs only when the test awaits, so each
    /// step below sees the state the rules leave, not a race with the sweep.
    #[tokio::test(flavor = "current_thread")]
    async fn what_is_parked_goes_back_at_the_sweep_or_at_release_idle_only_with_no_claim_live() {
        let rig = Rig::new(2).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));

        let mut first = handoff.claim();
        let beside = handoff.claim();
        first.end(Some(pool.acquire().await.unwrap()), true);
        assert_eq!(handoff.parked(), 1, "parked while another claim is live");
        handoff.release_idle();
        assert_eq!(handoff.parked(), 1, "a live claim may still take it");
        drop(beside);
        assert_eq!(handoff.parked(), 1, "the last claim schedules a sweep");
        assert!(home(handoff).sweep_due);
        handoff.release_idle();
        assert_eq!(handoff.parked(), 0, "no claim live: back to sqlx at once");

        let mut last = handoff.claim();
        last.end(Some(pool.acquire().await.unwrap()), true);
        assert_eq!(handoff.parked(), 1);
        tokio::time::sleep(LINGER * 5).await;
        assert_eq!(handoff.parked(), 0, "the sweep sent it back");
        assert!(!home(handoff).sweep_due);

        let mut unclean = handoff.claim();
        unclean.end(Some(pool.acquire().await.unwrap()), false);
        assert_eq!(handoff.parked(), 0, "an unclean connection is never parked");
        rig.finish().await;
    }

    /// A claim takes a free parked connection as it begins (one lock for both), serves it to
    /// its first `source`, and gives it back parked if dropped before that.
    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_takes_a_parked_connection_as_it_begins_and_gives_it_back_unsourced() {
        let rig = Rig::new(2).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let beside = handoff.claim();
        let mut first = handoff.claim();
        first.end(Some(pool.acquire().await.unwrap()), true);
        assert_eq!(handoff.parked(), 1);

        let unsourced = handoff.claim();
        assert_eq!(handoff.parked(), 0, "taken with the claim");
        drop(unsourced);
        assert_eq!(handoff.parked(), 1, "given back, still clean");

        let mut sourced = handoff.claim();
        let conn = ready(
            sourced.source(Turn::Queue, false, || None),
            "the connection taken with the claim",
        );
        assert_eq!(handoff.parked(), 0);
        sourced.end(Some(conn), true);
        drop(beside);
        rig.finish().await;
    }

    /// What a waiting checkout has heard so far, without waiting (and without tokio's
    /// cooperative budget, which a test that never yields would exhaust).
    fn heard(wait: &mut Wait) -> Option<Answer> {
        wait.receiver.try_recv().ok()
    }

    fn waiting(source: Source) -> Wait {
        match source {
            Source::Wait(wait) => wait,
            Source::Ready(_) => panic!("expected to wait"),
        }
    }

    fn ready(source: Source, why: &str) -> Conn {
        match source {
            Source::Ready(conn) => conn,
            Source::Wait(_) => panic!("expected a connection: {why}"),
        }
    }

    /// Lets the looks owed so far be settled: the test's task yields, and the runtime, with
    /// no other task ready, wakes what `yield_now` deferred ([`Owed`]) before it resumes.
    async fn owed_looks_settled(handoff: &Handoff) {
        tokio::task::yield_now().await;
        assert!(
            (0..SHARDS).all(|shard| !handoff.lock(shard).owed),
            "a look still owed after the runtime ran out of tasks"
        );
    }

    /// Once the looks owed are settled, `waiter` has heard the word to look; it looks, and
    /// takes what is parked (`why`: where).
    async fn looks_and_takes(
        handoff: &Handoff,
        waiter: &mut Claim<'_>,
        mut wait: Wait,
        why: &str,
    ) -> Conn {
        owed_looks_settled(handoff).await;
        let Some(Answer::Look) = heard(&mut wait) else {
            panic!("not told to look: {why}")
        };
        drop(wait);
        ready(waiter.source(Turn::Again, true, || None), why)
    }

    /// `releaser` ends its claim with `conn` and checks out again at once, up to `limit`
    /// times, while `waiter` waits: every release either owes a look, which finds the releaser
    /// took the connection back and wakes nobody, or hands over outright. Returns how many
    /// releases it took and the connection handed over, if one was.
    async fn release_until_handed_over<'a>(
        handoff: &'a Arc<Handoff>,
        releaser: &mut Claim<'a>,
        mut conn: Conn,
        waiter: &mut Claim<'a>,
        limit: u32,
    ) -> (u32, Result<Conn, Conn>) {
        let mut wait = waiting(waiter.source(Turn::Queue, false, || None));
        HANDED_OVER.set(false);
        for release in 1..=limit {
            releaser.end(Some(conn), true);
            let handed_over = HANDED_OVER.replace(false);
            match heard(&mut wait) {
                Some(Answer::Yours(conn)) => {
                    assert!(
                        handed_over,
                        "a hand-over makes its thread's next checkout yield"
                    );
                    return (release, Ok(conn));
                }
                Some(Answer::Look) => panic!("told to look before the releaser could take it back"),
                None => {
                    assert!(
                        home(handoff).owed,
                        "a release with a checkout waiting owes a look"
                    );
                    assert!(
                        !handed_over,
                        "only a hand-over makes the next checkout yield"
                    );
                }
            }
            *releaser = handoff.claim();
            conn = ready(
                releaser.source(Turn::Queue, false, || None),
                "the releaser takes its parked connection back",
            );
            owed_looks_settled(handoff).await;
            assert!(
                heard(&mut wait).is_none(),
                "nothing parked when the look was settled: nobody woken"
            );
        }
        drop(wait);
        (limit, Err(conn))
    }

    /// The releasing task takes its connection back while a waiter is only told to look, until
    /// the waiter's turn is due: then, within `RELEASES_PER_CLOCK` releases, one hands over.
    /// In a pool of one and of two (where the fair turn comes twice as often).
    #[tokio::test(flavor = "current_thread")]
    async fn a_releaser_takes_its_connection_back_until_the_waiters_turn_is_due() {
        for size in [1, 2] {
            takes_back_until_the_turn_is_due(size).await;
        }
    }

    async fn takes_back_until_the_turn_is_due(size: u32) {
        let rig = Rig::new(size).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut first = handoff.claim();
        let mut second = handoff.claim();
        let conn = pool.acquire().await.unwrap();

        // Due from the start: handed over at the first look at the clock.
        let start = Instant::now();
        let (releases, handed) =
            release_until_handed_over(handoff, &mut first, conn, &mut second, 100).await;
        let Ok(conn) = handed else {
            panic!("never handed over")
        };
        assert_eq!(releases, RELEASES_PER_CLOCK);
        assert!(handoff.turn_due_at() >= start + handoff.fair_every);

        // Not due: passed over, however many releases.
        first = handoff.claim();
        handoff.set_turn_due(Instant::now() + Duration::from_secs(3600));
        let (_, kept) =
            release_until_handed_over(handoff, &mut second, conn, &mut first, 100).await;
        let Err(conn) = kept else {
            panic!("handed over before the turn was due")
        };

        // Due again.
        handoff.set_turn_due(Instant::now());
        let (releases, handed) =
            release_until_handed_over(handoff, &mut second, conn, &mut first, 100).await;
        let Ok(conn) = handed else {
            panic!("never handed over")
        };
        assert!(releases <= RELEASES_PER_CLOCK);

        first.end(Some(conn), true);
        drop(second);
        rig.finish().await;
    }

    /// A waiter that goes away without looking passes the word on, and a connection handed to
    /// one that went away goes to the next waiter, not back to sqlx.
    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_that_goes_away_passes_on_what_it_was_sent() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));

        let mut holder = handoff.claim();
        let conn = pool.acquire().await.unwrap();
        let mut gone = handoff.claim();
        let gone_wait = waiting(gone.source(Turn::Queue, false, || None));
        let mut next = handoff.claim();
        let mut next_wait = waiting(next.source(Turn::Queue, false, || None));

        holder.end(Some(conn), true);
        assert_eq!(handoff.parked(), 1);
        owed_looks_settled(handoff).await;
        assert!(heard(&mut next_wait).is_none(), "only the oldest is told");
        drop(gone_wait);
        drop(gone);
        assert!(
            matches!(heard(&mut next_wait), Some(Answer::Look)),
            "the word passed on"
        );
        let conn = ready(
            next.source(Turn::Again, true, || None),
            "the parked connection is there to take",
        );

        // A hand-over outright to a waiter that then goes away, after the waiter behind it
        // stopped waiting unanswered: its closed entry is passed over.
        let mut gone = handoff.claim();
        let gone_wait = waiting(gone.source(Turn::Queue, false, || None));
        let mut left = handoff.claim();
        let left_wait = waiting(left.source(Turn::Queue, false, || None));
        let mut last = handoff.claim();
        let mut last_wait = waiting(last.source(Turn::Queue, false, || None));
        handoff.turn_due_at_next_release(shard::home());
        next.end(Some(conn), true);
        assert_eq!(handoff.parked(), 0, "handed over outright");
        drop(left_wait);
        drop(gone_wait);
        assert_eq!(
            home(handoff).waiters.len(),
            1,
            "the closed entry cleared, the last waiter's left"
        );
        drop(gone);
        owed_looks_settled(handoff).await;
        let conn = match heard(&mut last_wait) {
            Some(Answer::Yours(conn)) => conn,
            Some(Answer::Look) => ready(
                last.source(Turn::Again, true, || None),
                "the connection went to the next waiter, not to sqlx",
            ),
            None => panic!("the next waiter heard nothing"),
        };
        assert_eq!(pool.num_idle(), 0, "not back in sqlx's pool");

        last.end(Some(conn), true);
        drop(left);
        rig.finish().await;
    }

    /// A told waiter that goes away with no waiter left in its shard passes the word to a
    /// waiter in another: a checkout that waited rather than take what the word was about
    /// ([`State::covered`]) is told in its place.
    #[tokio::test(flavor = "current_thread")]
    async fn a_told_waiter_that_goes_away_passes_the_word_to_another_shard_if_none_is_left() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(THERE);
        let conn = pool.acquire().await.unwrap();
        let mut told = handoff.claim_on(THERE);
        let told_wait = waiting(told.source(Turn::Queue, false, || None));
        holder.end(Some(conn), true);
        owed_looks_settled(handoff).await;
        assert!(
            handoff.lock(THERE).told,
            "the waiter there was told to look"
        );

        HANDED_OVER.set(true);
        let mut here = handoff.claim_on(HERE);
        let wait = waiting(here.source(Turn::Queue, false, || None));
        drop(told_wait);
        drop(told);
        let conn = looks_and_takes(handoff, &mut here, wait, "the word passed on").await;
        assert_eq!(handoff.parked(), 0);
        here.end(Some(conn), true);
        rig.finish().await;
    }

    /// A checkout that stops waiting before any answer (sqlx's pool served it first) leaves
    /// its entry closed in the queue; the next release clears it, so it owes nobody a look
    /// and the shard stops counting as waited on.
    #[tokio::test(flavor = "current_thread")]
    async fn a_release_clears_the_entry_of_a_checkout_that_stopped_waiting() {
        let rig = Rig::new(2).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim();
        let conn = pool.acquire().await.unwrap();
        let mut served = handoff.claim();
        let served_wait = waiting(served.source(Turn::Queue, false, || None));
        assert_ne!(flags(handoff), 0, "waited on");
        // Its claim lives on, holding what sqlx's pool gave it.
        drop(served_wait);
        let pooled = pool.acquire().await.unwrap();
        assert_eq!(
            home(handoff).waiters.len(),
            1,
            "the closed entry is still queued"
        );

        holder.end(Some(conn), true);
        let after = {
            let state = home(handoff);
            (state.waiters.len(), state.owed, state.parked.len())
        };
        assert_eq!(
            after,
            (0, false, 1),
            "cleared at the release, which parked owing no look"
        );
        assert_eq!(flags(handoff), 0, "no longer waited on");

        served.end(Some(pooled), true);
        rig.finish().await;
    }

    /// A turn that comes due while the oldest waiter is told (it has no entry in the queue to
    /// be sent to) is kept parked for it: a checkout that comes before it looks waits.
    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_due_while_the_oldest_is_told_is_kept_for_it() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim();
        let conn = pool.acquire().await.unwrap();
        let mut oldest = handoff.claim();
        let mut oldest_wait = waiting(oldest.source(Turn::Queue, false, || None));

        holder.end(Some(conn), true);
        owed_looks_settled(handoff).await;
        assert!(matches!(heard(&mut oldest_wait), Some(Answer::Look)));
        holder = handoff.claim();
        let conn = ready(
            holder.source(Turn::Queue, false, || None),
            "the releaser takes its parked connection back",
        );
        handoff.turn_due_at_next_release(shard::home());
        holder.end(Some(conn), true);
        assert_eq!((handoff.parked(), home(handoff).reserved), (1, 1));

        let mut later = handoff.claim();
        let later_wait = waiting(later.source(Turn::Queue, false, || None));
        let conn = ready(
            oldest.source(Turn::Again, true, || None),
            "the told waiter takes what was kept for it",
        );
        assert_eq!(home(handoff).reserved, 0);

        drop(later_wait);
        drop(later);
        oldest.end(Some(conn), true);
        rig.finish().await;
    }

    /// A checkout's entry closes without the shard's lock (its wait is dropped on its own
    /// thread), so it may close between a release clearing the closed entries and giving its
    /// connection. The give passes it over like any closed entry; an assertion that the front
    /// entry was live fired here once, 25 minutes into a benchmark run.
    #[tokio::test(flavor = "current_thread")]
    async fn a_release_gives_past_an_entry_that_closed_after_the_clearing() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));

        let mut holder = handoff.claim();
        let conn = pool.acquire().await.unwrap();
        let mut waiter = handoff.claim();
        let mut wait = waiting(waiter.source(Turn::Queue, false, || None));
        let given = {
            // The steps `Claim::end` takes under the lock, with the waiter's checkout going
            // away in between; `gone` is a hint, here one an earlier clearing left.
            let mut state = home(handoff);
            state.gone += 1;
            state.drop_gone(false);
            assert_eq!(state.waiters.len(), 1, "the entry was live when cleared");
            wait.receiver.close();
            let given = state.give(conn, handoff);
            handoff.settle(&mut state);
            given
        };
        handoff.follow(given);
        holder.end(None, false);
        owed_looks_settled(handoff).await;
        assert_eq!(handoff.parked(), 1, "parked, for the next checkout");
        assert!(!home(handoff).told, "nobody left to tell");
        drop(wait);
        drop(waiter);
        assert_eq!(home(handoff).claims, 0);
        rig.finish().await;
    }

    /// A sender dropped unanswered leaves the wait pending, however often it is polled (a
    /// oneshot receiver polled again after it returned panics).
    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_whose_sender_is_gone_stays_pending() {
        let rig = Rig::new(1).await;
        let mut waiter = rig.handoff.claim();
        let mut wait = waiting(waiter.source(Turn::Queue, false, || None));
        home(&rig.handoff).waiters.clear();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..2 {
            assert!(Pin::new(&mut wait).poll(&mut cx).is_pending());
        }
        drop(wait);
        drop(waiter);
        rig.finish().await;
    }

    /// Two shards, whatever the test's thread: claims are placed on them directly.
    const HERE: usize = 0;
    const THERE: usize = 1;

    fn flags(handoff: &Handoff) -> usize {
        handoff.waiting.load(Ordering::SeqCst)
    }

    /// A checkout about to wait takes a connection parked in another shard: parked there, it
    /// would serve no one until that shard's next release or sweep.
    #[tokio::test(flavor = "current_thread")]
    async fn a_checkout_about_to_wait_takes_what_another_shard_has_parked() {
        let rig = Rig::new(2).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let beside = handoff.claim_on(THERE);
        let mut there = handoff.claim_on(THERE);
        there.end(Some(pool.acquire().await.unwrap()), true);
        assert_eq!(
            handoff.lock(THERE).parked.len(),
            1,
            "parked in its own shard"
        );

        let mut here = handoff.claim_on(HERE);
        let conn = ready(
            here.source(Turn::Queue, false, || None),
            "the connection parked in the other shard",
        );
        assert_eq!(handoff.parked(), 0);
        assert_eq!(flags(handoff), 0, "no one waits");
        here.end(Some(conn), true);
        drop(beside);
        rig.finish().await;
    }

    /// `giver`, in `HERE`, ends its claim with `conn` at a fair turn due now: the waiter of
    /// `wait` gets it, and this thread has handed over. Returns what the waiter got.
    fn handed_over_at_a_turn(
        handoff: &Handoff,
        giver: &mut Claim<'_>,
        conn: Conn,
        mut wait: Wait,
    ) -> Conn {
        handoff.turn_due_at_next_release(HERE);
        giver.end(Some(conn), true);
        let Some(Answer::Yours(conn)) = heard(&mut wait) else {
            panic!("the turn did not go to the waiter")
        };
        drop(wait);
        assert!(HANDED_OVER.get(), "a hand-over on this thread");
        conn
    }

    /// Right after its thread handed a connection over, a checkout about to wait leaves one
    /// parked in another shard with a look owed there: the look reaches it (here, the
    /// checkout itself). Taking it instead took, on the bare cycle past the pool's size, the
    /// connection another thread's task was between two checkouts with, and that task waited.
    #[tokio::test(flavor = "current_thread")]
    async fn after_a_hand_over_a_checkout_leaves_a_connection_covered_by_a_look_owed() {
        let rig = Rig::with_fair_turn(2, Some(Duration::from_secs(3600))).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut giver = handoff.claim_on(HERE);
        let given = pool.acquire().await.unwrap();
        let mut there = handoff.claim_on(THERE);
        let parked = pool.acquire().await.unwrap();
        let mut waiter = handoff.claim_on(HERE);
        let wait = waiting(waiter.source(Turn::Queue, false, || None));
        there.end(Some(parked), true);
        assert!(handoff.lock(THERE).owed, "parked there with a look owed");

        let given = handed_over_at_a_turn(handoff, &mut giver, given, wait);
        let mut next = handoff.claim_on(HERE);
        let wait = waiting(next.source(Turn::Queue, false, || None));
        assert_eq!(handoff.lock(THERE).parked.len(), 1, "left where it was");
        let taken = looks_and_takes(handoff, &mut next, wait, "told by the look owed there").await;
        assert_eq!(handoff.parked(), 0);
        next.end(Some(taken), true);
        waiter.end(Some(given), true);
        rig.finish().await;
    }

    /// Right after a hand-over, a checkout about to wait still takes a connection parked in
    /// another shard beside a live claim with no look owed: nothing else would bring it to a
    /// waiter while that claim lives.
    #[tokio::test(flavor = "current_thread")]
    async fn after_a_hand_over_a_checkout_takes_a_connection_no_look_covers() {
        let rig = Rig::with_fair_turn(2, Some(Duration::from_secs(3600))).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let beside = handoff.claim_on(THERE);
        let mut giver = handoff.claim_on(HERE);
        let given = pool.acquire().await.unwrap();
        let mut there = handoff.claim_on(THERE);
        let parked = pool.acquire().await.unwrap();
        let mut waiter = handoff.claim_on(HERE);
        let wait = waiting(waiter.source(Turn::Queue, false, || None));
        let given = handed_over_at_a_turn(handoff, &mut giver, given, wait);
        there.end(Some(parked), true);
        assert!(
            {
                let state = handoff.lock(THERE);
                state.parked.len() == 1 && !state.owed && !state.told && state.claims == 1
            },
            "parked there beside a live claim, with no look due"
        );

        let mut next = handoff.claim_on(HERE);
        let taken = ready(
            next.source(Turn::Queue, false, || None),
            "the connection parked beside a live claim",
        );
        assert_eq!(handoff.parked(), 0);
        next.end(Some(taken), true);
        waiter.end(Some(given), true);
        drop(beside);
        rig.finish().await;
    }

    /// Right after a hand-over, a checkout about to wait takes one of two connections parked
    /// in another shard under one look owed: that look tells one waiter, who takes one.
    #[tokio::test(flavor = "current_thread")]
    async fn after_a_hand_over_a_checkout_takes_one_of_two_under_one_look() {
        let rig = Rig::with_fair_turn(3, Some(Duration::from_secs(3600))).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let beside = handoff.claim_on(THERE);
        let mut giver = handoff.claim_on(HERE);
        let given = pool.acquire().await.unwrap();
        let conns = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
        let mut waiter = handoff.claim_on(HERE);
        let wait = waiting(waiter.source(Turn::Queue, false, || None));
        for conn in conns {
            handoff.begin_on(THERE, false).end(Some(conn), true);
        }
        assert!(
            {
                let state = handoff.lock(THERE);
                state.parked.len() == 2 && state.owed
            },
            "two parked there under one look owed"
        );
        let given = handed_over_at_a_turn(handoff, &mut giver, given, wait);

        let mut next = handoff.claim_on(HERE);
        let taken = ready(
            next.source(Turn::Queue, false, || None),
            "one of two under one look",
        );
        owed_looks_settled(handoff).await;
        next.end(Some(taken), true);
        waiter.end(Some(given), true);
        drop(beside);
        rig.finish().await;
    }

    /// A release with a checkout waiting wakes no one while its task runs: the look it owes
    /// is settled once the runtime has no ready task left, and tells the waiter then if the
    /// connection is still parked. Outside a runtime there is nothing to defer to: at once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_look_owed_is_settled_when_the_runtime_runs_out_of_tasks_and_at_once_outside_one() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut waiter = handoff.claim_on(HERE);
        let mut wait = waiting(waiter.source(Turn::Queue, false, || None));

        holder.end(Some(conn), true);
        assert!(heard(&mut wait).is_none(), "woken while the releaser ran");
        assert!(handoff.lock(HERE).owed, "a look is owed");
        let conn = looks_and_takes(handoff, &mut waiter, wait, "still parked when settled").await;

        let mut next = handoff.claim_on(HERE);
        let mut wait = waiting(next.source(Turn::Queue, false, || None));
        std::thread::scope(|scope| {
            scope.spawn(|| waiter.end(Some(conn), true));
        });
        assert!(
            !handoff.lock(HERE).owed,
            "settled before the release returned"
        );
        assert!(matches!(heard(&mut wait), Some(Answer::Look)));
        let conn = ready(next.source(Turn::Again, true, || None), "parked, and told");
        next.end(Some(conn), true);
        drop(holder);
        rig.finish().await;
    }

    /// A release whose shard has no waiter parks its connection there (its own next checkout
    /// may take it back, as in one shard) and tells a waiter in another shard to look: it
    /// looks in every shard, and takes it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_release_with_no_waiter_in_its_shard_tells_a_waiter_in_another() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut waiter = handoff.claim_on(THERE);
        let wait = waiting(waiter.source(Turn::Queue, false, || None));
        assert_eq!(flags(handoff), 1 << THERE, "its shard's flag is raised");

        holder.end(Some(conn), true);
        assert_eq!(
            handoff.lock(HERE).parked.len(),
            1,
            "parked in its own shard"
        );
        let conn = looks_and_takes(
            handoff,
            &mut waiter,
            wait,
            "the connection parked in the releaser's shard",
        )
        .await;
        assert_eq!(handoff.parked(), 0);
        assert_eq!(flags(handoff), 0, "lowered once the waiter was served");
        waiter.end(Some(conn), true);
        rig.finish().await;
    }

    /// One clock for the fair turns of every shard: a turn handed to a waiter in another shard
    /// lasts there as long as anywhere, so its releases do not hand straight back to the
    /// releaser that gave it, now waiting here. That releaser's checkout, finding nothing,
    /// waits without the yield a hand-over asks of one that finds a connection.
    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_handed_to_another_shard_lasts_there_as_long() {
        let rig = Rig::with_fair_turn(1, Some(Duration::from_secs(3600))).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut giver = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut taker = handoff.claim_on(THERE);
        let wait = waiting(taker.source(Turn::Queue, false, || None));
        let start = Instant::now();
        let mut conn = handed_over_at_a_turn(handoff, &mut giver, conn, wait);
        assert!(handoff.turn_due_at() >= start + handoff.fair_every);

        giver = handoff.claim_on(HERE);
        let mut back = waiting(giver.source(Turn::Queue, false, || None));
        assert!(
            !HANDED_OVER.get(),
            "a checkout that waits lets the waiter run without a yield"
        );
        for _ in 0..2 * RELEASES_PER_CLOCK {
            HANDED_OVER.set(false);
            taker.end(Some(conn), true);
            assert!(
                !HANDED_OVER.get(),
                "handed back before the next turn was due"
            );
            taker = handoff.claim_on(THERE);
            conn = ready(
                taker.source(Turn::Queue, false, || None),
                "its own connection back",
            );
        }
        owed_looks_settled(handoff).await;
        assert!(heard(&mut back).is_none(), "nothing parked for the waiter");
        drop(back);
        drop(giver);
        taker.end(Some(conn), true);
        rig.finish().await;
    }

    /// The SQLite writer whose turn it is, waiting in another shard, gets a release ahead of
    /// the readers waiting in the releaser's own shard.
    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_that_came_first_elsewhere_goes_ahead_of_those_here() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut reader = handoff.claim_on(HERE);
        let mut reader_wait = waiting(reader.source(Turn::Queue, false, || None));
        // A waiter that looked and found nothing queues again at the front of its own shard
        // only: nothing for other shards to give way to.
        let mut looked = handoff.claim_on(HERE);
        let looked_wait = waiting(looked.source(Turn::Again, false, || None));
        assert_eq!(flags(handoff), 1 << HERE);
        drop(looked_wait);
        drop(looked);
        let mut writer = handoff.claim_on(THERE);
        let mut writer_wait = waiting(writer.source(Turn::First, false, || None));
        assert_eq!(
            flags(handoff),
            1 << HERE | 1 << THERE | 1 << (SHARDS + THERE)
        );

        holder.end(Some(conn), true);
        let Some(Answer::Yours(conn)) = heard(&mut writer_wait) else {
            panic!("the writer in the other shard was not handed the connection")
        };
        assert!(heard(&mut reader_wait).is_none(), "the reader was not told");
        drop(writer_wait);
        writer.end(Some(conn), true);
        // The writer's shard has no one waiting: the reader is told to look, and finds it.
        let conn = looks_and_takes(
            handoff,
            &mut reader,
            reader_wait,
            "the connection parked in the writer's shard",
        )
        .await;
        reader.end(Some(conn), true);
        rig.finish().await;
    }

    /// When a release's turn to hand over comes, the connection goes to the oldest waiter of
    /// any shard, its own included: by the order they first waited in, not by shard.
    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_goes_to_the_oldest_waiter_whichever_shard_it_waits_in() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut near = handoff.claim_on(HERE);
        let mut near_wait = waiting(near.source(Turn::Queue, false, || None));
        let mut far = handoff.claim_on(THERE);
        let mut far_wait = waiting(far.source(Turn::Queue, false, || None));

        handoff.turn_due_at_next_release(HERE);
        holder.end(Some(conn), true);
        let Some(Answer::Yours(conn)) = heard(&mut near_wait) else {
            panic!("the first turn did not go to the oldest waiter, in the releaser's shard")
        };
        assert!(heard(&mut far_wait).is_none());

        // Now the oldest waits in the other shard, and a younger one in the releaser's.
        drop(near_wait);
        let mut young = handoff.claim_on(HERE);
        let mut young_wait = waiting(young.source(Turn::Queue, false, || None));
        handoff.turn_due_at_next_release(HERE);
        near.end(Some(conn), true);
        let Some(Answer::Yours(conn)) = heard(&mut far_wait) else {
            panic!("the second turn did not go to the oldest waiter, in the other shard")
        };
        assert!(heard(&mut young_wait).is_none());
        drop(far_wait);
        far.end(Some(conn), true);
        let conn =
            looks_and_takes(handoff, &mut young, young_wait, "parked in the other shard").await;
        young.end(Some(conn), true);
        drop(holder);
        rig.finish().await;
    }

    /// A shard's flag may outlive its waiter (served by sqlx's pool, its entry closed but not
    /// yet cleared): a connection handed to it at a turn then finds no one, and is parked there
    /// (where a claim is live) or goes on to a shard where someone does wait; either way the
    /// flag falls.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_given_to_a_shard_whose_waiter_left_is_parked_there() {
        let rig = Rig::new(2).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut served = handoff.claim_on(THERE);
        let wait = waiting(served.source(Turn::Queue, false, || None));
        drop(wait);
        let pooled = pool.acquire().await.unwrap();
        assert_eq!(
            flags(handoff),
            1 << THERE,
            "still raised: its entry is not cleared"
        );

        handoff.turn_due_at_next_release(HERE);
        holder.end(Some(conn), true);
        assert_eq!(handoff.lock(THERE).parked.len(), 1, "parked where it went");
        assert_eq!(flags(handoff), 0);
        served.end(Some(pooled), true);
        assert!(
            handoff.lock(THERE).sweep_due,
            "the last claim there schedules its sweep"
        );
        rig.finish().await;
    }

    /// A checkout takes a connection parked in another shard before one idle in sqlx's pool:
    /// a caller whose operations run on two worker threads in turn keeps one connection.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_parked_elsewhere_comes_before_sqlx_idle_queue() {
        let rig = Rig::new(2).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let beside = handoff.claim_on(THERE);
        let mut there = handoff.claim_on(THERE);
        there.end(Some(pool.acquire().await.unwrap()), true);

        let mut here = handoff.claim_on(HERE);
        let conn = ready(
            here.source(Turn::Queue, false, || {
                panic!("sqlx's idle queue asked while a connection was parked")
            }),
            "the connection parked in the other shard",
        );
        here.end(Some(conn), true);
        drop(beside);
        rig.finish().await;
    }

    /// A waiter told to look at a connection another shard parked, that goes away without
    /// looking, passes the word on to the next waiter in its shard.
    #[tokio::test(flavor = "current_thread")]
    async fn a_word_to_look_elsewhere_passes_on_when_its_waiter_goes() {
        let rig = Rig::new(1).await;
        let (pool, handoff) = (&rig.pool, &Arc::clone(&rig.handoff));
        let mut holder = handoff.claim_on(HERE);
        let conn = pool.acquire().await.unwrap();
        let mut gone = handoff.claim_on(THERE);
        let gone_wait = waiting(gone.source(Turn::Queue, false, || None));
        let mut next = handoff.claim_on(THERE);
        let mut next_wait = waiting(next.source(Turn::Queue, false, || None));

        holder.end(Some(conn), true);
        owed_looks_settled(handoff).await;
        assert!(heard(&mut next_wait).is_none(), "only the oldest is told");
        drop(gone_wait);
        drop(gone);
        let conn = looks_and_takes(
            handoff,
            &mut next,
            next_wait,
            "the word passed on: the connection parked in the other shard",
        )
        .await;
        next.end(Some(conn), true);
        rig.finish().await;
    }

    /// Turns go round from the last shard served, its own included when asked.
    #[test]
    fn next_turn_goes_round_after_the_last() {
        let mut state = State::new(2);
        let candidates = 1 << 0 | 1 << 2 | 1 << 5;
        let turns: Vec<_> = (0..4).map(|_| state.next_turn(candidates)).collect();
        assert_eq!(turns, [Some(5), Some(0), Some(2), Some(5)]);
        assert_eq!(state.next_turn(0), None);
        assert_eq!(state.last_turn, 5, "no turn given: unchanged");
    }
}
