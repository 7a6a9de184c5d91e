//! Request logs in Parquet, as Spark, DataFusion, polars or pandas write them: the columns
//! mirror the JSON Lines schema (`request_id`, `timestamp`, `user`, `history` as a list of
//! `{item, labels}` structs, `candidates`, `retriever_scores`, `exposures`, `shown`, and
//! `feedback` as a struct of one list per signal). Ids may be strings or integers, the
//! timestamp an integer or a Parquet timestamp (read as its integer count of its unit).
//!
//! Files are read in record batches of [`BATCH_ROWS`] rows, and each row is checked by the
//! same reader as a JSON line ([`LoggedRequest::from_json`]), so a bad row is named by its
//! file, row number (from 1, in file order) and field alike.

use super::LoggedRequest;
use crate::readers::text::{Encoding, for_each_line};
use crate::{DataError, Result};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;
use std::sync::Arc;

/// Rows per record batch read from a Parquet file.
pub const BATCH_ROWS: usize = 4096;

/// The columns whose ids are read as strings (an integer id becomes its decimal text): the
/// requests' and the catalogs'.
const ID_COLUMNS: [&str; 5] = ["request_id", "user", "candidates", "shown", "item"];

/// Whether `path` names a Parquet file (by its extension).
pub(crate) fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Calls `f(row, json)` for each row of `path`, a Parquet file by its extension
/// ([`for_each_parquet_row`]) or else JSON Lines (one object per line; `what` names the
/// file's kind in errors); returns the row count.
///
/// # Errors
/// The reader's errors, naming the file; `f`'s errors.
pub(crate) fn for_each_json_row(
    path: &Path,
    what: &str,
    f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<usize> {
    if is_parquet(path) {
        for_each_parquet_row(path, f)
    } else {
        for_each_line(path, Encoding::Utf8, what, f)
    }
}

/// `t` with every integer inside it (itself, or the items of a list) made a string.
fn ids_as_text(t: &DataType) -> DataType {
    match t {
        DataType::List(f) => DataType::List(Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(ids_as_text(f.data_type())),
        )),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(ids_as_text(f.data_type())),
        )),
        t if t.is_integer() => DataType::Utf8,
        t => t.clone(),
    }
}

/// The history column's type with its `item` field's ids as strings.
fn history_as_text(t: &DataType) -> DataType {
    let item = |f: &Field| {
        let fields: Fields = match f.data_type() {
            DataType::Struct(fields) => fields
                .iter()
                .map(|c| {
                    let c = c.as_ref().clone();
                    if c.name() == "item" {
                        let t = ids_as_text(c.data_type());
                        Arc::new(c.with_data_type(t))
                    } else {
                        Arc::new(c)
                    }
                })
                .collect(),
            _ => return f.clone(),
        };
        f.clone().with_data_type(DataType::Struct(fields))
    };
    match t {
        DataType::List(f) => DataType::List(Arc::new(item(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(item(f))),
        t => t.clone(),
    }
}

/// `batch` in the JSON schema's types: integer ids as strings, a timestamp as its integer.
fn normalise(batch: RecordBatch, path: &Path) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let from = field.data_type();
        let to = match field.name().as_str() {
            name if ID_COLUMNS.contains(&name) => ids_as_text(from),
            "history" => history_as_text(from),
            "timestamp" if matches!(from, DataType::Timestamp(..) | DataType::Date64) => {
                DataType::Int64
            }
            _ => from.clone(),
        };
        let column = if &to == from {
            column.clone()
        } else {
            arrow_cast::cast(column.as_ref(), &to).map_err(|e| {
                DataError::parse(
                    path,
                    1,
                    field.name(),
                    format!("column of type {from} cannot be read as {to}: {e}"),
                )
            })?
        };
        fields.push(field.as_ref().clone().with_data_type(to));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| DataError::parse(path, 1, "schema", e.to_string()))
}

