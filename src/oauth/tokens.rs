//! Issuing, finding and revoking tokens: the pieces every grant shares.

use super::TokenResponse;
use crate::Result;
use crate::clock::Epoch;
use crate::db::{DbError, Tx, get, sql};
use crate::domain::secret::{ACCESS_PREFIX, REFRESH_PREFIX, Secret};
use crate::domain::{ACCESS_TOKEN_TTL, Endpoint, REFRESH_TOKEN_TTL, Rejection, Scope, is_expired};

/// Starts a token family for a client (and user, unless client credentials; and code, if any).
pub(super) async fn new_grant(
    tx: &mut Tx<'_>,
    client_pk: i64,
    user_id: Option<i64>,
    code_id: Option<i64>,
    now: Epoch,
) -> Result<i64> {
    let row = tx
        .fetch_one(
            sql(
                "INSERT INTO oauth_grants (client_pk, user_id, code_id, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(client_pk)
            .bind(user_id)
            .bind(code_id)
            .bind(now),
        )
        .await?;
    Ok(get(&row, "id")?)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Access,
    Refresh,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Refresh => "refresh",
        }
    }
}

async fn insert_token(
    tx: &mut Tx<'_>,
    grant_id: i64,
    kind: Kind,
    scope: &Scope,
    now: Epoch,
) -> Result<Secret> {
    let (prefix, ttl) = match kind {
        Kind::Access => (ACCESS_PREFIX, ACCESS_TOKEN_TTL),
        Kind::Refresh => (REFRESH_PREFIX, REFRESH_TOKEN_TTL),
    };
    let token = Secret::generate(prefix);
    // The grant's client and user's login are copied onto the token: introspection reads
    // only the token's row (migrations/*/0002_token_owner.sql).
    let inserted = tx
        .execute(
            sql(
                "INSERT INTO oauth_tokens \
                     (token_hash, kind, grant_id, client_pk, username, scope, expires_at, created_at) \
                 SELECT $1, $2, g.id, g.client_pk, u.login, $4, $5, $6 \
                 FROM oauth_grants g LEFT JOIN users u ON u.id = g.user_id WHERE g.id = $3",
            )
            .bind(token.hash())
            .bind(kind.as_str())
            .bind(grant_id)
            .bind(scope.to_string())
            .bind(now + ttl)
            .bind(now),
        )
        .await?;
    if inserted != 1 {
        return Err(DbError::Inconsistent("a token issued for a grant that does not exist").into());
    }
    Ok(token)
}

/// An access token with `access_scope` and, unless `refresh_scope` is `None`, a refresh token.
pub(super) async fn issue(
    tx: &mut Tx<'_>,
    grant_id: i64,
    access_scope: &Scope,
    refresh_scope: Option<&Scope>,
    now: Epoch,
) -> Result<TokenResponse> {
    let access_token = insert_token(tx, grant_id, Kind::Access, access_scope, now).await?;
    let refresh_token = match refresh_scope {
        Some(scope) => Some(insert_token(tx, grant_id, Kind::Refresh, scope, now).await?),
        None => None,
    };
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in: ACCESS_TOKEN_TTL,
        scope: access_scope.to_string(),
    })
}

/// Revokes every live token of a family (rules 3, 7, 9). The family's row is locked first, as
/// a refresh does: otherwise, on PostgreSQL, a refresh committing meanwhile adds a token this
/// statement's snapshot cannot see, and the family lives on through it (the state machine
/// found this: a revocation racing a refresh).
pub(super) async fn revoke_grant(tx: &mut Tx<'_>, grant_id: i64, now: Epoch) -> Result<()> {
    tx.execute(sql("UPDATE oauth_grants SET created_at = created_at WHERE id = $1").bind(grant_id))
        .await?;
    tx.execute(
        sql("UPDATE oauth_tokens SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL")
            .bind(grant_id)
            .bind(now),
    )
    .await?;
    Ok(())
}

/// What a presented access token proves: valid, for whom, with what scope.
pub(crate) struct Bearer {
    user_id: Option<i64>,
    scope: Scope,
}

pub(crate) struct AuthorizedUser {
    pub id: i64,
    scope: Scope,
}

impl Bearer {
    /// Registry writes act for a user; a client credentials token has none.
    pub fn user_with_access(self) -> Result<AuthorizedUser, Rejection> {
        let id = self.user_id.ok_or(Rejection::TokenHasNoUser)?;
        Ok(AuthorizedUser {
            id,
            scope: self.scope,
        })
    }
}

impl AuthorizedUser {
    pub fn require(&self, endpoint: Endpoint, crate_key: &str) -> Result<(), Rejection> {
        if self.scope.allows(endpoint, crate_key) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope)
        }
    }
}

/// Checks a bearer access token (RFC 6750): known, an access token, not revoked, not expired.
pub(crate) async fn bearer(tx: &mut Tx<'_>, token: &str, now: Epoch) -> Result<Bearer> {
    if token.len() > super::MAX_SECRET {
        return Err(Rejection::TokenInvalid.into());
    }
    let row = tx
        .fetch_optional(
            sql("SELECT t.scope, t.expires_at, t.revoked_at, g.user_id \
                 FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
                 WHERE t.token_hash = $1 AND t.kind = 'access'")
            .bind(crate::domain::secret::hash(token)),
        )
        .await?
        .ok_or(Rejection::TokenInvalid)?;
    let revoked: Option<i64> = get(&row, "revoked_at")?;
    if revoked.is_some() || is_expired(now, get(&row, "expires_at")?) {
        return Err(Rejection::TokenInvalid.into());
    }
    Ok(Bearer {
        user_id: get(&row, "user_id")?,
        scope: Scope::parse(&get::<String>(&row, "scope")?).unwrap_or_default(),
    })
}
