//! The GloRank reranking data pipeline.
//!
//! From raw interaction logs to reranking requests ("50-to-6" protocol, described in
//! `docs/architecture.md`):
//!
//! 1. **Read** a dataset into a [`RawDataset`]: [`read_ml1m`], [`read_ml100k`],
//!    [`read_amazon_csv`], [`read_implicit`], [`read_csv`], or simulate the embedded
//!    [`SyntheticWorld`]. Every malformed input is an error naming its file, line and field.
//! 2. **Prepare** with [`prepare`]: k-core filter, chronological slates of `L`, splits (last
//!    slate test, the one before validation), labels, a stage-1 ALS retriever
//!    ([`fit_als`]) trained on train interactions, and shuffled pools of `N` candidates.
//!    Options: out-of-sample pools (`rerank_train_slates`), the research group's pools and
//!    user-ID feature, and held-out items for cold start
//!    ([`ProtocolConfig::held_out_share`]: a share of the items unseen before the test
//!    slates, scored by the retriever from content).
//! 3. **Save / load** the [`PreparedDataset`] in a versioned binary file.
//! 4. **Item vectors** for the tokenizer with [`item_vectors`].
//!
//! Pure Rust (no tensors) and deterministic given the seeds.
//!
//! ```
//! use glorank_data::{prepare, NoProgress, ProtocolConfig, SyntheticConfig, SyntheticWorld};
//!
//! let world = SyntheticWorld::new(&SyntheticConfig::small(60, 150).with_sessions(4))?;
//! let config = ProtocolConfig::default().with_k_core(5).with_shape(6, 20, 30);
//! let ds = prepare(world.log(), &config, &NoProgress)?;
//! let request = &ds.test[0];
//! assert_eq!(request.candidates.len(), 30);
//! println!(
//!     "user {} sees {} candidates, {} of them clicked; history of {}",
//!     ds.user_ids[request.user as usize],
//!     request.candidates.len(),
//!     request.positives(),
//!     ds.history(request).items.len()
//! );
//! # Ok::<(), glorank_data::DataError>(())
//! ```

#[macro_use]
mod config;
mod cut;
mod error;
mod exposures;
mod held_out;
pub mod json;
mod labels;
mod log;
mod prepared;
mod progress;
mod protocol;
mod raw;
mod readers;
mod request;
mod retriever;
mod rng;
mod store;
mod synthetic;
mod vectors;

pub use config::{DataConfig, DatasetKind, VectorKind, machine_memory_bytes};
pub use cut::{ProtocolConfig, USER_ID_FIELD};
pub use error::{DataError, Result};
pub use exposures::Exposures;
pub use held_out::{HELD_OUT_RIDGE, HELD_OUT_TITLE_BUCKETS};
pub use labels::{LabelThresholds, Labels};
pub use log::{
    BATCH_ROWS, ITEM_VECTORS_NPY_FILE, ITEMS_FILE, ITEMS_PARQUET_FILE, ItemRecord, LogConfig,
    LogFormat, LogScan, LogSplit, LogStore, LoggedRequest, NamedVocabulary, REPORTED_INVALID,
    RequestLog, RowError, SYNTHETIC_FILE, SyntheticLogConfig, USERS_FILE, USERS_PARQUET_FILE,
    UserRecord, VOCABULARIES_FILE, Vocabularies, log_files, prepare_log, prepare_log_into,
    read_request_log, scan_request_log, write_catalogs, write_request_log,
    write_request_log_parquet, write_synthetic_log,
};
pub use prepared::{
    DATASET_FILE, FORMAT_VERSION, History, PrepareStats, PreparedDataset, RerankSample,
    SUMMARY_FILE, Split, TRAIN_STORE_FILE, TrainStore, UserSequence, demonstration_by,
    write_atomic,
};
pub use progress::{NoProgress, Progress};
pub use protocol::{dedupe_pairs, k_core, prepare};
pub use raw::{CategoricalField, Interaction, ItemFeatures, RawDataset, UserFeatures};
pub use readers::limits::{
    BoundedLine, LineLimit, MAX_LINE_BYTES, Skipped, read_line_bounded, skip_line,
};
pub use readers::movielens::{read_ml1m, read_ml100k};
pub use readers::tabular::{CsvConfig, read_amazon_csv, read_csv, read_implicit};
pub use request::{RerankHistoryItem, RerankRequest};
pub use retriever::{MfModel, RetrieverConfig, fit_als};
pub use store::{StoreReader, StoredRequest};
pub use synthetic::{SyntheticConfig, SyntheticWorld};
pub use vectors::{CONTENT_VECTORS, ItemVectorSource, ItemVectors, item_vectors, title_words};

