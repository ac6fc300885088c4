//! The executors' errors. An error of an SDK call is answered to the user's code as its message.

use switchyard_core::CoreError;
use switchyard_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The request breaks a rule: a missing field, a limit, a malformed message.
    #[error("{0}")]
    Invalid(String),
    /// The domain refused it: a destination the egress policy forbids, a bad template.
    #[error(transparent)]
    Refused(#[from] CoreError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A remote server or the network failed, or answered too much.
    #[error("{0}")]
    Upstream(String),
    /// A remote server did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The language cannot run on this instance.
    #[error("{0}")]
    Unavailable(String),
}

/// A run, or a JavaScript worker, that could not be set up: what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SetupError {
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SetupError {
    /// Maps an error of doing `what` to a [`SetupError`].
    pub fn of<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        what: impl Into<String>,
    ) -> impl FnOnce(E) -> SetupError {
        let what = what.into();
        move |e| SetupError {
            what,
            source: e.into(),
        }
    }
}

impl From<String> for ExecError {
    fn from(message: String) -> Self {
        ExecError::Invalid(message)
    }
}
