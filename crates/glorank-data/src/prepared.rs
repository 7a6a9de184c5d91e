//! The prepared dataset: requests (samples) by split, with everything later stages need, and
//! its versioned binary file format.

use crate::cut::ProtocolConfig;
use crate::labels::Labels;
use crate::raw::{ItemFeatures, UserFeatures};
use crate::retriever::MfModel;
use crate::synthetic::{SyntheticConfig, SyntheticWorld};
use crate::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Magic bytes at the start of `dataset.bin`.
const MAGIC: &[u8; 8] = b"GLRKDATA";

/// Version of the binary format; bumped whenever [`PreparedDataset`] changes shape.
pub const FORMAT_VERSION: u32 = 6;

/// File name of the prepared dataset inside a run directory.
pub const DATASET_FILE: &str = "dataset.bin";

/// File name of the training-request store inside a run directory.
pub const TRAIN_STORE_FILE: &str = "train_requests.bin";

/// File name of the human-readable summary inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// Where a dataset's training requests are when they are kept on disk: the offset of each
/// record in [`TRAIN_STORE_FILE`], in split order, and the file's length.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainStore {
    /// Byte offset of each training request's record, in split order.
    pub offsets: Vec<u64>,
    /// Length of the store file in bytes (checked when it is opened).
    pub bytes: u64,
    /// Whether every stored request carries the log's retriever scores.
    pub retriever_scores: bool,
}

impl TrainStore {
    /// Number of stored requests.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether no request is stored.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The byte range of record `i`.
    pub(crate) fn range(&self, i: usize) -> (u64, u64) {
        let start = self.offsets[i];
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.bytes);
        (start, end)
    }
}

/// One user's interactions after filtering, in chronological order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSequence {
    /// Item indices.
    pub items: Vec<u32>,
    /// Ratings (1 on implicit data).
    pub ratings: Vec<f32>,
    /// Timestamps (or positions on data without time).
    pub timestamps: Vec<i64>,
}

/// One reranking request: a user, a history, `N` shuffled candidates with labels, and the
/// logged slate.
///
/// The history is not copied into every sample: it is the `history_len` interactions of the
/// user's [`UserSequence`] before `slate_start`; read it with [`PreparedDataset::history`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankSample {
    /// User index.
    pub user: u32,
    /// Index in the user's sequence where the logged slate starts.
    pub slate_start: u32,
    /// Candidate item indices, shuffled (`N` of them).
    pub candidates: Vec<u32>,
    /// Labels of each candidate (all zero for retrieved, never-logged items).
    pub labels: Vec<Labels>,
    /// Positions in `candidates` of the logged slate's items, in exposure (time) order.
    pub logged: Vec<u16>,
}

impl RerankSample {
    /// Binary click relevance per candidate (1.0 for a click), for Precision/Recall/MAP.
    pub fn click_relevance(&self) -> Vec<f64> {
        self.labels
            .iter()
            .map(|l| if l.click() { 1.0 } else { 0.0 })
            .collect()
    }

    /// Graded relevance per candidate: the number of behaviours (click, like, star), 0..=3,
    /// for graded NDCG.
    pub fn graded_relevance(&self) -> Vec<f64> {
        self.labels.iter().map(|l| f64::from(l.grade())).collect()
    }

    /// Number of clicked candidates.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|l| l.click()).count()
    }
}

/// A history window: the interactions before a slate, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// Item indices.
    pub items: &'a [u32],
}

/// What a request read from a log carries beyond its [`RerankSample`]: the request's own
/// history, the values that order its shown items, the log's retriever scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The log's id of the request.
    pub request_id: String,
    /// When it was served.
    pub timestamp: i64,
    /// History item indices, oldest first (at most the protocol's `history_len`).
    pub history: Vec<u32>,
    /// Their behaviour bits.
    pub history_labels: Vec<Labels>,
    /// One value per shown item, in display order, that orders a demonstration (the
    /// `log.order_by` signal, or the grade).
    pub shown_values: Vec<f32>,
    /// The log's retriever score of each candidate, in the sample's candidate order.
    pub retriever_scores: Option<Vec<f32>>,
}

