//! Fault points (FoundationDB's BUGGIFY idea): every statement and every commit passes one. The
//! harness arms a fault — "the n-th point from now fails" or "panics" — and the next op meets
//! it wherever it stands: before its first statement, between two, or before its commit.
//! Unarmed, a point costs one relaxed atomic load.
//!
//! Cuts are the harness's cancellations, made deterministic. Every await on the database (a
//! checkout, `BEGIN`, a statement, `COMMIT`, `ROLLBACK`) is counted, from the first time the
//! harness asks (arms a cut, or reads the count; until then a count costs one relaxed load, not
//! a write every core contends for); the one a cut is armed for is started (polled once: a
//! statement is sent) and then never finishes, and the harness drops the operation's future
//! there. Dropping a future after so many polls instead would cut it at
//! a point that moves with the machine's timing (whether an answer is there at the next poll),
//! and a failure found that way could not be shrunk: each re-run would cut somewhere else.

use super::DbError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FaultKind {
    /// The statement fails with [`DbError::Injected`].
    Error,
    /// The task panics, as a bug would, with a transaction open.
    Panic,
}

/// A fault armed for the `at`-th fault point from now (0: the very next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    pub at: u8,
    pub kind: FaultKind,
}

/// Where in an operation a fault point stands.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Point {
    /// Before the n-th statement of a guard (1-based).
    Statement(u32),
    Commit,
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Statement(n) => write!(f, "statement {n}"),
            Point::Commit => f.write_str("commit"),
        }
    }
}

/// The message every injected panic starts with, so a panic hook can keep them quiet.
pub const INJECTED_PANIC: &str = "leakproof: injected panic";

#[derive(Debug)]
pub(crate) struct Faults {
    armed: AtomicBool,
    state: Mutex<Armed>,
    /// Awaits are counted: the harness asked for a cut or for the count.
    counting: AtomicBool,
    /// Awaits on the database started since counting began.
    awaits: AtomicU64,
    /// The count of the await to cut ([`NO_CUT`]: none).
    cut_at: AtomicU64,
    cut_reached: AtomicBool,
}

const NO_CUT: u64 = u64::MAX;

impl Default for Faults {
    fn default() -> Self {
        Self {
            armed: AtomicBool::new(false),
            state: Mutex::default(),
            counting: AtomicBool::new(false),
            awaits: AtomicU64::new(0),
            cut_at: AtomicU64::new(NO_CUT),
            cut_reached: AtomicBool::new(false),
        }
    }
}

#[derive(Debug, Default)]
struct Armed {
    fault: Option<Fault>,
    passed: u8,
    fired: Option<String>,
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn arm(&self, fault: Fault) {
        *self.state() = Armed {
            fault: Some(fault),
            passed: 0,
            fired: None,
        };
        self.armed.store(true, Ordering::Release);
    }

    /// Disarms; returns the point where the fault fired, if it did.
    pub(crate) fn disarm(&self) -> Option<String> {
        self.armed.store(false, Ordering::Release);
        let mut state = self.state();
        state.fault = None;
        state.fired.take()
    }

    /// A fault point named by the operation holding the guard and what it is about to do.
    pub(crate) fn point(&self, holder: &'static str, what: Point) -> Result<(), DbError> {
        if !self.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let kind = {
            let mut state = self.state();
            let Some(fault) = state.fault else {
                return Ok(());
            };
            if state.passed < fault.at {
                state.passed += 1;
                return Ok(());
            }
            let point = format!("{holder} before {what}");
            state.fault = None;
            state.fired = Some(point);
            self.armed.store(false, Ordering::Release);
            fault.kind
        };
        match kind {
            FaultKind::Error => Err(DbError::Injected { holder }),
            FaultKind::Panic => panic!("{INJECTED_PANIC} in {holder} before {what}"),
        }
    }
}

