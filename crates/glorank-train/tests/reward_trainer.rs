//! The reward-model trainer learns to separate clicked items from never-consumed pool items.

use burn::tensor::Device;
use glorank_reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank_train::{
    RequestBuilder, RewardTrainConfig, click_auc, reward_examples, train_reward_model,
};

mod common;

#[test]
fn evaluator_learns_clicks_from_logged_and_pool_lists() {
    let (ds, ids) = common::world(120, 200, 6, 12, 16);
    let builder = RequestBuilder::new(&ds, &ids).unwrap();
    let train = reward_examples(&builder, &ds.train, 1, 7);
    let valid = reward_examples(&builder, &ds.valid, 1, 8);
    assert_eq!(train.len(), 2 * ds.train.len());
    // Pool lists contain retrieved items that were never consumed: label 0.
    assert!(
        train
            .iter()
            .skip(1)
            .step_by(2)
            .any(|e| e.labels.contains(&0))
    );

    let config = RewardConfig::for_role(RewardRole::Evaluator, ids.vocab_sizes())
        .with_user_fields(builder.user_field_sizes())
        .with_shape(6, 12)
        .with_size(32, 4, 1);
    let train_dev = Device::flex().autodiff();
    let model = UserResponseModel::new(&config, &train_dev).unwrap();
    let cfg = RewardTrainConfig::default()
        .with_epochs(20, 4)
        .with_learning_rate(3e-3);
    let (best_model, log) =
        train_reward_model(model, &train, &valid, &cfg, &train_dev, &Device::flex()).unwrap();
    let best = log.iter().filter_map(|e| e.valid_auc).fold(0.0, f64::max);
    assert!(
        log.last().unwrap().train_loss < log[0].train_loss,
        "{log:?}"
    );
    // The returned model is the best epoch's.
    let again = click_auc(&best_model, &valid, &Device::flex())
        .unwrap()
        .unwrap();
    assert!(
        (again - best).abs() < 1e-9,
        "returned {again} vs best {best}"
    );
    // Measured (seeded, deterministic here): 0.45 after epoch 1, best 0.553 at epoch 7, then
    // early stopping. With about 1,400 validation slots the AUC's standard error is about
    // 0.015, so 0.52 is 2 standard errors above chance: the model generalises, weakly, at this
    // tiny scale (120 users), which is what the bar checks.
    assert!(best > 0.52, "best validation click AUC {best:.3}: {log:?}");
}
