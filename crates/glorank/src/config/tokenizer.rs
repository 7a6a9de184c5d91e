//! The `[tokenizer]` section: how semantic IDs are learned.

use crate::Result;
use glorank_data::{ItemVectorSource, PreparedDataset, VectorKind};
use glorank_nn::Backend;
use glorank_tokenizer::{
    ItemTokenizer, RqKMeans, RqKMeansConfig, RqVae, RqVaeConfig, TokenizerMethod,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How semantic IDs are learned (the `[tokenizer]` section, and `glorank tokenize`'s
/// options); every default is here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenizerConfig {
    /// `rqkmeans` (default) or `rqvae`.
    pub method: TokenizerMethod,
    /// Code levels D (default 3).
    pub levels: usize,
    /// Codes per level K (default 32; 256 suits catalogues of tens of thousands).
    pub codes: usize,
    /// Codes of each level when they differ (empty, the default: `codes` at every level).
    pub codes_per_level: Vec<usize>,
    /// Requested dedupe vocabulary (default 32; enlarged with a warning when collisions
    /// need more).
    pub dedupe_codes: usize,
    /// Item vectors: `auto` (content + MF factors when the data has content), `content`,
    /// `mf` or `concat` (default `auto`).
    pub vectors: VectorKind,
    /// Hash buckets for title words in content vectors (default 32).
    pub title_buckets: usize,
    /// Seed (default 0).
    pub seed: u64,
    /// Your own item vectors instead: a `.npy` (2-D float, one row per item in the prepared
    /// dataset's item order) or CSV (`item_id,v1,...`) file; overrides `vectors`.
    pub vectors_file: Option<PathBuf>,
    /// RQ-VAE latent dimension (default 32).
    pub latent_dim: usize,
    /// RQ-VAE maximum epochs (default 50).
    pub max_epochs: usize,
    /// RQ-VAE batch size (default 256).
    pub batch_size: usize,
    /// RQ-VAE learning rate (default 1e-3).
    pub learning_rate: f64,
    /// RQ-VAE compute device (default `flex`).
    pub device: Backend,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        let vae = RqVaeConfig::default();
        Self {
            method: TokenizerMethod::RqKMeans,
            levels: 3,
            codes: 32,
            codes_per_level: Vec::new(),
            dedupe_codes: 32,
            vectors: VectorKind::Auto,
            title_buckets: 32,
            seed: 0,
            vectors_file: None,
            latent_dim: vae.latent_dim,
            max_epochs: vae.max_epochs,
            batch_size: vae.batch_size,
            learning_rate: vae.learning_rate,
            device: Backend::Flex,
        }
    }
}

impl TokenizerConfig {
    /// Where the item vectors of `ds` come from.
    pub fn vector_source(&self, ds: &PreparedDataset) -> ItemVectorSource {
        match &self.vectors_file {
            Some(f) => ItemVectorSource::File(f.clone()),
            None => self
                .vectors
                .source(ds.item_features.is_some(), self.title_buckets),
        }
    }

    /// Codebook size of each level.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] when `codes_per_level` does not list `levels` sizes.
    pub fn codes_per_level(&self) -> Result<Vec<usize>> {
        match self.codes_per_level.len() {
            0 => Ok(vec![self.codes; self.levels]),
            n if n == self.levels => Ok(self.codes_per_level.clone()),
            n => Err(crate::Error::InvalidConfig {
                field: "tokenizer.codes_per_level".into(),
                message: format!("lists {n} sizes but `levels` is {}", self.levels),
            }),
        }
    }

    /// Checks every size against `glorank_nn::limits` before anything is allocated.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] naming `tokenizer.FIELD`.
    pub fn validate(&self) -> Result<()> {
        use glorank_nn::limits::*;
        let bounds = [
            ("tokenizer.levels", self.levels, MAX_LEVELS),
            ("tokenizer.codes", self.codes, MAX_VOCAB),
            (
                "tokenizer.codes_per_level",
                self.codes_per_level.iter().copied().max().unwrap_or(0),
                MAX_VOCAB,
            ),
            ("tokenizer.dedupe_codes", self.dedupe_codes, MAX_VOCAB),
            ("tokenizer.title_buckets", self.title_buckets, MAX_VOCAB),
            ("tokenizer.latent_dim", self.latent_dim, MAX_D_MODEL),
            ("tokenizer.max_epochs", self.max_epochs, MAX_EPOCHS),
            ("tokenizer.batch_size", self.batch_size, MAX_BATCH),
        ];
        for (field, value, max) in bounds {
            if let Some(message) = too_large(value, max) {
                return Err(crate::Error::InvalidConfig {
                    field: field.into(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// The unfitted tokenizer.
    ///
    /// # Errors
    /// Invalid sizes (named by the tokenizer), a device this build lacks.
    pub fn tokenizer(&self) -> Result<Box<dyn ItemTokenizer>> {
        self.validate()?;
        let codes = self.codes_per_level()?;
        Ok(match self.method {
            TokenizerMethod::RqVae => {
                let mut c = RqVaeConfig::default()
                    .with_seed(self.seed)
                    .with_batch_size(self.batch_size)
                    .with_learning_rate(self.learning_rate);
                c.latent_dim = self.latent_dim;
                c.max_epochs = self.max_epochs;
                c.codes_per_level = codes;
                c.dedupe_codes = self.dedupe_codes;
                Box::new(RqVae::with_device(c, self.device.device()?)?)
            }
            _ => {
                let mut c = RqKMeansConfig::default()
                    .with_codes_per_level(codes)
                    .with_seed(self.seed);
                c.dedupe_codes = self.dedupe_codes;
                Box::new(RqKMeans::new(c)?)
            }
        })
    }
}
