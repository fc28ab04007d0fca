//! The OAuth2 authorization server: client registration, the authorization code grant with
//! PKCE, refresh with rotation, client credentials, revocation (RFC 7009) and introspection
//! (RFC 7662). The rules are DESIGN.md's twelve; `model/` states them as a specification.
//!
//! Secrets (client secrets, codes, tokens) are stored as sha256 only and compared in constant
//! time. A token's *grant* is its family: revoking a family revokes every token in it.

mod grants;
mod tokens;

pub use grants::{INTROSPECT_SQL, Introspection, TokenRequest};
pub(crate) use tokens::bearer;

use crate::Result;
use crate::clock::{Clock, Epoch};
use crate::db::{Db, Tx, get, sql};
use crate::domain::secret::{self, CLIENT_SECRET_PREFIX, CODE_PREFIX, Secret};
use crate::domain::{CODE_TTL, Login, Rejection, Scope, check_len, pkce, redirect};
use std::sync::Arc;

pub const MAX_CLIENT_NAME: usize = 100;
pub const MAX_CLIENT_ID: usize = 64;
pub const MAX_SECRET: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistration {
    pub name: String,
    /// Confidential clients get a secret; public ones (native apps, SPAs) must use PKCE.
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    /// The widest scope the client may ever ask for.
    pub scope: String,
}

#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    /// Shown once, stored only hashed. `None` for public clients.
    pub client_secret: Option<Secret>,
}

/// The resource owner has authenticated and consented; the client asks for a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Space-delimited; `None` or empty means the client's registered scope.
    pub scope: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// The authenticated resource owner.
    pub login: String,
}

#[derive(Debug, Clone)]
pub struct AuthorizationCode {
    pub code: Secret,
    pub expires_at: Epoch,
}

/// How a client authenticates at the token, revocation and introspection endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub client_id: String,
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: i64,
    pub scope: String,
}

#[derive(Clone)]
pub struct OAuth {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl OAuth {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn now(&self) -> Epoch {
        self.clock.epoch()
    }

