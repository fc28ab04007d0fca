//! The `oauth_input` target: every OAuth2 parameter the server parses or validates — client
//! registrations, redirect URIs, scope strings, PKCE challenges, methods and verifiers, grant
//! types, client ids and secrets, codes and tokens — from fuzzer bytes. Each string is checked
//! against the rules stated independently (`spec.rs`, `model::rules`) with round trips; then
//! the calls run on the model and the system against the cast (`world.rs`), the answers
//! compared exactly, the state read back, zero sessions required.

use super::registry::check_login;
use super::spec::{self, ScopeError};
use super::text::{count, maybe_text, text, truncate};
use super::world::{Cast, Checked, CheckedKind, OTHER_VERIFIER, Pick, VERIFIER, World, issued};
use crate::domain::redirect::{self, MAX_REDIRECT_URI};
use crate::domain::{Rejection, Scope, pkce};
use crate::harness::call::{Bearer, Call, Caller};
use crate::harness::runner::StepResult;
use crate::model::{Model, Presented, rules};
use crate::oauth::{
    AuthorizeRequest, ClientAuth, ClientRegistration, MAX_CLIENT_ID, MAX_SECRET, TokenRequest,
};
use arbitrary::{Arbitrary, Result, Unstructured};

/// Calls per input: enough for a registration and a request against it, few enough that an
/// input stays cheap and a finding short.
pub const MAX_CALLS: usize = 4;
/// Redirect URIs per registration: one more than the rules allow (8).
const MAX_URIS: usize = 9;

const REDIRECTS: &[&str] = &[
    "https://app.example/cb",
    "http://127.0.0.1/cb",
    "http://127.0.0.1:4711/cb",
    "http://[::1]:9/cb",
    "https://app.example/cb/",
    "https://app.example/cb?x=1",
    "https://app.example:443/cb",
    "https://evil.example/cb",
    "http://app.example/cb",
    "http://localhost/cb",
    "http://127.0.0.1.evil/cb",
    "https://app.example/cb#frag",
    "https://user@app.example/cb",
    "HTTPS://app.example/cb",
    "javascript:alert(1)",
    "",
];
const SCOPES: &[&str] = &[
    "publish-new publish-update yank change-owners",
    "publish-update yank",
    "publish-new:serde* publish-update:serde*",
    "yank:serde*",
    "yank:Serde_Json",
    "publish-new:*",
    "yank yank",
    "read-all",
    "yank:",
    "yank:a*b",
    "",
];
const METHODS: &[&str] = &["S256", "plain", "s256", ""];
const VERIFIERS: &[&str] = &[
    VERIFIER,
    OTHER_VERIFIER,
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "short",
    "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
    "",
];
const CHALLENGES: &[&str] = &[
    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa+",
    "short",
    "",
];
const LOGINS: &[&str] = &["alice", "bob", "Alice", "carol", "-bad-", ""];
const GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
    "Authorization_Code",
    "",
];
const NAMES: &[&str] = &["app", "cli tool", "", "a\u{7}b"];
const CLIENT_IDS: &[&str] = &["lpcl_unknown", "lpcl_", ""];
const SECRETS: &[&str] = &["lps_wrong", ""];
const OPAQUE: &[&str] = &[
    "lpc_never-issued",
    "lpa_never-issued",
    "lpr_never-issued",
    "",
];

/// A client: one of the cast (by position, modulo) or an id nobody was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPick {
    Cast(u8),
    Raw(String),
}

/// What the client presents: its own secret (nothing, if it is public), nothing, or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPick {
    Own,
    Absent,
    Raw(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthCall {
    Register {
        name: String,
        confidential: bool,
        redirect_uris: Vec<String>,
        scope: String,
    },
    Authorize {
        client: ClientPick,
        redirect_uri: String,
        scope: Option<String>,
        challenge: Option<String>,
        method: Option<String>,
        login: String,
    },
    Token {
        grant_type: String,
        client: ClientPick,
        secret: SecretPick,
        code: Option<Pick>,
        redirect_uri: Option<String>,
        verifier: Option<String>,
        refresh_token: Option<Pick>,
        scope: Option<String>,
    },
    Revoke {
        client: ClientPick,
        secret: SecretPick,
        token: Pick,
    },
    Introspect {
        client: ClientPick,
        secret: SecretPick,
        token: Pick,
    },
}

/// One input: up to [`MAX_CALLS`] calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthInput {
    pub calls: Vec<OAuthCall>,
}

