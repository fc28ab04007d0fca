//! proptest generation of op sequences, weighted so that deep states are reached: codes get
//! redeemed, tokens refreshed and replayed, crates get several versions and owners. Every
//! choice shrinks toward its first (simplest, most ordinary) value.

use super::op::*;
use proptest::prelude::*;
use proptest::sample::select;

/// An index drawn with the given weights; shrinks toward index 0.
fn weighted(weights: &[u32]) -> impl Strategy<Value = u8> + use<> {
    let expanded: Vec<u8> = weights
        .iter()
        .enumerate()
        .flat_map(|(i, &w)| std::iter::repeat_n(u8::try_from(i).unwrap_or(u8::MAX), w as usize))
        .collect();
    select(expanded)
}

fn nth() -> impl Strategy<Value = Ref> {
    prop_oneof![30 => (0u8..4).prop_map(Ref::Nth), 1 => Just(Ref::Missing)]
}

fn party() -> impl Strategy<Value = Party> {
    prop_oneof![10 => Just(Party::Owner), 2 => nth().prop_map(Party::Other)]
}

/// Any token: for revocation and introspection.
fn token() -> impl Strategy<Value = TokenRef> {
    prop_oneof![
        10 => (0u8..4).prop_map(TokenRef::Access),
        6 => (0u8..4).prop_map(TokenRef::Refresh),
        1 => Just(TokenRef::Missing),
    ]
}

/// Mostly access tokens: for the registry.
fn access_token() -> impl Strategy<Value = TokenRef> {
    prop_oneof![
        20 => (0u8..3).prop_map(TokenRef::Access),
        1 => (0u8..2).prop_map(TokenRef::Refresh),
        1 => Just(TokenRef::Missing),
    ]
}

/// Mostly refresh tokens, the latest first (a replay is `Refresh(1)` after a rotation).
fn refresh_token() -> impl Strategy<Value = TokenRef> {
    prop_oneof![
        20 => (0u8..3).prop_map(TokenRef::Refresh),
        1 => (0u8..2).prop_map(TokenRef::Access),
        1 => Just(TokenRef::Missing),
    ]
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![24 => Just(Auth::Proper), 1 => Just(Auth::Wrong), 1 => Just(Auth::Absent)]
}

fn pkce() -> impl Strategy<Value = Pkce> {
    prop_oneof![
        24 => Just(Pkce::S256),
        2 => Just(Pkce::None),
        1 => Just(Pkce::Plain),
        1 => Just(Pkce::MissingMethod),
        1 => Just(Pkce::MalformedChallenge),
    ]
}

fn verifier() -> impl Strategy<Value = Verifier> {
    prop_oneof![
        24 => Just(Verifier::Proper),
        1 => Just(Verifier::Wrong),
        1 => Just(Verifier::Malformed),
        1 => Just(Verifier::Absent),
    ]
}

fn redirect_at_token() -> impl Strategy<Value = RedirectAtToken> {
    prop_oneof![24 => Just(RedirectAtToken::Same), 1 => (0u8..6).prop_map(RedirectAtToken::Pool)]
}

fn scope_choice() -> impl Strategy<Value = u8> {
    weighted(&[8, 2, 2, 2, 2, 1, 1])
}

fn maybe_scope(none_weight: u32) -> impl Strategy<Value = Option<u8>> {
    prop_oneof![none_weight => Just(None), 2 => scope_choice().prop_map(Some)]
}

fn login() -> impl Strategy<Value = u8> {
    weighted(&[8, 6, 1, 2, 1])
}

fn crate_name() -> impl Strategy<Value = u8> {
    weighted(&[4, 2, 2, 3, 1, 1])
}

fn version() -> impl Strategy<Value = u8> {
    weighted(&[4, 1, 3, 2, 2, 1])
}

