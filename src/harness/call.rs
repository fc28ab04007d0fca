//! An op resolved against the runner's bookkeeping: everything both sides need, the model's
//! positions and the system's strings. Applying a call to the model and to the system are
//! separate, so the harness can run the system's side under a fault, or several at once, and
//! try the model in any order.

use super::runner::{Outcome, StepResult};
use crate::clock::ManualClock;
use crate::db::DbError;
use crate::domain::Rejection;
use crate::model::{self, Ix, Model, Presented};
use crate::oauth::{
    AuthorizeRequest, ClientAuth, ClientRegistration, OAuth, TokenRequest, TokenResponse,
};
use crate::registry::{PublishRequest, Published, Registry};
use std::sync::Arc;

/// A client as both sides see it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub ix: Option<Ix>,
    pub presented: Presented,
    pub auth: ClientAuth,
}

/// A token as both sides see it.
#[derive(Debug, Clone)]
pub struct Bearer {
    pub ix: Option<Ix>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum Call {
    Advance(u32),
    CreateUser(String),
    RegisterClient(ClientRegistration),
    Authorize {
        client: Option<Ix>,
        request: AuthorizeRequest,
        verifier: String,
    },
    Exchange {
        caller: Caller,
        code: Option<Ix>,
        code_text: String,
        redirect_uri: String,
        verifier: Option<String>,
    },
    Refresh {
        caller: Caller,
        token: Bearer,
        scope: Option<String>,
    },
    ClientCredentials {
        caller: Caller,
        scope: Option<String>,
    },
    TokenEndpoint {
        request: TokenRequest,
        expected: Rejection,
    },
    Revoke {
        caller: Caller,
        token: Bearer,
    },
    Introspect {
        caller: Caller,
        token: Bearer,
    },
    Publish {
        token: Bearer,
        request: PublishRequest,
    },
    SetYanked {
        token: Bearer,
        name: String,
        version: String,
        yanked: bool,
    },
    AddOwner {
        token: Bearer,
        name: String,
        login: String,
    },
    RemoveOwner {
        token: Bearer,
        name: String,
        login: String,
    },
    Download {
        name: String,
        version: String,
    },
    Versions(String),
    CrateInfo(String),
}

/// What the model created, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Nothing,
    Client(Ix),
    Code(Ix),
    Tokens(model::Issued),
}

/// The secrets the system handed out, if its answer was seen.
#[derive(Debug, Clone)]
pub enum Secrets {
    Nothing,
    Client {
        client_id: String,
        secret: Option<String>,
    },
    Code(String),
    Tokens {
        access: String,
        refresh: Option<String>,
    },
}

/// The system's handles; cheap to clone into concurrent tasks.
#[derive(Clone)]
pub struct System {
    pub registry: Registry,
    pub oauth: OAuth,
    pub clock: Arc<ManualClock>,
}

fn done<T>(result: Result<T, Rejection>) -> (StepResult, Created) {
    (result.map(|_| Outcome::Done), Created::Nothing)
}

fn issued(result: Result<model::Issued, Rejection>) -> (StepResult, Created) {
    match result {
        Ok(i) => (
            Ok(Outcome::Issued {
                refresh: i.refresh.is_some(),
                scope: i.scope.clone(),
            }),
            Created::Tokens(i),
        ),
        Err(r) => (Err(r), Created::Nothing),
    }
}

impl Call {
    /// Does the call present a secret the runner never saw (`lost`)? Such a call cannot be
    /// made: the model knows the thing, but nobody holds its secret.
    pub fn presents(&self, lost: &str) -> bool {
        let caller = |c: &Caller| c.auth.client_id == lost;
        match self {
            Call::Authorize { request, .. } => request.client_id == lost,
            Call::Exchange {
                caller: c,
                code_text,
                ..
            } => caller(c) || code_text == lost,
            Call::Refresh {
                caller: c, token, ..
            }
            | Call::Revoke { caller: c, token }
            | Call::Introspect { caller: c, token } => caller(c) || token.text == lost,
            Call::ClientCredentials { caller: c, .. } => caller(c),
            Call::TokenEndpoint { request, .. } => request.client_id == lost,
            Call::Publish { token, .. }
            | Call::SetYanked { token, .. }
            | Call::AddOwner { token, .. }
            | Call::RemoveOwner { token, .. } => token.text == lost,
            Call::Advance(_)
            | Call::CreateUser(_)
            | Call::RegisterClient(_)
            | Call::Download { .. }
            | Call::Versions(_)
            | Call::CrateInfo(_) => false,
        }
    }

