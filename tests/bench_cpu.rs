//! The benchmarks' reading of other processes' CPU share (benches/common/cpu.rs), tested here:
//! criterion's benchmarks run without libtest, so tests beside that code would never run.

#[path = "../benches/common/cpu.rs"]
mod cpu;

use cpu::{CpuSample, machine_ticks, own_ticks};

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
