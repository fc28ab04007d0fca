//! The twelve OAuth2 rules of DESIGN.md ("The system under test"), each checked against the real
//! system on SQLite and PostgreSQL: one `both_backends!` test per rule, plus the token
//! endpoint's dispatcher. Every test also ends with the leak check of `Env::finish`.

mod common;

use common::{Env, REDIRECT, verifier};
use leakproof::clock::{Clock, ManualClock};
use leakproof::db::{get, sql};
use leakproof::domain::secret::{Secret, hash};
use leakproof::domain::{ACCESS_TOKEN_TTL, CODE_TTL, REFRESH_TOKEN_TTL, Rejection, pkce};
use leakproof::oauth::{
    AuthorizeRequest, ClientAuth, Introspection, OAuth, TokenRequest, TokenResponse,
};

/// The second registered redirect URI of every client made here (and by `Env`'s clients).
const LOOPBACK: &str = "http://127.0.0.1/cb";
const ALL_SCOPES: &str = "publish-new publish-update yank change-owners";

/// The rejection a result ends in; panics on success or on a storage error.
fn rejection<T>(result: leakproof::Result<T>) -> Rejection {
    match result {
        Err(leakproof::Error::Rejected(r)) => r,
        Err(other) => panic!("expected a rejection, got storage error {other}"),
        Ok(_) => panic!("expected a rejection, got success"),
    }
}

fn access(tokens: &TokenResponse) -> &str {
    tokens.access_token.expose()
}

fn refresh_of(tokens: &TokenResponse) -> &str {
    tokens
        .refresh_token
        .as_ref()
        .expect("a refresh token")
        .expose()
}

/// The same client presenting another secret (or none).
fn with_secret(client: &ClientAuth, secret: Option<&str>) -> ClientAuth {
    ClientAuth {
        client_id: client.client_id.clone(),
        client_secret: secret.map(str::to_owned),
    }
}

/// `text` with its character at `index` replaced by a different one.
fn change_char(text: &str, index: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii secret")
}

/// An authorization request for `client` with an explicit redirect URI and PKCE parameters.
fn request(
    client: &ClientAuth,
    redirect_uri: &str,
    challenge: Option<String>,
    method: Option<&str>,
) -> AuthorizeRequest {
    AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.into(),
        scope: None,
        code_challenge: challenge,
        code_challenge_method: method.map(str::to_owned),
        login: "alice".into(),
    }
}

/// An S256 authorization request for `redirect_uri`; returns it and its verifier.
fn s256_request(client: &ClientAuth, redirect_uri: &str) -> (AuthorizeRequest, String) {
    let verifier = verifier();
    let challenge = pkce::s256(&verifier);
    (
        request(client, redirect_uri, Some(challenge), Some("S256")),
        verifier,
    )
}

async fn introspect(env: &Env, client: &ClientAuth, token: &str) -> Introspection {
    env.oauth
        .introspect(client, token)
        .await
        .expect("introspect")
}

async fn is_active(env: &Env, client: &ClientAuth, token: &str) -> bool {
    introspect(env, client, token).await.active
}

/// Spawns one code redemption on its own task.
fn spawn_exchange(
    oauth: OAuth,
    client: ClientAuth,
    code: String,
    verifier: String,
) -> tokio::task::JoinHandle<leakproof::Result<TokenResponse>> {
    tokio::spawn(async move {
        oauth
            .exchange_code(&client, &code, REDIRECT, Some(&verifier))
            .await
    })
}

/// Spawns one refresh on its own task.
fn spawn_refresh(
    oauth: OAuth,
    client: ClientAuth,
    refresh_token: String,
) -> tokio::task::JoinHandle<leakproof::Result<TokenResponse>> {
    tokio::spawn(async move { oauth.refresh(&client, &refresh_token, None).await })
}

// Rule 1: redirect URIs match a registered one byte for byte (loopback: any port); a mismatch
// is an error, never a redirect.
both_backends!(rule01_redirect_uri_exact_match, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let other = env
        .register_client(false, &["https://other.example/cb"], ALL_SCOPES)
        .await;

    for ok in [
        REDIRECT,
        LOOPBACK,
        "http://127.0.0.1:80/cb",
        "http://127.0.0.1:8080/cb",
        "http://127.0.0.1:51234/cb",
    ] {
        let (req, verifier) = s256_request(&client, ok);
        let code = env
            .oauth
            .authorize(&req)
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        // The code is bound to exactly the URI it was asked for.
        env.oauth
            .exchange_code(&client, code.code.expose(), ok, Some(&verifier))
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }

    for bad in [
        "https://app.example/callback/",
        "https://app.example/callbac",
        "https://app.example/callbackx",
        "https://app.example/Callback",
        "https://APP.example/callback",
        "https://app.example:443/callback",
        "https://app.example/callback?x=1",
        "https://app.example/callback#frag",
        "https://app.example/callback ",
        "https://app.example//callback",
        "http://app.example/callback",
        "https://evil.example/callback",
        "https://app.example.evil.example/callback",
        "https://other.example/cb",
        "http://127.0.0.1:8080/other",
        "http://127.0.0.1:8080/cb/",
        "http://127.0.0.1.evil.example/cb",
        "http://[::1]:8080/cb",
        "http://localhost:8080/cb",
        "https://127.0.0.1/cb",
        "",
    ] {
        let (req, _) = s256_request(&client, bad);
        let r = rejection(env.oauth.authorize(&req).await);
        assert_eq!(r, Rejection::RedirectUriMismatch, "{bad:?}");
        assert!(r.never_redirected(), "{bad:?}");
    }

    // Another client's registered URI matches only for that client.
    let (req, _) = s256_request(&other, "https://other.example/cb");
    env.oauth
        .authorize(&req)
        .await
        .expect("other client's own URI");

    // An unknown client: shown to the user, never redirected, whatever the URI.
    let unknown = ClientAuth {
        client_id: "lpcl_nobody".into(),
        client_secret: None,
    };
    for uri in [REDIRECT, "https://evil.example/cb"] {
        let (req, _) = s256_request(&unknown, uri);
        let r = rejection(env.oauth.authorize(&req).await);
        assert_eq!(r, Rejection::UnknownClient, "{uri}");
        assert!(r.never_redirected());
    }
});

