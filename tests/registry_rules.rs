//! Every registry rule of DESIGN.md ("The system under test"), checked against the real system
//! on SQLite and PostgreSQL. Each rejected write is followed by a read-back of the crate's state
//! (`versions` and `crate_info`), which must be exactly what it was before: nothing is ever
//! half-applied. Every read-back also checks the standing invariants: a crate has at least one
//! owner, and its download total is the sum of its versions' downloads.

mod common;
use common::one_ok_other_rejected;

use common::Env;
use leakproof::domain::Rejection;
use leakproof::oauth::{ClientAuth, TokenResponse};
use leakproof::registry::{CrateInfo, PublishRequest, Published, VersionRecord};
use std::fmt::Debug;

const ALL: &str = "publish-new publish-update yank change-owners";

/// An access token with `scope` for an existing user, through a fresh public client.
async fn token_for(env: &Env, login: &str, scope: &str) -> String {
    grant_for(env, login, scope)
        .await
        .1
        .access_token
        .expose()
        .to_owned()
}

/// The client and the whole token response, for tests that revoke or refresh.
async fn grant_for(env: &Env, login: &str, scope: &str) -> (ClientAuth, TokenResponse) {
    let client = env.public_client().await;
    let tokens = env.tokens(&client, login, Some(scope)).await;
    (client, tokens)
}

/// A publish request with an explicit checksum.
fn publish_with(name: &str, version: &str, checksum: &str) -> PublishRequest {
    PublishRequest {
        name: name.into(),
        version: version.into(),
        checksum: checksum.into(),
    }
}

/// The checksum `common::publish` uses for a name and version.
fn checksum(name: &str, version: &str) -> String {
    common::publish(name, version).checksum
}

/// Everything the registry shows about a crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    versions: Vec<VersionRecord>,
    info: CrateInfo,
}

/// Reads a crate back (`None`: no such crate, by both reads), checking the standing invariants.
async fn state(env: &Env, name: &str) -> Option<State> {
    let versions = env.registry.versions(name).await;
    let info = env.registry.crate_info(name).await;
    match (versions, info) {
        (Ok(versions), Ok(info)) => {
            assert!(
                !info.owners.is_empty(),
                "crate {name} has no owners: {info:?}"
            );
            assert!(
                !versions.is_empty(),
                "crate {name} has no versions: {info:?}"
            );
            let sum: i64 = versions.iter().map(|v| v.downloads).sum();
            assert_eq!(
                info.downloads, sum,
                "crate {name}: total downloads differ from the sum over versions {versions:?}"
            );
            Some(State { versions, info })
        }
        (Err(v), Err(i))
            if v.rejection() == Some(Rejection::UnknownCrate)
                && i.rejection() == Some(Rejection::UnknownCrate) =>
        {
            None
        }
        (v, i) => panic!("inconsistent reads of crate {name}: versions {v:?}, crate_info {i:?}"),
    }
}

/// The crate must exist; its state.
async fn existing(env: &Env, name: &str) -> State {
    state(env, name)
        .await
        .unwrap_or_else(|| panic!("crate {name} should exist"))
}

fn nums(state: &State) -> Vec<&str> {
    state.versions.iter().map(|v| v.num.as_str()).collect()
}

fn version<'a>(state: &'a State, num: &str) -> &'a VersionRecord {
    state
        .versions
        .iter()
        .find(|v| v.num == num)
        .unwrap_or_else(|| panic!("no version {num} in {state:?}"))
}

/// Runs a write that must be rejected with `$rejection`, and requires the state of crate
/// `$name` read back afterwards to equal the state read before it.
macro_rules! rejected_unchanged {
    ($env:expr, $name:expr, $call:expr, $rejection:expr) => {{
        let before = state(&$env, $name).await;
        assert_rejected!($call, $rejection);
        let after = state(&$env, $name).await;
        assert_eq!(
            after, before,
            "a write rejected with {:?} changed crate {}",
            $rejection, $name
        );
    }};
}

// ---------------------------------------------------------------------------------------------
// Users

both_backends!(
    users_create_and_reject_duplicate_logins_case_insensitively,
    |env| {
        let alice = env.registry.create_user("Alice").await.unwrap();
        assert_eq!(alice.login, "Alice");
        for twin in ["alice", "ALICE", "Alice", "aLiCe"] {
            assert_rejected!(env.registry.create_user(twin).await, Rejection::UserExists);
        }
        let bob = env.registry.create_user("bob").await.unwrap();
        assert_eq!(bob.login, "bob");
        assert_ne!(alice.id, bob.id);
        assert_rejected!(env.registry.create_user("BOB").await, Rejection::UserExists);

        // The user kept the spelling of its creation, and the lookup by login folds case.
        let token = token_for(&env, "alice", ALL).await;
        env.registry
            .publish(&token, &common::publish("shared", "1.0.0"))
            .await
            .unwrap();
        assert_eq!(existing(&env, "shared").await.info.owners, vec!["Alice"]);
        env.registry
            .add_owner(&token, "shared", "BOB")
            .await
            .unwrap();
        assert_eq!(
            existing(&env, "shared").await.info.owners,
            vec!["Alice", "bob"]
        );
    }
);

both_backends!(users_invalid_logins_are_rejected, |env| {
    let too_long = "a".repeat(40);
    for bad in [
        "", "-a", "a-", "a--b", "a_b", "a b", "a.b", "é", "al ice", &too_long,
    ] {
        assert_rejected!(env.registry.create_user(bad).await, Rejection::InvalidLogin);
    }
    // The longest valid login, and the valid neighbours of the rejected ones.
    for ok in ["a", "a-b", "A1", &"a".repeat(39)] {
        env.registry.create_user(ok).await.unwrap();
    }
});

// ---------------------------------------------------------------------------------------------
// Crate names

