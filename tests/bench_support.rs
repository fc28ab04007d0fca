//! The benchmarks' own instruments, tested here: criterion's benchmarks run without libtest,
//! so tests beside that code would never run. `cpu.rs` reads other processes' CPU share from
//! `/proc`; `stats.rs` gives the sweeps' medians and their intervals; `server.rs` reads the
//! CPU a PostgreSQL pool's server processes spent; `slice.rs` sizes the timed slices.

mod common;
#[path = "../benches/common/cpu.rs"]
mod cpu;
#[path = "../benches/common/server.rs"]
mod server;
#[path = "../benches/common/slice.rs"]
mod slice;
#[path = "../benches/common/stats.rs"]
mod stats;

use cpu::{CpuSample, machine_ticks, own_ticks};
use leakproof::db::{Backend, Db, SETTLE_DEADLINE, sql};
use server::{ServerCpu, run_ns};
use slice::{MAX_ROUND_SLICE, MAX_SLICE_OPS, SWEEP_OPS_PER_TASK, round_slice, slice_ops};
use stats::{median, median_interval};

/// Spinning here shows up as this process's time, not as another's: a `/proc/self/stat`
/// read from the wrong fields would not grow (or would grow as other processes' share).
#[test]
#[cfg(target_os = "linux")]
fn counts_this_process_as_its_own() {
    let before = CpuSample::now().expect("/proc/stat and /proc/self/stat are readable on Linux");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut after = before;
    // Ticks are 10 ms; spin until this process, and the machine, have been charged a few of
    // them. The two are counted apart (and other tests' threads add to this process's), so
    // one may lead the other by a tick or two.
    while (after.own < before.own + 5 || after.machine_busy < before.machine_busy + 5)
        && std::time::Instant::now() < deadline
    {
        std::hint::spin_loop();
        after = CpuSample::now().expect("a second reading");
    }
    assert!(
        after.own >= before.own + 5,
        "spinning charged no time to this process"
    );
    assert!(
        after.machine_busy >= before.machine_busy + 5,
        "nor to the machine"
    );
    let share = after
        .others_since(&before)
        .expect("time passed between the readings");
    assert!(
        (0.0..=1.0).contains(&share),
        "a share of the machine: {share}"
    );
}

#[test]
fn reads_proc_lines() {
    let stat = "cpu  100 5 50 800 10 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
    assert_eq!(machine_ticks(stat), Some((161, 971)));
    // The command name may hold spaces and parentheses.
    let own = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0 20 0 9";
    assert_eq!(own_ticks(own), Some(100));
    assert_eq!(machine_ticks("intr 1 2 3"), None);
    assert_eq!(own_ticks("4242 (x) S 1 2"), None);
}

#[test]
fn others_share_excludes_this_process() {
    let before = CpuSample {
        machine_busy: 1_000,
        machine_total: 4_000,
        own: 500,
    };
    let after = CpuSample {
        machine_busy: 1_150,
        machine_total: 4_200,
        own: 600,
    };
    // 150 busy ticks of 200, 100 of them ours: others took 50 of 200.
    assert_eq!(after.others_since(&before), Some(0.25));
    assert_eq!(
        before.others_since(&after),
        None,
        "time does not run backwards"
    );
}

#[test]
fn median_of_odd_even_and_no_values() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    assert!(median(&mut []).is_nan());
}

#[test]
fn median_interval_takes_the_ranks_around_the_middle() {
    // Conover's ranks n/2 - 1.96 sqrt(n)/2 and 1 + n/2 + 1.96 sqrt(n)/2, rounded: the
    // sweep's 45, 90 and 135 rounds.
    for (n, ranks) in [(45, (16.0, 30.0)), (90, (36.0, 55.0)), (135, (56.0, 80.0))] {
        let mut values: Vec<f64> = (1..=n).rev().map(f64::from).collect();
        assert_eq!(median_interval(&mut values), ranks, "{n} values");
    }
    assert_eq!(median_interval(&mut [7.0]), (7.0, 7.0));
    let (low, high) = median_interval(&mut []);
    assert!(low.is_nan() && high.is_nan());
}

/// The interval holds the true median about 96% of the time: 4,000 samples of 45 uniform
/// values (median 0.5), from a fixed xorshift seed.
#[test]
fn median_interval_covers_about_95_percent() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let trials = 4_000;
    let covered = (0..trials)
        .filter(|_| {
            let mut sample: Vec<f64> = (0..45).map(|_| uniform()).collect();
            let (low, high) = median_interval(&mut sample);
            low <= 0.5 && 0.5 <= high
        })
        .count();
    let coverage = covered as f64 / trials as f64;
    // Exactly 0.964 for ranks 16-30; one rank off either way gives 0.946 or 0.974.
    assert!((0.955..=0.972).contains(&coverage), "coverage {coverage}");
}

