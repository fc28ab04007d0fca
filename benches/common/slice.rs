//! How many operations a timed slice runs, shared by every interleaved measurement.

use std::time::Duration;

/// The most operations in one slice, whatever a calibration said.
pub const MAX_SLICE_OPS: u64 = 1_000_000;

/// Operations each task does at least, per slice of the no-collapse sweep. A slice spawns its
/// tasks and waits for all of them: with a few operations each, it times the tasks' start
/// (every one past the pool's size queues once) and end (each hands the connection on) more
/// than the pool under load. On PostgreSQL with one connection at 3-4k `SELECT 1`/s, 100 ms
/// slices gave 128 tasks 3 operations each, and they read 0.83 of one task's rate; with 8 to
/// 26 each (400 ms slices) 0.89 to 0.99, and the workers' parks per operation matched one
/// task's.
pub const SWEEP_OPS_PER_TASK: u64 = 32;

/// The longest a round's slices are stretched to match its longest one ([`round_slice`]).
pub const MAX_ROUND_SLICE: Duration = Duration::from_millis(400);

/// How long every slice of a round lasts: `slice`, or as long as the count that needs longest
/// to give each of its tasks `per_task` operations (at `per_op[i]` seconds each for
/// `counts[i]` tasks), up to [`MAX_ROUND_SLICE`]. Compared across counts, a short slice reads
/// faster than a long one: on PostgreSQL with one connection, one task's `SELECT 1` in 1,500-op
/// slices made 128 tasks (4,096-op slices) read 0.81 and 0.88 of it, and in 4,096-op slices of
/// the same rounds 0.96 and 0.98. Run alone for 7 s each, 1, 2 and 128 tasks did 14.2k to
/// 15.8k/s, no count ahead (CONTRIBUTING.md).
pub fn round_slice(slice: Duration, per_op: &[f64], counts: &[usize], per_task: u64) -> Duration {
    let longest = per_op
        .iter()
        .zip(counts)
        .map(|(&per_op, &tasks)| {
            Duration::try_from_secs_f64(per_op.max(0.0) * tasks as f64 * per_task as f64)
                .unwrap_or(MAX_ROUND_SLICE)
        })
        .max()
        .unwrap_or(slice);
    slice.max(longest.min(MAX_ROUND_SLICE))
}

/// Operations for a slice of about `slice` at `per_op` seconds each on `tasks` tasks: never
/// fewer than `per_task` for each task, nor more than [`MAX_SLICE_OPS`] (unless `per_task`
/// asks for more).
pub fn slice_ops(slice: Duration, per_op: f64, tasks: usize, per_task: u64) -> u64 {
    let timed = (slice.as_secs_f64() / per_op.max(1e-9)) as u64;
    let least = (tasks as u64).saturating_mul(per_task.max(1));
    timed.min(MAX_SLICE_OPS).max(least)
}
