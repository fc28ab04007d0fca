//! One test body, two backends. `both_backends!` expands a body into a SQLite test and a
//! PostgreSQL test; every test ends by closing the database and requiring all three session
//! views to reach zero, so every test is also a leak test.
#![allow(dead_code)]

use leakproof::clock::ManualClock;
use leakproof::db::scratch::Scratch;
use leakproof::db::{Backend, Db, SETTLE_DEADLINE};
use leakproof::domain::Checksum;
use leakproof::domain::pkce;
use leakproof::oauth::{AuthorizeRequest, ClientAuth, ClientRegistration, OAuth, TokenResponse};
use leakproof::registry::{PublishRequest, Registry};
use std::sync::Arc;

pub const PG_URL_VAR: &str = "LEAKPROOF_PG_URL";

pub struct Env {
    pub db: Db,
    pub clock: Arc<ManualClock>,
    pub registry: Registry,
    pub oauth: OAuth,
    scratch: Scratch,
}

/// A fresh database of `backend`; `None` for PostgreSQL without its URL (outside CI).
pub async fn scratch(backend: Backend) -> Option<Scratch> {
    Some(match backend {
        Backend::Sqlite => Scratch::sqlite().expect("scratch sqlite"),
        Backend::Postgres => Scratch::postgres(&postgres_url()?)
            .await
            .expect("scratch postgres schema"),
    })
}

/// The PostgreSQL URL tests run against. Without it, PostgreSQL tests skip locally and fail in
/// CI (`CI` set): a missing server must never pass for a green run.
pub fn postgres_url() -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {PG_URL_VAR} is not: PostgreSQL tests must run in CI")
        }
        _ => {
            eprintln!("skipped: set {PG_URL_VAR} to run the PostgreSQL tests");
            None
        }
    }
}

impl Env {
    pub async fn new(backend: Backend) -> Option<Env> {
        let scratch = scratch(backend).await?;
        let db = Db::connect(&scratch.url).await.expect("connect");
        let clock = Arc::new(ManualClock::new());
        Some(Env {
            registry: Registry::new(db.clone(), clock.clone()),
            oauth: OAuth::new(db.clone(), clock.clone()),
            db,
            clock,
            scratch,
        })
    }

    /// The scratch database's URL.
    pub fn db_url(&self) -> &str {
        &self.scratch.url
    }

    /// Closes the pool and requires every view at zero; then removes the database.
    pub async fn finish(self) {
        self.db
            .quiesce(SETTLE_DEADLINE)
            .await
            .expect("no session may stay open after the test body");
        let views = self
            .db
            .close(SETTLE_DEADLINE)
            .await
            .expect("close to zero sessions");
        assert!(views.is_closed(), "{views}");
        self.scratch
            .remove()
            .await
            .expect("remove scratch database");
    }

    pub async fn user(&self, login: &str) {
        self.registry.create_user(login).await.expect("create user");
    }

    /// A public client with one https and one loopback redirect URI, allowed every scope.
    pub async fn public_client(&self) -> ClientAuth {
        self.client(false, "publish-new publish-update yank change-owners")
            .await
    }

    pub async fn confidential_client(&self, scope: &str) -> ClientAuth {
        self.client(true, scope).await
    }

    async fn client(&self, confidential: bool, scope: &str) -> ClientAuth {
        self.register_client(confidential, &[REDIRECT, "http://127.0.0.1/cb"], scope)
            .await
    }

    /// Registers a client and returns how it authenticates.
    pub async fn register_client(
        &self,
        confidential: bool,
        redirect_uris: &[&str],
        scope: &str,
    ) -> ClientAuth {
        let registered = self
            .oauth
            .register_client(&ClientRegistration {
                name: "test client".into(),
                confidential,
                redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
                scope: scope.into(),
            })
            .await
            .expect("register client");
        ClientAuth {
            client_id: registered.client_id,
            client_secret: registered.client_secret.map(|s| s.expose().to_owned()),
        }
    }

    /// A code for `login` through `client` with PKCE; returns the code and its verifier.
    pub async fn code(
        &self,
        client: &ClientAuth,
        login: &str,
        scope: Option<&str>,
    ) -> (String, String) {
        let verifier = verifier();
        let code = self
            .oauth
            .authorize(&authorize_request(client, login, scope, &verifier))
            .await
            .expect("authorize");
        (code.code.expose().to_owned(), verifier)
    }

    /// Runs the whole authorization code flow for `login` and returns the tokens.
    pub async fn tokens(
        &self,
        client: &ClientAuth,
        login: &str,
        scope: Option<&str>,
    ) -> TokenResponse {
        let (code, verifier) = self.code(client, login, scope).await;
        self.oauth
            .exchange_code(client, &code, REDIRECT, Some(&verifier))
            .await
            .expect("exchange code")
    }

    /// A user and an access token for them with `scope`.
    pub async fn user_token(&self, login: &str, scope: &str) -> String {
        self.user(login).await;
        let client = self.public_client().await;
        let tokens = self.tokens(&client, login, Some(scope)).await;
        tokens.access_token.expose().to_owned()
    }
}

pub const REDIRECT: &str = "https://app.example/callback";

pub fn verifier() -> String {
    format!("{:0>64}", rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn authorize_request(
    client: &ClientAuth,
    login: &str,
    scope: Option<&str>,
    verifier: &str,
) -> AuthorizeRequest {
    AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: REDIRECT.into(),
        scope: scope.map(str::to_owned),
        code_challenge: Some(pkce::s256(verifier)),
        code_challenge_method: Some("S256".into()),
        login: login.into(),
    }
}

pub fn publish(name: &str, version: &str) -> PublishRequest {
    PublishRequest {
        name: name.into(),
        version: version.into(),
        checksum: Checksum::of(format!("{name}-{version}").as_bytes()).0,
    }
}

/// Asserts that a result is the given rejection.
#[macro_export]
macro_rules! assert_rejected {
    ($result:expr, $rejection:expr) => {{
        match $result {
            Err(leakproof::Error::Rejected(r)) => assert_eq!(r, $rejection),
            Err(other) => panic!("expected {:?}, got storage error {other}", $rejection),
            Ok(_) => panic!("expected {:?}, got success", $rejection),
        }
    }};
}

/// Expands one async test body into `sqlite` and `postgres` tests. The body sees `env: Env`.
#[macro_export]
macro_rules! both_backends {
    ($(#[$meta:meta])* $name:ident, |$env:ident| $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $env = common::Env::new(leakproof::db::Backend::Sqlite).await.expect("sqlite env");
                $body
                $env.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($env) = common::Env::new(leakproof::db::Backend::Postgres).await else {
                    return;
                };
                $body
                $env.finish().await;
            }
        }
    };
}

/// Of two concurrent outcomes, exactly one is `Ok` and the other is `rejection`; the `Ok` value.
pub fn one_ok_other_rejected<T: std::fmt::Debug>(
    a: leakproof::Result<T>,
    b: leakproof::Result<T>,
    rejection: leakproof::domain::Rejection,
) -> T {
    match (a, b) {
        (Ok(ok), Err(e)) | (Err(e), Ok(ok)) => {
            assert_eq!(
                e.rejection(),
                Some(rejection),
                "the loser must be {rejection:?}, got {e:?}"
            );
            ok
        }
        (a, b) => panic!("expected exactly one Ok and one {rejection:?}, got {a:?} and {b:?}"),
    }
}