both_backends!(crate_names_invalid_are_rejected_everywhere, |env| {
    let token = env.user_token("alice", ALL).await;
    let too_long = "a".repeat(65);
    for bad in ["1abc", "a b", &too_long, "", "-a", "_a", "a.b", "é", "a/b"] {
        assert_rejected!(
            env.registry
                .publish(&token, &common::publish(bad, "1.0.0"))
                .await,
            Rejection::InvalidCrateName
        );
        assert_rejected!(
            env.registry.versions(bad).await,
            Rejection::InvalidCrateName
        );
        assert_rejected!(
            env.registry.crate_info(bad).await,
            Rejection::InvalidCrateName
        );
        assert_rejected!(
            env.registry.download(bad, "1.0.0").await,
            Rejection::InvalidCrateName
        );
        assert_rejected!(
            env.registry.set_yanked(&token, bad, "1.0.0", true).await,
            Rejection::InvalidCrateName
        );
        assert_rejected!(
            env.registry.add_owner(&token, bad, "alice").await,
            Rejection::InvalidCrateName
        );
        assert_rejected!(
            env.registry.remove_owner(&token, bad, "alice").await,
            Rejection::InvalidCrateName
        );
    }
    // Nothing was created by the rejected publishes: the trimmed valid names are unknown.
    assert_eq!(state(&env, "abc").await, None);
    assert_eq!(state(&env, "a").await, None);

    // 64 characters is the longest accepted name.
    let longest = "a".repeat(64);
    assert_eq!(
        env.registry
            .publish(&token, &common::publish(&longest, "1.0.0"))
            .await
            .unwrap(),
        Published::NewCrate
    );
    assert_eq!(nums(&existing(&env, &longest).await), vec!["1.0.0"]);
});

both_backends!(crate_names_fold_case_and_separators, |env| {
    let token = env.user_token("alice", ALL).await;
    assert_eq!(
        env.registry
            .publish(&token, &common::publish("foo-bar", "1.0.0"))
            .await
            .unwrap(),
        Published::NewCrate
    );
    rejected_unchanged!(
        env,
        "foo-bar",
        env.registry
            .publish(&token, &common::publish("Foo_Bar", "1.0.0"))
            .await,
        Rejection::VersionExists
    );
    assert_eq!(
        env.registry
            .publish(&token, &common::publish("Foo_Bar", "1.1.0"))
            .await
            .unwrap(),
        Published::NewVersion
    );
    let upper = existing(&env, "FOO_BAR").await;
    assert_eq!(nums(&upper), vec!["1.0.0", "1.1.0"]);
    assert_eq!(
        version(&upper, "1.1.0").checksum,
        checksum("Foo_Bar", "1.1.0")
    );
    // Every spelling reads the same crate, which keeps its first spelling.
    for spelling in ["foo-bar", "foo_bar", "FOO-BAR", "Foo_Bar"] {
        assert_eq!(existing(&env, spelling).await, upper, "{spelling}");
    }
    assert_eq!(upper.info.name, "foo-bar");
    assert_eq!(upper.info.owners, vec!["alice"]);

    // Another user's "new crate" under another spelling is the existing crate, not a new one.
    let bob = env.user_token("bob", ALL).await;
    rejected_unchanged!(
        env,
        "foo-bar",
        env.registry
            .publish(&bob, &common::publish("FOO_bar", "2.0.0"))
            .await,
        Rejection::NotOwner
    );
});

// ---------------------------------------------------------------------------------------------
// Versions

both_backends!(versions_invalid_semver_is_rejected, |env| {
    let token = env.user_token("alice", ALL).await;
    let too_long = format!("1.0.0-{}", "a".repeat(64));
    let bad = [
        "", "1", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0.0", "latest", "1.0.0 ", &too_long,
    ];
    // On a new crate: nothing is created.
    for v in bad {
        rejected_unchanged!(
            env,
            "fresh",
            env.registry
                .publish(&token, &common::publish("fresh", v))
                .await,
            Rejection::InvalidVersion
        );
    }
    assert_eq!(state(&env, "fresh").await, None);
    // On an existing crate: no version is added.
    env.registry
        .publish(&token, &common::publish("fresh", "1.0.0"))
        .await
        .unwrap();
    for v in bad {
        rejected_unchanged!(
            env,
            "fresh",
            env.registry
                .publish(&token, &common::publish("fresh", v))
                .await,
            Rejection::InvalidVersion
        );
        assert_rejected!(
            env.registry.download("fresh", v).await,
            Rejection::InvalidVersion
        );
        rejected_unchanged!(
            env,
            "fresh",
            env.registry.set_yanked(&token, "fresh", v, true).await,
            Rejection::InvalidVersion
        );
    }
    assert_eq!(nums(&existing(&env, "fresh").await), vec!["1.0.0"]);
});

both_backends!(
    versions_differing_only_in_build_metadata_are_one_release,
    |env| {
        let token = env.user_token("alice", ALL).await;
        env.registry
            .publish(&token, &common::publish("meta", "1.0.0"))
            .await
            .unwrap();
        for twin in ["1.0.0+build1", "1.0.0+build.2", "1.0.0"] {
            rejected_unchanged!(
                env,
                "meta",
                env.registry
                    .publish(&token, &common::publish("meta", twin))
                    .await,
                Rejection::VersionExists
            );
        }
        // Pre-releases are distinct releases; build metadata is kept in the displayed number.
        env.registry
            .publish(&token, &common::publish("meta", "1.0.0-alpha"))
            .await
            .unwrap();
        env.registry
            .publish(&token, &common::publish("meta", "2.0.0+build1"))
            .await
            .unwrap();
        rejected_unchanged!(
            env,
            "meta",
            env.registry
                .publish(&token, &common::publish("meta", "2.0.0"))
                .await,
            Rejection::VersionExists
        );
        let meta = existing(&env, "meta").await;
        assert_eq!(nums(&meta), vec!["1.0.0", "1.0.0-alpha", "2.0.0+build1"]);
        assert_eq!(
            env.registry.download("meta", "2.0.0+build1").await.unwrap(),
            checksum("meta", "2.0.0+build1")
        );
    }
);

