//! A request log as a prepared dataset ([`prepare_log`]): vocabularies, requests, the
//! time split, item vectors. No retriever of ours builds the pools: each request keeps the
//! candidates, the shown list and the feedback its log recorded.

use super::catalog::Catalogs;
use super::read::scan_rows;
use super::{LogConfig, LogSplit, LogStore, LoggedRequest, RowError};
use crate::labels::Labels;
use crate::prepared::{
    Location, LogRecord, PrepareStats, PreparedDataset, RerankSample, TRAIN_STORE_FILE,
    UserSequence, index_records,
};
use crate::progress::Progress;
use crate::protocol::add_user_id_feature;
use crate::raw::Interner;
use crate::retriever::{MfModel, fit_als};
use crate::store::{StoreWriter, StoredRequest, write_store};
use crate::{DataError, ProtocolConfig, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One valid row, in indices, before the split.
struct Row {
    sample: RerankSample,
    record: LogRecord,
}

/// The checks a row must pass for this protocol, besides the schema's: a user, at most
/// `pool_size` and at least `slate_len` candidates, at most `slate_len` shown items, and
/// the `order_by` signal when one is configured.
fn fits(
    row: &LoggedRequest,
    log: &LogConfig,
    config: &ProtocolConfig,
) -> std::result::Result<(), RowError> {
    let (l, n) = (config.slate_len, config.pool_size);
    let c = row.request.candidates.len();
    if row.request.user.is_none() {
        return Err(RowError::new(
            "user",
            "missing: training reads each request's user",
        ));
    }
    if c > n || c < l {
        return Err(RowError::new(
            "candidates",
            format!("{c} candidates; data.pool_size is {n} and data.slate_len {l}"),
        ));
    }
    if row.shown.len() > l {
        return Err(RowError::new(
            "shown",
            format!(
                "{} shown items, more than data.slate_len {l}",
                row.shown.len()
            ),
        ));
    }
    if let Some(o) = &log.order_by
        && !row.feedback.contains_key(o)
    {
        return Err(RowError::new(
            format!("feedback.{o}"),
            "missing: log.order_by orders every row's shown items by it",
        ));
    }
    Ok(())
}

/// A row in indices: its user and candidates coded, the history cut to `history_len`, the
/// labels of the shown items from the feedback (the label is the click bit, `log.grades`
/// the like and star bits; unshown candidates are non-clicks).
fn encode(
    row: LoggedRequest,
    log: &LogConfig,
    config: &ProtocolConfig,
    (users, items): (&mut Interner, &mut Interner),
) -> Row {
    let r = row.request;
    let user = users.intern(r.user.as_deref().unwrap_or_default());
    let candidates: Vec<u32> = r.candidates.iter().map(|c| items.intern(c)).collect();
    let position: HashMap<&str, u16> = r
        .candidates
        .iter()
        .enumerate()
        .map(|(p, c)| (c.as_str(), p as u16))
        .collect();
    let logged: Vec<u16> = row.shown.iter().map(|s| position[s.as_str()]).collect();
    let value = |signal: &str, k: usize| {
        row.feedback
            .get(signal)
            .and_then(|v| v.get(k))
            .copied()
            .unwrap_or(0.0)
    };
    let bits = [Labels::CLICK, Labels::LIKE, Labels::STAR];
    let signals: Vec<&str> = std::iter::once(log.label.as_str())
        .chain(log.grades.iter().map(String::as_str))
        .collect();
    let mut labels = vec![Labels::default(); candidates.len()];
    let mut shown_values = Vec::with_capacity(logged.len());
    for (k, &p) in logged.iter().enumerate() {
        let label = signals
            .iter()
            .zip(bits)
            .filter(|(s, _)| value(s, k) > 0.0)
            .fold(0u8, |acc, (_, b)| acc | b);
        labels[usize::from(p)] = Labels(label);
        shown_values.push(match &log.order_by {
            Some(o) => value(o, k),
            None => f32::from(Labels(label).grade()),
        });
    }
    let skip = r.history.len().saturating_sub(config.history_len);
    let (history, history_labels) = r.history[skip..]
        .iter()
        .map(|h| (items.intern(&h.item), Labels(h.labels)))
        .unzip();
    Row {
        sample: RerankSample {
            user,
            slate_start: 0,
            candidates,
            labels,
            logged,
        },
        record: LogRecord {
            request_id: row.request_id,
            timestamp: row.timestamp,
            history,
            history_labels,
            shown_values,
            retriever_scores: r.retriever_scores,
        },
    }
}

/// The split of each row (0 train, 1 validation, 2 test) from the rows' `(timestamp,
/// user)` keys, given their time order `order` (row indices by timestamp, then file
/// order).
fn split_rows(keys: &[(i64, u32)], order: &[u32], log: &LogConfig) -> Vec<u8> {
    let n = keys.len();
    let mut split = vec![0u8; n];
    match log.split {
        LogSplit::Time => {
            let time = |k: usize| keys[order[k] as usize].0;
            let n_test = (n as f64 * log.test_share).ceil() as usize;
            let n_valid = (n as f64 * log.valid_share).ceil() as usize;
            let cut_test = (n_test > 0).then(|| time(n - n_test.min(n)));
            let cut_valid = (n_valid > 0).then(|| time(n.saturating_sub(n_test + n_valid)));
            for (i, &(t, _)) in keys.iter().enumerate() {
                split[i] = if cut_test.is_some_and(|c| t >= c) {
                    2
                } else if cut_valid.is_some_and(|c| t >= c) {
                    1
                } else {
                    0
                };
            }
        }
        LogSplit::User => {
            let mut last: HashMap<u32, [Option<u32>; 2]> = HashMap::new();
            for &i in order {
                let e = last.entry(keys[i as usize].1).or_default();
                *e = [Some(i), e[0]];
            }
            for [test, valid] in last.into_values() {
                if let Some(t) = test {
                    split[t as usize] = 2;
                }
                if let Some(v) = valid {
                    split[v as usize] = 1;
                }
            }
        }
    }
    split
}

/// The encoded rows between the two passes: in memory, or spilled to a temporary file
/// (`log.store = "disk"`) as length-prefixed postcard records, removed when dropped.
enum Spill {
    Memory(Vec<Row>),
    Disk {
        path: PathBuf,
        out: Option<BufWriter<File>>,
    },
}

impl Spill {
    fn push(&mut self, row: Row) -> Result<()> {
        match self {
            Self::Memory(rows) => rows.push(row),
            Self::Disk { path, out } => {
                let out = out
                    .as_mut()
                    .expect("the spill is written before it is read");
                let bytes = postcard::to_stdvec(&StoredRequest {
                    sample: row.sample,
                    record: row.record,
                })
                .map_err(|e| DataError::Corrupt {
                    path: path.clone(),
                    message: format!("serialisation failed: {e}"),
                })?;
                out.write_all(&(bytes.len() as u32).to_le_bytes())
                    .and_then(|()| out.write_all(&bytes))
                    .map_err(|e| DataError::io(path, e))?;
            }
        }
        Ok(())
    }

    /// Calls `f` with every row, in the order they were pushed.
    fn drain(&mut self, mut f: impl FnMut(usize, Row) -> Result<()>) -> Result<()> {
        match self {
            Self::Memory(rows) => {
                for (i, row) in std::mem::take(rows).into_iter().enumerate() {
                    f(i, row)?;
                }
            }
            Self::Disk { path, out } => {
                if let Some(w) = out.take() {
                    w.into_inner()
                        .map_err(|e| DataError::io(path, e.into_error()))?;
                }
                let io = |e: std::io::Error| DataError::io(path, e);
                let mut input = BufReader::with_capacity(1 << 20, File::open(&*path).map_err(io)?);
                let (mut len, mut bytes) = ([0u8; 4], Vec::new());
                let mut i = 0;
                loop {
                    match input.read_exact(&mut len) {
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                        r => r.map_err(io)?,
                    }
                    bytes.resize(u32::from_le_bytes(len) as usize, 0);
                    input.read_exact(&mut bytes).map_err(io)?;
                    let r: StoredRequest =
                        postcard::from_bytes(&bytes).map_err(|e| DataError::Corrupt {
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                    f(
                        i,
                        Row {
                            sample: r.sample,
                            record: r.record,
                        },
                    )?;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Self::Disk { path, out } = self {
            drop(out.take());
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Distinct (user, item) pairs gathered in bounded memory: sorted and deduplicated
/// whenever the buffer doubles.
#[derive(Default)]
struct Pairs {
    pairs: Vec<(u32, u32)>,
    compact: usize,
}

impl Pairs {
    fn insert(&mut self, pair: (u32, u32)) {
        self.pairs.push(pair);
        if self.pairs.len() >= (2 * self.compact).max(1 << 20) {
            self.pairs.sort_unstable();
            self.pairs.dedup();
            self.compact = self.pairs.len();
        }
    }

    fn into_sorted(mut self) -> Vec<(u32, u32)> {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        self.pairs
    }
}

/// Reads the request log at `path` (JSON Lines or Parquet: a file, or a folder of parts
/// with the optional catalogs `items.jsonl`, `users.jsonl` and `vocabularies.json`) and
/// prepares it for training: every row checked ([`LoggedRequest::check`], plus the
/// protocol's shape: a user, at most `pool_size` and at least `slate_len` candidates, at
/// most `slate_len` shown items), items and users numbered in catalog order then order of
/// first sight, the split of `log.split` (file order kept within each split), the shown
/// items' feedback as labels (unshown candidates are non-clicks). Item vectors: the
/// catalog's, or ALS factors fitted on the training requests' clicks and histories. An
/// item's training count is how often it was shown in a training request. The protocol's
/// `k_core`, `rerank_train_slates` and retriever pool options do not apply to a log.
///
/// The dataset is in memory; with `log.store = "disk"` use [`prepare_log_into`].
///
/// # Errors
/// [`DataError::InvalidConfig`] for a bad configuration (held-out items are not available
/// on a log; `log.store = "disk"`, which needs a directory); the reader's errors (file,
/// line and field of a bad row, past the [`LogConfig::max_invalid`] budget);
/// [`DataError::Insufficient`] when no training request is left or a catalog lacks an
/// item's vector.
pub fn prepare_log(
    path: &Path,
    log: &LogConfig,
    config: &ProtocolConfig,
    progress: &dyn Progress,
) -> Result<PreparedDataset> {
    if log.store == LogStore::Disk {
        return Err(DataError::config(
            "log.store",
            "`disk` keeps the training requests next to the prepared dataset: prepare it \
             into a directory (prepare_log_into, or `glorank prepare`)",
        ));
    }
    prepare_log_in(path, log, config, None, progress)
}

/// [`prepare_log`], saving the dataset into `dir` ([`PreparedDataset::save`]). With
/// `log.store = "disk"` the training requests are written to
/// [`TRAIN_STORE_FILE`](crate::TRAIN_STORE_FILE) in `dir` as they are read, and memory
/// holds about 40 bytes per request (its time, user, split and rank, and its id's
/// fingerprint) plus the validation and test requests: the split and the numbering are
/// the same as in memory.
///
/// # Errors
/// As [`prepare_log`]; [`DataError::Io`] naming a file of `dir`.
pub fn prepare_log_into(
    path: &Path,
    log: &LogConfig,
    config: &ProtocolConfig,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<PreparedDataset> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let disk = (log.store == LogStore::Disk).then_some(dir);
    let ds = prepare_log_in(path, log, config, disk, progress)?;
    ds.save(dir)?;
    Ok(ds)
}

/// [`prepare_log`], with the training requests written into the store of `store_dir`
/// when it is given.
fn prepare_log_in(
    path: &Path,
    log: &LogConfig,
    config: &ProtocolConfig,
    store_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<PreparedDataset> {
    config.validate()?;
    log.validate()?;
    if config.held_out_share > 0.0 {
        return Err(DataError::config(
            "data.held_out_share",
            "held-out items are a protocol of the rating datasets; on a log, cold items are \
             the ones no training request showed",
        ));
    }
    let t = Instant::now();
    let mut seconds = Vec::new();
    progress.stage("reading the log", 0);
    let catalogs = Catalogs::read(path)?;
    let (mut users, mut items) = (Interner::default(), Interner::default());
    for r in &catalogs.users {
        users.intern(&r.user);
    }
    for r in &catalogs.items {
        items.intern(&r.item);
    }
    let mut spill = match store_dir {
        None => Spill::Memory(Vec::new()),
        Some(dir) => {
            let path = dir.join(format!(".{TRAIN_STORE_FILE}.{}.spill", std::process::id()));
            let file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
            Spill::Disk {
                out: Some(BufWriter::with_capacity(1 << 20, file)),
                path,
            }
        }
    };
    // Per row, in file order: its time and user (all the split needs).
    let mut keys: Vec<(i64, u32)> = Vec::new();
    let (mut with_exposures, mut with_vectors) = (0usize, 0usize);
    let scan = scan_rows(path, log, &|row| fits(row, log, config), |row| {
        with_exposures += usize::from(row.request.exposures.is_some());
        with_vectors += usize::from(!row.request.candidate_vectors.is_empty());
        let row = encode(row, log, config, (&mut users, &mut items));
        keys.push((row.record.timestamp, row.sample.user));
        if keys.len().is_multiple_of(100_000) {
            progress.advance(100_000);
        }
        spill.push(row)
    })?;
    progress.finish();
    seconds.push(("read".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let n = keys.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&i| (keys[i as usize].0, i));
    let split = split_rows(&keys, &order, log);
    drop(keys);
    let mut rank = vec![0u32; n];
    for (k, &i) in order.iter().enumerate() {
        rank[i as usize] = k as u32;
    }
    drop(order);
    let (nu, ni) = (users.len(), items.len());
    let mut item_train_counts = vec![0u32; ni];
    let mut counts = [(0usize, 0f64); 3];
    let mut shown = 0usize;
    let vectors = catalogs.vectors(items.ids())?;
    // Learned item vectors: what each user clicked in training, and their histories.
    let mut pairs = Pairs::default();
    let mut records: Vec<(u32, LogRecord)> = Vec::new();
    let mut parts: [Vec<RerankSample>; 3] = Default::default();
    let mut route = |i: usize, row: Row, store: Option<&mut StoreWriter<'_>>| {
        let Row { mut sample, record } = row;
        sample.slate_start = rank[i];
        let k = usize::from(split[i]);
        shown += sample.logged.len();
        counts[k].0 += 1;
        counts[k].1 += sample.positives() as f64;
        if k == 0 {
            for &p in &sample.logged {
                let item = sample.candidates[usize::from(p)];
                item_train_counts[item as usize] += 1;
                if vectors.is_none() && sample.labels[usize::from(p)].click() {
                    pairs.insert((sample.user, item));
                }
            }
            if vectors.is_none() {
                for &h in &record.history {
                    pairs.insert((sample.user, h));
                }
            }
        }
        match store {
            Some(store) if k == 0 => store.push(&StoredRequest { sample, record }),
            _ => {
                records.push((rank[i], record));
                parts[k].push(sample);
                Ok(())
            }
        }
    };
    let train_store = match store_dir {
        None => {
            spill.drain(|i, row| route(i, row, None))?;
            None
        }
        Some(dir) => Some(write_store(&dir.join(TRAIN_STORE_FILE), |w| {
            spill.drain(|i, row| route(i, row, Some(&mut *w)))
        })?),
    };
    drop(spill);
    let (records, log_ranks) = index_records(records);
    let [train, valid, test] = parts;
    if counts[0].0 == 0 {
        return Err(DataError::Insufficient(format!(
            "{}: no training request is left after the {} split ({} rows)",
            path.display(),
            log.split,
            scan.rows
        )));
    }
    seconds.push(("split".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    // `retriever_train_interactions` stays 0: no retriever of ours built the pools.
    let mut stats = PrepareStats {
        raw_users: nu,
        raw_items: ni,
        users: nu,
        items: ni,
        ..PrepareStats::default()
    };
    let retriever = match vectors {
        Some((dim, item_factors)) => MfModel {
            factors: dim,
            user_factors: vec![0.0; nu * dim],
            item_factors,
        },
        None => fit_als(
            &pairs.into_sorted(),
            nu,
            ni,
            &config.retriever,
            config.seed,
            progress,
        )?,
    };
    seconds.push(("item vectors".to_string(), t.elapsed().as_secs_f64()));
    stats.raw_interactions = shown;
    stats.interactions = shown;
    stats.cold_items = item_train_counts.iter().filter(|&&c| c == 0).count();
    stats.train_slates = counts[0].0;
    stats.valid_slates = counts[1].0;
    stats.test_slates = counts[2].0;
    stats.mean_positives = counts.map(|(n, p)| if n == 0 { 0.0 } else { p / n as f64 });
    stats.seconds = seconds;
    stats.unread_log_fields = vec![
        ("exposures".into(), with_exposures),
        ("candidate_vectors".into(), with_vectors),
    ];
    let item_features = catalogs.item_features(items.ids())?;
    let mut user_features = catalogs.user_features(users.ids())?;
    if config.user_id_feature {
        add_user_id_feature(&mut user_features, users.ids());
    }
    Ok(PreparedDataset {
        name: "log".into(),
        config: config.clone(),
        implicit: false,
        item_features,
        user_features,
        sequences: vec![UserSequence::default(); nu],
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        train,
        valid,
        test,
        retriever,
        item_train_counts,
        held_out: Vec::new(),
        stats,
        synthetic: catalogs.synthetic,
        log: Some(records),
        log_ranks,
        train_store,
        dir: Location(store_dir.map(Path::to_path_buf)),
    })
}
