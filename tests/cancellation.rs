//! Cancellation at every await point of opening a transaction leaves nothing open. The
//! regression test for the leak the state machine found in sqlx 0.9: `Pool::begin` cancelled
//! between sending `BEGIN` and reading its answer returned its connection to the pool inside a
//! transaction (sqlx counts the transaction only once `BEGIN` answers, so its rollback guard
//! does nothing). `Db::tx` runs `BEGIN` itself, counting the transaction open before sending it.

mod common;

use leakproof::db::SETTLE_DEADLINE;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls `future` at most `polls + 1` times, then drops it. True if it completed.
async fn cancel_after<F: Future>(future: F, polls: u32) -> bool {
    struct Limit<F> {
        inner: Pin<Box<F>>,
        left: u32,
    }
    impl<F: Future> Future for Limit<F> {
        type Output = bool;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
            match self.inner.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(true),
                Poll::Pending if self.left == 0 => Poll::Ready(false),
                Poll::Pending => {
                    self.left -= 1;
                    Poll::Pending
                }
            }
        }
    }
    Limit {
        inner: Box::pin(future),
        left: polls,
    }
    .await
}

both_backends!(
    a_transaction_cancelled_at_any_await_point_leaves_nothing_open,
    |env| {
        let mut cancelled = 0;
        for polls in 0..40 {
            if !cancel_after(env.db.tx("test.cancelled_begin"), polls).await {
                cancelled += 1;
            }
            env.db
                .quiesce(SETTLE_DEADLINE)
                .await
                .unwrap_or_else(|e| panic!("cancelled after {} polls: {e}", polls + 1));
        }
        assert!(
            cancelled > 0,
            "no attempt was cancelled before it completed"
        );
        // A write after all that is committed, not swallowed by a stale transaction.
        env.user("after-cancellation").await;
        env.db.quiesce(SETTLE_DEADLINE).await.expect("quiet");
    }
);

/// The dependency's behaviour, kept as evidence: if this starts failing, sqlx has fixed its
/// `begin`, and `Db::tx` could go back to `Pool::begin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_begin_cancelled_leaves_a_transaction_open_postgres() {
    use sqlx::{Connection, Row};
    let Some(url) = common::postgres_url() else {
        return;
    };
    let app = format!("leakproof-sqlx-begin-{}", std::process::id());
    let pool_url = format!("{url}?application_name={app}");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pool_url)
        .await
        .expect("pool");
    let mut monitor = sqlx::PgConnection::connect(&url).await.expect("monitor");
    let mut leaked = 0;
    // The window is a few polls wide and moves with the machine's load: sweep far past it,
    // fifteen times over (it usually opens in the first sweep; a loaded machine needs more).
    for polls in 0..600 {
        cancel_after(pool.begin(), polls % 40).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(&app)
        .fetch_one(&mut monitor)
        .await
        .expect("pg_stat_activity");
        let open: i64 = row.get("n");
        if open > 0 {
            leaked += 1;
            // Close the poisoned connection so the next attempt starts clean.
            pool.close().await;
            break;
        }
    }
    assert!(
        leaked > 0,
        "sqlx's Pool::begin no longer leaks when cancelled"
    );
}
