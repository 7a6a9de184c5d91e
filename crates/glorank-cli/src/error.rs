//! The one place an error of the command line becomes a type: the library's errors, usage
//! errors, the server's and standard input/output's.

/// The device of `backend` (an error names a backend this build lacks).
pub fn device(backend: glorank::Backend) -> Result<glorank::Device, CliError> {
    backend
        .device()
        .map_err(|e| CliError::Glorank(glorank::Error::from(e)))
}

/// Errors of the command line: the library's, with their sources, plus usage errors. This
/// is the one place an error becomes text.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A library error (it names its file, line or field).
    #[error(transparent)]
    Glorank(#[from] glorank::Error),
    /// An option value that does not make sense.
    #[error("{0}")]
    Usage(String),
    /// The HTTP server failed (bind, runtime).
    #[error(transparent)]
    Serve(#[from] glorank_serve::ServeError),
    /// Reading standard input or writing standard output failed.
    #[error("standard input/output: {0}")]
    Output(#[from] std::io::Error),
}
