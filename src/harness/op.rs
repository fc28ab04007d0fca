//! The operation vocabulary shared by every generator: proptest now, the fuzzer and `soak`
//! next. An op names earlier results by position (`Ref::Nth(3)`: the 4th client issued so far,
//! modulo how many exist), so removing an op while shrinking never leaves a dangling name.
//! Inputs come from small fixed pools, some deliberately invalid, so both the deep paths and the
//! rejections are reached often.
//!
//! Two decoders read this vocabulary: proptest's strategies (`strategy.rs`) and `arbitrary`
//! (the derives here and [`Step`]'s impl), which the fuzz targets use (`harness::fuzz`).

use arbitrary::{Arbitrary, Unstructured};
use std::fmt;

/// An earlier result: the n-th most recent (modulo how many exist; `Nth(0)` is the latest),
/// the one the previous step issued (none if it issued none), or one never issued.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum Ref {
    Nth(u8),
    Previous,
    Missing,
}

/// A token by kind and position, or a token that was never issued.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum TokenRef {
    Access(u8),
    Refresh(u8),
    Missing,
}

/// The client making a request about a code or token: the one it was issued to, or another.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum Party {
    Owner,
    Other(Ref),
}

/// What the client presents as its secret: `Proper` is its own secret if it is confidential,
/// nothing if it is public.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum Auth {
    Proper,
    Wrong,
    Absent,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum Pkce {
    S256,
    Plain,
    MissingMethod,
    MalformedChallenge,
    None,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum Verifier {
    /// The verifier of the code's challenge (a fresh valid one if it had none).
    Proper,
    Wrong,
    Malformed,
    Absent,
}

/// The redirect URI at the token endpoint: the one the code was issued for, or one from the pool.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum RedirectAtToken {
    Same,
    Pool(u8),
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum GrantType {
    Unsupported,
    CodeWithoutCode,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Arbitrary,
)]
pub enum Op {
    Advance {
        #[arbitrary(with = advance_secs)]
        secs: u32,
    },
    CreateUser {
        login: u8,
    },
    RegisterClient {
        confidential: bool,
        name: u8,
        redirects: u8,
        scope: u8,
    },
    Authorize {
        client: Ref,
        login: u8,
        redirect: u8,
        scope: Option<u8>,
        pkce: Pkce,
    },
    ExchangeCode {
        client: Party,
        auth: Auth,
        code: Ref,
        redirect: RedirectAtToken,
        verifier: Verifier,
    },
    Refresh {
        client: Party,
        auth: Auth,
        token: TokenRef,
        scope: Option<u8>,
    },
    ClientCredentials {
        client: Ref,
        auth: Auth,
        scope: Option<u8>,
    },
    TokenEndpoint {
        client: Ref,
        grant: GrantType,
    },
    Revoke {
        client: Party,
        auth: Auth,
        token: TokenRef,
    },
    Introspect {
        client: Party,
        auth: Auth,
        token: TokenRef,
    },
    Publish {
        token: TokenRef,
        name: u8,
        version: u8,
        bad_checksum: bool,
    },
    SetYanked {
        token: TokenRef,
        name: u8,
        version: u8,
        yanked: bool,
    },
    AddOwner {
        token: TokenRef,
        name: u8,
        login: u8,
    },
    RemoveOwner {
        token: TokenRef,
        name: u8,
        login: u8,
    },
    Download {
        name: u8,
        version: u8,
    },
    Versions {
        name: u8,
    },
    CrateInfo {
        name: u8,
    },
}

