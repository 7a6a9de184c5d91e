//! Upper bounds on model and training sizes. Every configuration (in a TOML file, on the
//! command line, or in a saved model's JSON) is checked against them before anything is
//! allocated, so a typo such as `d_model = 1e9` is an error naming the field instead of an
//! allocation failure minutes later. They are far above what the models need; see
//! `docs/reliability.md`.

/// Largest model width.
pub const MAX_D_MODEL: usize = 4096;
/// Most attention heads.
pub const MAX_HEADS: usize = 256;
/// Most layers of one stack.
pub const MAX_LAYERS: usize = 64;
/// Largest feed-forward width.
pub const MAX_D_FF: usize = 65_536;
/// Most positions of one sequence (history, candidates, list slots).
pub const MAX_POSITIONS: usize = 4096;
/// Most semantic-ID levels.
pub const MAX_LEVELS: usize = 16;
/// Largest vocabulary of one level (or categories of one attribute).
pub const MAX_VOCAB: usize = 1 << 20;
/// Most elements (rows x width) of one embedding table: 2^28 floats, 1 GiB.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 28;
/// Largest batch (requests or examples per step).
pub const MAX_BATCH: usize = 1 << 16;
/// Most epochs of one training stage.
pub const MAX_EPOCHS: usize = 100_000;
/// Most steps of one training stage.
pub const MAX_STEPS: usize = 1 << 30;
/// Largest learning-rate factor of a user table (`user_lr_scale` of the policy and the
/// baselines): beyond it one Adam step moves a user's input by more than a whole typical
/// embedding.
pub const MAX_USER_LR_SCALE: f32 = 1000.0;
/// Most data-parallel shards (threads) of one training step.
pub const MAX_SHARDS: usize = 256;
/// Most sampled lists per request in group-relative RL or REINFORCE.
pub const MAX_GROUP: usize = 1024;

/// `Some(message)` when `value` exceeds `max`.
pub fn too_large(value: usize, max: usize) -> Option<String> {
    (value > max).then(|| format!("{value} exceeds the limit of {max}"))
}

/// `Some(message)` when `scale` is not a valid `user_lr_scale` (finite, 0 up to
/// [`MAX_USER_LR_SCALE`]; 0 is off), `None` otherwise.
pub fn bad_user_lr_scale(scale: f32) -> Option<String> {
    (!(scale.is_finite() && (0.0..=MAX_USER_LR_SCALE).contains(&scale)))
        .then(|| format!("must be in [0, {MAX_USER_LR_SCALE}] (0: off), got {scale}"))
}
