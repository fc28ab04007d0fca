//! The runner applies each op to the model and to the system, requires the same outcome from
//! both (values up to the random token strings, rejections exactly), and then requires every
//! view of open sessions to show zero once the pool is quiet.

use super::op::{Auth, GrantType, Op, Party, Pkce, RedirectAtToken, Ref, TokenRef, Verifier, pool};
use crate::clock::{Clock, ManualClock};
use crate::db::{Db, DbError};
use crate::domain::{Checksum, Rejection, pkce};
use crate::model::{self, Ix, Model, Presented, TokenKind};
use crate::oauth::{AuthorizeRequest, ClientAuth, ClientRegistration, OAuth, TokenRequest};
use crate::registry::{PublishRequest, Published, Registry};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What an operation returned, with the random parts (token strings, ids) left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Issued { refresh: bool, scope: String },
    Published(model::PublishKind),
    Checksum(String),
    Versions(Vec<model::VersionSummary>),
    Crate(model::CrateSummary),
    Introspected(model::Introspected),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => f.write_str("ok"),
            Outcome::Issued { refresh, scope } => {
                write!(f, "tokens (refresh: {refresh}) scope={scope:?}")
            }
            Outcome::Published(kind) => write!(f, "{kind:?}"),
            Outcome::Checksum(c) => write!(f, "checksum {}…", &c[..c.len().min(8)]),
            Outcome::Versions(v) => {
                let list: Vec<String> = v
                    .iter()
                    .map(|v| format!("{}{}", v.num, if v.yanked { " (yanked)" } else { "" }))
                    .collect();
                write!(f, "[{}]", list.join(", "))
            }
            Outcome::Crate(c) => write!(
                f,
                "{} owners={:?} downloads={}",
                c.name, c.owners, c.downloads
            ),
            Outcome::Introspected(i) => match (&i.active, &i.scope) {
                (true, Some(scope)) => write!(f, "active {scope:?}"),
                _ => f.write_str("inactive"),
            },
        }
    }
}

pub type StepResult = Result<Outcome, Rejection>;

fn show(result: &StepResult) -> String {
    match result {
        Ok(o) => o.to_string(),
        Err(r) => format!("{} ({})", r.name(), r.code()),
    }
}

/// Why a run failed.
#[derive(Debug, Clone)]
pub enum Violation {
    /// Model and system disagree.
    Disagreement { model: String, system: String },
    /// The storage failed where no fault was injected.
    Storage(String),
    /// A session was still open at quiescence, or after close.
    Leak(String),
}

/// A failed run: the transcript up to and including the failing step.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: usize,
    pub violation: Violation,
    pub transcript: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.transcript {
            writeln!(f, "{line}")?;
        }
        match &self.violation {
            Violation::Disagreement { model, system } => {
                write!(
                    f,
                    "step {}: model says {model}, system says {system}",
                    self.step
                )
            }
            Violation::Storage(e) => write!(f, "step {}: storage error: {e}", self.step),
            Violation::Leak(e) => write!(f, "step {}: {e}", self.step),
        }
    }
}

/// Counts of what a run reached: outcomes by op kind.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// (op kind, outcome kind) → count; the outcome is `ok` or a rejection's name.
    pub outcomes: BTreeMap<(&'static str, &'static str), u64>,
    pub steps: u64,
}

impl Coverage {
    pub fn record(&mut self, op: &'static str, outcome: &'static str) {
        *self.outcomes.entry((op, outcome)).or_default() += 1;
        self.steps += 1;
    }

