//! The reference model: the registry and the OAuth2 server as plain data and plain functions.
//! No sqlx, no tokio, no randomness — read it as the specification.
//!
//! Things are named by the order in which they came to be: the third user is user 2, the first
//! token issued is token 0. Time is a value (`now`), moved only by [`Model::advance`].
//!
//! Every operation checks its rules in a fixed order and refuses with the first that fails; the
//! system checks in the same order, so the harness can require the *same*
//! [`Rejection`](crate::domain::Rejection).
//! Input validation (what is a crate name, a version, a scope, a redirect URI) is shared with
//! the system through `domain/`; what this model states independently is behaviour over time:
//! who owns what, which codes and tokens are alive, what a reuse revokes — and, in
//! [`rules`], expiry and PKCE, short rules where a slip would otherwise go unseen.

mod oauth;
mod registry;
pub mod rules;
pub mod state;

pub use oauth::{Introspected, Issued, Presented};
pub use registry::{CrateSummary, PublishKind, VersionSummary};

use crate::clock::Epoch;
use crate::domain::{Login, Scope};

/// Index of a user, client, code, grant or token: its position in issue order.
pub type Ix = usize;

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub now: Epoch,
    users: Vec<User>,
    clients: Vec<Client>,
    codes: Vec<Code>,
    grants: Vec<Grant>,
    tokens: Vec<Token>,
    crates: Vec<Crate>,
}

#[derive(Debug, Clone)]
struct User {
    login: Login,
}

#[derive(Debug, Clone)]
struct Client {
    confidential: bool,
    redirect_uris: Vec<String>,
    /// The widest scope the client may ask for.
    scope: Scope,
}

#[derive(Debug, Clone)]
struct Code {
    client: Ix,
    user: Ix,
    redirect_uri: String,
    scope: Scope,
    challenge: Option<String>,
    expires_at: Epoch,
    redeemed: bool,
}

/// A token family: everything issued from one code (or one client credentials request),
/// through every refresh.
#[derive(Debug, Clone)]
struct Grant {
    client: Ix,
    user: Option<Ix>,
    code: Option<Ix>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    grant: Ix,
    scope: Scope,
    expires_at: Epoch,
    revoked: bool,
    /// Refresh tokens: exchanged for a successor.
    rotated: bool,
}

#[derive(Debug, Clone)]
struct Crate {
    /// As first published; later spellings of the same key do not rename it.
    name: String,
    key: String,
    owners: Vec<Ix>,
    versions: Vec<Release>,
    downloads: i64,
}

#[derive(Debug, Clone)]
struct Release {
    num: String,
    key: String,
    checksum: String,
    yanked: bool,
    downloads: i64,
}

impl Model {
    pub fn new(now: Epoch) -> Self {
        Self {
            now,
            ..Self::default()
        }
    }

    /// Time passes. It never runs backwards.
    pub fn advance(&mut self, secs: i64) {
        assert!(secs >= 0, "time runs forward");
        self.now += secs;
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn code_count(&self) -> usize {
        self.codes.len()
    }

    pub fn is_confidential(&self, client: Ix) -> bool {
        self.clients[client].confidential
    }

    pub fn login(&self, user: Ix) -> &str {
        &self.users[user].login.display
    }

    /// The tokens of one kind, as indices into all tokens, in issue order.
    pub fn tokens_of(&self, kind: TokenKind) -> Vec<Ix> {
        (0..self.tokens.len())
            .filter(|&t| self.tokens[t].kind == kind)
            .collect()
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The client a code was issued to.
    pub fn code_client(&self, code: Ix) -> Ix {
        self.codes[code].client
    }

    /// The client a token was issued to.
    pub fn token_client(&self, token: Ix) -> Ix {
        self.grants[self.tokens[token].grant].client
    }
}