/// Positions in `sample.candidates` of its logged slate ordered by `values` (one per logged
/// item, in exposure order), descending, ties by exposure order: the demonstration of
/// [`PreparedDataset::demonstration`], for a request whose values are at hand (a request
/// read from a store, with its [`LogRecord::shown_values`]).
pub fn demonstration_by(sample: &RerankSample, values: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sample.logged.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .map(|k| sample.logged[k] as usize)
        .collect()
}

/// Log records with their ranks in time, as a dataset keeps them: sorted by rank, and the
/// ranks (for [`PreparedDataset::log_ranks`]) unless they are `0..n`.
pub(crate) fn index_records(
    mut records: Vec<(u32, LogRecord)>,
) -> (Vec<LogRecord>, Option<Vec<u32>>) {
    records.sort_unstable_by_key(|(r, _)| *r);
    let dense = records
        .iter()
        .enumerate()
        .all(|(k, (r, _))| *r as usize == k);
    let ranks = (!dense).then(|| records.iter().map(|(r, _)| *r).collect());
    (records.into_iter().map(|(_, r)| r).collect(), ranks)
}

/// Counts and timings of a `prepare` run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrepareStats {
    /// Users before filtering.
    pub raw_users: usize,
    /// Items before filtering.
    pub raw_items: usize,
    /// Interactions before filtering.
    pub raw_interactions: usize,
    /// Repeated (user, item) pairs removed.
    pub duplicate_pairs: usize,
    /// Rounds of the k-core filter until the fixpoint.
    pub k_core_rounds: usize,
    /// Users after filtering.
    pub users: usize,
    /// Items after filtering.
    pub items: usize,
    /// Interactions after filtering.
    pub interactions: usize,
    /// Interactions the retriever was trained on.
    pub retriever_train_interactions: usize,
    /// Items with no train interaction (cold).
    pub cold_items: usize,
    /// Held-out items of the held-out-items protocol (0 when it is off).
    pub held_out_items: usize,
    /// Interactions removed because they held a held-out item before a test slate.
    pub held_out_interactions: usize,
    /// Share of held-out items among the logged and among the retrieved candidates of the
    /// test requests (`[logged, retrieved]`; zero when the protocol is off). Similar shares
    /// mean a held-out item is as likely to be a retrieved negative as a logged item.
    pub held_out_test_shares: [f64; 2],
    /// Train slates.
    pub train_slates: usize,
    /// Validation slates.
    pub valid_slates: usize,
    /// Test slates.
    pub test_slates: usize,
    /// Mean clicked items per slate, per split (train, valid, test).
    pub mean_positives: [f64; 3],
    /// Mean over test slates with a positive of the fraction of its positives found in the
    /// retriever's own top-N (history excluded).
    pub retriever_recall: Option<f64>,
    /// Wall time per step, seconds: the only field that differs between two runs with the
    /// same seed.
    pub seconds: Vec<(String, f64)>,
    /// For a request log: fields its rows carry that training does not read, with the
    /// number of rows carrying each (`exposures`, `candidate_vectors`).
    pub unread_log_fields: Vec<(String, usize)>,
}