fn client(u: &mut Unstructured<'_>) -> Result<ClientPick> {
    Ok(if u.ratio(5u8, 6)? {
        ClientPick::Cast(u8::arbitrary(u)?)
    } else {
        ClientPick::Raw(text(u, CLIENT_IDS)?)
    })
}

fn secret(u: &mut Unstructured<'_>) -> Result<SecretPick> {
    Ok(match u.int_in_range(0u8..=7)? {
        0..=5 => SecretPick::Own,
        6 => SecretPick::Absent,
        _ => SecretPick::Raw(text(u, SECRETS)?),
    })
}

fn pick(u: &mut Unstructured<'_>) -> Result<Pick> {
    Ok(if u.ratio(5u8, 6)? {
        Pick::Cast(u8::arbitrary(u)?)
    } else {
        Pick::Raw(text(u, OPAQUE)?)
    })
}

fn maybe<T>(
    u: &mut Unstructured<'_>,
    f: impl FnOnce(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Option<T>> {
    if u.ratio(1u8, 5)? {
        Ok(None)
    } else {
        f(u).map(Some)
    }
}

impl<'a> Arbitrary<'a> for OAuthCall {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0u8..=4)? {
            0 => OAuthCall::Register {
                name: text(u, NAMES)?,
                confidential: bool::arbitrary(u)?,
                redirect_uris: (0..count(u, MAX_URIS)?)
                    .map(|_| text(u, REDIRECTS))
                    .collect::<Result<_>>()?,
                scope: text(u, SCOPES)?,
            },
            1 => OAuthCall::Authorize {
                client: client(u)?,
                redirect_uri: text(u, REDIRECTS)?,
                scope: maybe_text(u, SCOPES)?,
                challenge: maybe_text(u, CHALLENGES)?,
                method: maybe_text(u, METHODS)?,
                login: text(u, LOGINS)?,
            },
            2 => OAuthCall::Token {
                grant_type: text(u, GRANTS)?,
                client: client(u)?,
                secret: secret(u)?,
                code: maybe(u, pick)?,
                redirect_uri: maybe_text(u, REDIRECTS)?,
                verifier: maybe_text(u, VERIFIERS)?,
                refresh_token: maybe(u, pick)?,
                scope: maybe_text(u, SCOPES)?,
            },
            3 => OAuthCall::Revoke {
                client: client(u)?,
                secret: secret(u)?,
                token: pick(u)?,
            },
            _ => OAuthCall::Introspect {
                client: client(u)?,
                secret: secret(u)?,
                token: pick(u)?,
            },
        })
    }
}

impl<'a> Arbitrary<'a> for OAuthInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut calls = Vec::new();
        while calls.len() < MAX_CALLS && !u.is_empty() {
            calls.push(OAuthCall::arbitrary(u)?);
        }
        Ok(Self { calls })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// Decodes and runs one input: the rules first, then the calls on both sides.
pub fn run_oauth_input(world: &World, data: &[u8]) -> std::result::Result<(), String> {
    let Ok(input) = OAuthInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return Ok(());
    };
    for call in &input.calls {
        check_rules(call)?;
    }
    world.run(|cast| input.calls.iter().map(|c| checked(cast, c)).collect())
}

/// Every string of a call against the rules stated independently.
fn check_rules(call: &OAuthCall) -> std::result::Result<(), String> {
    match call {
        OAuthCall::Register {
            redirect_uris,
            scope,
            ..
        } => {
            for uri in redirect_uris {
                check_redirect(uri)?;
            }
            check_scope(scope)
        }
        OAuthCall::Authorize {
            redirect_uri,
            scope,
            challenge,
            method,
            login,
            ..
        } => {
            check_redirect(redirect_uri)?;
            scope.as_deref().map_or(Ok(()), check_scope)?;
            check_login(login)?;
            check_challenge(challenge.as_deref(), method.as_deref())
        }
        OAuthCall::Token {
            redirect_uri,
            verifier,
            scope,
            ..
        } => {
            redirect_uri.as_deref().map_or(Ok(()), check_redirect)?;
            scope.as_deref().map_or(Ok(()), check_scope)?;
            check_verifier(verifier.as_deref())
        }
        OAuthCall::Revoke { .. } | OAuthCall::Introspect { .. } => Ok(()),
    }
}

