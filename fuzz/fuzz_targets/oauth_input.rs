//! The oauth input parsers against their rules, then the calls on the model and the
//! system: `leakproof::harness::fuzz::oauth`.
#![no_main]

use leakproof::harness::fuzz::{self, World};
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// One runtime and one scratch database per process, holding the cast.
    static WORLD: World = World::new(fuzz::settle_from_env())
        .unwrap_or_else(|e| panic!("cannot set up the database: {e}"));
}

fuzz_target!(
    init: {
        WORLD.with(|_| ());
    },
    |data: &[u8]| {
        WORLD.with(|world| {
            if let Err(failure) = fuzz::run_oauth_input(world, data) {
                panic!("{failure}");
            }
        });
    }
);