// Rule 2: a code redeems at most once, also under concurrent redemption; codes live at most
// ten minutes.
both_backends!(rule02_code_single_use_and_ten_minutes, |env| {
    assert_eq!(CODE_TTL, 600);
    env.user("alice").await;
    let client = env.public_client().await;

    // At most once, serially.
    let (code, verifier) = env.code(&client, "alice", None).await;
    env.oauth
        .exchange_code(&client, &code, REDIRECT, Some(&verifier))
        .await
        .expect("first redemption");
    assert_rejected!(
        env.oauth
            .exchange_code(&client, &code, REDIRECT, Some(&verifier))
            .await,
        Rejection::CodeReused
    );

    // Ten minutes: issued at t, still good at t + 599, expired at t + 600.
    let (req, early_verifier) = s256_request(&client, REDIRECT);
    let early = env.oauth.authorize(&req).await.expect("authorize");
    assert_eq!(early.expires_at, ManualClock::START + 600);
    let (late_code, late_verifier) = env.code(&client, "alice", None).await;
    env.clock.advance_secs(599);
    env.oauth
        .exchange_code(
            &client,
            early.code.expose(),
            REDIRECT,
            Some(&early_verifier),
        )
        .await
        .expect("a code is still good 599 s after issue");
    env.clock.advance_secs(1);
    assert_rejected!(
        env.oauth
            .exchange_code(&client, &late_code, REDIRECT, Some(&late_verifier))
            .await,
        Rejection::CodeExpired
    );

    // Concurrent redemption: exactly one of two simultaneous redemptions wins.
    for round in 0..8 {
        let (code, verifier) = env.code(&client, "alice", None).await;
        let first = spawn_exchange(
            env.oauth.clone(),
            client.clone(),
            code.clone(),
            verifier.clone(),
        );
        let second = spawn_exchange(
            env.oauth.clone(),
            client.clone(),
            code.clone(),
            verifier.clone(),
        );
        let (first, second) = (first.await.expect("join"), second.await.expect("join"));
        let winner = common::one_ok_other_rejected(first, second, Rejection::CodeReused);
        // Serially, the loser is a second redemption: it revoked what the winner got (rule 3).
        assert!(
            !is_active(&env, &client, access(&winner)).await,
            "round {round}"
        );
        assert!(
            !is_active(&env, &client, refresh_of(&winner)).await,
            "round {round}"
        );
        // And the code stays spent.
        assert_rejected!(
            env.oauth
                .exchange_code(&client, &code, REDIRECT, Some(&verifier))
                .await,
            Rejection::CodeReused
        );
    }
});

// Rule 3: a second redemption returns `invalid_grant` and revokes every token issued from that
// code.
both_backends!(rule03_code_reuse_revokes_issued_tokens, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let bystander = env.tokens(&client, "alice", None).await;

    // The tokens of the first redemption die with the second.
    let (code, verifier) = env.code(&client, "alice", None).await;
    let first = env
        .oauth
        .exchange_code(&client, &code, REDIRECT, Some(&verifier))
        .await
        .expect("first redemption");
    assert!(is_active(&env, &client, access(&first)).await);
    assert!(is_active(&env, &client, refresh_of(&first)).await);
    let reused = rejection(
        env.oauth
            .exchange_code(&client, &code, REDIRECT, Some(&verifier))
            .await,
    );
    assert_eq!(reused, Rejection::CodeReused);
    assert_eq!(reused.code(), "invalid_grant");
    assert!(!is_active(&env, &client, access(&first)).await);
    assert!(!is_active(&env, &client, refresh_of(&first)).await);
    assert_rejected!(
        env.oauth.refresh(&client, refresh_of(&first), None).await,
        Rejection::RefreshRevoked
    );
    assert_rejected!(
        env.registry
            .publish(access(&first), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::TokenInvalid
    );

    // Also the tokens issued later from that code, through a refresh.
    let (code, verifier) = env.code(&client, "alice", None).await;
    let gen0 = env
        .oauth
        .exchange_code(&client, &code, REDIRECT, Some(&verifier))
        .await
        .expect("redemption");
    let gen1 = env
        .oauth
        .refresh(&client, refresh_of(&gen0), None)
        .await
        .expect("refresh");
    assert_rejected!(
        env.oauth
            .exchange_code(&client, &code, REDIRECT, Some(&verifier))
            .await,
        Rejection::CodeReused
    );
    for token in [access(&gen0), access(&gen1), refresh_of(&gen1)] {
        assert!(!is_active(&env, &client, token).await);
    }
    assert_rejected!(
        env.oauth.refresh(&client, refresh_of(&gen1), None).await,
        Rejection::RefreshRevoked
    );

    // Tokens from other codes are untouched.
    assert!(is_active(&env, &client, access(&bystander)).await);
    assert!(is_active(&env, &client, refresh_of(&bystander)).await);
});

