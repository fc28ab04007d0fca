//! `SELECT 1` through `Db` on a pool of one connection, each task count run for many seconds
//! rather than the sweep's 100 ms slices, counts alternated in one process. Every 100 ms it
//! prints the rate, each runtime worker's parks, and how many operations ended on another
//! thread than the one before: on SQLite these tell tokio's two modes apart (CONTRIBUTING.md,
//! "Run longer, it has two modes"). Then the sustained rate per count, and 128's (the last
//! count's) over each, paired within rounds.
//!
//!     cargo run --release --example sustained -- sqlite 2,128 300000 2
//!     cargo run --release --example sustained -- postgres://postgres@127.0.0.1:5432/leakproof_bench 1,128 100000 2

use leakproof::db::scratch::Scratch;
use leakproof::db::{Backend, Db, PoolConfig, SETTLE_DEADLINE, sql};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Operations done, and those that ended on another thread than the operation before.
static DONE: AtomicU64 = AtomicU64::new(0);
static MOVED: AtomicU64 = AtomicU64::new(0);
static LAST_THREAD: AtomicU64 = AtomicU64::new(u64::MAX);
const TICK: Duration = Duration::from_millis(100);

struct Args {
    target: String,
    counts: Vec<usize>,
    ops: u64,
    rounds: usize,
}

fn parse() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, counts, ops, rounds] = args.as_slice() else {
        return Err("expected: <sqlite | postgres URL> <counts, e.g. 2,128> <ops> <rounds>".into());
    };
    let counts = counts
        .split(',')
        .map(|c| c.parse::<usize>().map_err(|e| format!("count {c:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if counts.contains(&0) {
        return Err("every count must be at least 1".into());
    }
    let ops = ops.parse().map_err(|e| format!("ops {ops:?}: {e}"))?;
    let rounds = rounds
        .parse()
        .map_err(|e| format!("rounds {rounds:?}: {e}"))?;
    Ok(Args {
        target: target.clone(),
        counts,
        ops,
        rounds,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sustained: {e}");
            return ExitCode::from(2);
        }
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sustained: a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&runtime, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sustained: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(runtime: &tokio::runtime::Runtime, args: &Args) -> Result<(), String> {
    let (db, scratch) = runtime.block_on(open(&args.target))?;
    let db = Arc::new(db);
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (metrics, stop) = (runtime.metrics(), Arc::clone(&stop));
        std::thread::spawn(move || tick(metrics, &stop))
    };
    let mut rates = vec![Vec::new(); args.counts.len()];
    for round in 0..args.rounds {
        for (i, &tasks) in args.counts.iter().enumerate() {
            println!("-- round {round}, {tasks} tasks");
            let took = runtime.block_on(spread(&db, tasks, args.ops))?;
            rates[i].push(args.ops as f64 / took.as_secs_f64());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    let last = args.counts.len() - 1;
    for (i, tasks) in args.counts.iter().enumerate() {
        let mut over: Vec<f64> = rates[last]
            .iter()
            .zip(&rates[i])
            .map(|(l, r)| l / r)
            .collect();
        let rate = median(&mut rates[i].clone());
        println!(
            "{tasks:4} tasks: {rate:8.0}/s; the last count over this: {:.3}",
            median(&mut over)
        );
    }
    runtime.block_on(async {
        let views = db.close(SETTLE_DEADLINE).await.map_err(|e| e.to_string())?;
        if !views.is_closed() {
            return Err(format!("open after close: {views}"));
        }
        scratch.remove().await.map_err(|e| e.to_string())
    })
}

async fn open(target: &str) -> Result<(Db, Scratch), String> {
    let (scratch, backend) = match target {
        "sqlite" => (
            Scratch::sqlite().map_err(|e| e.to_string())?,
            Backend::Sqlite,
        ),
        url => (
            Scratch::postgres(url).await.map_err(|e| e.to_string())?,
            Backend::Postgres,
        ),
    };
    let config = PoolConfig {
        max_connections: 1,
        ..PoolConfig::for_backend(backend)
    };
    let db = Db::connect_with(&scratch.url, config)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok((db, scratch))
}

/// `ops` operations over `tasks` tasks; the wall time from the first spawn to the last end.
async fn spread(db: &Arc<Db>, tasks: usize, ops: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks as u64)
        .map(|t| {
            let share = ops / tasks as u64 + u64::from(t < ops % tasks as u64);
            let db = Arc::clone(db);
            tokio::spawn(async move {
                for _ in 0..share {
                    let mut session = db.session("sustained").await?;
                    session.fetch_one(sql("SELECT 1")).await?;
                    drop(session);
                    count_op();
                }
                Ok::<(), leakproof::db::DbError>(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .await
            .map_err(|e| format!("a task: {e}"))?
            .map_err(|e| format!("an operation: {e}"))?;
    }
    Ok(start.elapsed())
}

fn count_op() {
    static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    }
    let me = THREAD.with(|t| *t);
    if LAST_THREAD.swap(me, Ordering::Relaxed) != me {
        MOVED.fetch_add(1, Ordering::Relaxed);
    }
    DONE.fetch_add(1, Ordering::Relaxed);
}

/// Every `TICK`: the rate, each worker's parks, and the operations that changed thread.
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
        )
    };
    let mut last = sample();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = sample();
        let ops = now.0 - last.0;
        let parks: Vec<u64> = now.2.iter().zip(&last.2).map(|(n, l)| n - l).collect();
        if ops > 0 {
            println!(
                "{:7.0}/s  parks per op, each worker {:?}  moved {:.2}",
                ops as f64 / TICK.as_secs_f64(),
                parks
                    .iter()
                    .map(|p| (*p as f64 / ops as f64 * 100.0).round() / 100.0)
                    .collect::<Vec<_>>(),
                (now.1 - last.1) as f64 / ops as f64,
            );
        }
        last = now;
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
