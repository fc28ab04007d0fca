//! Token scopes, shaped like crates.io's: an endpoint, optionally narrowed to crate names.
//!
//! `publish-update` allows updating any crate the user owns; `publish-update:serde*` only crates
//! whose name (as a key) starts with `serde`; `yank:serde_json` only `serde-json`.

use super::Rejection;
use super::names::crate_key;
use std::collections::BTreeSet;
use std::fmt;

pub const MAX_SCOPE: usize = 512;
pub const MAX_SCOPE_TOKENS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter)]
pub enum Endpoint {
    PublishNew,
    PublishUpdate,
    Yank,
    ChangeOwners,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::PublishNew => "publish-new",
            Endpoint::PublishUpdate => "publish-update",
            Endpoint::Yank => "yank",
            Endpoint::ChangeOwners => "change-owners",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        use strum::IntoEnumIterator;
        Self::iter().find(|e| e.as_str() == raw)
    }
}

/// Which crates a scope token reaches, compared on crate keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CratePattern {
    /// No narrowing: every crate.
    Any,
    /// `serde*`: every crate whose key starts with the prefix.
    Prefix(String),
    /// `serde`: that crate only.
    Exact(String),
}

impl CratePattern {
    fn parse(raw: &str) -> Option<Self> {
        let (body, wildcard) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let body_ok = body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !body_ok || (body.is_empty() && !wildcard) {
            return None;
        }
        Some(match (body.is_empty(), wildcard) {
            (true, _) => CratePattern::Any,
            (false, true) => CratePattern::Prefix(crate_key(body)),
            (false, false) => CratePattern::Exact(crate_key(body)),
        })
    }

    pub fn matches(&self, key: &str) -> bool {
        match self {
            CratePattern::Any => true,
            CratePattern::Prefix(prefix) => key.starts_with(prefix.as_str()),
            CratePattern::Exact(exact) => key == exact,
        }
    }

    /// Every crate `other` reaches, `self` reaches too.
    pub fn covers(&self, other: &CratePattern) -> bool {
        match (self, other) {
            (CratePattern::Any, _) => true,
            (CratePattern::Prefix(p), CratePattern::Prefix(q)) => q.starts_with(p.as_str()),
            (CratePattern::Prefix(p), CratePattern::Exact(k)) => k.starts_with(p.as_str()),
            (CratePattern::Exact(a), CratePattern::Exact(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeToken {
    pub endpoint: Endpoint,
    pub crates: CratePattern,
}

impl fmt::Display for ScopeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.endpoint.as_str())?;
        match &self.crates {
            CratePattern::Any => Ok(()),
            CratePattern::Prefix(p) => write!(f, ":{p}*"),
            CratePattern::Exact(k) => write!(f, ":{k}"),
        }
    }
}

/// A set of scope tokens in canonical order; its string form is the canonical scope string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(pub BTreeSet<ScopeToken>);

impl Scope {
    /// Parses a space-delimited scope string (RFC 6749 §3.3). Empty means no tokens.
    pub fn parse(raw: &str) -> Result<Self, Rejection> {
        if raw.len() > MAX_SCOPE {
            return Err(Rejection::FieldTooLong {
                field: "scope",
                max: MAX_SCOPE,
            });
        }
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let mut tokens = BTreeSet::new();
        for word in raw.split(' ') {
            let (endpoint, pattern) = match word.split_once(':') {
                Some((endpoint, pattern)) => (endpoint, Some(pattern)),
                None => (word, None),
            };
            let endpoint = Endpoint::parse(endpoint).ok_or(Rejection::InvalidScope)?;
            let crates = match pattern {
                None => CratePattern::Any,
                Some(p) => CratePattern::parse(p).ok_or(Rejection::InvalidScope)?,
            };
            tokens.insert(ScopeToken { endpoint, crates });
        }
        if tokens.len() > MAX_SCOPE_TOKENS {
            return Err(Rejection::TooMany {
                what: "scope tokens",
                max: MAX_SCOPE_TOKENS,
            });
        }
        Ok(Self(tokens))
    }

    pub fn all() -> Self {
        use strum::IntoEnumIterator;
        Self(
            Endpoint::iter()
                .map(|endpoint| ScopeToken {
                    endpoint,
                    crates: CratePattern::Any,
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// May a holder of this scope use `endpoint` on the crate with this key?
    pub fn allows(&self, endpoint: Endpoint, crate_key: &str) -> bool {
        self.0
            .iter()
            .any(|t| t.endpoint == endpoint && t.crates.matches(crate_key))
    }

    /// Every token of `narrower` is reached by some token of `self`: a request for `narrower`
    /// does not widen `self` (rule 6) nor exceed a client's allowance.
    pub fn covers(&self, narrower: &Scope) -> bool {
        narrower.0.iter().all(|wanted| {
            self.0
                .iter()
                .any(|have| have.endpoint == wanted.endpoint && have.crates.covers(&wanted.crates))
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, token) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{token}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        let scope = Scope::parse("yank:Serde_* publish-new").unwrap();
        assert_eq!(scope.to_string(), "publish-new yank:serde-*");
        assert_eq!(Scope::parse(&scope.to_string()).unwrap(), scope);
        assert_eq!(Scope::parse("").unwrap(), Scope::default());
        for bad in [
            "read",
            "yank:",
            "yank:a.b",
            "yank  publish-new",
            " yank",
            "yank:a*b",
        ] {
            assert_eq!(Scope::parse(bad), Err(Rejection::InvalidScope), "{bad:?}");
        }
    }

    #[test]
    fn narrowing_by_crate_pattern() {
        let scope = Scope::parse("yank:serde* publish-update:tokio").unwrap();
        assert!(scope.allows(Endpoint::Yank, "serde-json"));
        assert!(!scope.allows(Endpoint::Yank, "tokio"));
        assert!(scope.allows(Endpoint::PublishUpdate, "tokio"));
        assert!(!scope.allows(Endpoint::PublishUpdate, "tokio-util"));
        assert!(!scope.allows(Endpoint::PublishNew, "tokio"));
    }

    #[test]
    fn covers_is_never_wider() {
        let wide = Scope::parse("yank:serde* publish-new").unwrap();
        assert!(wide.covers(&Scope::parse("yank:serde-json").unwrap()));
        assert!(wide.covers(&Scope::parse("yank:serde-* publish-new:x").unwrap()));
        assert!(!wide.covers(&Scope::parse("yank").unwrap()));
        assert!(!wide.covers(&Scope::parse("change-owners").unwrap()));
        assert!(Scope::all().covers(&wide));
    }
}
