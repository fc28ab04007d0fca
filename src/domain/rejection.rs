//! Every way a request can be refused, as one flat enum so the harness can compare kinds exactly
//! and count that each was reached. Each maps to the code its protocol defines.

use thiserror::Error;

/// A request refused by a rule. Deterministic: the model predicts it exactly.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Error,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
pub enum Rejection {
    // Malformed input.
    #[error("field `{field}` is longer than {max} bytes")]
    FieldTooLong { field: &'static str, max: usize },
    #[error("missing parameter `{name}`")]
    MissingParameter { name: &'static str },
    #[error("too many {what} (at most {max})")]
    TooMany { what: &'static str, max: usize },
    #[error(
        "invalid crate name: ASCII letters, digits, `-` and `_`, starting with a letter, 1 to 64 characters"
    )]
    InvalidCrateName,
    #[error("invalid version: not a semantic version (semver.org)")]
    InvalidVersion,
    #[error("invalid checksum: expected 64 lowercase hex digits of a sha256")]
    InvalidChecksum,
    #[error("invalid login: 1 to 39 letters, digits or single inner hyphens")]
    InvalidLogin,
    #[error(
        "invalid scope: expected space-separated tokens like `publish-update` or `yank:serde*`"
    )]
    InvalidScope,
    #[error(
        "invalid redirect URI: https, or http on a loopback IP literal; no fragment, no userinfo"
    )]
    InvalidRedirectUri,
    #[error("invalid client name: 1 to 100 printable characters")]
    InvalidClientName,

    // Registry.
    #[error("a user with that login already exists")]
    UserExists,
    #[error("unknown user")]
    UnknownUser,
    #[error("unknown crate")]
    UnknownCrate,
    #[error("unknown version")]
    UnknownVersion,
    #[error("this version of the crate already exists")]
    VersionExists,
    #[error("only an owner of the crate may do this")]
    NotOwner,
    #[error("the user already owns the crate")]
    AlreadyOwner,
    #[error("the user does not own the crate")]
    NotAnOwner,
    #[error("a crate must keep at least one owner")]
    LastOwner,
    #[error("the access token is unknown, expired or revoked")]
    TokenInvalid,
    #[error("the access token acts for no user (client credentials)")]
    TokenHasNoUser,
    #[error("the access token's scope does not allow this")]
    InsufficientScope,

    // OAuth2: authorization endpoint.
    #[error("unknown client")]
    UnknownClient,
    #[error("redirect URI is not registered for this client")]
    RedirectUriMismatch,
    #[error("requested scope exceeds what the client may ask for")]
    ScopeNotAllowed,
    #[error("public clients must use PKCE (S256)")]
    PkceRequired,
    #[error("code_challenge_method must be S256")]
    PkceMethodUnsupported,
    #[error("code_challenge must be 43 base64url characters")]
    MalformedCodeChallenge,
    #[error("code_verifier must be 43 to 128 unreserved characters")]
    MalformedCodeVerifier,

    // OAuth2: token endpoint.
    #[error("client authentication failed")]
    ClientAuthFailed,
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    #[error("this client may not use this grant type")]
    UnauthorizedClient,
    #[error("unknown authorization code")]
    CodeUnknown,
    #[error("authorization code already redeemed; tokens issued from it are revoked")]
    CodeReused,
    #[error("authorization code expired")]
    CodeExpired,
    #[error("authorization code was issued to another client")]
    CodeClientMismatch,
    #[error("redirect_uri differs from the authorization request's")]
    CodeRedirectMismatch,
    #[error("code_verifier does not match the code_challenge")]
    VerifierMismatch,
    #[error("code_verifier missing for a code with a challenge")]
    VerifierMissing,
    #[error("code_verifier given for a code without a challenge")]
    VerifierWithoutChallenge,
    #[error("unknown refresh token")]
    RefreshUnknown,
    #[error("refresh token was issued to another client")]
    RefreshClientMismatch,
    #[error("refresh token revoked")]
    RefreshRevoked,
    #[error("refresh token already used; its whole family is revoked")]
    RefreshReused,
    #[error("refresh token expired")]
    RefreshExpired,
    #[error("requested scope is wider than the grant's")]
    ScopeWidened,
}

impl Rejection {
    /// The protocol's error code: RFC 6749 §4.1.2.1/§5.2 for OAuth2, RFC 6750 §3.1 for bearer
    /// tokens at the registry, RFC 7591 for client registration, plain HTTP-ish names otherwise.
    pub fn code(&self) -> &'static str {
        use Rejection::*;
        match self {
            FieldTooLong { .. }
            | MissingParameter { .. }
            | TooMany { .. }
            | InvalidCrateName
            | InvalidVersion
            | InvalidChecksum
            | InvalidLogin
            | InvalidClientName
            | RedirectUriMismatch
            | PkceRequired
            | PkceMethodUnsupported
            | MalformedCodeChallenge
            | MalformedCodeVerifier => "invalid_request",
            InvalidScope | ScopeNotAllowed | ScopeWidened => "invalid_scope",
            InvalidRedirectUri => "invalid_redirect_uri",
            UserExists | VersionExists | AlreadyOwner => "conflict",
            UnknownUser | UnknownCrate | UnknownVersion | NotAnOwner => "not_found",
            NotOwner | LastOwner => "forbidden",
            TokenInvalid | TokenHasNoUser => "invalid_token",
            InsufficientScope => "insufficient_scope",
            UnknownClient | ClientAuthFailed => "invalid_client",
            UnsupportedGrantType => "unsupported_grant_type",
            UnauthorizedClient => "unauthorized_client",
            CodeUnknown
            | CodeReused
            | CodeExpired
            | CodeClientMismatch
            | CodeRedirectMismatch
            | VerifierMismatch
            | VerifierMissing
            | VerifierWithoutChallenge
            | RefreshUnknown
            | RefreshClientMismatch
            | RefreshRevoked
            | RefreshReused
            | RefreshExpired => "invalid_grant",
        }
    }

    /// The variant's name, for coverage tables and transcripts.
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// At the authorization endpoint, these are shown to the user and never redirected
    /// (RFC 6749 §4.1.2.1): the redirect URI itself is not trusted.
    pub fn never_redirected(&self) -> bool {
        matches!(
            self,
            Rejection::UnknownClient | Rejection::RedirectUriMismatch
        )
    }
}
