//! `SELECT 1` through `Db` on a pool of one connection (or the size given), each task count run for many seconds
//! rather than the sweep's 100 ms slices, counts alternated in one process. Every 100 ms it
//! prints the rate, each runtime worker's parks, how many operations ended on another thread
//! than the one before (on SQLite these tell tokio's two modes apart: CONTRIBUTING.md, "Run
//! longer, it has two modes"), and how many were done by another task than the one before
//! (how often the connection changed hands). Then the sustained rate per count, and the last
//! count's over each, paired within rounds. The benchmarks' runtime, fixture (its session invariant
//! included) and driver (`benches/common`).
//!
//!     cargo run --release --example sustained -- sqlite 2,128 300000 2
//!     cargo run --release --example sustained -- sqlite 2,128 300000 2 0,50   # answer spins
//!     cargo run --release --example sustained -- sqlite 1,2,8,128 200000 3 0,50 4   # 4 connections
//!     LEAKPROOF_PG_URL=postgres://postgres@127.0.0.1:5432/leakproof_bench \
//!         cargo run --release --example sustained -- postgres 1,128 100000 2

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Fixture, median, spread_shared};
use leakproof::db::{Backend, MAX_ANSWER_SPIN, PoolConfig, sql};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Operations done; those that ended on another thread, and those done by another task, than
/// the operation before.
static DONE: AtomicU64 = AtomicU64::new(0);
static MOVED: AtomicU64 = AtomicU64::new(0);
static LAST_THREAD: AtomicU64 = AtomicU64::new(u64::MAX);
static HANDED: AtomicU64 = AtomicU64::new(0);
static LAST_TASK: AtomicU64 = AtomicU64::new(u64::MAX);
const TICK: Duration = Duration::from_millis(100);

struct Args {
    backend: Backend,
    counts: Vec<usize>,
    ops: u64,
    rounds: usize,
    /// `PoolConfig::answer_spin` values to compare, a pool each; the backend's default if none.
    spins: Vec<Duration>,
    /// Connections in each pool (1 unless given).
    size: u32,
}

fn parse() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (backend, counts, ops, rounds, spins, size) = match args.as_slice() {
        [b, c, o, r] => (b, c, o, r, None, None),
        [b, c, o, r, s] => (b, c, o, r, Some(s), None),
        [b, c, o, r, s, n] => (b, c, o, r, Some(s), Some(n)),
        _ => {
            return Err(
                "expected: <sqlite | postgres> <counts, e.g. 2,128> <ops> <rounds> \
                        [answer spins in us, e.g. 0,50 [pool size]]"
                    .into(),
            );
        }
    };
    let size = match size {
        None => 1,
        Some(n) => match n.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("pool size {n:?}: a whole number from 1")),
        },
    };
    let backend = match backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" if common::postgres_url().is_some() => Backend::Postgres,
        "postgres" => return Err(format!("postgres needs {}", common::PG_URL_VAR)),
        other => return Err(format!("backend {other:?}: sqlite or postgres")),
    };
    let counts = list(counts, "count")?;
    if counts.contains(&0) {
        return Err("every count must be at least 1".into());
    }
    let spins = match spins {
        None => vec![PoolConfig::for_backend(backend).answer_spin],
        Some(spins) => list(spins, "spin")?
            .into_iter()
            .map(|us| Duration::from_micros(us as u64))
            .collect(),
    };
    if let Some(spin) = spins.iter().find(|s| **s > MAX_ANSWER_SPIN) {
        return Err(format!("spin {spin:?} is longer than {MAX_ANSWER_SPIN:?}"));
    }
    let ops = ops.parse().map_err(|e| format!("ops {ops:?}: {e}"))?;
    let rounds = rounds
        .parse()
        .map_err(|e| format!("rounds {rounds:?}: {e}"))?;
    Ok(Args {
        backend,
        counts,
        ops,
        rounds,
        spins,
        size,
    })
}

