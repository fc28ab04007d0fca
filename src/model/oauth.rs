//! OAuth2, as rules. The numbers refer to DESIGN.md's twelve.

use super::rules::{expired, pkce_challenge, pkce_verifier};
use super::{Client, Code, Grant, Ix, Model, Token, TokenKind};
use crate::domain::redirect::{self, MAX_REDIRECT_URI, MAX_REDIRECT_URIS};
use crate::domain::{
    ACCESS_TOKEN_TTL, CODE_TTL, Login, REFRESH_TOKEN_TTL, Rejection, Scope, check_len,
};

/// What a client presents as its secret. Only a confidential client presenting its own
/// secret, or a public client presenting none, is authenticated (rule 11 covers how).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presented {
    Absent,
    Right,
    Wrong,
}

/// Tokens issued by a grant: indices of the new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access: Ix,
    pub refresh: Option<Ix>,
    pub scope: String,
}

/// An introspection answer (RFC 7662). Inactive tokens reveal nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Introspected {
    pub active: bool,
    pub scope: Option<String>,
    pub token_type: Option<&'static str>,
    pub username: Option<String>,
    pub exp: Option<i64>,
}

/// Longest client secret, code, token or verifier a request may carry.
const MAX_SECRET: usize = 256;
const MAX_CLIENT_NAME: usize = 100;