both_backends!(versions_invalid_checksums_are_rejected, |env| {
    let token = env.user_token("alice", ALL).await;
    let good = checksum("sums", "1.0.0");
    let bad = [
        String::new(),
        "abc".into(),
        "A".repeat(64),
        good.to_uppercase(),
        "g".repeat(64),
        "a".repeat(63),
        "a".repeat(65),
        format!("{} ", &good[..63]),
    ];
    for sum in &bad {
        rejected_unchanged!(
            env,
            "sums",
            env.registry
                .publish(&token, &publish_with("sums", "1.0.0", sum))
                .await,
            Rejection::InvalidChecksum
        );
    }
    assert_eq!(state(&env, "sums").await, None);
    env.registry
        .publish(&token, &publish_with("sums", "1.0.0", &good))
        .await
        .unwrap();
    for sum in &bad {
        rejected_unchanged!(
            env,
            "sums",
            env.registry
                .publish(&token, &publish_with("sums", "1.0.1", sum))
                .await,
            Rejection::InvalidChecksum
        );
    }
    let sums = existing(&env, "sums").await;
    assert_eq!(
        sums.versions,
        vec![VersionRecord {
            num: "1.0.0".into(),
            checksum: good.clone(),
            yanked: false,
            downloads: 0,
        }]
    );
    assert_eq!(env.registry.download("sums", "1.0.0").await.unwrap(), good);
});

// ---------------------------------------------------------------------------------------------
// Publish scopes

both_backends!(publish_new_crate_needs_publish_new, |env| {
    let update_only = env
        .user_token("alice", "publish-update yank change-owners")
        .await;
    rejected_unchanged!(
        env,
        "newcrate",
        env.registry
            .publish(&update_only, &common::publish("newcrate", "1.0.0"))
            .await,
        Rejection::InsufficientScope
    );
    assert_eq!(state(&env, "newcrate").await, None);
    let new = token_for(&env, "alice", "publish-new").await;
    assert_eq!(
        env.registry
            .publish(&new, &common::publish("newcrate", "1.0.0"))
            .await
            .unwrap(),
        Published::NewCrate
    );
    // Now that the crate exists, the publish-update token may add versions.
    assert_eq!(
        env.registry
            .publish(&update_only, &common::publish("newcrate", "1.0.1"))
            .await
            .unwrap(),
        Published::NewVersion
    );
    assert_eq!(
        nums(&existing(&env, "newcrate").await),
        vec!["1.0.0", "1.0.1"]
    );
});

both_backends!(publish_new_version_needs_publish_update, |env| {
    let full = env.user_token("alice", ALL).await;
    env.registry
        .publish(&full, &common::publish("upd", "1.0.0"))
        .await
        .unwrap();
    let new_only = token_for(&env, "alice", "publish-new yank change-owners").await;
    rejected_unchanged!(
        env,
        "upd",
        env.registry
            .publish(&new_only, &common::publish("upd", "1.1.0"))
            .await,
        Rejection::InsufficientScope
    );
    // Even a version that exists: scope is checked before existence.
    rejected_unchanged!(
        env,
        "upd",
        env.registry
            .publish(&new_only, &common::publish("upd", "1.0.0"))
            .await,
        Rejection::InsufficientScope
    );
    assert_eq!(nums(&existing(&env, "upd").await), vec!["1.0.0"]);
});

both_backends!(publish_by_non_owner_is_refused, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("mine", "1.0.0"))
        .await
        .unwrap();
    let bob = env.user_token("bob", ALL).await;
    for v in ["1.0.1", "1.0.0", "2.0.0"] {
        rejected_unchanged!(
            env,
            "mine",
            env.registry
                .publish(&bob, &common::publish("mine", v))
                .await,
            Rejection::NotOwner
        );
    }
    assert_eq!(existing(&env, "mine").await.info.owners, vec!["alice"]);
});

both_backends!(publish_scopes_narrowed_to_crate_patterns, |env| {
    let serde_new = env.user_token("alice", "publish-new:serde*").await;
    assert_eq!(
        env.registry
            .publish(&serde_new, &common::publish("serde-json", "1.0.0"))
            .await
            .unwrap(),
        Published::NewCrate
    );
    // The pattern is compared on crate keys: `Serde_Yaml` is `serde-yaml`.
    env.registry
        .publish(&serde_new, &common::publish("Serde_Yaml", "1.0.0"))
        .await
        .unwrap();
    for outside in ["tokio", "ser", "my-serde"] {
        rejected_unchanged!(
            env,
            outside,
            env.registry
                .publish(&serde_new, &common::publish(outside, "1.0.0"))
                .await,
            Rejection::InsufficientScope
        );
        assert_eq!(state(&env, outside).await, None, "{outside}");
    }
    // publish-new:serde* does not reach updates, even of serde crates.
    rejected_unchanged!(
        env,
        "serde-json",
        env.registry
            .publish(&serde_new, &common::publish("serde-json", "1.0.1"))
            .await,
        Rejection::InsufficientScope
    );

    // Narrowed publish-update: an exact name, given with `_`, reaches only that crate.
    let full = token_for(&env, "alice", ALL).await;
    env.registry
        .publish(&full, &common::publish("tokio", "1.0.0"))
        .await
        .unwrap();
    let exact = token_for(&env, "alice", "publish-update:serde_json").await;
    env.registry
        .publish(&exact, &common::publish("serde-json", "1.0.1"))
        .await
        .unwrap();
    for other in ["serde-yaml", "tokio"] {
        rejected_unchanged!(
            env,
            other,
            env.registry
                .publish(&exact, &common::publish(other, "9.0.0"))
                .await,
            Rejection::InsufficientScope
        );
    }
    assert_eq!(
        nums(&existing(&env, "serde-json").await),
        vec!["1.0.0", "1.0.1"]
    );
});

// ---------------------------------------------------------------------------------------------
// Tokens

