//! The benchmarks' own instruments, tested here: criterion's benchmarks run without libtest,
//! so tests beside that code would never run. `cpu.rs` reads other processes' CPU share from
//! `/proc`; `stats.rs` gives the sweeps' medians and their intervals.

#[path = "../benches/common/cpu.rs"]
mod cpu;
#[path = "../benches/common/stats.rs"]
mod stats;

use cpu::{CpuSample, machine_ticks, own_ticks};
use stats::{median, median_interval};

#[test]
#[cfg(target_os = "linux")]
fn reads_this_machine() {
    let before = CpuSample::now().expect("/proc/stat and /proc/self/stat are readable on Linux");
    let spin = std::time::Instant::now();
    while spin.elapsed() < std::time::Duration::from_millis(50) {
        std::hint::spin_loop();
    }
    let after = CpuSample::now().expect("a second reading");
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
    // 45 rounds: ranks 16 and 30 (Conover's n/2 -/+ 1.96 sqrt(n)/2, rounded).
    let mut values: Vec<f64> = (1..=45).rev().map(f64::from).collect();
    assert_eq!(median_interval(&mut values), (16.0, 30.0));
    assert_eq!(median_interval(&mut [7.0]), (7.0, 7.0));
    let (low, high) = median_interval(&mut []);
    assert!(low.is_nan() && high.is_nan());
}

/// The interval holds the true median about 95% of the time: 4,000 samples of 45 uniform
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
    assert!((0.93..=0.98).contains(&coverage), "coverage {coverage}");
}
