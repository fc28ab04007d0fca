//! The input targets' database: one scratch SQLite file per process with a fixed cast (users,
//! clients, codes, tokens, a crate), built through both the model and the system. An input's
//! calls run against that cast; the state is then read back and must be the model's. An input
//! that changed nothing (most: malformed input is refused before anything is written) leaves
//! the cast for the next one; one that changed something has the tables emptied and the cast
//! built again before the next input, so every input starts from the same state.

use crate::clock::{Clock, ManualClock};
use crate::db::scratch::{self, Scratch};
use crate::db::{Backend, Db, DbError, PoolConfig, SETTLE_DEADLINE, SessionViews};
use crate::domain::{Checksum, pkce};
use crate::harness::call::{Bearer, Call, Caller, Created, Secrets, System};
use crate::harness::runner::{Outcome, StepResult};
use crate::model::state::State;
use crate::model::{Ix, Model, Presented};
use crate::oauth::{AuthorizeRequest, ClientAuth, ClientRegistration, OAuth};
use crate::registry::{PublishRequest, Registry};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

/// The verifiers of the cast's codes, so an input can present the right one.
pub const VERIFIER: &str = "verifier-0000000000000000000000000000000000000000";
pub const OTHER_VERIFIER: &str = "verifier-1111111111111111111111111111111111111111";

/// A client of the cast: its position, its id and secret, and what the model calls it.
#[derive(Debug, Clone)]
pub struct CastClient {
    pub ix: Ix,
    pub client_id: String,
    pub secret: Option<String>,
    pub confidential: bool,
}

/// A code or token of the cast: its position in the model and its text.
#[derive(Debug, Clone)]
pub struct Issued {
    pub ix: Ix,
    pub text: String,
    /// The client it was issued to.
    pub client: usize,
}

/// A code or token in an input: one of the cast's (modulo how many there are) or a string
/// nobody was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Cast(u8),
    Raw(String),
}

/// The cast as built: the model's state and the system's secrets for it.
#[derive(Debug, Clone)]
pub struct Cast {
    pub model: Model,
    /// The model's state of the cast, which an input that wrote nothing leaves as it was.
    pub state: State,
    pub clients: Vec<CastClient>,
    /// Unredeemed codes: one with a challenge (`OTHER_VERIFIER`), one without.
    pub codes: Vec<Issued>,
    pub access: Vec<Issued>,
    pub refresh: Vec<Issued>,
}

impl Cast {
    /// A bearer token: any of the cast's access and refresh tokens, or the raw string.
    pub fn bearer(&self, pick: &Pick) -> Bearer {
        match pick {
            Pick::Cast(k) => {
                let all: Vec<_> = self.access.iter().chain(&self.refresh).collect();
                let t = all[usize::from(*k) % all.len()];
                Bearer {
                    ix: Some(t.ix),
                    text: t.text.clone(),
                }
            }
            Pick::Raw(text) => Bearer {
                ix: None,
                text: text.clone(),
            },
        }
    }
}

impl Cast {
    /// A client as a caller presenting `secret` (`None`: its own secret, if it has one).
    pub fn caller(&self, client: usize, secret: Option<&str>) -> Caller {
        let c = &self.clients[client % self.clients.len()];
        let (presented, client_secret) = match secret {
            None if c.confidential => (Presented::Right, c.secret.clone()),
            None => (Presented::Absent, None),
            Some(s) => (Presented::Wrong, Some(s.to_owned())),
        };
        Caller {
            ix: Some(c.ix),
            presented,
            auth: ClientAuth {
                client_id: c.client_id.clone(),
                client_secret,
            },
        }
    }
}

/// A runtime, a scratch database, and the cast (or `None` when it must be built again).
pub struct World {
    rt: tokio::runtime::Runtime,
    scratch: Option<Scratch>,
    db: Db,
    system: System,
    settle: Duration,
    cast: RefCell<Option<Cast>>,
}

/// One line of an input's transcript.
pub type Line = String;

impl World {
    /// A world on a scratch SQLite file in the temporary directory.
    pub fn new(settle: Duration) -> Result<Self, String> {
        // As the state machines' lab: sqlx's background work (returning a connection to the
        // pool, rolling back a dropped transaction) runs on a worker at once instead of
        // waiting for the next await; measured faster than a current-thread runtime.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (scratch, db) = rt
            .block_on(async {
                let scratch = Scratch::sqlite()?;
                let config = PoolConfig {
                    max_connections: 2,
                    acquire_timeout: Duration::from_secs(1),
                    ..PoolConfig::for_backend(Backend::Sqlite)
                };
                let db = Db::connect_with(&scratch.url, config).await?;
                Ok::<_, DbError>((scratch, db))
            })
            .map_err(|e| format!("cannot set up the database: {e}"))?;
        let clock = Arc::new(ManualClock::new());
        let system = System {
            registry: Registry::new(db.clone(), clock.clone()),
            oauth: OAuth::new(db.clone(), clock.clone()),
            clock,
        };
        Ok(Self {
            rt,
            scratch: Some(scratch),
            db,
            system,
            settle,
            cast: RefCell::new(None),
        })
    }

