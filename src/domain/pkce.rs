//! PKCE (RFC 7636), S256 only (RFC 9700 §2.1.1): `plain` would hand the verifier to anyone who
//! sees the authorization request.

use super::Rejection;
use base64::Engine;
use sha2::{Digest, Sha256};

pub const METHOD_S256: &str = "S256";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Validates the challenge half of an authorization request. `Ok(None)`: no PKCE requested.
pub fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, Rejection> {
    match (challenge, method) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(Rejection::MalformedCodeChallenge),
        (Some(_), None) => Err(Rejection::PkceMethodUnsupported),
        // Seeded bug: `plain` is let through (RFC 7636 allows it; RFC 9700 and rule 5 do not).
        #[cfg(feature = "mutant-pkce-plain")]
        (Some(c), Some("plain")) => Ok(Some(c.to_owned())),
        (Some(_), Some(m)) if m != METHOD_S256 => Err(Rejection::PkceMethodUnsupported),
        (Some(c), Some(_)) => {
            let well_formed = c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if well_formed {
                Ok(Some(c.to_owned()))
            } else {
                Err(Rejection::MalformedCodeChallenge)
            }
        }
    }
}

/// A verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1).
pub fn check_verifier(verifier: &str) -> Result<(), Rejection> {
    if (43..=128).contains(&verifier.len()) && verifier.bytes().all(is_unreserved) {
        Ok(())
    } else {
        Err(Rejection::MalformedCodeVerifier)
    }
}

/// `BASE64URL(SHA256(verifier))`, unpadded.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The token request's PKCE step, given the code's stored challenge (RFC 7636 §4.6).
pub fn verify(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), Rejection> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        // Seeded bug: a verifier nobody asked for is ignored.
        #[cfg(feature = "mutant-verifier-without-challenge")]
        (None, Some(_)) => Ok(()),
        #[cfg(not(feature = "mutant-verifier-without-challenge"))]
        (None, Some(_)) => Err(Rejection::VerifierWithoutChallenge),
        (Some(_), None) => Err(Rejection::VerifierMissing),
        (Some(challenge), Some(verifier)) => {
            check_verifier(verifier)?;
            if super::secret::ct_eq(s256(verifier).as_bytes(), challenge.as_bytes()) {
                Ok(())
            } else {
                Err(Rejection::VerifierMismatch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(verify(Some(&s256(verifier)), Some(verifier)), Ok(()));
    }

    #[test]
    fn only_s256_with_a_well_formed_challenge() {
        let c = s256(&"a".repeat(43));
        assert_eq!(check_challenge(Some(&c), Some("S256")), Ok(Some(c.clone())));
        assert_eq!(
            check_challenge(Some(&c), Some("plain")),
            Err(Rejection::PkceMethodUnsupported)
        );
        assert_eq!(
            check_challenge(Some(&c), None),
            Err(Rejection::PkceMethodUnsupported)
        );
        assert_eq!(
            check_challenge(None, Some("S256")),
            Err(Rejection::MalformedCodeChallenge)
        );
        assert_eq!(
            check_challenge(Some("short"), Some("S256")),
            Err(Rejection::MalformedCodeChallenge)
        );
        assert_eq!(check_challenge(None, None), Ok(None));
    }

    #[test]
    fn verification_failures_are_distinct() {
        let v = "v".repeat(43);
        let c = s256(&v);
        assert_eq!(
            verify(Some(&c), Some(&"w".repeat(43))),
            Err(Rejection::VerifierMismatch)
        );
        assert_eq!(verify(Some(&c), None), Err(Rejection::VerifierMissing));
        assert_eq!(
            verify(None, Some(&v)),
            Err(Rejection::VerifierWithoutChallenge)
        );
        assert_eq!(
            verify(Some(&c), Some("short")),
            Err(Rejection::MalformedCodeVerifier)
        );
    }
}
