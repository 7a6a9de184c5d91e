//! The shared model base of GloRank: what every burn model of the workspace (the tokenizer,
//! the policy, the reward models, the baselines) is built on, written once.
//!
//! * [`Backend`]: the compute backend by name (`flex`, `ndarray`, `wgpu`) and its device.
//! * [`init_seeded`]: builds a module with burn's initialisers seeded, reproducibly, even
//!   when other models are built at the same time.
//! * [`persist`]: a JSON description and burnpack weights, each written to a temporary file
//!   and renamed ([`persist::write_atomic`]), so an interrupted save never leaves a
//!   half-written file under the final name.
//! * [`ContextEmbedder`]: the user token, the history (semantic-ID tuples with feedback labels
//!   and recency) and item embeddings with segment embeddings; each model owns its own
//!   instance (its own weights).
//! * [`HistoryItem`]: one history interaction as the models read it.
//! * [`layers`]: multi-head attention with an explicit key/value cache and the pre-LayerNorm
//!   encoder and decoder layers built from it.
//! * [`ModelInputs`]: the model-input switches (the `[inputs]` section) every model reads.
//! * [`RetrieverInput`]: the features a model reads from a request's retriever scores (the
//!   raw score, its rank in the pool, or both).
//! * [`dropout`]: inverted dropout with a seeded, parallel, counter-based mask.
//!
//! ```
//! use burn::tensor::Device;
//! use glorank_nn::{ContextEmbedder, HistoryItem, init_seeded};
//!
//! let device = Device::flex();
//! // Two levels of 8 and 4 tokens, no user fields, width 16, histories of up to 5 items.
//! let embedder = init_seeded(&device, 7, || ContextEmbedder::new(&[8, 4], &[], 16, 5, 0, &device));
//! let history = [HistoryItem { tuple: vec![3, 1], labels: 1 }];
//! embedder.check_context(0, &[], &history)?;
//! let context = embedder.context(&[(&[], &history)], &device);
//! assert_eq!(context.x.dims(), [1, 2, 16]); // [B, 1 + H, d]
//! # Ok::<(), glorank_nn::NnError>(())
//! ```

pub mod activation;
mod context;
mod device;
pub mod dropout;
pub mod host;
mod init;
mod inputs;
pub mod layers;
pub mod limits;
pub mod persist;
mod retriever;

pub use context::{Context, ContextEmbedder, HistoryItem, item_bucket, segment};
pub use device::{Backend, is_host_device};
pub use dropout::with_seeded_device;
pub use init::init_seeded;
pub use inputs::ModelInputs;
pub use layers::MASKED;
pub use retriever::{RetrieverInput, exposure_feature};

use std::path::{Path, PathBuf};

/// Errors of the model base.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// An input does not fit the model (the message names the request and field).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {message}")]
    InvalidConfig {
        /// The field, with its section (`inputs.user_lr_scale`).
        field: String,
        /// Why it is rejected.
        message: String,
    },
    /// A file has the wrong format or content (the message carries serde's line and column,
    /// or burn's shape mismatch).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl NnError {
    /// An [`NnError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Io { path, .. } | Self::Format { path, .. } => Some(path),
            Self::InvalidInput(_) | Self::InvalidConfig { .. } => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
