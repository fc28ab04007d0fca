//! Regression files: a shrunk failing sequence, saved as JSON where `cargo test` replays it
//! (tests/replay.rs), so a finding becomes a test by itself.

use super::op::Step;
use std::path::{Path, PathBuf};

/// Where `cargo test` looks for regression files, relative to the project root.
pub const REGRESSIONS_DIR: &str = "tests/regressions/sequences";

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Regression {
    /// What failed, as the runner printed it when the file was written.
    pub transcript: Vec<String>,
    pub steps: Vec<Step>,
}

/// Writes `steps` under `dir` as `<name>.json`; returns the path.
pub fn save(dir: &Path, name: &str, steps: &[Step], transcript: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.json"));
    let regression = Regression {
        transcript: transcript.lines().map(str::to_owned).collect(),
        steps: steps.to_vec(),
    };
    let text = serde_json::to_string_pretty(&regression).map_err(std::io::Error::other)?;
    std::fs::write(&path, text + "\n")?;
    Ok(path)
}

pub fn load(path: &Path) -> std::io::Result<Regression> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}

/// Every regression file under `dir`, sorted.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    files.sort();
    Ok(files)
}
