//! Batched tensor inputs of the neural baselines, built from prepared samples.

use burn::tensor::{Device, Int, Tensor, TensorData};
use glorank_data::{Exposures, ItemVectorSource, PreparedDataset, RerankSample, item_vectors};
use glorank_nn::RetrieverInput;

/// Item side information shared by every request: dense content vectors (when the dataset
/// has item features) and the user attribute table.
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
    /// Whether batches carry each candidate's retriever score (see
    /// [`crate::BaselineConfig::use_retriever_score`]).
    pub retriever_score: bool,
    /// Which features the retriever scores become (the raw score by default; see
    /// [`RetrieverInput`]).
    pub retriever_input: RetrieverInput,
    /// The training exposures, when batches carry each candidate's exposure count (see
    /// [`crate::BaselineConfig::use_exposures`]).
    pub exposures: Option<std::sync::Arc<Exposures>>,
}

/// The content vectors the baselines read next to their item-ID embeddings (genres, year,
/// 16 title-word buckets); GloRank's `policy.item_content` reads the same.
pub const CONTENT_VECTORS: ItemVectorSource = ItemVectorSource::Content { title_buckets: 16 };

impl Features {
    /// The side information of `ds`: content vectors (genres, year, 16 title-hash buckets)
    /// when it has item features, user attributes when it has them.
    pub fn of(ds: &PreparedDataset) -> Self {
        let (item_vectors, dim) = match &ds.item_features {
            Some(_) => match item_vectors(ds, &CONTENT_VECTORS) {
                Ok(v) => (v.data, v.dim),
                Err(_) => (Vec::new(), 0),
            },
            None => (Vec::new(), 0),
        };
        let (user_field_sizes, user_values) = match &ds.user_features {
            Some(u) => (
                u.fields.iter().map(|f| f.vocabulary.len()).collect(),
                u.fields.iter().map(|f| f.values.clone()).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Self {
            item_vectors,
            dim,
            items: ds.num_items(),
            user_field_sizes,
            user_values,
            history_len: ds.config.history_len.max(1),
            retriever_score: false,
            retriever_input: RetrieverInput::Score,
            exposures: None,
        }
    }

    /// The side information of `ds` with the per-candidate inputs `config` asks for: the
    /// retriever features and the exposure counts.
    pub fn for_config(ds: &PreparedDataset, config: &crate::BaselineConfig) -> Self {
        Self::of(ds)
            .with_retriever_score(config.use_retriever_score)
            .with_retriever_input(config.retriever_input)
            .with_exposures(ds, config.use_exposures)
    }

    /// With `on`, batches carry each candidate's retriever score and models built from these
    /// features read it.
    pub fn with_retriever_score(mut self, on: bool) -> Self {
        self.retriever_score = on;
        self
    }

    /// Reads the retriever scores as `input` (when batches carry them).
    pub fn with_retriever_input(mut self, input: RetrieverInput) -> Self {
        self.retriever_input = input;
        self
    }

    /// With `on`, batches carry each candidate's exposure count over the training requests
    /// of `ds` ([`Exposures`]), read as `ln(1 + count)`.
    pub fn with_exposures(mut self, ds: &PreparedDataset, on: bool) -> Self {
        self.exposures = on.then(|| std::sync::Arc::new(Exposures::new(&ds.train)));
        self
    }

    /// Per-candidate side features: the retriever features (when batches carry them), then
    /// the exposure feature (when they carry it). 0: none.
    pub fn side_width(&self) -> usize {
        let retriever = if self.retriever_score {
            self.retriever_input.width()
        } else {
            0
        };
        retriever + usize::from(self.exposures.is_some())
    }
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
    /// The batch of `samples` (all with the same pool size).
    ///
    /// # Errors
    /// [`BaselineError::InvalidInput`](crate::BaselineError::InvalidInput) when pool sizes
    /// differ within the batch or the batch is empty.
    pub fn new(
        ds: &PreparedDataset,
        f: &Features,
        samples: &[&RerankSample],
        device: &Device,
    ) -> crate::Result<Self> {
        let b = samples.len();
        let n = samples.first().map(|s| s.candidates.len()).unwrap_or(0);
        if b == 0 || n == 0 || samples.iter().any(|s| s.candidates.len() != n) {
            return Err(crate::BaselineError::InvalidInput(
                "a batch needs samples with one common, non-zero pool size".into(),
            ));
        }
        let h = f.history_len;
        let mut cand = Vec::with_capacity(b * n);
        let mut hist = Vec::with_capacity(b * h);
        let mut weights = Vec::with_capacity(b * h);
        let mut clicks = Vec::with_capacity(b * n);
        let width = f.side_width();
        let mut side = Vec::with_capacity(b * n * width);
        for s in samples {
            cand.extend(s.candidates.iter().copied());
            let retriever = f
                .retriever_score
                .then(|| f.retriever_input.features(&ds.retriever_scores(s)));
            let exposures = f.exposures.as_ref().map(|e| e.counts(s));
            for c in 0..n {
                if let Some(r) = &retriever {
                    let w = f.retriever_input.width();
                    side.extend_from_slice(&r[c * w..(c + 1) * w]);
                }
                if let Some(e) = &exposures {
                    side.push(glorank_nn::exposure_feature(e[c]));
                }
            }
            let items = ds.history(s).items;
            let items = &items[items.len().saturating_sub(h)..];
            let w = if items.is_empty() {
                0.0
            } else {
                1.0 / items.len() as f32
            };
            for k in 0..h {
                hist.push(items.get(k).copied().unwrap_or(0));
                weights.push(if k < items.len() { w } else { 0.0 });
            }
            clicks.extend(s.click_relevance().iter().map(|&c| c as f32));
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
                let v: Vec<i64> = samples
                    .iter()
                    .map(|s| i64::from(vals[s.user as usize]))
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