both_backends!(tokens_garbage_is_invalid, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("tok", "1.0.0"))
        .await
        .unwrap();
    env.user("bob").await;
    let near_miss = format!("{}x", &alice[..alice.len() - 1]);
    let huge = "lpa_".repeat(100);
    for garbage in ["", "garbage", "lpa_", near_miss.as_str(), huge.as_str()] {
        for name in ["tok", "brand-new"] {
            rejected_unchanged!(
                env,
                name,
                env.registry
                    .publish(garbage, &common::publish(name, "2.0.0"))
                    .await,
                Rejection::TokenInvalid
            );
        }
        rejected_unchanged!(
            env,
            "tok",
            env.registry.set_yanked(garbage, "tok", "1.0.0", true).await,
            Rejection::TokenInvalid
        );
        rejected_unchanged!(
            env,
            "tok",
            env.registry.add_owner(garbage, "tok", "bob").await,
            Rejection::TokenInvalid
        );
        rejected_unchanged!(
            env,
            "tok",
            env.registry.remove_owner(garbage, "tok", "alice").await,
            Rejection::TokenInvalid
        );
    }
});

both_backends!(tokens_expired_access_token_is_invalid, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("exp", "1.0.0"))
        .await
        .unwrap();
    // One second before expiry the token still works…
    env.clock.advance_secs(3599);
    env.registry
        .publish(&alice, &common::publish("exp", "1.0.1"))
        .await
        .unwrap();
    // …and at `now == expires_at` it is expired.
    env.clock.advance_secs(1);
    rejected_unchanged!(
        env,
        "exp",
        env.registry
            .publish(&alice, &common::publish("exp", "1.0.2"))
            .await,
        Rejection::TokenInvalid
    );
    rejected_unchanged!(
        env,
        "exp2",
        env.registry
            .publish(&alice, &common::publish("exp2", "1.0.0"))
            .await,
        Rejection::TokenInvalid
    );
    rejected_unchanged!(
        env,
        "exp",
        env.registry.set_yanked(&alice, "exp", "1.0.0", true).await,
        Rejection::TokenInvalid
    );
    env.user("bob").await;
    rejected_unchanged!(
        env,
        "exp",
        env.registry.add_owner(&alice, "exp", "bob").await,
        Rejection::TokenInvalid
    );
    env.clock.advance_secs(3600);
    rejected_unchanged!(
        env,
        "exp",
        env.registry
            .publish(&alice, &common::publish("exp", "1.0.2"))
            .await,
        Rejection::TokenInvalid
    );
    assert_eq!(nums(&existing(&env, "exp").await), vec!["1.0.0", "1.0.1"]);
});

both_backends!(tokens_revoked_access_token_is_invalid, |env| {
    env.user("alice").await;
    let (client, tokens) = grant_for(&env, "alice", ALL).await;
    let access = tokens.access_token.expose().to_owned();
    let other = token_for(&env, "alice", ALL).await;
    env.registry
        .publish(&access, &common::publish("rev", "1.0.0"))
        .await
        .unwrap();
    env.oauth.revoke(&client, &access).await.unwrap();
    rejected_unchanged!(
        env,
        "rev",
        env.registry
            .publish(&access, &common::publish("rev", "1.0.1"))
            .await,
        Rejection::TokenInvalid
    );
    rejected_unchanged!(
        env,
        "rev",
        env.registry.set_yanked(&access, "rev", "1.0.0", true).await,
        Rejection::TokenInvalid
    );
    // Revoking one access token leaves the user's other tokens alone.
    env.registry
        .publish(&other, &common::publish("rev", "1.0.1"))
        .await
        .unwrap();

    // Revoking the refresh token kills the access token of its grant too.
    let (client, tokens) = grant_for(&env, "alice", ALL).await;
    let access = tokens.access_token.expose().to_owned();
    let refresh = tokens.refresh_token.expect("a refresh token");
    env.oauth.revoke(&client, refresh.expose()).await.unwrap();
    rejected_unchanged!(
        env,
        "rev",
        env.registry
            .publish(&access, &common::publish("rev", "1.0.2"))
            .await,
        Rejection::TokenInvalid
    );
    assert_eq!(nums(&existing(&env, "rev").await), vec!["1.0.0", "1.0.1"]);
});

both_backends!(tokens_client_credentials_act_for_no_user, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("cc", "1.0.0"))
        .await
        .unwrap();
    let client = env.confidential_client(ALL).await;
    let tokens = env.oauth.client_credentials(&client, None).await.unwrap();
    assert!(tokens.refresh_token.is_none());
    let machine = tokens.access_token.expose().to_owned();
    for name in ["cc", "cc-new"] {
        rejected_unchanged!(
            env,
            name,
            env.registry
                .publish(&machine, &common::publish(name, "2.0.0"))
                .await,
            Rejection::TokenHasNoUser
        );
    }
    rejected_unchanged!(
        env,
        "cc",
        env.registry.set_yanked(&machine, "cc", "1.0.0", true).await,
        Rejection::TokenHasNoUser
    );
    rejected_unchanged!(
        env,
        "cc",
        env.registry.add_owner(&machine, "cc", "alice").await,
        Rejection::TokenHasNoUser
    );
    rejected_unchanged!(
        env,
        "cc",
        env.registry.remove_owner(&machine, "cc", "alice").await,
        Rejection::TokenHasNoUser
    );

    // The brief's exact case: a client allowed only `publish-new`.
    let narrow = env.confidential_client("publish-new").await;
    let tokens = env.oauth.client_credentials(&narrow, None).await.unwrap();
    rejected_unchanged!(
        env,
        "cc-narrow",
        env.registry
            .publish(
                tokens.access_token.expose(),
                &common::publish("cc-narrow", "1.0.0")
            )
            .await,
        Rejection::TokenHasNoUser
    );
});

