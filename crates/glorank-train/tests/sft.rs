//! SFT on a tiny synthetic world lifts validation Precision@6 above the random-list level.

use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::tensor::Device;
use glorank_policy::PolicyArch;
use glorank_train::{RequestBuilder, greedy_metrics, sft_step};

mod common;

#[test]
fn sft_fits_its_demonstrations() {
    let (ds, ids) = common::world(120, 200, 6, 12, 16);
    let builder = RequestBuilder::new(&ds, &ids).unwrap();
    let train_reqs = builder.requests(&ds.train);
    let demos: Vec<Vec<usize>> = ds.train.iter().map(|s| ds.demonstration(s)).collect();
    // Relevance = "was logged", so Precision@6 measures how many demonstrated items the
    // greedy list reproduces.
    let logged: Vec<Vec<f64>> = ds.train[..100]
        .iter()
        .map(|s| {
            let mut r = vec![0.0; s.candidates.len()];
            for &p in &s.logged {
                r[p as usize] = 1.0;
            }
            r
        })
        .collect();

    let config = builder.policy_config().with_arch(
        PolicyArch::default()
            .with_size(32, 4, 1)
            .with_dropout(0.0)
            .with_tied_heads(true)
            .with_seed(3),
    );
    let train = Device::flex().autodiff();
    let mut policy = glorank_policy::Policy::new(&config, &train).unwrap();
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..24 {
        for (k, (r, d)) in train_reqs.chunks(32).zip(demos.chunks(32)).enumerate() {
            let (p, out) =
                sft_step(policy, &mut optim, r, d, None, (3e-3, None, 2), &train).unwrap();
            policy = p;
            if k == 0 {
                losses.push(out.loss);
            }
        }
    }
    let fitted = greedy_metrics(
        &policy.valid(),
        &train_reqs[..100],
        &logged,
        &Device::flex(),
    )
    .unwrap()
    .precision
    .mean;
    assert!(losses[23] < 0.9 * losses[0], "NLL per list {losses:?}");
    // A random list reproduces 6/20 = 0.30 of the demonstrated items on average (standard
    // error about 0.019 over these 600 picks). Measured after these 24 epochs: 0.410, seeded
    // and deterministic here. 0.36 is about 3 standard errors above chance: a policy that
    // learned nothing fails it.
    assert!(fitted > 0.36, "precision on demonstrations {fitted:.3}");
}

/// Every float parameter's values, in module order.
struct Weights(Vec<f32>);

impl burn::module::ModuleVisitor for Weights {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        self.0.extend(param.val().into_data().iter::<f32>());
    }
}

/// The data-parallel step computes the whole batch's gradient: without dropout, one shard
/// and three shards give the same loss and (up to rounding) the same updated weights; with
/// dropout, the same seed and shard count repeat the step exactly.
#[test]
fn sharded_steps_match_the_single_graph_step_and_repeat() {
    let (ds, ids) = common::world(40, 80, 6, 12, 16);
    let builder = RequestBuilder::new(&ds, &ids).unwrap();
    let reqs = builder.requests(&ds.train[..30]);
    let demos: Vec<Vec<usize>> = ds.train[..30].iter().map(|s| ds.demonstration(s)).collect();
    let train = Device::flex().autodiff();
    let step = |dropout: f64, shards: usize, seed: u64| {
        let config = builder.policy_config().with_arch(
            PolicyArch::default()
                .with_size(16, 2, 1)
                .with_dropout(dropout)
                .with_seed(5),
        );
        let policy = glorank_policy::Policy::new(&config, &train).unwrap();
        let mut optim = AdamWConfig::new().init();
        let (p, out) = glorank_nn::with_seeded_device(&train, seed, || {
            sft_step(
                policy,
                &mut optim,
                &reqs,
                &demos,
                None,
                (1e-2, None, shards),
                &train,
            )
        })
        .unwrap();
        let mut weights = Weights(Vec::new());
        p.visit(&mut weights);
        (out.loss, weights.0)
    };
    let (l1, w1) = step(0.0, 1, 0);
    let (l3, w3) = step(0.0, 3, 0);
    assert!((l1 - l3).abs() < 1e-4 * l1.abs(), "{l1} vs {l3}");
    let max_diff = w1
        .iter()
        .zip(&w3)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "weights differ by {max_diff}");
    // With dropout: the same seed repeats bit for bit, another seed differs.
    let a = step(0.3, 3, 7);
    assert_eq!(a, step(0.3, 3, 7));
    assert_ne!(a.0, step(0.3, 3, 8).0);
}

