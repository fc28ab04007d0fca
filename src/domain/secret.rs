//! Secrets (client secrets, codes, tokens): generated with the OS RNG, stored only as sha256,
//! compared in constant time, never logged (DESIGN rule 11).

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// A secret handed to a client once. Its `Debug` prints no secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// 32 random bytes, base64url, behind a prefix naming the kind (`lpa_` access token ...).
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(4).collect();
        write!(f, "Secret({prefix}…)")
    }
}

/// The stored form of a secret: sha256, hex. Secrets are 256-bit random, so no slow KDF is needed.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub const ACCESS_PREFIX: &str = "lpa_";
pub const REFRESH_PREFIX: &str = "lpr_";
pub const CODE_PREFIX: &str = "lpc_";
pub const CLIENT_SECRET_PREFIX: &str = "lps_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_not_printed() {
        let a = Secret::generate(ACCESS_PREFIX);
        let b = Secret::generate(ACCESS_PREFIX);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(&a.expose()[4..]));
        assert_eq!(a.hash(), hash(a.expose()));
        assert!(ct_eq(a.hash().as_bytes(), a.hash().as_bytes()));
        assert!(!ct_eq(a.hash().as_bytes(), b.hash().as_bytes()));
    }
}