fn short(s: &str) -> String {
    let cut = truncate(s, 80);
    if cut.len() < s.len() {
        format!("{cut:?}…({} bytes)", s.len())
    } else {
        format!("{s:?}")
    }
}

/// Redirect URIs: what validation lets through is https or loopback http, clean, within the
/// limit; matching is exact but for a loopback port, and a valid loopback URI matches itself
/// on any port.
pub fn check_redirect(uri: &str) -> std::result::Result<(), String> {
    let valid = redirect::validate(uri);
    let fail = |why: &str| Err(format!("redirect URI {}: {why} ({valid:?})", short(uri)));
    if uri.len() > MAX_REDIRECT_URI {
        if valid
            != Err(Rejection::FieldTooLong {
                field: "redirect_uri",
                max: MAX_REDIRECT_URI,
            })
        {
            return fail("over the limit but not refused as too long");
        }
        return Ok(());
    }
    let loopback = ["http://127.0.0.1", "http://[::1]"].iter().find_map(|p| {
        uri.strip_prefix(p)
            .filter(|rest| rest.is_empty() || rest.starts_with([':', '/', '?']))
            .map(|rest| (*p, rest))
    });
    if valid.is_ok() {
        let https = uri
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"));
        let clean = uri.bytes().all(|b| b.is_ascii_graphic()) && !uri.contains('#');
        if !clean || (!https && loopback.is_none()) {
            return fail("accepted");
        }
        if !redirect::matches(uri, uri) {
            return fail("does not match itself");
        }
        // Plain http only to this machine: the host the URL really names is a loopback one.
        if !https {
            let host = url::Url::parse(uri)
                .ok()
                .and_then(|u| u.host().map(|h| h.to_owned()));
            let loopback_host = matches!(
                host,
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) || matches!(host, Some(url::Host::Ipv6(ip)) if ip.is_loopback());
            if !loopback_host {
                return fail(&format!("http to {host:?}, not a loopback address"));
            }
        }
        if let Some((prefix, rest)) = loopback {
            let path = rest
                .strip_prefix(':')
                .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
            let other = format!("{prefix}:51234{path}");
            if redirect::validate(&other).is_ok()
                && !(redirect::matches(uri, &other) && redirect::matches(&other, uri))
            {
                return fail(&format!("does not match {other:?} on another port"));
            }
        }
    }
    for registered in REDIRECTS {
        if *registered != uri
            && redirect::matches(registered, uri)
            && (valid.is_err() || loopback.is_none())
        {
            return fail(&format!(
                "matches {registered:?} without being a valid loopback URI"
            ));
        }
    }
    Ok(())
}

/// Scope strings: the parser agrees with the grammar, and its canonical form reads back the
/// same and covers itself.
pub fn check_scope(raw: &str) -> std::result::Result<(), String> {
    let parsed = Scope::parse(raw);
    let spec = spec::scope(raw);
    let fail = |why: String| Err(format!("scope {}: {why}", short(raw)));
    match (&parsed, &spec) {
        (Ok(scope), Ok(words)) => {
            let mine: std::collections::BTreeSet<spec::ScopeWord> = scope
                .0
                .iter()
                .map(|t| {
                    let crates = match &t.crates {
                        crate::domain::scope::CratePattern::Any => None,
                        crate::domain::scope::CratePattern::Prefix(p) => Some((true, p.clone())),
                        crate::domain::scope::CratePattern::Exact(k) => Some((false, k.clone())),
                    };
                    (t.endpoint.as_str(), crates)
                })
                .collect();
            if &mine != words {
                return fail(format!("parsed as {mine:?}, the grammar says {words:?}"));
            }
            let text = scope.to_string();
            if Scope::parse(&text).as_ref() != Ok(scope) {
                return fail(format!("{text:?} does not read back the same"));
            }
            if !scope.covers(scope) || !Scope::all().covers(scope) {
                return fail("does not cover itself, or is not within everything".to_owned());
            }
            Ok(())
        }
        (Err(Rejection::FieldTooLong { field: "scope", .. }), Err(ScopeError::TooLong))
        | (Err(Rejection::InvalidScope), Err(ScopeError::Invalid))
        | (Err(Rejection::TooMany { .. }), Err(ScopeError::TooMany)) => Ok(()),
        _ => fail(format!("parser {parsed:?}, grammar {spec:?}")),
    }
}

