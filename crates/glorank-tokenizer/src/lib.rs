//! Semantic IDs for items: the global identifiers of GloRank.
//!
//! An [`ItemTokenizer`] maps item vectors (content features, collaborative factors, any
//! embedding) to short tuples of codebook tokens. Similar items share prefixes, and the same
//! token means the same thing in every request, so a generative ranker can decode items over
//! one global vocabulary. Two tokenizers:
//!
//! * [`RqVae`]: a residual-quantised VAE trained on burn (encoder MLP, `D` residual levels of
//!   `K` codes, decoder MLP; k-means++ codebook initialisation, dead-code reset, early
//!   stopping). Runs on the `flex` CPU backend by default, on a GPU with the `wgpu` feature.
//! * [`RqKMeans`]: residual k-means, gradient free and fast.
//!
//! Fitting returns a [`SemanticIds`] table that adds a dedupe token so every item's tuple is
//! unique, maps both ways, and accepts cold-start items ([`SemanticIds::add_item`] with the
//! codes from [`ItemTokenizer::encode`]) without retraining. [`TokenizerStats`] reports code
//! usage, entropy, collisions and reconstruction error after every fit.
//!
//! ```
//! use glorank_tokenizer::{ItemTokenizer, RqKMeans, RqKMeansConfig};
//!
//! // 200 items in 4 dimensions.
//! let vectors: Vec<f32> = (0..800).map(|i| ((i * 7919) % 113) as f32 / 113.0).collect();
//! let mut tokenizer = RqKMeans::new(RqKMeansConfig::new(2, 8).with_seed(1))?;
//! let mut ids = tokenizer.fit(&vectors, 4)?;
//! assert_eq!(ids.len(), 200);
//! let stats = tokenizer.stats().unwrap();
//! assert!(stats.usage_per_level[0] > 0.5);
//!
//! // A new item: nearest codes, fresh dedupe token, nothing retrained.
//! let codes = tokenizer.encode(&[0.1, 0.9, 0.5, 0.3], 4)?;
//! let item = ids.add_item(&codes[0])?;
//! assert_eq!(ids.item(ids.tuple(item).unwrap()), Some(item));
//! # Ok::<(), glorank_tokenizer::TokenizerError>(())
//! ```

mod ids;
mod kmeans;
mod rqvae;

pub use burn::tensor::{Device, DeviceKind};
pub use ids::{DedupeReport, SemanticIds, TokenizerStats};
pub use kmeans::{RqKMeans, RqKMeansConfig};
pub use rqvae::{Mlp, RqVae, RqVaeConfig, RqVaeModel, WEIGHTS_FILE};

use glorank_nn::persist;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the tokenizer description (method, configuration, codebooks for RQ-KMeans).
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// File name of the semantic-ID table.
pub const IDS_FILE: &str = "semantic_ids.json";

/// File name of the statistics.
pub const STATS_FILE: &str = "stats.json";

/// Errors of the tokenizer crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {message}")]
    InvalidConfig {
        /// The field.
        field: String,
        /// Why it is rejected.
        message: String,
    },
    /// The input vectors are unusable (empty, ragged, non-finite: the row is named).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// `encode` or `save` before `fit`.
    #[error("the tokenizer is not fitted")]
    NotFitted,
    /// A cold item's prefix already holds as many items as the dedupe vocabulary.
    #[error(
        "code prefix {prefix:?} already holds {dedupe_codes} items, the size of the dedupe vocabulary"
    )]
    DedupeOverflow {
        /// The code prefix.
        prefix: Vec<u32>,
        /// Size of the dedupe vocabulary.
        dedupe_codes: usize,
    },
    /// Training produced a non-finite loss.
    #[error(
        "training diverged (non-finite reconstruction error) in epoch {epoch}; lower the learning rate"
    )]
    Diverged {
        /// The epoch.
        epoch: usize,
    },
    /// A saved table does not belong to the saved tokenizer.
    #[error("{}: {message}", path.display())]
    ConfigMismatch {
        /// The table file.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file has the wrong format or content.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl From<glorank_nn::NnError> for TokenizerError {
    fn from(e: glorank_nn::NnError) -> Self {
        match e {
            glorank_nn::NnError::Io { path, source } => Self::Io { path, source },
            glorank_nn::NnError::Format { path, message } => Self::Format { path, message },
            glorank_nn::NnError::InvalidInput(m) => Self::InvalidInput(m),
            glorank_nn::NnError::InvalidConfig { field, message } => {
                Self::InvalidConfig { field, message }
            }
            other => Self::InvalidInput(other.to_string()),
        }
    }
}

