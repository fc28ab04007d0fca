//! Reads the system's whole state back, in the model's canonical form: rows in id order,
//! references turned from ids into positions.

use crate::db::{Db, DbError, DbRow, Session, get, sql};
use crate::model::TokenKind;
use crate::model::state::*;
use std::collections::HashMap;

const HOLDER: &str = "harness.read_back";

/// Positions of ids, in the order the rows were read (id order).
fn positions(rows: &[DbRow]) -> Result<HashMap<i64, usize>, DbError> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| Ok((get::<i64>(row, "id")?, i)))
        .collect()
}

fn position(map: &HashMap<i64, usize>, id: i64) -> Result<usize, DbError> {
    map.get(&id).copied().ok_or(DbError::Inconsistent(
        "a reference to a row that does not exist",
    ))
}

async fn all(session: &mut Session<'_>, query: &'static str) -> Result<Vec<DbRow>, DbError> {
    session.fetch_all(sql(query)).await
}

/// Reads the whole state. A pooled connection the server killed fails the first read: try
/// again, at most once per connection the pool may hold, and once more.
pub async fn read(db: &Db) -> Result<State, DbError> {
    const ATTEMPTS: usize = 9;
    let mut attempt = 1;
    loop {
        match read_once(db).await {
            Err(e) if e.is_connection_lost() && attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

async fn read_once(db: &Db) -> Result<State, DbError> {
    let mut s = db.session(HOLDER).await?;
    let users = all(&mut s, "SELECT id, login FROM users ORDER BY id").await?;
    let clients = all(
        &mut s,
        "SELECT id, confidential, scope FROM oauth_clients ORDER BY id",
    )
    .await?;
    let uris = all(
        &mut s,
        "SELECT client_pk, uri FROM oauth_redirect_uris ORDER BY uri",
    )
    .await?;
    let codes = all(
        &mut s,
        "SELECT id, client_pk, user_id, redirect_uri, scope, challenge, expires_at, redeemed_at \
         FROM oauth_codes ORDER BY id",
    )
    .await?;
    let grants = all(
        &mut s,
        "SELECT id, client_pk, user_id, code_id FROM oauth_grants ORDER BY id",
    )
    .await?;
    let tokens = all(
        &mut s,
        "SELECT id, kind, grant_id, scope, expires_at, revoked_at, rotated_at FROM oauth_tokens ORDER BY id",
    )
    .await?;
    let crates = all(&mut s, "SELECT id, name, downloads FROM crates ORDER BY id").await?;
    let owners = all(&mut s, "SELECT crate_id, user_id FROM crate_owners").await?;
    let versions = all(
        &mut s,
        "SELECT id, crate_id, num, checksum, yanked, downloads FROM versions ORDER BY id",
    )
    .await?;
    drop(s);

    let user_at = positions(&users)?;
    let client_at = positions(&clients)?;
    let code_at = positions(&codes)?;
    let grant_at = positions(&grants)?;
    let crate_at = positions(&crates)?;
    let optional =
        |map: &HashMap<i64, usize>, id: Option<i64>| id.map(|id| position(map, id)).transpose();

    let mut state = State {
        users: users
            .iter()
            .map(|r| get(r, "login"))
            .collect::<Result<_, _>>()?,
        ..State::default()
    };
    for row in &clients {
        state.clients.push(ClientState {
            confidential: get::<i64>(row, "confidential")? != 0,
            redirect_uris: Vec::new(),
            scope: get(row, "scope")?,
        });
    }
    for row in &uris {
        let client = position(&client_at, get(row, "client_pk")?)?;
        state.clients[client].redirect_uris.push(get(row, "uri")?);
    }
    for row in &codes {
        state.codes.push(CodeState {
            client: position(&client_at, get(row, "client_pk")?)?,
            user: position(&user_at, get(row, "user_id")?)?,
            redirect_uri: get(row, "redirect_uri")?,
            scope: get(row, "scope")?,
            challenge: get(row, "challenge")?,
            expires_at: get(row, "expires_at")?,
            redeemed: get::<Option<i64>>(row, "redeemed_at")?.is_some(),
        });
    }
    for row in &grants {
        state.grants.push(GrantState {
            client: position(&client_at, get(row, "client_pk")?)?,
            user: optional(&user_at, get(row, "user_id")?)?,
            code: optional(&code_at, get(row, "code_id")?)?,
        });
    }
    for row in &tokens {
        state.tokens.push(TokenState {
            kind: if get::<String>(row, "kind")? == "refresh" {
                TokenKind::Refresh
            } else {
                TokenKind::Access
            },
            grant: position(&grant_at, get(row, "grant_id")?)?,
            scope: get(row, "scope")?,
            expires_at: get(row, "expires_at")?,
            revoked: get::<Option<i64>>(row, "revoked_at")?.is_some(),
            rotated: get::<Option<i64>>(row, "rotated_at")?.is_some(),
        });
    }
    for row in &crates {
        state.crates.push(CrateState {
            name: get(row, "name")?,
            owners: Vec::new(),
            downloads: get(row, "downloads")?,
            versions: Vec::new(),
        });
    }
    for row in &owners {
        let krate = position(&crate_at, get(row, "crate_id")?)?;
        state.crates[krate]
            .owners
            .push(position(&user_at, get(row, "user_id")?)?);
    }
    for krate in &mut state.crates {
        krate.owners.sort_unstable();
    }
    for row in &versions {
        let krate = position(&crate_at, get(row, "crate_id")?)?;
        state.crates[krate].versions.push(VersionState {
            num: get(row, "num")?,
            checksum: get(row, "checksum")?,
            yanked: get::<i64>(row, "yanked")? != 0,
            downloads: get(row, "downloads")?,
        });
    }
    state.group_tokens();
    Ok(state)
}

/// Where an answered op's creation sits, found by its secret: a table and a key, in the order
/// the model's positions must follow when several serial orders explain a batch. Tokens sort
/// by (grant, id), as [`State::group_tokens`] does: concurrent grants interleave their ids.
pub async fn created_id(
    db: &Db,
    secrets: &super::call::Secrets,
) -> Result<Option<(&'static str, (i64, i64))>, DbError> {
    use super::call::Secrets;
    use crate::domain::secret::hash;
    let (table, query, key) = match secrets {
        Secrets::Nothing => return Ok(None),
        Secrets::Client { client_id, .. } => (
            "clients",
            sql(
                "SELECT id AS major, CAST(0 AS BIGINT) AS minor FROM oauth_clients WHERE client_id = $1",
            ),
            client_id.clone(),
        ),
        Secrets::Code(code) => (
            "codes",
            sql(
                "SELECT id AS major, CAST(0 AS BIGINT) AS minor FROM oauth_codes WHERE code_hash = $1",
            ),
            hash(code),
        ),
        Secrets::Tokens { access, .. } => (
            "tokens",
            sql("SELECT grant_id AS major, id AS minor FROM oauth_tokens WHERE token_hash = $1"),
            hash(access),
        ),
    };
    let mut session = db.session(HOLDER).await?;
    let row = session.fetch_optional(query.bind(key)).await?;
    Ok(match row {
        Some(row) => Some((table, (get(&row, "major")?, get(&row, "minor")?))),
        None => None,
    })
}