/// PKCE at the authorization endpoint: the system's check and the model's own statement agree.
fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> std::result::Result<(), String> {
    let system = pkce::check_challenge(challenge, method);
    let model = rules::pkce_challenge(challenge, method);
    if system != model {
        return Err(format!(
            "PKCE challenge {:?} method {method:?}: system {system:?}, model {model:?}",
            challenge.map(short)
        ));
    }
    Ok(())
}

/// PKCE at the token endpoint, against no challenge, the verifier's own, and another; and
/// the verifier's S256 challenge is one the authorization endpoint accepts.
fn check_verifier(verifier: Option<&str>) -> std::result::Result<(), String> {
    let own = verifier.map(pkce::s256);
    let other = pkce::s256(VERIFIER);
    for challenge in [None, own.as_deref(), Some(other.as_str())] {
        let system = pkce::verify(challenge, verifier);
        let model = rules::pkce_verifier(challenge, verifier);
        if system != model {
            return Err(format!(
                "PKCE verifier {:?} against {challenge:?}: system {system:?}, model {model:?}",
                verifier.map(short)
            ));
        }
    }
    if let Some(c) = &own
        && pkce::check_challenge(Some(c), Some("S256")) != Ok(Some(c.clone()))
    {
        return Err(format!("the S256 challenge {c:?} is refused"));
    }
    Ok(())
}

/// A caller as both sides see it: a client of the cast, or an id that names nobody.
fn caller(cast: &Cast, client: &ClientPick, secret: &SecretPick) -> Caller {
    let presented_secret = match secret {
        SecretPick::Raw(s) => Some(s.as_str()),
        _ => None,
    };
    match client {
        ClientPick::Cast(k) => {
            let mut caller = cast.caller(usize::from(*k), presented_secret);
            if *secret == SecretPick::Absent {
                caller.presented = Presented::Absent;
                caller.auth.client_secret = None;
            }
            caller
        }
        ClientPick::Raw(id) => Caller {
            ix: None,
            presented: if presented_secret.is_some() {
                Presented::Wrong
            } else {
                Presented::Absent
            },
            auth: ClientAuth {
                client_id: id.clone(),
                client_secret: presented_secret.map(str::to_owned),
            },
        },
    }
}

/// Client id and secret beyond what the system reads: refused before anything else is asked,
/// for a reason the model (which names clients by position) does not state.
fn over_long(caller: &Caller) -> bool {
    caller.auth.client_id.len() > MAX_CLIENT_ID
        || caller
            .auth
            .client_secret
            .as_ref()
            .is_some_and(|s| s.len() > MAX_SECRET)
}

fn code(cast: &Cast, pick: &Pick) -> (Option<usize>, String) {
    match pick {
        Pick::Cast(k) => {
            let c = &cast.codes[usize::from(*k) % cast.codes.len()];
            (Some(c.ix), c.text.clone())
        }
        Pick::Raw(text) => (None, text.clone()),
    }
}