impl PrepareStats {
    /// Warnings a user should see about this preparation: a stage-1 retriever fitted on less
    /// than half of the interactions (`rerank_train_slates` took most train slates out of
    /// its data), or too few training requests to learn from.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        // A log's stage-1 retriever is the logging system's: no warning about ours.
        let ours = self.retriever_train_interactions > 0;
        if ours
            && self.interactions > 0
            && self.retriever_train_interactions * 2 < self.interactions
        {
            out.push(format!(
                "the stage-1 retriever was fitted on {} of {} interactions ({:.1}%): \
                 rerank_train_slates leaves it little data, so its candidate pools are weak; \
                 lower rerank_train_slates",
                self.retriever_train_interactions,
                self.interactions,
                100.0 * self.retriever_train_interactions as f64 / self.interactions as f64
            ));
        }
        for (field, rows) in self.unread_log_fields.iter().filter(|(_, n)| *n > 0) {
            let why = match field.as_str() {
                "exposures" => {
                    "the models' exposure counts come from the log's own training requests"
                }
                _ => "content comes from the item catalog (items.jsonl)",
            };
            out.push(format!(
                "{rows} rows of the log carry `{field}`, which training does not read: {why}"
            ));
        }
        if self.train_slates < 100 {
            out.push(format!(
                "only {} training requests: the reranker has little to learn from",
                self.train_slates
            ));
        }
        out
    }

    /// Fills the per-split counts and mean positives.
    pub(crate) fn fill_split_counts(
        &mut self,
        train: &[RerankSample],
        valid: &[RerankSample],
        test: &[RerankSample],
    ) {
        self.train_slates = train.len();
        self.valid_slates = valid.len();
        self.test_slates = test.len();
        for (k, split) in [train, valid, test].iter().enumerate() {
            self.mean_positives[k] = if split.is_empty() {
                0.0
            } else {
                split.iter().map(|s| s.positives() as f64).sum::<f64>() / split.len() as f64
            };
        }
    }
}

/// A split of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    /// Training requests (all slates before the last two of each user).
    Train,
    /// Validation requests (each user's second-to-last slate).
    Valid,
    /// Test requests (each user's last slate).
    Test,
}

/// Everything the later stages read: ids, features, sequences, samples, the retriever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedDataset {
    /// Dataset name.
    pub name: String,
    /// Protocol configuration used.
    pub config: ProtocolConfig,
    /// Whether the data is implicit feedback.
    pub implicit: bool,
    /// Original user ids, by user index.
    pub user_ids: Vec<String>,
    /// Original item ids, by item index.
    pub item_ids: Vec<String>,
    /// Item content features, if the source has them.
    pub item_features: Option<ItemFeatures>,
    /// User attributes, if the source has them.
    pub user_features: Option<UserFeatures>,
    /// Chronological interactions of each user.
    pub sequences: Vec<UserSequence>,
    /// Train requests (empty while they are kept on disk: see
    /// [`PreparedDataset::train_store`]).
    pub train: Vec<RerankSample>,
    /// Validation requests.
    pub valid: Vec<RerankSample>,
    /// Test requests.
    pub test: Vec<RerankSample>,
    /// The stage-1 retriever (fitted on train interactions).
    pub retriever: MfModel,
    /// Number of train interactions of each item (0 = cold item).
    pub item_train_counts: Vec<u32>,
    /// The held-out (cold) items of the held-out-items protocol, sorted (empty when
    /// [`ProtocolConfig::held_out_share`] is 0): they appear in no train or validation
    /// request and in no history, only in test requests.
    pub held_out: Vec<u32>,
    /// Counts and timings.
    pub stats: PrepareStats,
    /// The generating configuration, for the synthetic world (its true click model can be
    /// rebuilt from it).
    pub synthetic: Option<SyntheticConfig>,
    /// For a dataset read from a request log ([`crate::prepare_log`]): each request's
    /// record, indexed by its sample's `slate_start` (the request's rank in time order);
    /// histories, demonstrations and retriever scores are read from it, not from
    /// `sequences` and `retriever`.
    pub log: Option<Vec<LogRecord>>,
    /// When `log` holds only some requests' records (the validation and test requests of a
    /// dataset whose training requests are on disk): the rank in time of each record of
    /// `log`, ascending. `None`: `log` is indexed by rank.
    pub log_ranks: Option<Vec<u32>>,
    /// Where the training requests are when they are kept on disk (`log.store = "disk"`):
    /// the records of [`TRAIN_STORE_FILE`](crate::TRAIN_STORE_FILE) next to
    /// `dataset.bin`. `train` is then empty; [`PreparedDataset::train_reader`] reads them
    /// a request at a time, [`PreparedDataset::load_train`] all at once.
    pub train_store: Option<TrainStore>,
    /// The directory the dataset was loaded from or prepared into (where its store is).
    #[serde(skip)]
    pub(crate) dir: Location,
}

