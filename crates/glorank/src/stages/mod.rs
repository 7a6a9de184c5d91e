//! The pipeline's stages as library functions, for front-ends and users who run one stage
//! at a time. Each reads what it needs from a [`RunDir`](crate::RunDir), writes its
//! artifacts there atomically, and reuses them when they exist.
//!
//! * training: [`tokenize`], [`train_reward`], [`policy_config`], [`train_sft_stage`],
//!   [`train_rl_stage`], [`load_reward`];
//! * evaluation: [`EvalContext`] scores any method's lists (label metrics, Average Reward,
//!   true clicks on the synthetic world), [`cold_slice`], [`held_out_view`] (the
//!   held-out-items protocol), [`shuffle_candidates`];
//! * results: [`write_results`] (`metrics.json`, `predictions.jsonl`), [`table`],
//!   [`METHOD_ORDER`], [`COLD_SLICE_KEY_PREFIX`].

mod eval;
mod results;
mod training;

pub use eval::{
    BEST_LIST, COLD_FIRST, EvalContext, HeldOutMethod, HeldOutView, MethodResult, RANDOM,
    TOP_APPEAL, cold_slice, held_out_view, logged_auc, shuffle_candidates,
};
pub use results::{COLD_SLICE_KEY_PREFIX, HELD_OUT_KEYS, METHOD_ORDER, table, write_results};
pub use training::{
    load_reward, policy_config, tokenize, train_reward, train_rl_stage, train_sft_stage,
};
