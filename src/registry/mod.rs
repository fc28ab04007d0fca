//! The package registry: users, crates, versions, owners, yanking, downloads.
//!
//! Every write is one transaction that starts by locking the crate's row (an `UPDATE` of
//! `crates.updated_at`, portable to SQLite and PostgreSQL), so concurrent writes to one crate
//! run one after another and rules like "never zero owners" cannot be raced. Every write is
//! authorized by an OAuth2 access token with a crates.io-shaped scope.

use crate::clock::{Clock, Epoch};
use crate::db::{Db, Row, Tx, get, sql};
use crate::domain::{Checksum, CrateName, Endpoint, Login, Rejection, Version};
use crate::oauth::bearer;
use crate::{Error, Result};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub login: String,
}

/// A published version, as a sparse index line will carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub num: String,
    pub checksum: String,
    pub yanked: bool,
    pub downloads: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub name: String,
    pub version: String,
    pub checksum: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    NewCrate,
    NewVersion,
}

#[derive(Clone)]
pub struct Registry {
    db: Db,
    clock: Arc<dyn Clock>,
}

/// How often a write is retried after losing a race to create the same crate. Once is enough:
/// the retry sees the winner's crate and takes the ordinary path.
const CREATE_RACE_RETRIES: usize = 1;

impl Registry {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn now(&self) -> Epoch {
        self.clock.epoch()
    }

    pub async fn create_user(&self, login: &str) -> Result<User> {
        let login = Login::parse(login)?;
        let mut session = self.db.session("registry.create_user").await?;
        let row = session
            .fetch_optional(
                sql(
                    "INSERT INTO users (login, login_key, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (login_key) DO NOTHING RETURNING id",
                )
                .bind(&login.display)
                .bind(&login.key)
                .bind(self.now()),
            )
            .await?
            .ok_or(Rejection::UserExists)?;
        Ok(User {
            id: get(&row, "id")?,
            login: login.display,
        })
    }