// Rule 4: the token request's client and redirect_uri must equal the code's.
both_backends!(rule04_code_bound_to_client_and_redirect_uri, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let other_public = env.public_client().await;
    let other_confidential = env.confidential_client(ALL_SCOPES).await;

    let (code, verifier) = env.code(&client, "alice", None).await;
    for other in [&other_public, &other_confidential] {
        let r = rejection(
            env.oauth
                .exchange_code(other, &code, REDIRECT, Some(&verifier))
                .await,
        );
        assert_eq!(r, Rejection::CodeClientMismatch);
        assert_eq!(r.code(), "invalid_grant");
    }
    for uri in [
        LOOPBACK,
        "https://app.example/callback/",
        "https://evil.example/callback",
    ] {
        let r = rejection(
            env.oauth
                .exchange_code(&client, &code, uri, Some(&verifier))
                .await,
        );
        assert_eq!(r, Rejection::CodeRedirectMismatch, "{uri}");
        assert_eq!(r.code(), "invalid_grant");
    }
    // A refused request wrote nothing: the code is still good for its own client and URI.
    env.oauth
        .exchange_code(&client, &code, REDIRECT, Some(&verifier))
        .await
        .expect("the rightful redemption");

    // A loopback code is bound to the exact URI (port included) it was issued for.
    let (req, verifier) = s256_request(&client, "http://127.0.0.1:5000/cb");
    let code = env.oauth.authorize(&req).await.expect("authorize loopback");
    for uri in [LOOPBACK, "http://127.0.0.1:5001/cb"] {
        assert_rejected!(
            env.oauth
                .exchange_code(&client, code.code.expose(), uri, Some(&verifier))
                .await,
            Rejection::CodeRedirectMismatch
        );
    }
    env.oauth
        .exchange_code(
            &client,
            code.code.expose(),
            "http://127.0.0.1:5000/cb",
            Some(&verifier),
        )
        .await
        .expect("the exact loopback URI");
});

// Rule 5: PKCE, S256 only; a missing or `plain` method is `invalid_request`; a wrong verifier is
// `invalid_grant`; a verifier with no challenge is rejected; public clients must use PKCE.
both_backends!(rule05_pkce, |env| {
    env.user("alice").await;
    let public = env.public_client().await;
    let confidential = env.confidential_client(ALL_SCOPES).await;
    let v = verifier();

    for client in [&public, &confidential] {
        for (challenge, method) in [
            (v.clone(), Some("plain")),
            (pkce::s256(&v), Some("plain")),
            (pkce::s256(&v), Some("s256")),
            (pkce::s256(&v), Some("S512")),
            (pkce::s256(&v), None),
            (v.clone(), None),
        ] {
            let r = rejection(
                env.oauth
                    .authorize(&request(client, REDIRECT, Some(challenge), method))
                    .await,
            );
            assert_eq!(r, Rejection::PkceMethodUnsupported, "method {method:?}");
            assert_eq!(r.code(), "invalid_request");
        }
    }

    // Public clients must use PKCE.
    let r = rejection(
        env.oauth
            .authorize(&request(&public, REDIRECT, None, None))
            .await,
    );
    assert_eq!(r, Rejection::PkceRequired);
    assert_eq!(r.code(), "invalid_request");

    // Wrong and missing verifiers; neither spends the code.
    let (code, verifier) = env.code(&public, "alice", None).await;
    let wrong = rejection(
        env.oauth
            .exchange_code(&public, &code, REDIRECT, Some(&common::verifier()))
            .await,
    );
    assert_eq!(wrong, Rejection::VerifierMismatch);
    assert_eq!(wrong.code(), "invalid_grant");
    let missing = rejection(
        env.oauth
            .exchange_code(&public, &code, REDIRECT, None)
            .await,
    );
    assert_eq!(missing, Rejection::VerifierMissing);
    assert_eq!(missing.code(), "invalid_grant");
    // The challenge itself is not a verifier.
    assert_rejected!(
        env.oauth
            .exchange_code(&public, &code, REDIRECT, Some(&pkce::s256(&verifier)))
            .await,
        Rejection::VerifierMismatch
    );
    env.oauth
        .exchange_code(&public, &code, REDIRECT, Some(&verifier))
        .await
        .expect("the right verifier");

    // A confidential client may skip PKCE, but then may not present a verifier.
    let code = env
        .oauth
        .authorize(&request(&confidential, REDIRECT, None, None))
        .await
        .expect("confidential client without PKCE");
    let r = rejection(
        env.oauth
            .exchange_code(
                &confidential,
                code.code.expose(),
                REDIRECT,
                Some(&common::verifier()),
            )
            .await,
    );
    assert_eq!(r, Rejection::VerifierWithoutChallenge);
    assert_eq!(r.code(), "invalid_grant");
    env.oauth
        .exchange_code(&confidential, code.code.expose(), REDIRECT, None)
        .await
        .expect("no challenge, no verifier");

    // A confidential client that did use PKCE must finish it.
    let (code, verifier) = env.code(&confidential, "alice", None).await;
    assert_rejected!(
        env.oauth
            .exchange_code(&confidential, &code, REDIRECT, None)
            .await,
        Rejection::VerifierMissing
    );
    env.oauth
        .exchange_code(&confidential, &code, REDIRECT, Some(&verifier))
        .await
        .expect("confidential client with PKCE");
});

