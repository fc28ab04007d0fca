//! leakproof: a package registry and an OAuth2 authorization server on sqlx, built so that a
//! leaked database session cannot hide. See ARCHITECTURE.md for the map.

pub mod clock;
pub mod db;
pub mod domain;
pub mod error;
pub mod harness;
pub mod model;
pub mod oauth;
pub mod registry;

pub use error::{Error, Result};
