//! One group-relative policy-gradient step (GRPO-style) with a KL penalty to a frozen
//! reference policy.

use crate::advantage::group_advantages;
use crate::{Result, TrainError};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use glorank_policy::{Policy, Request, decode};
use glorank_trie::{CandidateTrie, Decoder};

/// Hyper-parameters of [`rl_step`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RlConfig {
    /// Lists sampled per request (default 8).
    pub group_size: usize,
    /// Weight of the per-token KL penalty to the reference policy (default 0.05).
    pub kl_coef: f64,
    /// Floor of the group standard deviation (default 1e-3).
    pub std_floor: f32,
    /// Learning rate (default 1e-4).
    pub learning_rate: f64,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            kl_coef: 0.05,
            std_floor: 1e-3,
            learning_rate: 1e-4,
        }
    }
}

impl RlConfig {
    /// Sets group size, KL weight and learning rate.
    pub fn with(mut self, group_size: usize, kl_coef: f64, learning_rate: f64) -> Self {
        self.group_size = group_size;
        self.kl_coef = kl_coef;
        self.learning_rate = learning_rate;
        self
    }
}

/// What one [`rl_step`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RlStepStats {
    /// Mean reward of the sampled lists.
    pub mean_reward: f64,
    /// Mean per-token KL estimate to the reference policy.
    pub kl: f64,
    /// Groups with zero reward variance (no policy-gradient signal).
    pub skipped_groups: usize,
    /// Whether the update was skipped because the loss was not finite.
    pub skipped_step: bool,
}

/// One RL step:
/// 1. sample `group_size` lists per request from the current policy (`decoder` should use a
///    sampling strategy; `policy.valid()` decodes on `plain`);
/// 2. score them with `reward(request_index, candidate_positions)`;
/// 3. group-relative advantages ([`group_advantages`]);
/// 4. loss = `-mean(A * log pi(list)) + kl_coef * mean_tokens(exp(r) - r - 1)` with
///    `r = log pi_ref - log pi` per token (the non-negative k3 estimator);
/// 5. a non-finite loss skips the update (counted in the stats); otherwise backward and an
///    optimizer step on `train` (the autodiff device the policy lives on).
///
/// # Errors
/// Decoding or input errors.
#[allow(clippy::too_many_arguments)]
pub fn rl_step(
    policy: Policy,
    reference: &Policy,
    optim: &mut ModuleOptimizer,
    requests: &[Request],
    reward: &dyn Fn(usize, &[usize]) -> f32,
    decoder: &mut Decoder,
    config: &RlConfig,
    (train, plain): (&Device, &Device),
) -> Result<(Policy, RlStepStats)> {
    let err = |e: &dyn std::fmt::Display| TrainError::InvalidInput(e.to_string());
    let g = config.group_size;
    if g == 0 || requests.is_empty() {
        return Err(TrainError::InvalidInput(
            "need requests and group_size >= 1".into(),
        ));
    }
    // 1-2. Sample and score.
    let rows: Vec<Request> = requests
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.clone(), g))
        .collect();
    let sampled = decode(&policy.valid(), &rows, decoder, plain).map_err(|e| err(&e))?;
    let lists: Vec<Vec<usize>> = sampled
        .into_iter()
        .map(|mut l| l.swap_remove(0).items)
        .collect();
    let rewards: Vec<f32> = lists
        .iter()
        .enumerate()
        .map(|(k, list)| reward(k / g, list))
        .collect();
    let adv = group_advantages(&rewards, g, config.std_floor).map_err(|e| err(&e))?;
    let mean_reward = rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / rewards.len() as f64;
    // 3-4. Log-probs under the current (tracked) and reference (constant) policies.
    let tries: Vec<CandidateTrie> = rows
        .iter()
        .map(|r| policy.trie(r))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(&e))?;
    let batch = policy.encode_inputs(&rows, train).map_err(|e| err(&e))?;
    let (tok_lp, seq_lp) = policy
        .log_probs(&batch, &tries, &lists)
        .map_err(|e| err(&e))?;
    let ref_batch = reference.encode_inputs(&rows, plain).map_err(|e| err(&e))?;
    let (ref_tok, _) = reference
        .log_probs(&ref_batch, &tries, &lists)
        .map_err(|e| err(&e))?;
    let [n, t] = ref_tok.dims();
    let ref_tok = Tensor::<2>::from_data(
        TensorData::new(
            ref_tok.into_data().iter::<f32>().collect::<Vec<_>>(),
            [n, t],
        ),
        train,
    );
    let adv_t = Tensor::<1>::from_data(TensorData::new(adv.values.clone(), [n]), train);
    let pg = (adv_t * seq_lp).mean().neg();
    let r = ref_tok - tok_lp;
    let kl = (r.clone().exp() - r - 1.0).mean();
    let kl_value = f64::from(kl.clone().into_scalar::<f32>());
    let loss = pg + kl.mul_scalar(config.kl_coef as f32);
    let value = loss.clone().into_scalar::<f32>();
    let mut stats = RlStepStats {
        mean_reward,
        kl: kl_value,
        skipped_groups: adv.skipped_groups,
        skipped_step: false,
    };
    if !value.is_finite() {
        stats.skipped_step = true;
        return Ok((policy, stats));
    }
    // 5. Update.
    let grads = GradientsParams::from_grads(loss.backward(), &policy);
    Ok((optim.step(config.learning_rate, policy, grads), stats))
}
