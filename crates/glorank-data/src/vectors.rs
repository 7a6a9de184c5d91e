//! Item vectors for the tokenizer: content features, retriever (MF) factors, their
//! concatenation, or a user-supplied `.npy` / CSV file. All deterministic.

use crate::prepared::PreparedDataset;
use crate::raw::ItemFeatures;
use crate::readers::text::{Encoding, MAX_BINARY_BYTES, for_each_line, open, parse_num};
use crate::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where item vectors come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ItemVectorSource {
    /// Content features: genre multi-hot, normalised year (+ a missing-year flag), and
    /// `title_buckets` hashed title-word counts scaled to unit norm.
    Content {
        /// Number of hash buckets for title words (0 disables titles).
        title_buckets: usize,
    },
    /// The stage-1 retriever's item factors (available for every dataset).
    MfFactors,
    /// Content features followed by MF factors, each block scaled to unit RMS row norm so
    /// neither dominates.
    Concat {
        /// Number of hash buckets for title words.
        title_buckets: usize,
    },
    /// A user file: `.npy` (2-D `float32`/`float64`, C order, one row per item in the
    /// prepared dataset's item order) or CSV (`item_id,v1,...,vd`, one row per item, keyed by
    /// original item id; rows of unknown items are ignored).
    File(PathBuf),
}

/// The content vectors the baselines read next to their item-ID embeddings (genres, year,
/// 16 title-word buckets); the policy's `item_content` option reads the same.
pub const CONTENT_VECTORS: ItemVectorSource = ItemVectorSource::Content { title_buckets: 16 };

/// Dense item vectors, row-major `[items, dim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemVectors {
    /// Vector dimension.
    pub dim: usize,
    /// Row-major values, `items * dim` of them.
    pub data: Vec<f32>,
}