/// Calls `f(row, json)` for each row of the Parquet file `path`, in file order (`row` from
/// 1), `json` the row as one JSON object (null columns left out); returns the row count.
/// Memory holds one record batch.
///
/// # Errors
/// A file that is not Parquet, or a column that cannot be read (named); `f`'s errors.
pub(crate) fn for_each_parquet_row(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<usize> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let not_parquet = |e: parquet::errors::ParquetError| {
        DataError::parse(path, 1, "file", format!("not a readable Parquet file: {e}"))
    };
    // The Parquet reader can panic on a damaged file (found by the fuzzer); such a panic
    // is caught here and becomes an error naming the file, never a crash.
    let damaged = |row: usize| {
        DataError::parse(
            path,
            row,
            "file",
            "damaged: the Parquet reader failed on it (a panic inside the reader)",
        )
    };
    let mut reader = std::panic::catch_unwind(|| {
        ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(not_parquet)?
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(not_parquet)
    })
    .map_err(|_| damaged(1))??;
    let mut row = 0usize;
    let mut text = Vec::new();
    loop {
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next()))
            .map_err(|_| damaged(row + 1))?;
        let Some(batch) = next else { break };
        let batch = batch
            .map_err(|e| DataError::parse(path, row + 1, "file", format!("cannot be read: {e}")))?;
        // Casting and writing the batch as JSON run arrow code on what the file holds:
        // guarded like the reader.
        text.clear();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
            let batch = normalise(batch, path)?;
            let mut writer = arrow_json::LineDelimitedWriter::new(&mut text);
            writer
                .write(&batch)
                .and_then(|()| writer.finish())
                .map_err(|e| DataError::parse(path, row + 1, "row", e.to_string()))
        }))
        .map_err(|_| damaged(row + 1))??;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            row += 1;
            let line = std::str::from_utf8(line)
                .map_err(|e| DataError::parse(path, row, "row", e.to_string()))?;
            f(row, line)?;
        }
    }
    if row == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(row)
}

/// The Arrow schema [`write_request_log_parquet`] writes: the JSON schema's fields, with
/// `feedback` a struct of one `list<float>` per signal of `signals`.
fn log_schema(signals: &[String]) -> Schema {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let history = DataType::Struct(Fields::from(vec![
        Field::new("item", DataType::Utf8, false),
        Field::new("labels", DataType::UInt8, true),
    ]));
    let feedback: Fields = signals
        .iter()
        .map(|s| Field::new(s, list(DataType::Float32), true))
        .collect();
    Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("user", DataType::Utf8, true),
        Field::new("history", list(history), true),
        Field::new("candidates", list(DataType::Utf8), false),
        Field::new("retriever_scores", list(DataType::Float32), true),
        Field::new("exposures", list(DataType::UInt32), true),
        Field::new("shown", list(DataType::Utf8), false),
        Field::new("feedback", DataType::Struct(feedback), false),
    ])
}

