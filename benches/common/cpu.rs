//! How much of the machine's CPU other processes took while a benchmark ran (Linux `/proc`).
//!
//! The no-collapse figure compares one task with 128 on a 2-core machine, and CPU taken by
//! another process does not cancel out of that ratio: one task keeps about one core busy, 128
//! want both. With `yes` busy on one core, SQLite's mixed load read 0.75 and 0.77 at 128 tasks
//! against one task, which ran fastest of all counts there (CONTRIBUTING). So each sweep round
//! is measured for it, and an in-process round (SQLite) that shared the machine is run again.

use std::fs;

/// Clock ticks (`USER_HZ`) of the whole machine and of this process, all its threads.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub machine_busy: u64,
    pub machine_total: u64,
    pub own: u64,
}

impl CpuSample {
    /// `None` where `/proc` is missing or unreadable (not Linux): nothing is measured then.
    pub fn now() -> Option<CpuSample> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let own = fs::read_to_string("/proc/self/stat").ok()?;
        let (machine_busy, machine_total) = machine_ticks(&stat)?;
        Some(CpuSample {
            machine_busy,
            machine_total,
            own: own_ticks(&own)?,
        })
    }

    /// The share of the machine's CPU time since `earlier` that went to anything but this
    /// process: other processes, the kernel's own threads, and a hypervisor's steal.
    pub fn others_since(&self, earlier: &CpuSample) -> Option<f64> {
        let total = self.machine_total.checked_sub(earlier.machine_total)?;
        if total == 0 {
            return None;
        }
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy);
        let own = self.own.saturating_sub(earlier.own);
        Some(busy.saturating_sub(own) as f64 / total as f64)
    }
}

/// `/proc/stat`'s first line: `cpu user nice system idle iowait irq softirq steal guest
/// guest_nice`. Busy is everything but idle and iowait; guest time is already in user.
pub fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    let total = busy + field(3) + field(4);
    Some((busy, total))
}

/// `/proc/self/stat`: utime and stime, the 14th and 15th fields. The command name (2nd) may
/// hold spaces and parentheses, so fields are counted after its closing parenthesis.
pub fn own_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}
