//! One side of the pool's checkout cycle, `count` times on one task, on a scratch SQLite
//! database: `raw` is sqlx's acquire and release, `wrapped` is `Db::session` and its drop.
//! `scripts/cycle-cost.sh` runs it under callgrind at two counts and divides the difference,
//! which gives instructions per cycle, free of the machine's noise and of the setup's cost.
//!
//!     cargo run --release --example cycle_cost -- wrapped 20000

use leakproof::db::scratch::Scratch;
use leakproof::db::{Db, PoolConfig, SETTLE_DEADLINE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (wrapped, count) = match args.as_slice() {
        [side, count] if side == "raw" || side == "wrapped" => match count.parse::<u64>() {
            Ok(count) => (side == "wrapped", count),
            Err(e) => return usage(&format!("count {count:?}: {e}")),
        },
        _ => return usage("expected two arguments"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("a tokio runtime: {e}")),
    };
    match runtime.block_on(run(wrapped, count)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run(wrapped: bool, count: u64) -> Result<(), String> {
    let scratch = Scratch::sqlite().map_err(|e| format!("a scratch SQLite file: {e}"))?;
    let config = PoolConfig {
        max_connections: 1,
        ..PoolConfig::for_backend(leakproof::db::Backend::Sqlite)
    };
    let db = Db::connect_with(&scratch.url, config)
        .await
        .map_err(|e| e.to_string())?;
    let cycles = {
        let db = db.clone();
        tokio::spawn(async move {
            for _ in 0..count {
                if wrapped {
                    drop(db.session("cycle_cost").await?);
                } else {
                    drop(db.raw_pool().acquire().await?);
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
    };
    cycles
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    db.close(SETTLE_DEADLINE).await.map_err(|e| e.to_string())?;
    scratch.remove().await.map_err(|e| e.to_string())
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("cycle_cost: {problem}\nusage: cycle_cost <raw|wrapped> <count>");
    ExitCode::from(2)
}

fn fail(problem: &str) -> ExitCode {
    eprintln!("cycle_cost: {problem}");
    ExitCode::FAILURE
}
