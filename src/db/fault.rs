//! Fault points (FoundationDB's BUGGIFY idea): every statement and every commit passes one. The
//! harness arms a fault — "the n-th point from now fails" or "panics" — and the next op meets
//! it wherever it stands: before its first statement, between two, or before its commit.
//! Unarmed, a point costs one relaxed atomic load.

use super::DbError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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

#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: AtomicBool,
    state: Mutex<Armed>,
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
