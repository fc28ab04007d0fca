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
use crate::db::{Backend, Db, DbError, PoolConfig, SETTLE_DEADLINE, SessionViews};
use crate::harness::{Failure, Violation};
use proptest::strategy::ValueTree;
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

/// How long proptest's own shrinking may take before the deletion pass goes on from where it
/// stands. A failing run of a leak takes the whole quiescence deadline (seconds), and proptest
/// removes one step per failing run: a 50-step case would take minutes.
const PROPTEST_SHRINK_MILLIS: u32 = 15_000;

/// The most re-runs the deletion pass may spend after proptest's shrinking.
const DELETION_BUDGET: usize = 400;

/// Runs per candidate when the sequence holds a race (a batch, a timeout, a kill
/// mid-operation): the interleaving that failed may not come back on the first try.
const RACE_ATTEMPTS: usize = 3;

fn has_race(steps: &[Step]) -> bool {
    steps.iter().any(|step| {
        matches!(
            step,
            Step::Batch(_) | Step::TimedOut { .. } | Step::KillDuring { .. }
        )
    })
}

/// A failed case: the transcript and violation, and how many steps ran (the failing one last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure {
    pub ran: usize,
    pub message: String,
    /// The case's steps as they ran, timeouts pinned (`Runner::as_run`); empty if none ran.
    pub as_run: Vec<Step>,
}

impl CaseFailure {
    /// The steps to go on shrinking from: as they ran if known, else those given.
    fn replay(&self, given: Vec<Step>) -> Vec<Step> {
        if self.as_run.is_empty() {
            given
        } else {
            self.as_run.clone()
        }
    }
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// proptest deletes each step once, before it simplifies the rest; a step that becomes
/// removable only later stays. This pass drops the steps after the failing one (they never
/// ran), then removes runs of steps, halving their length (a failing run costs seconds when
/// the failure is a leak, so a long sequence is cut in a few of them, not one per step), then
/// single steps from the last back, repeating until no single removal keeps it failing
/// (1-minimal) or its budget is spent.
pub fn delete_greedily(
    steps: Vec<Step>,
    reason: CaseFailure,
    case: &impl Fn(&[Step]) -> Result<(), CaseFailure>,
) -> (Vec<Step>, String) {
    let mut shrinking = Deletion {
        steps: reason.replay(steps),
        reason,
        runs: 0,
    };
    shrinking.steps.truncate(shrinking.reason.ran.max(1));
    let mut run = shrinking.steps.len() / 2;
    while run >= 2 {
        // The last step (the failing one) stays.
        let mut start = 0;
        while start + run < shrinking.steps.len() && shrinking.runs < DELETION_BUDGET {
            if !shrinking.remove(start..start + run, case) {
                start += run;
            }
        }
        run /= 2;
    }
    loop {
        let before = shrinking.steps.len();
        let mut i = shrinking.steps.len();
        while i > 0 && shrinking.runs < DELETION_BUDGET {
            i -= 1;
            shrinking.remove(i..i + 1, case);
        }
        if shrinking.steps.len() == before || shrinking.runs >= DELETION_BUDGET {
            return (shrinking.steps, shrinking.reason.message);
        }
    }
}

/// The deletion pass's failing sequence so far.
struct Deletion {
    steps: Vec<Step>,
    reason: CaseFailure,
    runs: usize,
}

impl Deletion {
    /// Tries the sequence without `range`; keeps it if it still fails.
    fn remove(
        &mut self,
        range: std::ops::Range<usize>,
        case: &impl Fn(&[Step]) -> Result<(), CaseFailure>,
    ) -> bool {
        let mut candidate = self.steps.clone();
        candidate.drain(range);
        let attempts = if has_race(&candidate) {
            RACE_ATTEMPTS
        } else {
            1
        };
        for _ in 0..attempts {
            self.runs += 1;
            if let Err(why) = case(&candidate) {
                self.steps = why.replay(candidate);
                self.steps.truncate(why.ran.max(1));
                self.reason = why;
                return true;
            }
        }
        false
    }
}

/// Shrinks a failing sequence as proptest's runner does (simplify while it fails, complicate
/// when it passes), at most `budget` runs, then deletes single steps greedily.
pub fn shrink(
    tree: &mut impl ValueTree<Value = Vec<Step>>,
    reason: CaseFailure,
    case: &impl Fn(&[Step]) -> Result<(), CaseFailure>,
    budget: usize,
) -> (Vec<Step>, String) {
    let mut best = (tree.current(), reason);
    let mut runs = 0;
    'simplify: while runs < budget && tree.simplify() {
        loop {
            runs += 1;
            match case(&tree.current()) {
                Err(why) => {
                    best = (tree.current(), why);
                    continue 'simplify;
                }
                Ok(()) if runs < budget && tree.complicate() => {}
                Ok(()) => break 'simplify,
            }
        }
    }
    delete_greedily(best.0, best.1, case)
}