    /// Applies the call to the model.
    pub fn on_model(&self, m: &mut Model) -> (StepResult, Created) {
        match self {
            Call::Advance(secs) => {
                m.advance(i64::from(*secs));
                (Ok(Outcome::Done), Created::Nothing)
            }
            Call::CreateUser(login) => done(m.create_user(login)),
            Call::RegisterClient(r) => {
                match m.register_client(&r.name, r.confidential, &r.redirect_uris, &r.scope) {
                    Ok(ix) => (Ok(Outcome::Done), Created::Client(ix)),
                    Err(e) => (Err(e), Created::Nothing),
                }
            }
            Call::Authorize {
                client, request: r, ..
            } => {
                let result = m.authorize(
                    *client,
                    &r.redirect_uri,
                    r.scope.as_deref(),
                    r.code_challenge.as_deref(),
                    r.code_challenge_method.as_deref(),
                    &r.login,
                );
                match result {
                    Ok(ix) => (Ok(Outcome::Done), Created::Code(ix)),
                    Err(e) => (Err(e), Created::Nothing),
                }
            }
            Call::Exchange {
                caller,
                code,
                redirect_uri,
                verifier,
                ..
            } => issued(m.exchange_code(
                caller.ix,
                caller.presented,
                *code,
                redirect_uri,
                verifier.as_deref(),
            )),
            Call::Refresh {
                caller,
                token,
                scope,
            } => issued(m.refresh(caller.ix, caller.presented, token.ix, scope.as_deref())),
            Call::ClientCredentials { caller, scope } => {
                issued(m.client_credentials(caller.ix, caller.presented, scope.as_deref()))
            }
            Call::TokenEndpoint { expected, .. } => (Err(*expected), Created::Nothing),
            Call::Revoke { caller, token } => done(m.revoke(caller.ix, caller.presented, token.ix)),
            Call::Introspect { caller, token } => (
                m.introspect(caller.ix, caller.presented, token.ix)
                    .map(Outcome::Introspected),
                Created::Nothing,
            ),
            Call::Publish { token, request: r } => (
                m.publish(token.ix, &r.name, &r.version, &r.checksum)
                    .map(Outcome::Published),
                Created::Nothing,
            ),
            Call::SetYanked {
                token,
                name,
                version,
                yanked,
            } => done(m.set_yanked(token.ix, name, version, *yanked)),
            Call::AddOwner { token, name, login } => done(m.add_owner(token.ix, name, login)),
            Call::RemoveOwner { token, name, login } => done(m.remove_owner(token.ix, name, login)),
            Call::Download { name, version } => (
                m.download(name, version).map(Outcome::Checksum),
                Created::Nothing,
            ),
            Call::Versions(name) => (m.versions(name).map(Outcome::Versions), Created::Nothing),
            Call::CrateInfo(name) => (m.crate_info(name).map(Outcome::Crate), Created::Nothing),
        }
    }