/// One step of a generated sequence: an op, alone or under a fault, or a batch of ops at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Step {
    Op(Op),
    /// The op meets an injected error or panic at its `fault.at`-th fault point.
    Faulted {
        op: Op,
        fault: crate::db::fault::Fault,
    },
    /// The op's future is dropped at its `at`-th await on the database (0: the first; a
    /// checkout, `BEGIN`, a statement, `COMMIT`), once that await has started; if it has fewer,
    /// it runs to the end. (db/fault.rs: the same point on every run.)
    Cancelled {
        op: Op,
        #[serde(alias = "polls")]
        at: u8,
    },
    /// The op runs under a timeout of `micros`.
    TimedOut {
        op: Op,
        micros: u16,
    },
    /// Every pooled connection is held elsewhere while the op runs: it must time out acquiring.
    Starved {
        op: Op,
    },
    /// The server terminates every backend of the pool (PostgreSQL; nothing on SQLite).
    Kill,
    /// The server terminates every backend `micros` after the op starts.
    KillDuring {
        op: Op,
        micros: u16,
    },
    /// 2 to 4 ops at once; their outcomes must be those of some serial order.
    Batch(Vec<Op>),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Op(_) => "op",
            Step::Faulted { fault, .. } => match fault.kind {
                crate::db::fault::FaultKind::Error => "fault_error",
                crate::db::fault::FaultKind::Panic => "fault_panic",
            },
            Step::Cancelled { .. } => "cancel",
            Step::TimedOut { .. } => "timeout",
            Step::Starved { .. } => "pool_exhausted",
            Step::Kill => "kill",
            Step::KillDuring { .. } => "kill_during",
            Step::Batch(_) => "batch",
        }
    }

    pub const FAULT_KINDS: &'static [&'static str] = &[
        "fault_error",
        "fault_panic",
        "cancel",
        "timeout",
        "pool_exhausted",
        "kill",
        "kill_during",
        "batch",
    ];

    /// The ops this step runs.
    pub fn ops(&self) -> Vec<Op> {
        match self {
            Step::Op(op)
            | Step::Faulted { op, .. }
            | Step::Cancelled { op, .. }
            | Step::TimedOut { op, .. }
            | Step::Starved { op }
            | Step::KillDuring { op, .. } => vec![*op],
            Step::Kill => Vec::new(),
            Step::Batch(ops) => ops.clone(),
        }
    }
}

/// The most ops in a batch: the runner tries every serial order (4! = 24).
pub const MAX_BATCH: usize = 4;

/// A step from fuzzer bytes: a quarter of the steps faulty or concurrent, as in proptest's
/// default mix, and proptest's value ranges. The steps that wait are rarer than in proptest,
/// because a fuzzer's time is its executions: a starved op waits out its patience (1-2 ms,
/// some ten plain steps), so it is 1 in 256 steps (proptest: 1 in 76); a kill mid-operation
/// waits up to 1 ms (proptest: 2 ms) and does nothing else on SQLite.
impl<'a> Arbitrary<'a> for Step {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=191 => Step::Op(Op::arbitrary(u)?),
            192..=208 => Step::Faulted {
                op: Op::arbitrary(u)?,
                fault: crate::db::fault::Fault {
                    at: u.int_in_range(0..=5)?,
                    kind: if u.ratio(1u8, 4)? {
                        crate::db::fault::FaultKind::Panic
                    } else {
                        crate::db::fault::FaultKind::Error
                    },
                },
            },
            209..=225 => Step::Cancelled {
                op: Op::arbitrary(u)?,
                at: u.int_in_range(0..=11)?,
            },
            226..=233 => Step::TimedOut {
                op: Op::arbitrary(u)?,
                micros: u.int_in_range(1..=399)?,
            },
            234 => Step::Starved {
                op: Op::arbitrary(u)?,
            },
            235..=237 => Step::Kill,
            238..=241 => Step::KillDuring {
                op: Op::arbitrary(u)?,
                micros: u.int_in_range(0..=999)?,
            },
            _ => Step::Batch(batch_ops(u)?),
        })
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (1, None)
    }
}

/// 2 to [`MAX_BATCH`] ops. The clock does not move inside a batch: an `Advance` drawn there
/// repeats the batch's first op instead, the race a batch exists for (one code redeemed twice,
/// one version published twice).
fn batch_ops(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<Op>> {
    let len = u.int_in_range(2..=MAX_BATCH)?;
    let mut ops: Vec<Op> = Vec::with_capacity(len);
    for _ in 0..len {
        let op = match (Op::arbitrary(u)?, ops.first()) {
            (Op::Advance { .. }, Some(first)) => *first,
            (Op::Advance { .. }, None) => Op::Versions { name: 0 },
            (op, _) => op,
        };
        ops.push(op);
    }
    Ok(ops)
}

/// Mostly the lifetimes' edges (`pool::ADVANCES`), sometimes any step up to 60 days.
fn advance_secs(u: &mut Unstructured<'_>) -> arbitrary::Result<u32> {
    if u.ratio(3u8, 4)? {
        Ok(*u.choose(pool::ADVANCES)?)
    } else {
        u.int_in_range(0..=60 * 24 * 3_600)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Op(op) => write!(f, "{op}"),
            Step::Faulted { op, fault } => {
                write!(f, "{op} [{:?} at fault point {}]", fault.kind, fault.at)
            }
            Step::Cancelled { op, at } => {
                write!(
                    f,
                    "{op} [cancelled at database await {}]",
                    u32::from(*at) + 1
                )
            }
            Step::TimedOut { op, micros } => write!(f, "{op} [timeout {micros}µs]"),
            Step::Starved { op } => write!(f, "{op} [pool exhausted]"),
            Step::Kill => f.write_str("kill the pool's server connections"),
            Step::KillDuring { op, micros } => {
                write!(f, "{op} [connections killed after {micros}µs]")
            }
            Step::Batch(ops) => {
                let list: Vec<String> = ops.iter().map(|op| op.to_string()).collect();
                write!(f, "at once: {{ {} }}", list.join(" | "))
            }
        }
    }
}

