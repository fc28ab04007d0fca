//! Harness power: with a seeded bug compiled in (`--features mutant-…`), the default state
//! machine budget must fail, on SQLite or else on PostgreSQL (some bugs need a real race, and
//! SQLite runs writers one at a time), and shrink to a short transcript. Without a mutant
//! feature this file holds no test. scripts/mutants.sh runs every mutant and tabulates.

#![cfg(feature = "seeded-bug")]

mod common;

use leakproof::harness::machine::{self, Budget, MachineError};

/// A shrunk failure longer than this is a harness that finds bugs but cannot explain them.
const MAX_SHRUNK_STEPS: usize = 8;

#[test]
fn the_seeded_bug_is_caught_and_shrinks() {
    // No saved cases: the time to the first failure is measured from scratch.
    let mut survived = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let budget = match backend {
            "sqlite" => Budget::from_env(),
            _ => match common::postgres_url() {
                Some(url) => Budget {
                    postgres_url: Some(url),
                    ..Budget::from_env()
                },
                None => continue,
            },
        };
        match machine::run(&budget) {
            Err(MachineError::Failed(shrunk)) => {
                // scripts/mutants.sh reads this line.
                println!(
                    "caught on {backend}: {} steps, {:.2}s to the first failure; shrunk to {} steps",
                    shrunk.steps_before,
                    shrunk.found_after.as_secs_f64(),
                    shrunk.steps
                );
                println!("{shrunk}");
                assert!(
                    shrunk.steps <= MAX_SHRUNK_STEPS,
                    "shrunk to {} steps",
                    shrunk.steps
                );
                return;
            }
            Ok(report) => survived.push(format!("{backend}: {report}")),
            Err(other) => panic!("{other}"),
        }
    }
    panic!(
        "the seeded bug survived the default budget:\n{}",
        survived.join("\n")
    );
}
