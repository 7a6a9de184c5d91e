//! The training requests of a large log kept on disk (`log.store = "disk"`): one file of
//! records next to `dataset.bin`, read a request at a time, so memory holds an offset per
//! request (8 bytes) instead of the request (about 1 KB).
//!
//! The file starts with the magic bytes `GLRKREQS` and a little-endian `u32` format
//! version; each record is one [`StoredRequest`] in postcard. The offsets of the records,
//! in split order, are kept in the dataset ([`TrainStore`]); a record's length is the
//! distance to the next offset (or to the end of the file).

use crate::prepared::{
    LogRecord, PreparedDataset, RerankSample, TRAIN_STORE_FILE, TrainStore, index_records,
    write_atomic_with,
};
use crate::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Magic bytes at the start of the store.
const STORE_MAGIC: &[u8; 8] = b"GLRKREQS";

/// Version of the store's record format.
const STORE_VERSION: u32 = 1;

/// Bytes before the first record: the magic and the version.
const HEADER: u64 = 12;

/// One stored request: its sample and its log record (with the request's rank in time as
/// the sample's `slate_start`, as in memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// The request's candidates, labels and shown positions.
    pub sample: RerankSample,
    /// Its history, shown values and retriever scores.
    pub record: LogRecord,
}

/// Writes the store at `path` atomically from `write`, which pushes the records in split
/// order through the [`StoreWriter`] it is given; returns the offsets.
///
/// # Errors
/// `write`'s errors; [`DataError::Io`] naming `path`.
pub(crate) fn write_store(
    path: &Path,
    write: impl FnOnce(&mut StoreWriter<'_>) -> Result<()>,
) -> Result<TrainStore> {
    let mut store = TrainStore::default();
    write_atomic_with(path, |out| {
        let io = |e: std::io::Error| DataError::io(path, e);
        out.write_all(STORE_MAGIC).map_err(io)?;
        out.write_all(&STORE_VERSION.to_le_bytes()).map_err(io)?;
        let mut w = StoreWriter {
            out,
            path,
            offset: HEADER,
            offsets: Vec::new(),
            buf: Vec::new(),
            scores: true,
        };
        write(&mut w)?;
        store = TrainStore {
            offsets: w.offsets,
            bytes: w.offset,
            retriever_scores: w.scores,
        };
        Ok(())
    })?;
    Ok(store)
}

/// Appends records to a store being written ([`write_store`]).
pub(crate) struct StoreWriter<'a> {
    out: &'a mut std::io::BufWriter<std::fs::File>,
    path: &'a Path,
    offset: u64,
    offsets: Vec<u64>,
    buf: Vec<u8>,
    scores: bool,
}

impl StoreWriter<'_> {
    /// Appends one request.
    pub(crate) fn push(&mut self, request: &StoredRequest) -> Result<()> {
        self.buf.clear();
        let bytes = postcard::to_extend(request, std::mem::take(&mut self.buf)).map_err(|e| {
            DataError::Corrupt {
                path: self.path.to_path_buf(),
                message: format!("serialisation failed: {e}"),
            }
        })?;
        self.out
            .write_all(&bytes)
            .map_err(|e| DataError::io(self.path, e))?;
        self.offsets.push(self.offset);
        self.scores &= request.record.retriever_scores.is_some();
        self.offset += bytes.len() as u64;
        self.buf = bytes;
        Ok(())
    }
}

/// Reads the requests of a store, one at a time (random access, for batches) or all in
/// order (sequential).
#[derive(Debug)]
pub struct StoreReader<'a> {
    file: std::fs::File,
    path: PathBuf,
    store: &'a TrainStore,
}

impl<'a> StoreReader<'a> {
    /// Opens the store file `path` described by `store`.
    ///
    /// # Errors
    /// [`DataError::MissingFile`]; [`DataError::Corrupt`] when the file is not a store or
    /// its length is not the one the dataset recorded (a store of another preparation).
    pub fn open(path: &Path, store: &'a TrainStore) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DataError::MissingFile {
                    path: path.to_path_buf(),
                    hint: Some("the training requests of this dataset: prepare it again".into()),
                }
            } else {
                DataError::io(path, e)
            }
        })?;
        let corrupt = |message: String| DataError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let mut head = [0u8; HEADER as usize];
        file.read_exact(&mut head)
            .map_err(|_| corrupt("missing the GLRKREQS header".into()))?;
        if &head[..8] != STORE_MAGIC {
            return Err(corrupt("missing the GLRKREQS header".into()));
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != STORE_VERSION {
            return Err(corrupt(format!(
                "store format version {version}, this build reads {STORE_VERSION}"
            )));
        }
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| DataError::io(path, e))?;
        let sorted = store.offsets.windows(2).all(|w| w[0] <= w[1]);
        let within = store
            .offsets
            .first()
            .is_none_or(|&o| o >= HEADER && store.offsets[store.len() - 1] <= len);
        if len != store.bytes || !sorted || !within {
            return Err(corrupt(format!(
                "{len} bytes with {} records, but the dataset recorded {} bytes: the store \
                 belongs to another preparation",
                store.len(),
                store.bytes
            )));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            store,
        })
    }

    /// Number of stored requests.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no request is stored.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    fn decode(&self, i: usize, bytes: &[u8]) -> Result<StoredRequest> {
        postcard::from_bytes(bytes).map_err(|e| DataError::Corrupt {
            path: self.path.clone(),
            message: format!("record {i}: {e}"),
        })
    }

    /// Request `i` (in split order).
    ///
    /// # Errors
    /// [`DataError::Io`] or [`DataError::Corrupt`] naming the file and the record; an index
    /// past the end is [`DataError::InvalidConfig`].
    pub fn get(&self, i: usize) -> Result<StoredRequest> {
        if i >= self.len() {
            return Err(DataError::config(
                "train",
                format!("request {i} of a store of {}", self.len()),
            ));
        }
        let (start, end) = self.store.range(i);
        let mut bytes = vec![0u8; (end - start) as usize];
        self.file
            .read_exact_at(&mut bytes, start)
            .map_err(|e| DataError::io(&self.path, e))?;
        self.decode(i, &bytes)
    }

    /// Calls `f` with every request, in split order, reading the file sequentially.
    ///
    /// # Errors
    /// As [`StoreReader::get`]; `f`'s errors.
    pub fn for_each(&self, mut f: impl FnMut(usize, StoredRequest) -> Result<()>) -> Result<()> {
        let mut input = BufReader::with_capacity(1 << 20, &self.file);
        input
            .seek(SeekFrom::Start(
                self.store.offsets.first().copied().unwrap_or(HEADER),
            ))
            .map_err(|e| DataError::io(&self.path, e))?;
        let mut bytes = Vec::new();
        for i in 0..self.len() {
            let (start, end) = self.store.range(i);
            bytes.resize((end - start) as usize, 0);
            input
                .read_exact(&mut bytes)
                .map_err(|e| DataError::io(&self.path, e))?;
            f(i, self.decode(i, &bytes)?)?;
        }
        Ok(())
    }
}

