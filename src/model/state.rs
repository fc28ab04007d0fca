//! The whole state in a canonical form: what the system's tables must equal after every op
//! whose outcome is not known (a cancelled future, a lost connection): the state before the op,
//! or after it, never anything between.

use super::{Ix, Model, TokenKind};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Logins, in creation order.
    pub users: Vec<String>,
    pub clients: Vec<ClientState>,
    pub codes: Vec<CodeState>,
    pub grants: Vec<GrantState>,
    /// Grouped by grant, in issue order within one (see [`State::group_tokens`]).
    pub tokens: Vec<TokenState>,
    pub crates: Vec<CrateState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientState {
    pub confidential: bool,
    /// Sorted, without duplicates.
    pub redirect_uris: Vec<String>,
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    pub client: Ix,
    pub user: Ix,
    pub redirect_uri: String,
    pub scope: String,
    pub challenge: Option<String>,
    pub expires_at: i64,
    pub redeemed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantState {
    pub client: Ix,
    pub user: Option<Ix>,
    pub code: Option<Ix>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub kind: TokenKind,
    pub grant: Ix,
    pub scope: String,
    pub expires_at: i64,
    pub revoked: bool,
    pub rotated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateState {
    pub name: String,
    /// Users by position, sorted.
    pub owners: Vec<Ix>,
    pub downloads: i64,
    pub versions: Vec<VersionState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionState {
    pub num: String,
    pub checksum: String,
    pub yanked: bool,
    pub downloads: i64,
}

impl State {
    /// Orders tokens by grant, keeping issue order within a grant. Concurrent grants on
    /// PostgreSQL take ids from one sequence and interleave them; within one family the grant's
    /// lock makes refreshes take turns. So this is the order every serial history agrees on.
    pub fn group_tokens(&mut self) {
        self.tokens.sort_by_key(|token| token.grant);
    }
}

impl Model {
    pub fn state(&self) -> State {
        let mut state = State {
            users: self.users.iter().map(|u| u.login.display.clone()).collect(),
            clients: self
                .clients
                .iter()
                .map(|c| {
                    let mut redirect_uris = c.redirect_uris.clone();
                    redirect_uris.sort();
                    redirect_uris.dedup();
                    ClientState {
                        confidential: c.confidential,
                        redirect_uris,
                        scope: c.scope.to_string(),
                    }
                })
                .collect(),
            codes: self
                .codes
                .iter()
                .map(|c| CodeState {
                    client: c.client,
                    user: c.user,
                    redirect_uri: c.redirect_uri.clone(),
                    scope: c.scope.to_string(),
                    challenge: c.challenge.clone(),
                    expires_at: c.expires_at,
                    redeemed: c.redeemed,
                })
                .collect(),
            grants: self
                .grants
                .iter()
                .map(|g| GrantState {
                    client: g.client,
                    user: g.user,
                    code: g.code,
                })
                .collect(),
            tokens: self
                .tokens
                .iter()
                .map(|t| TokenState {
                    kind: t.kind,
                    grant: t.grant,
                    scope: t.scope.to_string(),
                    expires_at: t.expires_at,
                    revoked: t.revoked,
                    rotated: t.rotated,
                })
                .collect(),
            crates: self
                .crates
                .iter()
                .map(|c| {
                    let mut owners = c.owners.clone();
                    owners.sort_unstable();
                    CrateState {
                        name: c.name.clone(),
                        owners,
                        downloads: c.downloads,
                        versions: c
                            .versions
                            .iter()
                            .map(|v| VersionState {
                                num: v.num.clone(),
                                checksum: v.checksum.clone(),
                                yanked: v.yanked,
                                downloads: v.downloads,
                            })
                            .collect(),
                    }
                })
                .collect(),
        };
        state.group_tokens();
        state
    }
}