impl ItemVectors {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row of item `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// FNV-1a 64-bit hash: stable across platforms and Rust versions (unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Lower-cased alphanumeric words of a title.
pub fn title_words(title: &str) -> impl Iterator<Item = String> + '_ {
    title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Builds item vectors for every item of `ds` from `source`.
///
/// # Errors
/// [`DataError::InvalidConfig`] when the dataset has no content features for a content
/// source; file errors (naming file, line and field) for [`ItemVectorSource::File`];
/// [`DataError::Insufficient`] for a file that lacks an item or has non-finite values.
pub fn item_vectors(ds: &PreparedDataset, source: &ItemVectorSource) -> Result<ItemVectors> {
    match source {
        ItemVectorSource::Content { title_buckets } => content_vectors(ds, *title_buckets),
        ItemVectorSource::MfFactors => Ok(ItemVectors {
            dim: ds.retriever.factors,
            data: ds.retriever.item_factors.clone(),
        }),
        ItemVectorSource::Concat { title_buckets } => {
            let a = unit_rms(content_vectors(ds, *title_buckets)?);
            let b = unit_rms(ItemVectors {
                dim: ds.retriever.factors,
                data: ds.retriever.item_factors.clone(),
            });
            let dim = a.dim + b.dim;
            let mut data = Vec::with_capacity(ds.num_items() * dim);
            for i in 0..ds.num_items() {
                data.extend_from_slice(a.row(i));
                data.extend_from_slice(b.row(i));
            }
            Ok(ItemVectors { dim, data })
        }
        ItemVectorSource::File(path) => {
            let is_npy = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            let v = if is_npy {
                read_npy(path, ds.num_items())?
            } else {
                read_vector_csv(path, ds)?
            };
            if let Some(pos) = v.data.iter().position(|x| !x.is_finite()) {
                return Err(DataError::Insufficient(format!(
                    "{}: item vector row {} has a non-finite value",
                    path.display(),
                    pos / v.dim
                )));
            }
            Ok(v)
        }
    }
}

/// Scales all rows by one factor so that the root-mean-square row norm is 1.
fn unit_rms(mut v: ItemVectors) -> ItemVectors {
    let n = v.len().max(1) as f64;
    let ms: f64 = v
        .data
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / n;
    if ms > 0.0 {
        let s = (1.0 / ms.sqrt()) as f32;
        v.data.iter_mut().for_each(|x| *x *= s);
    }
    v
}

/// Content vectors of every item of `ds`: see [`content_matrix`].
fn content_vectors(ds: &PreparedDataset, title_buckets: usize) -> Result<ItemVectors> {
    let f = ds.item_features.as_ref().ok_or_else(|| {
        DataError::config(
            "item_vectors",
            format!(
                "dataset `{}` has no item content features; use MF factors or a vector file",
                ds.name
            ),
        )
    })?;
    Ok(content_matrix(f, title_buckets))
}

/// Content vectors: `[genres..., year, year_missing, title buckets...]`, one row per item of
/// `f`: genre multi-hot, the release year scaled to [0, 1] over the catalog's years (0.5 and
/// the missing flag set when unknown), and hashed title-word counts scaled to unit norm.
pub(crate) fn content_matrix(f: &ItemFeatures, title_buckets: usize) -> ItemVectors {
    let g = f.genre_names.len();
    let dim = g + 2 + title_buckets;
    let years: Vec<u16> = f.years.iter().flatten().copied().collect();
    let (lo, hi) = (
        years.iter().min().copied().unwrap_or(0),
        years.iter().max().copied().unwrap_or(0),
    );
    let span = f32::from(hi.saturating_sub(lo)).max(1.0);
    let mut data = vec![0f32; f.genres.len() * dim];
    for (i, row) in data.chunks_mut(dim).enumerate() {
        for &k in &f.genres[i] {
            row[k as usize] = 1.0;
        }
        match f.years[i] {
            Some(y) => row[g] = f32::from(y - lo) / span,
            None => {
                row[g] = 0.5;
                row[g + 1] = 1.0;
            }
        }
        if title_buckets > 0 {
            let buckets = &mut row[g + 2..];
            for w in title_words(&f.titles[i]) {
                buckets[(fnv1a(&w) % title_buckets as u64) as usize] += 1.0;
            }
            let norm = buckets.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                buckets.iter_mut().for_each(|x| *x /= norm);
            }
        }
    }
    ItemVectors { dim, data }
}

/// Longest `.npy` header read (numpy writes under 200 bytes).
const MAX_NPY_HEADER: usize = 64 << 10;

/// Reads a 2-D float `.npy` file with `rows` rows: the header first (bounded), then exactly
/// the bytes its shape announces (at most [`MAX_BINARY_BYTES`]), so an endless or oversized
/// input ends with an error before anything large is allocated.
pub(crate) fn read_npy(path: &Path, rows: usize) -> Result<ItemVectors> {
    use std::io::Read;
    let mut r = open(path, "item vectors (.npy)")?;
    let err = |field: &str, msg: String| DataError::parse(path, 1, field, msg);
    let io = |e: std::io::Error| DataError::io(path, e);
    // Reads up to `n` bytes; fewer only at the end of the file.
    let mut take = |n: usize| -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(n.min(1 << 20));
        (&mut r).take(n as u64).read_to_end(&mut v).map_err(io)?;
        Ok(v)
    };
    let lead = take(10)?;
    if lead.len() < 10 || &lead[..6] != b"\x93NUMPY" {
        return Err(err("magic", "not a .npy file (missing \\x93NUMPY)".into()));
    }
    let hlen = match lead[6] {
        1 => usize::from(u16::from_le_bytes([lead[8], lead[9]])),
        2 | 3 => {
            let more = take(2)?;
            if more.len() < 2 {
                return Err(err("header", "truncated header".into()));
            }
            u32::from_le_bytes([lead[8], lead[9], more[0], more[1]]) as usize
        }
        v => return Err(err("version", format!("unsupported .npy version {v}"))),
    };
    if hlen > MAX_NPY_HEADER {
        return Err(err(
            "header",
            format!("header of {hlen} bytes; the limit is {MAX_NPY_HEADER}"),
        ));
    }
    let header = take(hlen)?;
    if header.len() < hlen {
        return Err(err("header", "truncated header".into()));
    }
    let header = String::from_utf8_lossy(&header);
    let value_of = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let descr = value_of("descr").ok_or_else(|| err("descr", "missing".into()))?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(err(
            "descr",
            format!(
                "dtype {} is not little-endian float32/float64",
                descr.split(',').next().unwrap_or("")
            ),
        ));
    };
    if value_of("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(err(
            "fortran_order",
            "Fortran-order arrays are not supported; save with C order".into(),
        ));
    }
    let shape = value_of("shape").ok_or_else(|| err("shape", "missing".into()))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| err("shape", format!("cannot read {shape:?}")))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| err("shape", format!("cannot read {inner:?}")))?;
    let [n, dim] = dims[..] else {
        return Err(err(
            "shape",
            format!("expected a 2-D array, found shape ({inner})"),
        ));
    };
    if n != rows {
        return Err(err(
            "shape",
            format!("{n} rows, but the dataset has {rows} items (one row per item, in item order)"),
        ));
    }
    if dim == 0 {
        return Err(err("shape", "zero columns".into()));
    }
    let expected = n
        .checked_mul(dim)
        .and_then(|c| c.checked_mul(width))
        .filter(|&b| b as u64 <= MAX_BINARY_BYTES)
        .ok_or_else(|| {
            err(
                "shape",
                format!(
                    "({n}, {dim}) of {width}-byte floats is larger than the {MAX_BINARY_BYTES}-byte limit of binary inputs"
                ),
            )
        })?;
    // One byte more than announced tells a longer file from an exact one.
    let body = take(expected + 1)?;
    if body.len() != expected {
        let found = if body.len() > expected {
            "more".to_string()
        } else {
            body.len().to_string()
        };
        return Err(err(
            "data",
            format!("{found} bytes of data, expected {expected} (shape ({n}, {dim}))"),
        ));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()
    };
    Ok(ItemVectors { dim, data })
}

/// Reads `item_id,v1,...,vd` rows (no header; a first row whose values are not numbers is
/// taken as a header and skipped).
fn read_vector_csv(path: &Path, ds: &PreparedDataset) -> Result<ItemVectors> {
    let index = ds.item_index();
    let mut dim = 0usize;
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; ds.num_items()];
    for_each_line(path, Encoding::Utf8, "item vectors (CSV)", |ln, line| {
        let mut fields = line.split(',');
        let id = fields.next().unwrap_or("").trim();
        let values: Vec<&str> = fields.collect();
        if ln == 1
            && values
                .first()
                .is_some_and(|v| v.trim().parse::<f32>().is_err())
        {
            return Ok(());
        }
        if values.is_empty() {
            return Err(DataError::parse(
                path,
                ln,
                "v1",
                "missing: a row is item_id,v1,...,vd",
            ));
        }
        if dim == 0 {
            dim = values.len();
        } else if values.len() != dim {
            return Err(DataError::parse(
                path,
                ln,
                &format!("v{}", values.len().min(dim) + 1),
                format!("row has {} values, earlier rows have {dim}", values.len()),
            ));
        }
        let Some(&i) = index.get(id) else {
            return Ok(());
        };
        let mut row = Vec::with_capacity(dim);
        for (k, v) in values.iter().enumerate() {
            row.push(parse_num::<f32>(path, ln, &format!("v{}", k + 1), v)?);
        }
        rows[i] = Some(row);
        Ok(())
    })?;
    let mut data = Vec::with_capacity(ds.num_items() * dim);
    for (i, r) in rows.into_iter().enumerate() {
        let r = r.ok_or_else(|| {
            DataError::Insufficient(format!(
                "{}: no vector for item {:?}",
                path.display(),
                ds.item_ids[i]
            ))
        })?;
        data.extend(r);
    }
    Ok(ItemVectors { dim, data })
}
