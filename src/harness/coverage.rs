//! What a run reached: outcomes by op kind, and how each fault kind ended. The tables a
//! default run must fill, and that `soak` prints.

use super::op::{Op, Step};
use crate::domain::Rejection;
use std::collections::BTreeMap;
use std::fmt;

/// Counts of what a run reached: outcomes by op kind.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// (op kind, outcome kind) → count; the outcome is `ok` or a rejection's name.
    pub outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// (fault kind, how it ended) → count: `completed` (the op finished anyway), `before` or
    /// `after` (its unknown outcome resolved to the state before or after it), `serial` (a
    /// batch explained by a serial order), `killed` (connections terminated).
    pub faults: BTreeMap<(&'static str, &'static str), u64>,
    pub steps: u64,
}

impl Coverage {
    pub fn record(&mut self, op: &'static str, outcome: &'static str) {
        *self.outcomes.entry((op, outcome)).or_default() += 1;
    }

    pub fn fault(&mut self, kind: &'static str, ended: &'static str) {
        *self.faults.entry((kind, ended)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Coverage) {
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(*k).or_default() += v;
        }
        for (k, v) in &other.faults {
            *self.faults.entry(*k).or_default() += v;
        }
        self.steps += other.steps;
    }

    /// Fault kinds never exercised.
    pub fn missing_faults(&self) -> Vec<&'static str> {
        Step::FAULT_KINDS
            .iter()
            .copied()
            .filter(|k| !self.faults.keys().any(|(kind, _)| kind == k))
            .collect()
    }

    fn reached(&self, op: Option<&str>, outcome: Option<&str>) -> bool {
        self.outcomes
            .keys()
            .any(|(o, r)| op.is_none_or(|op| op == *o) && outcome.is_none_or(|x| x == *r))
    }

    /// Op kinds and rejection kinds never reached.
    pub fn missing(&self) -> Vec<&'static str> {
        use strum::IntoEnumIterator;
        let ops = Op::KINDS
            .iter()
            .copied()
            .filter(|k| !self.reached(Some(k), None));
        let rejections = Rejection::iter()
            .map(|r| r.name())
            .filter(|k| !self.reached(None, Some(k)));
        ops.chain(rejections).collect()
    }
}

impl fmt::Display for Coverage {
    /// One line per op kind: its total, then its outcomes by count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_op: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for ((op, outcome), n) in &self.outcomes {
            by_op.entry(op).or_default().push((outcome, *n));
        }
        writeln!(f, "{:<20} {:>7}  outcomes", "op", "count")?;
        for (op, mut outcomes) in by_op {
            outcomes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            let total: u64 = outcomes.iter().map(|(_, n)| n).sum();
            let list: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            writeln!(f, "{op:<20} {total:>7}  {}", list.join(", "))?;
        }
        if !self.faults.is_empty() {
            writeln!(f, "{:<20} {:>7}  ended", "fault", "count")?;
            let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for ((kind, ended), n) in &self.faults {
                by_kind
                    .entry(kind)
                    .or_default()
                    .push(format!("{ended} {n}"));
            }
            for (kind, list) in by_kind {
                let total: u64 = self
                    .faults
                    .iter()
                    .filter(|((k, _), _)| *k == kind)
                    .map(|(_, n)| n)
                    .sum();
                writeln!(f, "{kind:<20} {total:>7}  {}", list.join(", "))?;
            }
        }
        write!(f, "{} steps", self.steps)
    }
}