/// One operation.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => weighted(&[3, 3, 2, 2, 1, 1, 1, 1]).prop_map(|i| Op::Advance { secs: pool::ADVANCES[usize::from(i)] }),
        6 => login().prop_map(|login| Op::CreateUser { login }),
        4 => (any::<bool>(), weighted(&[8, 1, 1]), weighted(&[8, 2, 1, 1, 1]), scope_choice())
            .prop_map(|(confidential, name, redirects, scope)| Op::RegisterClient { confidential, name, redirects, scope }),
        6 => (nth(), login(), weighted(&[16, 4, 1, 1, 1, 1]), maybe_scope(6), pkce())
            .prop_map(|(client, login, redirect, scope, pkce)| Op::Authorize { client, login, redirect, scope, pkce }),
        3 => (party(), auth(), nth(), redirect_at_token(), verifier())
            .prop_map(|(client, auth, code, redirect, verifier)| Op::ExchangeCode { client, auth, code, redirect, verifier }),
        8 => (party(), auth(), refresh_token(), maybe_scope(6))
            .prop_map(|(client, auth, token, scope)| Op::Refresh { client, auth, token, scope }),
        2 => (nth(), auth(), maybe_scope(3))
            .prop_map(|(client, auth, scope)| Op::ClientCredentials { client, auth, scope }),
        1 => (nth(), prop_oneof![Just(GrantType::Unsupported), Just(GrantType::CodeWithoutCode)])
            .prop_map(|(client, grant)| Op::TokenEndpoint { client, grant }),
        3 => (party(), auth(), token()).prop_map(|(client, auth, token)| Op::Revoke { client, auth, token }),
        4 => (party(), auth(), token()).prop_map(|(client, auth, token)| Op::Introspect { client, auth, token }),
        12 => (access_token(), crate_name(), version(), weighted(&[19, 1]))
            .prop_map(|(token, name, version, bad)| Op::Publish { token, name, version, bad_checksum: bad == 1 }),
        4 => (access_token(), crate_name(), version(), any::<bool>())
            .prop_map(|(token, name, version, yanked)| Op::SetYanked { token, name, version, yanked }),
        6 => (access_token(), crate_name(), login()).prop_map(|(token, name, login)| Op::AddOwner { token, name, login }),
        6 => (access_token(), crate_name(), login()).prop_map(|(token, name, login)| Op::RemoveOwner { token, name, login }),
        4 => (crate_name(), version()).prop_map(|(name, version)| Op::Download { name, version }),
        2 => crate_name().prop_map(|name| Op::Versions { name }),
        2 => crate_name().prop_map(|name| Op::CrateInfo { name }),
    ]
}

/// The ordinary beginning of a story: two users, a public and a confidential client allowed
/// everything, and alice's first login. Each is there with probability 0.9 (the login 0.7), and shrinking removes what a failure does
/// not need. Without it, most of a short sequence is spent before the first code is issued.
fn setup() -> impl Strategy<Value = Vec<Op>> {
    let client = |confidential| Op::RegisterClient {
        confidential,
        name: 0,
        redirects: 0,
        scope: 0,
    };
    let step = |op: Op| proptest::option::weighted(0.9, Just(op));
    let login = Op::Authorize {
        client: Ref::Nth(0),
        login: 0,
        redirect: 0,
        scope: None,
        pkce: Pkce::S256,
    };
    let exchange = Op::ExchangeCode {
        client: Party::Owner,
        auth: Auth::Proper,
        code: Ref::Previous,
        redirect: RedirectAtToken::Same,
        verifier: Verifier::Proper,
    };
    (
        step(Op::CreateUser { login: 0 }),
        step(Op::CreateUser { login: 1 }),
        step(client(false)),
        step(client(true)),
        proptest::option::weighted(0.7, Just([login, exchange])),
    )
        .prop_map(|(a, b, c, d, flow)| {
            [a, b, c, d]
                .into_iter()
                .flatten()
                .chain(flow.into_iter().flatten())
                .collect()
        })
}

/// An authorization immediately redeemed by its client: the way most tokens come to be.
fn login_flow() -> impl Strategy<Value = Vec<Op>> {
    (
        nth(),
        login(),
        weighted(&[16, 4, 1, 1, 1, 1]),
        maybe_scope(6),
        pkce(),
        auth(),
        redirect_at_token(),
        verifier(),
    )
        .prop_map(
            |(client, login, redirect, scope, pkce, auth, at_token, verifier)| {
                vec![
                    Op::Authorize {
                        client,
                        login,
                        redirect,
                        scope,
                        pkce,
                    },
                    Op::ExchangeCode {
                        client: Party::Owner,
                        auth,
                        code: Ref::Nth(0),
                        redirect: at_token,
                        verifier,
                    },
                ]
            },
        )
}

/// A step of a story: mostly one op, sometimes a login flow of two.
fn chunk() -> impl Strategy<Value = Vec<Op>> {
    prop_oneof![3 => op().prop_map(|op| vec![op]), 1 => login_flow()]
}

/// The setup, then chunks adding up to at most `max_len` operations in all.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let max_len = max_len.max(2);
    (setup(), proptest::collection::vec(chunk(), 1..=max_len)).prop_map(
        move |(mut setup, chunks)| {
            setup.extend(chunks.into_iter().flatten());
            setup.truncate(max_len);
            setup
        },
    )
}