both_backends!(tokens_refresh_token_is_not_a_bearer, |env| {
    env.user("alice").await;
    let (_client, tokens) = grant_for(&env, "alice", ALL).await;
    let access = tokens.access_token.expose().to_owned();
    let refresh = tokens.refresh_token.expect("a refresh token");
    env.registry
        .publish(&access, &common::publish("rt", "1.0.0"))
        .await
        .unwrap();
    for name in ["rt", "rt-new"] {
        rejected_unchanged!(
            env,
            name,
            env.registry
                .publish(refresh.expose(), &common::publish(name, "2.0.0"))
                .await,
            Rejection::TokenInvalid
        );
    }
    rejected_unchanged!(
        env,
        "rt",
        env.registry
            .set_yanked(refresh.expose(), "rt", "1.0.0", true)
            .await,
        Rejection::TokenInvalid
    );
    env.user("bob").await;
    rejected_unchanged!(
        env,
        "rt",
        env.registry.add_owner(refresh.expose(), "rt", "bob").await,
        Rejection::TokenInvalid
    );
});

// ---------------------------------------------------------------------------------------------
// Yank and unyank

both_backends!(yank_needs_yank_scope, |env| {
    let full = env.user_token("alice", ALL).await;
    env.registry
        .publish(&full, &common::publish("yk", "1.0.0"))
        .await
        .unwrap();
    let no_yank = token_for(&env, "alice", "publish-new publish-update change-owners").await;
    let elsewhere = token_for(&env, "alice", "yank:other yank:yk-*").await;
    for token in [&no_yank, &elsewhere] {
        for yanked in [true, false] {
            rejected_unchanged!(
                env,
                "yk",
                env.registry.set_yanked(token, "yk", "1.0.0", yanked).await,
                Rejection::InsufficientScope
            );
        }
    }
    // A yank token narrowed to this crate works.
    let narrowed = token_for(&env, "alice", "yank:YK").await;
    env.registry
        .set_yanked(&narrowed, "yk", "1.0.0", true)
        .await
        .unwrap();
    assert!(version(&existing(&env, "yk").await, "1.0.0").yanked);
});

both_backends!(yank_is_for_owners_only, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("own", "1.0.0"))
        .await
        .unwrap();
    let bob = env.user_token("bob", ALL).await;
    rejected_unchanged!(
        env,
        "own",
        env.registry.set_yanked(&bob, "own", "1.0.0", true).await,
        Rejection::NotOwner
    );
    env.registry
        .set_yanked(&alice, "own", "1.0.0", true)
        .await
        .unwrap();
    rejected_unchanged!(
        env,
        "own",
        env.registry.set_yanked(&bob, "own", "1.0.0", false).await,
        Rejection::NotOwner
    );
    assert!(version(&existing(&env, "own").await, "1.0.0").yanked);
});

both_backends!(yank_unknown_crate_and_version, |env| {
    let alice = env.user_token("alice", ALL).await;
    rejected_unchanged!(
        env,
        "ghost",
        env.registry
            .set_yanked(&alice, "ghost", "1.0.0", true)
            .await,
        Rejection::UnknownCrate
    );
    env.registry
        .publish(&alice, &common::publish("real", "1.0.0"))
        .await
        .unwrap();
    for missing in ["1.0.1", "0.1.0", "1.0.0-alpha"] {
        for yanked in [true, false] {
            rejected_unchanged!(
                env,
                "real",
                env.registry
                    .set_yanked(&alice, "real", missing, yanked)
                    .await,
                Rejection::UnknownVersion
            );
        }
    }
});

both_backends!(yank_and_unyank_are_idempotent_and_visible, |env| {
    let alice = env.user_token("alice", ALL).await;
    for v in ["1.0.0", "1.1.0"] {
        env.registry
            .publish(&alice, &common::publish("idem", v))
            .await
            .unwrap();
    }
    // Unyanking a version that was never yanked is a no-op success.
    env.registry
        .set_yanked(&alice, "idem", "1.0.0", false)
        .await
        .unwrap();
    let fresh = existing(&env, "idem").await;
    assert!(fresh.versions.iter().all(|v| !v.yanked));
    for _ in 0..2 {
        env.registry
            .set_yanked(&alice, "idem", "1.0.0", true)
            .await
            .unwrap();
        let now = existing(&env, "idem").await;
        assert!(version(&now, "1.0.0").yanked);
        assert!(
            !version(&now, "1.1.0").yanked,
            "only the named version is yanked"
        );
    }
    // Build metadata names the same release; another spelling of the crate is the same crate.
    env.registry
        .set_yanked(&alice, "IDEM", "1.1.0+anything", true)
        .await
        .unwrap();
    assert!(
        existing(&env, "idem")
            .await
            .versions
            .iter()
            .all(|v| v.yanked)
    );
    for _ in 0..2 {
        for v in ["1.0.0", "1.1.0"] {
            env.registry
                .set_yanked(&alice, "idem", v, false)
                .await
                .unwrap();
        }
    }
    // Back to where it started: yanking changes nothing but the flag.
    assert_eq!(existing(&env, "idem").await, fresh);
});

both_backends!(yanked_versions_stay_downloadable, |env| {
    let alice = env.user_token("alice", ALL).await;
    for v in ["1.0.0", "1.1.0"] {
        env.registry
            .publish(&alice, &common::publish("dl", v))
            .await
            .unwrap();
    }
    env.registry
        .set_yanked(&alice, "dl", "1.0.0", true)
        .await
        .unwrap();
    assert_eq!(
        env.registry.download("dl", "1.0.0").await.unwrap(),
        checksum("dl", "1.0.0")
    );
    let after_one = existing(&env, "dl").await;
    assert_eq!(version(&after_one, "1.0.0").downloads, 1);
    assert!(version(&after_one, "1.0.0").yanked);
    assert_eq!(version(&after_one, "1.1.0").downloads, 0);
    assert_eq!(after_one.info.downloads, 1);

    assert_eq!(
        env.registry.download("DL", "1.0.0").await.unwrap(),
        checksum("dl", "1.0.0")
    );
    assert_eq!(
        env.registry.download("dl", "1.1.0").await.unwrap(),
        checksum("dl", "1.1.0")
    );
    let after_three = existing(&env, "dl").await;
    assert_eq!(version(&after_three, "1.0.0").downloads, 2);
    assert_eq!(version(&after_three, "1.1.0").downloads, 1);
    assert_eq!(after_three.info.downloads, 3);

    // Unyanking keeps the counts.
    env.registry
        .set_yanked(&alice, "dl", "1.0.0", false)
        .await
        .unwrap();
    let unyanked = existing(&env, "dl").await;
    assert!(!version(&unyanked, "1.0.0").yanked);
    assert_eq!(version(&unyanked, "1.0.0").downloads, 2);
    assert_eq!(unyanked.info.downloads, 3);
});

