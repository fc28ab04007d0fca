//! What the leak-proofing costs: the pool's checkout cycle through our guards (`Db::session`,
//! which counts itself in the ledger) against the same sqlx pool used raw, on the same runtime,
//! interleaved point by point: `raw`, `wrapped`, then `raw_aa` (raw again, the A/A control:
//! its distance from `raw` is the noise any wrapped/raw ratio must be read against).
//!
//! The wrapped side is what a caller of `Db` gets, not the ledger alone: a guard's clean
//! connection goes straight to the next checkout (db/handoff.rs), concurrent or back-to-back
//! within `LINGER`, so wrapped skips sqlx's release ping and acquire that raw pays per cycle;
//! past the pool's size a task's next checkout may take its own connection back (eventual
//! fairness), so the bare cycle does not become one task switch per checkout.
//! What the ledger and the claims cost by themselves is counted in instructions (CONTRIBUTING.md,
//! "Measuring the ledger's cost"), where the machine's noise cannot hide it.
//!
//! Two workloads: the bare acquire-and-release cycle, and acquire + `SELECT 1` + release.
//! Swept over pool size × concurrent tasks × `test_before_acquire`, on SQLite and (with
//! `LEAKPROOF_PG_URL`) PostgreSQL. Each point is one `iter_custom` run: the timer starts before
//! the tasks are spawned and stops when the last ends; one iteration is one checkout.
//!
//! Criterion measures each side in its own window, seconds apart; on a busy machine that drift
//! is larger than what the ledger costs. So after each point's three sides the ratio is also
//! measured interleaved: rounds of raw, wrapped, raw again, each ~20 ms, the median over the
//! rounds of wrapped / mean(raw, raw again) and of raw again / raw (the A/A). Printed as
//! `ratio\t{json}` lines, which scripts/bench.sh tabulates.
//!
//! Then, per group, the interleaved concurrency sweep of the wrapped side alone
//! (`common::concurrency_sweep`): the no-collapse figure. For `SELECT 1` on one connection
//! (without `test_before_acquire`) it runs again in slices of seconds (`Plan::sustained`),
//! printed as group `sustained/…`.
//!
//! After every benchmark the session invariant is asserted (`Fixture::check`); each pool ends
//! by closing to zero. Then an overload check: more callers than a tiny pool can serve within
//! its acquire timeout must get `AcquireTimeout` errors, and still leave nothing open.
//!
//! `scripts/bench.sh` runs this and prints the ratios; `cargo test --bench pool` runs each point
//! once (criterion's test mode), each sweep one round of short slices, and still asserts the
//! invariant.

mod common;

use common::{Cli, Fixture, median, spread_shared};
use criterion::{BenchmarkId, Criterion, Throughput};
use leakproof::db::{Backend, Db, DbError, PoolConfig, sql};
use std::time::Duration;
use tokio::runtime::Runtime;

const POOL_SIZES: [u32; 4] = [1, 2, 4, 8];
const TASKS: [usize; 5] = [1, 2, 8, 32, 128];

#[derive(Debug, Clone, Copy)]
enum Workload {
    /// Acquire, drop: the pool's own cost, and ours on top (the ledger, the suspect check).
    Cycle,
    /// Acquire, `SELECT 1`, drop: the smallest real use of a checkout.
    Select1,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Cycle => "cycle",
            Workload::Select1 => "select1",
        }
    }
}

/// `raw` before and `raw_aa` after `wrapped`, so the A/A pair brackets the wrapped run in time.
const SIDES: [(&str, bool); 3] = [("raw", false), ("wrapped", true), ("raw_aa", false)];

/// Interleaved rounds per ratio, and the length of one side's slice in a round.
const RATIO_ROUNDS: usize = 21;
const RATIO_SLICE: Duration = Duration::from_millis(20);

fn main() {
    let cli = Cli::parse();
    let runtime = common::runtime();
    let mut criterion = common::criterion();
    for backend in common::backends() {
        for test_before_acquire in [false, true] {
            for size in POOL_SIZES {
                let config = Config {
                    backend,
                    size,
                    test_before_acquire,
                };
                if config.selected(&cli) {
                    sweep(&mut criterion, &runtime, &cli, config);
                }
            }
        }
        if !cli.list && cli.selects(&format!("overload/{}", common::name(backend))) {
            runtime.block_on(overload(backend));
        }
    }
    criterion.final_summary();
}

/// One pool under test.
#[derive(Debug, Clone, Copy)]
struct Config {
    backend: Backend,
    size: u32,
    test_before_acquire: bool,
}

