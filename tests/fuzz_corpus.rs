//! Every committed fuzz input replays here, on stable Rust: the seed corpus of each target
//! (`fuzz/corpus/<target>/`) and every crash ever found (`fuzz/regressions/<target>/`). A
//! finding becomes a regression test by dropping its file into the latter.
//!
//! One file alone, with its decoded input and transcript:
//! `LEAKPROOF_FUZZ_FILE=fuzz/artifacts/ops/crash-… cargo test --test fuzz_corpus -- --nocapture one_file`
//! (the target is the name of the file's folder, or `LEAKPROOF_FUZZ_TARGET`).

use arbitrary::{Arbitrary, Unstructured};
use leakproof::harness::fuzz::{
    Fuzzer, OAuthInput, OpsInput, RegistryInput, TARGETS, committed_files, ops,
};
use leakproof::harness::op::{MAX_BATCH, Step};
use std::path::Path;

fn replay(target: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = committed_files(root, target).expect("read the corpus folders");
    assert!(
        !files.is_empty(),
        "no committed inputs for {target}: the seed corpus is fuzz/corpus/{target}/"
    );
    let mut fuzzer = Fuzzer::new();
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable input");
        if let Err(why) = fuzzer.run(target, &data) {
            failures.push(format!("{} fails:\n{why}", file.display()));
        }
    }
    fuzzer.close().expect("close to zero sessions");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("{target}: {} committed inputs replayed", files.len());
}

#[test]
fn ops_inputs_replay() {
    replay("ops");
}

#[test]
fn oauth_inputs_replay() {
    replay("oauth_input");
}

#[test]
fn registry_inputs_replay() {
    replay("registry_input");
}

/// The seed corpus stays small enough to commit and to replay in seconds.
#[test]
fn the_corpus_is_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for target in TARGETS {
        for file in committed_files(root, target).expect("read the corpus folders") {
            total += std::fs::metadata(&file).expect("a file").len();
        }
    }
    assert!(total < 1 << 20, "{total} bytes of committed fuzz inputs");
}

/// Whatever the bytes, a decoded input stays within its limits.
#[test]
fn decoding_is_bounded() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bytes = vec![0u8; 4096];
    for _ in 0..200 {
        for b in bytes.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let input = OpsInput::decode(&bytes);
        assert!(input.steps.len() <= ops::MAX_STEPS);
        for step in &input.steps {
            if let Step::Batch(batch) = step {
                assert!((2..=MAX_BATCH).contains(&batch.len()), "{step}");
            }
        }
        let oauth = OAuthInput::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        assert!(oauth.calls.len() <= leakproof::harness::fuzz::oauth::MAX_CALLS);
        let registry =
            RegistryInput::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        assert!(registry.calls.len() <= leakproof::harness::fuzz::registry::MAX_CALLS);
    }
}

/// `LEAKPROOF_FUZZ_FILE`: one input (a crash artifact, say) decoded, run and explained.
#[test]
fn one_file() {
    let Ok(path) = std::env::var("LEAKPROOF_FUZZ_FILE") else {
        return;
    };
    let path = Path::new(&path);
    let target = std::env::var("LEAKPROOF_FUZZ_TARGET").unwrap_or_else(|_| {
        path.parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let data = std::fs::read(path).expect("a readable input");
    match target.as_str() {
        "ops" => println!("{:?}", OpsInput::decode(&data)),
        "oauth_input" => println!(
            "{:#?}",
            OAuthInput::arbitrary_take_rest(Unstructured::new(&data))
        ),
        "registry_input" => println!(
            "{:#?}",
            RegistryInput::arbitrary_take_rest(Unstructured::new(&data))
        ),
        other => {
            panic!("no fuzz target {other:?}; set LEAKPROOF_FUZZ_TARGET to one of {TARGETS:?}")
        }
    }
    let mut fuzzer = Fuzzer::new();
    let result = fuzzer.run(&target, &data);
    let closed = fuzzer.close();
    if let Err(why) = result {
        panic!("{} fails:\n{why}", path.display());
    }
    closed.expect("close to zero sessions");
    println!("{} passes", path.display());
}
