//! Supervised pre-training (teacher forcing on demonstrations) and greedy evaluation.

use crate::{Result, TrainError};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use glorank_metrics::{ListMetrics, MetricAccumulator, MetricsSummary};
use glorank_policy::{Policy, Request, decode};
use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder};

/// One SFT step: mean negative log-likelihood of the demonstrations (`lists[r]` are
/// candidate positions of `requests[r]`) under the trie-masked softmax, backward, optimizer
/// step. `device` is the autodiff device the policy lives on. Returns the updated policy and
/// the loss.
///
/// # Errors
/// Input errors from the policy (a list that is not valid for its request).
pub fn sft_step(
    policy: Policy,
    optim: &mut ModuleOptimizer,
    requests: &[Request],
    lists: &[Vec<usize>],
    learning_rate: f64,
    device: &Device,
) -> Result<(Policy, f32)> {
    let tries: Vec<CandidateTrie> = requests
        .iter()
        .map(|r| policy.trie(r))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
    let batch = policy
        .encode_inputs(requests, device)
        .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
    let (_, total) = policy
        .log_probs(&batch, &tries, lists)
        .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
    let loss = total.mean().neg();
    let value = loss.clone().into_scalar::<f32>();
    if !value.is_finite() {
        return Err(TrainError::InvalidInput(format!(
            "non-finite SFT loss {value}"
        )));
    }
    let grads = GradientsParams::from_grads(loss.backward(), &policy);
    Ok((optim.step(learning_rate, policy, grads), value))
}

/// Greedy lists of `policy` (on a plain device) for `requests`, scored against each
/// request's binary `relevance` (one value per candidate) at cut-off `list_len`.
///
/// # Errors
/// Decoding or metric errors.
pub fn greedy_metrics(
    policy: &Policy,
    requests: &[Request],
    relevance: &[Vec<f64>],
    device: &Device,
) -> Result<MetricsSummary> {
    let mut decoder = Decoder::new(DecodeStrategy::Greedy, 0)
        .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
    let lists = decode(policy, requests, &mut decoder, device)
        .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
    let l = policy.list_len();
    let mut acc = MetricAccumulator::new();
    for (list, rel) in lists.iter().zip(relevance) {
        acc.push(
            ListMetrics::compute(&list[0].items, rel, l)
                .map_err(|e| TrainError::InvalidInput(e.to_string()))?,
        );
    }
    acc.summary()
        .map_err(|e| TrainError::InvalidInput(e.to_string()))
}