    pub fn merge(&mut self, other: &Coverage) {
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(*k).or_default() += v;
        }
        self.steps += other.steps;
    }

    fn reached(&self, op: Option<&str>, outcome: Option<&str>) -> bool {
        self.outcomes
            .keys()
            .any(|(o, r)| op.is_none_or(|op| op == *o) && outcome.is_none_or(|x| x == *r))
    }

    /// Op kinds and rejection kinds never reached.
    pub fn missing(&self) -> Vec<&'static str> {
        use strum::IntoEnumIterator;
        let ops = Op::KINDS
            .iter()
            .copied()
            .filter(|k| !self.reached(Some(k), None));
        let rejections = Rejection::iter()
            .map(|r| r.name())
            .filter(|k| !self.reached(None, Some(k)));
        ops.chain(rejections).collect()
    }
}

impl fmt::Display for Coverage {
    /// One line per op kind: its total, then its outcomes by count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_op: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for ((op, outcome), n) in &self.outcomes {
            by_op.entry(op).or_default().push((outcome, *n));
        }
        writeln!(f, "{:<20} {:>7}  outcomes", "op", "count")?;
        for (op, mut outcomes) in by_op {
            outcomes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            let total: u64 = outcomes.iter().map(|(_, n)| n).sum();
            let list: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            writeln!(f, "{op:<20} {total:>7}  {}", list.join(", "))?;
        }
        write!(f, "{} steps", self.steps)
    }
}

/// How long a step may take to return every session. Generous: a slow CI machine is not a leak.
pub const QUIESCE_DEADLINE: Duration = Duration::from_secs(5);

struct ClientKeys {
    client_id: String,
    secret: Option<String>,
}

struct CodeKeys {
    code: String,
    redirect_uri: String,
    verifier: Option<String>,
}

/// The system under test and the model, side by side, with the system's secrets by position.
pub struct Runner {
    model: Model,
    clock: Arc<ManualClock>,
    db: Db,
    registry: Registry,
    oauth: OAuth,
    clients: Vec<ClientKeys>,
    codes: Vec<CodeKeys>,
    tokens: Vec<String>,
    /// The code the previous step issued, if it issued one (`Ref::Previous`).
    previous_code: Option<Ix>,
    settle: Duration,
    /// The code this step issued, if any.
    issued_code: Option<Ix>,
    transcript: Vec<String>,
    pub coverage: Coverage,
}

const UNKNOWN_CLIENT: &str = "lpcl_unknown";
const UNKNOWN_TOKEN: &str = "lpa_never-issued";
const WRONG_SECRET: &str = "lps_wrong";

impl Runner {
    pub fn new(db: Db) -> Self {
        let clock = Arc::new(ManualClock::new());
        Self {
            model: Model::new(clock.epoch()),
            registry: Registry::new(db.clone(), clock.clone()),
            oauth: OAuth::new(db.clone(), clock.clone()),
            clock,
            db,
            clients: Vec::new(),
            codes: Vec::new(),
            tokens: Vec::new(),
            previous_code: None,
            settle: QUIESCE_DEADLINE,
            issued_code: None,
            transcript: Vec::new(),
            coverage: Coverage::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// How long a step may take to return its sessions before it counts as a leak.
    pub fn with_settle_deadline(mut self, deadline: Duration) -> Self {
        self.settle = deadline;
        self
    }

    /// One line per step so far: the op and what the system answered.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    /// Runs a whole sequence; stops at the first violation.
    pub async fn run(&mut self, ops: &[Op]) -> Result<(), Failure> {
        for op in ops {
            self.step(op).await?;
        }
        Ok(())
    }

    /// Closes the database and requires every view at zero.
    pub async fn close(&self) -> Result<(), Failure> {
        match self.db.close(self.settle).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(
                self.transcript.len(),
                Violation::Leak(format!("at close: {e}")),
            )),
        }
    }

