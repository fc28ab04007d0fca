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
/// task's. With 32 each, full runs since read 0.77 to 0.99 there: the rest is the server
/// losing its core to the client's second worker (CONTRIBUTING.md).
pub const SWEEP_OPS_PER_TASK: u64 = 32;

/// Operations for a slice of about `slice` at `per_op` seconds each on `tasks` tasks: never
/// fewer than `per_task` for each task, nor more than [`MAX_SLICE_OPS`] (unless `per_task`
/// asks for more).
pub fn slice_ops(slice: Duration, per_op: f64, tasks: usize, per_task: u64) -> u64 {
    let timed = (slice.as_secs_f64() / per_op.max(1e-9)) as u64;
    let least = (tasks as u64).saturating_mul(per_task.max(1));
    timed.min(MAX_SLICE_OPS).max(least)
}