// Rule 6: every refresh issues a new refresh token and kills the old one; scope never widens.
both_backends!(rule06_refresh_rotates_and_never_widens, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let granted = "publish-new publish-update yank";
    let gen0 = env.tokens(&client, "alice", Some(granted)).await;
    assert_eq!(gen0.scope, granted);

    let gen1 = env
        .oauth
        .refresh(&client, refresh_of(&gen0), None)
        .await
        .expect("refresh");
    assert_ne!(refresh_of(&gen1), refresh_of(&gen0));
    assert_ne!(access(&gen1), access(&gen0));
    assert_eq!(gen1.scope, granted);
    assert!(
        !is_active(&env, &client, refresh_of(&gen0)).await,
        "the rotated-out token is dead"
    );
    assert!(is_active(&env, &client, refresh_of(&gen1)).await);

    // Wider: refused, and the refresh token is not spent by the refusal.
    for wider in [
        "change-owners",
        "publish-new publish-update yank change-owners",
        "yank change-owners",
    ] {
        let r = rejection(
            env.oauth
                .refresh(&client, refresh_of(&gen1), Some(wider))
                .await,
        );
        assert_eq!(r, Rejection::ScopeWidened, "{wider}");
        assert_eq!(r.code(), "invalid_scope");
    }
    assert!(is_active(&env, &client, refresh_of(&gen1)).await);

    // Narrower: the access token carries the narrower scope; the grant keeps its own.
    let gen2 = env
        .oauth
        .refresh(&client, refresh_of(&gen1), Some("yank"))
        .await
        .expect("narrower");
    assert_eq!(gen2.scope, "yank");
    assert_eq!(
        introspect(&env, &client, access(&gen2))
            .await
            .scope
            .as_deref(),
        Some("yank")
    );
    assert_eq!(
        introspect(&env, &client, refresh_of(&gen2))
            .await
            .scope
            .as_deref(),
        Some(granted)
    );
    assert_rejected!(
        env.registry
            .publish(access(&gen2), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::InsufficientScope
    );
    // Narrowed by crate pattern.
    let gen3 = env
        .oauth
        .refresh(&client, refresh_of(&gen2), Some("publish-new:serde* yank"))
        .await
        .expect("narrower by crate");
    assert_eq!(
        introspect(&env, &client, access(&gen3))
            .await
            .scope
            .as_deref(),
        Some("publish-new:serde* yank")
    );
    env.registry
        .publish(access(&gen3), &common::publish("serde_json", "1.0.0"))
        .await
        .expect("publish within the narrowed scope");
    assert_rejected!(
        env.registry
            .publish(access(&gen3), &common::publish("tokio", "1.0.0"))
            .await,
        Rejection::InsufficientScope
    );
    // Narrowing one access token does not narrow the grant: no scope asked means all of it.
    let gen4 = env
        .oauth
        .refresh(&client, refresh_of(&gen3), None)
        .await
        .expect("refresh");
    assert_eq!(gen4.scope, granted);
    assert_rejected!(
        env.oauth
            .refresh(&client, refresh_of(&gen4), Some("change-owners"))
            .await,
        Rejection::ScopeWidened
    );

    // Every rotated-out token is dead: presenting one is a reuse.
    assert_rejected!(
        env.oauth.refresh(&client, refresh_of(&gen0), None).await,
        Rejection::RefreshReused
    );
});

// Rule 7: presenting a rotated-out refresh token revokes its whole family, the live one included.
both_backends!(rule07_refresh_reuse_revokes_family, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let other_family = env.tokens(&client, "alice", None).await;
    let gen0 = env.tokens(&client, "alice", None).await;
    let gen1 = env
        .oauth
        .refresh(&client, refresh_of(&gen0), None)
        .await
        .expect("refresh");
    let gen2 = env
        .oauth
        .refresh(&client, refresh_of(&gen1), None)
        .await
        .expect("refresh");
    for token in [access(&gen2), refresh_of(&gen2)] {
        assert!(is_active(&env, &client, token).await);
    }

    let r = rejection(env.oauth.refresh(&client, refresh_of(&gen0), None).await);
    assert_eq!(r, Rejection::RefreshReused);
    assert_eq!(r.code(), "invalid_grant");

    for token in [
        access(&gen0),
        access(&gen1),
        access(&gen2),
        refresh_of(&gen2),
    ] {
        assert_eq!(
            introspect(&env, &client, token).await,
            Introspection::default()
        );
    }
    assert_rejected!(
        env.oauth.refresh(&client, refresh_of(&gen2), None).await,
        Rejection::RefreshRevoked
    );
    assert_rejected!(
        env.oauth.refresh(&client, refresh_of(&gen1), None).await,
        Rejection::RefreshRevoked
    );
    assert_rejected!(
        env.registry
            .publish(access(&gen2), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::TokenInvalid
    );

    // Another family of the same client and user lives on.
    assert!(is_active(&env, &client, access(&other_family)).await);
    env.oauth
        .refresh(&client, refresh_of(&other_family), None)
        .await
        .expect("an unrelated family still refreshes");

    // Two concurrent refreshes with one token: one rotates it, the other is a reuse that
    // revokes the family, the winner's new tokens included (some serial order explains both).
    for round in 0..8 {
        let family = env.tokens(&client, "alice", None).await;
        let token = refresh_of(&family).to_owned();
        let first = spawn_refresh(env.oauth.clone(), client.clone(), token.clone());
        let second = spawn_refresh(env.oauth.clone(), client.clone(), token.clone());
        let (first, second) = (first.await.expect("join"), second.await.expect("join"));
        let winner = common::one_ok_other_rejected(first, second, Rejection::RefreshReused);
        assert!(
            !is_active(&env, &client, access(&winner)).await,
            "round {round}"
        );
        assert!(
            !is_active(&env, &client, refresh_of(&winner)).await,
            "round {round}"
        );
        assert_rejected!(
            env.oauth.refresh(&client, refresh_of(&winner), None).await,
            Rejection::RefreshRevoked
        );
    }
});

