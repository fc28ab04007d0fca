//! The `leakproof` command line.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

#[derive(Parser)]
#[command(
    name = "leakproof",
    version,
    about = "A registry and OAuth2 server that never leaks a database session"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: generated operation sequences — faults, cancellations and concurrent
    /// batches included — checked against the model and the three views of open sessions.
    Soak(cli::soak::SoakArgs),
    /// Walks the registry and OAuth2 flows, error paths included, printing the three views of
    /// open sessions after every step, and closes the database to zero sessions.
    Demo(cli::demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.command {
        Command::Soak(soak) => cli::soak::run(soak).await,
        Command::Demo(demo) => cli::demo::run(demo).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(cli::Failure::Check(message)) => {
            eprintln!("FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}
