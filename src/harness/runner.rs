//! The runner applies each op to the model and to the system, requires the same outcome from
//! both (values up to the random token strings, rejections exactly), and then requires every
//! view of open sessions to show zero once the pool is quiet.

use super::call::{Bearer, Call, Caller, Created, Secrets, System};
pub use super::coverage::Coverage;
use super::op::{
    Auth, GrantType, Op, Party, Pkce, RedirectAtToken, Ref, Step, TokenRef, Verifier, pool,
};
use crate::clock::{Clock, ManualClock};
use crate::db::fault::{FaultKind, INJECTED_PANIC};
use crate::db::{Db, DbError};
use crate::domain::{Checksum, Rejection, pkce};
use crate::model::state::State;
use crate::model::{self, Ix, Model, Presented, TokenKind};
use crate::oauth::{AuthorizeRequest, ClientAuth, ClientRegistration, OAuth, TokenRequest};
use crate::registry::{PublishRequest, Registry};
use futures::FutureExt;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// What an operation returned, with the random parts (token strings, ids) left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Issued { refresh: bool, scope: String },
    Published(model::PublishKind),
    Checksum(String),
    Versions(Vec<model::VersionSummary>),
    Crate(model::CrateSummary),
    Introspected(model::Introspected),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => f.write_str("ok"),
            Outcome::Issued { refresh, scope } => {
                write!(f, "tokens (refresh: {refresh}) scope={scope:?}")
            }
            Outcome::Published(kind) => write!(f, "{kind:?}"),
            Outcome::Checksum(c) => write!(f, "checksum {}…", &c[..c.len().min(8)]),
            Outcome::Versions(v) => {
                let list: Vec<String> = v
                    .iter()
                    .map(|v| format!("{}{}", v.num, if v.yanked { " (yanked)" } else { "" }))
                    .collect();
                write!(f, "[{}]", list.join(", "))
            }
            Outcome::Crate(c) => write!(
                f,
                "{} owners={:?} downloads={}",
                c.name, c.owners, c.downloads
            ),
            Outcome::Introspected(i) => match (&i.active, &i.scope) {
                (true, Some(scope)) => write!(f, "active {scope:?}"),
                _ => f.write_str("inactive"),
            },
        }
    }
}

pub type StepResult = Result<Outcome, Rejection>;

fn show(result: &StepResult) -> String {
    match result {
        Ok(o) => o.to_string(),
        Err(r) => format!("{} ({})", r.name(), r.code()),
    }
}

/// Why a run failed.
#[derive(Debug, Clone)]
pub enum Violation {
    /// Model and system disagree.
    Disagreement { model: String, system: String },
    /// No serial order of a batch explains what the system answered.
    NotLinearizable { system: String },
    /// After an op with an unknown outcome, the state is neither the one before nor after it.
    HalfApplied { detail: String },
    /// The storage failed where no fault was injected.
    Storage(String),
    /// A session was still open at quiescence, or after close.
    Leak(String),
}

/// A failed run: the transcript up to and including the failing step.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: usize,
    pub violation: Violation,
    pub transcript: Vec<String>,
    /// The steps as they ran, each replayable as it was ([`Runner::as_run`]).
    pub as_run: Vec<Step>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.transcript {
            writeln!(f, "{line}")?;
        }
        match &self.violation {
            Violation::Disagreement { model, system } => {
                write!(
                    f,
                    "step {}: model says {model}, system says {system}",
                    self.step
                )
            }
            Violation::NotLinearizable { system } => {
                write!(
                    f,
                    "step {}: no serial order of the batch explains: {system}",
                    self.step
                )
            }
            Violation::HalfApplied { detail } => {
                write!(f, "step {}: half-applied: {detail}", self.step)
            }
            Violation::Storage(e) => write!(f, "step {}: storage error: {e}", self.step),
            Violation::Leak(e) => write!(f, "step {}: {e}", self.step),
        }
    }
}

/// How long a step may take to return every session. Generous: a slow CI machine is not a leak.
pub const QUIESCE_DEADLINE: Duration = Duration::from_secs(5);

/// A secret the runner never saw: issued by an op whose answer was lost (cancelled after its
/// commit). The model knows the thing exists; nobody can present it.
const LOST: &str = "lost";

/// How long a starved op waits for a connection before it must report exhaustion. Every
/// connection is held, so any wait must end in `AcquireTimeout`; a short one keeps starved
/// steps cheap (a fuzzer's time is its executions).
const STARVED_PATIENCE: Duration = Duration::from_millis(1);

#[derive(Clone)]
struct ClientKeys {
    client_id: String,
    secret: Option<String>,
}