    /// One op on both sides, compared; then the session views at quiescence.
    pub async fn step(&mut self, op: &Op) -> Result<(), Failure> {
        let n = self.transcript.len() + 1;
        self.previous_code = self.issued_code.take();
        let (model, system) = self.apply(op).await;
        self.transcript.push(format!(
            "{n:>3}. {op} -> {}",
            match &system {
                Ok(result) => show(result),
                Err(e) => format!("storage error: {e}"),
            }
        ));
        let system = match system {
            Ok(result) => result,
            Err(e) => return Err(self.fail(n, Violation::Storage(e.to_string()))),
        };
        let outcome_kind = match &system {
            Ok(_) => "ok",
            Err(r) => r.name(),
        };
        self.coverage.record(op.kind(), outcome_kind);
        if model != system {
            let violation = Violation::Disagreement {
                model: show(&model),
                system: show(&system),
            };
            return Err(self.fail(n, violation));
        }
        if let Err(e) = self.db.quiesce(self.settle).await {
            return Err(self.fail(n, Violation::Leak(e.to_string())));
        }
        Ok(())
    }

    fn fail(&self, step: usize, violation: Violation) -> Failure {
        Failure {
            step,
            violation,
            transcript: self.transcript.clone(),
        }
    }

    /// The n-th most recent of `count` things (`Nth(0)` is the latest). `Previous` is resolved
    /// by the caller, for the kinds a step can issue.
    fn recent(r: Ref, count: usize) -> Option<Ix> {
        match r {
            Ref::Nth(n) if count > 0 => Some(count - 1 - usize::from(n) % count),
            _ => None,
        }
    }

    /// A client by party: the owner of the code or token concerned (the latest client if
    /// there is none), or another.
    fn party(
        &self,
        party: Party,
        owner: Option<Ix>,
        auth: Auth,
    ) -> (Option<Ix>, Presented, ClientAuth) {
        match (party, owner) {
            (Party::Owner, Some(owner)) => self.client_at(Some(owner), auth),
            (Party::Owner, None) => self.client(Ref::Nth(0), auth),
            (Party::Other(r), _) => self.client(r, auth),
        }
    }

    fn client(&self, r: Ref, auth: Auth) -> (Option<Ix>, Presented, ClientAuth) {
        self.client_at(Self::recent(r, self.clients.len()), auth)
    }

    fn client_at(&self, ix: Option<Ix>, auth: Auth) -> (Option<Ix>, Presented, ClientAuth) {
        let confidential = ix.is_some_and(|i| self.model.is_confidential(i));
        let presented = match (auth, confidential) {
            (Auth::Proper, true) => Presented::Right,
            (Auth::Proper, false) | (Auth::Absent, _) => Presented::Absent,
            (Auth::Wrong, _) => Presented::Wrong,
        };
        let keys = ix.map(|i| &self.clients[i]);
        let client_secret = match presented {
            Presented::Right => keys.and_then(|k| k.secret.clone()),
            Presented::Wrong => Some(WRONG_SECRET.to_owned()),
            Presented::Absent => None,
        };
        let client_id = keys.map_or(UNKNOWN_CLIENT.to_owned(), |k| k.client_id.clone());
        (
            ix,
            presented,
            ClientAuth {
                client_id,
                client_secret,
            },
        )
    }

    fn token(&self, r: TokenRef) -> (Option<Ix>, String) {
        let pick = |kind, n: u8| {
            let of_kind = self.model.tokens_of(kind);
            Self::recent(Ref::Nth(n), of_kind.len()).map(|i| of_kind[i])
        };
        let ix = match r {
            TokenRef::Access(n) => pick(TokenKind::Access, n),
            TokenRef::Refresh(n) => pick(TokenKind::Refresh, n),
            TokenRef::Missing => None,
        };
        let text = ix.map_or(UNKNOWN_TOKEN.to_owned(), |i| self.tokens[i].clone());
        (ix, text)
    }

    /// Records tokens the system issued, at the positions the model gave them.
    fn issued(
        &mut self,
        model: &Result<model::Issued, Rejection>,
        system: &crate::Result<crate::oauth::TokenResponse>,
    ) {
        if let (Ok(m), Ok(s)) = (model, system) {
            assert_eq!(
                m.access,
                self.tokens.len(),
                "runner lost track of token positions"
            );
            self.tokens.push(s.access_token.expose().to_owned());
            if let (Some(r), Some(t)) = (m.refresh, &s.refresh_token) {
                assert_eq!(r, self.tokens.len(), "runner lost track of token positions");
                self.tokens.push(t.expose().to_owned());
            }
        }
    }

