//! The token endpoint's three grants, revocation (RFC 7009) and introspection (RFC 7662).

use super::tokens::{issue, new_grant, revoke_grant};
use super::{
    ClientAuth, MAX_SECRET, OAuth, TokenResponse, authenticate, check_client_secret,
    requested_scope,
};
use crate::Result;
use crate::db::{Tx, get, sql};
use crate::domain::secret::hash;
use crate::domain::{Rejection, Scope, check_len, is_expired, pkce, redirect};

/// A token request as it arrives in a form body (RFC 6749 §4.1.3, §6, §4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
}

/// RFC 7662 §2.2. Inactive tokens carry nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Introspection {
    pub active: bool,
    pub scope: Option<String>,
    pub token_type: Option<&'static str>,
    pub username: Option<String>,
    pub exp: Option<i64>,
}

fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, Rejection> {
    value.as_deref().ok_or(Rejection::MissingParameter { name })
}

impl OAuth {
    /// The token endpoint: dispatches on `grant_type`.
    pub async fn token(&self, request: &TokenRequest) -> Result<TokenResponse> {
        let client = ClientAuth {
            client_id: request.client_id.clone(),
            client_secret: request.client_secret.clone(),
        };
        match request.grant_type.as_str() {
            "authorization_code" => {
                let code = required(&request.code, "code")?;
                let redirect_uri = required(&request.redirect_uri, "redirect_uri")?;
                self.exchange_code(
                    &client,
                    code,
                    redirect_uri,
                    request.code_verifier.as_deref(),
                )
                .await
            }
            "refresh_token" => {
                let refresh_token = required(&request.refresh_token, "refresh_token")?;
                self.refresh(&client, refresh_token, request.scope.as_deref())
                    .await
            }
            "client_credentials" => {
                self.client_credentials(&client, request.scope.as_deref())
                    .await
            }
            _ => Err(Rejection::UnsupportedGrantType.into()),
        }
    }