#[derive(Clone)]
struct CodeKeys {
    code: String,
    redirect_uri: String,
    verifier: Option<String>,
}

/// How an op with an unknown outcome may have ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// An injected fault or a starved pool: nothing may have been written.
    BeforeOnly,
    /// Cancelled, timed out, or its connection killed: before or after, nothing between.
    BeforeOrAfter,
}

/// The system under test and the model, side by side, with the system's secrets by position.
pub struct Runner {
    model: Model,
    system: System,
    db: Db,
    clients: Vec<ClientKeys>,
    codes: Vec<CodeKeys>,
    tokens: Vec<String>,
    /// The code the previous step issued, if it issued one (`Ref::Previous`).
    previous_code: Option<Ix>,
    /// The code this step issued, if any.
    issued_code: Option<Ix>,
    settle: Duration,
    transcript: Vec<String>,
    /// Every step so far as it can be replayed: a timeout that fired becomes the cut of the
    /// await it stopped (`pin_timeout`), so shrinking does not have to win the race again.
    as_run: Vec<Step>,
    /// This step's pinned form, if it has one.
    pinned: Option<Step>,
    pub coverage: Coverage,
}

const UNKNOWN_CLIENT: &str = "lpcl_unknown";
const UNKNOWN_TOKEN: &str = "lpa_never-issued";
const WRONG_SECRET: &str = "lps_wrong";

/// Injected panics are expected; keep them out of the test output. Other panics print as usual.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(INJECTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// Runs a future until it reaches the database's armed cut, then drops it (cancelling it).
struct UntilCut<'a, F> {
    inner: std::pin::Pin<Box<F>>,
    db: &'a Db,
}

impl<F: Future> Future for UntilCut<'_, F> {
    type Output = Option<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending if self.db.cut_reached() => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// A timeout that fired once its op had started `awaits` awaits on the database, as the cut of
/// the last of them: the same point, without the race against the clock. None if there was no
/// await to cut, or more than a step can name.
fn pin_timeout(op: Op, awaits: u64) -> Option<Step> {
    let at = u8::try_from(awaits.checked_sub(1)?).ok()?;
    Some(Step::Cancelled { op, at })
}

/// What the system's side of one call came to.
enum Ran {
    /// An answer: an outcome, a rejection, or a storage error.
    Answered(Result<StepResult, DbError>, Secrets),
    /// No answer: cancelled, timed out, or panicked.
    Lost(&'static str),
}

impl Runner {
    pub fn new(db: Db) -> Self {
        quiet_injected_panics();
        let clock = Arc::new(ManualClock::new());
        Self {
            model: Model::new(clock.epoch()),
            system: System {
                registry: Registry::new(db.clone(), clock.clone()),
                oauth: OAuth::new(db.clone(), clock.clone()),
                clock,
            },
            db,
            clients: Vec::new(),
            codes: Vec::new(),
            tokens: Vec::new(),
            previous_code: None,
            issued_code: None,
            settle: QUIESCE_DEADLINE,
            transcript: Vec::new(),
            as_run: Vec::new(),
            pinned: None,
            coverage: Coverage::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A runner in this one's state (model, secrets, transcript, time) with a clock of its own,
    /// to go on from a database restored to this runner's state (`scratch::restore`).
    pub fn fork(&self) -> Self {
        let clock = Arc::new(ManualClock::at(self.system.clock.epoch()));
        Self {
            model: self.model.clone(),
            system: System {
                registry: Registry::new(self.db.clone(), clock.clone()),
                oauth: OAuth::new(self.db.clone(), clock.clone()),
                clock,
            },
            db: self.db.clone(),
            clients: self.clients.clone(),
            codes: self.codes.clone(),
            tokens: self.tokens.clone(),
            previous_code: self.previous_code,
            issued_code: self.issued_code,
            settle: self.settle,
            transcript: self.transcript.clone(),
            as_run: self.as_run.clone(),
            pinned: None,
            coverage: Coverage::default(),
        }
    }

    /// How long a step may take to return its sessions before it counts as a leak.
    pub fn with_settle_deadline(mut self, deadline: Duration) -> Self {
        self.settle = deadline;
        self
    }

    /// One line per step so far: the step and what the system answered.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    /// Every step so far as it can be replayed: a timeout that fired is the cut of the await
    /// it stopped.
    pub fn as_run(&self) -> &[Step] {
        &self.as_run
    }

    /// Runs a whole sequence; stops at the first violation.
    pub async fn run(&mut self, steps: &[Step]) -> Result<(), Failure> {
        for step in steps {
            self.step(step).await?;
        }
        Ok(())
    }

    /// Closes the database and requires every view at zero.
    pub async fn close(&self) -> Result<(), Failure> {
        match self.db.close(self.settle).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(
                self.transcript.len(),
                Violation::Leak(format!("at close: {e}")),
            )),
        }
    }