    async fn apply(&mut self, op: &Op) -> (StepResult, Result<StepResult, DbError>) {
        use pool::*;
        let m = &mut self.model;
        match *op {
            Op::Advance { secs } => {
                m.advance(i64::from(secs));
                self.clock.advance_secs(i64::from(secs));
                (Ok(Outcome::Done), Ok(Ok(Outcome::Done)))
            }
            Op::CreateUser { login } => {
                let login = pick(LOGINS, login);
                let model = m.create_user(login).map(|_| Outcome::Done);
                let system = self.registry.create_user(login).await;
                (model, split(system.map(|_| Outcome::Done)))
            }
            Op::RegisterClient {
                confidential,
                name,
                redirects,
                scope,
            } => {
                let registration = ClientRegistration {
                    name: pick(CLIENT_NAMES, name).to_owned(),
                    confidential,
                    redirect_uris: registrations(redirects),
                    scope: pick(SCOPES, scope).to_owned(),
                };
                let model = m
                    .register_client(
                        &registration.name,
                        confidential,
                        &registration.redirect_uris,
                        &registration.scope,
                    )
                    .map(|_| Outcome::Done);
                let system = self.oauth.register_client(&registration).await;
                if let (Ok(_), Ok(registered)) = (&model, &system) {
                    self.clients.push(ClientKeys {
                        client_id: registered.client_id.clone(),
                        secret: registered
                            .client_secret
                            .as_ref()
                            .map(|s| s.expose().to_owned()),
                    });
                }
                (model, split(system.map(|_| Outcome::Done)))
            }
            Op::Authorize {
                client,
                login,
                redirect,
                scope,
                pkce: choice,
            } => {
                let (ix, _, auth) = self.client(client, Auth::Proper);
                let verifier = format!("verifier-{:0>40}", self.codes.len());
                let (challenge, method) = match choice {
                    Pkce::S256 => (Some(pkce::s256(&verifier)), Some("S256")),
                    Pkce::Plain => (Some(verifier.clone()), Some("plain")),
                    Pkce::MissingMethod => (Some(pkce::s256(&verifier)), None),
                    Pkce::MalformedChallenge => (Some("short".to_owned()), Some("S256")),
                    Pkce::None => (None, None),
                };
                let request = AuthorizeRequest {
                    client_id: auth.client_id,
                    redirect_uri: pool::redirect(redirect),
                    scope: scope.map(|s| pick(SCOPES, s).to_owned()),
                    code_challenge: challenge,
                    code_challenge_method: method.map(str::to_owned),
                    login: pick(LOGINS, login).to_owned(),
                };
                let model = self.model.authorize(
                    ix,
                    &request.redirect_uri,
                    request.scope.as_deref(),
                    request.code_challenge.as_deref(),
                    request.code_challenge_method.as_deref(),
                    &request.login,
                );
                let system = self.oauth.authorize(&request).await;
                if let (Ok(ix), Ok(code)) = (&model, &system) {
                    assert_eq!(*ix, self.codes.len(), "runner lost track of code positions");
                    self.issued_code = Some(*ix);
                    self.codes.push(CodeKeys {
                        code: code.code.expose().to_owned(),
                        redirect_uri: request.redirect_uri.clone(),
                        verifier: request.code_challenge.is_some().then_some(verifier),
                    });
                }
                (
                    model.map(|_| Outcome::Done),
                    split(system.map(|_| Outcome::Done)),
                )
            }
            Op::ExchangeCode {
                client,
                auth,
                code,
                redirect,
                verifier,
            } => {
                let code_ix = Self::recent(code, self.codes.len());
                let owner = code_ix.map(|c| self.model.code_client(c));
                let (ix, presented, auth) = self.party(client, owner, auth);
                let keys = code_ix.map(|c| &self.codes[c]);
                let code_text = keys.map_or("lpc_never-issued".to_owned(), |k| k.code.clone());
                let redirect_uri = match (redirect, keys) {
                    (RedirectAtToken::Same, Some(k)) => k.redirect_uri.clone(),
                    (RedirectAtToken::Same, None) => pool::redirect(0),
                    (RedirectAtToken::Pool(i), _) => pool::redirect(i),
                };
                let verifier = match verifier {
                    Verifier::Proper => Some(
                        keys.and_then(|k| k.verifier.clone())
                            .unwrap_or_else(|| "v".repeat(43)),
                    ),
                    Verifier::Wrong => Some("w".repeat(43)),
                    Verifier::Malformed => Some("short".to_owned()),
                    Verifier::Absent => None,
                };
                let model = self.model.exchange_code(
                    ix,
                    presented,
                    code_ix,
                    &redirect_uri,
                    verifier.as_deref(),
                );
                let system = self
                    .oauth
                    .exchange_code(&auth, &code_text, &redirect_uri, verifier.as_deref())
                    .await;
                self.issued(&model, &system);
                (model.map(issued), split(system.map(response)))
            }
            Op::Refresh {
                client,
                auth,
                token,
                scope,
            } => {
                let (token_ix, text) = self.token(token);
                let owner = token_ix.map(|t| self.model.token_client(t));
                let (ix, presented, auth) = self.party(client, owner, auth);
                let scope = scope.map(|s| pick(SCOPES, s));
                let model = self.model.refresh(ix, presented, token_ix, scope);
                let system = self.oauth.refresh(&auth, &text, scope).await;
                self.issued(&model, &system);
                (model.map(issued), split(system.map(response)))
            }
            Op::ClientCredentials {
                client,
                auth,
                scope,
            } => {
                let (ix, presented, auth) = self.client(client, auth);
                let scope = scope.map(|s| pick(SCOPES, s));
                let model = self.model.client_credentials(ix, presented, scope);
                let system = self.oauth.client_credentials(&auth, scope).await;
                self.issued(&model, &system);
                (model.map(issued), split(system.map(response)))
            }
            Op::TokenEndpoint { client, grant } => {
                let (_, _, auth) = self.client(client, Auth::Proper);
                let (grant_type, model) = match grant {
                    GrantType::Unsupported => ("password", Rejection::UnsupportedGrantType),
                    GrantType::CodeWithoutCode => (
                        "authorization_code",
                        Rejection::MissingParameter { name: "code" },
                    ),
                };
                let request = TokenRequest {
                    grant_type: grant_type.to_owned(),
                    client_id: auth.client_id,
                    client_secret: auth.client_secret,
                    redirect_uri: Some(pool::redirect(0)),
                    ..TokenRequest::default()
                };
                let system = self.oauth.token(&request).await;
                (Err(model), split(system.map(response)))
            }
            Op::Revoke {
                client,
                auth,
                token,
            } => {
                let (token_ix, text) = self.token(token);
                let owner = token_ix.map(|t| self.model.token_client(t));
                let (ix, presented, auth) = self.party(client, owner, auth);
                let model = self
                    .model
                    .revoke(ix, presented, token_ix)
                    .map(|()| Outcome::Done);
                let system = self.oauth.revoke(&auth, &text).await;
                (model, split(system.map(|()| Outcome::Done)))
            }
            Op::Introspect {
                client,
                auth,
                token,
            } => {
                let (token_ix, text) = self.token(token);
                let owner = token_ix.map(|t| self.model.token_client(t));
                let (ix, presented, auth) = self.party(client, owner, auth);
                let model = self
                    .model
                    .introspect(ix, presented, token_ix)
                    .map(Outcome::Introspected);
                let system = self.oauth.introspect(&auth, &text).await.map(|i| {
                    Outcome::Introspected(model::Introspected {
                        active: i.active,
                        scope: i.scope,
                        token_type: i.token_type,
                        username: i.username,
                        exp: i.exp,
                    })
                });
                (model, split(system))
            }
            Op::Publish {
                token,
                name,
                version,
                bad_checksum,
            } => {
                let (token_ix, text) = self.token(token);
                let (name, version) = (pick(CRATES, name), pick(VERSIONS, version));
                let checksum = if bad_checksum {
                    "not-a-checksum".to_owned()
                } else {
                    Checksum::of(format!("{name}@{version}").as_bytes()).0
                };
                let model = self
                    .model
                    .publish(token_ix, name, version, &checksum)
                    .map(Outcome::Published);
                let request = PublishRequest {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    checksum,
                };
                let system = self.registry.publish(&text, &request).await.map(|p| {
                    Outcome::Published(match p {
                        Published::NewCrate => model::PublishKind::NewCrate,
                        Published::NewVersion => model::PublishKind::NewVersion,
                    })
                });
                (model, split(system))
            }
            Op::SetYanked {
                token,
                name,
                version,
                yanked,
            } => {
                let (token_ix, text) = self.token(token);
                let (name, version) = (pick(CRATES, name), pick(VERSIONS, version));
                let model = self
                    .model
                    .set_yanked(token_ix, name, version, yanked)
                    .map(|()| Outcome::Done);
                let system = self.registry.set_yanked(&text, name, version, yanked).await;
                (model, split(system.map(|()| Outcome::Done)))
            }
            Op::AddOwner { token, name, login } => {
                let (token_ix, text) = self.token(token);
                let (name, login) = (pick(CRATES, name), pick(LOGINS, login));
                let model = self
                    .model
                    .add_owner(token_ix, name, login)
                    .map(|()| Outcome::Done);
                let system = self.registry.add_owner(&text, name, login).await;
                (model, split(system.map(|()| Outcome::Done)))
            }
            Op::RemoveOwner { token, name, login } => {
                let (token_ix, text) = self.token(token);
                let (name, login) = (pick(CRATES, name), pick(LOGINS, login));
                let model = self
                    .model
                    .remove_owner(token_ix, name, login)
                    .map(|()| Outcome::Done);
                let system = self.registry.remove_owner(&text, name, login).await;
                (model, split(system.map(|()| Outcome::Done)))
            }
            Op::Download { name, version } => {
                let (name, version) = (pick(CRATES, name), pick(VERSIONS, version));
                let model = self.model.download(name, version).map(Outcome::Checksum);
                let system = self.registry.download(name, version).await;
                (model, split(system.map(Outcome::Checksum)))
            }
            Op::Versions { name } => {
                let name = pick(CRATES, name);
                let model = self.model.versions(name).map(Outcome::Versions);
                let system = self.registry.versions(name).await.map(|list| {
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
                (model, split(system))
            }
            Op::CrateInfo { name } => {
                let name = pick(CRATES, name);
                let model = self.model.crate_info(name).map(Outcome::Crate);
                let system = self.registry.crate_info(name).await.map(|c| {
                    Outcome::Crate(model::CrateSummary {
                        name: c.name,
                        downloads: c.downloads,
                        owners: c.owners,
                    })
                });
                (model, split(system))
            }
        }
    }
}

fn issued(i: model::Issued) -> Outcome {
    Outcome::Issued {
        refresh: i.refresh.is_some(),
        scope: i.scope,
    }
}

fn response(r: crate::oauth::TokenResponse) -> Outcome {
    Outcome::Issued {
        refresh: r.refresh_token.is_some(),
        scope: r.scope,
    }
}

/// A system result, with storage errors set apart from rejections.
fn split(result: crate::Result<Outcome>) -> Result<StepResult, DbError> {
    match result {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(crate::Error::Rejected(r)) => Ok(Err(r)),
        Err(crate::Error::Db(e)) => Err(e),
    }
}