    /// Redeems a code once (rules 2–5). A second redemption revokes what the first issued.
    pub async fn exchange_code(
        &self,
        client: &ClientAuth,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenResponse> {
        check_len("code", code, MAX_SECRET)?;
        check_len("redirect_uri", redirect_uri, redirect::MAX_REDIRECT_URI)?;
        if let Some(v) = code_verifier {
            check_len("code_verifier", v, MAX_SECRET)?;
        }
        let now = self.now();
        let mut tx = self.db.tx("oauth.exchange_code").await?;
        let client = authenticate(&mut tx, client).await?;
        let row = tx
            .fetch_optional(
                sql("SELECT id, client_pk, user_id, redirect_uri, scope, challenge, expires_at, redeemed_at \
                     FROM oauth_codes WHERE code_hash = $1")
                .bind(hash(code)),
            )
            .await?
            .ok_or(Rejection::CodeUnknown)?;
        let code_id: i64 = get(&row, "id")?;
        if get::<Option<i64>>(&row, "redeemed_at")?.is_some() {
            return reuse_of_code(tx, code_id, now).await;
        }
        if get::<i64>(&row, "client_pk")? != client.pk {
            return Err(Rejection::CodeClientMismatch.into());
        }
        if is_expired(now, get(&row, "expires_at")?) {
            return Err(Rejection::CodeExpired.into());
        }
        if get::<String>(&row, "redirect_uri")? != redirect_uri {
            return Err(Rejection::CodeRedirectMismatch.into());
        }
        let challenge: Option<String> = get(&row, "challenge")?;
        pkce::verify(challenge.as_deref(), code_verifier)?;
        // The claim: of two concurrent redemptions, exactly one changes the row.
        #[cfg(not(feature = "mutant-code-redeemable-twice"))]
        let claim =
            sql("UPDATE oauth_codes SET redeemed_at = $2 WHERE id = $1 AND redeemed_at IS NULL");
        // Seeded bug: the claim trusts the earlier read; a concurrent redemption also "wins".
        #[cfg(feature = "mutant-code-redeemable-twice")]
        let claim = sql("UPDATE oauth_codes SET redeemed_at = $2 WHERE id = $1");
        let claimed = tx.execute(claim.bind(code_id).bind(now)).await?;
        if claimed == 0 {
            return reuse_of_code(tx, code_id, now).await;
        }
        let scope = Scope::parse(&get::<String>(&row, "scope")?).unwrap_or_default();
        let user_id: i64 = get(&row, "user_id")?;
        let grant_id = new_grant(&mut tx, client.pk, Some(user_id), Some(code_id), now).await?;
        let response = issue(&mut tx, grant_id, &scope, Some(&scope), now).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// Rotates a refresh token (rules 6, 7): the old one dies, a new one with the same scope
    /// is issued, and the access token's scope may only narrow.
    pub async fn refresh(
        &self,
        client: &ClientAuth,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse> {
        check_len("refresh_token", refresh_token, MAX_SECRET)?;
        let requested = scope
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .transpose()?;
        let now = self.now();
        let mut tx = self.db.tx("oauth.refresh").await?;
        let client = authenticate(&mut tx, client).await?;
        // Refreshes of one family run one after another: lock the family's row first, then
        // read the token. Otherwise two concurrent replays of a rotated token both see it
        // unrevoked and both answer "reused", which no serial order explains.
        tx.execute(
            sql(
                "UPDATE oauth_grants SET created_at = created_at WHERE id = \
                 (SELECT grant_id FROM oauth_tokens WHERE token_hash = $1 AND kind = 'refresh')",
            )
            .bind(hash(refresh_token)),
        )
        .await?;
        let row = tx
            .fetch_optional(
                sql(
                    "SELECT t.id, t.grant_id, t.scope, t.expires_at, t.revoked_at, t.rotated_at, \
                            g.client_pk \
                     FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
                     WHERE t.token_hash = $1 AND t.kind = 'refresh'",
                )
                .bind(hash(refresh_token)),
            )
            .await?
            .ok_or(Rejection::RefreshUnknown)?;
        let token_id: i64 = get(&row, "id")?;
        let grant_id: i64 = get(&row, "grant_id")?;
        if get::<i64>(&row, "client_pk")? != client.pk {
            return Err(Rejection::RefreshClientMismatch.into());
        }
        if get::<Option<i64>>(&row, "revoked_at")?.is_some() {
            return Err(Rejection::RefreshRevoked.into());
        }
        if get::<Option<i64>>(&row, "rotated_at")?.is_some() {
            return reuse_of_refresh(tx, grant_id, now).await;
        }
        if is_expired(now, get(&row, "expires_at")?) {
            return Err(Rejection::RefreshExpired.into());
        }
        let granted = Scope::parse(&get::<String>(&row, "scope")?).unwrap_or_default();
        let access_scope = requested.unwrap_or_else(|| granted.clone());
        #[cfg(not(feature = "mutant-scope-widened-on-refresh"))]
        let ceiling = &granted;
        // Seeded bug: the ceiling is what the client may ask for, not what this grant was given.
        #[cfg(feature = "mutant-scope-widened-on-refresh")]
        let ceiling = &client.scope;
        if !ceiling.covers(&access_scope) {
            return Err(Rejection::ScopeWidened.into());
        }
        #[cfg(not(feature = "mutant-refresh-no-rotation"))]
        let claim = sql("UPDATE oauth_tokens SET rotated_at = $2 \
                         WHERE id = $1 AND rotated_at IS NULL AND revoked_at IS NULL");
        // Seeded bug: the old refresh token is never retired.
        #[cfg(feature = "mutant-refresh-no-rotation")]
        let claim = sql("UPDATE oauth_tokens SET created_at = created_at \
                         WHERE id = $1 AND $2 = $2 AND revoked_at IS NULL");
        let claimed = tx.execute(claim.bind(token_id).bind(now)).await?;
        if claimed == 0 {
            // Lost a race: to a revocation, or to a concurrent refresh (a reuse).
            let now_row = tx
                .fetch_one(sql("SELECT revoked_at FROM oauth_tokens WHERE id = $1").bind(token_id))
                .await?;
            if get::<Option<i64>>(&now_row, "revoked_at")?.is_some() {
                return Err(Rejection::RefreshRevoked.into());
            }
            return reuse_of_refresh(tx, grant_id, now).await;
        }
        let response = issue(&mut tx, grant_id, &access_scope, Some(&granted), now).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// A confidential client acting for itself (rule 8): an access token, never a refresh token.
    pub async fn client_credentials(
        &self,
        client: &ClientAuth,
        scope: Option<&str>,
    ) -> Result<TokenResponse> {
        let now = self.now();
        let mut tx = self.db.tx("oauth.client_credentials").await?;
        let client = authenticate(&mut tx, client).await?;
        if !client.confidential {
            return Err(Rejection::UnauthorizedClient.into());
        }
        let scope = requested_scope(scope, &client.scope)?;
        if !client.scope.covers(&scope) {
            return Err(Rejection::ScopeNotAllowed.into());
        }
        let grant_id = new_grant(&mut tx, client.pk, None, None, now).await?;
        let response = issue(&mut tx, grant_id, &scope, None, now).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// RFC 7009 (rule 9): success for unknown and foreign tokens, which are left alone.
    /// Revoking a refresh token revokes its whole family; an access token, only itself.
    pub async fn revoke(&self, client: &ClientAuth, token: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.db.tx("oauth.revoke").await?;
        let client = authenticate(&mut tx, client).await?;
        if token.len() > MAX_SECRET {
            return Ok(());
        }
        let Some(row) = tx
            .fetch_optional(
                sql("SELECT t.id, t.kind, t.grant_id, g.client_pk \
                     FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
                     WHERE t.token_hash = $1")
                .bind(hash(token)),
            )
            .await?
        else {
            return Ok(());
        };
        if get::<i64>(&row, "client_pk")? != client.pk {
            return Ok(());
        }
        if get::<String>(&row, "kind")? == "refresh" {
            revoke_grant(&mut tx, get(&row, "grant_id")?, now).await?;
        } else {
            tx.execute(
                sql("UPDATE oauth_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(get::<i64>(&row, "id")?)
                    .bind(now),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// RFC 7662 (rule 10): the caller must authenticate; a token that is unknown, expired,
    /// revoked, rotated out, or another client's, is just `active: false`. One statement
    /// ([`INTROSPECT_SQL`]).
    pub async fn introspect(&self, client: &ClientAuth, token: &str) -> Result<Introspection> {
        check_len("client_id", &client.client_id, super::MAX_CLIENT_ID)?;
        let now = self.now();
        let mut session = self.db.session("oauth.introspect").await?;
        let row = session
            .fetch_optional(
                sql(INTROSPECT_SQL)
                    .bind(&client.client_id)
                    .bind(hash(token)),
            )
            .await?
            .ok_or(Rejection::ClientAuthFailed)?;
        drop(session);
        let stored: Option<String> = get(&row, "secret_hash")?;
        check_client_secret(stored.as_deref(), client.client_secret.as_deref())?;
        let Some(kind) = get::<Option<String>>(&row, "kind")? else {
            return Ok(Introspection::default());
        };
        let expires_at: i64 = get(&row, "expires_at")?;
        let active = get::<Option<i64>>(&row, "owner_pk")? == Some(get(&row, "caller_pk")?)
            && get::<Option<i64>>(&row, "revoked_at")?.is_none()
            && get::<Option<i64>>(&row, "rotated_at")?.is_none()
            && !is_expired(now, expires_at);
        if !active {
            return Ok(Introspection::default());
        }
        Ok(Introspection {
            active,
            scope: Some(get(&row, "scope")?),
            token_type: Some(if kind == "refresh" {
                "refresh_token"
            } else {
                "access_token"
            }),
            username: get(&row, "login")?,
            exp: Some(expires_at),
        })
    }
}

/// Introspection's one statement: the caller's client by its id (`$1`) and the token by its
/// hash (`$2`), two indexed lookups; the token's row names its owner client and user's login
/// (copied from its grant when issued). Public for the benchmarks, which run it raw and in
/// pgbench beside `introspect` itself.
pub const INTROSPECT_SQL: &str = "SELECT c.id AS caller_pk, c.secret_hash, t.kind, t.scope, \
        t.expires_at, t.revoked_at, t.rotated_at, t.client_pk AS owner_pk, t.username AS login \
     FROM oauth_clients c LEFT JOIN oauth_tokens t ON t.token_hash = $2 \
     WHERE c.client_id = $1";

/// Rule 3: the code was already redeemed. Revoke everything issued from it, commit that, and
/// refuse.
async fn reuse_of_code(
    mut tx: Tx<'_>,
    code_id: i64,
    now: crate::clock::Epoch,
) -> Result<TokenResponse> {
    let grant = tx
        .fetch_optional(sql("SELECT id FROM oauth_grants WHERE code_id = $1").bind(code_id))
        .await?;
    if let Some(grant) = grant {
        revoke_grant(&mut tx, get(&grant, "id")?, now).await?;
    }
    tx.commit().await?;
    Err(Rejection::CodeReused.into())
}

/// Rule 7: a rotated-out refresh token came back. Revoke the family, commit that, and refuse.
async fn reuse_of_refresh(
    mut tx: Tx<'_>,
    grant_id: i64,
    now: crate::clock::Epoch,
) -> Result<TokenResponse> {
    // Seeded bug: the replay is refused, but the family lives on.
    if !cfg!(feature = "mutant-reuse-keeps-family") {
        revoke_grant(&mut tx, grant_id, now).await?;
    }
    tx.commit().await?;
    Err(Rejection::RefreshReused.into())
}