/// The pools ops draw from. Each holds valid values first and at least one invalid one.
pub mod pool {
    pub const LOGINS: &[&str] = &["alice", "bob", "Alice", "carol", "-bad-"];
    pub const CLIENT_NAMES: &[&str] = &["app", "cli tool", ""];
    pub const SCOPES: &[&str] = &[
        "publish-new publish-update yank change-owners",
        "publish-update yank",
        "publish-new:serde* publish-update:serde*",
        "yank:serde*",
        "change-owners publish-update",
        "publish-new",
        "read-all",
    ];
    pub const CRATES: &[&str] = &[
        "serde",
        "Serde_Json",
        "serde-json",
        "tokio",
        "serde_derive",
        "1nvalid",
    ];
    pub const VERSIONS: &[&str] = &[
        "1.0.0",
        "1.0.0+build.5",
        "1.0.1",
        "2.0.0-alpha.1",
        "0.1.0",
        "v1",
    ];
    /// Registered redirect URI sets.
    pub fn registrations(i: u8) -> Vec<String> {
        let sets: [&[&str]; 5] = [
            &["https://app.example/cb", "http://127.0.0.1/cb"],
            &["https://app.example/cb"],
            &["http://app.example/cb"],
            &[],
            &[
                "https://a.example/1",
                "https://a.example/2",
                "https://a.example/3",
                "https://a.example/4",
                "https://a.example/5",
                "https://a.example/6",
                "https://a.example/7",
                "https://a.example/8",
                "https://a.example/9",
            ],
        ];
        sets[usize::from(i) % sets.len()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    /// Redirect URIs asked for at the authorization endpoint.
    pub fn redirect(i: u8) -> String {
        const POOL: &[&str] = &[
            "https://app.example/cb",
            "http://127.0.0.1:4711/cb",
            "http://127.0.0.1/cb",
            "https://app.example/cb/",
            "https://evil.example/cb",
        ];
        match usize::from(i) % (POOL.len() + 1) {
            n if n < POOL.len() => POOL[n].to_owned(),
            _ => format!("https://app.example/{}", "x".repeat(520)),
        }
    }
    /// Steps of time around each lifetime's edge (a code's 600 s, an access token's hour, a
    /// refresh token's 30 days).
    pub const ADVANCES: &[u32] = &[1, 59, 599, 600, 3_599, 3_600, 2_591_999, 2_592_000];

    pub fn pick<'a>(pool: &[&'a str], i: u8) -> &'a str {
        pool[usize::from(i) % pool.len()]
    }
}

impl Op {
    /// The variant's name, for coverage tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Advance { .. } => "advance",
            Op::CreateUser { .. } => "create_user",
            Op::RegisterClient { .. } => "register_client",
            Op::Authorize { .. } => "authorize",
            Op::ExchangeCode { .. } => "exchange_code",
            Op::Refresh { .. } => "refresh",
            Op::ClientCredentials { .. } => "client_credentials",
            Op::TokenEndpoint { .. } => "token_endpoint",
            Op::Revoke { .. } => "revoke",
            Op::Introspect { .. } => "introspect",
            Op::Publish { .. } => "publish",
            Op::SetYanked { .. } => "set_yanked",
            Op::AddOwner { .. } => "add_owner",
            Op::RemoveOwner { .. } => "remove_owner",
            Op::Download { .. } => "download",
            Op::Versions { .. } => "versions",
            Op::CrateInfo { .. } => "crate_info",
        }
    }

    pub const KINDS: &'static [&'static str] = &[
        "advance",
        "create_user",
        "register_client",
        "authorize",
        "exchange_code",
        "refresh",
        "client_credentials",
        "token_endpoint",
        "revoke",
        "introspect",
        "publish",
        "set_yanked",
        "add_owner",
        "remove_owner",
        "download",
        "versions",
        "crate_info",
    ];
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Nth(n) => write!(f, "#{n}"),
            Ref::Previous => f.write_str("#previous"),
            Ref::Missing => f.write_str("#unknown"),
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Owner => f.write_str("(owner)"),
            Party::Other(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRef::Access(n) => write!(f, "access#{n}"),
            TokenRef::Refresh(n) => write!(f, "refresh#{n}"),
            TokenRef::Missing => f.write_str("token#unknown"),
        }
    }
}

