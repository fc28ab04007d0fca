//! Everything that touches sqlx. The rest of the crate sees only [`Db`], the guards
//! [`Session`] and [`Tx`], [`sql`] statements and rows.
//!
//! One code path serves SQLite and PostgreSQL: sqlx's `Any` driver, `$1` placeholders (SQLite
//! accepts them), and a schema that uses only types both map the same way (BIGINT, TEXT).
//! Dialect differences are confined to `migrations/{sqlite,postgres}` and to [`Backend`].

mod error;
pub mod fault;
mod guard;
mod handoff;
mod ledger;
pub mod scratch;
mod server;
mod shard;
mod spin;
mod views;

pub use error::DbError;
pub use guard::{Session, Statement, Tx, get, sql};
pub use ledger::{GuardKind, Holding, Ledger, LedgerView};
pub use spin::{FAR_ANSWER_WINDOWS, FAR_ANSWERS_BEFORE_REST, REST_PROBE_EVERY};
pub use sqlx::Row;
pub use sqlx::any::AnyRow as DbRow;
pub use views::{LeakReport, PoolView, ServerView, SessionViews};

use handoff::{Answer, Claim, Handoff, Source, Turn};
use server::Probe;
use sqlx::any::Any;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AnyPool};
use sqlx::{Connection, Executor};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Pool settings. Every one is chosen on purpose; the reasons are beside the defaults.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// PostgreSQL: a backend process per connection; 8 saturates two cores without queueing
    /// in the server. SQLite: one writer at a time anyway; 4 lets readers overlap a writer.
    pub max_connections: u32,
    /// How long a caller may wait for a connection. Short (5 s, not sqlx's 30 s): under
    /// overload a caller gets a clear `AcquireTimeout` error instead of a hang.
    pub acquire_timeout: Duration,
    /// Off: a connection comes either through sqlx's release, which pings it, or straight from
    /// a guard that ended without an error (db/handoff.rs), so it was healthy a moment ago. One
    /// that dies meanwhile fails its first statement, and the operation reports a storage error
    /// with nothing applied. Saves a round trip per checkout.
    pub test_before_acquire: bool,
    /// Idle connections close after a minute, so a quiet service holds no server sessions.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after 30 minutes, bounding per-backend memory and statement caches.
    pub max_lifetime: Option<Duration>,
    /// How long a task polls for a statement's answer before it sleeps; at most
    /// [`MAX_ANSWER_SPIN`]. Both backends: [`answer_spin`].
    pub answer_spin: Duration,
}

/// The longest [`PoolConfig::answer_spin`]: a spin holds a runtime worker that other tasks,
/// and on a small machine the database's own threads, could use.
pub const MAX_ANSWER_SPIN: Duration = Duration::from_micros(200);

