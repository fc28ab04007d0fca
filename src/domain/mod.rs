//! The pure vocabulary shared by the system (`registry/`, `oauth/`) and the model (`model/`):
//! names, versions, scopes, redirect URIs, PKCE, secrets, and the typed rejections.
//!
//! Everything here is synchronous and free of I/O. Input validation lives here exactly once, so
//! the model and the system cannot disagree about what is well-formed; what the model checks
//! independently is the behaviour over time (codes, rotation, ownership), where bugs hide.

pub mod names;
pub mod pkce;
pub mod redirect;
pub mod rejection;
pub mod scope;
pub mod secret;
pub mod version;

pub use names::{CrateName, Login};
pub use rejection::Rejection;
pub use scope::{Endpoint, Scope};
pub use version::{Checksum, Version};

/// Lifetimes, in seconds. A code lives at most 10 minutes (DESIGN rule 2).
pub const CODE_TTL: i64 = 600;
pub const ACCESS_TOKEN_TTL: i64 = 3_600;
pub const REFRESH_TOKEN_TTL: i64 = 30 * 24 * 3_600;

/// `now >= expires_at` is expired: the system's one expiry rule (rule 12), which the model
/// states again on its own in `model/rules.rs`.
pub fn is_expired(now: crate::clock::Epoch, expires_at: crate::clock::Epoch) -> bool {
    // Seeded bug: a token still works during the second it expires.
    if cfg!(feature = "mutant-expiry-off-by-one") {
        return now > expires_at;
    }
    now >= expires_at
}

/// Rejects a field longer than `max` bytes before anything else looks at it.
pub fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        Err(Rejection::FieldTooLong { field, max })
    } else {
        Ok(())
    }
}
