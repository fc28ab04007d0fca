//! Semantic versions and checksums of published crate files.

use super::Rejection;

pub const MAX_VERSION: usize = 64;

/// A semver version. Two versions differing only in build metadata are the same release to
/// cargo, so they share a [`key`](Self::key) and cannot both be published.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub display: String,
    pub key: String,
}

impl Version {
    pub fn parse(raw: &str) -> Result<Self, Rejection> {
        if raw.len() > MAX_VERSION {
            return Err(Rejection::InvalidVersion);
        }
        let parsed = semver::Version::parse(raw).map_err(|_| Rejection::InvalidVersion)?;
        let key = semver::Version {
            build: semver::BuildMetadata::EMPTY,
            ..parsed.clone()
        }
        .to_string();
        Ok(Self {
            display: parsed.to_string(),
            key,
        })
    }
}

/// The sha256 of the `.crate` file, as 64 lowercase hex digits (what the index line carries).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum(pub String);

impl Checksum {
    pub fn parse(raw: &str) -> Result<Self, Rejection> {
        let valid = raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Rejection::InvalidChecksum)
        }
    }

    /// The checksum of some content, for tests and generators.
    pub fn of(content: &[u8]) -> Self {
        use sha2::Digest;
        Self(hex::encode(sha2::Sha256::digest(content)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_metadata_does_not_make_a_new_release() {
        let a = Version::parse("1.0.0+build.1").unwrap();
        let b = Version::parse("1.0.0").unwrap();
        assert_eq!(a.key, b.key);
        assert_ne!(a.display, b.display);
        assert_ne!(Version::parse("1.0.0-alpha").unwrap().key, b.key);
    }

    #[test]
    fn malformed_versions_and_checksums_are_rejected() {
        for bad in [
            "",
            "1",
            "1.0",
            "v1.0.0",
            "01.0.0",
            "1.0.0-",
            &format!("1.0.0-{}", "a".repeat(64)),
        ] {
            assert_eq!(Version::parse(bad), Err(Rejection::InvalidVersion), "{bad}");
        }
        assert!(Checksum::parse(&Checksum::of(b"x").0).is_ok());
        for bad in ["", "abc", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
            assert_eq!(
                Checksum::parse(bad),
                Err(Rejection::InvalidChecksum),
                "{bad}"
            );
        }
    }
}