// ---------------------------------------------------------------------------------------------
// Owners

both_backends!(add_owner_needs_change_owners_scope, |env| {
    let full = env.user_token("alice", ALL).await;
    env.registry
        .publish(&full, &common::publish("co", "1.0.0"))
        .await
        .unwrap();
    env.user("bob").await;
    let no_owners = token_for(&env, "alice", "publish-new publish-update yank").await;
    let elsewhere = token_for(&env, "alice", "change-owners:other").await;
    for token in [&no_owners, &elsewhere] {
        rejected_unchanged!(
            env,
            "co",
            env.registry.add_owner(token, "co", "bob").await,
            Rejection::InsufficientScope
        );
    }
    env.registry.add_owner(&full, "co", "bob").await.unwrap();
    for token in [&no_owners, &elsewhere] {
        rejected_unchanged!(
            env,
            "co",
            env.registry.remove_owner(token, "co", "bob").await,
            Rejection::InsufficientScope
        );
    }
    let narrowed = token_for(&env, "alice", "change-owners:co").await;
    env.registry
        .remove_owner(&narrowed, "co", "bob")
        .await
        .unwrap();
    assert_eq!(existing(&env, "co").await.info.owners, vec!["alice"]);
});

both_backends!(add_owner_unknown_user_already_owner_and_non_owner, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("ao", "1.0.0"))
        .await
        .unwrap();
    rejected_unchanged!(
        env,
        "ao",
        env.registry.add_owner(&alice, "ao", "nobody").await,
        Rejection::UnknownUser
    );
    rejected_unchanged!(
        env,
        "ao",
        env.registry.add_owner(&alice, "ao", "not_a_login").await,
        Rejection::InvalidLogin
    );
    rejected_unchanged!(
        env,
        "ghost",
        env.registry.add_owner(&alice, "ghost", "alice").await,
        Rejection::UnknownCrate
    );
    for me in ["alice", "ALICE"] {
        rejected_unchanged!(
            env,
            "ao",
            env.registry.add_owner(&alice, "ao", me).await,
            Rejection::AlreadyOwner
        );
    }
    let bob = env.user_token("bob", ALL).await;
    // A non-owner cannot make himself (or anyone) an owner.
    rejected_unchanged!(
        env,
        "ao",
        env.registry.add_owner(&bob, "ao", "bob").await,
        Rejection::NotOwner
    );
    env.registry.add_owner(&alice, "ao", "bob").await.unwrap();
    for twin in ["bob", "Bob"] {
        rejected_unchanged!(
            env,
            "ao",
            env.registry.add_owner(&alice, "ao", twin).await,
            Rejection::AlreadyOwner
        );
    }
    assert_eq!(existing(&env, "ao").await.info.owners, vec!["alice", "bob"]);
});

both_backends!(added_owner_may_publish_yank_and_change_owners, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("team", "1.0.0"))
        .await
        .unwrap();
    let bob = env.user_token("bob", ALL).await;
    rejected_unchanged!(
        env,
        "team",
        env.registry
            .publish(&bob, &common::publish("team", "1.1.0"))
            .await,
        Rejection::NotOwner
    );
    env.registry.add_owner(&alice, "team", "bob").await.unwrap();
    assert_eq!(
        env.registry
            .publish(&bob, &common::publish("team", "1.1.0"))
            .await
            .unwrap(),
        Published::NewVersion
    );
    env.registry
        .set_yanked(&bob, "team", "1.0.0", true)
        .await
        .unwrap();
    env.user("carol").await;
    env.registry.add_owner(&bob, "team", "carol").await.unwrap();
    let team = existing(&env, "team").await;
    assert_eq!(team.info.owners, vec!["alice", "bob", "carol"]);
    assert_eq!(nums(&team), vec!["1.0.0", "1.1.0"]);
    assert!(version(&team, "1.0.0").yanked);
});

both_backends!(remove_owner_rules, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("ro", "1.0.0"))
        .await
        .unwrap();
    env.user("bob").await;
    rejected_unchanged!(
        env,
        "ro",
        env.registry.remove_owner(&alice, "ro", "bob").await,
        Rejection::NotAnOwner
    );
    rejected_unchanged!(
        env,
        "ro",
        env.registry.remove_owner(&alice, "ro", "nobody").await,
        Rejection::UnknownUser
    );
    rejected_unchanged!(
        env,
        "ghost",
        env.registry.remove_owner(&alice, "ghost", "alice").await,
        Rejection::UnknownCrate
    );
    // The last owner cannot be removed, however it is spelled.
    for me in ["alice", "Alice"] {
        rejected_unchanged!(
            env,
            "ro",
            env.registry.remove_owner(&alice, "ro", me).await,
            Rejection::LastOwner
        );
    }
    assert_eq!(existing(&env, "ro").await.info.owners, vec!["alice"]);

    // With two owners, one goes; then the other is the last again.
    env.registry.add_owner(&alice, "ro", "bob").await.unwrap();
    env.registry
        .remove_owner(&alice, "ro", "BOB")
        .await
        .unwrap();
    assert_eq!(existing(&env, "ro").await.info.owners, vec!["alice"]);
    rejected_unchanged!(
        env,
        "ro",
        env.registry.remove_owner(&alice, "ro", "bob").await,
        Rejection::NotAnOwner
    );
    rejected_unchanged!(
        env,
        "ro",
        env.registry.remove_owner(&alice, "ro", "alice").await,
        Rejection::LastOwner
    );

    // An owner may remove themselves while another owner remains.
    env.registry.add_owner(&alice, "ro", "bob").await.unwrap();
    env.registry
        .remove_owner(&alice, "ro", "alice")
        .await
        .unwrap();
    assert_eq!(existing(&env, "ro").await.info.owners, vec!["bob"]);
});

