//! Every regression file `leakproof soak` wrote (tests/regressions/sequences/*.json) replays
//! here, on SQLite and PostgreSQL: a finding is a test by itself.

mod common;

use leakproof::db::Db;
use leakproof::db::scratch::Scratch;
use leakproof::harness::Runner;
use leakproof::harness::machine::{Lab, Target};
use leakproof::harness::op::{Op, Step};
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

/// Runs `steps` on a fresh SQLite database: what the runner keeps to replay, and its transcript.
async fn run_fresh(steps: &[Step]) -> (Vec<Step>, Vec<String>) {
    let scratch = Scratch::sqlite().unwrap();
    let mut runner = Runner::new(Db::connect(&scratch.url).await.unwrap());
    runner.run(steps).await.expect("model and system agree");
    let transcript = runner.transcript().to_vec();
    let as_run = runner.as_run().to_vec();
    runner.close().await.expect("zero sessions at close");
    (as_run, transcript)
}

const REGISTER: Op = Op::RegisterClient {
    confidential: true,
    name: 0,
    redirects: 0,
    scope: 0,
};

// Shrinking re-runs a failing sequence hundreds of times: a cancellation must cut the op at the
// same point each time, whatever the machine's timing, or the failure comes and goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_cuts_the_same_await_on_every_run() {
    let mut cut = 0;
    for at in 0..6 {
        let steps = [
            Step::Op(Op::CreateUser { login: 0 }),
            Step::Cancelled { op: REGISTER, at },
        ];
        let (_, first) = run_fresh(&steps).await;
        cut += usize::from(first[1].contains("-> cancelled"));
        for _ in 0..3 {
            let (_, again) = run_fresh(&steps).await;
            assert_eq!(again, first, "cut at await {at}");
        }
    }
    assert!(cut >= 3, "the op was cut at only {cut} of its awaits");
    // Past its last await the op is never cut: it answers.
    let (_, uncut) = run_fresh(&[Step::Cancelled {
        op: REGISTER,
        at: 40,
    }])
    .await;
    assert!(uncut[0].ends_with("-> ok"), "{uncut:?}");
}

// A timeout is a race against the clock; once one fires, the runner keeps it as the cut of the
// await it stopped, which replays without the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fired_timeout_is_kept_as_the_cut_of_the_await_it_stopped() {
    let mut pinned = 0;
    for micros in [1, 30, 100, 200, 400, 800, 1600] {
        let (as_run, timed_out) = run_fresh(&[Step::TimedOut {
            op: REGISTER,
            micros,
        }])
        .await;
        if !timed_out[0].contains("timed out") {
            assert_eq!(
                as_run,
                [Step::TimedOut {
                    op: REGISTER,
                    micros
                }]
            );
            continue;
        }
        assert!(
            matches!(as_run[0], Step::Cancelled { op: REGISTER, .. }),
            "{as_run:?}"
        );
        pinned += 1;
        let (_, replayed) = run_fresh(&as_run).await;
        assert!(replayed[0].contains("-> cancelled"), "{replayed:?}");
    }
    assert!(pinned > 0, "no timeout fired: nothing was checked");
}
