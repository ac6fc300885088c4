//! The errors of the domain: one enum for the crate, each variant keeping its source.

use crate::crypto::CryptoError;
use crate::filter::FilterError;

/// Why the domain refuses something. The message is written for the person who sent it.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A value that breaks a rule: the message names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    /// A destination the egress policy forbids.
    #[error("destination refused: {0}")]
    Refused(String),
    /// A subscription filter that does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Sealed data that does not open with this key and context.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl CoreError {
    pub fn invalid(message: impl Into<String>) -> CoreError {
        CoreError::Invalid(message.into())
    }
}
