//! The state machines: generated op sequences on SQLite and PostgreSQL, each step compared with
//! the model and followed by the zero-sessions check. Failures shrink to a short transcript.
//!
//! Budget: `LEAKPROOF_CASES` sequences (default 256) of up to `LEAKPROOF_STEPS` ops (default
//! 40) per backend, generated from `LEAKPROOF_SEED` (default fixed, so CI is reproducible; the
//! seed is printed). Failing cases are saved to `tests/regressions/` and replayed first.

mod common;

use leakproof::db::scratch::{self, Scratch};
use leakproof::db::{Db, SETTLE_DEADLINE};
use leakproof::harness::{Coverage, Op, Runner, strategy};
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};
use std::cell::RefCell;
use std::time::Instant;

fn env_number(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default seed: any fixed value; change it with `LEAKPROOF_SEED` to explore elsewhere.
const DEFAULT_SEED: u64 = 0x1ea4_9400f;

fn seed() -> u64 {
    std::env::var("LEAKPROOF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn config(regressions: &'static str) -> Config {
    Config {
        cases: env_number("LEAKPROOF_CASES", 256),
        rng_seed: RngSeed::Fixed(seed()),
        max_shrink_iters: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}

/// One case: an empty database, a fresh model, the sequence; every step checked.
async fn run_case(db: &Db, ops: &[Op], total: &RefCell<Coverage>) -> Result<(), String> {
    scratch::reset(db).await.map_err(|e| e.to_string())?;
    let mut runner = Runner::new(db.clone());
    let result = runner.run(ops).await.map_err(|f| f.to_string());
    total.borrow_mut().merge(&runner.coverage);
    result
}

/// Runs the state machine on one scratch database (reset between cases), then closes it and
/// requires all three views at zero.
fn state_machine(url: Option<String>, regressions: &'static str) -> Coverage {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scratch = rt
        .block_on(async {
            match &url {
                None => Scratch::sqlite(),
                Some(url) => Scratch::postgres(url).await,
            }
        })
        .expect("scratch database");
    let db = rt.block_on(Db::connect(&scratch.url)).expect("connect");
    let total = RefCell::new(Coverage::default());
    let mut runner = TestRunner::new(config(regressions));
    let max_len = env_number("LEAKPROOF_STEPS", 40) as usize;
    let started = Instant::now();
    let result = runner.run(&strategy::ops(max_len), |ops| {
        rt.block_on(run_case(&db, &ops, &total))
            .map_err(TestCaseError::fail)
    });
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!(
                "state machine failed; shrunk to {} ops:\n{reason}",
                ops.len()
            )
        }
        Err(e) => panic!("{e}"),
    }
    let closed = rt
        .block_on(db.close(SETTLE_DEADLINE))
        .expect("close to zero sessions");
    assert!(closed.is_closed(), "{closed}");
    rt.block_on(scratch.remove()).expect("remove scratch");
    let total = total.into_inner();
    println!("{total}");
    println!(
        "seed {}: {} steps in {seconds:.2}s: {:.0} steps/s",
        seed(),
        total.steps,
        total.steps as f64 / seconds
    );
    total
}

#[test]
fn sqlite_state_machine() {
    let coverage = state_machine(None, "tests/regressions/state_machine_sqlite.txt");
    let missing = coverage.missing();
    assert!(missing.is_empty(), "never reached: {missing:?}\n{coverage}");
}

#[test]
fn postgres_state_machine() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let coverage = state_machine(Some(url), "tests/regressions/state_machine_postgres.txt");
    let missing = coverage.missing();
    assert!(missing.is_empty(), "never reached: {missing:?}\n{coverage}");
}
