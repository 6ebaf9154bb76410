//! The storage layer's one error enum.
//!
//! Every failure keeps its cause as a `source`, so the log shows the chain. The `Display` of a
//! variant repeats the cause's text after its own context (callers log `%e` and turn startup
//! failures into strings), and none of it can carry a secret: object_store's errors name paths
//! and URLs (our requests sign with a header, never a presigned query), and the S3 secret key
//! never enters an error.

/// A boxed cause of any kind (I/O, HTTP client, task join).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// [`Storage::replace_prefix`](super::Storage::replace_prefix): the stored object no longer
    /// starts with the bytes the caller read (another write replaced it meanwhile); nothing
    /// was written.
    #[error("the stored object changed since it was read")]
    Changed,
    /// A path that cannot be stored (e.g. a key segment too long for the backend).
    #[error("invalid storage path: {0}")]
    InvalidPath(String),
    /// The backend failed (I/O, network, remote error).
    #[error("backend error: {0}")]
    Backend(#[source] object_store::Error),
    /// A step of our own beside object_store failed (a signed request of the staging sweep or
    /// the bucket creation, a walk of the filesystem): what was being done, and why.
    #[error("backend error: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// The S3 endpoint answered a request of our own with an error status (the status and
    /// the endpoint's answer: no cause beyond that).
    #[error("backend error: {0}")]
    Refused(String),
    /// Invalid storage configuration.
    #[error("storage configuration error: {context}: {source}")]
    Config {
        /// What is misconfigured.
        context: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Config`] with its context.
    pub(crate) fn config(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Config {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound,
            object_store::Error::InvalidPath { source } => Error::InvalidPath(source.to_string()),
            other => Error::Backend(other),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;