#[test]
fn reads_schedstat() {
    assert_eq!(run_ns("43512 880 12\n"), Some(43512));
    assert_eq!(run_ns("x 1 2"), None);
    assert_eq!(run_ns(""), None);
}

/// The server's processes for a pool are found by its `application_name`, and the time they
/// ran grows with the queries it sends: a listing that matched nothing, or read the wrong
/// field, would read `None` or stand still.
#[tokio::test]
#[cfg(target_os = "linux")]
async fn server_cpu_grows_with_the_pools_queries() {
    let Some(scratch) = common::scratch(Backend::Postgres).await else {
        return;
    };
    let db = Db::connect(&scratch.url).await.expect("connect");
    let lite = common::scratch(Backend::Sqlite)
        .await
        .expect("scratch sqlite");
    let lite_db = Db::connect(&lite.url).await.expect("connect sqlite");
    assert!(ServerCpu::of(&lite_db).is_none(), "SQLite has no server");
    lite_db.close(SETTLE_DEADLINE).await.expect("close sqlite");
    lite.remove().await.expect("remove the scratch sqlite");
    let mut server = ServerCpu::of(&db).expect("a PostgreSQL pool has a server");
    assert_eq!(server.ran_ns(), None, "nothing listed yet");
    server.refresh().await;
    let before = server
        .ran_ns()
        .expect("the pool's backend, on this machine, is readable");
    for _ in 0..200 {
        let mut session = db
            .session("bench_support.server_cpu")
            .await
            .expect("checkout");
        session
            .fetch_one(sql("SELECT count(*) FROM generate_series(1, 1000)"))
            .await
            .expect("query");
    }
    let after = server.ran_ns().expect("still readable");
    assert!(
        after > before,
        "200 queries charged nothing: {before} -> {after}"
    );
    db.close(SETTLE_DEADLINE).await.expect("close");
    scratch.remove().await.expect("remove the scratch database");
}

/// A slice runs for about its time, but never gives a task fewer operations than asked, nor
/// runs away on a calibration that read zero.
#[test]
fn a_slice_gives_every_task_its_share() {
    let slice = std::time::Duration::from_millis(100);
    // 1 ms an operation: 100 of them, more than 1 task × 32 asks.
    assert_eq!(slice_ops(slice, 1e-3, 1, SWEEP_OPS_PER_TASK), 100);
    // 128 tasks × 32: more than the slice's 100.
    assert_eq!(slice_ops(slice, 1e-3, 128, SWEEP_OPS_PER_TASK), 4096);
    assert_eq!(slice_ops(slice, 1e-3, 128, 1), 128);
    // A calibration of zero seconds an operation: capped.
    assert_eq!(slice_ops(slice, 0.0, 8, 1), MAX_SLICE_OPS);
    // A per-task share of zero still gives each task one.
    assert_eq!(slice_ops(slice, 1.0, 8, 0), 8);
}

/// Every count's slice lasts as long as the one that needs longest to give each task its
/// share, up to the cap; a round whose counts all fit keeps the slice asked for.
#[test]
fn a_round_slices_every_count_alike() {
    let slice = std::time::Duration::from_millis(100);
    let ms = std::time::Duration::from_millis;
    // PostgreSQL's SELECT 1 on one connection: ~66 us an op; 128 x 32 of them take 270 ms.
    let per_op = [66e-6, 70e-6, 70e-6, 70e-6, 66e-6];
    let counts = [1, 2, 8, 32, 128];
    let round = round_slice(slice, &per_op, &counts, SWEEP_OPS_PER_TASK);
    assert_eq!(
        round,
        std::time::Duration::from_secs_f64(66e-6 * 128.0 * 32.0)
    );
    // One task's slice is as long as 128 tasks', not a third of it.
    let one = slice_ops(round, per_op[0], 1, SWEEP_OPS_PER_TASK);
    let all = slice_ops(round, per_op[4], 128, SWEEP_OPS_PER_TASK);
    assert!(
        one + 1 >= all && one <= all,
        "{one} ops for 1 task, {all} for 128"
    );
    // Fast enough that every count fits in the slice: unchanged.
    assert_eq!(
        round_slice(slice, &[1e-6; 5], &counts, SWEEP_OPS_PER_TASK),
        slice
    );
    // Slow: capped.
    assert_eq!(
        round_slice(slice, &[1.0; 5], &counts, SWEEP_OPS_PER_TASK),
        MAX_ROUND_SLICE
    );
    assert_eq!(
        round_slice(slice, &[f64::MAX; 5], &counts, SWEEP_OPS_PER_TASK),
        MAX_ROUND_SLICE
    );
    // Never shorter than asked.
    assert_eq!(round_slice(ms(300), &[1e-6; 5], &counts, 1), ms(300));
}