    /// Applies the call to the system. Storage errors are set apart from rejections.
    pub async fn on_system(&self, sys: &System) -> (Result<StepResult, DbError>, Secrets) {
        let (registry, oauth) = (&sys.registry, &sys.oauth);
        match self {
            Call::Advance(secs) => {
                sys.clock.advance_secs(i64::from(*secs));
                (Ok(Ok(Outcome::Done)), Secrets::Nothing)
            }
            Call::CreateUser(login) => (
                split(registry.create_user(login).await.map(|_| Outcome::Done)),
                Secrets::Nothing,
            ),
            Call::RegisterClient(r) => match oauth.register_client(r).await {
                Ok(c) => (
                    Ok(Ok(Outcome::Done)),
                    Secrets::Client {
                        client_id: c.client_id,
                        secret: c.client_secret.map(|s| s.expose().to_owned()),
                    },
                ),
                Err(e) => (split(Err(e)), Secrets::Nothing),
            },
            Call::Authorize { request, .. } => match oauth.authorize(request).await {
                Ok(code) => (
                    Ok(Ok(Outcome::Done)),
                    Secrets::Code(code.code.expose().to_owned()),
                ),
                Err(e) => (split(Err(e)), Secrets::Nothing),
            },
            Call::Exchange {
                caller,
                code_text,
                redirect_uri,
                verifier,
                ..
            } => tokens(
                oauth
                    .exchange_code(&caller.auth, code_text, redirect_uri, verifier.as_deref())
                    .await,
            ),
            Call::Refresh {
                caller,
                token,
                scope,
            } => tokens(
                oauth
                    .refresh(&caller.auth, &token.text, scope.as_deref())
                    .await,
            ),
            Call::ClientCredentials { caller, scope } => tokens(
                oauth
                    .client_credentials(&caller.auth, scope.as_deref())
                    .await,
            ),
            Call::TokenEndpoint { request, .. } => tokens(oauth.token(request).await),
            Call::Revoke { caller, token } => (
                split(
                    oauth
                        .revoke(&caller.auth, &token.text)
                        .await
                        .map(|()| Outcome::Done),
                ),
                Secrets::Nothing,
            ),
            Call::Introspect { caller, token } => {
                let result = oauth.introspect(&caller.auth, &token.text).await.map(|i| {
                    Outcome::Introspected(model::Introspected {
                        active: i.active,
                        scope: i.scope,
                        token_type: i.token_type,
                        username: i.username,
                        exp: i.exp,
                    })
                });
                (split(result), Secrets::Nothing)
            }
            Call::Publish { token, request } => {
                let result = registry.publish(&token.text, request).await.map(|p| {
                    Outcome::Published(match p {
                        Published::NewCrate => model::PublishKind::NewCrate,
                        Published::NewVersion => model::PublishKind::NewVersion,
                    })
                });
                (split(result), Secrets::Nothing)
            }
            Call::SetYanked {
                token,
                name,
                version,
                yanked,
            } => (
                split(
                    registry
                        .set_yanked(&token.text, name, version, *yanked)
                        .await
                        .map(|()| Outcome::Done),
                ),
                Secrets::Nothing,
            ),
            Call::AddOwner { token, name, login } => (
                split(
                    registry
                        .add_owner(&token.text, name, login)
                        .await
                        .map(|()| Outcome::Done),
                ),
                Secrets::Nothing,
            ),
            Call::RemoveOwner { token, name, login } => (
                split(
                    registry
                        .remove_owner(&token.text, name, login)
                        .await
                        .map(|()| Outcome::Done),
                ),
                Secrets::Nothing,
            ),
            Call::Download { name, version } => (
                split(
                    registry
                        .download(name, version)
                        .await
                        .map(Outcome::Checksum),
                ),
                Secrets::Nothing,
            ),
            Call::Versions(name) => {
                let result = registry.versions(name).await.map(|list| {
                    Outcome::Versions(
                        list.into_iter()
                            .map(|v| model::VersionSummary {
                                num: v.num,
                                checksum: v.checksum,
                                yanked: v.yanked,
                                downloads: v.downloads,
                            })
                            .collect(),
                    )
                });
                (split(result), Secrets::Nothing)
            }
            Call::CrateInfo(name) => {
                let result = registry.crate_info(name).await.map(|c| {
                    Outcome::Crate(model::CrateSummary {
                        name: c.name,
                        downloads: c.downloads,
                        owners: c.owners,
                    })
                });
                (split(result), Secrets::Nothing)
            }
        }
    }
}

fn tokens(result: crate::Result<TokenResponse>) -> (Result<StepResult, DbError>, Secrets) {
    match result {
        Ok(r) => (
            Ok(Ok(Outcome::Issued {
                refresh: r.refresh_token.is_some(),
                scope: r.scope.clone(),
            })),
            Secrets::Tokens {
                access: r.access_token.expose().to_owned(),
                refresh: r.refresh_token.map(|t| t.expose().to_owned()),
            },
        ),
        Err(e) => (split(Err(e)), Secrets::Nothing),
    }
}

/// A system result, with storage errors set apart from rejections.
pub fn split(result: crate::Result<Outcome>) -> Result<StepResult, DbError> {
    match result {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(crate::Error::Rejected(r)) => Ok(Err(r)),
        Err(crate::Error::Db(e)) => Err(e),
    }
}
