//! Every regression file `leakproof soak` wrote (tests/regressions/sequences/*.json) replays
//! here, on SQLite and PostgreSQL: a finding is a test by itself.

mod common;

use leakproof::harness::machine::{Lab, Target};
use leakproof::harness::replay::{REGRESSIONS_DIR, files, load};
use std::path::Path;
use std::time::Duration;

fn replay_all(target: Target) {
    let files = files(Path::new(REGRESSIONS_DIR)).expect("read the regressions folder");
    let lab = Lab::new(target, Duration::from_millis(500)).expect("lab");
    for file in &files {
        let regression = load(file).expect("a readable regression file");
        if let Err(failure) = lab.case(&regression.steps) {
            panic!("{} fails:\n{failure}", file.display());
        }
    }
    lab.close().expect("close to zero sessions");
    println!("{} regression files replayed", files.len());
}

#[test]
fn regression_files_pass_on_sqlite() {
    replay_all(Target::TempSqlite);
}

#[test]
fn regression_files_pass_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    replay_all(Target::Postgres(url));
}
