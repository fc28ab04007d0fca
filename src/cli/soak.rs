//! `leakproof soak`: generated sequences — faults, cancellations and concurrent batches
//! included — against the system, every step checked against the model and the three views of
//! open sessions, until a duration or a number of sequences is reached.

use super::{DEFAULT_DATABASE_URL, Failure};
use indicatif::{ProgressBar, ProgressStyle};
use leakproof::db::{Backend, redact};
use leakproof::harness::machine::{Lab, Peaks, Target, shrink};
use leakproof::harness::replay::{REGRESSIONS_DIR, save};
use leakproof::harness::runner::Coverage;
use leakproof::harness::strategy::{Mix, steps_with};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// `sqlite://dir/name.db` (each job gets its own file beside it) or `postgres://…` (each
    /// job gets a fresh schema).
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// How long to run, like `30s`, `10m`, `2h`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many sequences in all (whichever of this and --duration comes first).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    sequences: Option<u64>,
    /// The seed of the whole run (random if absent; always printed). Same seed, same sequences.
    #[arg(long)]
    seed: Option<u64>,
    /// Parallel workers, each with its own database.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// Longest sequence, in steps.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    steps: u32,
    /// Percent of steps run under a fault (error, panic, cancellation, timeout, starved pool,
    /// killed connections) or as a concurrent batch.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    fault_percent: u32,
    /// Where a shrunk failure is written, for `cargo test` to replay.
    #[arg(long, default_value = REGRESSIONS_DIR)]
    regressions_dir: PathBuf,
    /// How long a step may take to return its sessions, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    settle_ms: u64,
}

/// `30s`, `10m`, `2h`, or plain seconds; never zero.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 30s, 10m or 2h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{raw:?}: the unit must be s, m or h")),
    };
    if secs == 0 {
        return Err("the duration must be more than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

/// What every job adds to, read by the progress bar.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    sequences: AtomicU64,
    steps: AtomicU64,
    faults: AtomicU64,
    peak_ledger: AtomicU64,
    failures: AtomicU64,
}

struct JobReport {
    coverage: Coverage,
    peaks: Peaks,
    failure: Option<String>,
    closed: Result<String, String>,
}

pub async fn run(args: SoakArgs) -> Result<(), Failure> {
    let backend = Backend::of_url(&args.database_url).map_err(|e| Failure::Usage(e.to_string()))?;
    let target = match backend {
        Backend::Postgres => Target::Postgres(args.database_url.clone()),
        Backend::Sqlite => {
            let path = args
                .database_url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned();
            let path = Path::new(&path);
            let prefix = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty() && !s.contains(":memory:"))
                .ok_or_else(|| {
                    Failure::Usage(format!(
                        "{}: expected sqlite://dir/name.db",
                        args.database_url
                    ))
                })?
                .to_owned();
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            Target::SqliteIn { dir, prefix }
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let settle = Duration::from_millis(args.settle_ms);
    println!(
        "leakproof soak: seed {seed}, {} jobs, {:?}{}, {} ({}), up to {} steps, {}% faults",
        args.jobs,
        args.duration,
        args.sequences
            .map_or(String::new(), |n| format!(" or {n} sequences")),
        redact(&args.database_url),
        match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        args.steps,
        args.fault_percent
    );

    // Each job opens its own database in its own thread, and says whether it could: a bad URL
    // or an unreachable server is a usage error, before anything runs.
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let deadline = started + args.duration;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut jobs = Vec::new();
    for job in 0..u64::from(args.jobs) {
        let (shared, target, ready) = (Arc::clone(&shared), target.clone(), ready_tx.clone());
        let dir = args.regressions_dir.clone();
        let (max_steps, mix, limit) = (
            args.steps as usize,
            Mix {
                fault_percent: args.fault_percent,
            },
            args.sequences,
        );
        jobs.push(std::thread::spawn(move || {
            let lab = match Lab::new(target, settle) {
                Ok(lab) => lab,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return None;
                }
            };
            let _ = ready.send(Ok(()));
            Some(job_loop(
                lab, job, seed, max_steps, mix, limit, deadline, &shared, &dir,
            ))
        }));
    }
    drop(ready_tx);
    let setup = tokio::task::spawn_blocking(move || ready_rx.iter().find(Result::is_err))
        .await
        .map_err(|e| Failure::Check(e.to_string()))?;
    if let Some(Err(e)) = setup {
        shared.stop.store(true, Ordering::SeqCst);
        for job in jobs {
            let _ = job.join();
        }
        return Err(Failure::Usage(format!(
            "cannot open {}: {e}",
            redact(&args.database_url)
        )));
    }

    let stop = Arc::clone(&shared);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.stop.store(true, Ordering::SeqCst);
        }
    });

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    while !jobs.iter().all(|j| j.is_finished()) {
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let steps = shared.steps.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{} sequences, {} steps ({:.0}/s), {} faults, peak {} sessions open, {} failures",
            shared.sequences.load(Ordering::Relaxed),
            steps,
            steps as f64 / elapsed,
            shared.faults.load(Ordering::Relaxed),
            shared.peak_ledger.load(Ordering::Relaxed),
            shared.failures.load(Ordering::Relaxed),
        ));
        bar.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();

    let mut reports = Vec::new();
    for job in jobs {
        match job.join() {
            Ok(Some(report)) => reports.push(report),
            Ok(None) => {}
            Err(_) => return Err(Failure::Check("a soak job panicked".into())),
        }
    }
    summarize(&reports, started.elapsed(), seed, &shared)
}

