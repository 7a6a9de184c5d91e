//! List rewards for RL and the evaluation of generated lists (metrics with confidence
//! intervals, Average Reward from the simulator).

use crate::Result;
use burn::tensor::Device;
use glorank_metrics::{ListMetrics, MetricAccumulator, MetricsSummary, Summary, ndcg_at};
use glorank_policy::{HostPolicy, Policy, Request, decode_with_host};
use glorank_reward::{RewardExample, UserResponseModel, dcg_click_reward, sum_click_reward};
use glorank_trie::{DecodeStrategy, Decoder};

/// Requests scored per reward-model forward pass.
const CHUNK: usize = 512;

/// A list-wise reward for RL.
pub trait ListReward {
    /// The reward of each `lists[k]` (candidate positions) for request `requests[k]`;
    /// `ids[k]` is that request's index in the training set (for label-based rewards).
    ///
    /// # Errors
    /// Model or input errors.
    fn rewards(
        &self,
        requests: &[&Request],
        ids: &[usize],
        lists: &[Vec<usize>],
    ) -> Result<Vec<f32>>;
}

/// The evaluator's DCG-weighted click reward `sum_k p_click(k) / log2(k + 1)` (slots from 1).
#[derive(Debug)]
pub struct EvaluatorReward<'a> {
    model: &'a UserResponseModel,
    device: Device,
}

impl<'a> EvaluatorReward<'a> {
    /// The reward of `model` (a plain-device model) evaluated on `device`.
    pub fn new(model: &'a UserResponseModel, device: &Device) -> Self {
        Self {
            model,
            device: device.clone(),
        }
    }
}

/// Reward-model examples of `lists` (labels are unused when scoring).
fn examples(requests: &[&Request], lists: &[Vec<usize>]) -> Vec<RewardExample> {
    requests
        .iter()
        .zip(lists)
        .map(|(r, l)| {
            let zeros = vec![0u8; r.candidates.len()];
            RewardExample::from_pool(
                r.user_features.clone(),
                r.history.clone(),
                &r.candidates,
                &zeros,
                l,
            )
            .with_pool_scores(&r.retriever_scores, l)
        })
        .collect()
}

impl ListReward for EvaluatorReward<'_> {
    fn rewards(
        &self,
        requests: &[&Request],
        _ids: &[usize],
        lists: &[Vec<usize>],
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(lists.len());
        for (r, l) in requests.chunks(CHUNK).zip(lists.chunks(CHUNK)) {
            let p = self.model.probabilities(&examples(r, l), &self.device)?;
            out.extend(dcg_click_reward(p).into_data().iter::<f32>());
        }
        Ok(out)
    }
}

/// The verifiable reward: NDCG@L of the list against the training request's known labels.
#[derive(Debug, Clone)]
pub struct LabelReward<'a> {
    relevance: &'a [Vec<f64>],
}

impl<'a> LabelReward<'a> {
    /// Relevance per training request (indexed by the `ids` of [`ListReward::rewards`]), one
    /// value per candidate (gain `2^rel - 1`).
    pub fn new(relevance: &'a [Vec<f64>]) -> Self {
        Self { relevance }
    }
}

impl ListReward for LabelReward<'_> {
    fn rewards(
        &self,
        _requests: &[&Request],
        ids: &[usize],
        lists: &[Vec<usize>],
    ) -> Result<Vec<f32>> {
        ids.iter()
            .zip(lists)
            .map(|(&i, l)| Ok(ndcg_at(l, &self.relevance[i], l.len())? as f32))
            .collect()
    }
}

/// Greedy (or beam, `beam > 1`: the best beam) lists of `policy` on a plain device.
///
/// # Errors
/// Decoding errors.
pub fn greedy_lists(
    policy: &Policy,
    requests: &[Request],
    beam: usize,
    device: &Device,
) -> Result<Vec<Vec<usize>>> {
    let decoder = Decoder::new(DecodeStrategy::beam_or_greedy(beam), 0)?;
    policy_lists(policy, requests, decoder, device)
}

/// The first list `decoder` gives per request (for beam search the best beam) with `policy`
/// on a plain device: [`greedy_lists`] with any decoder, e.g. one with a
/// [`Decoder::with_prefix_penalty`].
///
/// # Errors
/// Decoding errors.
pub fn policy_lists(
    policy: &Policy,
    requests: &[Request],
    mut decoder: Decoder,
    device: &Device,
) -> Result<Vec<Vec<usize>>> {
    let mut out = Vec::with_capacity(requests.len());
    let host = HostPolicy::for_device(policy, device);
    for chunk in requests.chunks(CHUNK) {
        let lists = decode_with_host(host.as_ref(), policy, chunk, &mut decoder, device)?;
        out.extend(lists.into_iter().map(|mut l| l.swap_remove(0).items));
    }
    Ok(out)
}

/// Precision/Recall/F1/NDCG/MAP/Hit@`cutoff` of `lists` against per-request `relevance`,
/// each with its 95% confidence interval over requests.
///
/// # Errors
/// Metric errors (no requests, a list with positions outside its request).
pub fn list_metrics(
    lists: &[Vec<usize>],
    relevance: &[Vec<f64>],
    cutoff: usize,
) -> Result<MetricsSummary> {
    let mut acc = MetricAccumulator::new();
    for (l, r) in lists.iter().zip(relevance) {
        acc.push(ListMetrics::compute(l, r, cutoff)?);
    }
    Ok(acc.summary()?)
}

/// Average Reward: the mean over requests of the simulator's summed click probability over
/// the list's slots, `(1/|R|) sum_r sum_{k=1..L} p_click(r, k)`, with its 95% confidence
/// interval. `simulator` is a plain-device model.
///
/// # Errors
/// Model or input errors.
pub fn average_reward(
    simulator: &UserResponseModel,
    requests: &[Request],
    lists: &[Vec<usize>],
    device: &Device,
) -> Result<Summary> {
    let mut values = Vec::with_capacity(lists.len());
    let refs: Vec<&Request> = requests.iter().collect();
    for (r, l) in refs.chunks(CHUNK).zip(lists.chunks(CHUNK)) {
        let p = simulator.probabilities(&examples(r, l), device)?;
        values.extend(sum_click_reward(p).into_data().iter::<f32>().map(f64::from));
    }
    Ok(Summary::from_values(&values)?)
}
