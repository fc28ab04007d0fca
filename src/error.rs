use crate::db::DbError;
use crate::domain::Rejection;
use thiserror::Error;

/// What a registry or OAuth2 operation can end in besides success.
#[derive(Debug, Error)]
pub enum Error {
    /// Refused by a rule: nothing was written, and the model predicts exactly this.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The storage failed: the operation was applied whole or not at all.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Error {
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            Error::Rejected(r) => Some(*r),
            Error::Db(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