/// Writes `rows` as one Parquet file `path` (snappy-compressed, one row group per
/// [`BATCH_ROWS`] rows), atomically (a temporary file renamed), creating the parent
/// directory; returns the number of rows. The feedback struct has a field per signal any
/// row carries. Rows with `candidate_vectors` are refused: Parquet logs carry content in
/// `items.jsonl`.
///
/// # Errors
/// [`DataError::Io`] naming the file; [`DataError::Parse`] for a row that cannot be
/// written.
pub fn write_request_log_parquet(
    path: &Path,
    rows: impl IntoIterator<Item = impl std::borrow::Borrow<LoggedRequest>>,
    signals: &[String],
) -> Result<usize> {
    super::read::create_parent(path)?;
    let schema = Arc::new(log_schema(signals));
    let bad = |row: usize, e: String| DataError::parse(path, row, "row", e);
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_size(BATCH_ROWS)
        .build();
    let mut n = 0usize;
    crate::prepared::write_atomic_with(path, |out| {
        let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(props))
            .map_err(|e| bad(0, e.to_string()))?;
        let mut decoder = arrow_json::ReaderBuilder::new(schema)
            .with_batch_size(BATCH_ROWS)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|e| bad(0, e.to_string()))?;
        let mut line = Vec::new();
        for row in rows {
            let row = row.borrow();
            n += 1;
            if !row.request.candidate_vectors.is_empty() {
                return Err(DataError::parse(
                    path,
                    n,
                    "candidate_vectors",
                    "not written to Parquet: give content vectors in items.jsonl",
                ));
            }
            line.clear();
            serde_json::to_writer(&mut line, &row.to_json()).map_err(|e| bad(n, e.to_string()))?;
            line.push(b'\n');
            decoder.decode(&line).map_err(|e| bad(n, e.to_string()))?;
            if n.is_multiple_of(BATCH_ROWS)
                && let Some(batch) = decoder.flush().map_err(|e| bad(n, e.to_string()))?
            {
                writer.write(&batch).map_err(|e| bad(n, e.to_string()))?;
            }
        }
        if let Some(batch) = decoder.flush().map_err(|e| bad(n, e.to_string()))? {
            writer.write(&batch).map_err(|e| bad(n, e.to_string()))?;
        }
        writer.into_inner().map_err(|e| bad(n, e.to_string()))?;
        Ok(())
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogConfig;
    use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder, UInt64Builder};
    use arrow_array::{Array, ListArray, StructArray};

    fn rows() -> Vec<LoggedRequest> {
        (0..5)
            .map(|k| {
                LoggedRequest::from_json(
                    &serde_json::json!({
                        "request_id": format!("r{k}"), "timestamp": 100 + k, "user": "u1",
                        "history": [{"item": "i9", "labels": 3}],
                        "candidates": ["i1", "i2", "i3"], "retriever_scores": [0.5, 0.25, 0.0],
                        "shown": ["i2", "i1"], "feedback": {"click": [1, 0], "like": [0, 0]}
                    })
                    .to_string(),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_log_round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.parquet");
        let rows = rows();
        let signals = ["click".to_string(), "like".to_string()];
        assert_eq!(
            write_request_log_parquet(&path, &rows, &signals).unwrap(),
            5
        );
        let mut back = Vec::new();
        for_each_parquet_row(&path, |_, line| {
            back.push(LoggedRequest::from_json(line).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(back, rows);
    }

    /// Damaged files end in an error or in rows the checker refuses, never in a panic:
    /// every byte of a small file, in turn, set to each of three values.
    #[test]
    fn a_damaged_file_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.parquet");
        let signals = ["click".to_string(), "like".to_string()];
        write_request_log_parquet(&path, rows(), &signals).unwrap();
        let good = std::fs::read(&path).unwrap();
        let damaged = dir.path().join("damaged.parquet");
        let mut escaped = Vec::new();
        for k in 0..good.len() {
            for v in [0u8, 0xff, good[k] ^ 0x10] {
                let mut bytes = good.clone();
                bytes[k] = v;
                std::fs::write(&damaged, &bytes).unwrap();
                let read = std::panic::catch_unwind(|| {
                    for_each_parquet_row(&damaged, |_, line| {
                        let _ = LoggedRequest::from_json(line);
                        Ok(())
                    })
                });
                if read.is_err() {
                    escaped.push(k);
                }
            }
        }
        assert!(escaped.is_empty(), "panics escaped at bytes {escaped:?}");
    }

    /// A table as another engine writes it: integer ids, a `feedback` struct, no history.
    #[test]
    fn integer_ids_are_read_as_text_and_a_bad_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-0.parquet");
        let ids = |rows: &[&[u64]]| {
            let mut b = ListBuilder::new(UInt64Builder::new());
            for r in rows {
                b.values().append_slice(r);
                b.append(true);
            }
            Arc::new(b.finish()) as ArrayRef
        };
        let mut request_id = StringBuilder::new();
        request_id.append_value("a");
        request_id.append_value("b");
        let mut ts = Int64Builder::new();
        ts.append_slice(&[1, 2]);
        let mut user = StringBuilder::new();
        user.append_value("u");
        user.append_value("u");
        let clicks = ListArray::from_iter_primitive::<arrow_array::types::Float32Type, _, _>(vec![
            Some(vec![Some(1.0)]),
            Some(vec![Some(0.0)]),
        ]);
        let feedback = StructArray::from(vec![(
            Arc::new(Field::new("click", clicks.data_type().clone(), true)),
            Arc::new(clicks) as ArrayRef,
        )]);
        let batch = RecordBatch::try_from_iter(vec![
            ("request_id", Arc::new(request_id.finish()) as ArrayRef),
            ("timestamp", Arc::new(ts.finish()) as ArrayRef),
            ("user", Arc::new(user.finish()) as ArrayRef),
            ("candidates", ids(&[&[10, 11], &[10, 11]])),
            // The second row shows an item outside its candidates.
            ("shown", ids(&[&[11], &[12]])),
            ("feedback", Arc::new(feedback) as ArrayRef),
        ])
        .unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let mut seen = Vec::new();
        for_each_parquet_row(&path, |row, line| {
            let r = LoggedRequest::from_json(line).unwrap();
            seen.push((
                row,
                r.request.candidates.clone(),
                r.check(&LogConfig::default()),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen[0].1, ["10", "11"]);
        assert!(seen[0].2.is_ok());
        assert_eq!(seen[1].0, 2);
        assert_eq!(seen[1].2.as_ref().unwrap_err().field, "shown");
        // Not a Parquet file: an error naming it.
        std::fs::write(&path, b"not parquet").unwrap();
        let e = for_each_parquet_row(&path, |_, _| Ok(())).unwrap_err();
        assert!(e.to_string().contains("part-0.parquet"), "{e}");
    }
}