both_backends!(removed_owner_loses_every_right, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("coup", "1.0.0"))
        .await
        .unwrap();
    let bob = env.user_token("bob", ALL).await;
    env.user("carol").await;
    env.registry.add_owner(&alice, "coup", "bob").await.unwrap();
    env.registry
        .remove_owner(&bob, "coup", "alice")
        .await
        .unwrap();
    assert_eq!(existing(&env, "coup").await.info.owners, vec!["bob"]);

    rejected_unchanged!(
        env,
        "coup",
        env.registry
            .publish(&alice, &common::publish("coup", "1.1.0"))
            .await,
        Rejection::NotOwner
    );
    rejected_unchanged!(
        env,
        "coup",
        env.registry.set_yanked(&alice, "coup", "1.0.0", true).await,
        Rejection::NotOwner
    );
    rejected_unchanged!(
        env,
        "coup",
        env.registry.add_owner(&alice, "coup", "carol").await,
        Rejection::NotOwner
    );
    rejected_unchanged!(
        env,
        "coup",
        env.registry.add_owner(&alice, "coup", "alice").await,
        Rejection::NotOwner
    );
    rejected_unchanged!(
        env,
        "coup",
        env.registry.remove_owner(&alice, "coup", "bob").await,
        Rejection::NotOwner
    );
    // The remaining owner carries on.
    env.registry
        .publish(&bob, &common::publish("coup", "1.1.0"))
        .await
        .unwrap();
    assert_eq!(nums(&existing(&env, "coup").await), vec!["1.0.0", "1.1.0"]);
});

// ---------------------------------------------------------------------------------------------
// Downloads

both_backends!(download_unknown_crate_and_version, |env| {
    assert_rejected!(
        env.registry.download("ghost", "1.0.0").await,
        Rejection::UnknownCrate
    );
    assert_eq!(state(&env, "ghost").await, None);
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("known", "1.0.0"))
        .await
        .unwrap();
    env.registry.download("known", "1.0.0").await.unwrap();
    for missing in ["1.0.1", "0.0.1", "1.0.0-rc.1"] {
        rejected_unchanged!(
            env,
            "known",
            env.registry.download("known", missing).await,
            Rejection::UnknownVersion
        );
    }
    let known = existing(&env, "known").await;
    assert_eq!(known.info.downloads, 1);
    assert_eq!(version(&known, "1.0.0").downloads, 1);
});

both_backends!(concurrent_downloads_are_all_counted, |env| {
    let alice = env.user_token("alice", ALL).await;
    for v in ["1.0.0", "2.0.0"] {
        env.registry
            .publish(&alice, &common::publish("busy", v))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let registry = env.registry.clone();
        let v = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
        tasks.spawn(async move { registry.download("busy", v).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("download task").expect("download");
    }
    let busy = existing(&env, "busy").await;
    assert_eq!(version(&busy, "1.0.0").downloads, 10);
    assert_eq!(version(&busy, "2.0.0").downloads, 10);
    assert_eq!(busy.info.downloads, 20);
});

// Downloads and yanks of one version at once: every write to a crate takes the crate's row
// before a version's, so none waits on another in a cycle. A download that took the version's
// row first met a yank holding the crate's, and PostgreSQL aborted one of them with "deadlock
// detected" (found by the soak).
both_backends!(concurrent_downloads_and_yanks_never_deadlock, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.registry
        .publish(&alice, &common::publish("contended", "1.0.0"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let registry = env.registry.clone();
        let token = alice.clone();
        tasks.spawn(async move {
            for round in 0..50 {
                if i % 2 == 0 {
                    registry.download("contended", "1.0.0").await?;
                } else {
                    registry
                        .set_yanked(&token, "contended", "1.0.0", round % 2 == 0)
                        .await?;
                }
            }
            Ok::<_, leakproof::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("no download or yank fails");
    }
    let contended = existing(&env, "contended").await;
    assert_eq!(version(&contended, "1.0.0").downloads, 100);
    assert_eq!(contended.info.downloads, 100);
});

// ---------------------------------------------------------------------------------------------
// Concurrency

/// Rounds per concurrency test: different interleavings, each on a fresh crate.
const ROUNDS: usize = 8;

both_backends!(concurrent_publish_of_same_new_version_by_one_owner, |env| {
    let alice = env.user_token("alice", ALL).await;
    for round in 0..ROUNDS {
        let name = format!("race-{round}");
        let request = common::publish(&name, "1.0.0");
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.publish(&alice, &request),
            other.publish(&alice, &request)
        );
        let won = one_ok_other_rejected(a, b, Rejection::VersionExists);
        assert_eq!(won, Published::NewCrate);
        let raced = existing(&env, &name).await;
        assert_eq!(nums(&raced), vec!["1.0.0"]);
        assert_eq!(raced.info.owners, vec!["alice"]);
    }
});

both_backends!(concurrent_publish_of_new_crate_with_two_versions, |env| {
    let alice = env.user_token("alice", ALL).await;
    for round in 0..ROUNDS {
        let name = format!("pair-{round}");
        let first = common::publish(&name, "1.0.0");
        let second = common::publish(&name, "2.0.0");
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.publish(&alice, &first),
            other.publish(&alice, &second)
        );
        let mut outcomes = vec![a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|p| *p == Published::NewVersion);
        assert_eq!(outcomes, vec![Published::NewCrate, Published::NewVersion]);
        let pair = existing(&env, &name).await;
        let mut got = nums(&pair);
        got.sort_unstable();
        assert_eq!(got, vec!["1.0.0", "2.0.0"]);
        assert_eq!(pair.info.owners, vec!["alice"]);
    }
});

both_backends!(concurrent_publish_of_same_new_crate_by_two_users, |env| {
    let alice = env.user_token("alice", ALL).await;
    let bob = env.user_token("bob", ALL).await;
    for round in 0..ROUNDS {
        let name = format!("claim-{round}");
        let by_alice = common::publish(&name, "1.0.0");
        let by_bob = common::publish(&name.to_uppercase().replace('-', "_"), "1.0.0");
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.publish(&alice, &by_alice),
            other.publish(&bob, &by_bob)
        );
        let alice_won = a.is_ok();
        let won = one_ok_other_rejected(a, b, Rejection::NotOwner);
        assert_eq!(won, Published::NewCrate);
        let claimed = existing(&env, &name).await;
        let winner = if alice_won { "alice" } else { "bob" };
        assert_eq!(claimed.info.owners, vec![winner]);
        assert_eq!(nums(&claimed), vec!["1.0.0"]);
    }
});

both_backends!(concurrent_self_removal_of_both_owners_keeps_one, |env| {
    let alice = env.user_token("alice", ALL).await;
    let bob = env.user_token("bob", ALL).await;
    for round in 0..ROUNDS {
        let name = format!("duo-{round}");
        env.registry
            .publish(&alice, &common::publish(&name, "1.0.0"))
            .await
            .unwrap();
        env.registry.add_owner(&alice, &name, "bob").await.unwrap();
        // Each owner removes themselves: whichever goes second is the last owner.
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.remove_owner(&alice, &name, "alice"),
            other.remove_owner(&bob, &name, "bob")
        );
        let alice_left = a.is_ok();
        one_ok_other_rejected(a, b, Rejection::LastOwner);
        let kept = if alice_left { "bob" } else { "alice" };
        assert_eq!(existing(&env, &name).await.info.owners, vec![kept]);
    }
});