impl Config {
    fn group(self, workload: Workload) -> String {
        let tba = if self.test_before_acquire {
            "on"
        } else {
            "off"
        };
        format!(
            "pool/{}/{}/size{}/tba-{tba}",
            common::name(self.backend),
            workload.name(),
            self.size
        )
    }

    /// Whether the no-collapse sweep also runs sustained (seconds per slice): for `SELECT 1`
    /// on one connection, where one statement at a time is in flight and every task waits on
    /// it, so how the runtime's workers sleep and wake sets the rate. On SQLite that rate had
    /// two modes lasting seconds, one a fifth of the other, which 100 ms slices only sample
    /// (CONTRIBUTING.md, "Run longer, it has two modes").
    fn sustained(self, workload: Workload) -> bool {
        matches!(workload, Workload::Select1) && self.size == 1 && !self.test_before_acquire
    }

    /// Whether any of its points may be selected: a filtered run opens no pool it won't use.
    fn selected(self, cli: &Cli) -> bool {
        [Workload::Cycle, Workload::Select1].iter().any(|&w| {
            TASKS.iter().any(|tasks| {
                SIDES
                    .iter()
                    .any(|(side, _)| cli.selects(&format!("{}/{side}/{tasks}", self.group(w))))
            })
        })
    }
}

/// One pool (size, `test_before_acquire`): both workloads, every task count, all three sides,
/// then the interleaved ratio.
fn sweep(criterion: &mut Criterion, runtime: &Runtime, cli: &Cli, config: Config) {
    let pool_config = PoolConfig {
        max_connections: config.size,
        test_before_acquire: config.test_before_acquire,
        ..PoolConfig::for_backend(config.backend)
    };
    let fixture = runtime.block_on(Fixture::open(config.backend, pool_config));
    for workload in [Workload::Cycle, Workload::Select1] {
        let group_name = config.group(workload);
        let mut group = criterion.benchmark_group(&group_name);
        group.throughput(Throughput::Elements(1));
        for tasks in TASKS {
            let mut selected = false;
            for (side, wrapped) in SIDES {
                let id = format!("{group_name}/{side}/{tasks}");
                selected |= cli.selects(&id);
                let db = fixture.db.clone();
                group.bench_with_input(BenchmarkId::new(side, tasks), &tasks, |b, &tasks| {
                    b.to_async(runtime)
                        .iter_custom(|iters| run(db.clone(), workload, wrapped, iters, tasks));
                });
                runtime.block_on(fixture.check(&id));
            }
            if selected && !cli.list {
                let rounds = if cli.test { 1 } else { RATIO_ROUNDS };
                let measured = interleaved(runtime, &fixture.db, workload, tasks, rounds);
                runtime.block_on(fixture.check(&format!("{group_name}/ratio/{tasks}")));
                let line = serde_json::json!({
                    "group": group_name,
                    "tasks": tasks,
                    "wrapped_over_raw": measured.wrapped_over_raw,
                    "aa": measured.aa,
                    "rounds": rounds,
                });
                println!("ratio\t{line}");
            }
        }
        group.finish();
        // The no-collapse figure: wrapped alone, every task count in each round.
        let wrapped_selected = TASKS
            .iter()
            .any(|tasks| cli.selects(&format!("{group_name}/wrapped/{tasks}")));
        if wrapped_selected && !cli.list {
            let sweep = |group: &str, plan| {
                common::concurrency_sweep(
                    runtime,
                    config.backend,
                    &TASKS,
                    group,
                    plan,
                    common::server::ServerCpu::of(&fixture.db),
                    |ops, tasks| run(fixture.db.clone(), workload, true, ops, tasks),
                );
                runtime.block_on(fixture.check(&format!("{group}/sweep")));
            };
            sweep(&group_name, common::Plan::short(cli.test));
            if config.sustained(workload) {
                let group = format!("sustained/{}", &group_name["pool/".len()..]);
                sweep(&group, common::Plan::sustained(cli.test));
            }
        }
    }
    runtime.block_on(fixture.finish(&config.group(Workload::Cycle)));
}

/// The ratios measured interleaved: `rounds` rounds of raw, wrapped, raw again, each side a
/// slice of ~`RATIO_SLICE` (sized from a raw calibration run, `common::per_op`). Returns the
/// medians of wrapped / mean(raw, raw again) and of raw again / raw, both as time per operation.
fn interleaved(
    runtime: &Runtime,
    db: &Db,
    workload: Workload,
    tasks: usize,
    rounds: usize,
) -> Interleaved {
    let tasks_ops = tasks as u64;
    let ops = if rounds <= 1 {
        tasks_ops
    } else {
        let per_op = common::per_op(runtime, tasks, |ops| {
            run(db.clone(), workload, false, ops, tasks)
        });
        // At least one op per task: both sides pay the tasks' start and end alike.
        common::slice::slice_ops(RATIO_SLICE, per_op, tasks, 1)
    };
    let side = |wrapped: bool| {
        runtime
            .block_on(run(db.clone(), workload, wrapped, ops, tasks))
            .as_secs_f64()
    };
    let mut wrapped = Vec::with_capacity(rounds);
    let mut aa = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let raw = side(false);
        let ours = side(true);
        let again = side(false);
        wrapped.push(ours / ((raw + again) / 2.0));
        aa.push(again / raw);
    }
    Interleaved {
        wrapped_over_raw: median(&mut wrapped),
        aa: median(&mut aa),
    }
}