impl PoolConfig {
    pub fn for_backend(backend: Backend) -> Self {
        Self {
            max_connections: match backend {
                Backend::Postgres => 8,
                Backend::Sqlite => 4,
            },
            acquire_timeout: Duration::from_secs(5),
            test_before_acquire: false,
            idle_timeout: Some(Duration::from_secs(60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            answer_spin: answer_spin(
                backend,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        }
    }
}

/// The answer spin for a process that may run on `cpus` CPUs (`available_parallelism`: the
/// affinity mask and the cgroup quota): with a CPU to spare, 50 µs on SQLite and 100 µs on
/// PostgreSQL; none on one CPU.
///
/// With a CPU to spare, an answer that found its task asleep woke a runtime worker for it, and
/// on one connection the workers then slept once per statement. SQLite (its own thread
/// answers): a mode lasting seconds at a fifth of the rate; with 50 µs no 100 ms stretch of 2
/// or 128 tasks fell into it, with 20 µs up to 38% did (CONTRIBUTING.md, "Run longer, it has
/// two modes"); 100 and 150 µs ran `SELECT 1` at 0.73-0.97 and 0.63-0.89 of 50 µs. A local
/// PostgreSQL answers later: at 50 µs a third to two thirds of its `SELECT 1` answers came
/// after the window (a sleep and a wake each), and 128 tasks did 0.82-0.91 of one task's rate;
/// at 100 µs 3-7% came after it, and 128 tasks did 0.96-1.02 (CONTRIBUTING.md, "PostgreSQL's
/// answer spin"). A server across a network costs one spin per [`REST_PROBE_EVERY`]
/// statements: the spin rests after [`FAR_ANSWERS_BEFORE_REST`] answers in a row later than
/// [`FAR_ANSWER_WINDOWS`] windows.
///
/// On one CPU the spinning worker holds the CPU a local database needs to answer (SQLite under
/// `taskset -c 0`: 0.98 of the rate without it at one task, 0.84 at 128), and tokio starts one
/// worker there, so the two-worker mode cannot occur.
pub fn answer_spin(backend: Backend, cpus: usize) -> Duration {
    match (cpus > 1, backend) {
        (false, _) => Duration::ZERO,
        (true, Backend::Sqlite) => Duration::from_micros(50),
        (true, Backend::Postgres) => Duration::from_micros(100),
    }
}

/// sqlx's wait for a pooled connection (`Pool::acquire`).
type PoolAcquire = dyn Future<Output = Result<PoolConnection<Any>, sqlx::Error>> + Send;

/// How long `quiesce` and `close` wait for the views to settle before calling it a leak.
/// sqlx returns a dropped connection in a spawned task and sends a dropped transaction's
/// rollback on release, so "zero" is reached shortly after an operation, not at once.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(5);

/// A database: the pool, its ledger and its server probe. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

struct Shared {
    pool: AnyPool,
    backend: Backend,
    ledger: Ledger,
    faults: fault::Faults,
    suspect: guard::Suspect,
    /// Statements in flight, and `PoolConfig::answer_spin`.
    answer_spin: spin::AnswerSpin,
    /// Clean connections passed from one guard to the next without sqlx's release ping.
    handoff: Arc<Handoff>,
    /// Microseconds a checkout waits before giving up, if less than the pool's
    /// `acquire_timeout`; 0: the pool's own. See [`Db::set_acquire_patience`].
    patience_micros: AtomicU64,
    /// Tasks finishing a wait on sqlx's pool that its checkout no longer needed
    /// (`Db::finish_connecting`).
    finishing: Arc<AtomicU32>,
    application_name: String,
    probe: Mutex<Probe>,
    /// SQLite: one writer at a time, queued here in arrival order. `BEGIN IMMEDIATE` already
    /// lets only one in, but the others wait in SQLite's busy handler, which sleeps in
    /// millisecond steps: under many writers throughput collapsed (benches/ops.rs).
    writer: Option<Arc<tokio::sync::Semaphore>>,
}

/// A finisher's place in the count, given back however its task ends.
struct Finisher(Arc<AtomicU32>);

impl Drop for Finisher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

impl Db {
    /// Connects to `sqlite://path/to/file.db` (created if missing, WAL mode) or
    /// `postgres://…`, and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let backend = Backend::of_url(url)?;
        Self::connect_with(url, PoolConfig::for_backend(backend)).await
    }

    pub async fn connect_with(url: &str, config: PoolConfig) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        if config.answer_spin > MAX_ANSWER_SPIN {
            return Err(DbError::BadConfig(format!(
                "answer_spin {:?} is longer than {MAX_ANSWER_SPIN:?}",
                config.answer_spin
            )));
        }
        if config.max_connections == 0 {
            return Err(DbError::BadConfig(
                "max_connections must be at least 1".into(),
            ));
        }
        let application_name = format!(
            "leakproof-{}-{}-{:04x}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>()
        );
        let (pool_url, probe) = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url)?;
                let pool_url = format!("sqlite://{}?mode=rwc", path.display());
                (pool_url, Probe::Sqlite { path, probe: None })
            }
            Backend::Postgres => {
                let pool_url = with_query(url, "application_name", &application_name)?;
                let monitor_url = with_query(
                    url,
                    "application_name",
                    &format!("{application_name}-monitor"),
                )?;
                let probe = Probe::Postgres {
                    monitor_url,
                    application_name: application_name.clone(),
                    monitor: None,
                };
                (pool_url, probe)
            }
        };
        let options = AnyConnectOptions::from_str(&pool_url)
            .map_err(|e| DbError::BadUrl(format!("{}: {e}", redact(url))))?;

        prepare(&options, backend).await?;

        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            // None kept warm: an idle service holds no sessions, and `close` has nothing to race.
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(config.test_before_acquire)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL makes NORMAL safe against corruption; it only risks the last
                        // commits on power loss, which a test harness can afford.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);

        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                backend,
                ledger: Ledger::default(),
                faults: fault::Faults::default(),
                suspect: guard::Suspect::new(config.max_connections),
                answer_spin: spin::AnswerSpin::new(config.answer_spin),
                handoff: Arc::new(Handoff::new(config.max_connections)),
                patience_micros: AtomicU64::new(0),
                finishing: Arc::new(AtomicU32::new(0)),
                application_name,
                probe: Mutex::new(probe),
                writer: (backend == Backend::Sqlite)
                    .then(|| Arc::new(tokio::sync::Semaphore::new(1))),
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// The PostgreSQL `application_name` of this pool's connections (unique per `Db`).
    pub fn application_name(&self) -> &str {
        &self.shared.application_name
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        self.shared.pool.options().get_max_connections()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    /// The sqlx pool behind this `Db`, for the benchmarks only: they time the same pool with
    /// and without our guards, so the difference is what the ledger costs. A connection taken
    /// here bypasses the ledger, the fault points and the suspect check; no operation uses it.
    #[doc(hidden)]
    pub fn raw_pool(&self) -> &AnyPool {
        &self.shared.pool
    }

    /// A connection for one operation, in autocommit mode. `holder` names the operation.
    pub async fn session(&self, holder: &'static str) -> Result<Session<'_>, DbError> {
        let (conn, claim) = self.checkout(holder, Turn::Queue).await?;
        Ok(Session {
            conn: Some(conn),
            claim,
            holder,
            faults: &self.shared.faults,
            suspect: &self.shared.suspect,
            answer_spin: &self.shared.answer_spin,
            statements: 0,
            in_flight: false,
            faulted: false,
            errored: false,
            _ticket: self.shared.ledger.open(holder, GuardKind::Session),
        })
    }

    /// Makes checkouts give up after `patience` (if shorter than the pool's acquire timeout)
    /// until set back with `None`. The harness starves the pool on purpose and needs the
    /// timeout in milliseconds, while everything else keeps a timeout long enough that a
    /// connection opened on a loaded machine is not mistaken for exhaustion.
    pub fn set_acquire_patience(&self, patience: Option<Duration>) {
        let micros = patience.map_or(0, |p| u64::try_from(p.as_micros()).unwrap_or(u64::MAX));
        self.shared.patience_micros.store(micros, Ordering::Relaxed);
    }

    /// The shorter checkout wait set by `set_acquire_patience`, if any.
    fn patience(&self) -> Option<Duration> {
        match self.shared.patience_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// A connection (parked by an earlier guard, else from the pool) and the claim that
    /// accounts for it; while connections are suspect, a tested one. A dead connection is
    /// dropped (sqlx closes it when its release ping fails) and another taken.
    async fn checkout(
        &self,
        holder: &'static str,
        turn: Turn,
    ) -> Result<(PoolConnection<Any>, Claim<'_>), DbError> {
        let wait = self.shared.faults.next_await(None);
        wait.run(self.checkout_live(holder, turn)).await
    }

    async fn checkout_live(
        &self,
        holder: &'static str,
        turn: Turn,
    ) -> Result<(PoolConnection<Any>, Claim<'_>), DbError> {
        let mut claim = self.shared.handoff.claim();
        let attempts = self.shared.pool.options().get_max_connections() + 1;
        for _ in 1..attempts {
            let mut conn = self.parked_or_pooled(holder, turn, &mut claim).await?;
            if !self.shared.suspect.take() || conn.ping().await.is_ok() {
                return Ok((conn, claim));
            }
            // One was dead: the others may be too.
            self.shared.suspect.raise();
        }
        let conn = self.parked_or_pooled(holder, turn, &mut claim).await?;
        Ok((conn, claim))
    }

    async fn parked_or_pooled(
        &self,
        holder: &'static str,
        turn: Turn,
        claim: &mut Claim<'_>,
    ) -> Result<PoolConnection<Any>, DbError> {
        // sqlx tests an idle connection before use only in its `acquire`: with that option on,
        // every checkout that does not get a parked one goes there.
        let pool = &self.shared.pool;
        let idle = || match pool.options().get_test_before_acquire() {
            false => pool.try_acquire(),
            true => None,
        };
        let mut wait = match claim.source(turn, false, idle) {
            Source::Ready(conn) => {
                handoff::yield_if_handed_over().await;
                return Ok(conn);
            }
            Source::Wait(wait) => wait,
        };
        let mut pooled = Box::pin(self.shared.pool.acquire());
        let patience = self.patience();
        let give_up = async {
            match patience {
                Some(patience) => tokio::time::sleep(patience).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(give_up);
        // sqlx's acquire is cancel-safe: a checkout abandoned at the patience limit leaves
        // nothing. A waiter that got a pooled connection leaves a closed entry, which the next
        // release or claim end drops.
        loop {
            tokio::select! {
                biased;
                answer = &mut wait => {
                    let conn = match answer {
                        Answer::Yours(conn) => conn,
                        // Told to look: a parked connection, else the front of the queue.
                        Answer::Look => match claim.source(turn.again(), true, idle) {
                            Source::Ready(conn) => conn,
                            Source::Wait(next) => {
                                wait = next;
                                continue;
                            }
                        },
                    };
                    self.finish_connecting(pooled);
                    return Ok(conn);
                }
                pooled = &mut pooled => return pooled.map_err(|e| self.acquire_error(holder, e)),
                () = &mut give_up => return Err(DbError::AcquireTimeout {
                    holder,
                    waited: patience.unwrap_or_default(),
                }),
            }
        }
    }

    /// A checkout served by a hand-over hands its wait on sqlx's pool to a task that finishes
    /// it and parks what it gets (`Handoff::adopt`): the wait may be opening a connection (on
    /// PostgreSQL, a backend forked for it). Dropped instead, every new connection was thrown
    /// away half-open while hand-overs kept coming (every ~100 µs, a connect takes
    /// milliseconds): under load the pool never grew, and 200 one-statement operations on 8
    /// tasks took 150-290 ms instead of 2.5 ms. sqlx counts a connect in the pool's size from
    /// its start and says nothing of which wait is connecting, so a full pool may still have
    /// connects in flight; there, at most one finisher per connection runs at a time (the
    /// others are dropped): a finisher that was only queued for a connection holds none, and
    /// gives up at the pool's acquire timeout.
    fn finish_connecting(&self, pooled: std::pin::Pin<Box<PoolAcquire>>) {
        let max = self.max_connections();
        let running = self.shared.finishing.fetch_add(1, Ordering::AcqRel);
        let finisher = Finisher(Arc::clone(&self.shared.finishing));
        if running >= max && self.shared.pool.size() >= max {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let handoff = Arc::clone(&self.shared.handoff);
            runtime.spawn(async move {
                if let Ok(conn) = pooled.await {
                    handoff.adopt(conn);
                }
                drop(finisher);
            });
        }
    }

    /// A transaction for one write. SQLite takes the write lock up front (`BEGIN IMMEDIATE`):
    /// a deferred transaction that upgrades later can fail with `SQLITE_BUSY` that no busy
    /// timeout resolves.
    pub async fn tx(&self, holder: &'static str) -> Result<Tx<'_>, DbError> {
        let begin = match self.shared.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        // An idle connection the server killed fails its BEGIN; nothing has happened yet, so
        // take another. Every pooled connection may be dead: at most size + 1 attempts.
        let attempts = self.shared.pool.options().get_max_connections() + 1;
        let mut attempt = 1;
        let mut writer = match &self.shared.writer {
            Some(queue) => Some(self.wait_for_turn(holder, queue).await?),
            None => None,
        };
        loop {
            // A SQLite writer holding its turn goes first: every other writer waits for it.
            let turn = match writer {
                Some(_) => Turn::First,
                None => Turn::Queue,
            };
            let (conn, claim) = self.checkout(holder, turn).await?;
            let mut tx = Tx {
                writer: writer.take(),
                conn: Some(conn),
                claim,
                open: false,
                holder,
                faults: &self.shared.faults,
                suspect: &self.shared.suspect,
                answer_spin: &self.shared.answer_spin,
                statements: 0,
                in_flight: false,
                faulted: false,
                errored: false,
                _ticket: self.shared.ledger.open(holder, GuardKind::Transaction),
            };
            match tx.begin(begin).await {
                Ok(()) => return Ok(tx),
                Err(e) if e.is_connection_lost() && attempt < attempts => {
                    writer = tx.writer.take();
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A place in the SQLite writers' queue, within the checkout patience (so a writer waits
    /// at most that long here, and as long again for a connection).
    async fn wait_for_turn(
        &self,
        holder: &'static str,
        queue: &Arc<tokio::sync::Semaphore>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, DbError> {
        let patience = self
            .patience()
            .unwrap_or(self.shared.pool.options().get_acquire_timeout());
        match tokio::time::timeout(patience, Arc::clone(queue).acquire_owned()).await {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) => Err(DbError::Inconsistent("the writers' queue was closed")),
            Err(_) => Err(DbError::AcquireTimeout {
                holder,
                waited: patience,
            }),
        }
    }

    fn acquire_error(&self, holder: &'static str, error: sqlx::Error) -> DbError {
        match error {
            sqlx::Error::PoolTimedOut => DbError::AcquireTimeout {
                holder,
                waited: self.shared.pool.options().get_acquire_timeout(),
            },
            other => DbError::sqlx(holder, other),
        }
    }

    /// Arms a fault for the `fault.at`-th fault point from now, on any guard of this `Db`.
    pub fn arm_fault(&self, fault: fault::Fault) {
        self.shared.faults.arm(fault);
    }

    /// Disarms; returns where the fault fired, if it did.
    pub fn disarm_fault(&self) -> Option<String> {
        self.shared.faults.disarm()
    }

    /// Cuts the `at`-th await on the database from now: it starts and never finishes, for
    /// the caller to drop the operation there (fault.rs: a cancellation that does not move).
    pub fn arm_cut(&self, at: u32) {
        self.shared.faults.arm_cut(at);
    }

    /// Disarms the cut; true if an await reached it.
    pub fn disarm_cut(&self) -> bool {
        self.shared.faults.disarm_cut()
    }

    /// An await reached the armed cut: the operation now waits forever, for its caller to drop.
    pub fn cut_reached(&self) -> bool {
        self.shared.faults.cut_reached()
    }

    /// How many awaits on the database (checkouts, BEGIN, statements, COMMIT, ROLLBACK) the
    /// guards of this `Db` have started since the first call of this or [`Db::arm_cut`]:
    /// counting begins there, so compare two calls (uncounted, an await writes nothing shared).
    pub fn awaits_started(&self) -> u64 {
        self.shared.faults.awaits_started()
    }

    /// Terminates every server backend of this pool (PostgreSQL), as an operator or a failover
    /// would. Returns how many were terminated; SQLite has no server to do this to: 0.
    pub async fn kill_connections(&self) -> Result<u32, DbError> {
        self.shared
            .probe
            .lock()
            .await
            .kill(&self.shared.application_name)
            .await
    }

    pub fn pool_view(&self) -> PoolView {
        PoolView {
            size: self.shared.pool.size(),
            idle: u32::try_from(self.shared.pool.num_idle()).unwrap_or(u32::MAX),
        }
    }

    pub async fn server_view(&self) -> Result<ServerView, DbError> {
        self.shared.probe.lock().await.view().await
    }

    /// All three views, taken one after another (not atomically: use at quiescence).
    pub async fn views(&self) -> Result<SessionViews, DbError> {
        let server = self.server_view().await?;
        Ok(SessionViews {
            ledger: self.shared.ledger.view(),
            pool: self.pool_view(),
            server,
        })
    }

    /// Waits, at most `deadline`, until no view shows an open session; else reports the leak.
    pub async fn quiesce(&self, deadline: Duration) -> Result<SessionViews, DbError> {
        let counts_connections = self.shared.backend == Backend::Postgres;
        let start = Instant::now();
        // A connection parked after the last operation is not a session; it would go back at
        // the sweep, `LINGER` later: send it now (each look, in case an operation just ended).
        let views = async || {
            self.shared.handoff.release_idle();
            self.views().await
        };
        settle(start, deadline, "quiescence", views, |v| {
            v.is_quiescent(counts_connections)
        })
        .await
    }

    /// Closes the pool and waits, at most `deadline`, until every view is at zero: the ledger,
    /// the pool and the server. A leaked connection is reported, never waited for forever.
    pub async fn close(&self, deadline: Duration) -> Result<SessionViews, DbError> {
        let start = Instant::now();
        // `Pool::close` waits for every checked-out connection; a leaked one never comes back.
        self.shared.handoff.release_idle();
        let _ = tokio::time::timeout(deadline, self.shared.pool.close()).await;
        let mut probe = self.shared.probe.lock().await;
        if self.shared.backend == Backend::Sqlite {
            probe.shut().await;
        }
        let views = async || {
            let server = probe_view_after_close(&mut probe).await?;
            Ok(SessionViews {
                ledger: self.shared.ledger.view(),
                pool: self.pool_view(),
                server,
            })
        };
        let result = settle(start, deadline, "close", views, SessionViews::is_closed).await;
        probe.shut().await;
        result
    }
}

async fn probe_view_after_close(probe: &mut Probe) -> Result<ServerView, DbError> {
    match probe {
        // The write-lock probe would reopen a connection; after close only descriptors count.
        Probe::Sqlite { .. } => Ok(ServerView {
            connections: probe_descriptors(probe),
            ..ServerView::default()
        }),
        Probe::Postgres { .. } => probe.view().await,
    }
}

fn probe_descriptors(probe: &Probe) -> u32 {
    match probe {
        Probe::Sqlite { path, .. } => server::open_descriptors(path),
        Probe::Postgres { .. } => 0,
    }
}

/// Polls `views` until `done` holds or `deadline` (counted from `start`) passes.
async fn settle<F>(
    start: Instant,
    deadline: Duration,
    waiting_for: &'static str,
    mut views: F,
    done: impl Fn(&SessionViews) -> bool,
) -> Result<SessionViews, DbError>
where
    F: AsyncFnMut() -> Result<SessionViews, DbError>,
{
    let mut pause = Duration::ZERO;
    loop {
        let now = views().await?;
        if done(&now) {
            return Ok(now);
        }
        if start.elapsed() >= deadline {
            return Err(DbError::Leak(Box::new(LeakReport {
                waiting_for,
                waited: start.elapsed(),
                views: now,
            })));
        }
        back_off(start, &mut pause).await;
    }
}

/// The usual wait is for sqlx's return-to-pool task, microseconds away: yield first, then
/// sleep from 100 µs doubling to 20 ms.
async fn back_off(start: Instant, pause: &mut Duration) {
    if pause.is_zero() && start.elapsed() < Duration::from_micros(200) {
        tokio::task::yield_now().await;
        return;
    }
    *pause = (*pause * 2).clamp(Duration::from_micros(100), Duration::from_millis(20));
    tokio::time::sleep(*pause).await;
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(DbError::BadUrl(format!(
                "{}: expected sqlite://path/to/file.db or postgres://user@host/db",
                redact(url)
            )))
        }
    }
}

/// The file behind a SQLite URL. In-memory databases are refused: their shared cache vanishes
/// with the last connection, so a pool that idles out its connections loses the data.
fn sqlite_path(url: &str) -> Result<PathBuf, DbError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return Err(DbError::BadUrl(format!(
            "{url}: leakproof needs a SQLite file (sqlite://path/to/file.db), not an in-memory database"
        )));
    }
    let path = PathBuf::from(path);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| DbError::BadUrl(format!("{url}: cannot create {}: {e}", parent.display())))?;
    let parent = parent
        .canonicalize()
        .map_err(|e| DbError::BadUrl(format!("{url}: {e}")))?;
    let file = path
        .file_name()
        .ok_or_else(|| DbError::BadUrl(format!("{url}: no file name")))?;
    Ok(parent.join(file))
}

/// `url` with the query parameter `key` set to `value`.
pub(crate) fn with_query(url: &str, key: &str, value: &str) -> Result<String, DbError> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| DbError::BadUrl(format!("{}: {e}", redact(url))))?;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(key, value);
    Ok(parsed.to_string())
}

/// A URL safe to print: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Before the pool exists: WAL for SQLite (a persistent property of the file, and it needs an
/// exclusive lock, so once here rather than per connection), then the migrations.
async fn prepare(options: &AnyConnectOptions, backend: Backend) -> Result<(), DbError> {
    const HOLDER: &str = "db.migrate";
    let mut conn = AnyConnection::connect_with(options)
        .await
        .map_err(|e| DbError::sqlx(HOLDER, e))?;
    let result = async {
        if backend == Backend::Sqlite {
            conn.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(|e| DbError::sqlx(HOLDER, e))?;
        }
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&mut conn).await?;
        Ok(())
    }
    .await;
    let closed = conn.close().await.map_err(|e| DbError::sqlx(HOLDER, e));
    result.and(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release that hands its connection to a waiter (its turn came) lets that waiter run
    /// before the releasing task's next checkout, though another connection is parked for that
    /// checkout to take at once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_release_that_hands_over_lets_the_waiter_run_before_its_next_checkout() {
        let scratch = scratch::Scratch::sqlite().unwrap();
        let config = PoolConfig {
            max_connections: 2,
            ..PoolConfig::for_backend(Backend::Sqlite)
        };
        let db = Db::connect_with(&scratch.url, config).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = db.session("test.first").await.unwrap();
        let second = db.session("test.second").await.unwrap();
        let waiter = tokio::spawn({
            let (db, order) = (db.clone(), Arc::clone(&order));
            async move {
                let session = db.session("test.waiter").await.unwrap();
                order.lock().unwrap().push("waiter");
                drop(session);
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(db.shared.handoff.queued(), 1, "the waiter queued");

        // Parked, with a look owed to the waiter; then the waiter's turn comes.
        drop(second);
        db.shared.handoff.turn_due_at_next_release(shard::home());
        drop(first);
        let again = db.session("test.again").await.unwrap();
        order.lock().unwrap().push("releaser");
        assert_eq!(*order.lock().unwrap(), ["waiter", "releaser"]);

        drop(again);
        waiter.await.unwrap();
        let views = db.close(SETTLE_DEADLINE).await.unwrap();
        assert!(views.is_closed(), "{views}");
        scratch.remove().await.unwrap();
    }

    /// A wait a hand-over served leaves its acquire on sqlx's pool to a finisher; what that
    /// acquire gets joins the parked connections, where the next checkout finds it, rather
    /// than sqlx's idle queue, which with `test_before_acquire` no checkout takes from.
    #[tokio::test(flavor = "current_thread")]
    async fn what_a_finisher_gets_is_parked_for_the_next_checkout() {
        let scratch = scratch::Scratch::sqlite().unwrap();
        let config = PoolConfig {
            max_connections: 2,
            test_before_acquire: true,
            ..PoolConfig::for_backend(Backend::Sqlite)
        };
        let db = Db::connect_with(&scratch.url, config).await.unwrap();
        let held = db.session("test.held").await.unwrap();
        db.finish_connecting(Box::pin(db.shared.pool.acquire()));
        let started = Instant::now();
        while db.shared.finishing.load(Ordering::Acquire) > 0 {
            assert!(
                started.elapsed() < SETTLE_DEADLINE,
                "the finisher never ended"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(db.pool_view(), PoolView { size: 2, idle: 0 });
        assert_eq!(
            db.shared.handoff.parked(),
            1,
            "the finisher's connection is parked"
        );
        let next = db.session("test.next").await.unwrap();
        assert_eq!(db.shared.handoff.parked(), 0, "the next checkout took it");

        drop((held, next));
        let views = db.close(SETTLE_DEADLINE).await.unwrap();
        assert!(views.is_closed(), "{views}");
        scratch.remove().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pool_settings_out_of_bounds_are_refused_before_anything_opens() {
        let scratch = scratch::Scratch::sqlite().unwrap();
        let sqlite = PoolConfig::for_backend(Backend::Sqlite);
        let too_long = PoolConfig {
            answer_spin: MAX_ANSWER_SPIN + Duration::from_micros(1),
            ..sqlite.clone()
        };
        let none = PoolConfig {
            max_connections: 0,
            ..sqlite.clone()
        };
        for config in [too_long, none] {
            let refused = Db::connect_with(&scratch.url, config.clone()).await;
            assert!(
                matches!(refused, Err(DbError::BadConfig(_))),
                "{config:?} was not refused"
            );
        }
        let longest = PoolConfig {
            answer_spin: MAX_ANSWER_SPIN,
            ..sqlite
        };
        let db = Db::connect_with(&scratch.url, longest).await.unwrap();
        db.close(SETTLE_DEADLINE).await.unwrap();
        scratch.remove().await.unwrap();
    }

    #[test]
    fn a_task_spins_for_its_answer_only_with_a_cpu_to_spare() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for backend in [Backend::Sqlite, Backend::Postgres] {
            assert_eq!(answer_spin(backend, 1), Duration::ZERO);
            for cpus in [2, 4, 64] {
                let spin = answer_spin(backend, cpus);
                assert!(
                    !spin.is_zero() && spin <= MAX_ANSWER_SPIN,
                    "{backend:?} on {cpus} CPUs: {spin:?}"
                );
            }
            assert_eq!(
                PoolConfig::for_backend(backend).answer_spin,
                answer_spin(backend, cpus)
            );
        }
        // A local PostgreSQL answers later than SQLite's own thread.
        assert!(answer_spin(Backend::Postgres, 2) > answer_spin(Backend::Sqlite, 2));
    }

    #[test]
    fn urls_name_their_backend() {
        let backend = |url| Backend::of_url(url).ok();
        assert_eq!(backend("sqlite://a.db"), Some(Backend::Sqlite));
        assert_eq!(backend("sqlite:a.db"), Some(Backend::Sqlite));
        assert_eq!(backend("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(backend("postgresql://u@h/db"), Some(Backend::Postgres));
        let Err(DbError::BadUrl(message)) = Backend::of_url("mysql://u:pw@h/db") else {
            panic!("mysql is not ours");
        };
        assert!(message.contains("expected sqlite://"), "{message}");
        assert!(
            !message.contains("pw@"),
            "the password is redacted: {message}"
        );
    }

    /// In-memory SQLite is refused in every spelling; a bare file name lands in the current
    /// directory.
    #[test]
    fn sqlite_urls_must_name_a_file() {
        for url in [
            "sqlite://",
            "sqlite::memory:",
            "sqlite://file:x?mode=memory&cache=shared",
        ] {
            assert!(
                matches!(sqlite_path(url), Err(DbError::BadUrl(_))),
                "{url} must be refused"
            );
        }
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        let path = sqlite_path("sqlite://leakproof-unit.db?mode=rwc").unwrap();
        assert_eq!(path, here.join("leakproof-unit.db"));
    }

    #[test]
    fn with_query_replaces_one_key_and_keeps_the_rest() {
        let url = with_query(
            "postgres://u@h/db?sslmode=disable&application_name=old",
            "application_name",
            "new",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@h/db?sslmode=disable&application_name=new"
        );
        assert!(matches!(
            with_query("not a url", "k", "v"),
            Err(DbError::BadUrl(_))
        ));
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }

    /// The settings the doc comments on `PoolConfig` promise, per backend.
    #[test]
    fn pool_defaults_are_the_documented_ones() {
        for (backend, size) in [(Backend::Postgres, 8), (Backend::Sqlite, 4)] {
            let config = PoolConfig::for_backend(backend);
            assert_eq!(config.max_connections, size);
            assert_eq!(config.acquire_timeout, Duration::from_secs(5));
            assert!(!config.test_before_acquire);
            assert_eq!(config.idle_timeout, Some(Duration::from_secs(60)));
            assert_eq!(config.max_lifetime, Some(Duration::from_secs(30 * 60)));
        }
    }
}