    fn fail(&self, step: usize, violation: Violation) -> Failure {
        Failure {
            step,
            violation,
            transcript: self.transcript.clone(),
            as_run: self.as_run.clone(),
        }
    }

    /// One step on both sides, compared; then the session views at quiescence.
    pub async fn step(&mut self, step: &Step) -> Result<(), Failure> {
        let n = self.transcript.len() + 1;
        self.previous_code = self.issued_code.take();
        let presents_lost = step.ops().iter().any(|op| self.prepare(op).presents(LOST));
        let (shown, result) = match step {
            _ if presents_lost => {
                self.coverage.fault("lost_answer", "skipped");
                (
                    "skipped: presents a secret whose issuing answer was lost".to_owned(),
                    Ok(()),
                )
            }
            Step::Op(op) => self.plain(op).await,
            Step::Batch(ops) => self.batch(ops).await,
            Step::Kill => {
                let killed = self
                    .db
                    .kill_connections()
                    .await
                    .map_err(|e| self.fail(n, Violation::Storage(e.to_string())))?;
                self.coverage.fault(
                    "kill",
                    if killed > 0 {
                        "killed"
                    } else {
                        "nothing to kill"
                    },
                );
                (format!("{killed} killed"), Ok(()))
            }
            faulted => self.faulted(faulted).await,
        };
        self.transcript.push(format!("{n:>3}. {step} -> {shown}"));
        let as_run = self.pinned.take().unwrap_or_else(|| step.clone());
        self.as_run.push(as_run);
        self.coverage.steps += 1;
        result.map_err(|v| self.fail(n, v))?;
        self.quiet().await.map_err(|v| self.fail(n, v))
    }