// Rule 8: client credentials issue no refresh token; public clients may not use that grant.
both_backends!(rule08_client_credentials, |env| {
    let confidential = env.confidential_client("publish-new yank").await;
    let public = env.public_client().await;

    let tokens = env
        .oauth
        .client_credentials(&confidential, None)
        .await
        .expect("client credentials");
    assert!(tokens.refresh_token.is_none());
    assert_eq!(tokens.scope, "publish-new yank");
    let seen = introspect(&env, &confidential, access(&tokens)).await;
    assert!(seen.active);
    assert_eq!(seen.token_type, Some("access_token"));
    assert_eq!(seen.username, None);
    // It acts for no user.
    assert_rejected!(
        env.registry
            .publish(access(&tokens), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::TokenHasNoUser
    );

    let narrower = env
        .oauth
        .client_credentials(&confidential, Some("yank"))
        .await
        .expect("narrower");
    assert_eq!(narrower.scope, "yank");
    assert!(narrower.refresh_token.is_none());

    // Through the token endpoint, too.
    let via_endpoint = env
        .oauth
        .token(&TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: confidential.client_id.clone(),
            client_secret: confidential.client_secret.clone(),
            ..TokenRequest::default()
        })
        .await
        .expect("token endpoint");
    assert!(via_endpoint.refresh_token.is_none());

    for beyond in ["change-owners", "publish-update", "yank publish-update"] {
        let r = rejection(
            env.oauth
                .client_credentials(&confidential, Some(beyond))
                .await,
        );
        assert_eq!(r, Rejection::ScopeNotAllowed, "{beyond}");
        assert_eq!(r.code(), "invalid_scope");
    }

    let r = rejection(env.oauth.client_credentials(&public, None).await);
    assert_eq!(r, Rejection::UnauthorizedClient);
    assert_eq!(r.code(), "unauthorized_client");

    assert_rejected!(
        env.oauth
            .client_credentials(&with_secret(&confidential, None), None)
            .await,
        Rejection::ClientAuthFailed
    );
});