impl Model {
    /// Registration: a printable name, 1 to 8 valid redirect URIs, a non-empty scope.
    pub fn register_client(
        &mut self,
        name: &str,
        confidential: bool,
        redirect_uris: &[String],
        scope: &str,
    ) -> Result<Ix, Rejection> {
        check_len("client_name", name, MAX_CLIENT_NAME)?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(Rejection::InvalidClientName);
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(Rejection::TooMany {
                what: "redirect URIs",
                max: MAX_REDIRECT_URIS,
            });
        }
        if redirect_uris.is_empty() {
            return Err(Rejection::InvalidRedirectUri);
        }
        for uri in redirect_uris {
            redirect::validate(uri)?;
        }
        let scope = Scope::parse(scope)?;
        if scope.is_empty() {
            return Err(Rejection::InvalidScope);
        }
        self.clients.push(Client {
            confidential,
            redirect_uris: redirect_uris.to_vec(),
            scope,
        });
        Ok(self.clients.len() - 1)
    }

    /// The authorization endpoint, after the user consented. `client: None` is an unknown
    /// client id. Rule 1: the redirect URI must match a registered one (loopback: any port);
    /// rule 5: PKCE is S256 only, and required of public clients.
    pub fn authorize(
        &mut self,
        client: Option<Ix>,
        redirect_uri: &str,
        scope: Option<&str>,
        challenge: Option<&str>,
        challenge_method: Option<&str>,
        login: &str,
    ) -> Result<Ix, Rejection> {
        check_len("redirect_uri", redirect_uri, MAX_REDIRECT_URI)?;
        let login = Login::parse(login)?;
        let client_ix = client.ok_or(Rejection::UnknownClient)?;
        let client = &self.clients[client_ix];
        if !client
            .redirect_uris
            .iter()
            .any(|registered| redirect::matches(registered, redirect_uri))
        {
            return Err(Rejection::RedirectUriMismatch);
        }
        let scope = requested_scope(scope, &client.scope)?;
        if !client.scope.covers(&scope) {
            return Err(Rejection::ScopeNotAllowed);
        }
        let challenge = pkce_challenge(challenge, challenge_method)?;
        if !client.confidential && challenge.is_none() {
            return Err(Rejection::PkceRequired);
        }
        let user = self
            .user_by_login(&login.key)
            .ok_or(Rejection::UnknownUser)?;
        self.codes.push(Code {
            client: client_ix,
            user,
            redirect_uri: redirect_uri.to_owned(),
            scope,
            challenge,
            // Rule 2: a code lives at most 10 minutes.
            expires_at: self.now + CODE_TTL,
            redeemed: false,
        });
        Ok(self.codes.len() - 1)
    }

    /// Redeeming a code (rules 2–5). `code: None` is a code never issued.
    pub fn exchange_code(
        &mut self,
        client: Option<Ix>,
        presented: Presented,
        code: Option<Ix>,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<Issued, Rejection> {
        check_len("redirect_uri", redirect_uri, MAX_REDIRECT_URI)?;
        if let Some(v) = verifier {
            check_len("code_verifier", v, MAX_SECRET)?;
        }
        let client = self.authenticate(client, presented)?;
        let code_ix = code.ok_or(Rejection::CodeUnknown)?;
        let code = &self.codes[code_ix];
        // Rule 3: a second redemption revokes everything the first one issued.
        if code.redeemed {
            if let Some(grant) = self.grants.iter().position(|g| g.code == Some(code_ix)) {
                self.revoke_grant(grant);
            }
            return Err(Rejection::CodeReused);
        }
        // Rule 4: the code is bound to its client and redirect URI.
        if code.client != client {
            return Err(Rejection::CodeClientMismatch);
        }
        if expired(self.now, code.expires_at) {
            return Err(Rejection::CodeExpired);
        }
        if code.redirect_uri != redirect_uri {
            return Err(Rejection::CodeRedirectMismatch);
        }
        pkce_verifier(code.challenge.as_deref(), verifier)?;
        let (user, scope) = (code.user, code.scope.clone());
        self.codes[code_ix].redeemed = true;
        let grant = self.new_grant(client, Some(user), Some(code_ix));
        Ok(self.issue(grant, &scope, Some(&scope)))
    }

    /// Refreshing (rules 6, 7): the refresh token rotates; the access scope may only narrow;
    /// a rotated-out token coming back revokes its whole family.
    pub fn refresh(
        &mut self,
        client: Option<Ix>,
        presented: Presented,
        token: Option<Ix>,
        scope: Option<&str>,
    ) -> Result<Issued, Rejection> {
        let requested = scope
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .transpose()?;
        let client = self.authenticate(client, presented)?;
        let token_ix = token
            .filter(|&t| self.tokens[t].kind == TokenKind::Refresh)
            .ok_or(Rejection::RefreshUnknown)?;
        let token = &self.tokens[token_ix];
        let grant = token.grant;
        if self.grants[grant].client != client {
            return Err(Rejection::RefreshClientMismatch);
        }
        if token.revoked {
            return Err(Rejection::RefreshRevoked);
        }
        if token.rotated {
            self.revoke_grant(grant);
            return Err(Rejection::RefreshReused);
        }
        if expired(self.now, token.expires_at) {
            return Err(Rejection::RefreshExpired);
        }
        let granted = token.scope.clone();
        let access_scope = requested.unwrap_or_else(|| granted.clone());
        if !granted.covers(&access_scope) {
            return Err(Rejection::ScopeWidened);
        }
        self.tokens[token_ix].rotated = true;
        Ok(self.issue(grant, &access_scope, Some(&granted)))
    }

    /// Client credentials (rule 8): confidential clients only, and never a refresh token.
    pub fn client_credentials(
        &mut self,
        client: Option<Ix>,
        presented: Presented,
        scope: Option<&str>,
    ) -> Result<Issued, Rejection> {
        let client = self.authenticate(client, presented)?;
        if !self.clients[client].confidential {
            return Err(Rejection::UnauthorizedClient);
        }
        let allowed = &self.clients[client].scope;
        let scope = requested_scope(scope, allowed)?;
        if !allowed.covers(&scope) {
            return Err(Rejection::ScopeNotAllowed);
        }
        let grant = self.new_grant(client, None, None);
        Ok(self.issue(grant, &scope, None))
    }

    /// Revocation (rule 9): success for unknown and foreign tokens, which stay as they are.
    /// A refresh token takes its family with it; an access token goes alone.
    pub fn revoke(
        &mut self,
        client: Option<Ix>,
        presented: Presented,
        token: Option<Ix>,
    ) -> Result<(), Rejection> {
        let client = self.authenticate(client, presented)?;
        let Some(token) = token else {
            return Ok(());
        };
        let grant = self.tokens[token].grant;
        if self.grants[grant].client != client {
            return Ok(());
        }
        match self.tokens[token].kind {
            TokenKind::Refresh => self.revoke_grant(grant),
            TokenKind::Access => self.tokens[token].revoked = true,
        }
        Ok(())
    }

    /// Introspection (rule 10): the caller authenticates; a token that is unknown, another
    /// client's, revoked, rotated out or expired is just inactive.
    pub fn introspect(
        &self,
        client: Option<Ix>,
        presented: Presented,
        token: Option<Ix>,
    ) -> Result<Introspected, Rejection> {
        let caller = self.authenticate(client, presented)?;
        let Some(t) = token.map(|t| &self.tokens[t]) else {
            return Ok(Introspected::default());
        };
        let grant = &self.grants[t.grant];
        let active =
            grant.client == caller && !t.revoked && !t.rotated && !expired(self.now, t.expires_at);
        if !active {
            return Ok(Introspected::default());
        }
        Ok(Introspected {
            active,
            scope: Some(t.scope.to_string()),
            token_type: Some(match t.kind {
                TokenKind::Access => "access_token",
                TokenKind::Refresh => "refresh_token",
            }),
            username: grant.user.map(|u| self.users[u].login.display.clone()),
            exp: Some(t.expires_at),
        })
    }

    /// A bearer access token at the registry: the user it acts for and its scope.
    pub(super) fn bearer(&self, token: Option<Ix>) -> Result<(Ix, Scope), Rejection> {
        let t = token
            .map(|t| &self.tokens[t])
            .filter(|t| t.kind == TokenKind::Access)
            .ok_or(Rejection::TokenInvalid)?;
        if t.revoked || expired(self.now, t.expires_at) {
            return Err(Rejection::TokenInvalid);
        }
        let user = self.grants[t.grant].user.ok_or(Rejection::TokenHasNoUser)?;
        Ok((user, t.scope.clone()))
    }

    fn authenticate(&self, client: Option<Ix>, presented: Presented) -> Result<Ix, Rejection> {
        let client_ix = client.ok_or(Rejection::ClientAuthFailed)?;
        let ok = match (self.clients[client_ix].confidential, presented) {
            (true, Presented::Right) | (false, Presented::Absent) => true,
            (true, Presented::Absent | Presented::Wrong)
            | (false, Presented::Wrong | Presented::Right) => false,
        };
        if ok {
            Ok(client_ix)
        } else {
            Err(Rejection::ClientAuthFailed)
        }
    }

    fn new_grant(&mut self, client: Ix, user: Option<Ix>, code: Option<Ix>) -> Ix {
        self.grants.push(Grant { client, user, code });
        self.grants.len() - 1
    }

    fn issue(&mut self, grant: Ix, access_scope: &Scope, refresh_scope: Option<&Scope>) -> Issued {
        let access = self.push_token(TokenKind::Access, grant, access_scope, ACCESS_TOKEN_TTL);
        let refresh = refresh_scope
            .map(|scope| self.push_token(TokenKind::Refresh, grant, scope, REFRESH_TOKEN_TTL));
        Issued {
            access,
            refresh,
            scope: access_scope.to_string(),
        }
    }

    fn push_token(&mut self, kind: TokenKind, grant: Ix, scope: &Scope, ttl: i64) -> Ix {
        self.tokens.push(Token {
            kind,
            grant,
            scope: scope.clone(),
            expires_at: self.now + ttl,
            revoked: false,
            rotated: false,
        });
        self.tokens.len() - 1
    }

    fn revoke_grant(&mut self, grant: Ix) {
        for token in self.tokens.iter_mut().filter(|t| t.grant == grant) {
            token.revoked = true;
        }
    }

    pub(super) fn user_by_login(&self, key: &str) -> Option<Ix> {
        self.users.iter().position(|u| u.login.key == key)
    }
}

/// No scope, or an empty one, asks for everything the client may have.
fn requested_scope(raw: Option<&str>, default: &Scope) -> Result<Scope, Rejection> {
    match raw {
        None | Some("") => Ok(default.clone()),
        Some(raw) => Scope::parse(raw),
    }
}
