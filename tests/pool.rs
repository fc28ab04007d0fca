//! How checkouts behave, beyond the session views: connections passed from guard to guard
//! (db/handoff.rs), the SQLite writers' queue, dead connections after a server kill, and the
//! fault points the harness arms. Every test still ends at zero sessions.

mod common;
use leakproof::db::{Backend, DbError, sql};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(300);

// A clean connection is parked while another guard runs (db/handoff.rs): sqlx still counts it
// checked out, so a parked connection can never hide from the pool's view. Once the last guard
// ends, a sweep sends it back within `LINGER`, and the views are at zero again.
both_backends!(
    a_parked_connection_counts_until_the_last_guard_ends,
    |env| {
        let a = env.db.session("test.a").await.unwrap();
        let mut b = env.db.session("test.b").await.unwrap();
        b.fetch_one(sql("SELECT 1 AS one")).await.unwrap();
        drop(b);
        // Time for sqlx's release task, had b's connection gone back to sqlx.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let views = env.db.views().await.unwrap();
        assert_eq!(views.ledger.open, 1, "{views}");
        assert_eq!(
            views.pool.checked_out(),
            2,
            "b's connection parked: {views}"
        );
        assert!(
            matches!(env.db.quiesce(SHORT).await, Err(DbError::Leak(_))),
            "an open guard is not quiescence"
        );
        drop(a);
        let views = env
            .db
            .quiesce(SHORT * 10)
            .await
            .expect("the last guard drains");
        assert_eq!(views.pool.checked_out(), 0, "{views}");
    }
);