impl TokenizerError {
    /// An [`TokenizerError::InvalidConfig`].
    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// An [`TokenizerError::Io`].
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// The tokenizer algorithms, by the name used in configuration files and on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TokenizerMethod {
    /// Residual k-means ([`RqKMeans`]; the default: gradient free and fast).
    #[default]
    RqKMeans,
    /// Residual-quantised VAE ([`RqVae`]).
    RqVae,
}

impl TokenizerMethod {
    /// Every method.
    pub const ALL: &'static [Self] = &[Self::RqKMeans, Self::RqVae];

    /// The name: `rqkmeans` or `rqvae`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RqKMeans => "rqkmeans",
            Self::RqVae => "rqvae",
        }
    }
}

impl std::fmt::Display for TokenizerMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TokenizerMethod {
    type Err = TokenizerError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                TokenizerError::config(
                    "tokenizer.method",
                    format!("unknown method `{s}` (expected rqkmeans or rqvae)"),
                )
            })
    }
}

/// Learns semantic IDs from item vectors and encodes new vectors.
///
/// Vectors are row-major `f32` slices of `rows x dim`.
pub trait ItemTokenizer: Send {
    /// Fits on `vectors` and returns the unique semantic-ID table of its rows (row `i` is item
    /// `i`). Statistics are available afterwards from [`ItemTokenizer::stats`].
    ///
    /// # Errors
    /// [`TokenizerError::InvalidInput`] for empty, ragged or non-finite input (naming the
    /// row); [`TokenizerError::InvalidConfig`] when there are fewer items than codes.
    fn fit(&mut self, vectors: &[f32], dim: usize) -> Result<SemanticIds>;

    /// The nearest codes (`levels` tokens, no dedupe token) of each row.
    ///
    /// # Errors
    /// [`TokenizerError::NotFitted`]; [`TokenizerError::InvalidInput`] for a dimension that
    /// differs from the fit's or bad values.
    fn encode(&self, vectors: &[f32], dim: usize) -> Result<Vec<Vec<u32>>>;

    /// Statistics of the last fit.
    fn stats(&self) -> Option<&TokenizerStats>;

    /// Codebook size of each level.
    fn codes_per_level(&self) -> &[usize];

    /// Dimension of the vectors the tokenizer was fitted on.
    fn input_dim(&self) -> Option<usize>;

    /// Saves the tokenizer (not the table) into `dir`.
    ///
    /// # Errors
    /// [`TokenizerError::NotFitted`] or I/O errors.
    fn save(&self, dir: &Path) -> Result<()>;
}

/// What `tokenizer.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub(crate) enum Saved {
    /// An RQ-VAE: the weights are in [`WEIGHTS_FILE`].
    RqVae {
        config: RqVaeConfig,
        input_dim: usize,
        stats: Option<TokenizerStats>,
    },
    /// An RQ-KMeans tokenizer with its codebooks.
    RqKMeans(RqKMeans),
}

/// Loads a tokenizer saved with [`ItemTokenizer::save`] from `dir`; an RQ-VAE is placed on
/// `device`.
///
/// # Errors
/// I/O and format errors naming the file.
pub fn load_tokenizer(dir: &Path, device: Device) -> Result<Box<dyn ItemTokenizer>> {
    let path = dir.join(TOKENIZER_FILE);
    let saved: Saved = persist::load_json(&path)?;
    Ok(match saved {
        Saved::RqVae {
            config,
            input_dim,
            stats,
        } => Box::new(RqVae::from_saved(config, input_dim, stats, dir, device)?),
        Saved::RqKMeans(t) => {
            t.check_saved(&path)?;
            Box::new(t)
        }
    })
}

/// Loads a tokenizer and its table ([`IDS_FILE`]) from `dir`, checking they belong together.
///
/// # Errors
/// As [`load_tokenizer`] and [`SemanticIds::load`]; [`TokenizerError::ConfigMismatch`] when
/// the table's levels or codebook sizes differ from the tokenizer's.
pub fn load_artifacts(dir: &Path, device: Device) -> Result<(Box<dyn ItemTokenizer>, SemanticIds)> {
    let tokenizer = load_tokenizer(dir, device)?;
    let path = dir.join(IDS_FILE);
    let ids = SemanticIds::load(&path)?;
    if ids.codes_per_level() != tokenizer.codes_per_level() {
        return Err(TokenizerError::ConfigMismatch {
            path,
            message: format!(
                "the table has codebooks {:?} but the tokenizer has {:?}; re-run `glorank tokenize`",
                ids.codes_per_level(),
                tokenizer.codes_per_level()
            ),
        });
    }
    Ok((tokenizer, ids))
}