/// The training requests a dataset keeps on disk.
impl PreparedDataset {
    /// A reader of the training requests kept on disk (`None` when they are in memory).
    ///
    /// # Errors
    /// A dataset that was neither loaded from nor prepared into a directory; the store's
    /// errors ([`StoreReader::open`]).
    pub fn train_reader(&self) -> Result<Option<StoreReader<'_>>> {
        let Some(store) = &self.train_store else {
            return Ok(None);
        };
        let dir = self.dir.0.as_ref().ok_or_else(|| {
            DataError::config(
                "log.store",
                "the training requests are on disk, but the dataset has no directory",
            )
        })?;
        StoreReader::open(&dir.join(TRAIN_STORE_FILE), store).map(Some)
    }

    /// This dataset with its training requests in memory: itself, or (training requests on
    /// disk) a copy with them loaded ([`PreparedDataset::load_train`]), for a stage that
    /// reads them all at once.
    ///
    /// # Errors
    /// As [`PreparedDataset::train_reader`].
    pub fn with_train_loaded(&self) -> Result<std::borrow::Cow<'_, Self>> {
        if !self.train_on_disk() {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let mut copy = self.clone();
        copy.load_train()?;
        Ok(std::borrow::Cow::Owned(copy))
    }

    /// Reads the training requests kept on disk into memory (`train` and `log`), so every
    /// stage can read them at once; a dataset in memory is left as it is.
    ///
    /// # Errors
    /// As [`PreparedDataset::train_reader`].
    pub fn load_train(&mut self) -> Result<()> {
        let mut stored = Vec::with_capacity(self.train_len());
        match self.train_reader()? {
            None => return Ok(()),
            Some(reader) => reader.for_each(|_, r| {
                stored.push(r);
                Ok(())
            })?,
        }
        let kept = self.log.take().unwrap_or_default();
        // The ranks of the records in memory: listed, or 0..n when they are dense.
        let ranks: Vec<u32> = self
            .log_ranks
            .take()
            .unwrap_or_else(|| (0..kept.len() as u32).collect());
        let mut records: Vec<(u32, LogRecord)> = ranks.into_iter().zip(kept).collect();
        for r in stored {
            records.push((r.sample.slate_start, r.record));
            self.train.push(r.sample);
        }
        let (log, ranks) = index_records(records);
        self.log = Some(log);
        self.log_ranks = ranks;
        self.train_store = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Labels;

    fn request(k: u32) -> StoredRequest {
        StoredRequest {
            sample: RerankSample {
                user: k,
                slate_start: 10 + k,
                candidates: (0..5 + k).collect(),
                labels: vec![Labels(u8::from(k.is_multiple_of(2))); 5 + k as usize],
                logged: vec![1, 0],
            },
            record: LogRecord {
                request_id: format!("r{k}"),
                timestamp: i64::from(k) * 7,
                history: vec![k; k as usize],
                history_labels: vec![Labels(1); k as usize],
                shown_values: vec![1.0, 0.0],
                retriever_scores: k.is_multiple_of(3).then(|| vec![0.5; 5 + k as usize]),
            },
        }
    }

    #[test]
    fn records_read_back_at_random_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRAIN_STORE_FILE);
        let all: Vec<StoredRequest> = (0..40).map(request).collect();
        let store = write_store(&path, |w| all.iter().try_for_each(|r| w.push(r))).unwrap();
        assert_eq!(store.len(), 40);
        let reader = StoreReader::open(&path, &store).unwrap();
        for i in [39, 0, 17, 3] {
            assert_eq!(reader.get(i).unwrap(), all[i]);
        }
        let mut seen = Vec::new();
        reader
            .for_each(|i, r| {
                assert_eq!(r, all[i]);
                seen.push(i);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        assert!(reader.get(40).is_err());
    }

    #[test]
    fn a_store_of_another_preparation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRAIN_STORE_FILE);
        let mut store = write_store(&path, |w| w.push(&request(1))).unwrap();
        store.bytes += 1;
        let e = StoreReader::open(&path, &store).unwrap_err().to_string();
        assert!(e.contains("another preparation"), "{e}");
        std::fs::write(&path, b"not a store at all").unwrap();
        let e = StoreReader::open(&path, &store).unwrap_err().to_string();
        assert!(e.contains("GLRKREQS"), "{e}");
        let missing = StoreReader::open(&dir.path().join("none.bin"), &store);
        assert!(matches!(missing, Err(DataError::MissingFile { .. })));
    }
}
