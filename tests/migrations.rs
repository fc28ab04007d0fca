//! Migrations applied to a database that already holds rows: what a user upgrading meets.
//! Each test stops the schema at a version with sqlx's migrator, writes rows as that version
//! would have, then opens a `Db` (which applies the rest) and checks what the later ones did.

mod common;

use leakproof::db::{Backend, Db, PoolConfig, SETTLE_DEADLINE, get, sql};
use sqlx::{AnyConnection, Connection};

/// 0002 copies each token's owner client and user login from its grant onto the token's row,
/// where introspection reads them; a client-credentials token (no user) has no login.
async fn token_owners_are_copied_from_their_grants(backend: Backend) {
    let Some(scratch) = common::scratch(backend).await else {
        return;
    };
    sqlx::any::install_default_drivers();
    let raw_url = match backend {
        Backend::Sqlite => format!("{}?mode=rwc", scratch.url),
        Backend::Postgres => scratch.url.clone(),
    };
    let mut conn = AnyConnection::connect(&raw_url).await.unwrap();
    let migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("migrations/postgres"),
    };
    migrator.run_to(1, &mut conn).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO users (login, login_key, created_at) VALUES ('Alice', 'alice', 0);
         INSERT INTO oauth_clients (client_id, name, confidential, secret_hash, scope, created_at)
             VALUES ('app', 'app', 0, NULL, 'publish-new', 0),
                    ('robot', 'robot', 1, 'x', 'publish-new', 0);
         INSERT INTO oauth_grants (client_pk, user_id, created_at) VALUES (1, 1, 0), (2, NULL, 0);
         INSERT INTO oauth_tokens (token_hash, kind, grant_id, scope, expires_at, created_at)
             VALUES ('h-user', 'access', 1, 'publish-new', 100, 0),
                    ('h-refresh', 'refresh', 1, 'publish-new', 100, 0),
                    ('h-robot', 'access', 2, 'publish-new', 100, 0);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let db = Db::connect_with(&scratch.url, PoolConfig::for_backend(backend))
        .await
        .expect("the later migrations apply over existing rows");
    let mut session = db.session("test.migrated").await.unwrap();
    let rows = session
        .fetch_all(sql(
            "SELECT token_hash, client_pk, username FROM oauth_tokens ORDER BY token_hash",
        ))
        .await
        .unwrap();
    drop(session);
    let owners: Vec<(String, i64, Option<String>)> = rows
        .iter()
        .map(|row| {
            (
                get(row, "token_hash").unwrap(),
                get(row, "client_pk").unwrap(),
                get(row, "username").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        [
            ("h-refresh".to_owned(), 1, Some("Alice".to_owned())),
            ("h-robot".to_owned(), 2, None),
            ("h-user".to_owned(), 1, Some("Alice".to_owned())),
        ]
    );
    let views = db.close(SETTLE_DEADLINE).await.unwrap();
    assert!(views.is_closed(), "{views}");
    scratch.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_owners_are_copied_from_their_grants_sqlite() {
    token_owners_are_copied_from_their_grants(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_owners_are_copied_from_their_grants_postgres() {
    token_owners_are_copied_from_their_grants(Backend::Postgres).await;
}