/// A scratch database and its pool. After a failed case it is thrown away: a leaked session
/// may still hold locks or rows, and every later case (shrinking runs hundreds) would inherit it.
struct Place {
    scratch: Scratch,
    db: Db,
    /// A setup this database holds a snapshot of, and the runner as it stood after it.
    after_setup: Option<(Vec<Step>, Runner)>,
}

/// Where a lab makes its scratch databases.
#[derive(Debug, Clone)]
pub enum Target {
    /// SQLite files in a temporary directory.
    TempSqlite,
    /// SQLite files `<prefix>-<random>.db` in this directory.
    SqliteIn {
        dir: std::path::PathBuf,
        prefix: String,
    },
    /// Fresh schemas in the PostgreSQL database at this URL.
    Postgres(String),
}

impl Place {
    async fn new(target: &Target) -> Result<Self, DbError> {
        let scratch = match target {
            Target::TempSqlite => Scratch::sqlite()?,
            Target::SqliteIn { dir, prefix } => Scratch::sqlite_in(dir, prefix)?,
            Target::Postgres(url) => Scratch::postgres(url).await?,
        };
        let db = Db::connect_with(&scratch.url, harness_pool(&scratch.url)?).await?;
        Ok(Self {
            scratch,
            db,
            after_setup: None,
        })
    }

    /// Closes and removes; with `deadline` short when a leak is already known.
    async fn discard(self, deadline: Duration) -> Result<SessionViews, DbError> {
        let closed = self.db.close(deadline).await;
        let removed = self.scratch.remove().await;
        let views = closed?;
        removed?;
        Ok(views)
    }
}

/// The harness's pool: 4 connections, so a batch (at most 4 ops) never waits for one. The
/// acquire timeout is the default (seconds: opening a connection on a loaded machine can take
/// tens of milliseconds); a starved step shortens it for its op alone.
fn harness_pool(url: &str) -> Result<PoolConfig, DbError> {
    Ok(PoolConfig {
        max_connections: 4,
        ..PoolConfig::for_backend(Backend::of_url(url)?)
    })
}

/// How long a discarded database may take to close: its leak is already reported.
const DISCARD_DEADLINE: Duration = Duration::from_millis(100);

/// Where cases run: a runtime and a scratch database (replaced after a failure), with the
/// coverage of every case run so far and the highest session counts seen.
pub struct Lab {
    rt: tokio::runtime::Runtime,
    place: RefCell<Option<Place>>,
    target: Target,
    settle: Duration,
    pub coverage: RefCell<Coverage>,
    pub peaks: RefCell<Peaks>,
}

/// The most sessions each view showed at once, sampled at the end of every case.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peaks {
    pub ledger: usize,
    pub pool: u32,
    pub server: u32,
}

impl Peaks {
    pub fn merge(&mut self, other: &Peaks) {
        self.ledger = self.ledger.max(other.ledger);
        self.pool = self.pool.max(other.pool);
        self.server = self.server.max(other.server);
    }
}