fn opt_scope(scope: &Option<u8>) -> String {
    match scope {
        Some(s) => format!("{:?}", pool::pick(pool::SCOPES, *s)),
        None => "default".into(),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pool::*;
        match self {
            Op::Advance { secs } => write!(f, "advance {secs}s"),
            Op::CreateUser { login } => write!(f, "create_user {:?}", pick(LOGINS, *login)),
            Op::RegisterClient {
                confidential,
                name,
                redirects,
                scope,
            } => write!(
                f,
                "register_client {} name={:?} redirects={:?} scope={:?}",
                if *confidential {
                    "confidential"
                } else {
                    "public"
                },
                pick(CLIENT_NAMES, *name),
                registrations(*redirects),
                pick(SCOPES, *scope)
            ),
            Op::Authorize {
                client,
                login,
                redirect,
                scope,
                pkce,
            } => write!(
                f,
                "authorize client{client} user={:?} redirect={:?} scope={} pkce={pkce:?}",
                pick(LOGINS, *login),
                truncate(&pool::redirect(*redirect)),
                opt_scope(scope)
            ),
            Op::ExchangeCode {
                client,
                auth,
                code,
                redirect,
                verifier,
            } => write!(
                f,
                "exchange_code client{client} auth={auth:?} code{code} redirect={} verifier={verifier:?}",
                match redirect {
                    RedirectAtToken::Same => "same".to_owned(),
                    RedirectAtToken::Pool(i) => format!("{:?}", truncate(&pool::redirect(*i))),
                }
            ),
            Op::Refresh {
                client,
                auth,
                token,
                scope,
            } => {
                write!(
                    f,
                    "refresh client{client} auth={auth:?} {token} scope={}",
                    opt_scope(scope)
                )
            }
            Op::ClientCredentials {
                client,
                auth,
                scope,
            } => {
                write!(
                    f,
                    "client_credentials client{client} auth={auth:?} scope={}",
                    opt_scope(scope)
                )
            }
            Op::TokenEndpoint { client, grant } => {
                write!(f, "token_endpoint client{client} {grant:?}")
            }
            Op::Revoke {
                client,
                auth,
                token,
            } => write!(f, "revoke client{client} auth={auth:?} {token}"),
            Op::Introspect {
                client,
                auth,
                token,
            } => {
                write!(f, "introspect client{client} auth={auth:?} {token}")
            }
            Op::Publish {
                token,
                name,
                version,
                bad_checksum,
            } => write!(
                f,
                "publish {token} {}@{}{}",
                pick(CRATES, *name),
                pick(VERSIONS, *version),
                if *bad_checksum { " (bad checksum)" } else { "" }
            ),
            Op::SetYanked {
                token,
                name,
                version,
                yanked,
            } => write!(
                f,
                "{} {token} {}@{}",
                if *yanked { "yank" } else { "unyank" },
                pick(CRATES, *name),
                pick(VERSIONS, *version)
            ),
            Op::AddOwner { token, name, login } => {
                write!(
                    f,
                    "add_owner {token} {} {:?}",
                    pick(CRATES, *name),
                    pick(LOGINS, *login)
                )
            }
            Op::RemoveOwner { token, name, login } => {
                write!(
                    f,
                    "remove_owner {token} {} {:?}",
                    pick(CRATES, *name),
                    pick(LOGINS, *login)
                )
            }
            Op::Download { name, version } => {
                write!(
                    f,
                    "download {}@{}",
                    pick(CRATES, *name),
                    pick(VERSIONS, *version)
                )
            }
            Op::Versions { name } => write!(f, "versions {}", pick(CRATES, *name)),
            Op::CrateInfo { name } => write!(f, "crate_info {}", pick(CRATES, *name)),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.len() > 40 {
        format!("{}…({} bytes)", &s[..30], s.len())
    } else {
        s.to_owned()
    }
}
