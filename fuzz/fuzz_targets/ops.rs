//! Operation sequences (faults and concurrent batches included) on the model and the system
//! on SQLite: `leakproof::harness::fuzz::ops`.
#![no_main]

use leakproof::harness::fuzz;
use leakproof::harness::machine::Lab;
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// One runtime and one scratch database per process, emptied between inputs.
    static LAB: Lab = fuzz::ops_lab().unwrap_or_else(|e| panic!("cannot set up the lab: {e}"));
}

fuzz_target!(
    init: {
        LAB.with(|_| ());
    },
    |data: &[u8]| {
        LAB.with(|lab| {
            if let Err(failure) = fuzz::run_ops_input(lab, data) {
                panic!("{failure}");
            }
        });
    }
);
