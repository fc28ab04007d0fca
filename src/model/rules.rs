//! Rules the model states on its own instead of borrowing them from `domain/`: when a code or
//! token stops working (rule 12) and PKCE (rule 5). They are short, and they are where a slip
//! costs most; stated twice, a slip in `domain/` shows up as a disagreement with the model.

use crate::clock::Epoch;
use crate::domain::Rejection;
use sha2::{Digest, Sha256};

/// Rule 12: a code or token is dead from the second its lifetime ends, not one second later.
pub fn expired(now: Epoch, expires_at: Epoch) -> bool {
    now >= expires_at
}

/// Rule 5, the authorization request: no PKCE at all, or a challenge with method `S256`. The
/// challenge is what `S256` produces: 43 characters of unpadded base64url.
pub fn pkce_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, Rejection> {
    let Some(challenge) = challenge else {
        return match method {
            None => Ok(None),
            Some(_) => Err(Rejection::MalformedCodeChallenge),
        };
    };
    if method != Some("S256") {
        return Err(Rejection::PkceMethodUnsupported);
    }
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if challenge.chars().count() == 43 && challenge.chars().all(base64url) {
        Ok(Some(challenge.to_owned()))
    } else {
        Err(Rejection::MalformedCodeChallenge)
    }
}

/// Rule 5, the token request: a verifier exactly when the code has a challenge; 43 to 128
/// unreserved characters (RFC 7636 §4.1); and `BASE64URL(SHA256(verifier))` equals the challenge.
pub fn pkce_verifier(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), Rejection> {
    let (challenge, verifier) = match (challenge, verifier) {
        (None, None) => return Ok(()),
        (None, Some(_)) => return Err(Rejection::VerifierWithoutChallenge),
        (Some(_), None) => return Err(Rejection::VerifierMissing),
        (Some(challenge), Some(verifier)) => (challenge, verifier),
    };
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if !(43..=128).contains(&verifier.chars().count()) || !verifier.chars().all(unreserved) {
        return Err(Rejection::MalformedCodeVerifier);
    }
    let digest = Sha256::digest(verifier.as_bytes());
    if base64url_unpadded(&digest) == challenge {
        Ok(())
    } else {
        Err(Rejection::VerifierMismatch)
    }
}

/// RFC 4648 §5 without padding, spelled out so the model needs no encoder of the system's.
fn base64url_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(pkce_verifier(Some(challenge), Some(verifier)), Ok(()));
        assert_eq!(
            pkce_challenge(Some(challenge), Some("plain")),
            Err(Rejection::PkceMethodUnsupported)
        );
    }

    #[test]
    fn agrees_with_the_system_on_every_length_and_a_few_alphabets() {
        use crate::domain::pkce;
        for len in 0..=130 {
            for fill in ["a", "~", "+", "é"] {
                let v = fill.repeat(len);
                let c = pkce::s256(&v);
                assert_eq!(base64url_unpadded(&Sha256::digest(v.as_bytes())), c);
                for challenge in [None, Some(c.as_str()), Some(v.as_str())] {
                    for method in [None, Some("S256"), Some("plain")] {
                        assert_eq!(
                            pkce_challenge(challenge, method),
                            pkce::check_challenge(challenge, method),
                            "{challenge:?} {method:?}"
                        );
                    }
                    for verifier in [None, Some(v.as_str())] {
                        assert_eq!(
                            pkce_verifier(challenge, verifier),
                            pkce::verify(challenge, verifier),
                            "{challenge:?} {verifier:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dead_at_the_expiry_second() {
        assert!(!expired(99, 100));
        assert!(expired(100, 100));
    }
}
