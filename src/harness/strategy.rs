//! proptest generation of op sequences, weighted so that deep states are reached: codes get
//! redeemed, tokens refreshed and replayed, crates get several versions and owners. Every
//! choice shrinks toward its first (simplest, most ordinary) value.

use super::op::*;
use crate::db::fault::{Fault, FaultKind};
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

fn op_for_batch() -> impl Strategy<Value = Op> {
    op().prop_filter("the clock does not move inside a batch", |op| {
        !matches!(op, Op::Advance { .. })
    })
}

/// Ops at once: any 2 to 4, or the same op twice — the races the rules care about (a code
/// redeemed twice, a refresh token used twice, one version published twice).
fn batch() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => proptest::collection::vec(op_for_batch(), 2..=4).prop_map(Step::Batch),
        1 => op_for_batch().prop_map(|op| Step::Batch(vec![op, op])),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    (
        0u8..6,
        prop_oneof![3 => Just(FaultKind::Error), 1 => Just(FaultKind::Panic)],
    )
        .prop_map(|(at, kind)| Fault { at, kind })
}

/// How often a generated step is something other than a plain op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Percent of steps run under a fault or as a batch (0 to 100).
    pub fault_percent: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self { fault_percent: 25 }
    }
}

/// One step: mostly a plain op; sometimes an op under a fault, or a batch. The fault kinds
/// share their part of the mix in fixed proportions.
fn step(mix: Mix) -> impl Strategy<Value = Step> {
    let faulty = mix.fault_percent.min(100);
    let plain = 100 - faulty;
    // Parts of 19: error/panic 4, cancel 4, timeout 2, starved 1, kill 1, kill during 2, batch 4 (+1 for rounding).
    let part = |n: u32| faulty * n;
    prop_oneof![
        plain * 19 => op().prop_map(Step::Op),
        part(4) => (op(), fault()).prop_map(|(op, fault)| Step::Faulted { op, fault }),
        part(4) => (op(), 0u8..12).prop_map(|(op, at)| Step::Cancelled { op, at }),
        part(2) => (op(), 1u16..400).prop_map(|(op, micros)| Step::TimedOut { op, micros }),
        part(1) => op().prop_map(|op| Step::Starved { op }),
        part(1) => Just(Step::Kill),
        part(3) => (op(), 0u16..2_000).prop_map(|(op, micros)| Step::KillDuring { op, micros }),
        part(4) => batch(),
    ]
}

/// An authorization immediately redeemed by its client: the way most tokens come to be.
fn login_flow() -> impl Strategy<Value = Vec<Op>> {
    (
        nth(),
        login(),
        weighted(&[16, 4, 1, 1, 1, 1]),
        maybe_scope(6),
        pkce(),
        (party(), auth()),
        redirect_at_token(),
        verifier(),
    )
        .prop_map(
            |(client, login, redirect, scope, pkce, (party, auth), at_token, verifier)| {
                vec![
                    Op::Authorize {
                        client,
                        login,
                        redirect,
                        scope,
                        pkce,
                    },
                    Op::ExchangeCode {
                        client: party,
                        auth,
                        code: Ref::Previous,
                        redirect: at_token,
                        verifier,
                    },
                ]
            },
        )
}

/// A piece of a story: mostly one step, sometimes a login flow of two; with faults on, now
/// and then a login flow whose client redeems the fresh code twice at once — the race that a
/// claim without a condition loses, and that `batch` alone reaches too rarely.
fn chunk(mix: Mix) -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![
        300 => step(mix).prop_map(|step| vec![step]),
        100 => login_flow().prop_map(|ops| ops.into_iter().map(Step::Op).collect()),
        mix.fault_percent.min(100) / 5 => login_flow().prop_map(|ops| match ops.as_slice() {
            [authorize, exchange] => vec![Step::Op(*authorize), Step::Batch(vec![*exchange, *exchange])],
            _ => ops.into_iter().map(Step::Op).collect(),
        }),
    ]
}

/// The setup, then chunks adding up to at most `max_len` steps in all, with the default mix.
pub fn steps(max_len: usize) -> impl Strategy<Value = Vec<Step>> {
    steps_with(max_len, Mix::default())
}

pub fn steps_with(max_len: usize, mix: Mix) -> impl Strategy<Value = Vec<Step>> {
    let max_len = max_len.max(2);
    (setup(), proptest::collection::vec(chunk(mix), 1..=max_len)).prop_map(
        move |(setup, chunks)| {
            let mut steps: Vec<Step> = setup.into_iter().map(Step::Op).collect();
            steps.extend(chunks.into_iter().flatten());
            steps.truncate(max_len);
            steps
        },
    )
}