/// A call of the input, resolved against the cast, with how its answer is checked.
fn checked(cast: &Cast, call: &OAuthCall) -> Checked {
    let shown = truncate(&format!("{call:?}"), 300).to_owned();
    let kind = match call {
        OAuthCall::Register {
            name,
            confidential,
            redirect_uris,
            scope,
        } => CheckedKind::Call(Call::RegisterClient(ClientRegistration {
            name: name.clone(),
            confidential: *confidential,
            redirect_uris: redirect_uris.clone(),
            scope: scope.clone(),
        })),
        OAuthCall::Authorize {
            client,
            redirect_uri,
            scope,
            challenge,
            method,
            login,
        } => {
            let who = caller(cast, client, &SecretPick::Own);
            let call = Call::Authorize {
                client: who.ix,
                request: AuthorizeRequest {
                    client_id: who.auth.client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                    scope: scope.clone(),
                    code_challenge: challenge.clone(),
                    code_challenge_method: method.clone(),
                    login: login.clone(),
                },
                verifier: String::new(),
            };
            if who.auth.client_id.len() > MAX_CLIENT_ID {
                CheckedKind::Refused(call)
            } else {
                CheckedKind::Call(call)
            }
        }
        OAuthCall::Token {
            grant_type,
            client,
            secret,
            code: code_pick,
            redirect_uri,
            verifier,
            refresh_token,
            scope,
        } => {
            let who = caller(cast, client, secret);
            let code = code_pick.as_ref().map(|p| code(cast, p));
            let refresh = refresh_token.as_ref().map(|p| cast.bearer(p));
            let request = TokenRequest {
                grant_type: grant_type.clone(),
                client_id: who.auth.client_id.clone(),
                client_secret: who.auth.client_secret.clone(),
                code: code.as_ref().map(|(_, text)| text.clone()),
                redirect_uri: redirect_uri.clone(),
                code_verifier: verifier.clone(),
                refresh_token: refresh.as_ref().map(|t| t.text.clone()),
                scope: scope.clone(),
            };
            let too_long = over_long(&who)
                || code.as_ref().is_some_and(|(_, t)| t.len() > MAX_SECRET)
                || refresh.as_ref().is_some_and(|t| t.text.len() > MAX_SECRET);
            let call = Call::TokenEndpoint {
                request: request.clone(),
                expected: Rejection::UnsupportedGrantType,
            };
            if too_long {
                CheckedKind::Refused(call)
            } else {
                let on_model =
                    move |m: &mut Model| token_endpoint(m, &request, &who, code, refresh);
                CheckedKind::Custom {
                    call,
                    on_model: Box::new(on_model),
                }
            }
        }
        OAuthCall::Revoke {
            client,
            secret,
            token: pick,
        } => {
            let who = caller(cast, client, secret);
            let refused = over_long(&who);
            let call = Call::Revoke {
                caller: who,
                token: cast.bearer(pick),
            };
            if refused {
                CheckedKind::Refused(call)
            } else {
                CheckedKind::Call(call)
            }
        }
        OAuthCall::Introspect {
            client,
            secret,
            token: pick,
        } => {
            let who = caller(cast, client, secret);
            let refused = who.auth.client_id.len() > MAX_CLIENT_ID;
            let call = Call::Introspect {
                caller: who,
                token: cast.bearer(pick),
            };
            if refused {
                CheckedKind::Refused(call)
            } else {
                CheckedKind::Call(call)
            }
        }
    };
    Checked { shown, kind }
}

/// The token endpoint as RFC 6749 dispatches it (§4.1.3, §6, §4.4): on `grant_type`, then
/// the parameters that grant requires, then the model's rules for it.
fn token_endpoint(
    m: &mut Model,
    request: &TokenRequest,
    who: &Caller,
    code: Option<(Option<usize>, String)>,
    refresh: Option<Bearer>,
) -> StepResult {
    let missing = |name| Err(Rejection::MissingParameter { name });
    match request.grant_type.as_str() {
        "authorization_code" => {
            let Some((code, _)) = code else {
                return missing("code");
            };
            let Some(redirect_uri) = &request.redirect_uri else {
                return missing("redirect_uri");
            };
            issued(m.exchange_code(
                who.ix,
                who.presented,
                code,
                redirect_uri,
                request.code_verifier.as_deref(),
            ))
        }
        "refresh_token" => {
            let Some(token) = refresh else {
                return missing("refresh_token");
            };
            issued(m.refresh(who.ix, who.presented, token.ix, request.scope.as_deref()))
        }
        "client_credentials" => {
            issued(m.client_credentials(who.ix, who.presented, request.scope.as_deref()))
        }
        _ => Err(Rejection::UnsupportedGrantType),
    }
}