/// Softmax mass of each request's first-slot scores on its positive candidates, averaged.
fn first_slot_mass(
    policy: &glorank_policy::Policy,
    reqs: &[glorank_policy::Request],
    demos: &[Vec<usize>],
    labels: &[Vec<f64>],
    dev: &Device,
) -> f64 {
    let batch = policy.encode_inputs(reqs, dev).unwrap();
    let tries: Vec<_> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
    let (_, _, scores) = policy
        .log_probs_and_first_scores(&batch, &tries, demos)
        .unwrap();
    let n = scores.dims()[1];
    let probs: Vec<f32> = burn::tensor::activation::softmax(scores, 1)
        .into_data()
        .iter::<f32>()
        .collect();
    labels
        .iter()
        .enumerate()
        .map(|(r, l)| {
            l.iter()
                .enumerate()
                .filter(|&(_, &y)| y > 0.0)
                .map(|(c, _)| f64::from(probs[r * n + c]))
                .sum::<f64>()
        })
        .sum::<f64>()
        / labels.len() as f64
}

/// The label loss trains the first slot towards every positive candidate: the same steps
/// with it put more first-slot mass on the positives than without it. Labels of the wrong
/// shape and an output head without candidate scores are errors.
#[test]
fn the_label_loss_moves_the_first_slot_to_the_positives() {
    let (ds, ids) = common::world(60, 120, 6, 12, 16);
    let builder = RequestBuilder::new(&ds, &ids).unwrap();
    let reqs = builder.requests(&ds.train[..64]);
    let demos: Vec<Vec<usize>> = ds.train[..64].iter().map(|s| ds.demonstration(s)).collect();
    // Positives: the candidates the demonstration does not list first, so the label loss
    // asks for something the demonstrations' first slot does not.
    let labels: Vec<Vec<f64>> = ds.train[..64]
        .iter()
        .zip(&demos)
        .map(|(s, d)| {
            let mut l = vec![0.0; s.candidates.len()];
            for &c in &d[1..] {
                l[c] = 1.0;
            }
            l
        })
        .collect();
    let train = Device::flex().autodiff();
    let config = builder.policy_config().with_arch(
        PolicyArch::default()
            .with_size(16, 2, 1)
            .with_dropout(0.0)
            .with_seed(4),
    );
    let fit = |weight: Option<f32>| {
        let mut policy = glorank_policy::Policy::new(&config, &train).unwrap();
        let mut optim = AdamWConfig::new().init();
        for _ in 0..30 {
            let (p, _) = sft_step(
                policy,
                &mut optim,
                &reqs,
                &demos,
                weight.map(|w| (labels.as_slice(), w)),
                (1e-2, Some(1.0), 2),
                &train,
            )
            .unwrap();
            policy = p;
        }
        first_slot_mass(&policy.valid(), &reqs, &demos, &labels, &Device::flex())
    };
    let (without, with) = (fit(None), fit(Some(2.0)));
    // Measured: 0.24 without, 0.36 with (five of 20 candidates are positive; 0.48 at
    // weight 10).
    assert!(
        with > without + 0.05,
        "mass {without:.3} without, {with:.3} with"
    );

    let policy = glorank_policy::Policy::new(&config, &train).unwrap();
    let mut optim = AdamWConfig::new().init();
    let short = &labels[..3];
    let err = sft_step(
        policy,
        &mut optim,
        &reqs,
        &demos,
        Some((short, 1.0)),
        (1e-2, Some(1.0), 1),
        &train,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("3 label rows for 64 requests"),
        "{err}"
    );
    let mut global = config.clone();
    global.arch.output_head = glorank_policy::OutputHead::Global;
    let policy = glorank_policy::Policy::new(&global, &train).unwrap();
    let err = sft_step(
        policy,
        &mut optim,
        &reqs,
        &demos,
        Some((labels.as_slice(), 1.0)),
        (1e-2, Some(1.0), 1),
        &train,
    )
    .unwrap_err();
    assert!(err.to_string().contains("CandidateAware"), "{err}");
}
