//! Time is injected, never read from the wall inside logic (DESIGN rule 12).
//!
//! Everything stores and compares whole seconds since the Unix epoch, so the model, SQLite and
//! PostgreSQL agree on `now >= expires_at` to the second.

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Mutex;

/// Seconds since the Unix epoch, UTC. The only time representation that reaches storage.
pub type Epoch = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// `now`, truncated to whole seconds: the value stored and compared everywhere.
    fn epoch(&self) -> Epoch {
        self.now().timestamp()
    }
}

/// The wall clock, for the `leakproof` binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; tests, the model and the harness share one.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A fixed, arbitrary start (2026-01-01T00:00:00Z) so transcripts are reproducible.
    pub const START: Epoch = 1_767_225_600;

    pub fn new() -> Self {
        Self::at(Self::START)
    }

    pub fn at(epoch: Epoch) -> Self {
        let start = DateTime::from_timestamp(epoch, 0).unwrap_or(DateTime::UNIX_EPOCH);
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: TimeDelta) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }

    pub fn advance_secs(&self, secs: i64) {
        self.advance(TimeDelta::seconds(secs));
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        assert_eq!(clock.epoch(), ManualClock::START);
        clock.advance_secs(600);
        assert_eq!(clock.epoch(), ManualClock::START + 600);
    }
}