impl Faults {
    /// Arms a cut at the `at`-th await on the database from now (0: the very next one).
    pub(crate) fn arm_cut(&self, at: u32) {
        self.counting.store(true, Ordering::Relaxed);
        self.cut_reached.store(false, Ordering::Relaxed);
        let at = self.awaits.load(Ordering::Relaxed) + u64::from(at);
        self.cut_at.store(at, Ordering::Release);
    }

    /// Disarms the cut; true if an await reached it.
    pub(crate) fn disarm_cut(&self) -> bool {
        self.cut_at.store(NO_CUT, Ordering::Release);
        self.cut_reached.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn cut_reached(&self) -> bool {
        self.cut_reached.load(Ordering::Acquire)
    }

    /// Awaits started since counting began (this call begins it: compare two calls).
    pub(crate) fn awaits_started(&self) -> u64 {
        self.counting.store(true, Ordering::Relaxed);
        self.awaits.load(Ordering::Relaxed)
    }

    /// Counts an await on the database; true if it is the armed cut.
    pub(crate) fn cut_here(&self) -> bool {
        if !self.counting.load(Ordering::Relaxed) {
            return false;
        }
        let n = self.awaits.fetch_add(1, Ordering::Relaxed);
        if n != self.cut_at.load(Ordering::Acquire) {
            return false;
        }
        self.cut_at.store(NO_CUT, Ordering::Relaxed);
        self.cut_reached.store(true, Ordering::Release);
        true
    }
}

/// Awaits `io`, polling it again for up to `spin` before the task sleeps
/// ([`PoolConfig::answer_spin`](super::PoolConfig::answer_spin)); if it is the cut, starts it
/// (one poll) and then never finishes.
pub(crate) async fn unless_cut<F: Future>(cut: bool, spin: Duration, io: F) -> F::Output {
    if !cut {
        return spin_then_await(spin, io).await;
    }
    let mut io = std::pin::pin!(io);
    // Whatever the first poll gave (a connection, an answer) is dropped at once.
    drop(futures::poll!(io.as_mut()));
    std::future::pending().await
}

/// Polls `io` until it is ready or `spin` has passed, then awaits it as usual. The first
/// poll sends the request; the re-polls only look for the answer, each with the task's own
/// waker, so an answer that comes after the spin still wakes the task. A task waiting in the
/// runtime's global queue (woken from outside it: another connection's answer) ends the spin,
/// so that spinning never keeps a worker from work it could do.
async fn spin_then_await<F: Future>(spin: Duration, io: F) -> F::Output {
    debug_assert!(
        spin <= super::MAX_ANSWER_SPIN,
        "connect_with bounds the spin"
    );
    let mut io = std::pin::pin!(io);
    let runtime = tokio::runtime::Handle::try_current().map(|h| h.metrics());
    let others_waiting = || runtime.as_ref().is_ok_and(|m| m.global_queue_depth() > 0);
    let mut first = true;
    std::future::poll_fn(|cx| {
        if !std::mem::take(&mut first) || spin.is_zero() {
            return io.as_mut().poll(cx);
        }
        let deadline = Instant::now() + spin;
        loop {
            let polled = io.as_mut().poll(cx);
            if polled.is_ready() || others_waiting() || Instant::now() >= deadline {
                return polled;
            }
            std::hint::spin_loop();
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    /// Ready once `at` has passed, as an answer on a channel would be: each poll leaves its
    /// waker, and one thread wakes the latest at `at`. Counts its polls.
    struct ReadyAfter {
        at: Instant,
        polls: std::sync::Arc<std::sync::atomic::AtomicU32>,
        waker: std::sync::Arc<Mutex<Option<std::task::Waker>>>,
        answering: bool,
    }

    impl Future for ReadyAfter {
        type Output = u32;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<u32> {
            let polls = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if Instant::now() >= self.at {
                return Poll::Ready(polls);
            }
            *self.waker.lock().expect("test waker") = Some(cx.waker().clone());
            if !std::mem::replace(&mut self.answering, true) {
                let (waker, at) = (std::sync::Arc::clone(&self.waker), self.at);
                std::thread::spawn(move || {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    if let Some(waker) = waker.lock().expect("test waker").take() {
                        waker.wake();
                    }
                });
            }
            Poll::Pending
        }
    }

    fn ready_after(wait: Duration) -> ReadyAfter {
        ReadyAfter {
            at: Instant::now() + wait,
            polls: Default::default(),
            waker: Default::default(),
            answering: false,
        }
    }

    /// Whether `spin_then_await` finished within its first poll, and how many polls it took.
    fn first_poll(spin: Duration, io: ReadyAfter) -> Poll<u32> {
        let mut spun = std::pin::pin!(spin_then_await(spin, io));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        spun.as_mut().poll(&mut cx)
    }

    #[test]
    fn an_answer_within_the_spin_is_taken_without_sleeping() {
        let Poll::Ready(polls) = first_poll(
            Duration::from_micros(200),
            ready_after(Duration::from_micros(50)),
        ) else {
            panic!("an answer 50 us away, a spin of 200 us: ready at the first poll");
        };
        assert!(polls > 1, "re-polled until the answer came ({polls} polls)");
    }

    #[test]
    fn past_the_spin_the_task_sleeps_and_the_answer_wakes_it() {
        let spin = Duration::from_micros(20);
        let began = Instant::now();
        let io = ready_after(Duration::from_millis(50));
        assert!(first_poll(spin, io).is_pending(), "no answer within 20 us");
        assert!(
            began.elapsed() < Duration::from_millis(40),
            "gave up after the spin"
        );
        assert_eq!(
            first_poll(Duration::ZERO, ready_after(Duration::from_millis(50))),
            Poll::Pending
        );
        // Asleep, it is woken by the answer it was waiting for.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let answered = rt.block_on(async {
            let io = spin_then_await(spin, ready_after(Duration::from_millis(20)));
            tokio::time::timeout(Duration::from_secs(5), io).await
        });
        assert!(answered.is_ok(), "the answer's wake was not lost");
    }

    #[test]
    fn a_task_waiting_in_the_runtime_ends_the_spin() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _inside = rt.enter();
        let io = ready_after(Duration::from_millis(50));
        let polls = std::sync::Arc::clone(&io.polls);
        assert!(first_poll(MAX_SPIN_FOR_TEST, io).is_pending());
        assert!(
            polls.load(Ordering::Relaxed) > 1,
            "no task waiting: it spun"
        );
        // Spawned outside `block_on`: it waits in the runtime's global queue.
        drop(rt.spawn(async {}));
        let io = ready_after(Duration::from_millis(50));
        let polls = std::sync::Arc::clone(&io.polls);
        assert!(first_poll(MAX_SPIN_FOR_TEST, io).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "a task waiting: one poll, no spin"
        );
    }

    const MAX_SPIN_FOR_TEST: Duration = super::super::MAX_ANSWER_SPIN;

    #[test]
    fn no_spin_polls_once() {
        assert_eq!(
            first_poll(Duration::ZERO, ready_after(Duration::ZERO)),
            Poll::Ready(1)
        );
    }

    #[test]
    fn a_cut_falls_on_the_armed_await_once_and_disarm_says_whether_it_did() {
        let faults = Faults::default();
        assert!(!faults.cut_here(), "no cut armed");
        assert_eq!(
            faults.awaits_started(),
            0,
            "not counted before anyone asked"
        );
        assert!(!faults.cut_here());
        faults.arm_cut(2);
        let awaits: Vec<bool> = (0..5).map(|_| faults.cut_here()).collect();
        assert_eq!(awaits, [false, false, true, false, false]);
        assert!(faults.cut_reached());
        assert_eq!(faults.awaits_started(), 6, "counted since the first ask");
        assert!(faults.disarm_cut(), "reached");
        assert!(!faults.cut_reached(), "disarming clears it");
        faults.arm_cut(3);
        assert!(!faults.cut_here());
        assert!(!faults.disarm_cut(), "not reached");
        assert!((0..5).all(|_| !faults.cut_here()), "disarmed: no cut");
    }
}
