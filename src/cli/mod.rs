//! Subcommands. Each returns a [`Failure`]: bad input exits 2, a failed check exits 1.

pub mod demo;
pub mod soak;

pub enum Failure {
    /// The user's input is wrong (a malformed URL, an unreachable server): exit code 2.
    Usage(String),
    /// A check did not hold: exit code 1.
    Check(String),
}

/// The embedded default: a SQLite file in a data directory under the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://leakproof-data/leakproof.db";
