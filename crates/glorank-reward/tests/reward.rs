//! Reward-model tests: shapes and padding, list rewards, learning the click rule including
//! never-consumed pool items, save/load and seeding.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use glorank_reward::HistoryItem;
use glorank_reward::{
    RewardConfig, RewardExample, RewardRole, UserResponseModel, dcg_click_reward, sum_click_reward,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const VOCAB: [usize; 2] = [8, 4];

fn config() -> RewardConfig {
    RewardConfig::for_role(RewardRole::Evaluator, VOCAB.to_vec())
        .with_size(32, 4, 1)
        .with_shape(4, 6)
}

fn tuple(rng: &mut ChaCha8Rng) -> Vec<u32> {
    VOCAB
        .iter()
        .map(|&v| rng.random_range(0..v as u32))
        .collect()
}

/// A user who clicks exactly the items whose first token is below 3.
fn example(rng: &mut ChaCha8Rng, len: usize) -> RewardExample {
    let list: Vec<Vec<u32>> = (0..len).map(|_| tuple(rng)).collect();
    let labels = list.iter().map(|t| u8::from(t[0] < 3)).collect();
    RewardExample {
        user_features: vec![],
        history: (0..rng.random_range(0..5))
            .map(|_| HistoryItem {
                tuple: tuple(rng),
                labels: 1,
            })
            .collect(),
        list,
        labels,
        scores: vec![],
    }
}

#[test]
fn a_model_with_retriever_scores_reads_them_and_needs_them() {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let plain = UserResponseModel::new(&config(), &dev).unwrap();
    let model = UserResponseModel::new(&config().with_retriever_score(true), &dev).unwrap();
    let base = example(&mut rng, 3);
    // Without scores: the plain model serves it, the score-reading one names the problem.
    assert!(plain.forward(std::slice::from_ref(&base), &dev).is_ok());
    let e = model
        .forward(std::slice::from_ref(&base), &dev)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0 retriever scores for 3 items"), "{e}");
    // The scores change the prediction; the plain model ignores them.
    let probs = |m: &UserResponseModel, scores: Vec<f32>| -> Vec<f32> {
        let mut x = base.clone();
        x.scores = scores;
        m.probabilities(&[x], &dev)
            .unwrap()
            .into_data()
            .iter::<f32>()
            .collect()
    };
    assert_ne!(
        probs(&model, vec![0.0; 3]),
        probs(&model, vec![3.0, -2.0, 1.0])
    );
    assert_eq!(
        probs(&plain, vec![0.0; 3]),
        probs(&plain, vec![3.0, -2.0, 1.0])
    );
    // Pool examples pick the listed items' scores.
    let pooled = RewardExample::from_pool(
        vec![],
        vec![],
        &[vec![0, 0], vec![1, 1], vec![2, 2]],
        &[0, 1, 0],
        &[2, 0],
    )
    .with_pool_scores(&[0.1, 0.2, 0.3], &[2, 0]);
    assert_eq!(pooled.scores, vec![0.3, 0.1]);
    // An older saved configuration (no such field) reads as "off".
    let mut json = serde_json::to_value(config()).unwrap();
    json.as_object_mut().unwrap().remove("use_retriever_score");
    let back: RewardConfig = serde_json::from_value(json).unwrap();
    assert!(!back.use_retriever_score);
}

#[test]
fn list_rewards_hand_case() {
    let dev = Device::flex();
    // Click probabilities 0.5, 1.0, 0.0 on three slots.
    let probs = Tensor::<3>::from_data(
        TensorData::new(
            vec![0.5f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.9, 0.9],
            [1, 3, 3],
        ),
        &dev,
    );
    let sum = sum_click_reward(probs.clone()).into_scalar::<f32>();
    assert!((sum - 1.5).abs() < 1e-6);
    let dcg = dcg_click_reward(probs).into_scalar::<f32>();
    assert!((dcg - (0.5 + 1.0 / 3f32.log2())).abs() < 1e-6);
}

#[test]
fn shapes_and_padding() {
    let dev = Device::flex();
    let model = UserResponseModel::new(&config(), &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let short = example(&mut rng, 2);
    let long = example(&mut rng, 4);
    let alone: Vec<f32> = model
        .probabilities(std::slice::from_ref(&short), &dev)
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    let batch = model.probabilities(&[short, long], &dev).unwrap();
    assert_eq!(batch.dims(), [2, 4, 3]);
    let first: Vec<f32> = batch
        .slice([0..1, 0..2, 0..3])
        .into_data()
        .iter::<f32>()
        .collect();
    for (a, b) in alone.iter().zip(&first) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let mut bad = example(&mut rng, 5);
    assert!(model.forward(std::slice::from_ref(&bad), &dev).is_err());
    bad.list.truncate(2);
    bad.list[0] = vec![9, 0];
    assert!(model.forward(&[bad], &dev).is_err());
}

#[test]
fn learns_which_items_are_clicked() {
    let train = Device::flex().autodiff();
    let mut model = UserResponseModel::new(&config().with_dropout(0.0), &train).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // Logged-like lists plus pool lists: pool items never consumed carry label 0 whatever
    // their tokens, here the retrieved items with first token >= 3.
    let data: Vec<RewardExample> = (0..256).map(|_| example(&mut rng, 4)).collect();
    let mut optim = AdamConfig::new().init();
    let first = model
        .loss(&data[..64], &train)
        .unwrap()
        .into_scalar::<f32>();
    for step in 0..120 {
        let batch = &data[(step % 4) * 64..(step % 4 + 1) * 64];
        let loss = model.loss(batch, &train).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    let valid = model.valid();
    let dev = Device::flex();
    let test: Vec<RewardExample> = (0..64).map(|_| example(&mut rng, 4)).collect();
    let probs: Vec<f32> = valid
        .probabilities(&test, &dev)
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    let mut correct = 0;
    for (e, p) in test.iter().zip(probs.chunks(12)) {
        for (k, &lab) in e.labels.iter().enumerate() {
            correct += usize::from((p[k * 3] > 0.5) == (lab == 1));
        }
    }
    // The rule is a threshold on one token; 90% accuracy after 120 small steps leaves
    // margin over chance (~62% by always predicting "no click").
    assert!(
        correct as f64 / 256.0 > 0.9,
        "accuracy {correct}/256, first loss {first}"
    );
    let last = valid.loss(&test, &dev).unwrap().into_scalar::<f32>();
    assert!(last < first * 0.5, "loss {first} -> {last}");
}

#[test]
fn pool_examples_label_never_consumed_items_zero() {
    let cands = vec![vec![0, 1], vec![5, 2], vec![1, 1]];
    let e = RewardExample::from_pool(vec![], vec![], &cands, &[1, 0, 3], &[2, 1]);
    assert_eq!(e.list, vec![vec![1, 1], vec![5, 2]]);
    assert_eq!(e.labels, vec![3, 0]);
}

#[test]
fn save_load_and_seeding() {
    let dev = Device::flex();
    let cfg = config();
    let model = UserResponseModel::new(&cfg, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let batch: Vec<RewardExample> = (0..3).map(|k| example(&mut rng, 1 + k)).collect();
    let out = |m: &UserResponseModel| -> Vec<f32> {
        m.forward(&batch, &dev)
            .unwrap()
            .into_data()
            .iter::<f32>()
            .collect()
    };
    let before = out(&model);
    let dir = tempfile::tempdir().unwrap();
    model.save(&cfg, dir.path()).unwrap();
    let (loaded, c) = UserResponseModel::load(dir.path(), &dev).unwrap();
    assert_eq!(c, cfg);
    assert_eq!(out(&loaded), before);
    assert_eq!(out(&UserResponseModel::new(&cfg, &dev).unwrap()), before);
    let sim = RewardConfig::for_role(RewardRole::Simulator, VOCAB.to_vec()).with_shape(4, 6);
    assert_ne!(sim.seed, cfg.seed);
    assert!(UserResponseModel::new(&sim, &dev).unwrap().num_params() > model.num_params());
}
