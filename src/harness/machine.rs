//! The proptest state machine: generated op sequences run by the [`Runner`] on one scratch
//! database (emptied between cases), shrunk to a minimal transcript on failure.
//!
//! Why not `proptest-state-machine`: ops name earlier results by position, so no precondition
//! or state-dependent generation is needed to keep a shrunk sequence meaningful, and proptest's
//! own `Vec` shrinking removes ops as well; the runner is async and shared with the fuzzer and
//! `soak`, where that crate's synchronous `StateMachineTest` would not serve.

use super::op::Step;
use super::runner::{Coverage, Runner};
use super::strategy;
use crate::db::scratch::{self, Scratch};
use crate::db::{Backend, Db, DbError, PoolConfig, SETTLE_DEADLINE};
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};
use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

/// The default seed: any fixed value, so a default run is reproducible.
pub const DEFAULT_SEED: u64 = 0x1ea4_9400f;

/// A run's budget and where it runs.
#[derive(Debug, Clone)]
pub struct Budget {
    pub cases: u32,
    pub max_steps: usize,
    pub seed: u64,
    /// PostgreSQL URL (a scratch schema is made in it); `None` runs on a scratch SQLite file.
    pub postgres_url: Option<String>,
    /// Where proptest saves failing cases and replays them from first.
    pub regressions: Option<&'static str>,
    /// How long each step may take to return its sessions before it counts as a leak.
    pub settle: Duration,
}

impl Budget {
    /// Cases in a default run: enough that the default seed reaches every op and rejection kind.
    pub const DEFAULT_CASES: u32 = 256;

    /// The default budget, changed by `LEAKPROOF_CASES`, `LEAKPROOF_STEPS` and `LEAKPROOF_SEED`.
    pub fn from_env() -> Self {
        fn number<T: std::str::FromStr>(var: &str, default: T) -> T {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        }
        Self {
            cases: number("LEAKPROOF_CASES", Self::DEFAULT_CASES),
            max_steps: number("LEAKPROOF_STEPS", 50),
            seed: number("LEAKPROOF_SEED", DEFAULT_SEED),
            postgres_url: None,
            regressions: None,
            settle: Duration::from_millis(number("LEAKPROOF_SETTLE_MS", 500)),
        }
    }
}

/// A passing run.
#[derive(Debug, Clone)]
pub struct Report {
    pub coverage: Coverage,
    pub elapsed: Duration,
    pub seed: u64,
}

impl Report {
    pub fn steps_per_second(&self) -> f64 {
        self.coverage.steps as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.coverage)?;
        write!(
            f,
            "seed {}: {} steps in {:.2}s, {:.0} steps/s",
            self.seed,
            self.coverage.steps,
            self.elapsed.as_secs_f64(),
            self.steps_per_second()
        )
    }
}

/// A failing run, after shrinking.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The shrunk sequence's length.
    pub steps: usize,
    /// The runner's transcript of the shrunk sequence and the violation.
    pub transcript: String,
    pub seed: u64,
    /// Time and steps run until the first failing case (before shrinking).
    pub found_after: Duration,
    pub steps_before: u64,
    /// Time until shrinking was done.
    pub shrunk_after: Duration,
}

impl fmt::Display for Shrunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: failed after {} steps ({:.2}s); shrunk to {} steps ({:.2}s):\n{}",
            self.seed,
            self.steps_before,
            self.found_after.as_secs_f64(),
            self.steps,
            self.shrunk_after.as_secs_f64(),
            self.transcript
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{0}")]
    Failed(Shrunk),
    #[error("could not set up the database: {0}")]
    Setup(#[from] DbError),
    #[error("{0}")]
    Runner(String),
}

/// A scratch database and its pool. After a failed case it is thrown away: a leaked session
/// may still hold locks or rows, and every later case (shrinking runs hundreds) would inherit it.
struct Place {
    scratch: Scratch,
    db: Db,
}

impl Place {
    async fn new(budget: &Budget) -> Result<Self, DbError> {
        let scratch = match &budget.postgres_url {
            None => Scratch::sqlite()?,
            Some(url) => Scratch::postgres(url).await?,
        };
        let db = Db::connect_with(&scratch.url, harness_pool(&scratch.url)?).await?;
        Ok(Self { scratch, db })
    }

    /// Closes and removes; with `deadline` short when a leak is already known.
    async fn discard(self, deadline: Duration) -> Result<(), DbError> {
        let closed = self.db.close(deadline).await;
        let removed = self.scratch.remove().await;
        closed?;
        removed
    }
}

