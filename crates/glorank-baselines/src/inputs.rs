//! Batched tensor inputs of the neural baselines: the item and user side information
//! ([`Features`]) and one batch of requests as tensors ([`Batch`]), built from plain rows
//! ([`BatchRow`]); `glorank-train` builds the rows from prepared samples.

use burn::tensor::{Device, Int, Tensor, TensorData};
use glorank_nn::ModelInputs;

/// Item side information shared by every request: dense content vectors (when the data has
/// item features) and the user attribute table, plus which per-candidate inputs the batches
/// carry.
#[derive(Debug, Clone)]
pub struct Features {
    /// Row-major item content vectors, `items x dim` (empty when `dim == 0`).
    pub item_vectors: Vec<f32>,
    /// Width of the item content vectors (0: none).
    pub dim: usize,
    /// Number of items.
    pub items: usize,
    /// Categories per user attribute.
    pub user_field_sizes: Vec<usize>,
    /// Category of each user per attribute (`fields x users`).
    pub user_values: Vec<Vec<u32>>,
    /// Longest history.
    pub history_len: usize,
    /// Which per-candidate inputs the batches carry and the models read (the retriever
    /// features, the exposure count) and the user tables' learning-rate factor.
    pub inputs: ModelInputs,
}

impl Features {
    /// Per-candidate side features: the retriever features (when batches carry them), then
    /// the exposure feature (when they carry it). 0: none.
    pub fn side_width(&self) -> usize {
        self.inputs.candidate_side_width()
    }
}

/// One request of a [`Batch`], as plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow<'a> {
    /// The user's index (a row of [`Features::user_values`]).
    pub user: u32,
    /// Candidate item indices, in pool order.
    pub candidates: &'a [u32],
    /// History item indices, oldest first (the last [`Features::history_len`] are read).
    pub history: &'a [u32],
    /// Per-candidate side features, candidate-major: `candidates.len() x
    /// Features::side_width()` values (the retriever features, then the exposure feature).
    pub side: Vec<f32>,
    /// Click label of each candidate (0 or 1).
    pub clicks: Vec<f32>,
}

/// One batch of requests as tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Candidate item indices `[B, N]`.
    pub candidates: Tensor<2, Int>,
    /// Candidate content vectors `[B, N, F]` (`None` without item features).
    pub candidate_vectors: Option<Tensor<3>>,
    /// Candidate side features `[B, N, W]`, `W = Features::side_width`: the retriever
    /// features, then `ln(1 + exposures)` (`None` when the features ask for neither).
    pub side_features: Option<Tensor<3>>,
    /// History item indices `[B, H]` (padding uses item 0 and is masked).
    pub history: Tensor<2, Int>,
    /// History content vectors `[B, H, F]`.
    pub history_vectors: Option<Tensor<3>>,
    /// History weights `[B, H, 1]`: `1 / len` on real entries, 0 on padding (a mean).
    pub history_weights: Tensor<3>,
    /// User attribute categories, one `[B]` tensor per attribute.
    pub user: Vec<Tensor<1, Int>>,
    /// Click labels `[B, N]` (0/1).
    pub clicks: Tensor<2>,
    /// Batch size and pool size.
    pub shape: [usize; 2],
}

fn vectors(f: &Features, items: &[u32], b: usize, n: usize, device: &Device) -> Option<Tensor<3>> {
    (f.dim > 0).then(|| {
        let mut v = Vec::with_capacity(items.len() * f.dim);
        for &i in items {
            let i = i as usize;
            v.extend_from_slice(&f.item_vectors[i * f.dim..(i + 1) * f.dim]);
        }
        Tensor::<3>::from_data(TensorData::new(v, [b, n, f.dim]), device)
    })
}

impl Batch {
    /// The batch of `rows` (all with the same pool size).
    ///
    /// # Errors
    /// [`BaselineError::InvalidInput`](crate::BaselineError::InvalidInput) when pool sizes
    /// differ within the batch, the batch is empty, or a row's side features or clicks do
    /// not have one entry per candidate.
    pub fn new(f: &Features, rows: &[BatchRow<'_>], device: &Device) -> crate::Result<Self> {
        let b = rows.len();
        let n = rows.first().map(|r| r.candidates.len()).unwrap_or(0);
        if b == 0 || n == 0 || rows.iter().any(|r| r.candidates.len() != n) {
            return Err(crate::BaselineError::InvalidInput(
                "a batch needs samples with one common, non-zero pool size".into(),
            ));
        }
        let width = f.side_width();
        if let Some(r) = rows
            .iter()
            .position(|r| r.side.len() != n * width || r.clicks.len() != n)
        {
            return Err(crate::BaselineError::InvalidInput(format!(
                "batch row {r}: {} side values and {} clicks for {n} candidates of width {width}",
                rows[r].side.len(),
                rows[r].clicks.len()
            )));
        }
        let h = f.history_len;
        let mut cand = Vec::with_capacity(b * n);
        let mut hist = Vec::with_capacity(b * h);
        let mut weights = Vec::with_capacity(b * h);
        let mut clicks = Vec::with_capacity(b * n);
        let mut side = Vec::with_capacity(b * n * width);
        for r in rows {
            cand.extend_from_slice(r.candidates);
            side.extend_from_slice(&r.side);
            let items = &r.history[r.history.len().saturating_sub(h)..];
            let w = if items.is_empty() {
                0.0
            } else {
                1.0 / items.len() as f32
            };
            for k in 0..h {
                hist.push(items.get(k).copied().unwrap_or(0));
                weights.push(if k < items.len() { w } else { 0.0 });
            }
            clicks.extend_from_slice(&r.clicks);
        }
        let int2 = |v: &[u32], d: [usize; 2]| {
            Tensor::<2, Int>::from_data(
                TensorData::new(v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(), d),
                device,
            )
        };
        let user = f
            .user_values
            .iter()
            .map(|vals| {
                let v: Vec<i64> = rows
                    .iter()
                    .map(|r| i64::from(vals[r.user as usize]))
                    .collect();
                Tensor::<1, Int>::from_data(TensorData::new(v, [b]), device)
            })
            .collect();
        Ok(Self {
            candidates: int2(&cand, [b, n]),
            candidate_vectors: vectors(f, &cand, b, n, device),
            side_features: (width > 0)
                .then(|| Tensor::<3>::from_data(TensorData::new(side, [b, n, width]), device)),
            history: int2(&hist, [b, h]),
            history_vectors: vectors(f, &hist, b, h, device),
            history_weights: Tensor::<3>::from_data(TensorData::new(weights, [b, h, 1]), device),
            user,
            clicks: Tensor::<2>::from_data(TensorData::new(clicks, [b, n]), device),
            shape: [b, n],
        })
    }
}
