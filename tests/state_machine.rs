//! The state machines: generated op sequences on SQLite and PostgreSQL — with injected errors
//! and panics, cancellations, timeouts, a starved pool, killed connections and concurrent
//! batches — each step compared with the model and followed by the zero-sessions check.
//! Failures shrink to a short transcript.
//!
//! Budget: `LEAKPROOF_CASES` sequences (default 256) of up to `LEAKPROOF_STEPS` steps (default
//! 50) per backend, generated from `LEAKPROOF_SEED` (default fixed, so CI is reproducible; the
//! seed is printed). Failing cases are saved to `tests/regressions/` and replayed first.

mod common;

use leakproof::harness::machine::{self, Budget};

/// Runs one state machine; a run of at least the default size must also reach every op kind
/// and every rejection kind (the table is printed either way).
fn run(budget: Budget) {
    let full = budget.cases >= Budget::DEFAULT_CASES;
    match machine::run(&budget) {
        Ok(report) => {
            println!("{report}");
            let missing = report.coverage.missing();
            assert!(
                !full || missing.is_empty(),
                "never reached: {missing:?}\n{report}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn sqlite_state_machine() {
    run(Budget {
        regressions: Some("tests/regressions/state_machine_sqlite.txt"),
        ..Budget::from_env()
    });
}

#[test]
fn postgres_state_machine() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    run(Budget {
        postgres_url: Some(url),
        regressions: Some("tests/regressions/state_machine_postgres.txt"),
        ..Budget::from_env()
    });
}