#[allow(clippy::too_many_arguments)]
fn job_loop(
    lab: Lab,
    job: u64,
    seed: u64,
    max_steps: usize,
    mix: Mix,
    limit: Option<u64>,
    deadline: Instant,
    shared: &Shared,
    regressions_dir: &Path,
) -> JobReport {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..16].copy_from_slice(&job.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut generator = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = steps_with(max_steps, mix);
    let mut failure = None;
    let mut counted = (0, 0);
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if let Some(limit) = limit
            && shared.sequences.fetch_add(1, Ordering::SeqCst) >= limit
        {
            shared.sequences.fetch_sub(1, Ordering::SeqCst);
            break;
        } else if limit.is_none() {
            shared.sequences.fetch_add(1, Ordering::SeqCst);
        }
        let Ok(mut tree) = strategy.new_tree(&mut generator) else {
            break;
        };
        let result = lab.case(&tree.current());
        let (steps, faults) = {
            let coverage = lab.coverage.borrow();
            (coverage.steps, coverage.faults.values().sum::<u64>())
        };
        shared.steps.fetch_add(steps - counted.0, Ordering::Relaxed);
        shared
            .faults
            .fetch_add(faults - counted.1, Ordering::Relaxed);
        counted = (steps, faults);
        shared
            .peak_ledger
            .fetch_max(lab.peaks.borrow().ledger as u64, Ordering::Relaxed);
        if let Err(reason) = result {
            shared.failures.fetch_add(1, Ordering::SeqCst);
            shared.stop.store(true, Ordering::SeqCst);
            let case = |steps: &[leakproof::harness::op::Step]| lab.case(steps);
            let (steps, transcript) = shrink(&mut tree, reason, &case, 1024);
            let name = format!("soak-{seed}-job{job}");
            let written = match save(regressions_dir, &name, &steps, &transcript) {
                Ok(path) => format!("written to {}", path.display()),
                Err(e) => format!("could not be written to {}: {e}", regressions_dir.display()),
            };
            failure = Some(format!(
                "job {job}: shrunk to {} steps:\n{transcript}\nregression file {written}",
                steps.len()
            ));
            break;
        }
    }
    let coverage = lab.coverage.borrow().clone();
    let peaks = *lab.peaks.borrow();
    let closed = match lab.close() {
        Ok(views) => Ok(views.to_string()),
        Err(e) => Err(e.to_string()),
    };
    JobReport {
        coverage,
        peaks,
        failure,
        closed,
    }
}

fn summarize(
    reports: &[JobReport],
    elapsed: Duration,
    seed: u64,
    shared: &Shared,
) -> Result<(), Failure> {
    let mut coverage = Coverage::default();
    let mut peaks = Peaks::default();
    for r in reports {
        coverage.merge(&r.coverage);
        peaks.merge(&r.peaks);
    }
    println!("{coverage}");
    println!(
        "session peak: ledger {} open at once; pool {} connections; server {} connections",
        peaks.ledger, peaks.pool, peaks.server
    );
    println!(
        "{} sequences, {} steps in {:.1}s: {:.0} steps/s; seed {seed}",
        shared.sequences.load(Ordering::Relaxed),
        coverage.steps,
        elapsed.as_secs_f64(),
        coverage.steps as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let mut problems = Vec::new();
    for (job, r) in reports.iter().enumerate() {
        match &r.closed {
            Ok(views) => println!("job {job} closed: {views}"),
            Err(e) => problems.push(format!("job {job} did not close to zero sessions: {e}")),
        }
        if let Some(f) = &r.failure {
            problems.push(f.clone());
        }
    }
    if problems.is_empty() {
        println!(
            "every check held: the model agreed at every step and every session opened was closed"
        );
        Ok(())
    } else {
        Err(Failure::Check(problems.join("\n")))
    }
}
