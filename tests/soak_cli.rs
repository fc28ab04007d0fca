//! `leakproof soak` as a user runs it: a subprocess with a short budget, on SQLite and on
//! PostgreSQL; and with a seeded leak compiled in, a failure that writes a regression file.

mod common;

use std::process::Command;

fn soak(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leakproof"))
        .arg("soak")
        .args(args)
        .output()
        .expect("run leakproof soak");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[cfg(not(feature = "mutant-leak-on-conflict"))]
#[test]
fn soak_passes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/soak.db", dir.path().display());
    let (code, text) = soak(&[
        "--duration",
        "3s",
        "--jobs",
        "2",
        "--seed",
        "7",
        "--database-url",
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("seed 7"), "{text}");
    assert!(text.contains("every check held"), "{text}");
    assert!(
        text.contains("job 1 closed: ledger 0 open; pool 0 checked out of 0; server 0 connections"),
        "{text}"
    );
}

#[cfg(not(feature = "mutant-leak-on-conflict"))]
#[test]
fn soak_passes_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let (code, text) = soak(&["--duration", "3s", "--jobs", "1", "--database-url", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("every check held"), "{text}");
}

#[test]
fn bad_arguments_exit_2_with_a_clear_error() {
    for args in [
        &["--duration", "0s"][..],
        &["--database-url", "mysql://localhost/x"],
        &[
            "--database-url",
            "postgres://postgres@127.0.0.1:1/unreachable",
        ],
        &["--jobs", "0"],
    ] {
        let (code, text) = soak(args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains("error"), "{args:?}: {text}");
    }
}

/// With the seeded session leak compiled in (`--features mutant-leak-on-conflict`), soak fails,
/// shrinks, and writes a regression file; replayed, that file fails too.
#[cfg(feature = "mutant-leak-on-conflict")]
#[test]
fn soak_catches_a_seeded_leak_and_writes_a_regression_file() {
    use leakproof::harness::machine::{Lab, Target};
    use leakproof::harness::replay::{files, load};
    let dir = tempfile::tempdir().unwrap();
    let regressions = dir.path().join("regressions");
    let url = format!("sqlite://{}/soak.db", dir.path().display());
    let (code, text) = soak(&[
        "--duration",
        "60s",
        "--jobs",
        "1",
        "--seed",
        "1",
        "--database-url",
        &url,
        "--regressions-dir",
        regressions.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("held by registry.publish"), "{text}");
    let written = files(&regressions).unwrap();
    assert_eq!(written.len(), 1, "{text}");
    let regression = load(&written[0]).unwrap();
    let lab = Lab::new(Target::TempSqlite, std::time::Duration::from_millis(500)).unwrap();
    assert!(
        lab.case(&regression.steps).is_err(),
        "the regression file must fail while the leak is in"
    );
}