    /// Every view at zero. Within the settle deadline normally; when no guard of ours is open
    /// (only sqlx's background returns and rollbacks remain, slow on a loaded machine), within
    /// the full [`QUIESCE_DEADLINE`] before it counts as a leak.
    async fn quiet(&self) -> Result<(), Violation> {
        let Err(first) = self.db.quiesce(self.settle).await else {
            return Ok(());
        };
        if self.db.ledger().view().open > 0 {
            return Err(Violation::Leak(first.to_string()));
        }
        match self.db.quiesce(QUIESCE_DEADLINE).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Violation::Leak(e.to_string())),
        }
    }

    /// An op on its own: the same outcome from both sides.
    async fn plain(&mut self, op: &Op) -> (String, Result<(), Violation>) {
        let call = self.prepare(op);
        let mut after = self.model.clone();
        let (model, created) = call.on_model(&mut after);
        let (system, secrets) = call.on_system(&self.system).await;
        if let Err(e) = &system
            && e.is_connection_lost()
        {
            // A connection killed earlier: the op's outcome is unknown, as under a fault.
            return self
                .lost(
                    "kill",
                    "connection lost",
                    &call,
                    after,
                    created,
                    Allowed::BeforeOrAfter,
                )
                .await;
        }
        self.settle_answer(op, &call, (model, created, after), (system, secrets))
    }

    /// An op with no answer: wait for its sessions, then resolve its outcome from the state.
    async fn lost(
        &mut self,
        kind: &'static str,
        why: &'static str,
        call: &Call,
        after: Model,
        created: Created,
        allowed: Allowed,
    ) -> (String, Result<(), Violation>) {
        // Let the dropped guards roll back and return before looking.
        if let Err(v) = self.quiet().await {
            return (why.to_owned(), Err(v));
        }
        match self.resolve(call, after, created, allowed).await {
            Ok(ended) => {
                self.coverage.fault(kind, ended);
                (format!("{why}; state as {ended} it"), Ok(()))
            }
            Err(v) => (why.to_owned(), Err(v)),
        }
    }

    /// Compares an answered op; on agreement the model moves on and the secrets are kept.
    fn settle_answer(
        &mut self,
        op: &Op,
        call: &Call,
        (model, created, after): (StepResult, Created, Model),
        (system, secrets): (Result<StepResult, DbError>, Secrets),
    ) -> (String, Result<(), Violation>) {
        let system = match system {
            Ok(result) => result,
            Err(e) => {
                return (
                    format!("storage error: {e}"),
                    Err(Violation::Storage(e.to_string())),
                );
            }
        };
        self.coverage.record(op.kind(), outcome_kind(&system));
        let shown = show(&system);
        if model != system {
            let violation = Violation::Disagreement {
                model: show(&model),
                system: shown.clone(),
            };
            return (shown, Err(violation));
        }
        self.model = after;
        self.record(call, &created, Some(&secrets));
        (shown, Ok(()))
    }

    /// An op under a fault. If it answered anyway, the answer is compared as usual; if not,
    /// the state is read back and must be the model's before it (or, where a commit may have
    /// happened, after it).
    async fn faulted(&mut self, step: &Step) -> (String, Result<(), Violation>) {
        let kind = step.kind();
        let ops = step.ops();
        let Some(op) = ops.first() else {
            return (String::new(), Ok(()));
        };
        let call = self.prepare(op);
        let mut after = self.model.clone();
        let (model, created) = call.on_model(&mut after);
        let system = self.system.clone();
        let run = AssertUnwindSafe(call.on_system(&system)).catch_unwind();
        let (ran, allowed) = match *step {
            Step::Faulted { fault, .. } => {
                self.db.arm_fault(fault);
                let ran = match run.await {
                    Ok((answer, secrets)) => Ran::Answered(answer, secrets),
                    Err(_) => Ran::Lost("panicked"),
                };
                let fired = self.db.disarm_fault();
                let ran = match (ran, fired, fault.kind) {
                    // An injected error must reach the caller as a storage error.
                    (
                        Ran::Answered(Err(DbError::Injected { .. }), _),
                        Some(_),
                        FaultKind::Error,
                    ) => Ran::Lost("injected error"),
                    (Ran::Answered(answer, _), Some(point), _) => {
                        let detail = format!(
                            "fault fired at {point}, yet the op answered {}",
                            describe(&answer)
                        );
                        return (detail.clone(), Err(Violation::HalfApplied { detail }));
                    }
                    (ran, _, _) => ran,
                };
                (ran, Allowed::BeforeOnly)
            }
            Step::Cancelled { at, .. } => {
                self.db.arm_cut(u32::from(at));
                let cut = UntilCut {
                    inner: Box::pin(run),
                    db: &self.db,
                };
                let ran = match cut.await {
                    Some(Ok((answer, secrets))) => Ran::Answered(answer, secrets),
                    Some(Err(_)) => Ran::Lost("panicked"),
                    None => Ran::Lost("cancelled"),
                };
                self.db.disarm_cut();
                (ran, Allowed::BeforeOrAfter)
            }
            Step::TimedOut { op, micros } => {
                let awaits = self.db.awaits_started();
                let ran = match tokio::time::timeout(Duration::from_micros(u64::from(micros)), run)
                    .await
                {
                    Ok(Ok((answer, secrets))) => Ran::Answered(answer, secrets),
                    Ok(Err(_)) => Ran::Lost("panicked"),
                    Err(_) => {
                        let started = self.db.awaits_started() - awaits;
                        self.pinned = pin_timeout(op, started);
                        Ran::Lost("timed out")
                    }
                };
                (ran, Allowed::BeforeOrAfter)
            }
            Step::Starved { .. } => {
                // Every connection the pool may hold, taken by the harness: nothing else runs
                // between steps, so each is there to take.
                let mut held = Vec::new();
                for _ in 0..self.db.max_connections() {
                    match self.db.session("harness.hog").await {
                        Ok(session) => held.push(session),
                        Err(e) => {
                            return (
                                "could not starve the pool".to_owned(),
                                Err(Violation::Storage(e.to_string())),
                            );
                        }
                    }
                }
                // Starved means every connection the pool has is held here.
                // (A torn reading lasts until sqlx's releasing thread runs again: a second
                // at most, however loaded the machine.)
                let mut pool = self.db.pool_view();
                for _ in 0..1000 {
                    if pool.is_consistent() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    pool = self.db.pool_view();
                }
                if pool.idle > 0 || pool.size as usize != held.len() {
                    let detail =
                        format!("holding {} sessions left the pool at {pool:?}", held.len());
                    return (detail.clone(), Err(Violation::Storage(detail)));
                }
                self.db.set_acquire_patience(Some(STARVED_PATIENCE));
                let ran = match run.await {
                    Ok((Err(DbError::AcquireTimeout { .. }), _)) => Ran::Lost("pool exhausted"),
                    Ok((answer, secrets)) => Ran::Answered(answer, secrets),
                    Err(_) => Ran::Lost("panicked"),
                };
                self.db.set_acquire_patience(None);
                drop(held);
                (ran, Allowed::BeforeOnly)
            }
            Step::KillDuring { micros, .. } => {
                let kill = async {
                    tokio::time::sleep(Duration::from_micros(u64::from(micros))).await;
                    self.db.kill_connections().await
                };
                let (ran, _) = tokio::join!(run, kill);
                let ran = match ran {
                    Ok((Err(e), _)) if e.is_connection_lost() => Ran::Lost("connection lost"),
                    Ok((answer, secrets)) => Ran::Answered(answer, secrets),
                    Err(_) => Ran::Lost("panicked"),
                };
                (ran, Allowed::BeforeOrAfter)
            }
            _ => unreachable!("plain steps do not come here"),
        };
        let ran = match ran {
            Ran::Answered(Err(e), _) if e.is_connection_lost() => Ran::Lost("connection lost"),
            ran => ran,
        };
        match ran {
            Ran::Answered(answer, secrets) => {
                self.coverage.fault(kind, "completed");
                self.settle_answer(op, &call, (model, created, after), (answer, secrets))
            }
            Ran::Lost(why) => self.lost(kind, why, &call, after, created, allowed).await,
        }
    }

    /// Reads the state back after an op with no answer: it must equal the model's state before
    /// the op or (if allowed) after it. The model follows what happened.
    async fn resolve(
        &mut self,
        call: &Call,
        after: Model,
        created: Created,
        allowed: Allowed,
    ) -> Result<&'static str, Violation> {
        let system = super::state::read(&self.db)
            .await
            .map_err(|e| Violation::Storage(e.to_string()))?;
        let before = self.model.state();
        if system == before {
            return Ok("before");
        }
        let after_state = after.state();
        if allowed == Allowed::BeforeOrAfter && system == after_state {
            self.model = after;
            self.record(call, &created, None);
            return Ok("after");
        }
        Err(Violation::HalfApplied {
            detail: state_difference(&before, &after_state, &system),
        })
    }

    /// Ops at once. Their answers must be those of some serial order of the model, and the
    /// state the system ends in must be that order's. An op whose connection died has no
    /// answer: it may or may not have happened, so both are tried.
    async fn batch(&mut self, ops: &[Op]) -> (String, Result<(), Violation>) {
        let calls: Vec<Call> = ops.iter().map(|op| self.prepare(op)).collect();
        let system = self.system.clone();
        let answers = futures::future::join_all(calls.iter().map(|c| c.on_system(&system))).await;
        // `None`: the op lost its connection.
        let mut results: Vec<Option<StepResult>> = Vec::new();
        for (op, (answer, _)) in ops.iter().zip(&answers) {
            match answer {
                Ok(result) => {
                    self.coverage.record(op.kind(), outcome_kind(result));
                    results.push(Some(result.clone()));
                }
                Err(e) if e.is_connection_lost() => results.push(None),
                Err(e) => {
                    return (
                        format!("storage error: {e}"),
                        Err(Violation::Storage(e.to_string())),
                    );
                }
            }
        }
        let shown = results
            .iter()
            .map(|r| r.as_ref().map_or("connection lost".to_owned(), show))
            .collect::<Vec<_>>()
            .join(" | ");
        if let Err(v) = self.quiet().await {
            return (shown, Err(v));
        }
        // Secrets get positions in the order the system created their rows.
        let mut created_ids = Vec::new();
        for (_, secrets) in &answers {
            match super::state::created_id(&self.db, secrets).await {
                Ok(id) => created_ids.push(id),
                Err(e) => return (shown, Err(Violation::Storage(e.to_string()))),
            }
        }
        let follows_creation = |order: &[usize]| {
            order.iter().enumerate().all(|(a, &i)| {
                order[a + 1..]
                    .iter()
                    .all(|&j| match (created_ids[i], created_ids[j]) {
                        (Some((t1, id1)), Some((t2, id2))) => t1 != t2 || id1 < id2,
                        _ => true,
                    })
            })
        };
        let lost: Vec<usize> = (0..ops.len()).filter(|&i| results[i].is_none()).collect();
        let system_state = match super::state::read(&self.db).await {
            Ok(s) => s,
            Err(e) => return (shown, Err(Violation::Storage(e.to_string()))),
        };
        for order in permutations(ops.len())
            .into_iter()
            .filter(|o| follows_creation(o))
        {
            for applied in 0u32..(1 << lost.len()) {
                let happened = |i: usize| match lost.iter().position(|&l| l == i) {
                    Some(bit) => applied & (1 << bit) != 0,
                    None => true,
                };
                let mut model = self.model.clone();
                let mut created = vec![Created::Nothing; ops.len()];
                let explains = order.iter().filter(|&&i| happened(i)).all(|&i| {
                    let (result, made) = calls[i].on_model(&mut model);
                    created[i] = made;
                    results[i].as_ref().is_none_or(|r| *r == result)
                });
                if !explains || model.state() != system_state {
                    continue;
                }
                self.model = model;
                for &i in order.iter().filter(|&&i| happened(i)) {
                    let secrets = results[i].as_ref().map(|_| &answers[i].1);
                    self.record(&calls[i], &created[i], secrets);
                }
                self.coverage.fault(
                    "batch",
                    if lost.is_empty() {
                        "serial"
                    } else {
                        "serial, connection lost"
                    },
                );
                return (shown, Ok(()));
            }
        }
        let violation = Violation::NotLinearizable {
            system: shown.clone(),
        };
        (shown, Err(violation))
    }

    /// The n-th most recent of `count` things (`Nth(0)` is the latest).
    fn recent(r: Ref, count: usize) -> Option<Ix> {
        match r {
            Ref::Nth(n) if count > 0 => Some(count - 1 - usize::from(n) % count),
            _ => None,
        }
    }

    /// A client by party: the owner of the code or token concerned (the latest client if
    /// there is none), or another.
    fn party(&self, party: Party, owner: Option<Ix>, auth: Auth) -> Caller {
        match (party, owner) {
            (Party::Owner, Some(owner)) => self.caller(Some(owner), auth),
            (Party::Owner, None) => {
                self.caller(Self::recent(Ref::Nth(0), self.clients.len()), auth)
            }
            (Party::Other(r), _) => self.caller(Self::recent(r, self.clients.len()), auth),
        }
    }

    fn caller(&self, ix: Option<Ix>, auth: Auth) -> Caller {
        let confidential = ix.is_some_and(|i| self.model.is_confidential(i));
        let presented = match (auth, confidential) {
            (Auth::Proper, true) => Presented::Right,
            (Auth::Proper, false) | (Auth::Absent, _) => Presented::Absent,
            (Auth::Wrong, _) => Presented::Wrong,
        };
        let keys = ix.map(|i| &self.clients[i]);
        let client_secret = match presented {
            Presented::Right => keys.and_then(|k| k.secret.clone()),
            Presented::Wrong => Some(WRONG_SECRET.to_owned()),
            Presented::Absent => None,
        };
        let client_id = keys.map_or(UNKNOWN_CLIENT.to_owned(), |k| k.client_id.clone());
        Caller {
            ix,
            presented,
            auth: ClientAuth {
                client_id,
                client_secret,
            },
        }
    }

    /// A token, and the client presenting it: by default the one it was issued to.
    fn token_and_caller(&self, client: Party, auth: Auth, token: TokenRef) -> (Caller, Bearer) {
        let token = self.bearer(token);
        let owner = token.ix.map(|t| self.model.token_client(t));
        (self.party(client, owner, auth), token)
    }

    fn bearer(&self, r: TokenRef) -> Bearer {
        let pick = |kind, n: u8| {
            let of_kind = self.model.tokens_of(kind);
            Self::recent(Ref::Nth(n), of_kind.len()).map(|i| of_kind[i])
        };
        let ix = match r {
            TokenRef::Access(n) => pick(TokenKind::Access, n),
            TokenRef::Refresh(n) => pick(TokenKind::Refresh, n),
            TokenRef::Missing => None,
        };
        let text = ix.map_or(UNKNOWN_TOKEN.to_owned(), |i| self.tokens[i].clone());
        Bearer { ix, text }
    }

    /// Resolves an op's references against what exists now.
    fn prepare(&self, op: &Op) -> Call {
        use pool::*;
        match *op {
            Op::Advance { secs } => Call::Advance(secs),
            Op::CreateUser { login } => Call::CreateUser(pick(LOGINS, login).to_owned()),
            Op::RegisterClient {
                confidential,
                name,
                redirects,
                scope,
            } => Call::RegisterClient(ClientRegistration {
                name: pick(CLIENT_NAMES, name).to_owned(),
                confidential,
                redirect_uris: registrations(redirects),
                scope: pick(SCOPES, scope).to_owned(),
            }),
            Op::Authorize {
                client,
                login,
                redirect,
                scope,
                pkce: choice,
            } => {
                let caller = self.caller(Self::recent(client, self.clients.len()), Auth::Proper);
                let verifier = format!("verifier-{:0>40}", self.codes.len());
                let (challenge, method) = match choice {
                    Pkce::S256 => (Some(pkce::s256(&verifier)), Some("S256")),
                    Pkce::Plain => (Some(verifier.clone()), Some("plain")),
                    Pkce::MissingMethod => (Some(pkce::s256(&verifier)), None),
                    Pkce::MalformedChallenge => (Some("short".to_owned()), Some("S256")),
                    Pkce::None => (None, None),
                };
                Call::Authorize {
                    client: caller.ix,
                    request: AuthorizeRequest {
                        client_id: caller.auth.client_id,
                        redirect_uri: pool::redirect(redirect),
                        scope: scope.map(|s| pick(SCOPES, s).to_owned()),
                        code_challenge: challenge,
                        code_challenge_method: method.map(str::to_owned),
                        login: pick(LOGINS, login).to_owned(),
                    },
                    verifier,
                }
            }
            Op::ExchangeCode {
                client,
                auth,
                code,
                redirect,
                verifier,
            } => {
                let code = match code {
                    Ref::Previous => self.previous_code,
                    other => Self::recent(other, self.codes.len()),
                };
                let caller = self.party(client, code.map(|c| self.model.code_client(c)), auth);
                let keys = code.map(|c| &self.codes[c]);
                let redirect_uri = match (redirect, keys) {
                    (RedirectAtToken::Same, Some(k)) => k.redirect_uri.clone(),
                    (RedirectAtToken::Same, None) => pool::redirect(0),
                    (RedirectAtToken::Pool(i), _) => pool::redirect(i),
                };
                let verifier = match verifier {
                    Verifier::Proper => Some(
                        keys.and_then(|k| k.verifier.clone())
                            .unwrap_or_else(|| "v".repeat(43)),
                    ),
                    Verifier::Wrong => Some("w".repeat(43)),
                    Verifier::Malformed => Some("short".to_owned()),
                    Verifier::Absent => None,
                };
                Call::Exchange {
                    caller,
                    code,
                    code_text: keys.map_or("lpc_never-issued".to_owned(), |k| k.code.clone()),
                    redirect_uri,
                    verifier,
                }
            }
            Op::Refresh {
                client,
                auth,
                token,
                scope,
            } => {
                let (caller, token) = self.token_and_caller(client, auth, token);
                Call::Refresh {
                    caller,
                    token,
                    scope: scope.map(|s| pick(SCOPES, s).to_owned()),
                }
            }
            Op::ClientCredentials {
                client,
                auth,
                scope,
            } => Call::ClientCredentials {
                caller: self.caller(Self::recent(client, self.clients.len()), auth),
                scope: scope.map(|s| pick(SCOPES, s).to_owned()),
            },
            Op::TokenEndpoint { client, grant } => {
                let caller = self.caller(Self::recent(client, self.clients.len()), Auth::Proper);
                let (grant_type, expected) = match grant {
                    GrantType::Unsupported => ("password", Rejection::UnsupportedGrantType),
                    GrantType::CodeWithoutCode => (
                        "authorization_code",
                        Rejection::MissingParameter { name: "code" },
                    ),
                };
                Call::TokenEndpoint {
                    request: TokenRequest {
                        grant_type: grant_type.to_owned(),
                        client_id: caller.auth.client_id,
                        client_secret: caller.auth.client_secret,
                        redirect_uri: Some(pool::redirect(0)),
                        ..TokenRequest::default()
                    },
                    expected,
                }
            }
            Op::Revoke {
                client,
                auth,
                token,
            } => {
                let (caller, token) = self.token_and_caller(client, auth, token);
                Call::Revoke { caller, token }
            }
            Op::Introspect {
                client,
                auth,
                token,
            } => {
                let (caller, token) = self.token_and_caller(client, auth, token);
                Call::Introspect { caller, token }
            }
            Op::Publish {
                token,
                name,
                version,
                bad_checksum,
            } => {
                let (name, version) = (pick(CRATES, name), pick(VERSIONS, version));
                let checksum = if bad_checksum {
                    "not-a-checksum".to_owned()
                } else {
                    Checksum::of(format!("{name}@{version}").as_bytes()).0
                };
                Call::Publish {
                    token: self.bearer(token),
                    request: PublishRequest {
                        name: name.to_owned(),
                        version: version.to_owned(),
                        checksum,
                    },
                }
            }
            Op::SetYanked {
                token,
                name,
                version,
                yanked,
            } => Call::SetYanked {
                token: self.bearer(token),
                name: pick(CRATES, name).to_owned(),
                version: pick(VERSIONS, version).to_owned(),
                yanked,
            },
            Op::AddOwner { token, name, login } => Call::AddOwner {
                token: self.bearer(token),
                name: pick(CRATES, name).to_owned(),
                login: pick(LOGINS, login).to_owned(),
            },
            Op::RemoveOwner { token, name, login } => Call::RemoveOwner {
                token: self.bearer(token),
                name: pick(CRATES, name).to_owned(),
                login: pick(LOGINS, login).to_owned(),
            },
            Op::Download { name, version } => Call::Download {
                name: pick(CRATES, name).to_owned(),
                version: pick(VERSIONS, version).to_owned(),
            },
            Op::Versions { name } => Call::Versions(pick(CRATES, name).to_owned()),
            Op::CrateInfo { name } => Call::CrateInfo(pick(CRATES, name).to_owned()),
        }
    }

    /// Keeps the secrets of what the model created, at the model's positions; secrets never
    /// seen are kept as lost.
    fn record(&mut self, call: &Call, created: &Created, secrets: Option<&Secrets>) {
        match (created, secrets) {
            (Created::Nothing, _) => {}
            (Created::Client(ix), secrets) => {
                assert_eq!(
                    *ix,
                    self.clients.len(),
                    "runner lost track of client positions"
                );
                let (client_id, secret) = match secrets {
                    Some(Secrets::Client { client_id, secret }) => {
                        (client_id.clone(), secret.clone())
                    }
                    _ => (LOST.to_owned(), None),
                };
                self.clients.push(ClientKeys { client_id, secret });
            }
            (Created::Code(ix), secrets) => {
                assert_eq!(*ix, self.codes.len(), "runner lost track of code positions");
                let code = match secrets {
                    Some(Secrets::Code(code)) => code.clone(),
                    _ => LOST.to_owned(),
                };
                let (redirect_uri, verifier) = match call {
                    Call::Authorize {
                        request, verifier, ..
                    } => (
                        request.redirect_uri.clone(),
                        request.code_challenge.is_some().then(|| verifier.clone()),
                    ),
                    _ => (String::new(), None),
                };
                self.issued_code = Some(*ix);
                self.codes.push(CodeKeys {
                    code,
                    redirect_uri,
                    verifier,
                });
            }
            (Created::Tokens(issued), secrets) => {
                let (access, refresh) = match secrets {
                    Some(Secrets::Tokens { access, refresh }) => (access.clone(), refresh.clone()),
                    _ => (LOST.to_owned(), Some(LOST.to_owned())),
                };
                assert_eq!(
                    issued.access,
                    self.tokens.len(),
                    "runner lost track of token positions"
                );
                self.tokens.push(access);
                if let Some(r) = issued.refresh {
                    assert_eq!(r, self.tokens.len(), "runner lost track of token positions");
                    self.tokens.push(refresh.unwrap_or_else(|| LOST.to_owned()));
                }
            }
        }
    }
}

