//! From prepared samples to policy requests.

use crate::{Result, SftBatch, SftExamples, TrainError};
use glorank_data::{
    Exposures, Labels, PreparedDataset, RerankSample, StoreReader, StoredRequest, demonstration_by,
};
use glorank_policy::{HistoryItem, PolicyConfig, Request};
use glorank_tokenizer::SemanticIds;

/// Builds policy [`Request`]s from a [`PreparedDataset`] and the semantic IDs of its items.
#[derive(Debug, Clone)]
pub struct RequestBuilder<'a> {
    ds: &'a PreparedDataset,
    ids: &'a SemanticIds,
    /// The training exposures, when requests carry them ([`RequestBuilder::with_exposures`]).
    exposures: Option<std::sync::Arc<Exposures>>,
}

impl<'a> RequestBuilder<'a> {
    /// A builder for `ds` whose item `i` has the tuple `ids.tuple(i)`.
    ///
    /// # Errors
    /// [`TrainError::InvalidInput`] when the table does not cover exactly the dataset's items
    /// (a table made for another run directory).
    pub fn new(ds: &'a PreparedDataset, ids: &'a SemanticIds) -> Result<Self> {
        if ids.len() != ds.num_items() {
            return Err(TrainError::InvalidInput(format!(
                "the semantic-ID table has {} items but dataset `{}` has {}; tokenize this run directory",
                ids.len(),
                ds.name,
                ds.num_items()
            )));
        }
        Ok(Self {
            ds,
            ids,
            exposures: None,
        })
    }

    /// With `on`, requests carry each candidate's exposure count ([`Exposures`] over the
    /// dataset's training requests), as a policy with
    /// [`ModelInputs::exposures`](glorank_nn::ModelInputs::exposures) needs; without, they carry none.
    pub fn with_exposures(mut self, on: bool) -> Self {
        self.exposures = on.then(|| std::sync::Arc::new(Exposures::new(&self.ds.train)));
        self
    }

    /// Categories of each user attribute (empty when the dataset has none).
    pub fn user_field_sizes(&self) -> Vec<usize> {
        self.ds
            .user_features
            .as_ref()
            .map(|u| u.fields.iter().map(|f| f.vocabulary.len()).collect())
            .unwrap_or_default()
    }

    /// A default policy configuration matching the data: vocabularies from the table, user
    /// attributes, list length, history length and pool size from the protocol.
    pub fn policy_config(&self) -> PolicyConfig {
        let c = &self.ds.config;
        PolicyConfig::new(self.ids.vocab_sizes())
            .with_user_fields(self.user_field_sizes())
            .with_shape(c.slate_len, c.history_len, c.pool_size)
    }

    /// The tuple of item `i` (every item has one: checked in [`RequestBuilder::new`]).
    fn tuple(&self, item: u32) -> Vec<u32> {
        self.ids
            .tuple(item as usize)
            .map(<[u32]>::to_vec)
            .unwrap_or_default()
    }

    /// The request of one sample: user attributes, history (tuples and label bits, oldest
    /// first), candidate tuples in the sample's (shuffled) order, retriever scores, and the
    /// exposure counts when the builder has them.
    pub fn request(&self, sample: &RerankSample) -> Request {
        self.request_with(
            sample,
            self.ds.history(sample).items,
            self.ds.history_labels(sample),
            self.ds.retriever_scores(sample),
        )
    }

    /// The request of a training request read from the dataset's store (its history and
    /// retriever scores are in its own record).
    pub fn stored_request(&self, stored: &StoredRequest) -> Request {
        let r = &stored.record;
        self.request_with(
            &stored.sample,
            &r.history,
            r.history_labels.clone(),
            r.retriever_scores
                .clone()
                .unwrap_or_else(|| vec![0.0; stored.sample.candidates.len()]),
        )
    }

    /// The request of `sample` with this history and these retriever scores.
    fn request_with(
        &self,
        sample: &RerankSample,
        history: &[u32],
        labels: Vec<Labels>,
        retriever_scores: Vec<f32>,
    ) -> Request {
        let user = sample.user as usize;
        let user_features = self
            .ds
            .user_features
            .as_ref()
            .map(|u| u.fields.iter().map(|f| f.values[user]).collect())
            .unwrap_or_default();
        Request {
            user_features,
            history: history
                .iter()
                .zip(labels)
                .map(|(&i, l)| HistoryItem {
                    tuple: self.tuple(i),
                    labels: l.0,
                })
                .collect(),
            candidates: sample.candidates.iter().map(|&i| self.tuple(i)).collect(),
            retriever_scores,
            exposures: self
                .exposures
                .as_ref()
                .map(|e| e.counts(sample))
                .unwrap_or_default(),
        }
    }

    /// Requests of many samples.
    pub fn requests(&self, samples: &[RerankSample]) -> Vec<Request> {
        samples.iter().map(|s| self.request(s)).collect()
    }
}

/// SFT examples read from a dataset's training requests on disk (`log.store = "disk"`), a
/// batch at a time: memory holds a batch, not the training set.
#[derive(Debug)]
pub struct StoredExamples<'a> {
    builder: &'a RequestBuilder<'a>,
    reader: StoreReader<'a>,
    label_demonstrations: bool,
}

impl<'a> StoredExamples<'a> {
    /// The stored training requests of `builder`'s dataset, with the logged demonstration
    /// ([`PreparedDataset::demonstration`]) or, with `label_demonstrations`, the labels'
    /// ([`PreparedDataset::label_demonstration`]). `None` when the dataset holds its
    /// training requests in memory.
    ///
    /// # Errors
    /// The store's errors (a missing or foreign file).
    pub fn new(
        builder: &'a RequestBuilder<'a>,
        label_demonstrations: bool,
    ) -> Result<Option<Self>> {
        let Some(reader) = builder.ds.train_reader()? else {
            return Ok(None);
        };
        if builder.exposures.is_some() {
            return Err(TrainError::InvalidInput(
                "exposure counts need every training request in memory".into(),
            ));
        }
        Ok(Some(Self {
            builder,
            reader,
            label_demonstrations,
        }))
    }
}

impl SftExamples for StoredExamples<'_> {
    fn len(&self) -> usize {
        self.reader.len()
    }

    fn batch(&self, indices: &[usize], labels: bool) -> Result<SftBatch> {
        let mut batch = SftBatch::default();
        for &i in indices {
            let r = self.reader.get(i)?;
            batch.requests.push(self.builder.stored_request(&r));
            batch.demonstrations.push(if self.label_demonstrations {
                self.builder.ds.label_demonstration(&r.sample)
            } else {
                demonstration_by(&r.sample, &r.record.shown_values)
            });
            if labels {
                batch.labels.push(r.sample.click_relevance());
            }
        }
        Ok(batch)
    }
}
