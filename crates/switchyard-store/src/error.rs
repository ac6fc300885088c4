//! The store's errors: what a call could not do, with what a lookup did not find and the
//! driver's error behind a database failure.

use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum StoreError {
    /// The disk (or the database's size limit) is full: nothing of the write was stored.
    StorageFull(String),
    /// What the call looked for is not there (or belongs to another organization).
    NotFound(Missing),
    Conflict(String),
    InvalidReference(String),
    /// The database failed; `source` is the driver's error when there was one (its
    /// [`std::error::Error::source`], so a caller can look into it). The message ends with the
    /// causes' text too, so a log line of the error alone says what happened.
    Database {
        message: String,
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    Closed,
    /// The write would take the organization past one of its quotas; nothing was stored.
    Quota(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::StorageFull(m) => write!(f, "storage full: {m}"),
            StoreError::NotFound(what) => write!(f, "{what} not found"),
            StoreError::Conflict(m) => write!(f, "already exists: {m}"),
            StoreError::InvalidReference(m) => write!(f, "invalid reference: {m}"),
            StoreError::Database { message, source } => {
                write!(f, "database error: {message}")?;
                let mut next = source.as_deref().map(|e| e as &dyn std::error::Error);
                while let Some(e) = next {
                    write!(f, ": {e}")?;
                    next = e.source();
                }
                Ok(())
            }
            StoreError::Closed => f.write_str("the store is shutting down"),
            StoreError::Quota(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The driver's error itself, not the `Arc` that shares it between clones.
            StoreError::Database {
                source: Some(e), ..
            } => Some(e.as_ref()),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The kind of thing a lookup did not find. `Row` is a query's own "no row", before the method
/// that ran it names what it looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Row,
    Organization,
    Key,
    EventType,
    Endpoint,
    Subscription,
    Executor,
    Secret,
    Hook,
    Schedule,
    Event,
    Delivery,
    Run,
    Tool,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::Row => "record",
            Missing::Organization => "organization",
            Missing::Key => "key",
            Missing::EventType => "event type",
            Missing::Endpoint => "endpoint",
            Missing::Subscription => "subscription",
            Missing::Executor => "executor",
            Missing::Secret => "secret",
            Missing::Hook => "hook",
            Missing::Schedule => "schedule",
            Missing::Event => "event",
            Missing::Delivery => "delivery",
            Missing::Run => "run",
            Missing::Tool => "tool",
        })
    }
}

impl StoreError {
    /// A database failure without a driver error behind it.
    pub fn database(message: impl Into<String>) -> Self {
        StoreError::Database {
            message: message.into(),
            source: None,
        }
    }
    /// A database failure caused by `source`.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Database {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }
    /// Names what a query's "no row" was: `NotFound(Row)` becomes `NotFound(what)`; any other
    /// error (a `NotFound` already named, by a lookup inside the call) is kept.
    pub fn missing(what: Missing) -> impl Fn(StoreError) -> StoreError {
        move |e| match e {
            StoreError::NotFound(Missing::Row) => StoreError::NotFound(what),
            other => other,
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}