/// Medians over the interleaved rounds.
struct Interleaved {
    wrapped_over_raw: f64,
    aa: f64,
}

/// `iters` checkouts over `tasks` tasks; the time from before the first spawn to the last end.
async fn run(db: Db, workload: Workload, wrapped: bool, iters: u64, tasks: usize) -> Duration {
    match (workload, wrapped) {
        (Workload::Cycle, true) => {
            spread_shared(iters, tasks, &db, |db, _, _| async move {
                drop(db.session("bench.cycle").await.expect("checkout"));
                db
            })
            .await
        }
        (Workload::Cycle, false) => {
            spread_shared(iters, tasks, db.raw_pool(), |pool, _, _| async move {
                drop(pool.acquire().await.expect("acquire"));
                pool
            })
            .await
        }
        (Workload::Select1, true) => {
            spread_shared(iters, tasks, &db, |db, _, _| async move {
                let mut session = db.session("bench.select1").await.expect("checkout");
                session.fetch_one(sql("SELECT 1")).await.expect("SELECT 1");
                drop(session);
                db
            })
            .await
        }
        (Workload::Select1, false) => {
            spread_shared(iters, tasks, db.raw_pool(), |pool, _, _| async move {
                let mut conn = pool.acquire().await.expect("acquire");
                sqlx::query("SELECT 1")
                    .fetch_one(&mut *conn)
                    .await
                    .expect("SELECT 1");
                drop(conn);
                pool
            })
            .await
        }
    }
}

/// Callers beyond what the pool can serve within its acquire timeout.
const OVERLOAD_CALLERS: usize = 32;
const OVERLOAD_TIMEOUT: Duration = Duration::from_millis(50);
/// How long each served caller keeps its connection: long enough that most others time out.
const OVERLOAD_HOLD: Duration = Duration::from_millis(20);

/// Overload is an error the caller sees, never a leak: 32 callers on one connection, each
/// holding it 20 ms, with a 50 ms acquire timeout. Half ask for a session, half for a
/// transaction (whose drop must roll back). Every failure must be `AcquireTimeout`; some must
/// be served; afterwards nothing may be open, and close must reach zero.
async fn overload(backend: Backend) {
    let config = PoolConfig {
        max_connections: 1,
        acquire_timeout: OVERLOAD_TIMEOUT,
        ..PoolConfig::for_backend(backend)
    };
    let fixture = Fixture::open(backend, config).await;
    let mut callers = Vec::with_capacity(OVERLOAD_CALLERS);
    for caller in 0..OVERLOAD_CALLERS {
        let db = fixture.db.clone();
        callers.push(tokio::spawn(async move {
            if caller % 2 == 0 {
                let mut session = db.session("bench.overload.session").await?;
                session.fetch_one(sql("SELECT 1")).await?;
                tokio::time::sleep(OVERLOAD_HOLD).await;
            } else {
                let mut tx = db.tx("bench.overload.tx").await?;
                tx.fetch_one(sql("SELECT 1")).await?;
                tokio::time::sleep(OVERLOAD_HOLD).await;
                // Dropped without commit: rolled back.
            }
            Ok::<(), DbError>(())
        }));
    }
    let (mut served, mut timed_out) = (0, 0);
    for caller in callers {
        match caller.await.expect("an overload caller panicked") {
            Ok(()) => served += 1,
            Err(DbError::AcquireTimeout { .. }) => timed_out += 1,
            Err(other) => panic!("overload: expected AcquireTimeout, got {other}"),
        }
    }
    let what = format!("overload/{}", common::name(backend));
    assert!(served > 0, "{what}: nobody was served");
    assert!(
        timed_out > 0,
        "{what}: nobody timed out; the check overloads nothing"
    );
    fixture.finish(&what).await;
    println!(
        "{what}: {OVERLOAD_CALLERS} callers on 1 connection: {served} served, {timed_out} saw \
         AcquireTimeout after {OVERLOAD_TIMEOUT:?}; zero sessions open after, zero after close"
    );
}
