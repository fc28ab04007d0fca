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
    /// A file in a directory the caller chose (removed with its WAL and shared-memory files).
    File(std::path::PathBuf),
    Schema {
        admin_url: String,
        schema: String,
    },
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

    /// A fresh SQLite file `<prefix>-<random>.db` in `dir`, which is created if missing.
    pub fn sqlite_in(dir: &std::path::Path, prefix: &str) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::BadUrl(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(format!("{prefix}-{:08x}.db", rand::random::<u32>()));
        Ok(Self {
            url: format!("sqlite://{}", path.display()),
            place: Place::File(path),
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
            Place::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
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

/// Every table, children before parents.
const TABLES: [&str; 9] = [
    "oauth_tokens",
    "oauth_grants",
    "oauth_codes",
    "oauth_redirect_uris",
    "oauth_clients",
    "versions",
    "crate_owners",
    "crates",
    "users",
];

/// Empties every table in one transaction and one round trip: a fresh database for the next
/// harness case, for the price of a few deletes instead of a new file and its migrations.
pub async fn reset(db: &super::Db) -> Result<(), DbError> {
    run_script(db, "scratch.reset", delete_all()).await
}

/// Saves every table's rows beside it (`snapshot_<table>`), for [`restore`]: a harness that
/// starts many cases from the same state sets it up once instead of once per case.
pub async fn snapshot(db: &super::Db) -> Result<(), DbError> {
    let script = TABLES
        .iter()
        .map(|table| {
            format!(
                "DROP TABLE IF EXISTS {SNAPSHOT}{table}; \
                 CREATE TABLE {SNAPSHOT}{table} AS SELECT * FROM {table};\n"
            )
        })
        .collect();
    run_script(db, "scratch.snapshot", script).await
}

/// Puts every table back as [`snapshot`] saved it, in one transaction and one round trip.
pub async fn restore(db: &super::Db) -> Result<(), DbError> {
    // PostgreSQL's identity columns take the saved ids only when told to.
    let overriding = match db.backend() {
        super::Backend::Sqlite => "",
        super::Backend::Postgres => "OVERRIDING SYSTEM VALUE",
    };
    let mut script = delete_all();
    for table in TABLES.iter().rev() {
        script.push_str(&format!(
            "INSERT INTO {table} {overriding} SELECT * FROM {SNAPSHOT}{table};\n"
        ));
    }
    run_script(db, "scratch.restore", script).await
}

/// Deletes every row, children before parents.
fn delete_all() -> String {
    TABLES
        .iter()
        .map(|table| format!("DELETE FROM {table};\n"))
        .collect()
}

/// `script` as one transaction, in one round trip.
async fn run_script(db: &super::Db, holder: &'static str, script: String) -> Result<(), DbError> {
    let mut tx = db.tx(holder).await?;
    tx.execute_script(script).await?;
    tx.commit().await
}

const SNAPSHOT: &str = "snapshot_";

/// The tables the schema has, so a test can require [`reset`] to know them all.
pub async fn tables(db: &super::Db) -> Result<Vec<String>, DbError> {
    use super::{Backend, get, sql};
    let mut session = db.session("scratch.tables").await?;
    let query = match db.backend() {
        Backend::Sqlite => sql("SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'snapshot_%' \
             AND name <> '_sqlx_migrations' ORDER BY name"),
        Backend::Postgres => sql(
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name NOT LIKE 'snapshot_%' \
             AND table_name <> '_sqlx_migrations' ORDER BY table_name",
        ),
    };
    let rows = session.fetch_all(query).await?;
    rows.iter().map(|row| get(row, "name")).collect()
}

/// The tables [`reset`] empties, sorted.
pub fn reset_tables() -> Vec<String> {
    let mut tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    tables.sort();
    tables
}