fn list(text: &str, what: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|c| c.parse::<usize>().map_err(|e| format!("{what} {c:?}: {e}")))
        .collect()
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sustained: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = common::runtime();
    let fixtures: Vec<Fixture> = args
        .spins
        .iter()
        .map(|&answer_spin| {
            let config = PoolConfig {
                max_connections: args.size,
                answer_spin,
                ..PoolConfig::for_backend(args.backend)
            };
            runtime.block_on(Fixture::open(args.backend, config))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (metrics, stop) = (runtime.metrics(), Arc::clone(&stop));
        std::thread::spawn(move || tick(metrics, &stop))
    };
    // rates[spin][count]: one rate per round.
    let mut rates = vec![vec![Vec::new(); args.counts.len()]; args.spins.len()];
    for round in 0..args.rounds {
        for (s, fixture) in fixtures.iter().enumerate() {
            for (i, &tasks) in args.counts.iter().enumerate() {
                println!("-- round {round}, spin {:?}, {tasks} tasks", args.spins[s]);
                let took = runtime.block_on(spread_shared(
                    args.ops,
                    tasks,
                    &fixture.db,
                    |db, _, _| async move {
                        let mut session = db.session("sustained").await.expect("checkout");
                        session.fetch_one(sql("SELECT 1")).await.expect("SELECT 1");
                        drop(session);
                        count_op();
                        db
                    },
                ));
                rates[s][i].push(args.ops as f64 / took.as_secs_f64());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    // Ratios paired within a round: the last count over each, each spin over the first.
    let paired = |a: &[f64], b: &[f64]| {
        let mut ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
        median(&mut ratios)
    };
    let last = args.counts.len() - 1;
    for (s, spin) in args.spins.iter().enumerate() {
        for (i, tasks) in args.counts.iter().enumerate() {
            println!(
                "spin {spin:>6?} {tasks:4} tasks: {:8.0}/s; the last count over this: {:.3}; \
                 over the first spin: {:.3}",
                median(&mut rates[s][i].clone()),
                paired(&rates[s][last], &rates[s][i]),
                paired(&rates[s][i], &rates[0][i]),
            );
        }
    }
    for fixture in fixtures {
        runtime.block_on(fixture.finish("sustained"));
    }
    ExitCode::SUCCESS
}

fn count_op() {
    static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    }
    count_change(&LAST_THREAD, THREAD.with(|t| *t), &MOVED);
    // Tokio gives a task's id no number, only `Hash`: a hash tells two tasks apart.
    let task = tokio::task::try_id().map_or(0, |id| {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
    });
    count_change(&LAST_TASK, task, &HANDED);
    DONE.fetch_add(1, Ordering::Relaxed);
}

/// Counts an operation whose `me` differs from the last one's.
fn count_change(last: &AtomicU64, me: u64, changes: &AtomicU64) {
    if last.swap(me, Ordering::Relaxed) != me {
        changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every `TICK`: the rate, each worker's parks, and the operations that changed thread or task.
fn tick(metrics: tokio::runtime::RuntimeMetrics, stop: &AtomicBool) {
    let workers = metrics.num_workers();
    let sample = || {
        let parks: Vec<u64> = (0..workers)
            // A park and its unpark count once each.
            .map(|w| metrics.worker_park_unpark_count(w) / 2)
            .collect();
        (
            DONE.load(Ordering::Relaxed),
            MOVED.load(Ordering::Relaxed),
            parks,
            HANDED.load(Ordering::Relaxed),
        )
    };
    let mut last = sample();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = sample();
        let ops = now.0 - last.0;
        if ops > 0 {
            let parks: Vec<f64> = now
                .2
                .iter()
                .zip(&last.2)
                .map(|(n, l)| ((n - l) as f64 / ops as f64 * 100.0).round() / 100.0)
                .collect();
            println!(
                "{:7.0}/s  parks per op, each worker {parks:?}  moved {:.2}  handed over {:.3}",
                ops as f64 / TICK.as_secs_f64(),
                (now.1 - last.1) as f64 / ops as f64,
                (now.3 - last.3) as f64 / ops as f64,
            );
        }
        last = now;
    }
}
