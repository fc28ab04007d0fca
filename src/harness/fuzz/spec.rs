//! What valid input is, stated a second time and on purpose differently from `domain/`: as
//! the grammars the rules cite (cargo's crate names, GitHub's logins, semver.org's BNF, RFC 6749
//! §3.3 scope words, RFC 7636's verifier). The input targets require `domain/` to agree with
//! these on every input; where `model/rules.rs` already states a rule independently, they use
//! that instead.

use crate::domain::scope::MAX_SCOPE_TOKENS;
use std::collections::BTreeSet;

/// cargo: an ASCII letter, then ASCII letters, digits, `-` or `_`; 1 to 64 characters.
pub fn crate_name(raw: &str) -> bool {
    let b = raw.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|&c| matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_'))
}

/// Two spellings of a crate name are the same crate when they agree up to ASCII case and
/// `-`/`_`.
pub fn same_crate(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// GitHub: 1 to 39 of letters, digits and hyphens; no hyphen first, last or doubled.
pub fn login(raw: &str) -> bool {
    (1..=39).contains(&raw.len())
        && raw
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// 64 lowercase hex digits: a sha256 as the index carries it.
pub fn checksum(raw: &str) -> bool {
    raw.len() == 64 && raw.chars().all(|c| "0123456789abcdef".contains(c))
}

/// semver.org's BNF, with the one limit the semver crate adds (and says so): major, minor and
/// patch fit in a u64. And the registry's own limit: at most 64 bytes.
pub fn version(raw: &str) -> bool {
    if raw.len() > 64 {
        return false;
    }
    let (rest, build) = match raw.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (raw, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    let core_ok = {
        let parts: Vec<&str> = core.split('.').collect();
        parts.len() == 3 && parts.iter().all(|p| numeric(p) && p.parse::<u64>().is_ok())
    };
    let pre_ok = pre.is_none_or(|pre| {
        pre.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(ident_char)
                && (id.bytes().any(|c| !c.is_ascii_digit()) || numeric(id))
        })
    });
    let build_ok = build.is_none_or(|build| {
        build
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(ident_char))
    });
    core_ok && pre_ok && build_ok
}

/// A version without its build metadata: the release it names.
pub fn release(raw: &str) -> &str {
    raw.split_once('+').map_or(raw, |(release, _)| release)
}

/// Why a scope string is refused, in the order the checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    TooLong,
    Invalid,
    TooMany,
}

/// One scope word: an endpoint, and the crates it reaches as (prefix?, folded name); `None`
/// for every crate.
pub type ScopeWord = (&'static str, Option<(bool, String)>);

/// RFC 6749 §3.3 words separated by single spaces, each `endpoint` or `endpoint:pattern`, the
/// pattern a crate-name body (letters, digits, `-`, `_`; may be empty only before `*`) with an
/// optional trailing `*`. The empty string is no words. Words are a set: duplicates (after
/// folding) count once, and at most 16 distinct ones.
pub fn scope(raw: &str) -> Result<BTreeSet<ScopeWord>, ScopeError> {
    const ENDPOINTS: [&str; 4] = ["publish-new", "publish-update", "yank", "change-owners"];
    if raw.len() > 512 {
        return Err(ScopeError::TooLong);
    }
    let mut words = BTreeSet::new();
    if raw.is_empty() {
        return Ok(words);
    }
    for word in raw.split(' ') {
        let (endpoint, pattern) = match word.find(':') {
            Some(i) => (&word[..i], Some(&word[i + 1..])),
            None => (word, None),
        };
        let endpoint = ENDPOINTS
            .into_iter()
            .find(|e| *e == endpoint)
            .ok_or(ScopeError::Invalid)?;
        let crates = match pattern {
            None => None,
            Some(p) => {
                let (body, star) = match p.strip_suffix('*') {
                    Some(body) => (body, true),
                    None => (p, false),
                };
                let body_ok = body
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
                if !body_ok || (body.is_empty() && !star) {
                    return Err(ScopeError::Invalid);
                }
                let folded = body.to_ascii_lowercase().replace('_', "-");
                (!body.is_empty()).then_some((star, folded))
            }
        };
        words.insert((endpoint, crates));
    }
    if words.len() > MAX_SCOPE_TOKENS {
        return Err(ScopeError::TooMany);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammars_say_what_the_rules_say() {
        assert!(crate_name("serde_json") && !crate_name("1a") && !crate_name(""));
        assert!(same_crate("Serde_Json", "serde-json") && !same_crate("serde", "serde-"));
        assert!(login("a-b") && !login("a--b") && !login("-a") && !login("a_b"));
        assert!(checksum(&"0".repeat(64)) && !checksum(&"A".repeat(64)));
        for ok in ["0.0.0", "1.2.3-alpha.1+build.01", "1.0.0-0a", "1.0.0+0"] {
            assert!(version(ok), "{ok}");
        }
        for bad in [
            "1.0",
            "01.0.0",
            "1.0.0-01",
            "1.0.0-",
            "1.0.0+",
            "1.0.0-a..b",
            "v1.0.0",
        ] {
            assert!(!version(bad), "{bad}");
        }
        assert!(!version("18446744073709551616.0.0"));
        assert_eq!(release("1.0.0+x"), "1.0.0");
        assert_eq!(scope("yank yank").map(|w| w.len()), Ok(1));
        assert_eq!(scope("yank:").err(), Some(ScopeError::Invalid));
        assert_eq!(scope("yank:*").map(|w| w.len()), Ok(1));
    }
}