    /// Publishes a version. A new crate needs `publish-new`, and its publisher becomes its
    /// owner; a new version of an existing crate needs `publish-update` and ownership.
    pub async fn publish(&self, token: &str, request: &PublishRequest) -> Result<Published> {
        let name = CrateName::parse(&request.name)?;
        let version = Version::parse(&request.version)?;
        let checksum = Checksum::parse(&request.checksum)?;
        let mut attempt = 0;
        // Seeded bug: one transaction for every attempt.
        #[cfg(feature = "mutant-no-rollback-before-retry")]
        let mut tx = self.db.tx("registry.publish").await?;
        loop {
            #[cfg(not(feature = "mutant-no-rollback-before-retry"))]
            let mut tx = self.db.tx("registry.publish").await?;
            match self
                .try_publish(&mut tx, token, &name, &version, &checksum)
                .await
            {
                Ok(published) => {
                    tx.commit().await?;
                    return Ok(published);
                }
                Err(Error::Db(e)) if e.is_unique_violation() && attempt < CREATE_RACE_RETRIES => {
                    attempt += 1;
                    // The failed statement spoilt the transaction (PostgreSQL refuses every
                    // statement after it): the retry starts a fresh one.
                    #[cfg(not(feature = "mutant-no-rollback-before-retry"))]
                    tx.rollback().await?;
                }
                Err(error) => {
                    // Seeded bug: the session is kept alive past the conflict.
                    #[cfg(feature = "mutant-leak-on-conflict")]
                    if matches!(error, Error::Rejected(Rejection::VersionExists)) {
                        std::mem::forget(tx);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// One attempt at a publish, inside `tx`; the caller commits.
    async fn try_publish(
        &self,
        tx: &mut Tx<'_>,
        token: &str,
        name: &CrateName,
        version: &Version,
        checksum: &Checksum,
    ) -> Result<Published> {
        let now = self.now();
        let user = bearer(tx, token, now).await?.user_with_access()?;
        let published = match lock_crate(tx, &name.key, now).await? {
            None => {
                user.require(Endpoint::PublishNew, &name.key)?;
                let row = tx
                    .fetch_one(
                        sql(
                            "INSERT INTO crates (name, name_key, created_at, updated_at) \
                             VALUES ($1, $2, $3, $3) RETURNING id",
                        )
                        .bind(&name.display)
                        .bind(&name.key)
                        .bind(now),
                    )
                    .await?;
                let crate_id: i64 = get(&row, "id")?;
                tx.execute(
                    sql("INSERT INTO crate_owners (crate_id, user_id, added_at) VALUES ($1, $2, $3)")
                        .bind(crate_id)
                        .bind(user.id)
                        .bind(now),
                )
                .await?;
                // Seeded bug: the new crate is committed on its own, before its first version.
                #[cfg(feature = "mutant-half-applied-publish")]
                {
                    tx.execute(sql("COMMIT")).await?;
                    tx.execute(sql("BEGIN")).await?;
                }
                insert_version(tx, crate_id, version, checksum, user.id, now).await?;
                Published::NewCrate
            }
            Some(crate_id) => {
                user.require(Endpoint::PublishUpdate, &name.key)?;
                require_owner(tx, crate_id, user.id).await?;
                let exists = tx
                    .fetch_optional(
                        sql("SELECT 1 AS found FROM versions WHERE crate_id = $1 AND num_key = $2")
                            .bind(crate_id)
                            .bind(&version.key),
                    )
                    .await?;
                if exists.is_some() {
                    return Err(Rejection::VersionExists.into());
                }
                insert_version(tx, crate_id, version, checksum, user.id, now).await?;
                Published::NewVersion
            }
        };
        Ok(published)
    }

    /// Yanks (`yanked = true`) or unyanks a version. Idempotent.
    pub async fn set_yanked(
        &self,
        token: &str,
        name: &str,
        version: &str,
        yanked: bool,
    ) -> Result<()> {
        let name = CrateName::parse(name)?;
        let version = Version::parse(version)?;
        let now = self.now();
        let mut tx = self.db.tx("registry.set_yanked").await?;
        let user = bearer(&mut tx, token, now).await?.user_with_access()?;
        user.require(Endpoint::Yank, &name.key)?;
        let crate_id = lock_crate(&mut tx, &name.key, now)
            .await?
            .ok_or(Rejection::UnknownCrate)?;
        require_owner(&mut tx, crate_id, user.id).await?;
        let changed = tx
            .execute(
                sql("UPDATE versions SET yanked = $1 WHERE crate_id = $2 AND num_key = $3")
                    .bind(i64::from(yanked))
                    .bind(crate_id)
                    .bind(&version.key),
            )
            .await?;
        if changed == 0 {
            return Err(Rejection::UnknownVersion.into());
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn add_owner(&self, token: &str, name: &str, login: &str) -> Result<()> {
        self.change_owner(token, name, login, OwnerChange::Add)
            .await
    }

    /// Removes an owner; the last owner of a crate cannot be removed.
    pub async fn remove_owner(&self, token: &str, name: &str, login: &str) -> Result<()> {
        self.change_owner(token, name, login, OwnerChange::Remove)
            .await
    }

    async fn change_owner(
        &self,
        token: &str,
        name: &str,
        login: &str,
        change: OwnerChange,
    ) -> Result<()> {
        let name = CrateName::parse(name)?;
        let login = Login::parse(login)?;
        let now = self.now();
        let mut tx = self.db.tx(change.holder()).await?;
        let user = bearer(&mut tx, token, now).await?.user_with_access()?;
        user.require(Endpoint::ChangeOwners, &name.key)?;
        let crate_id = lock_crate(&mut tx, &name.key, now)
            .await?
            .ok_or(Rejection::UnknownCrate)?;
        require_owner(&mut tx, crate_id, user.id).await?;
        let target = tx
            .fetch_optional(sql("SELECT id FROM users WHERE login_key = $1").bind(&login.key))
            .await?
            .ok_or(Rejection::UnknownUser)?;
        let target: i64 = get(&target, "id")?;
        let is_owner = is_owner(&mut tx, crate_id, target).await?;
        match change {
            OwnerChange::Add => {
                if is_owner {
                    return Err(Rejection::AlreadyOwner.into());
                }
                tx.execute(
                    sql("INSERT INTO crate_owners (crate_id, user_id, added_at) VALUES ($1, $2, $3)")
                        .bind(crate_id)
                        .bind(target)
                        .bind(now),
                )
                .await?;
            }
            OwnerChange::Remove => {
                if !is_owner {
                    return Err(Rejection::NotAnOwner.into());
                }
                let row = tx
                    .fetch_one(
                        sql("SELECT COUNT(*) AS owners FROM crate_owners WHERE crate_id = $1")
                            .bind(crate_id),
                    )
                    .await?;
                let owners: i64 = get(&row, "owners")?;
                #[cfg(not(feature = "mutant-zero-owners"))]
                let last = owners <= 1;
                // Seeded bug: off by one, the last owner may leave.
                #[cfg(feature = "mutant-zero-owners")]
                let last = owners < 1;
                if last {
                    return Err(Rejection::LastOwner.into());
                }
                tx.execute(
                    sql("DELETE FROM crate_owners WHERE crate_id = $1 AND user_id = $2")
                        .bind(crate_id)
                        .bind(target),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Counts a download of a version (yanked versions stay downloadable) and returns its
    /// checksum. Two counters move together: the version's and the crate's.
    pub async fn download(&self, name: &str, version: &str) -> Result<String> {
        let name = CrateName::parse(name)?;
        let version = Version::parse(version)?;
        // Seeded bug: the crate's counter moves in its own autocommit statement, before and
        // outside the transaction that moves the version's.
        #[cfg(feature = "mutant-half-applied-download")]
        {
            let mut early = self.db.session("registry.download").await?;
            early
                .execute(
                    sql("UPDATE crates SET downloads = downloads + 1 WHERE name_key = $1")
                        .bind(&name.key),
                )
                .await?;
        }
        // The crate's row first, as every write to a crate takes it (`lock_crate`): one lock
        // order everywhere. Version first, a download and a yank of the same crate each held
        // the row the other wanted, and PostgreSQL broke the cycle with "deadlock detected"
        // (found by the soak). An unknown version rolls the count back with the rest.
        #[cfg(not(feature = "mutant-half-applied-download"))]
        let lock_and_count = "UPDATE crates SET downloads = downloads + 1 WHERE name_key = $1 \
                              RETURNING id";
        #[cfg(feature = "mutant-half-applied-download")]
        let lock_and_count = "SELECT id FROM crates WHERE name_key = $1";
        let mut tx = self.db.tx("registry.download").await?;
        let crate_row = tx
            .fetch_optional(sql(lock_and_count).bind(&name.key))
            .await?
            .ok_or(Rejection::UnknownCrate)?;
        let crate_id: i64 = get(&crate_row, "id")?;
        let row = tx
            .fetch_optional(
                sql("UPDATE versions SET downloads = downloads + 1 \
                     WHERE crate_id = $1 AND num_key = $2 RETURNING checksum")
                .bind(crate_id)
                .bind(&version.key),
            )
            .await?
            .ok_or(Rejection::UnknownVersion)?;
        let checksum = get(&row, "checksum")?;
        tx.commit().await?;
        Ok(checksum)
    }

    /// A crate's versions in publication order.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        let name = CrateName::parse(name)?;
        let mut session = self.db.session("registry.versions").await?;
        let rows = session
            .fetch_all(
                sql(
                    "SELECT c.id AS crate_id, v.num, v.checksum, v.yanked, v.downloads \
                     FROM crates c LEFT JOIN versions v ON v.crate_id = c.id \
                     WHERE c.name_key = $1 ORDER BY v.id",
                )
                .bind(&name.key),
            )
            .await?;
        if rows.is_empty() {
            return Err(Rejection::UnknownCrate.into());
        }
        rows.iter()
            .filter(|row| {
                row.try_get::<Option<String>, _>("num")
                    .is_ok_and(|n| n.is_some())
            })
            .map(|row| {
                Ok(VersionRecord {
                    num: get(row, "num")?,
                    checksum: get(row, "checksum")?,
                    yanked: get::<i64>(row, "yanked")? != 0,
                    downloads: get(row, "downloads")?,
                })
            })
            .collect()
    }

    /// A crate's owners' logins, sorted, and its total download count.
    pub async fn crate_info(&self, name: &str) -> Result<CrateInfo> {
        let name = CrateName::parse(name)?;
        let mut session = self.db.session("registry.crate_info").await?;
        let rows = session
            .fetch_all(
                sql("SELECT c.name, c.downloads, u.login FROM crates c \
                     JOIN crate_owners o ON o.crate_id = c.id JOIN users u ON u.id = o.user_id \
                     WHERE c.name_key = $1 ORDER BY u.login_key")
                .bind(&name.key),
            )
            .await?;
        let first = rows.first().ok_or(Rejection::UnknownCrate)?;
        Ok(CrateInfo {
            name: get(first, "name")?,
            downloads: get(first, "downloads")?,
            owners: rows
                .iter()
                .map(|r| get(r, "login"))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateInfo {
    pub name: String,
    pub downloads: i64,
    pub owners: Vec<String>,
}

#[derive(Clone, Copy)]
enum OwnerChange {
    Add,
    Remove,
}

impl OwnerChange {
    fn holder(self) -> &'static str {
        match self {
            OwnerChange::Add => "registry.add_owner",
            OwnerChange::Remove => "registry.remove_owner",
        }
    }
}

/// Locks the crate's row for the rest of the transaction; `None` if there is no such crate.
async fn lock_crate(tx: &mut Tx<'_>, key: &str, now: Epoch) -> Result<Option<i64>> {
    let row = tx
        .fetch_optional(
            sql("UPDATE crates SET updated_at = $2 WHERE name_key = $1 RETURNING id")
                .bind(key)
                .bind(now),
        )
        .await?;
    Ok(row.map(|r| get(&r, "id")).transpose()?)
}

async fn is_owner(tx: &mut Tx<'_>, crate_id: i64, user_id: i64) -> Result<bool> {
    let row = tx
        .fetch_optional(
            sql("SELECT 1 AS found FROM crate_owners WHERE crate_id = $1 AND user_id = $2")
                .bind(crate_id)
                .bind(user_id),
        )
        .await?;
    Ok(row.is_some())
}

async fn require_owner(tx: &mut Tx<'_>, crate_id: i64, user_id: i64) -> Result<()> {
    if is_owner(tx, crate_id, user_id).await? {
        Ok(())
    } else {
        Err(Rejection::NotOwner.into())
    }
}

async fn insert_version(
    tx: &mut Tx<'_>,
    crate_id: i64,
    version: &Version,
    checksum: &Checksum,
    user_id: i64,
    now: Epoch,
) -> Result<()> {
    tx.execute(
        sql(
            "INSERT INTO versions (crate_id, num, num_key, checksum, published_at, published_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(crate_id)
        .bind(&version.display)
        .bind(&version.key)
        .bind(&checksum.0)
        .bind(now)
        .bind(user_id),
    )
    .await?;
    Ok(())
}