/// Where a dataset lives on disk. Not part of what it holds: two equal datasets may live
/// in two directories, so any two locations compare equal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Location(pub(crate) Option<PathBuf>);

impl PartialEq for Location {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl PreparedDataset {
    /// Replaces the labels of every request (of a dataset prepared from `world`'s log) by
    /// [`SyntheticWorld::pool_ratings`] under the dataset's label thresholds.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] when a user or item id of `ds` is not this world's.
    pub fn label_pools(&mut self, world: &SyntheticWorld) -> Result<()> {
        let ds = self;
        let thresholds = ds.config.thresholds;
        let (user_ids, item_ids) = (&ds.user_ids, &ds.item_ids);
        let not_ours = |id: &str| {
            DataError::config(
                "synthetic.pool_feedback",
                format!("id `{id}` is not the synthetic world's"),
            )
        };
        for sample in ds.train.iter_mut().chain(&mut ds.valid).chain(&mut ds.test) {
            let uid = &user_ids[sample.user as usize];
            let user = SyntheticWorld::user_index(uid).ok_or_else(|| not_ours(uid))?;
            let items = sample
                .candidates
                .iter()
                .map(|&c| {
                    let id = &item_ids[c as usize];
                    SyntheticWorld::item_index(id).ok_or_else(|| not_ours(id))
                })
                .collect::<Result<Vec<usize>>>()?;
            let ratings = world.pool_ratings(user, &items, u64::from(sample.slate_start));
            sample.labels = ratings
                .iter()
                .map(|&r| Labels::from_rating(r, &thresholds, false))
                .collect();
        }
        Ok(())
    }

    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Each item id's index (the inverse of `item_ids`).
    pub fn item_index(&self) -> std::collections::HashMap<&str, usize> {
        self.item_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect()
    }

    /// Whether `item` is held out (the held-out-items protocol's cold items).
    pub fn is_held_out(&self, item: u32) -> bool {
        self.held_out.binary_search(&item).is_ok()
    }

    /// Share of held-out items among the logged and among the retrieved candidates of
    /// `samples`, `[logged, retrieved]` (zero without held-out items).
    pub fn held_out_shares(&self, samples: &[RerankSample]) -> [f64; 2] {
        let (mut n, mut cold) = ([0usize; 2], [0usize; 2]);
        for s in samples {
            for (p, &i) in s.candidates.iter().enumerate() {
                let k = usize::from(!s.logged.contains(&(p as u16)));
                n[k] += 1;
                cold[k] += usize::from(self.is_held_out(i));
            }
        }
        [0, 1].map(|k| cold[k] as f64 / n[k].max(1) as f64)
    }

    /// The requests of `split`.
    pub fn split(&self, split: Split) -> &[RerankSample] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// The history window of `sample` (up to `history_len` interactions, oldest first).
    pub fn history(&self, sample: &RerankSample) -> History<'_> {
        if let Some(r) = self.log_record(sample) {
            return History { items: &r.history };
        }
        let seq = &self.sequences[sample.user as usize];
        let end = sample.slate_start as usize;
        let start = end.saturating_sub(self.config.history_len);
        History {
            items: &seq.items[start..end],
        }
    }

