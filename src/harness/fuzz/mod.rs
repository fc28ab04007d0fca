//! What the fuzz targets (`fuzz/`, cargo-fuzz) run, kept in the library so that `cargo test`
//! replays every committed corpus and crash file on stable Rust (`tests/fuzz_corpus.rs`): a
//! finding becomes a regression test by dropping its file into `fuzz/regressions/<target>/`.
//!
//! - `ops`: operation sequences from the proptest vocabulary, on the state machines' runner.
//! - `oauth_input`, `registry_input`: the parsers and validators, against rules stated
//!   independently and against the model, on a fixed cast of users, clients and tokens.

pub mod oauth;
pub mod ops;
pub mod registry;
pub mod spec;
pub mod text;
pub mod world;

pub use oauth::{OAuthInput, run_oauth_input};
pub use ops::{OpsInput, ops_lab, run_ops_input, settle_from_env};
pub use registry::{RegistryInput, run_registry_input};
pub use world::World;

use crate::harness::machine::Lab;
use std::path::{Path, PathBuf};

/// The fuzz targets, by the names of their `fuzz/fuzz_targets/*.rs` files and corpus folders.
pub const TARGETS: [&str; 3] = ["ops", "oauth_input", "registry_input"];

/// Where the committed inputs live, relative to the project root: the seed corpus, and every
/// crash ever found.
pub const CORPUS_DIR: &str = "fuzz/corpus";
pub const REGRESSIONS_DIR: &str = "fuzz/regressions";

/// One process's places to run inputs, made on first use: the `ops` lab and the input
/// targets' world.
pub struct Fuzzer {
    lab: Option<Lab>,
    world: Option<World>,
}

impl Default for Fuzzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Fuzzer {
    pub fn new() -> Self {
        Self {
            lab: None,
            world: None,
        }
    }

    /// Runs one input of `target`; `Err` says what failed, with the transcript.
    pub fn run(&mut self, target: &str, data: &[u8]) -> Result<(), String> {
        match target {
            "ops" => {
                if self.lab.is_none() {
                    self.lab = Some(ops_lab()?);
                }
                self.lab
                    .as_ref()
                    .map_or(Ok(()), |lab| run_ops_input(lab, data))
            }
            "oauth_input" | "registry_input" => {
                if self.world.is_none() {
                    self.world = Some(World::new(settle_from_env())?);
                }
                let Some(world) = self.world.as_ref() else {
                    return Ok(());
                };
                if target == "oauth_input" {
                    run_oauth_input(world, data)
                } else {
                    run_registry_input(world, data)
                }
            }
            other => Err(format!("no fuzz target {other:?}; there are {TARGETS:?}")),
        }
    }

    /// Closes both databases and requires every view at zero.
    pub fn close(self) -> Result<(), String> {
        if let Some(lab) = self.lab {
            lab.close().map_err(|e| e.to_string())?;
        }
        if let Some(world) = self.world {
            world.close()?;
        }
        Ok(())
    }
}

/// Every committed file for `target` under `root`: its corpus and its regressions, sorted.
pub fn committed_files(root: &Path, target: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in [CORPUS_DIR, REGRESSIONS_DIR] {
        let dir = root.join(dir).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_file() && !hidden {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
