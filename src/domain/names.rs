//! Crate names and user logins: what is accepted, and the key under which two spellings are
//! the same thing.

use super::Rejection;

pub const MAX_CRATE_NAME: usize = 64;
pub const MAX_LOGIN: usize = 39;

/// A crate name as cargo and crates.io accept it: ASCII letters, digits, `-`, `_`, a letter
/// first, at most 64. `foo-bar` and `Foo_Bar` are the same crate: they share a [`key`](Self::key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CrateName {
    pub display: String,
    pub key: String,
}

impl CrateName {
    pub fn parse(raw: &str) -> Result<Self, Rejection> {
        let mut chars = raw.chars();
        let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !first_is_letter || !rest_ok || raw.len() > MAX_CRATE_NAME {
            return Err(Rejection::InvalidCrateName);
        }
        Ok(Self {
            display: raw.to_owned(),
            key: crate_key(raw),
        })
    }
}

/// Case-folded, `_` read as `-`: the uniqueness key of a crate name (or of a name pattern).
pub fn crate_key(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A user login, GitHub-shaped: letters, digits and single inner hyphens, 1 to 39.
/// Unique without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Login {
    pub display: String,
    pub key: String,
}

impl Login {
    pub fn parse(raw: &str) -> Result<Self, Rejection> {
        let bytes = raw.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_LOGIN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
            && !raw.contains("--");
        if !valid {
            return Err(Rejection::InvalidLogin);
        }
        Ok(Self {
            display: raw.to_owned(),
            key: raw.to_ascii_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_follow_cargo() {
        for ok in ["a", "serde", "serde_json", "Foo-Bar", &"a".repeat(64)] {
            assert!(CrateName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "-a", "_a", "a b", "a.b", "é", &"a".repeat(65)] {
            assert_eq!(
                CrateName::parse(bad),
                Err(Rejection::InvalidCrateName),
                "{bad}"
            );
        }
        assert_eq!(
            CrateName::parse("Foo_Bar").map(|n| n.key),
            CrateName::parse("foo-bar").map(|n| n.key)
        );
    }

    #[test]
    fn logins_are_github_shaped() {
        for ok in ["a", "alice", "a-b", "A1", &"a".repeat(39)] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a_b", &"a".repeat(40)] {
            assert_eq!(Login::parse(bad), Err(Rejection::InvalidLogin), "{bad}");
        }
    }
}
