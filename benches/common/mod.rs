//! What both benchmarks share: the runtime, criterion's settings, a scratch database per
//! backend, the concurrent driver, and the session invariant every benchmark must leave behind.
//! A benchmark that leaks is a failing benchmark: [`Fixture::check`] panics, and so does
//! [`Fixture::finish`] unless every view reaches zero after close.
#![allow(dead_code)]

pub mod cpu;
pub mod server;
pub mod slice;
pub mod stats;

pub use stats::{median, median_interval};

use criterion::Criterion;
use leakproof::db::scratch::Scratch;
use leakproof::db::{Backend, Db, PoolConfig, SETTLE_DEADLINE, SessionViews};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PG_URL_VAR: &str = "LEAKPROOF_PG_URL";

/// Tokio on as many workers as the machine has cores (2 here and in CI): the same runtime
/// drives the wrapped and the raw side, so neither gets more threads than the other.
pub fn runtime() -> tokio::runtime::Runtime {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime for the benchmarks")
}

/// Short runs: the full sweep is hundreds of points on a 2-core machine. Ten samples of a
/// second each give a few per cent of noise, which the A/A control makes visible. Command-line
/// flags (`--measurement-time`, `--warm-up-time`, `--sample-size`) override these.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .nresamples(20_000)
        .configure_from_args()
}

pub fn name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// The PostgreSQL admin URL, if set. As in the tests: skipped locally without it, a failure
/// in CI (`CI` set), where a missing server must never pass for a green run.
pub fn postgres_url() -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {PG_URL_VAR} is not: the PostgreSQL benchmarks must run in CI")
        }
        _ => {
            eprintln!("skipped PostgreSQL: set {PG_URL_VAR} to benchmark it too");
            None
        }
    }
}

/// SQLite always; PostgreSQL when its URL is set.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        backends.push(Backend::Postgres);
    }
    backends
}

/// A fresh database with our schema and a `Db` on it.
pub struct Fixture {
    pub db: Db,
    scratch: Scratch,
}

impl Fixture {
    pub async fn open(backend: Backend, config: PoolConfig) -> Fixture {
        let scratch = match backend {
            Backend::Sqlite => Scratch::sqlite().expect("a scratch SQLite file"),
            Backend::Postgres => {
                let url = postgres_url().expect("PostgreSQL benchmarks run only with a URL");
                Scratch::postgres(&url)
                    .await
                    .expect("a scratch PostgreSQL schema")
            }
        };
        let db = Db::connect_with(&scratch.url, config)
            .await
            .expect("connect to the scratch database");
        Fixture { db, scratch }
    }

    /// The scratch database's URL, for connections outside the pool (the wire floor).
    pub fn url(&self) -> &str {
        &self.scratch.url
    }

    /// The session invariant at quiescence, after a benchmark: no session open by any view,
    /// and the server sees exactly the pool's connections (PostgreSQL: backends under the
    /// pool's `application_name`). SQLite's descriptor count bounds the pool from above (a
    /// closed connection's descriptor may linger while another holds a lock), so there it is
    /// `>=`. Panics, naming `after`, if a benchmark left anything open.
    pub async fn check(&self, after: &str) {
        let views = self
            .db
            .quiesce(SETTLE_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{after}: the benchmark leaked a session: {e}"));
        let server_matches = |v: &SessionViews| match self.db.backend() {
            Backend::Postgres => v.server.connections == v.pool.size,
            Backend::Sqlite => v.server.connections >= v.pool.size,
        };
        if server_matches(&views) {
            return;
        }
        // A connection sqlx is still closing (idle timeout, lifetime) shows on one side first:
        // give it a bounded moment.
        let mut last = views;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            last = self.db.views().await.expect("session views");
            if last.is_quiescent(self.db.backend() == Backend::Postgres) && server_matches(&last) {
                return;
            }
        }
        panic!("{after}: the server's sessions do not match the pool's: {last}");
    }