/// Saves a fitted tokenizer, its table and its statistics into `dir`.
///
/// # Errors
/// I/O errors naming the file.
pub fn save_artifacts(tokenizer: &dyn ItemTokenizer, ids: &SemanticIds, dir: &Path) -> Result<()> {
    tokenizer.save(dir)?;
    ids.save(&dir.join(IDS_FILE))?;
    if let Some(stats) = tokenizer.stats() {
        persist::save_json(&dir.join(STATS_FILE), stats)?;
    }
    Ok(())
}

/// Checks that `vectors` is a non-empty `rows x dim` matrix of finite values; returns `rows`.
pub(crate) fn check_vectors(vectors: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 {
        return Err(TokenizerError::InvalidInput("vector dimension is 0".into()));
    }
    if vectors.is_empty() {
        return Err(TokenizerError::InvalidInput("no vectors".into()));
    }
    if !vectors.len().is_multiple_of(dim) {
        return Err(TokenizerError::InvalidInput(format!(
            "{} values do not form rows of dimension {dim}",
            vectors.len()
        )));
    }
    if let Some(p) = vectors.iter().position(|v| !v.is_finite()) {
        return Err(TokenizerError::InvalidInput(format!(
            "row {}, column {} is {} (values must be finite)",
            p / dim,
            p % dim,
            vectors[p]
        )));
    }
    Ok(vectors.len() / dim)
}

/// Checks codebook sizes (`K >= 2`, `D >= 1`), the dedupe vocabulary and, with `items`,
/// that every codebook can be filled.
pub(crate) fn check_levels(codes: &[usize], dedupe: usize, items: Option<usize>) -> Result<()> {
    if codes.is_empty() {
        return Err(TokenizerError::config(
            "codes_per_level",
            "need at least one level (D >= 1)",
        ));
    }
    if let Some(l) = codes.iter().position(|&k| k < 2) {
        return Err(TokenizerError::config(
            "codes_per_level",
            format!("level {l} has {} codes; each level needs K >= 2", codes[l]),
        ));
    }
    if dedupe == 0 {
        return Err(TokenizerError::config("dedupe_codes", "must be at least 1"));
    }
    {
        use glorank_nn::limits::{MAX_LEVELS, MAX_VOCAB, too_large};
        let largest = codes.iter().copied().max().unwrap_or(0);
        for (field, value, max) in [
            ("codes_per_level (levels)", codes.len(), MAX_LEVELS),
            ("codes_per_level", largest, MAX_VOCAB),
            ("dedupe_codes", dedupe, MAX_VOCAB),
        ] {
            if let Some(m) = too_large(value, max) {
                return Err(TokenizerError::config(field, m));
            }
        }
    }
    if let Some(n) = items {
        let k = codes.iter().copied().max().unwrap_or(0);
        if n < k {
            return Err(TokenizerError::config(
                "codes_per_level",
                format!("{n} items cannot fill a codebook of {k} codes; lower K to at most {n}"),
            ));
        }
    }
    Ok(())
}

/// A ChaCha8 generator for `seed` and a purpose tag.
pub(crate) fn seeded_rng(seed: u64, purpose: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Mean over rows of `||a - b||^2`.
pub(crate) fn mean_sq_error(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let total: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    total / (a.len() / dim).max(1) as f64
}

/// Mean over rows of `||a||^2`.
pub(crate) fn mean_sq_norm(a: &[f32], dim: usize) -> f64 {
    let total: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    total / (a.len() / dim).max(1) as f64
}

/// Logs a warning when collisions outgrew the requested dedupe vocabulary.
pub(crate) fn warn_overflow(stats: &TokenizerStats, requested: usize) {
    if stats.dedupe_overflow {
        tracing::warn!(
            max_collisions = stats.max_collisions,
            requested,
            "items sharing one code prefix exceed the requested dedupe vocabulary; it was enlarged"
        );
    }
}