// Rule 9: revocation answers success even for unknown tokens, never revokes another client's
// token, and revoking a refresh token kills its grant's access tokens.
both_backends!(rule09_revocation, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let other = env.confidential_client(ALL_SCOPES).await;
    let gen0 = env.tokens(&client, "alice", None).await;
    let bystander = env.tokens(&client, "alice", None).await;

    // Unknown tokens: success, nothing happens.
    let too_long = "x".repeat(1000);
    for unknown in ["", "lpa_unknown", "lpr_unknown", too_long.as_str()] {
        env.oauth
            .revoke(&client, unknown)
            .await
            .expect("unknown token revokes fine");
    }

    // Another client's tokens: success, but they stay alive.
    env.oauth
        .revoke(&other, access(&gen0))
        .await
        .expect("foreign access token");
    env.oauth
        .revoke(&other, refresh_of(&gen0))
        .await
        .expect("foreign refresh token");
    assert!(is_active(&env, &client, access(&gen0)).await);
    assert!(is_active(&env, &client, refresh_of(&gen0)).await);

    // Revocation requires client authentication.
    assert_rejected!(
        env.oauth
            .revoke(&with_secret(&other, Some("lps_wrong")), "lpa_unknown")
            .await,
        Rejection::ClientAuthFailed
    );

    // Revoking an access token: that token only; the refresh token still works.
    env.oauth
        .revoke(&client, access(&gen0))
        .await
        .expect("revoke access token");
    assert_eq!(
        introspect(&env, &client, access(&gen0)).await,
        Introspection::default()
    );
    assert_rejected!(
        env.registry
            .publish(access(&gen0), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::TokenInvalid
    );
    assert!(is_active(&env, &client, refresh_of(&gen0)).await);
    let gen1 = env
        .oauth
        .refresh(&client, refresh_of(&gen0), None)
        .await
        .expect("refresh after access revocation");
    let gen2 = env
        .oauth
        .refresh(&client, refresh_of(&gen1), None)
        .await
        .expect("refresh");
    env.oauth
        .revoke(&client, access(&gen0))
        .await
        .expect("revoking twice is fine");

    // Revoking a refresh token: the whole grant's access tokens die with it.
    env.oauth
        .revoke(&client, refresh_of(&gen2))
        .await
        .expect("revoke refresh token");
    for token in [access(&gen1), access(&gen2), refresh_of(&gen2)] {
        assert_eq!(
            introspect(&env, &client, token).await,
            Introspection::default()
        );
    }
    assert_rejected!(
        env.oauth.refresh(&client, refresh_of(&gen2), None).await,
        Rejection::RefreshRevoked
    );
    assert_rejected!(
        env.registry
            .publish(access(&gen2), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::TokenInvalid
    );
    env.oauth
        .revoke(&client, refresh_of(&gen2))
        .await
        .expect("revoking twice is fine");

    // Other grants are untouched.
    assert!(is_active(&env, &client, access(&bystander)).await);
    assert!(is_active(&env, &client, refresh_of(&bystander)).await);
});

// Rule 10: introspection requires client authentication; unknown, expired, revoked or foreign
// tokens are just `active: false`.
both_backends!(rule10_introspection, |env| {
    env.user("alice").await;
    let client = env.confidential_client(ALL_SCOPES).await;
    let foreign = env.confidential_client(ALL_SCOPES).await;
    let tokens = env.tokens(&client, "alice", Some("yank")).await;
    let revoked = env.tokens(&client, "alice", None).await;
    let secret = client.client_secret.clone().expect("confidential");

    // Authentication first, whatever the token.
    for token in [access(&tokens), "lpa_unknown"] {
        for bad in [
            with_secret(&client, Some("lps_wrong")),
            with_secret(&client, Some(&change_char(&secret, secret.len() - 1))),
            with_secret(&client, None),
            ClientAuth {
                client_id: "lpcl_nobody".into(),
                client_secret: Some(secret.clone()),
            },
        ] {
            let r = rejection(env.oauth.introspect(&bad, token).await);
            assert_eq!(r, Rejection::ClientAuthFailed);
            assert_eq!(r.code(), "invalid_client");
        }
    }

    let active = introspect(&env, &client, access(&tokens)).await;
    assert_eq!(
        active,
        Introspection {
            active: true,
            scope: Some("yank".into()),
            token_type: Some("access_token"),
            username: Some("alice".into()),
            exp: Some(ManualClock::START + 3600),
        }
    );
    let refresh = introspect(&env, &client, refresh_of(&tokens)).await;
    assert!(refresh.active);
    assert_eq!(refresh.token_type, Some("refresh_token"));
    assert_eq!(refresh.exp, Some(ManualClock::START + 2_592_000));

    let inactive = Introspection::default();
    assert!(!inactive.active);
    // Unknown.
    for unknown in ["", "lpa_unknown", "lpr_unknown", "lpc_unknown"] {
        assert_eq!(
            introspect(&env, &client, unknown).await,
            inactive,
            "{unknown:?}"
        );
    }
    // A code is not a token.
    let (code, _) = env.code(&client, "alice", None).await;
    assert_eq!(introspect(&env, &client, &code).await, inactive);
    // Foreign.
    assert_eq!(introspect(&env, &foreign, access(&tokens)).await, inactive);
    assert_eq!(
        introspect(&env, &foreign, refresh_of(&tokens)).await,
        inactive
    );
    // Revoked.
    env.oauth
        .revoke(&client, access(&revoked))
        .await
        .expect("revoke");
    assert_eq!(introspect(&env, &client, access(&revoked)).await, inactive);
    // Expired: `now >= expires_at`.
    env.clock.advance_secs(3599);
    assert!(introspect(&env, &client, access(&tokens)).await.active);
    env.clock.advance_secs(1);
    assert_eq!(introspect(&env, &client, access(&tokens)).await, inactive);
    // The refresh token of the same grant outlives the access token.
    assert!(introspect(&env, &client, refresh_of(&tokens)).await.active);
});

// Rule 11: tokens and client secrets are stored hashed, compared in constant time, never logged.
both_backends!(rule11_secrets_hashed_and_never_printed, |env| {
    env.user("alice").await;
    let confidential = env.confidential_client(ALL_SCOPES).await;
    let secret = confidential.client_secret.clone().expect("confidential");
    let (req, verifier) = s256_request(&confidential, REDIRECT);
    let code = env.oauth.authorize(&req).await.expect("authorize");
    let code_text = code.code.expose().to_owned();
    let tokens = env
        .oauth
        .exchange_code(&confidential, &code_text, REDIRECT, Some(&verifier))
        .await
        .expect("exchange");
    let cc = env
        .oauth
        .client_credentials(&confidential, None)
        .await
        .expect("client credentials");

    // Debug output carries no secret: not the whole text, nor its random part.
    let plaintexts = [
        access(&tokens).to_owned(),
        refresh_of(&tokens).to_owned(),
        access(&cc).to_owned(),
        code_text.clone(),
        secret.clone(),
    ];
    let printed = [
        format!("{:?}", tokens.access_token),
        format!("{:?}", tokens.refresh_token),
        format!("{tokens:?}"),
        format!("{cc:?}"),
        format!("{code:?}"),
        format!("{:?}", Secret::from(secret.clone())),
    ];
    for text in &plaintexts {
        let random_part = &text[4..];
        assert!(random_part.len() >= 40);
        for out in &printed {
            assert!(!out.contains(random_part), "{out} shows a secret");
        }
    }

    // Stored: only sha256 hex, never the text.
    let mut session = env.db.session("test.rule11").await.expect("session");
    let token_rows = session
        .fetch_all(sql("SELECT token_hash FROM oauth_tokens"))
        .await
        .expect("tokens");
    let code_rows = session
        .fetch_all(sql("SELECT code_hash FROM oauth_codes"))
        .await
        .expect("codes");
    let client_row = session
        .fetch_one(
            sql("SELECT secret_hash FROM oauth_clients WHERE client_id = $1")
                .bind(&confidential.client_id),
        )
        .await
        .expect("client");
    drop(session);
    let mut stored: Vec<String> = token_rows
        .iter()
        .map(|r| get(r, "token_hash").expect("token_hash"))
        .collect();
    stored.sort();
    let mut expected = vec![
        hash(access(&tokens)),
        hash(refresh_of(&tokens)),
        hash(access(&cc)),
    ];
    expected.sort();
    assert_eq!(stored, expected);
    let codes: Vec<String> = code_rows
        .iter()
        .map(|r| get(r, "code_hash").expect("code_hash"))
        .collect();
    assert_eq!(codes, vec![hash(&code_text)]);
    let secret_hash: Option<String> = get(&client_row, "secret_hash").expect("secret_hash");
    assert_eq!(secret_hash, Some(hash(&secret)));
    for column in stored.iter().chain(&codes).chain(secret_hash.iter()) {
        assert_eq!(column.len(), 64);
        assert!(
            column
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        for text in &plaintexts {
            assert!(!column.contains(&text[4..]));
        }
    }

    // Exact secret comparison: one character changed, cut or added fails everywhere.
    let near_misses = [
        change_char(&secret, secret.len() - 1),
        change_char(&secret, 4),
        change_char(&secret, 0),
        secret[..secret.len() - 1].to_owned(),
        format!("{secret}A"),
        secret.to_uppercase(),
        hash(&secret),
        String::new(),
    ];
    for bad in &near_misses {
        assert_ne!(bad, &secret);
        let client = with_secret(&confidential, Some(bad));
        assert_rejected!(
            env.oauth.client_credentials(&client, None).await,
            Rejection::ClientAuthFailed
        );
        assert_rejected!(
            env.oauth.introspect(&client, access(&cc)).await,
            Rejection::ClientAuthFailed
        );
        assert_rejected!(
            env.oauth.revoke(&client, access(&cc)).await,
            Rejection::ClientAuthFailed
        );
        assert_rejected!(
            env.oauth.refresh(&client, refresh_of(&tokens), None).await,
            Rejection::ClientAuthFailed
        );
    }
    // Nothing was revoked or rotated by the failed attempts.
    assert!(is_active(&env, &confidential, access(&cc)).await);
    assert!(is_active(&env, &confidential, refresh_of(&tokens)).await);
    // A token is not a credential for its hash, nor the other way round.
    assert_rejected!(
        env.registry
            .publish(&hash(access(&tokens)), &common::publish("serde", "1.0.0"))
            .await,
        Rejection::TokenInvalid
    );
    env.registry
        .publish(access(&tokens), &common::publish("serde", "1.0.0"))
        .await
        .expect("the token itself works");
});

// Rule 12: all time comes from the injected clock; expiry is `now >= expires_at` for codes,
// access tokens and refresh tokens alike.
both_backends!(rule12_expiry_boundary_is_now_ge_expires_at, |env| {
    assert_eq!((ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL), (3600, 2_592_000));
    env.user("alice").await;
    let client = env.public_client().await;

    // Codes: 599 s good, 600 s expired. Issue both at t0.
    let (req, early_verifier) = s256_request(&client, REDIRECT);
    let early = env.oauth.authorize(&req).await.expect("authorize");
    let (req, late_verifier) = s256_request(&client, REDIRECT);
    let late = env.oauth.authorize(&req).await.expect("authorize");
    assert_eq!(
        early.expires_at,
        ManualClock::START + 600,
        "codes expire by the injected clock"
    );
    env.clock.advance_secs(599);
    let tokens = env
        .oauth
        .exchange_code(
            &client,
            early.code.expose(),
            REDIRECT,
            Some(&early_verifier),
        )
        .await
        .expect("a code at 599 s");
    env.clock.advance_secs(1);
    let r = rejection(
        env.oauth
            .exchange_code(&client, late.code.expose(), REDIRECT, Some(&late_verifier))
            .await,
    );
    assert_eq!(r, Rejection::CodeExpired);
    assert_eq!(r.code(), "invalid_grant");

    // Access tokens (issued at t1 = START + 599), seen by the registry: 3599 s good, 3600 s not.
    let t1 = ManualClock::START + 599;
    let other = env.tokens(&client, "alice", None).await; // issued at START + 600
    assert_eq!(
        introspect(&env, &client, access(&tokens)).await.exp,
        Some(t1 + 3600)
    );
    assert_eq!(
        introspect(&env, &client, refresh_of(&tokens)).await.exp,
        Some(t1 + 2_592_000)
    );
    env.clock.advance_secs(3599 - 1);
    env.registry
        .publish(access(&tokens), &common::publish("serde", "1.0.0"))
        .await
        .expect("an access token at 3599 s");
    env.clock.advance_secs(1);
    assert_rejected!(
        env.registry
            .publish(access(&tokens), &common::publish("serde", "1.0.1"))
            .await,
        Rejection::TokenInvalid
    );
    assert!(!is_active(&env, &client, access(&tokens)).await);
    // One second younger, still good.
    env.registry
        .publish(access(&other), &common::publish("serde", "1.0.1"))
        .await
        .expect("the younger access token at 3599 s");

    // Refresh tokens: 30 days. `tokens` was issued at t1, `other` at t1 + 1.
    env.clock.advance_secs(2_592_000 - 3600 - 1); // now t1 + 2_591_999
    assert_eq!(env.clock.epoch(), t1 + 2_591_999);
    let renewed = env
        .oauth
        .refresh(&client, refresh_of(&tokens), None)
        .await
        .expect("a refresh token at 2_591_999 s");
    env.clock.advance_secs(1); // t1 + 2_592_000: `tokens`' refresh token would be expired now
    assert!(is_active(&env, &client, refresh_of(&renewed)).await);
    assert!(
        is_active(&env, &client, refresh_of(&other)).await,
        "other is one second younger"
    );
    env.clock.advance_secs(1); // `other`'s refresh token: exactly 2_592_000 s old
    assert_eq!(
        introspect(&env, &client, refresh_of(&other)).await,
        Introspection::default()
    );
    let r = rejection(env.oauth.refresh(&client, refresh_of(&other), None).await);
    assert_eq!(r, Rejection::RefreshExpired);
    assert_eq!(r.code(), "invalid_grant");
});

// The token endpoint's dispatcher: grant types and required parameters.
both_backends!(token_endpoint_dispatch, |env| {
    env.user("alice").await;
    let client = env.public_client().await;
    let base = TokenRequest {
        client_id: client.client_id.clone(),
        ..TokenRequest::default()
    };

    for grant_type in [
        "",
        "password",
        "implicit",
        "AUTHORIZATION_CODE",
        "authorization_code ",
    ] {
        let r = rejection(
            env.oauth
                .token(&TokenRequest {
                    grant_type: grant_type.into(),
                    ..base.clone()
                })
                .await,
        );
        assert_eq!(r, Rejection::UnsupportedGrantType, "{grant_type:?}");
        assert_eq!(r.code(), "unsupported_grant_type");
    }

    let (code, verifier) = env.code(&client, "alice", None).await;
    let by_code = TokenRequest {
        grant_type: "authorization_code".into(),
        code: Some(code),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(verifier),
        ..base.clone()
    };
    let r = rejection(
        env.oauth
            .token(&TokenRequest {
                code: None,
                ..by_code.clone()
            })
            .await,
    );
    assert_eq!(r, Rejection::MissingParameter { name: "code" });
    assert_eq!(r.code(), "invalid_request");
    assert_rejected!(
        env.oauth
            .token(&TokenRequest {
                redirect_uri: None,
                ..by_code.clone()
            })
            .await,
        Rejection::MissingParameter {
            name: "redirect_uri"
        }
    );
    assert_rejected!(
        env.oauth
            .token(&TokenRequest {
                code_verifier: None,
                ..by_code.clone()
            })
            .await,
        Rejection::VerifierMissing
    );
    env.oauth
        .token(&by_code)
        .await
        .expect("authorization_code grant");
    assert_rejected!(env.oauth.token(&by_code).await, Rejection::CodeReused);

    let tokens = env.tokens(&client, "alice", None).await;
    let by_refresh = TokenRequest {
        grant_type: "refresh_token".into(),
        refresh_token: Some(refresh_of(&tokens).to_owned()),
        ..base.clone()
    };
    assert_rejected!(
        env.oauth
            .token(&TokenRequest {
                refresh_token: None,
                ..by_refresh.clone()
            })
            .await,
        Rejection::MissingParameter {
            name: "refresh_token"
        }
    );
    // An access token is not a refresh token.
    assert_rejected!(
        env.oauth
            .token(&TokenRequest {
                refresh_token: Some(access(&tokens).to_owned()),
                ..by_refresh.clone()
            })
            .await,
        Rejection::RefreshUnknown
    );
    let rotated = env
        .oauth
        .token(&by_refresh)
        .await
        .expect("refresh_token grant");
    assert_ne!(refresh_of(&rotated), refresh_of(&tokens));

    assert_rejected!(
        env.oauth
            .token(&TokenRequest {
                grant_type: "client_credentials".into(),
                ..base.clone()
            })
            .await,
        Rejection::UnauthorizedClient
    );
});

both_backends!(rule09_revocation_racing_a_refresh_kills_the_family, |env| {
    // Found by the PostgreSQL state machine: a revocation whose statement started before a
    // concurrent refresh committed missed the refresh's new token. Whatever the interleaving,
    // once both are done no token of the family may be alive.
    env.user("alice").await;
    let client = env.public_client().await;
    for round in 0..20 {
        let tokens = env.tokens(&client, "alice", None).await;
        let refresh_token = refresh_of(&tokens).to_owned();
        let (refreshed, revoked) = tokio::join!(
            env.oauth.refresh(&client, &refresh_token, None),
            env.oauth.revoke(&client, &refresh_token),
        );
        revoked.expect("revocation succeeds");
        let mut family = vec![access(&tokens).to_owned(), refresh_token];
        match refreshed {
            Ok(new) => family.extend([access(&new).to_owned(), refresh_of(&new).to_owned()]),
            Err(e) => assert_eq!(rejection(Err::<(), _>(e)), Rejection::RefreshRevoked),
        }
        for token in &family {
            assert!(
                !is_active(&env, &client, token).await,
                "round {round}: a token of the revoked family is alive"
            );
        }
    }
});

both_backends!(
    redirect_uri_count_is_bounded_at_exactly_the_maximum,
    |env| {
        use leakproof::domain::redirect::MAX_REDIRECT_URIS;
        let registration = |count: usize| leakproof::oauth::ClientRegistration {
            name: "many redirects".into(),
            confidential: true,
            redirect_uris: (0..count)
                .map(|i| format!("https://app.example/cb/{i}"))
                .collect(),
            scope: ALL_SCOPES.into(),
        };
        env.oauth
            .register_client(&registration(MAX_REDIRECT_URIS))
            .await
            .expect("exactly the maximum is allowed");
        assert_rejected!(
            env.oauth
                .register_client(&registration(MAX_REDIRECT_URIS + 1))
                .await,
            Rejection::TooMany {
                what: "redirect URIs",
                max: MAX_REDIRECT_URIS
            }
        );
    }
);