fn outcome_kind(result: &StepResult) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(r) => r.name(),
    }
}

fn describe(answer: &Result<StepResult, DbError>) -> String {
    match answer {
        Ok(result) => show(result),
        Err(e) => format!("storage error: {e}"),
    }
}

/// Every order of `n` things (n ≤ 4: at most 24).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    assert!(n <= 4, "batches are at most 4 ops");
    fn extend(prefix: &mut Vec<usize>, n: usize, out: &mut Vec<Vec<usize>>) {
        if prefix.len() == n {
            out.push(prefix.clone());
            return;
        }
        for i in 0..n {
            if !prefix.contains(&i) {
                prefix.push(i);
                extend(prefix, n, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    extend(&mut Vec::new(), n, &mut out);
    out
}

/// Names the first part of the state that matches neither the state before nor after.
fn state_difference(before: &State, after: &State, system: &State) -> String {
    macro_rules! part {
        ($field:ident) => {
            if system.$field != before.$field && system.$field != after.$field {
                return format!(
                    "{} are {:?}; before the op {:?}; after it {:?}",
                    stringify!($field),
                    system.$field,
                    before.$field,
                    after.$field
                );
            }
        };
    }
    part!(users);
    part!(clients);
    part!(codes);
    part!(grants);
    part!(tokens);
    part!(crates);
    "each table matches before or after, but not all the same one".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_pinned_to_the_await_it_stopped() {
        let op = Op::CreateUser { login: 0 };
        assert_eq!(pin_timeout(op, 0), None, "no await started: none to cut");
        assert_eq!(pin_timeout(op, 1), Some(Step::Cancelled { op, at: 0 }));
        assert_eq!(pin_timeout(op, 256), Some(Step::Cancelled { op, at: 255 }));
        assert_eq!(pin_timeout(op, 257), None, "past what a step can name");
    }
}
