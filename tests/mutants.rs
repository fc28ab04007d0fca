//! Harness power: with a seeded bug compiled in (`--features mutant-…`), the default state
//! machine run must fail, and shrink to a short transcript. Without a mutant feature this file
//! holds no test. scripts/mutants.sh runs every mutant.

#[cfg(any(
    feature = "mutant-leak-on-conflict",
    feature = "mutant-refresh-no-rotation",
    feature = "mutant-leak-on-cancel",
    feature = "mutant-open-tx-on-error",
    feature = "mutant-half-applied-download"
))]
#[test]
fn the_seeded_bug_is_caught_and_shrinks_to_at_most_6_steps() {
    use leakproof::harness::machine::{self, Budget, MachineError};
    let started = std::time::Instant::now();
    // No saved cases: the time to the first failure is measured from scratch.
    let budget = Budget::from_env();
    match machine::run(&budget) {
        Err(MachineError::Failed(shrunk)) => {
            println!(
                "caught and shrunk in {:.2}s\n{shrunk}",
                started.elapsed().as_secs_f64()
            );
            assert!(shrunk.steps <= 6, "shrunk to {} steps", shrunk.steps);
        }
        Ok(report) => panic!("the seeded bug survived the default run:\n{report}"),
        Err(other) => panic!("{other}"),
    }
}