both_backends!(concurrent_cross_removal_of_both_owners_keeps_one, |env| {
    let alice = env.user_token("alice", ALL).await;
    let bob = env.user_token("bob", ALL).await;
    for round in 0..ROUNDS {
        let name = format!("feud-{round}");
        env.registry
            .publish(&alice, &common::publish(&name, "1.0.0"))
            .await
            .unwrap();
        env.registry.add_owner(&alice, &name, "bob").await.unwrap();
        // Each owner removes the other: the second is no longer an owner when it runs.
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.remove_owner(&alice, &name, "bob"),
            other.remove_owner(&bob, &name, "alice")
        );
        let alice_won = a.is_ok();
        one_ok_other_rejected(a, b, Rejection::NotOwner);
        let kept = if alice_won { "alice" } else { "bob" };
        assert_eq!(existing(&env, &name).await.info.owners, vec![kept]);
    }
});

both_backends!(concurrent_removals_by_one_owner_keep_one, |env| {
    // One owner removes the other and then, concurrently, themselves. Serially: removing bob
    // first leaves alice as last owner (LastOwner); removing alice first leaves alice no owner
    // (NotOwner). Either way exactly one succeeds and one owner remains.
    let alice = env.user_token("alice", ALL).await;
    env.user("bob").await;
    for round in 0..ROUNDS {
        let name = format!("solo-{round}");
        env.registry
            .publish(&alice, &common::publish(&name, "1.0.0"))
            .await
            .unwrap();
        env.registry.add_owner(&alice, &name, "bob").await.unwrap();
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.remove_owner(&alice, &name, "bob"),
            other.remove_owner(&alice, &name, "alice")
        );
        let removed_bob = a.is_ok();
        let err = match (a, b) {
            (Ok(()), Err(e)) | (Err(e), Ok(())) => e.rejection(),
            (a, b) => panic!("expected exactly one Ok, got {a:?} and {b:?}"),
        };
        let (expected_err, kept) = if removed_bob {
            (Rejection::LastOwner, "alice")
        } else {
            (Rejection::NotOwner, "bob")
        };
        assert_eq!(err, Some(expected_err));
        assert_eq!(existing(&env, &name).await.info.owners, vec![kept]);
    }
});

both_backends!(
    concurrent_publish_of_same_version_of_existing_crate,
    |env| {
        let alice = env.user_token("alice", ALL).await;
        env.registry
            .publish(&alice, &common::publish("steady", "0.1.0"))
            .await
            .unwrap();
        for round in 0..ROUNDS {
            let request = common::publish("steady", &format!("1.{round}.0"));
            let twin = common::publish("STEADY", &format!("1.{round}.0+twin"));
            let other = env.registry.clone();
            let (a, b) = tokio::join!(
                env.registry.publish(&alice, &request),
                other.publish(&alice, &twin)
            );
            let won = one_ok_other_rejected(a, b, Rejection::VersionExists);
            assert_eq!(won, Published::NewVersion);
            assert_eq!(existing(&env, "steady").await.versions.len(), round + 2);
        }
    }
);

both_backends!(concurrent_add_of_same_owner, |env| {
    let alice = env.user_token("alice", ALL).await;
    env.user("bob").await;
    for round in 0..ROUNDS {
        let name = format!("adopt-{round}");
        env.registry
            .publish(&alice, &common::publish(&name, "1.0.0"))
            .await
            .unwrap();
        let other = env.registry.clone();
        let (a, b) = tokio::join!(
            env.registry.add_owner(&alice, &name, "bob"),
            other.add_owner(&alice, &name, "BOB")
        );
        one_ok_other_rejected(a, b, Rejection::AlreadyOwner);
        assert_eq!(
            existing(&env, &name).await.info.owners,
            vec!["alice", "bob"]
        );
    }
});

both_backends!(concurrent_create_of_case_twin_users, |env| {
    for round in 0..ROUNDS {
        let lower = format!("twin{round}");
        let upper = lower.to_uppercase();
        let other = env.registry.clone();
        let (a, b) = tokio::join!(env.registry.create_user(&lower), other.create_user(&upper));
        let user = one_ok_other_rejected(a, b, Rejection::UserExists);
        assert!(user.login == lower || user.login == upper, "{user:?}");
        assert_rejected!(
            env.registry.create_user(&lower).await,
            Rejection::UserExists
        );
    }
});
