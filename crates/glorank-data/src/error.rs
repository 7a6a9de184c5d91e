//! The error type of the data crate: every input error names its file, line and field.

use std::path::PathBuf;

/// Errors of `glorank-data`.
///
/// Input errors carry the file, the 1-based line and the field they concern, so a user can go
/// straight to the bad byte. Nothing in this crate panics on bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A serving request (or a logged one) is not one: not JSON, a key named twice, an
    /// unknown or missing field (the message says which).
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// An input file does not exist.
    #[error("{}: file not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is for, or how to get it.
        hint: Option<String>,
    },
    /// An input file holds no data lines.
    #[error("{}: file is empty (no data lines)", path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// An I/O error while reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A field of a line could not be parsed or is out of range.
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field name (for example `rating` or `timestamp`).
        field: String,
        /// What is wrong, with the offending text.
        message: String,
    },
    /// A line is not valid text in the file's encoding (UTF-8 or Latin-1).
    #[error("{}:{line}: invalid {encoding} text at byte {byte_offset} of the line", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The expected encoding.
        encoding: &'static str,
        /// Offset of the first bad byte within the line.
        byte_offset: usize,
    },
    /// A CSV header names a column twice.
    #[error("{}:{line}: header names column `{column}` twice", path.display())]
    DuplicateHeader {
        /// The file.
        path: PathBuf,
        /// 1-based line of the header.
        line: usize,
        /// The repeated column name.
        column: String,
    },
    /// A configuration value is invalid (checked before any work starts).
    #[error("invalid configuration `{field}`: {message}")]
    InvalidConfig {
        /// The configuration field.
        field: String,
        /// Why the value is rejected.
        message: String,
    },
    /// The data cannot support the protocol (for example, nothing survives the k-core filter).
    #[error("{0}")]
    Insufficient(String),
    /// A saved dataset was written by another format version.
    #[error(
        "{}: prepared-dataset format version {found}, this build reads version {expected}; re-run `glorank prepare`",
        path.display()
    )]
    StaleCache {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
    /// A saved file is not a GloRank prepared dataset or is corrupt.
    #[error("{}: not a GloRank prepared dataset or corrupt: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was found.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// A [`DataError::Parse`] for `field` of `line` in `path`.
    pub(crate) fn parse(
        path: &std::path::Path,
        line: usize,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::Parse {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A [`DataError::InvalidConfig`].
    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A [`DataError::Io`] for `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