impl Lab {
    pub fn new(target: Target, settle: Duration) -> Result<Self, MachineError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| MachineError::Runner(e.to_string()))?;
        let place = rt.block_on(Place::new(&target))?;
        Ok(Self {
            rt,
            place: RefCell::new(Some(place)),
            target,
            settle,
            coverage: RefCell::default(),
            peaks: RefCell::default(),
        })
    }

    /// Runs one sequence on an emptied database with a fresh model; every step checked.
    pub fn case(&self, steps: &[Step]) -> Result<(), CaseFailure> {
        self.case_after(&[], steps)
    }

    /// Runs `setup` then `steps`, as [`Lab::case`] runs them one after the other, but the
    /// setup only the first time: its database state is kept (`scratch::snapshot`) and later
    /// cases with the same setup start from it restored, with the runner as it stood. A
    /// fuzzer that prefixes most inputs with the same setup spends its time on the rest.
    pub fn case_after(&self, setup: &[Step], steps: &[Step]) -> Result<(), CaseFailure> {
        let storage = |e: DbError| Failure {
            step: 0,
            violation: Violation::Storage(e.to_string()),
            transcript: Vec::new(),
            as_run: Vec::new(),
        };
        self.rt.block_on(async {
            let current = self.place.borrow_mut().take();
            let mut current = match current {
                Some(p) => p,
                None => Place::new(&self.target).await.map_err(|e| CaseFailure {
                    ran: 0,
                    message: e.to_string(),
                    as_run: Vec::new(),
                })?,
            };
            current.db.ledger().reset_peak();
            let outcome = async {
                let mut runner = match &current.after_setup {
                    Some((saved, runner)) if saved.as_slice() == setup => {
                        scratch::restore(&current.db).await.map_err(storage)?;
                        runner.fork()
                    }
                    _ => {
                        scratch::reset(&current.db).await.map_err(storage)?;
                        let mut runner =
                            Runner::new(current.db.clone()).with_settle_deadline(self.settle);
                        if !setup.is_empty() {
                            current.after_setup = None;
                            runner.run(setup).await?;
                            scratch::snapshot(&current.db).await.map_err(storage)?;
                            current.after_setup = Some((setup.to_vec(), runner.fork()));
                        }
                        runner
                    }
                };
                let outcome = runner.run(steps).await;
                self.coverage.borrow_mut().merge(&runner.coverage);
                outcome
            }
            .await;
            let views = current.db.views().await;
            if let Ok(views) = views {
                self.peaks.borrow_mut().merge(&Peaks {
                    // Counted from the `reset_peak` this case began with.
                    ledger: views.ledger.peak.unwrap_or(views.ledger.open),
                    pool: views.pool.size,
                    server: views.server.connections,
                });
            }
            match outcome {
                Ok(()) => {
                    *self.place.borrow_mut() = Some(current);
                    Ok(())
                }
                Err(failure) => {
                    let _ = current.discard(DISCARD_DEADLINE).await;
                    Err(CaseFailure {
                        ran: failure.step,
                        message: failure.to_string(),
                        as_run: failure
                            .as_run
                            .get(setup.len()..)
                            .unwrap_or_default()
                            .to_vec(),
                    })
                }
            }
        })
    }

    /// Closes the database and requires every view at zero.
    pub fn close(self) -> Result<SessionViews, MachineError> {
        let place = self.place.into_inner();
        match place {
            Some(place) => Ok(self.rt.block_on(place.discard(SETTLE_DEADLINE))?),
            None => Ok(SessionViews::default()),
        }
    }
}

/// Runs the state machine within `budget` on a scratch database, and closes it to zero
/// sessions at the end. Blocks; builds its own tokio runtime.
pub fn run(budget: &Budget) -> Result<Report, MachineError> {
    let target = match &budget.postgres_url {
        Some(url) => Target::Postgres(url.clone()),
        None => Target::TempSqlite,
    };
    let lab = Lab::new(target, budget.settle)?;
    let result = explore(&lab, budget);
    let coverage = lab.coverage.borrow().clone();
    lab.close()?;
    result.map(|(elapsed, _)| Report {
        coverage,
        elapsed,
        seed: budget.seed,
    })
}

fn explore(lab: &Lab, budget: &Budget) -> Result<(Duration, ()), MachineError> {
    let config = Config {
        cases: budget.cases,
        max_shrink_iters: 4096,
        max_shrink_time: PROPTEST_SHRINK_MILLIS,
        rng_seed: RngSeed::Fixed(budget.seed),
        failure_persistence: budget
            .regressions
            .map(|path| Box::new(FileFailurePersistence::Direct(path)) as Box<_>),
        ..Config::default()
    };
    let first_failure = std::cell::Cell::new(None);
    // proptest reports the last failing value; this is that run's failure.
    let last_failure = RefCell::new(None);
    let started = Instant::now();
    let case = |steps: &[Step]| -> Result<(), CaseFailure> {
        let result = lab.case(steps);
        if let Err(failure) = &result {
            if first_failure.get().is_none() {
                first_failure.set(Some((started.elapsed(), lab.coverage.borrow().steps)));
            }
            *last_failure.borrow_mut() = Some(failure.clone());
        }
        result
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy::steps(budget.max_steps), |steps| {
        case(&steps).map_err(|failure| TestCaseError::fail(failure.message))
    });
    match result {
        Ok(()) => Ok((started.elapsed(), ())),
        Err(TestError::Fail(reason, steps)) => {
            let reason = last_failure.take().unwrap_or_else(|| CaseFailure {
                ran: steps.len(),
                message: reason.message().to_owned(),
                as_run: Vec::new(),
            });
            let (steps, reason) = delete_greedily(steps, reason, &case);
            let (found_after, steps_before) = first_failure.get().unwrap_or_default();
            Err(MachineError::Failed(Shrunk {
                steps: steps.len(),
                transcript: reason,
                seed: budget.seed,
                found_after,
                steps_before,
                shrunk_after: started.elapsed(),
            }))
        }
        Err(TestError::Abort(reason)) => Err(MachineError::Runner(reason.message().to_owned())),
    }
}