// A connection whose statement failed goes back through sqlx's release, never parked.
both_backends!(a_failed_statement_is_never_parked, |env| {
    let a = env.db.session("test.a").await.unwrap();
    let mut b = env.db.session("test.b").await.unwrap();
    b.execute(sql("SELECT no_such_column FROM crates"))
        .await
        .expect_err("no such column");
    drop(b);
    // b's connection back in sqlx's pool while a still runs.
    checked_out_settles_at(&env.db, 1).await;
    drop(a);
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// A parked connection goes to the next checkout: no new connection is opened for it.
both_backends!(the_next_checkout_takes_the_parked_connection, |env| {
    let a = env.db.session("test.a").await.unwrap();
    let b = env.db.session("test.b").await.unwrap();
    drop(b);
    for _ in 0..10 {
        let mut c = env.db.session("test.c").await.unwrap();
        c.fetch_one(sql("SELECT 1 AS one")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let views = env.db.views().await.unwrap();
    assert_eq!(views.pool.size, 2, "{views}");
    assert_eq!(views.pool.idle, 0, "{views}");
    drop(a);
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// The last guard's connection waits, parked, for the next checkout, which takes it without
// sqlx's release and acquire between them; with no operation after it, a sweep sends it back
// to sqlx. A temporary table marks the connection: it lives as long as the connection, and
// sqlx's idle queue, first in first out, would have given the other one.
both_backends!(
    the_last_connection_waits_for_the_next_checkout_then_goes_back,
    |env| {
        idle_in_sqlx(&env.db, 2).await;
        let mut first = env.db.session("test.first").await.unwrap();
        first
            .execute(sql("CREATE TEMPORARY TABLE linger_mark (x INTEGER)"))
            .await
            .unwrap();
        drop(first);
        let mut next = env.db.session("test.next").await.unwrap();
        next.fetch_one(sql("SELECT COUNT(*) AS n FROM linger_mark"))
            .await
            .expect("the next checkout took the parked connection");
        drop(next);
        assert_eq!(env.db.ledger().view().open, 0);
        // Swept back to sqlx with no operation running.
        checked_out_settles_at(&env.db, 0).await;
    }
);

// A sweep that runs while a claim is live again leaves what is parked for it (the first rule
// holds it), and the end of that claim schedules the next sweep.
both_backends!(a_sweep_leaves_parked_what_a_live_claim_may_take, |env| {
    idle_in_sqlx(&env.db, 2).await;
    drop(env.db.session("test.last").await.unwrap());
    let taker = env.db.session("test.taker").await.unwrap();
    let beside = env.db.session("test.beside").await.unwrap();
    drop(beside);
    // Past the sweep the last guard scheduled: `taker` is live, so `beside`'s stays parked.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let views = env.db.views().await.unwrap();
    assert_eq!(
        views.pool.checked_out(),
        2,
        "taker's and the parked one: {views}"
    );
    drop(taker);
    checked_out_settles_at(&env.db, 0).await;
});

/// `count` connections opened and back in sqlx's idle queue.
async fn idle_in_sqlx(db: &leakproof::db::Db, count: u32) {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(db.session("test.fill").await.unwrap());
    }
    drop(held);
    let views = db.quiesce(SHORT * 10).await.unwrap();
    assert_eq!(views.pool.idle, count, "{views}");
}

/// Waits, boundedly, until sqlx counts `checked_out` connections out, without asking for
/// quiescence (which would end a linger itself).
async fn checked_out_settles_at(db: &leakproof::db::Db, checked_out: u32) {
    let settled = async {
        while db.pool_view().checked_out() != checked_out {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(SHORT * 10, settled)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "sqlx counts {} checked out, expected {checked_out}",
                db.pool_view().checked_out()
            )
        });
}

// SQLite: one writer at a time, and the others queue in `Db::tx` (in arrival order), so a
// writer that cannot get its turn within its patience gets `AcquireTimeout` at once, not
// SQLite's busy error after its busy timeout. PostgreSQL: writers do not queue behind each
// other; the server's row locks order them.
both_backends!(writers_queue_on_sqlite_only, |env| {
    let first = env.db.tx("test.first_writer").await.unwrap();
    env.db.set_acquire_patience(Some(Duration::from_millis(50)));
    let started = Instant::now();
    let second = env.db.tx("test.second_writer").await;
    env.db.set_acquire_patience(None);
    match env.db.backend() {
        Backend::Sqlite => {
            assert!(
                matches!(second, Err(DbError::AcquireTimeout { .. })),
                "a second SQLite writer must queue: {:?}",
                second.as_ref().err()
            );
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        Backend::Postgres => {
            second
                .expect("PostgreSQL writers do not queue")
                .rollback()
                .await
                .unwrap();
        }
    }
    first.rollback().await.unwrap();
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// Under load the pool grows to its size. A checkout that waits also waits on sqlx's pool, which
// opens a connection for it; when a hand-over comes first, that connect is finished and the
// connection kept, not thrown away half-open (which, with hand-overs every few hundred
// microseconds and a connect taking milliseconds, kept the pool at two or three connections).
both_backends!(under_load_the_pool_grows_to_its_size, |env| {
    let size = env.db.max_connections();
    load(&env.db, size).await;
    let pool = grown_to(&env.db, size).await;
    assert_eq!(pool.size, size, "{pool:?}");
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// From one connection: two checkouts wait while it is held, each also for a connect (sqlx
// counts a connect in the pool's size from its start). The connection is released the moment
// both connects have begun, so a hand-over beats at least the later one, and every connect
// must still be kept. Each checkout holds its connection until all three are through, so a
// checkout that comes late cannot take one the other has already released. (Under plain load
// this happens only when tasks overlap, which on two cores they may not.)
both_backends!(from_one_connection_the_pool_grows_to_its_load, |env| {
    let first = env.db.session("test.first").await.unwrap();
    let through = Arc::new(tokio::sync::Barrier::new(3));
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let db = env.db.clone();
            let through = Arc::clone(&through);
            tokio::spawn(async move {
                let mut session = db.session("test.waiter").await.unwrap();
                session.fetch_one(sql("SELECT 1 AS one")).await.unwrap();
                let all = tokio::time::timeout(SHORT * 10, through.wait()).await;
                all.expect("all three through");
            })
        })
        .collect();
    let started = Instant::now();
    while env.db.pool_view().size < 3 {
        assert!(started.elapsed() < SHORT * 10, "{:?}", env.db.pool_view());
        tokio::task::yield_now().await;
    }
    drop(first);
    let all = tokio::time::timeout(SHORT * 10, through.wait()).await;
    all.expect("all three through");
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let pool = grown_to(&env.db, 3).await;
    assert_eq!(pool.idle, 3, "{pool:?}");
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// Past the pool's size a task may take its own connection back (eventual fairness), but
// releases still hand over in turn: on one connection, every task runs its first operation
// before any task has run all of its own. Handing over never, the first task would run all of
// its operations before the second ran one.
both_backends!(past_the_pool_size_every_task_gets_its_turn, |env| {
    const TASKS: usize = 8;
    const OPS: usize = 200;
    let config = leakproof::db::PoolConfig {
        max_connections: 1,
        ..leakproof::db::PoolConfig::for_backend(env.db.backend())
    };
    let db = leakproof::db::Db::connect_with(env.db_url(), config)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut first = None;
                for _ in 0..OPS {
                    let mut session = db.session("test.turns").await.unwrap();
                    session.fetch_one(sql("SELECT 1 AS one")).await.unwrap();
                    first.get_or_insert_with(Instant::now);
                }
                (first.unwrap(), Instant::now())
            })
        })
        .collect();
    let mut spans = Vec::new();
    for task in tasks {
        spans.push(task.await.unwrap());
    }
    let last_first = spans.iter().map(|(first, _)| *first).max().unwrap();
    let first_done = spans.iter().map(|(_, done)| *done).min().unwrap();
    assert!(
        last_first < first_done,
        "a task ran all {OPS} operations before another ran its first"
    );
    db.close(SHORT * 10).await.unwrap();
});

/// The pool once `size` of its connections are open and idle in it, or after 2 s: sqlx counts
/// a connect in its size from the start, and a connect kept by a finisher may end after the
/// load that started it.
async fn grown_to(db: &leakproof::db::Db, size: u32) -> leakproof::db::PoolView {
    let started = Instant::now();
    while db.pool_view().idle < size && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.pool_view()
}

/// 25 one-statement operations on each of `tasks` tasks at once.
async fn load(db: &leakproof::db::Db, tasks: u32) {
    let tasks: Vec<_> = (0..tasks)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let mut session = db.session("test.load").await.unwrap();
                    session.fetch_one(sql("SELECT 1 AS one")).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// PostgreSQL with every pooled connection idle, then killed by the server (as a failover
/// would): the pool still holds all of them, dead.
async fn every_idle_connection_killed() -> Option<common::Env> {
    let env = common::Env::new(Backend::Postgres).await?;
    let size = env.db.max_connections();
    idle_in_sqlx(&env.db, size).await;
    assert_eq!(env.db.kill_connections().await.unwrap(), size);
    Some(env)
}

// With `test_before_acquire` on, every checkout that does not get a just-used (parked or
// handed-over) connection takes sqlx's tested path, never its untested idle queue: after the
// server killed every idle connection, the first statement already runs on a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_test_before_acquire_no_checkout_gets_an_untested_idle_connection_postgres() {
    let Some(env) = every_idle_connection_killed().await else {
        return;
    };
    let tested = leakproof::db::PoolConfig {
        test_before_acquire: true,
        ..leakproof::db::PoolConfig::for_backend(Backend::Postgres)
    };
    let db = leakproof::db::Db::connect_with(env.db_url(), tested)
        .await
        .unwrap();
    let size = db.max_connections();
    let held: Vec<_> = futures::future::join_all((0..size).map(|_| db.session("test.fill")))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    db.quiesce(SHORT * 10).await.unwrap();
    assert_eq!(db.kill_connections().await.unwrap(), size);
    let mut session = db.session("test.tested").await.unwrap();
    session
        .fetch_one(sql("SELECT 1 AS one"))
        .await
        .expect("sqlx tested the connection before handing it out");
    drop(session);
    db.close(SHORT * 10).await.unwrap();
    env.finish().await;
}

// After a kill, at most one operation meets a dead connection: it reports the loss, and every
// checkout after it tests its connection first, skipping all the dead ones (size + 1 tries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_one_statement_fails_then_checkouts_skip_the_dead_postgres() {
    let Some(env) = every_idle_connection_killed().await else {
        return;
    };
    let mut first = env.db.session("test.first").await.unwrap();
    if let Err(e) = first.fetch_one(sql("SELECT 1 AS one")).await {
        assert!(e.is_connection_lost(), "{e}");
    }
    drop(first);
    for n in 0..3 {
        let mut next = env.db.session("test.next").await.unwrap();
        next.fetch_one(sql("SELECT 1 AS one"))
            .await
            .unwrap_or_else(|e| panic!("checkout {n} after the first got a dead connection: {e}"));
    }
    env.db.quiesce(SHORT * 10).await.unwrap();
    env.finish().await;
}

// A transaction's BEGIN on a dead connection has done nothing yet, so `Db::tx` takes another,
// as often as the pool may hold dead ones: even the first transaction after a kill begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_a_transaction_still_begins_postgres() {
    let Some(env) = every_idle_connection_killed().await else {
        return;
    };
    write_past_the_dead(&env).await;
    env.db.quiesce(SHORT * 10).await.unwrap();
    env.finish().await;
}

/// One transaction, which must begin on a live connection whatever the pool holds dead.
async fn write_past_the_dead(env: &common::Env) {
    let mut tx = env
        .db
        .tx("test.after_kill")
        .await
        .expect("BEGIN retried on another connection");
    tx.execute(sql("UPDATE crates SET downloads = downloads"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

// A connection whose BEGIN failed is never parked, even while another operation runs (when a
// clean one would be): the retry takes another connection, not the same dead one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_begin_failed_is_not_parked_postgres() {
    let Some(env) = every_idle_connection_killed().await else {
        return;
    };
    let beside = env.db.session("test.beside").await.unwrap();
    write_past_the_dead(&env).await;
    drop(beside);
    env.db.quiesce(SHORT * 10).await.unwrap();
    env.finish().await;
}

// A BEGIN that fails for any reason but a lost connection is not retried: with SQLite's write
// lock held by another process, a transaction fails with a storage error after one busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_refused_by_the_database_is_an_error_not_a_retry_sqlite() {
    use sqlx::Connection;
    let env = common::Env::new(Backend::Sqlite).await.expect("sqlite env");
    sqlx::any::install_default_drivers();
    let mut stray = sqlx::AnyConnection::connect(env.db_url()).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut stray)
        .await
        .unwrap();
    // One wait of SQLite's busy timeout (5 s), not one per pooled connection.
    let refused = tokio::time::timeout(Duration::from_secs(12), env.db.tx("test.refused"))
        .await
        .expect("a refused BEGIN must not be retried");
    match refused {
        Err(ref e) => assert!(!e.is_connection_lost(), "{e}"),
        Ok(_) => panic!("BEGIN IMMEDIATE succeeded while another process holds the write lock"),
    }
    drop(refused);
    sqlx::raw_sql("ROLLBACK").execute(&mut stray).await.unwrap();
    stray.close().await.unwrap();
    env.db.quiesce(SHORT * 10).await.unwrap();
    env.finish().await;
}

// Fault points: an armed fault fires at exactly the n-th point from now, once, and says where;
// a panic fault panics the task. Every fault-injecting step of the harness rests on this.
both_backends!(an_armed_fault_fires_once_at_its_point, |env| {
    use leakproof::db::fault::{Fault, FaultKind, INJECTED_PANIC};
    let select = || sql("SELECT 1 AS one");
    env.db.arm_fault(Fault {
        at: 1,
        kind: FaultKind::Error,
    });
    let mut session = env.db.session("test.fault").await.unwrap();
    session.fetch_one(select()).await.expect("point 0 passes");
    let Err(injected) = session.fetch_one(select()).await else {
        panic!("point 1 must fail");
    };
    assert!(
        matches!(
            injected,
            DbError::Injected {
                holder: "test.fault"
            }
        ),
        "{injected}"
    );
    session.fetch_one(select()).await.expect("fired once only");
    drop(session);
    assert_eq!(
        env.db.disarm_fault().as_deref(),
        Some("test.fault before statement 2")
    );
    assert_eq!(env.db.disarm_fault(), None, "nothing fired since");

    env.db.arm_fault(Fault {
        at: 0,
        kind: FaultKind::Error,
    });
    let tx = env.db.tx("test.commit_fault").await.unwrap();
    tx.commit().await.expect_err("the commit's point fails");
    assert_eq!(
        env.db.disarm_fault().as_deref(),
        Some("test.commit_fault before commit")
    );

    env.db.arm_fault(Fault {
        at: 0,
        kind: FaultKind::Panic,
    });
    let db = env.db.clone();
    let panicked = tokio::spawn(async move {
        let mut session = db.session("test.panic").await.unwrap();
        let _ = session.fetch_one(select()).await;
    })
    .await
    .expect_err("the task panics");
    let message = panicked.into_panic();
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(message.starts_with(INJECTED_PANIC), "{message}");
    env.db.disarm_fault();
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// The SQLite writer whose turn it is takes the next connection a guard hands over, ahead of
// the readers already waiting: every other writer waits for it, so it must not wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_whose_turn_it_is_goes_first_sqlite() {
    let env = common::Env::new(Backend::Sqlite).await.expect("sqlite env");
    let mut held = Vec::new();
    for _ in 0..env.db.max_connections() {
        held.push(env.db.session("test.hog").await.unwrap());
    }
    // Readers that keep what they get until the end.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let reader = |db: leakproof::db::Db, release: Arc<tokio::sync::Semaphore>| {
        tokio::spawn(async move {
            let session = db.session("test.reader").await?;
            let _released = release.acquire().await;
            drop(session);
            Ok::<(), DbError>(())
        })
    };
    let readers = [
        reader(env.db.clone(), Arc::clone(&release)),
        reader(env.db.clone(), Arc::clone(&release)),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let db = env.db.clone();
    let writer = tokio::spawn(async move { db.tx("test.writer").await?.rollback().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.pop();
    tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .expect("the writer got the connection first")
        .unwrap()
        .unwrap();
    drop(held);
    release.add_permits(2);
    for reader in readers {
        reader.await.unwrap().unwrap();
    }
    env.db.quiesce(SHORT * 10).await.unwrap();
    env.finish().await;
}

// SQLite files are in WAL mode (readers never wait for the writer) and every pooled
// connection runs with `synchronous = NORMAL`, as `Db::connect` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_in_wal_mode_with_normal_sync_sqlite() {
    use leakproof::db::Row;
    let env = common::Env::new(Backend::Sqlite).await.expect("sqlite env");
    let mut session = env.db.session("test.pragmas").await.unwrap();
    let mode = session.fetch_one(sql("PRAGMA journal_mode")).await.unwrap();
    let mode: String = mode.try_get(0).unwrap();
    assert_eq!(mode, "wal");
    let sync = session.fetch_one(sql("PRAGMA synchronous")).await.unwrap();
    let sync: i64 = sync.try_get(0).unwrap();
    assert_eq!(sync, 1, "1 is NORMAL");
    drop(session);
    env.finish().await;
}

// A transaction ended by `rollback` (or `commit`) is clean: its connection is parked for the
// next checkout like a session's, not sent through the drop's background rollback.
both_backends!(an_ended_transaction_is_parked, |env| {
    let a = env.db.session("test.a").await.unwrap();
    for commit in [false, true] {
        let tx = env.db.tx("test.ended").await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let views = env.db.views().await.unwrap();
        assert_eq!(
            views.pool.checked_out(),
            2,
            "commit {commit}: parked: {views}"
        );
        assert_eq!(views.server.in_transaction, 0, "{views}");
    }
    drop(a);
    env.db.quiesce(SHORT * 10).await.unwrap();
});

// A scratch SQLite file (the soak's, in `leakproof-data/`) is gone after `remove`, with its WAL
// and shared-memory files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_scratch_file_leaves_nothing_sqlite() {
    use leakproof::db::{Db, SETTLE_DEADLINE, scratch::Scratch};
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::sqlite_in(dir.path(), "unit").unwrap();
    let db = Db::connect(&scratch.url).await.unwrap();
    db.session("test.touch")
        .await
        .unwrap()
        .fetch_one(sql("SELECT 1 AS one"))
        .await
        .unwrap();
    db.close(SETTLE_DEADLINE).await.unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().count() > 0);
    scratch.remove().await.unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// On a thread of its own (so on a handoff shard of its own, db/shard.rs): the runtime's
/// `block_on`, from outside its workers.
fn on_own_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || runtime.block_on(work))
}

fn joined<T>(thread: std::thread::JoinHandle<T>) -> T {
    tokio::task::block_in_place(|| thread.join().expect("the thread panicked"))
}

/// Patience for a checkout that should be served at once: long enough for a loaded machine,
/// short enough that a stranded one fails the test instead of hanging it.
const SERVED_AT_ONCE: Duration = Duration::from_secs(2);

/// A thread of its own holding every connection of the pool; it ends one session when asked,
/// keeping the others (so its shard always has a live claim and is never swept), and the rest
/// at the end.
struct Hog {
    step: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Hog {
    /// Returns once every connection is held.
    fn start(db: &leakproof::db::Db) -> Hog {
        let (step, next) = std::sync::mpsc::channel::<()>();
        let (did, done) = std::sync::mpsc::channel::<()>();
        let db = db.clone();
        let thread = on_own_thread(async move {
            let mut held = Vec::new();
            for _ in 0..db.max_connections() {
                held.push(db.session("test.hog").await.unwrap());
            }
            did.send(()).unwrap();
            next.recv().unwrap();
            held.pop();
            did.send(()).unwrap();
            next.recv().unwrap();
        });
        tokio::task::block_in_place(|| done.recv().unwrap());
        Hog { step, done, thread }
    }

    /// Returns once one session has ended.
    fn release_one(&self) {
        self.step.send(()).unwrap();
        tokio::task::block_in_place(|| self.done.recv().unwrap());
    }

    fn end(self) {
        self.step.send(()).unwrap();
        joined(self.thread);
    }
}

// A connection parked by one thread serves a checkout on another: the first thread's other
// sessions keep its shard's claims live, so no sweep would ever send it back to sqlx, and sqlx
// counts it checked out. The checkout finds it before it waits.
both_backends!(
    a_connection_parked_by_one_thread_serves_a_checkout_on_another,
    |env| {
        env.db.set_acquire_patience(Some(SERVED_AT_ONCE));
        let hog = Hog::start(&env.db);
        hog.release_one();
        let db = env.db.clone();
        let served = joined(on_own_thread(async move {
            db.session("test.other_thread").await.map(drop)
        }));
        served.expect("served by the connection parked on the other thread");
        hog.end();
        env.db.set_acquire_patience(None);
        env.db.quiesce(SHORT * 10).await.unwrap();
    }
);

// A release on a thread where no checkout waits reaches one waiting on another thread, even
// while the releasing thread's other sessions keep its shard busy.
both_backends!(
    a_release_reaches_a_checkout_waiting_on_another_thread,
    |env| {
        env.db.set_acquire_patience(Some(SERVED_AT_ONCE));
        let hog = Hog::start(&env.db);
        let db = env.db.clone();
        let waiter =
            on_own_thread(async move { db.session("test.waiting_thread").await.map(drop) });
        // Waiting by now (it would also find the connection parked, were it not).
        tokio::time::sleep(Duration::from_millis(100)).await;
        hog.release_one();
        joined(waiter).expect("served by the connection released on the other thread");
        hog.end();
        env.db.set_acquire_patience(None);
        env.db.quiesce(SHORT * 10).await.unwrap();
    }
);
