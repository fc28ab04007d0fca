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
use super::spin::AnswerSpin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// One await on the database, counted ([`Faults::next_await`]): whether it is the armed cut,
/// and, for a statement, how its answer is awaited ([`AnswerSpin`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbAwait<'a> {
    cut: bool,
    spin: Option<&'a AnswerSpin>,
}

impl Faults {
    /// Counts an await on the database ([`Faults::cut_here`]); `spin` for a statement's answer.
    pub(crate) fn next_await<'a>(&self, spin: Option<&'a AnswerSpin>) -> DbAwait<'a> {
        DbAwait {
            cut: self.cut_here(),
            spin,
        }
    }
}

impl DbAwait<'_> {
    /// Awaits `io`; if it is the cut, starts it (exactly one poll, no spin) and then never
    /// finishes.
    pub(crate) async fn run<F: Future>(self, io: F) -> F::Output {
        if !self.cut {
            return match self.spin {
                Some(spin) => spin.answer(io).await,
                None => io.await,
            };
        }
        let mut io = std::pin::pin!(io);
        // Whatever the first poll gave (a connection, an answer) is dropped at once.
        drop(futures::poll!(io.as_mut()));
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