    /// Runs `calls` (built from the cast) on both sides, each compared, then requires zero
    /// open sessions and the model's state in the database.
    pub fn run(&self, calls: impl FnOnce(&Cast) -> Vec<Checked>) -> Result<(), String> {
        let result = self.run_calls(calls);
        if result.is_err() {
            // Whatever the failed input left behind is not the cast.
            *self.cast.borrow_mut() = None;
        }
        result
    }

    fn run_calls(&self, calls: impl FnOnce(&Cast) -> Vec<Checked>) -> Result<(), String> {
        self.rt.block_on(async {
            let cast = self.cast().await?;
            let mut model = cast.model.clone();
            let mut transcript: Vec<Line> = Vec::new();
            let fail = |transcript: &[Line], why: String| {
                let mut text = transcript.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                text + &why
            };
            for (n, checked) in calls(&cast).into_iter().enumerate() {
                let shown = checked.shown.clone();
                let (expected, system) = checked.run(&mut model, &self.system).await;
                let system = system.map_err(|e| {
                    fail(&transcript, format!("call {}: storage error: {e}", n + 1))
                })?;
                transcript.push(format!("{:>3}. {} -> {}", n + 1, shown, show(&system)));
                match expected {
                    Expected::Exactly(model) if model != system => {
                        return Err(fail(
                            &transcript,
                            format!("call {}: model says {}, system says {}", n + 1, show(&model), show(&system)),
                        ));
                    }
                    Expected::Refused if system.is_ok() => {
                        return Err(fail(
                            &transcript,
                            format!("call {}: an over-long field was accepted", n + 1),
                        ));
                    }
                    _ => {}
                }
            }
            if let Err(e) = self.db.quiesce(self.settle).await {
                return Err(fail(&transcript, e.to_string()));
            }
            let state = crate::harness::state::read(&self.db)
                .await
                .map_err(|e| fail(&transcript, format!("reading the state back: {e}")))?;
            let expected = model.state();
            if state != expected {
                return Err(fail(
                    &transcript,
                    format!("the database is not the model's state:\n  system {state:?}\n  model  {expected:?}"),
                ));
            }
            if expected != cast.state {
                // Something was written: the next input starts from a fresh cast.
                *self.cast.borrow_mut() = None;
            }
            Ok(())
        })
    }

    /// The cast, built first if the database no longer holds it.
    async fn cast(&self) -> Result<Cast, String> {
        if let Some(cast) = self.cast.borrow().as_ref() {
            return Ok(cast.clone());
        }
        scratch::reset(&self.db)
            .await
            .map_err(|e| format!("emptying the database: {e}"))?;
        let cast = build_cast(&self.system)
            .await
            .map_err(|e| format!("building the cast: {e}"))?;
        *self.cast.borrow_mut() = Some(cast.clone());
        Ok(cast)
    }

    /// Closes the database and requires every view at zero.
    pub fn close(mut self) -> Result<SessionViews, String> {
        let scratch = self.scratch.take();
        self.rt.block_on(async {
            let closed = self.db.close(SETTLE_DEADLINE).await;
            if let Some(scratch) = scratch {
                let _ = scratch.remove().await;
            }
            closed.map_err(|e| e.to_string())
        })
    }
}

/// What the system must answer.
pub enum Expected {
    /// Exactly the model's answer.
    Exactly(StepResult),
    /// Some refusal: a wire-level length limit the model does not state (it names clients,
    /// codes and tokens by position, not by their strings). Nothing may be written.
    Refused,
}

/// A call and how its answer is checked.
pub struct Checked {
    pub shown: String,
    pub kind: CheckedKind,
}

pub enum CheckedKind {
    /// The harness's call, both sides as the state machines apply it.
    Call(Call),
    /// A call whose model side is given separately (the token endpoint's dispatch).
    Custom {
        call: Call,
        on_model: Box<dyn FnOnce(&mut Model) -> StepResult>,
    },
    /// Refused for a length the model does not know; the model is not asked.
    Refused(Call),
}

impl Checked {
    pub fn call(shown: String, call: Call) -> Self {
        Self {
            shown,
            kind: CheckedKind::Call(call),
        }
    }

    async fn run(
        self,
        model: &mut Model,
        system: &System,
    ) -> (Expected, Result<StepResult, DbError>) {
        let (expected, call) = match self.kind {
            CheckedKind::Call(call) => (Expected::Exactly(call.on_model(model).0), call),
            CheckedKind::Custom { call, on_model } => (Expected::Exactly(on_model(model)), call),
            CheckedKind::Refused(call) => (Expected::Refused, call),
        };
        let (answer, _) = call.on_system(system).await;
        (expected, answer)
    }
}

fn show(result: &StepResult) -> String {
    match result {
        Ok(o) => o.to_string(),
        Err(r) => format!("{} ({})", r.name(), r.code()),
    }
}