    pub async fn register_client(
        &self,
        registration: &ClientRegistration,
    ) -> Result<RegisteredClient> {
        let name = registration.name.as_str();
        check_len("client_name", name, MAX_CLIENT_NAME)?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(Rejection::InvalidClientName.into());
        }
        let uris = &registration.redirect_uris;
        if uris.len() > redirect::MAX_REDIRECT_URIS {
            return Err(Rejection::TooMany {
                what: "redirect URIs",
                max: redirect::MAX_REDIRECT_URIS,
            }
            .into());
        }
        if uris.is_empty() {
            return Err(Rejection::InvalidRedirectUri.into());
        }
        for uri in uris {
            redirect::validate(uri)?;
        }
        let scope = Scope::parse(&registration.scope)?;
        if scope.is_empty() {
            return Err(Rejection::InvalidScope.into());
        }
        let client_id = Secret::generate("lpcl_").expose().to_owned();
        let client_secret = registration
            .confidential
            .then(|| Secret::generate(CLIENT_SECRET_PREFIX));
        let now = self.now();
        let mut tx = self.db.tx("oauth.register_client").await?;
        let row = tx
            .fetch_one(
                sql("INSERT INTO oauth_clients (client_id, name, confidential, secret_hash, scope, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
                .bind(&client_id)
                .bind(name)
                .bind(i64::from(registration.confidential))
                .bind(client_secret.as_ref().map(Secret::hash))
                .bind(scope.to_string())
                .bind(now),
            )
            .await?;
        let client_pk: i64 = get(&row, "id")?;
        let mut distinct: Vec<&String> = uris.iter().collect();
        distinct.sort();
        distinct.dedup();
        for uri in distinct {
            tx.execute(
                sql("INSERT INTO oauth_redirect_uris (client_pk, uri) VALUES ($1, $2)")
                    .bind(client_pk)
                    .bind(uri),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(RegisteredClient {
            client_id,
            client_secret,
        })
    }

    /// Issues a single-use code bound to the client, the exact redirect URI and the PKCE
    /// challenge. `UnknownClient` and `RedirectUriMismatch` must be shown to the user, never
    /// redirected ([`Rejection::never_redirected`]).
    pub async fn authorize(&self, request: &AuthorizeRequest) -> Result<AuthorizationCode> {
        check_len("client_id", &request.client_id, MAX_CLIENT_ID)?;
        check_len(
            "redirect_uri",
            &request.redirect_uri,
            redirect::MAX_REDIRECT_URI,
        )?;
        let login = Login::parse(&request.login)?;
        let now = self.now();
        let mut tx = self.db.tx("oauth.authorize").await?;
        let client = tx
            .fetch_optional(
                sql("SELECT id, confidential, scope FROM oauth_clients WHERE client_id = $1")
                    .bind(&request.client_id),
            )
            .await?
            .ok_or(Rejection::UnknownClient)?;
        let client_pk: i64 = get(&client, "id")?;
        let registered = tx
            .fetch_all(
                sql("SELECT uri FROM oauth_redirect_uris WHERE client_pk = $1").bind(client_pk),
            )
            .await?;
        let mut matched = false;
        for row in &registered {
            let uri: String = get(row, "uri")?;
            matched |= redirect::matches(&uri, &request.redirect_uri);
        }
        if !matched {
            return Err(Rejection::RedirectUriMismatch.into());
        }
        let allowed = Scope::parse(&get::<String>(&client, "scope")?).unwrap_or_default();
        let scope = requested_scope(request.scope.as_deref(), &allowed)?;
        if !allowed.covers(&scope) {
            return Err(Rejection::ScopeNotAllowed.into());
        }
        let challenge = pkce::check_challenge(
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        )?;
        let confidential = get::<i64>(&client, "confidential")? != 0;
        if !confidential && challenge.is_none() {
            return Err(Rejection::PkceRequired.into());
        }
        let user = tx
            .fetch_optional(sql("SELECT id FROM users WHERE login_key = $1").bind(&login.key))
            .await?
            .ok_or(Rejection::UnknownUser)?;
        let user_id: i64 = get(&user, "id")?;
        let code = Secret::generate(CODE_PREFIX);
        let expires_at = now + CODE_TTL;
        tx.execute(
            sql("INSERT INTO oauth_codes (code_hash, client_pk, user_id, redirect_uri, scope, challenge, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(code.hash())
            .bind(client_pk)
            .bind(user_id)
            .bind(&request.redirect_uri)
            .bind(scope.to_string())
            .bind(challenge)
            .bind(expires_at)
            .bind(now),
        )
        .await?;
        tx.commit().await?;
        Ok(AuthorizationCode { code, expires_at })
    }
}

/// A requested scope string, or the default when absent or empty.
fn requested_scope(raw: Option<&str>, default: &Scope) -> Result<Scope, Rejection> {
    match raw {
        None | Some("") => Ok(default.clone()),
        Some(raw) => Scope::parse(raw),
    }
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub pk: i64,
    pub confidential: bool,
    pub scope: Scope,
}

/// Client authentication (RFC 6749 §2.3): a confidential client proves its secret; a public
/// client presents none. Every failure is the same `ClientAuthFailed` (`invalid_client`).
pub(crate) async fn authenticate(tx: &mut Tx<'_>, auth: &ClientAuth) -> Result<Client> {
    check_len("client_id", &auth.client_id, MAX_CLIENT_ID)?;
    if let Some(s) = &auth.client_secret {
        check_len("client_secret", s, MAX_SECRET)?;
    }
    let row = tx
        .fetch_optional(
            sql("SELECT id, confidential, secret_hash, scope FROM oauth_clients WHERE client_id = $1")
                .bind(&auth.client_id),
        )
        .await?
        .ok_or(Rejection::ClientAuthFailed)?;
    let stored: Option<String> = get(&row, "secret_hash")?;
    check_client_secret(stored.as_deref(), auth.client_secret.as_deref())?;
    Ok(Client {
        pk: get(&row, "id")?,
        confidential: get::<i64>(&row, "confidential")? != 0,
        scope: Scope::parse(&get::<String>(&row, "scope")?).unwrap_or_default(),
    })
}

/// The secret check alone, shared by every endpoint that authenticates a client.
pub(crate) fn check_client_secret(
    stored_hash: Option<&str>,
    presented: Option<&str>,
) -> Result<(), Rejection> {
    let ok = match (stored_hash, presented) {
        (None, None) => true,
        (Some(hash), Some(presented)) => {
            secret::ct_eq(secret::hash(presented).as_bytes(), hash.as_bytes())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::ClientAuthFailed)
    }
}
