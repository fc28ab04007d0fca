//! Throwaway databases for tests, benchmarks and harness runs: each one isolated, so runs never
//! see each other's rows or sessions. SQLite: a file in a fresh temporary directory.
//! PostgreSQL: a fresh schema in the given database, selected by `search_path`.

use super::{DbError, with_query};
use sqlx::{AnyConnection, Connection, Executor};

pub struct Scratch {
    pub url: String,
    place: Place,
}

enum Place {
    Directory(tempfile::TempDir),
    Schema { admin_url: String, schema: String },
}

impl Scratch {
    pub fn sqlite() -> Result<Self, DbError> {
        let dir = tempfile::Builder::new()
            .prefix("leakproof-")
            .tempdir()
            .map_err(|e| DbError::BadUrl(format!("cannot create a temporary directory: {e}")))?;
        let url = format!("sqlite://{}", dir.path().join("leakproof.db").display());
        Ok(Self {
            url,
            place: Place::Directory(dir),
        })
    }

    /// A fresh schema in the database at `admin_url`.
    pub async fn postgres(admin_url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let schema = format!("lp_{:016x}", rand::random::<u64>());
        let mut admin = AnyConnection::connect(admin_url)
            .await
            .map_err(|e| DbError::sqlx("scratch.create", e))?;
        let created = admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .map_err(|e| DbError::sqlx("scratch.create", e));
        let _ = admin.close().await;
        created?;
        let url = with_query(admin_url, "options[search_path]", &schema)?;
        Ok(Self {
            url,
            place: Place::Schema {
                admin_url: admin_url.to_owned(),
                schema,
            },
        })
    }

    /// Removes the database. A test that panics before this leaves a schema behind, which is
    /// harmless: CI starts from a fresh database.
    pub async fn remove(self) -> Result<(), DbError> {
        match self.place {
            Place::Directory(dir) => {
                drop(dir);
                Ok(())
            }
            Place::Schema { admin_url, schema } => {
                let mut admin = AnyConnection::connect(&admin_url)
                    .await
                    .map_err(|e| DbError::sqlx("scratch.remove", e))?;
                let dropped = admin
                    .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .await
                    .map_err(|e| DbError::sqlx("scratch.remove", e));
                let _ = admin.close().await;
                dropped.map(|_| ())
            }
        }
    }
}