    /// Checks quiescence, closes the pool, requires every view at zero, removes the database.
    pub async fn finish(self, after: &str) {
        self.check(after).await;
        let views = self
            .db
            .close(SETTLE_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{after}: close did not reach zero sessions: {e}"));
        assert!(views.is_closed(), "{after}: open after close: {views}");
        self.scratch
            .remove()
            .await
            .expect("remove the scratch database");
    }
}

/// Runs `ops` operations spread over one task per state (task `t` gets `ops / tasks`, the
/// first `ops % tasks` one more) and returns the wall time from before the first task is
/// spawned to the end of the last, with the states back in order. Each operation takes its
/// task's state and hands it back, so nothing is cloned or locked per operation.
pub async fn spread<S, F, Fut>(ops: u64, states: Vec<S>, op: F) -> (Duration, Vec<S>)
where
    S: Send + 'static,
    F: Fn(S, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S> + Send + 'static,
{
    assert!(!states.is_empty(), "spread needs at least one task");
    let op = Arc::new(op);
    let tasks = states.len() as u64;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(states.len());
    for (t, state) in states.into_iter().enumerate() {
        let share = ops / tasks + u64::from((t as u64) < ops % tasks);
        let op = Arc::clone(&op);
        handles.push(tokio::spawn(async move {
            let mut state = state;
            for i in 0..share {
                state = op(state, t, i).await;
            }
            state
        }));
    }
    let mut states = Vec::with_capacity(handles.len());
    for handle in handles {
        states.push(handle.await.expect("a benchmark task panicked"));
    }
    (start.elapsed(), states)
}

/// `spread` over `tasks` clones of one state, for operations on a shared handle (a `Db`, a
/// pool): the clones are made before the timer starts.
pub async fn spread_shared<S, F, Fut>(ops: u64, tasks: usize, state: &S, op: F) -> Duration
where
    S: Clone + Send + 'static,
    F: Fn(S, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S> + Send + 'static,
{
    let states = vec![state.clone(); tasks];
    spread(ops, states, op).await.0
}

/// The shortest calibration run, and how many times its ops may grow fourfold to reach it.
const CALIBRATION_MIN: Duration = Duration::from_millis(10);
const CALIBRATION_GROWTHS: u32 = 6;

/// Seconds per operation of `run(ops)` over `count` tasks or clients, from a run long enough
/// (`CALIBRATION_MIN`) that starting the tasks and waking the workers is not most of what it
/// timed: sized from 16 ops per task, those took a few microseconds on the bare cycle, and a
/// slice meant to last 100 ms lasted 2.
/// Each run is blocked on here, outside the runtime, so `run` may block on it too (the ops
/// sweep checkpoints SQLite's WAL before each slice).
pub fn per_op<F, Fut>(runtime: &tokio::runtime::Runtime, count: usize, mut run: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut ops = 16 * count as u64;
    let mut took = runtime.block_on(run(ops));
    for _ in 0..CALIBRATION_GROWTHS {
        if took >= CALIBRATION_MIN {
            break;
        }
        ops *= 4;
        took = runtime.block_on(run(ops));
    }
    took.as_secs_f64() / ops as f64
}

/// Rounds of the no-collapse sweep, and one concurrency's slice in a round. With 15 rounds,
/// the same code's paired figure for SQLite's bare cycle on one connection read 0.95 and,
/// half an hour later, 0.86: a median of 15 ratios, taken at the lowest of four counts, was
/// too coarse for a 10% check on this shared machine. 45 cost the pool benchmark ~8 minutes.
pub const SWEEP_ROUNDS: usize = 45;
pub const SWEEP_SLICE: Duration = Duration::from_millis(100);
/// The most rounds a sweep runs: a figure whose 95% interval (`stats::median_interval`)
/// still holds the line after 45 rounds gets 45 more, twice at most. Its interval narrows by
/// √3 at most; the groups clear of the line (most of them) cost nothing more.
pub const SWEEP_MAX_ROUNDS: usize = 3 * SWEEP_ROUNDS;
/// The no-collapse target: 128 tasks do at least this share of the best count's rate.
pub const COLLAPSE_LINE: f64 = 0.90;

/// Rounds and slice of the sustained sweep ([`Plan::sustained`]): seconds per count. On
/// SQLite, `SELECT 1` on one connection ran in two modes lasting seconds, one a fifth of the
/// other, which the short sweep's 100 ms slices only sample (CONTRIBUTING.md, "Run longer, it
/// has two modes"). Five rounds of five counts cost ~50 s a group.
pub const SUSTAINED_ROUNDS: usize = 5;
pub const SUSTAINED_SLICE: Duration = Duration::from_secs(2);

/// How a no-collapse sweep runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rounds run first; while a figure is undecided, as many again, up to `max_rounds`.
    pub rounds: usize,
    pub max_rounds: usize,
    /// Each count's slice in a round, before [`slice::round_slice`] evens them out.
    pub slice: Duration,
    /// Rounds run again for a busy machine, at most, per sweep.
    pub max_repeats: usize,
    /// Criterion's test mode (as CI runs it): one round of ~1 ms slices, so the sweep's own
    /// code runs on every CI build and cannot rot; its figures mean nothing.
    pub smoke: bool,
}

impl Plan {
    const SMOKE: Plan = Plan {
        rounds: 1,
        max_rounds: 1,
        slice: Duration::from_millis(1),
        max_repeats: 0,
        smoke: true,
    };

    /// Many short rounds: [`SWEEP_ROUNDS`] of [`SWEEP_SLICE`].
    pub fn short(smoke: bool) -> Plan {
        match smoke {
            true => Plan::SMOKE,
            false => Plan {
                rounds: SWEEP_ROUNDS,
                max_rounds: SWEEP_MAX_ROUNDS,
                slice: SWEEP_SLICE,
                max_repeats: MAX_REPEATS,
                smoke: false,
            },
        }
    }

    /// A few long rounds: [`SUSTAINED_ROUNDS`] of [`SUSTAINED_SLICE`].
    pub fn sustained(smoke: bool) -> Plan {
        match smoke {
            true => Plan::SMOKE,
            false => Plan {
                rounds: SUSTAINED_ROUNDS,
                max_rounds: 3 * SUSTAINED_ROUNDS,
                slice: SUSTAINED_SLICE,
                max_repeats: SUSTAINED_ROUNDS,
                smoke: false,
            },
        }
    }
}

/// The share of the machine's CPU other processes may take during an in-process (SQLite)
/// round before it is run again (`cpu.rs`). A quiet machine here shows 1-3%: the kernel's
/// writeback and a few idle services.
pub const QUIET_LIMIT: f64 = 0.10;
/// Rounds run again for a busy machine, at most, per sweep: a sweep on a machine that stays
/// busy ends, and says so, instead of waiting for quiet.
pub const MAX_REPEATS: usize = SWEEP_ROUNDS;

/// The no-collapse figure, measured interleaved: criterion measures each concurrency in its
/// own window, and on a shared 2-core machine those windows differ by more than the 10% the
/// check allows. Here every round runs `run(ops, count)` at each count (clients or tasks) for
/// ~`plan.slice` (sized by a calibration run), and for at least
/// [`slice::SWEEP_OPS_PER_TASK`] operations per task, every count's slice as long as the one
/// that needs longest for that ([`slice::round_slice`]), in an order that moves every round,
/// and printed as a `sweep\t{json}` line for scripts/bench.sh: the median rate per count over
/// the rounds (`rates`), and the median over the rounds of the largest count's rate over each
/// count's in the same round (`largest_over`). The best of the medians is the largest of five
/// noisy figures, biased upward, and rounds drift; the paired ratio cancels the drift. The
/// caller checks the session invariant after it.
///
/// Each paired figure carries its 95% interval (`largest_over_interval`, from the ranks:
/// `stats::median_interval`). While any interval holds [`COLLAPSE_LINE`] and values below it,
/// the sweep runs another `plan.rounds`, up to `plan.max_rounds`: a figure at the line
/// is read from more rounds than one clear of it.
///
/// CPU that other processes take does not cancel (cpu.rs), so each round's share of it is
/// measured: on SQLite a round over [`QUIET_LIMIT`] is run again, at most `plan.max_repeats`
/// times a sweep. The line carries the kept rounds' share (`others_cpu`: median, max),
/// `rounds_repeated`, and `busy_rounds_kept` (kept over the limit once the repeats ran out).
///
/// With `server` (PostgreSQL), the CPU the pool's server processes spent per operation in
/// each slice, its median per count (`server_us_per_op`): where the server bounds the rate, a
/// low figure may come with a slower server rather than with the pool ([`server::ServerCpu`]).
///
pub fn concurrency_sweep<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    backend: Backend,
    counts: &[usize],
    group: &str,
    plan: Plan,
    mut server: Option<server::ServerCpu>,
    mut run: F,
) where
    F: FnMut(u64, usize) -> Fut,
    Fut: Future<Output = Duration>,
{
    let (mut rounds, slice, smoke) = (plan.rounds, plan.slice, plan.smoke);
    let per_task = if smoke { 1 } else { slice::SWEEP_OPS_PER_TASK };
    let per_ops: Vec<f64> = counts
        .iter()
        .map(|&count| per_op(runtime, count, |ops| run(ops, count)))
        .collect();
    let slice = slice::round_slice(slice, &per_ops, counts, per_task);
    let slice_ops: Vec<u64> = counts
        .iter()
        .zip(&per_ops)
        .map(|(&count, &per_op)| slice::slice_ops(slice, per_op, count, per_task))
        .collect();
    let mut rates = vec![Vec::with_capacity(rounds); counts.len()];
    let mut server_us = vec![Vec::with_capacity(rounds); counts.len()];
    let mut others = Vec::with_capacity(rounds);
    let mut repeated = 0;
    // Rounds kept though other processes took more than QUIET_LIMIT: the repeats ran out.
    let mut busy_kept = 0;
    let mut round = 0;
    loop {
        if round == rounds {
            // Undecided: a figure whose interval still straddles the line gets another block
            // of rounds, up to the plan's most.
            if rounds >= plan.max_rounds || !straddles(&rates) {
                break;
            }
            rounds = (rounds + plan.rounds).min(plan.max_rounds);
        }
        let before = cpu::CpuSample::now();
        // Rotated and alternately reversed, so every count takes every position in a round:
        // work that recurs every few slices (SQLite's WAL checkpoint, where a bench does not
        // run one before each slice) lands on all counts alike instead of on every other one.
        let mut order: Vec<usize> = (0..counts.len())
            .map(|i| (i + round) % counts.len())
            .collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut round_rates = vec![0.0; counts.len()];
        let mut round_server = vec![None; counts.len()];
        if let Some(server) = server.as_mut() {
            runtime.block_on(server.refresh());
        }
        for i in order {
            let server_before = server.as_ref().and_then(|s| s.ran_ns());
            let took = runtime.block_on(run(slice_ops[i], counts[i]));
            round_rates[i] = slice_ops[i] as f64 / took.as_secs_f64();
            let server_after = server.as_ref().and_then(|s| s.ran_ns());
            round_server[i] = server_before
                .zip(server_after)
                .map(|(b, a)| a.saturating_sub(b) as f64 / 1e3 / slice_ops[i] as f64);
        }
        let taken = before.zip(cpu::CpuSample::now());
        let share = taken.and_then(|(before, after)| after.others_since(&before));
        // SQLite runs inside this process, so any other busy process took CPU from it. On
        // PostgreSQL the server's processes are the others; their share is only reported.
        let shared = backend == Backend::Sqlite && share.is_some_and(|s| s > QUIET_LIMIT);
        if shared && !smoke {
            if repeated < plan.max_repeats {
                repeated += 1;
                continue;
            }
            busy_kept += 1;
        }
        for (rates, rate) in rates.iter_mut().zip(round_rates) {
            rates.push(rate);
        }
        for (server_us, us) in server_us.iter_mut().zip(round_server) {
            server_us.extend(us);
        }
        others.extend(share);
        round += 1;
    }
    if busy_kept > 0 {
        eprintln!(
            "{group}: other processes kept taking more than {QUIET_LIMIT} of the CPU; \
             {busy_kept} of its {rounds} rounds were read on a busy machine"
        );
    }
    // The largest count against each, paired within a round: slices a few hundred
    // milliseconds apart see the same machine, so drift between rounds (the disk, SQLite's
    // WAL) cancels out of the ratio, as it does in the pool's A/A control.
    let (mut paired, mut intervals) = (serde_json::Map::new(), serde_json::Map::new());
    for (i, count) in counts.iter().enumerate() {
        let mut ratios = largest_over(&rates, i);
        paired.insert(count.to_string(), median(&mut ratios).into());
        let (low, high) = median_interval(&mut ratios);
        intervals.insert(count.to_string(), serde_json::json!([low, high]));
    }
    let medians: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .zip(rates.iter_mut())
        .map(|(count, rates)| (count.to_string(), median(rates).into()))
        .collect();
    let others_max = others.iter().copied().reduce(f64::max);
    // Per count, over the slices whose backends could all be read.
    let server_medians: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .zip(server_us.iter_mut())
        .filter(|(_, us)| !us.is_empty())
        .map(|(count, us)| (count.to_string(), median(us).into()))
        .collect();
    let line = serde_json::json!({
        "group": group,
        "rounds": rounds,
        "slice_ms": slice.as_millis(),
        "rates": medians,
        "largest_over": paired,
        "largest_over_interval": intervals,
        "server_us_per_op": (!server_medians.is_empty()).then_some(server_medians),
        "others_cpu": { "median": (!others.is_empty()).then(|| median(&mut others)), "max": others_max },
        "rounds_repeated": repeated,
        "busy_rounds_kept": busy_kept,
    });
    println!("sweep\t{line}");
}

/// Each round's rate at the largest count over its rate at count `i`.
fn largest_over(rates: &[Vec<f64>], i: usize) -> Vec<f64> {
    let last = rates.len() - 1;
    rates[last]
        .iter()
        .zip(&rates[i])
        .map(|(largest, here)| largest / here)
        .collect()
}

/// Whether any count's paired figure is still undecided: its 95% interval holds
/// [`COLLAPSE_LINE`] and values below it.
fn straddles(rates: &[Vec<f64>]) -> bool {
    (0..rates.len()).any(|i| {
        let (low, high) = median_interval(&mut largest_over(rates, i));
        low < COLLAPSE_LINE && high >= COLLAPSE_LINE
    })
}

/// What the command line asks of this run, as far as work outside criterion's timed points
/// (the interleaved ratios, the overload check) needs to know: criterion's own mode rules
/// (`--test`, or no `--bench`, runs each point once) and its filter, read as substrings split at
/// `|` (criterion reads a regex; a plain name or `a|b` means the same to both).
pub struct Cli {
    pub test: bool,
    pub list: bool,
    filter: Option<String>,
}

/// criterion's flags that take a value, so their values are not mistaken for the filter.
const VALUE_FLAGS: [&str; 19] = [
    "--save-baseline",
    "-s",
    "--baseline",
    "-b",
    "--baseline-lenient",
    "--load-baseline",
    "--format",
    "--profile-time",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
    "--color",
    "-c",
];

impl Cli {
    pub fn parse() -> Cli {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let mut filter = None;
        let mut skip_value = false;
        for arg in &args {
            if skip_value {
                skip_value = false;
            } else if VALUE_FLAGS.contains(&arg.as_str()) {
                skip_value = true;
            } else if !arg.starts_with('-') {
                filter = Some(arg.clone());
            }
        }
        Cli {
            test: has("--test") || !has("--bench"),
            list: has("--list"),
            filter,
        }
    }

    /// Whether criterion's filter may select `id` (never false for an id it selects).
    pub fn selects(&self, id: &str) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => filter.split('|').any(|part| id.contains(part)),
        }
    }
}