use std::path::PathBuf;

/// A dataset to read, by format.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DatasetSource {
    /// The embedded synthetic world.
    Synthetic(SyntheticConfig),
    /// MovieLens-1M folder (`ratings.dat`, `movies.dat`, `users.dat`).
    Ml1m(PathBuf),
    /// MovieLens-100K folder (`u.data`, `u.item`, `u.user`).
    Ml100k(PathBuf),
    /// Amazon ratings CSV file (`user,item,rating,timestamp`).
    Amazon(PathBuf),
    /// Implicit `user item item ...` file, or a folder with `train.txt`/`test.txt`.
    Implicit(PathBuf),
    /// A generic CSV with named columns.
    Csv(PathBuf, CsvConfig),
    /// A request log (a JSON Lines file, or a folder of parts and catalogs), read with
    /// its configuration; see [`prepare_log`].
    Log(PathBuf, LogConfig),
}

impl DatasetSource {
    /// This source with `log` as the configuration of a request log (other sources are
    /// returned unchanged).
    pub fn with_log(self, log: &LogConfig) -> Self {
        match self {
            Self::Log(path, _) => Self::Log(path, log.clone()),
            other => other,
        }
    }

    /// Reads the dataset's interactions.
    ///
    /// # Errors
    /// The reader's [`DataError`] (file, line and field of the first bad input);
    /// [`DataError::InvalidConfig`] for a request log, which holds requests, not
    /// interactions (see [`DatasetSource::prepare`]).
    pub fn read(&self) -> Result<RawDataset> {
        match self {
            Self::Synthetic(cfg) => Ok(SyntheticWorld::new(cfg)?.log()),
            Self::Ml1m(p) => read_ml1m(p),
            Self::Ml100k(p) => read_ml100k(p),
            Self::Amazon(p) => read_amazon_csv(p),
            Self::Implicit(p) => read_implicit(p),
            Self::Csv(p, cfg) => read_csv(p, cfg),
            Self::Log(..) => Err(DataError::config(
                "data.dataset",
                "a request log holds requests, not interactions: prepare it",
            )),
        }
    }

    /// [`DatasetSource::prepare`], saving the dataset into `dir`
    /// ([`PreparedDataset::save`]); a request log is prepared with [`prepare_log_into`], so
    /// `log.store = "disk"` writes its training requests there as they are read.
    ///
    /// # Errors
    /// As [`DatasetSource::prepare`]; [`DataError::Io`] naming a file of `dir`.
    pub fn prepare_into(
        &self,
        config: &ProtocolConfig,
        dir: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<PreparedDataset> {
        if let Self::Log(path, log) = self {
            return prepare_log_into(path, log, config, dir, progress);
        }
        let ds = self.prepare(config, progress)?;
        ds.save(dir)?;
        Ok(ds)
    }

    /// Reads and prepares the dataset (a request log with [`prepare_log`]); the synthetic world's configuration is recorded in
    /// the result so its true click model can be rebuilt, and with
    /// [`SyntheticConfig::pool_feedback`] every candidate gets the world's feedback
    /// ([`PreparedDataset::label_pools`]).
    ///
    /// # Errors
    /// As [`DatasetSource::read`] and [`prepare`].
    pub fn prepare(
        &self,
        config: &ProtocolConfig,
        progress: &dyn Progress,
    ) -> Result<PreparedDataset> {
        if let Self::Log(path, log) = self {
            return prepare_log(path, log, config, progress);
        }
        let t = std::time::Instant::now();
        progress.stage("reading", 0);
        let world = match self {
            Self::Synthetic(cfg) => Some(SyntheticWorld::new(cfg)?),
            _ => None,
        };
        let raw = match &world {
            Some(w) => w.log(),
            None => self.read()?,
        };
        progress.finish();
        let read_secs = t.elapsed().as_secs_f64();
        let mut ds = prepare(raw, config, progress)?;
        ds.stats.seconds.insert(0, ("read".into(), read_secs));
        if let Some(w) = world {
            if w.config().pool_feedback {
                ds.label_pools(&w)?;
            }
            ds.synthetic = Some(w.config().clone());
        }
        Ok(ds)
    }
}