/// The most re-runs the deletion pass may spend after proptest's shrinking.
const DELETION_BUDGET: usize = 200;

/// proptest deletes each op once, before it simplifies the rest; an op that becomes removable
/// only later stays. This pass removes single ops while the failure persists, until no single
/// removal keeps it failing (1-minimal) or its budget is spent.
fn delete_greedily(
    mut ops: Vec<Step>,
    mut reason: String,
    case: &impl Fn(&[Step]) -> Result<(), String>,
) -> (Vec<Step>, String) {
    let mut runs = 0;
    let mut i = 0;
    while i < ops.len() && runs < DELETION_BUDGET {
        let mut candidate = ops.clone();
        candidate.remove(i);
        runs += 1;
        match case(&candidate) {
            Err(why) => {
                ops = candidate;
                reason = why;
                i = 0;
            }
            Ok(()) => i += 1,
        }
    }
    (ops, reason)
}

/// The harness's pool: 4 connections, so a batch (at most 4 ops) never waits for one; and a
/// short acquire timeout, so a starved op gives up in milliseconds.
fn harness_pool(url: &str) -> Result<PoolConfig, DbError> {
    Ok(PoolConfig {
        max_connections: 4,
        acquire_timeout: Duration::from_millis(20),
        ..PoolConfig::for_backend(Backend::of_url(url)?)
    })
}

/// How long a discarded database may take to close: its leak is already reported.
const DISCARD_DEADLINE: Duration = Duration::from_millis(100);

/// Runs the state machine within `budget` on a scratch database, and closes it to zero
/// sessions at the end. Blocks; builds its own tokio runtime.
pub fn run(budget: &Budget) -> Result<Report, MachineError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| MachineError::Runner(e.to_string()))?;
    let place = RefCell::new(Some(rt.block_on(Place::new(budget))?));
    let result = explore(&rt, &place, budget);
    if let Some(place) = place.into_inner() {
        rt.block_on(place.discard(SETTLE_DEADLINE))?;
    }
    result
}

fn explore(
    rt: &tokio::runtime::Runtime,
    place: &RefCell<Option<Place>>,
    budget: &Budget,
) -> Result<Report, MachineError> {
    let config = Config {
        cases: budget.cases,
        max_shrink_iters: 4096,
        rng_seed: RngSeed::Fixed(budget.seed),
        failure_persistence: budget
            .regressions
            .map(|path| Box::new(FileFailurePersistence::Direct(path)) as Box<_>),
        ..Config::default()
    };
    let total = RefCell::new(Coverage::default());
    let first_failure = std::cell::Cell::new(None);
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let case = |ops: &[Step]| -> Result<(), String> {
        rt.block_on(async {
            let current = place.borrow_mut().take();
            let current = match current {
                Some(p) => p,
                None => Place::new(budget).await.map_err(|e| e.to_string())?,
            };
            scratch::reset(&current.db)
                .await
                .map_err(|e| e.to_string())?;
            let mut runner = Runner::new(current.db.clone()).with_settle_deadline(budget.settle);
            let outcome = runner.run(ops).await;
            total.borrow_mut().merge(&runner.coverage);
            match outcome {
                Ok(()) => {
                    *place.borrow_mut() = Some(current);
                    Ok(())
                }
                Err(failure) => {
                    if first_failure.get().is_none() {
                        first_failure.set(Some((started.elapsed(), total.borrow().steps)));
                    }
                    let _ = current.discard(DISCARD_DEADLINE).await;
                    Err(failure.to_string())
                }
            }
        })
    };
    let result = runner.run(&strategy::steps(budget.max_steps), |ops| {
        case(&ops).map_err(TestCaseError::fail)
    });
    let result = match result {
        Err(TestError::Fail(reason, ops)) => {
            let (ops, reason) = delete_greedily(ops, reason.message().to_owned(), &case);
            Err(TestError::Fail(reason.into(), ops))
        }
        other => other,
    };
    match result {
        Ok(()) => Ok(Report {
            coverage: total.into_inner(),
            elapsed: started.elapsed(),
            seed: budget.seed,
        }),
        Err(TestError::Fail(reason, ops)) => {
            let (found_after, steps_before) = first_failure.get().unwrap_or_default();
            Err(MachineError::Failed(Shrunk {
                steps: ops.len(),
                transcript: reason.message().to_owned(),
                seed: budget.seed,
                found_after,
                steps_before,
                shrunk_after: started.elapsed(),
            }))
        }
        Err(TestError::Abort(reason)) => Err(MachineError::Runner(reason.message().to_owned())),
    }
}
