//! Each view of open sessions must catch a session held or forgotten on purpose; a check that
//! cannot fail is no check. The ledger must name the holder.

mod common;
use common::Env;
use leakproof::db::{Backend, DbError, sql};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(300);

fn leak_text(result: Result<leakproof::db::SessionViews, DbError>) -> String {
    match result {
        Err(DbError::Leak(report)) => report.to_string(),
        Err(other) => panic!("expected a leak report, got {other}"),
        Ok(views) => panic!("expected a leak report, got quiet views: {views}"),
    }
}

both_backends!(held_session_is_seen_by_ledger_and_pool, |env| {
    let session = env.db.session("test.held_session").await.unwrap();
    let views = env.db.views().await.unwrap();
    assert_eq!(views.ledger.open, 1);
    assert_eq!(
        env.db.ledger().view().open,
        1,
        "Db::ledger is the views' ledger"
    );
    assert_eq!(views.ledger.holders[0].holder, "test.held_session");
    assert_eq!(views.pool.checked_out(), 1);
    let report = leak_text(env.db.quiesce(SHORT).await);
    assert!(report.contains("held by test.held_session"), "{report}");
    drop(session);
    env.db
        .quiesce(SHORT * 10)
        .await
        .expect("quiet once the session is dropped");
});

both_backends!(open_transaction_is_seen_by_the_server, |env| {
    let mut tx = env.db.tx("test.open_tx").await.unwrap();
    tx.execute(sql("UPDATE crates SET downloads = 0"))
        .await
        .unwrap();
    let views = env.db.views().await.unwrap();
    assert_eq!(views.server.in_transaction, 1, "{views}");
    assert_eq!(views.ledger.holders[0].holder, "test.open_tx");
    let report = leak_text(env.db.quiesce(SHORT).await);
    assert!(report.contains("1 in transaction"), "{report}");
    assert!(report.contains("held by test.open_tx"), "{report}");
    // Dropped, not committed: sqlx sends the rollback on release; the server sees it end.
    drop(tx);
    let views = env
        .db
        .quiesce(SHORT * 10)
        .await
        .expect("rolled back on drop");
    assert_eq!(views.server.in_transaction, 0);
});

both_backends!(idle_connections_are_not_sessions, |env| {
    let a = env.db.session("test.a").await.unwrap();
    let b = env.db.session("test.b").await.unwrap();
    drop((a, b));
    let views = env.db.quiesce(SHORT * 10).await.unwrap();
    assert_eq!(views.pool.size, 2, "{views}");
    assert_eq!(views.pool.checked_out(), 0);
    assert!(views.server.connections >= 2, "{views}");
});

/// A session forgotten with `mem::forget` never runs its `Drop`: the ledger keeps it, the pool
/// never gets it back, and the server keeps its connection after the pool is closed.
async fn forgotten_session_is_caught_at_close(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let session = env.db.session("test.forgotten").await.unwrap();
    std::mem::forget(session);

    let report = leak_text(env.db.quiesce(SHORT).await);
    assert!(report.contains("held by test.forgotten"), "{report}");

    let result = env.db.close(Duration::from_secs(1)).await;
    let Err(DbError::Leak(report)) = result else {
        panic!("close must report the forgotten session, got {result:?}");
    };
    assert_eq!(report.waiting_for, "close");
    assert_eq!(report.views.ledger.open, 1, "ledger view: {}", report);
    assert_eq!(report.views.pool.size, 1, "pool view: {}", report);
    // SQLite may keep a closed connection's descriptor while another holds a lock (the
    // forgotten one does), so its count is a bound; PostgreSQL's is exact.
    match backend {
        Backend::Postgres => assert_eq!(report.views.server.connections, 1, "{report}"),
        Backend::Sqlite => assert!(report.views.server.connections >= 1, "{report}"),
    }
    assert!(report.waited >= Duration::from_secs(1), "{report}");
    assert!(report.to_string().contains("held by test.forgotten"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_session_is_caught_at_close_sqlite() {
    forgotten_session_is_caught_at_close(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_session_is_caught_at_close_postgres() {
    forgotten_session_is_caught_at_close(Backend::Postgres).await;
}

/// A connection that outlives its pool on the server alone (the pool and ledger see nothing
/// wrong): a second connection with the pool's `application_name`, opened behind its back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_view_alone_catches_a_stray_backend_postgres() {
    let Some(env) = Env::new(Backend::Postgres).await else {
        return;
    };
    let url = format!(
        "{}&application_name={}",
        env.db_url(),
        env.db.application_name()
    );
    let stray = sqlx_connect(&url).await;
    let views = env.db.views().await.unwrap();
    assert_eq!(views.ledger.open, 0);
    assert_eq!(views.pool.checked_out(), 0);
    assert_eq!(views.server.connections, 1 + views.pool.size, "{views}");
    let report = leak_text(env.db.quiesce(SHORT).await);
    assert!(report.contains("server 1 connections"), "{report}");
    drop(stray);
    env.finish().await;
}

async fn sqlx_connect(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url)
        .await
        .expect("stray connection")
}

/// SQLite's stand-in for the server: a write transaction held on the file by a connection the
/// pool and ledger know nothing of is still seen by the `BEGIN IMMEDIATE` probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_view_alone_catches_a_stray_writer_sqlite() {
    let env = Env::new(Backend::Sqlite).await.expect("sqlite env");
    let mut stray = sqlx_connect(env.db_url()).await;
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut stray)
        .await
        .unwrap();
    let views = env.db.views().await.unwrap();
    assert_eq!(views.ledger.open, 0);
    assert_eq!(views.pool.checked_out(), 0);
    assert_eq!(views.server.in_transaction, 1, "{views}");
    let report = leak_text(env.db.quiesce(SHORT).await);
    assert!(report.contains("1 in transaction"), "{report}");
    sqlx::raw_sql("ROLLBACK").execute(&mut stray).await.unwrap();
    use sqlx::Connection;
    stray.close().await.unwrap();
    env.finish().await;
}