/// The cast: alice and bob; a public client and a confidential one allowed everything, and a
/// confidential one allowed `yank:serde*`; alice's tokens through the public client; two
/// unredeemed codes of the confidential client (with and without PKCE); a client-credentials
/// token; serde 1.0.0 and 1.1.0 published by alice.
async fn build_cast(system: &System) -> Result<Cast, String> {
    let mut model = Model::new(system.clock.epoch());
    let mut cast = Cast {
        model: Model::default(),
        state: State::default(),
        clients: Vec::new(),
        codes: Vec::new(),
        access: Vec::new(),
        refresh: Vec::new(),
    };
    let both = async |model: &mut Model, call: &Call| -> Result<(Created, Secrets), String> {
        let (expected, created) = call.on_model(model);
        let (answer, secrets) = call.on_system(system).await;
        let answer = answer.map_err(|e| e.to_string())?;
        match (&expected, &answer) {
            (Ok(_), Ok(_)) if expected == answer => Ok((created, secrets)),
            _ => Err(format!("{call:?}: model {expected:?}, system {answer:?}")),
        }
    };
    for login in ["alice", "bob"] {
        both(&mut model, &Call::CreateUser(login.to_owned())).await?;
    }
    let everything = "publish-new publish-update yank change-owners";
    for (confidential, scope) in [
        (false, everything),
        (true, everything),
        (true, "yank:serde*"),
    ] {
        let call = Call::RegisterClient(ClientRegistration {
            name: "app".to_owned(),
            confidential,
            redirect_uris: vec![
                "https://app.example/cb".to_owned(),
                "http://127.0.0.1/cb".to_owned(),
            ],
            scope: scope.to_owned(),
        });
        if let (Created::Client(ix), Secrets::Client { client_id, secret }) =
            both(&mut model, &call).await?
        {
            cast.clients.push(CastClient {
                ix,
                client_id,
                secret,
                confidential,
            });
        }
    }
    let authorize = |client: &CastClient, verifier: Option<&str>, login: &str| Call::Authorize {
        client: Some(client.ix),
        request: AuthorizeRequest {
            client_id: client.client_id.clone(),
            redirect_uri: "https://app.example/cb".to_owned(),
            scope: None,
            code_challenge: verifier.map(pkce::s256),
            code_challenge_method: verifier.map(|_| "S256".to_owned()),
            login: login.to_owned(),
        },
        verifier: verifier.unwrap_or_default().to_owned(),
    };
    // Alice's login through the public client, redeemed.
    let public = cast.clients[0].clone();
    let (Created::Code(code), Secrets::Code(code_text)) =
        both(&mut model, &authorize(&public, Some(VERIFIER), "alice")).await?
    else {
        return Err("no code for alice".to_owned());
    };
    let exchange = Call::Exchange {
        caller: cast.caller(0, None),
        code: Some(code),
        code_text,
        redirect_uri: "https://app.example/cb".to_owned(),
        verifier: Some(VERIFIER.to_owned()),
    };
    keep_tokens(&mut cast, 0, both(&mut model, &exchange).await?);
    // Two codes of the confidential client, left for the input to redeem.
    let confidential = cast.clients[1].clone();
    for (verifier, login) in [(Some(OTHER_VERIFIER), "bob"), (None, "alice")] {
        if let (Created::Code(ix), Secrets::Code(text)) =
            both(&mut model, &authorize(&confidential, verifier, login)).await?
        {
            cast.codes.push(Issued {
                ix,
                text,
                client: 1,
            });
        }
    }
    let credentials = Call::ClientCredentials {
        caller: cast.caller(1, None),
        scope: None,
    };
    keep_tokens(&mut cast, 1, both(&mut model, &credentials).await?);
    let access = cast.access.first().cloned().ok_or("no access token")?;
    for version in ["1.0.0", "1.1.0"] {
        let publish = Call::Publish {
            token: Bearer {
                ix: Some(access.ix),
                text: access.text.clone(),
            },
            request: PublishRequest {
                name: "serde".to_owned(),
                version: version.to_owned(),
                checksum: Checksum::of(version.as_bytes()).0,
            },
        };
        both(&mut model, &publish).await?;
    }
    cast.state = model.state();
    cast.model = model;
    Ok(cast)
}

fn keep_tokens(cast: &mut Cast, client: usize, (created, secrets): (Created, Secrets)) {
    if let (Created::Tokens(issued), Secrets::Tokens { access, refresh }) = (created, secrets) {
        cast.access.push(Issued {
            ix: issued.access,
            text: access,
            client,
        });
        if let (Some(ix), Some(text)) = (issued.refresh, refresh) {
            cast.refresh.push(Issued { ix, text, client });
        }
    }
}

/// An outcome for a token answer of the model, as the harness compares them.
pub fn issued(result: Result<crate::model::Issued, crate::domain::Rejection>) -> StepResult {
    result.map(|i| Outcome::Issued {
        refresh: i.refresh.is_some(),
        scope: i.scope,
    })
}