    /// The log record of `sample` (`None` unless the dataset was read from a log).
    ///
    /// # Panics
    /// When the dataset keeps only some records (its training requests are on disk) and
    /// `sample` is a training request: read those through [`PreparedDataset::train_reader`].
    pub fn log_record(&self, sample: &RerankSample) -> Option<&LogRecord> {
        self.log.as_ref()?;
        Some(
            self.record_at(sample.slate_start)
                .expect("a request whose record is on disk: read it from the store"),
        )
    }

    /// The log record of the request of rank `rank` in time, when it is in memory.
    fn record_at(&self, rank: u32) -> Option<&LogRecord> {
        let log = self.log.as_ref()?;
        match &self.log_ranks {
            None => log.get(rank as usize),
            Some(ranks) => ranks.binary_search(&rank).ok().map(|k| &log[k]),
        }
    }

    /// The directory the dataset was loaded from or prepared into (`None` for a dataset
    /// built in memory).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.0.as_deref()
    }

    /// Number of training requests (in memory or on disk).
    pub fn train_len(&self) -> usize {
        self.train_store
            .as_ref()
            .map_or(self.train.len(), TrainStore::len)
    }

    /// Whether the training requests are kept on disk ([`PreparedDataset::train_store`]).
    pub fn train_on_disk(&self) -> bool {
        self.train_store.is_some()
    }

    /// Labels of the history items.
    pub fn history_labels(&self, sample: &RerankSample) -> Vec<Labels> {
        if let Some(r) = self.log_record(sample) {
            return r.history_labels.clone();
        }
        let seq = &self.sequences[sample.user as usize];
        let end = sample.slate_start as usize;
        let start = end.saturating_sub(self.config.history_len);
        seq.ratings[start..end]
            .iter()
            .map(|&r| Labels::from_rating(r, &self.config.thresholds, self.implicit))
            .collect()
    }

    /// Ratings of the logged slate, in exposure order (for a log, the values that order its
    /// shown items: see [`LogRecord::shown_values`]).
    pub fn logged_ratings(&self, sample: &RerankSample) -> &[f32] {
        if let Some(r) = self.log_record(sample) {
            return &r.shown_values;
        }
        let seq = &self.sequences[sample.user as usize];
        let s = sample.slate_start as usize;
        &seq.ratings[s..s + sample.logged.len()]
    }

    /// The default SFT demonstration: positions in `candidates` of the logged slate ordered by
    /// rating, descending, ties by time (exposure order).
    pub fn demonstration(&self, sample: &RerankSample) -> Vec<usize> {
        demonstration_by(sample, self.logged_ratings(sample))
    }

    /// The labels' demonstration: positions in `candidates` of the `slate_len` candidates
    /// with the highest label grade (star, like, click), ties by logged items first in
    /// exposure order, then candidate position. Where only the logged slate has labels (the
    /// real datasets) it is the logged slate ordered by grade; with the synthetic world's
    /// pool feedback ([`crate::SyntheticConfig::pool_feedback`]) it is drawn from the whole
    /// pool.
    pub fn label_demonstration(&self, sample: &RerankSample) -> Vec<usize> {
        let n = sample.candidates.len();
        // Exposure rank of each candidate (logged ones first), n for the others.
        let mut exposure = vec![n; n];
        for (k, &p) in sample.logged.iter().enumerate() {
            exposure[p as usize] = k;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            let (ga, gb) = (sample.labels[a].grade(), sample.labels[b].grade());
            gb.cmp(&ga)
                .then(exposure[a].cmp(&exposure[b]))
                .then(a.cmp(&b))
        });
        order.truncate(self.config.slate_len.min(n));
        order
    }

    /// Whether every request has retriever scores: always for a prepared rating dataset
    /// (its stage-1 retriever's), for a log when its rows carry `retriever_scores`.
    pub fn has_retriever_scores(&self) -> bool {
        self.log
            .as_ref()
            .is_none_or(|l| l.iter().all(|r| r.retriever_scores.is_some()))
            && self.train_store.as_ref().is_none_or(|s| s.retriever_scores)
    }

    /// Retriever scores of the sample's candidates (the log's, for a dataset read from a
    /// log; zeros where a log row has none, see
    /// [`PreparedDataset::has_retriever_scores`]).
    pub fn retriever_scores(&self, sample: &RerankSample) -> Vec<f32> {
        if let Some(r) = self.log_record(sample) {
            return r
                .retriever_scores
                .clone()
                .unwrap_or_else(|| vec![0.0; sample.candidates.len()]);
        }
        sample
            .candidates
            .iter()
            .map(|&i| self.retriever.score(sample.user as usize, i as usize))
            .collect()
    }

    /// Saves `dataset.bin` (versioned binary) and `summary.json` into `dir`, creating it.
    /// Both files are written to a temporary name and renamed, so a crash never leaves a
    /// half-written file under the final name.
    ///
    /// # Errors
    /// [`DataError::Io`] naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        if let (Some(_), Some(from)) = (&self.train_store, &self.dir.0) {
            // The training requests on disk go with the dataset.
            let (from, to) = (from.join(TRAIN_STORE_FILE), dir.join(TRAIN_STORE_FILE));
            let same = matches!(
                (from.canonicalize(), to.canonicalize()),
                (Ok(a), Ok(b)) if a == b
            );
            if !same {
                let mut input = std::fs::File::open(&from).map_err(|e| DataError::io(&from, e))?;
                write_atomic_with(&to, |out| {
                    std::io::copy(&mut input, out)
                        .map(drop)
                        .map_err(|e| DataError::io(&from, e))
                })?;
            }
        }
        // Streamed to the file: the dataset is not held twice (as itself and as bytes).
        let path = dir.join(DATASET_FILE);
        write_atomic_with(&path, |out| {
            let io = |e: std::io::Error| DataError::io(&path, e);
            out.write_all(MAGIC).map_err(io)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(io)?;
            postcard::to_io(self, out).map_err(|e| DataError::Corrupt {
                path: path.clone(),
                message: format!("serialisation failed: {e}"),
            })?;
            Ok(())
        })?;
        let summary =
            serde_json::to_vec_pretty(&Summary::of(self)).map_err(|e| DataError::Corrupt {
                path: dir.join(SUMMARY_FILE),
                message: e.to_string(),
            })?;
        write_atomic(&dir.join(SUMMARY_FILE), &summary)
    }

    /// Loads a dataset saved by [`PreparedDataset::save`] from `dir` (or from the file itself).
    ///
    /// # Errors
    /// [`DataError::MissingFile`], [`DataError::StaleCache`] for another format version,
    /// [`DataError::Corrupt`] for a file that is not a prepared dataset or is truncated.
    pub fn load(dir: &Path) -> Result<Self> {
        let path: PathBuf = if dir.is_dir() {
            dir.join(DATASET_FILE)
        } else {
            dir.to_path_buf()
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DataError::MissingFile {
                    path: path.clone(),
                    hint: Some("run `glorank prepare` first".into()),
                }
            } else {
                DataError::io(&path, e)
            }
        })?;
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(DataError::Corrupt {
                path,
                message: "missing the GLRKDATA header".into(),
            });
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != FORMAT_VERSION {
            return Err(DataError::StaleCache {
                path,
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let mut ds: Self = postcard::from_bytes(&bytes[12..]).map_err(|e| DataError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        ds.dir = Location(path.parent().map(Path::to_path_buf));
        ds.check_consistency(&path)?;
        Ok(ds)
    }

    /// Cross-checks indices so a damaged file cannot cause out-of-bounds access later.
    fn check_consistency(&self, path: &Path) -> Result<()> {
        let corrupt = |message: &str| DataError::Corrupt {
            path: path.to_path_buf(),
            message: message.into(),
        };
        let (nu, ni) = (self.num_users(), self.num_items());
        if self.sequences.len() != nu || self.item_train_counts.len() != ni {
            return Err(corrupt(
                "sequence or item-count table does not match the id tables",
            ));
        }
        if self.retriever.num_users() != nu || self.retriever.num_items() != ni {
            return Err(corrupt("retriever factors do not match the id tables"));
        }
        if self.held_out.iter().any(|&i| i as usize >= ni)
            || self.held_out.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(corrupt("the held-out item list is not sorted item indices"));
        }
        for seq in &self.sequences {
            if seq.ratings.len() != seq.items.len()
                || seq.timestamps.len() != seq.items.len()
                || seq.items.iter().any(|&i| i as usize >= ni)
            {
                return Err(corrupt("a user sequence is inconsistent"));
            }
        }
        if let Some(ranks) = &self.log_ranks {
            let sorted = ranks.windows(2).all(|w| w[0] < w[1]);
            if !sorted || self.log.as_ref().is_none_or(|l| l.len() != ranks.len()) {
                return Err(corrupt(
                    "the ranks of the log records are not one per record, ascending",
                ));
            }
        }
        if self.train_store.is_some() && (!self.train.is_empty() || self.log.is_none()) {
            return Err(corrupt(
                "training requests both on disk and in memory, or without a log",
            ));
        }
        if let Some(log) = &self.log {
            for r in log {
                if r.history.len() != r.history_labels.len()
                    || r.history.iter().any(|&i| i as usize >= ni)
                {
                    return Err(corrupt(&format!(
                        "log record `{}` is inconsistent",
                        r.request_id
                    )));
                }
            }
        }
        for s in self.train.iter().chain(&self.valid).chain(&self.test) {
            let seq_len = match &self.log {
                Some(_) => {
                    let r = self.record_at(s.slate_start);
                    let ok = r.is_some_and(|r| {
                        r.shown_values.len() == s.logged.len()
                            && r.retriever_scores
                                .as_ref()
                                .is_none_or(|x| x.len() == s.candidates.len())
                    });
                    if ok { usize::MAX } else { 0 }
                }
                None => self
                    .sequences
                    .get(s.user as usize)
                    .map_or(0, |q| q.items.len()),
            };
            if s.user as usize >= nu
                || (s.slate_start as usize).saturating_add(s.logged.len()) > seq_len
                || s.labels.len() != s.candidates.len()
                || s.candidates.iter().any(|&i| i as usize >= ni)
                || s.logged.iter().any(|&p| p as usize >= s.candidates.len())
            {
                return Err(corrupt(&format!(
                    "sample of user {} is inconsistent",
                    s.user
                )));
            }
        }
        Ok(())
    }
}

/// The contents of `summary.json`.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    name: &'a str,
    format_version: u32,
    implicit: bool,
    config: &'a ProtocolConfig,
    stats: &'a PrepareStats,
    synthetic: Option<&'a SyntheticConfig>,
}

impl<'a> Summary<'a> {
    fn of(ds: &'a PreparedDataset) -> Self {
        Self {
            name: &ds.name,
            format_version: FORMAT_VERSION,
            implicit: ds.implicit,
            config: &ds.config,
            stats: &ds.stats,
            synthetic: ds.synthetic.as_ref(),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and
/// synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |out| {
        out.write_all(bytes).map_err(|e| DataError::io(path, e))
    })
}

/// Writes `path` atomically from `write`, which streams the contents into a buffered
/// temporary file in the same folder; the file is then flushed, synced and renamed over
/// `path`. On any error the temporary file is removed and `path` is left as it was.
///
/// # Errors
/// `write`'s errors; [`DataError::Io`] naming `path`.
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let io = |e: std::io::Error| DataError::io(path, e);
    let result = std::fs::File::create(&tmp)
        .map_err(io)
        .and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            write(&mut out)?;
            out.into_inner()
                .map_err(|e| io(e.into_error()))?
                .sync_all()
                .map_err(io)
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
