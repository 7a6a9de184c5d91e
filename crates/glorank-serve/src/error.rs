//! The error of the server: the reasons it refuses to start, a call, or one request of a
//! call.

/// Errors of the server, and the reasons it refuses a call or one request of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime or a connection failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server thread ended abnormally.
    #[error("the server thread panicked")]
    Panicked,
    /// A call named a query parameter other than `decode`.
    #[error("unknown query parameter `{0}` (the only one is `decode`)")]
    UnknownParameter(String),
    /// A call's `decode` parameter is not a decoding strategy.
    #[error("decode: {0}")]
    Decode(glorank::Error),
    /// The model refused a request (unknown item, too few candidates...).
    #[error(transparent)]
    Rerank(#[from] glorank::Error),
    /// The batch worker returned fewer answers than requests (a bug, never expected).
    #[error("lost answer")]
    LostAnswer,
}

/// Result alias of this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
