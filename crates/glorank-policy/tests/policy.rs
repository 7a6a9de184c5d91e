//! Policy tests: padding, teacher-forcing / incremental parity, candidate permutation,
//! validity of every decoding strategy, save/load and seeding, and one training step.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use glorank_policy::{
    ActionSpace, HistoryItem, ItemContent, ModelInputs, OutputHead, Policy, PolicyArch,
    PolicyConfig, Request, decode,
};
use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder};
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;

const VOCAB: [usize; 3] = [6, 5, 3];

fn config(space: ActionSpace) -> PolicyConfig {
    PolicyConfig::new(VOCAB.to_vec())
        .with_arch(
            PolicyArch::default()
                .with_size(32, 4, 2)
                .with_action_space(space)
                .with_tied_heads(space == ActionSpace::Global)
                .with_seed(11),
        )
        .with_shape(3, 8, 12)
        .with_user_fields(vec![2, 3])
}

/// Architecture edits on a whole configuration (without the local-index normalisation of
/// [`PolicyConfig::with_arch`], so invalid combinations stay testable).
trait EditArch {
    fn arch_with(self, edit: impl FnOnce(PolicyArch) -> PolicyArch) -> Self;
}

impl EditArch for PolicyConfig {
    fn arch_with(mut self, edit: impl FnOnce(PolicyArch) -> PolicyArch) -> Self {
        self.arch = edit(self.arch);
        self
    }
}

/// Every architecture the tests cover: the local-index ablation and the global policy with
/// each output head, with and without the chosen-item input.
fn variants() -> Vec<PolicyConfig> {
    let mut v = global_variants();
    v.push(config(ActionSpace::LocalIndex));
    v
}

/// The global policy with each output head, and with the chosen-item input on the global
/// and candidate-aware heads.
fn global_variants() -> Vec<PolicyConfig> {
    let mut v: Vec<PolicyConfig> = OutputHead::ALL
        .into_iter()
        .map(|h| config(ActionSpace::Global).arch_with(|a| a.with_output_head(h)))
        .collect();
    for h in [OutputHead::Global, OutputHead::CandidateAware] {
        v.push(
            config(ActionSpace::Global)
                .arch_with(|a| a.with_output_head(h))
                .arch_with(|a| a.with_chosen_item_input(true)),
        );
    }
    v
}

/// A random request with `n` distinct candidates and `h` history items.
fn request(rng: &mut ChaCha8Rng, n: usize, h: usize) -> Request {
    let mut set = BTreeSet::new();
    while set.len() < n {
        set.insert(
            VOCAB
                .iter()
                .map(|&v| rng.random_range(0..v as u32))
                .collect::<Vec<u32>>(),
        );
    }
    let mut candidates: Vec<Vec<u32>> = set.into_iter().collect();
    candidates.shuffle(rng);
    Request {
        user_features: vec![rng.random_range(0..2), rng.random_range(0..3)],
        history: (0..h)
            .map(|_| HistoryItem {
                tuple: VOCAB
                    .iter()
                    .map(|&v| rng.random_range(0..v as u32))
                    .collect(),
                labels: rng.random_range(0..8),
            })
            .collect(),
        retriever_scores: (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
        exposures: Vec::new(),
        candidates,
    }
}

fn log_prob(policy: &Policy, reqs: &[Request], lists: &[Vec<usize>], dev: &Device) -> Vec<f32> {
    let batch = policy.encode_inputs(reqs, dev).unwrap();
    let tries: Vec<CandidateTrie> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
    let (_, total) = policy.log_probs(&batch, &tries, lists).unwrap();
    total.into_data().iter::<f32>().collect()
}

fn token_log_probs(
    policy: &Policy,
    reqs: &[Request],
    lists: &[Vec<usize>],
    dev: &Device,
) -> Vec<Vec<f32>> {
    let batch = policy.encode_inputs(reqs, dev).unwrap();
    let tries: Vec<CandidateTrie> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
    let (tok, _) = policy.log_probs(&batch, &tries, lists).unwrap();
    let steps = policy.steps();
    let flat: Vec<f32> = tok.into_data().iter::<f32>().collect();
    flat.chunks(steps).map(<[f32]>::to_vec).collect()
}

#[test]
fn incremental_decoding_matches_teacher_forcing() {
    // Tolerance 1e-4 per token: both paths run the same modules in f32, differing only in
    // summation order (whole-sequence vs one-position matmuls).
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for cfg in variants() {
        let space = (cfg.arch.action_space, cfg.arch.output_head);
        let policy = Policy::new(&cfg, &dev).unwrap();
        let reqs: Vec<Request> = (0..5).map(|k| request(&mut rng, 6 + k, k * 2)).collect();
        for strategy in [
            DecodeStrategy::Greedy,
            DecodeStrategy::sample(),
            DecodeStrategy::Beam { width: 3 },
        ] {
            let mut decoder = Decoder::new(strategy, 3).unwrap();
            let out = decode(&policy, &reqs, &mut decoder, &dev).unwrap();
            for (r, lists) in out.iter().enumerate() {
                for list in lists {
                    let tf = token_log_probs(
                        &policy,
                        &reqs[r..r + 1],
                        std::slice::from_ref(&list.items),
                        &dev,
                    );
                    assert_eq!(tf[0].len(), list.token_logprobs.len());
                    for (a, b) in tf[0].iter().zip(&list.token_logprobs) {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{space:?} {strategy:?}: teacher {a} vs incremental {b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_decoded_list_is_valid() {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for cfg in variants() {
        let policy = Policy::new(&cfg, &dev).unwrap();
        let reqs: Vec<Request> = (0..4).map(|k| request(&mut rng, 3 + 2 * k, k)).collect();
        for strategy in [
            DecodeStrategy::Greedy,
            DecodeStrategy::sample(),
            DecodeStrategy::Beam { width: 4 },
        ] {
            let mut decoder = Decoder::new(strategy, 9).unwrap();
            for (r, lists) in decode(&policy, &reqs, &mut decoder, &dev)
                .unwrap()
                .iter()
                .enumerate()
            {
                for list in lists {
                    let set: BTreeSet<usize> = list.items.iter().copied().collect();
                    assert_eq!(set.len(), 3);
                    assert!(list.items.iter().all(|&c| c < reqs[r].candidates.len()));
                }
            }
        }
    }
}

#[test]
fn padding_does_not_change_real_outputs() {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let small = request(&mut rng, 5, 1);
    let big = request(&mut rng, 12, 8);
    let list = vec![vec![4, 0, 2]];
    for cfg in global_variants() {
        let policy = Policy::new(&cfg, &dev).unwrap();
        let alone = log_prob(&policy, std::slice::from_ref(&small), &list, &dev)[0];
        let padded = log_prob(
            &policy,
            &[small.clone(), big.clone()],
            &[list[0].clone(), vec![0, 1, 2]],
            &dev,
        )[0];
        let head = cfg.arch.output_head;
        assert!((alone - padded).abs() < 1e-4, "{head}: {alone} vs {padded}");
    }
    let policy = Policy::new(&config(ActionSpace::Global), &dev).unwrap();
    let batch = policy
        .encode_inputs(&[request(&mut rng, 7, 3)], &dev)
        .unwrap();
    assert_eq!(batch.memory.dims(), [1, 1 + 3 + 7, 32]);
}

#[test]
fn shuffling_candidates_keeps_the_global_decode() {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for cfg in global_variants().iter().cycle().take(6) {
        let policy = Policy::new(cfg, &dev).unwrap();
        let req = request(&mut rng, 10, 4);
        let mut perm: Vec<usize> = (0..10).collect();
        perm.shuffle(&mut rng);
        let mut shuffled = req.clone();
        shuffled.candidates = perm.iter().map(|&i| req.candidates[i].clone()).collect();
        shuffled.retriever_scores = perm.iter().map(|&i| req.retriever_scores[i]).collect();
        let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
        let a = &decode(&policy, std::slice::from_ref(&req), &mut greedy, &dev).unwrap()[0][0];
        let b = &decode(&policy, std::slice::from_ref(&shuffled), &mut greedy, &dev).unwrap()[0][0];
        let items_a: Vec<&Vec<u32>> = a.items.iter().map(|&c| &req.candidates[c]).collect();
        let items_b: Vec<&Vec<u32>> = b.items.iter().map(|&c| &shuffled.candidates[c]).collect();
        assert_eq!(items_a, items_b);
        assert!((a.logprob - b.logprob).abs() < 1e-4);
    }
}

#[test]
fn save_load_and_seeding() {
    let dev = Device::flex();
    let cfg = config(ActionSpace::Global);
    let policy = Policy::new(&cfg, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let reqs = vec![request(&mut rng, 8, 3), request(&mut rng, 6, 0)];
    let lists = vec![vec![1, 2, 3], vec![5, 0, 4]];
    let before = log_prob(&policy, &reqs, &lists, &dev);
    let dir = tempfile::tempdir().unwrap();
    policy.save(&cfg, dir.path()).unwrap();
    let (loaded, loaded_cfg) = Policy::load(dir.path(), &dev).unwrap();
    assert_eq!(loaded_cfg, cfg);
    assert_eq!(log_prob(&loaded, &reqs, &lists, &dev), before);
    // Same seed, same weights; another seed, other weights.
    let again = Policy::new(&cfg, &dev).unwrap();
    assert_eq!(log_prob(&again, &reqs, &lists, &dev), before);
    let other = Policy::new(&cfg.clone().arch_with(|a| a.with_seed(12)), &dev).unwrap();
    assert_ne!(log_prob(&other, &reqs, &lists, &dev), before);
    // A config that does not match the weights is a clear error.
    let mut wrong = cfg.clone();
    wrong.arch.d_model = 64;
    std::fs::write(
        dir.path().join("policy.json"),
        serde_json::to_vec(&wrong).unwrap(),
    )
    .unwrap();
    // The checksum list catches the edit first, naming the file ...
    let err = Policy::load(dir.path(), &dev).err().unwrap();
    assert!(err.to_string().contains("policy.json"), "{err}");
    // ... and without the list the weights' shapes still do.
    std::fs::remove_file(dir.path().join("checksums.json")).unwrap();
    let err = Policy::load(dir.path(), &dev).err().unwrap();
    assert!(err.to_string().contains("policy.bpk"), "{err}");
    assert!(policy.summary().contains("parameters"));
}

#[test]
fn bad_requests_are_errors() {
    let dev = Device::flex();
    let policy = Policy::new(&config(ActionSpace::Global), &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut r = request(&mut rng, 5, 1);
    r.user_features = vec![5, 0];
    assert!(policy.encode_inputs(&[r], &dev).is_err());
    let mut r = request(&mut rng, 5, 1);
    r.candidates[0] = vec![9, 0, 0];
    assert!(policy.encode_inputs(&[r.clone()], &dev).is_err());
    assert!(policy.trie(&r).is_err());
    let r = request(&mut rng, 13, 1);
    assert!(policy.encode_inputs(&[r], &dev).is_err());
    assert!(
        Policy::new(
            &config(ActionSpace::Global).arch_with(|a| a.with_size(30, 4, 1)),
            &dev
        )
        .is_err()
    );
    let huge = config(ActionSpace::Global)
        .arch_with(|a| a.with_item_buckets(glorank_policy::MAX_ITEM_BUCKETS + 1));
    let err = Policy::new(&huge, &dev).unwrap_err().to_string();
    assert!(err.contains("item_buckets"), "{err}");
}

#[test]
fn a_training_step_raises_the_target_log_prob() {
    for head in OutputHead::ALL {
        training_raises_the_target_log_prob(head);
    }
}

fn training_raises_the_target_log_prob(head: OutputHead) {
    let train = Device::flex().autodiff();
    let cfg = config(ActionSpace::Global)
        .arch_with(|a| a.with_dropout(0.0))
        .arch_with(|a| a.with_output_head(head));
    let mut policy = Policy::new(&cfg, &train).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let reqs: Vec<Request> = (0..4).map(|_| request(&mut rng, 8, 2)).collect();
    let lists: Vec<Vec<usize>> = (0..4).map(|_| vec![0, 1, 2]).collect();
    let tries: Vec<CandidateTrie> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
    let mut optim = AdamConfig::new().init();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..10 {
        let batch = policy.encode_inputs(&reqs, &train).unwrap();
        let (_, total) = policy.log_probs(&batch, &tries, &lists).unwrap();
        let loss = total.mean().neg();
        last = loss.clone().into_scalar::<f32>();
        first.get_or_insert(last);
        let grads = GradientsParams::from_grads(loss.backward(), &policy);
        policy = optim.step(1e-2, policy, grads);
    }
    assert!(
        last < first.unwrap() * 0.5,
        "{head}: NLL {} -> {last}",
        first.unwrap()
    );
    assert!(policy.valid().parameter_count() > 0);
    assert_eq!(policy.output_head(), head);
}

#[test]
fn output_heads_parse_save_and_refuse_the_local_index_space() {
    for head in OutputHead::ALL {
        assert_eq!(head.name().parse::<OutputHead>().unwrap(), head);
        let json = serde_json::to_string(&head).unwrap();
        assert_eq!(serde_json::from_str::<OutputHead>(&json).unwrap(), head);
    }
    assert!("candidate".parse::<OutputHead>().is_err());
    // A configuration saved in the earlier flat layout, before the output-head option,
    // reads as the global head with its architecture and inputs in their sections.
    let flat = serde_json::json!({
        "vocab_sizes": VOCAB, "user_field_sizes": [2, 3], "d_model": 32, "heads": 4,
        "encoder_layers": 2, "decoder_layers": 2, "d_ff": 128, "dropout": 0.1,
        "max_history": 8, "max_candidates": 12, "list_len": 3, "action_space": "Global",
        "use_retriever_score": true, "seed": 11
    });
    let old = PolicyConfig::from_saved(flat.clone()).unwrap();
    assert_eq!(old.arch.output_head, OutputHead::Global);
    assert_eq!(
        (old.arch.d_model, old.arch.layers, old.arch.seed),
        (32, 2, 11)
    );
    assert!(old.inputs.retriever_score && old.content.is_none());
    let mut uneven = flat;
    uneven["decoder_layers"] = 1.into();
    let err = PolicyConfig::from_saved(uneven).unwrap_err().to_string();
    assert!(err.contains("decoder_layers"), "{err}");
    let err = Policy::new(
        &config(ActionSpace::LocalIndex).arch_with(|a| a.with_output_head(OutputHead::Pointer)),
        &Device::flex(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("output_head"), "{err}");
    // Saving and loading keeps the head and the weights.
    let dev = Device::flex();
    let cfg =
        config(ActionSpace::Global).arch_with(|a| a.with_output_head(OutputHead::CandidateAware));
    let policy = Policy::new(&cfg, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let reqs = vec![request(&mut rng, 8, 3)];
    let lists = vec![vec![1, 2, 3]];
    let dir = tempfile::tempdir().unwrap();
    policy.save(&cfg, dir.path()).unwrap();
    let (loaded, loaded_cfg) = Policy::load(dir.path(), &dev).unwrap();
    assert_eq!(loaded_cfg.arch.output_head, OutputHead::CandidateAware);
    assert_eq!(
        log_prob(&loaded, &reqs, &lists, &dev),
        log_prob(&policy, &reqs, &lists, &dev)
    );
}

/// Sets every float weight to zero.
struct Zero;

impl burn::module::ModuleMapper for Zero {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<D>> {
        param.map(|t| t.zeros_like())
    }
}

#[test]
fn the_pointer_head_is_an_item_softmax_whatever_the_tokens() {
    // With every weight zero, each score is 0. The global head then splits mass evenly per
    // token, level by level, while a head that reads the candidates sums the (equal) item
    // scores under each token: an item softmax, uniform over the remaining pool, whatever
    // prefixes the items share. Candidates 0..4 share first token 0; candidate 5 alone has 1.
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let mut req = request(&mut rng, 6, 2);
    req.candidates = (0..5)
        .map(|k| vec![0, k, 0])
        .chain([vec![1, 0, 0]])
        .collect();
    req.retriever_scores = vec![0.0; 6];
    let uniform = |n: usize| (n as f32).recip().ln();
    for head in OutputHead::ALL {
        let mut cfg = config(ActionSpace::Global).arch_with(|a| a.with_output_head(head));
        cfg.arch.tie_heads = false;
        let policy = Policy::new(&cfg, &dev).unwrap().map(&mut Zero);
        let first =
            glorank_policy::first_item_logprobs(&policy, std::slice::from_ref(&req), &dev).unwrap();
        let lone = if head == OutputHead::Global {
            0.5f32.ln()
        } else {
            uniform(6)
        };
        assert!((first[0][5] - lone).abs() < 1e-5, "{head}: {}", first[0][5]);
        if head != OutputHead::Global {
            // A whole list: 1/6 x 1/5 x 1/4, through teacher forcing.
            let lp = log_prob(&policy, std::slice::from_ref(&req), &[vec![5, 0, 3]], &dev)[0];
            let want = uniform(6) + uniform(5) + uniform(4);
            assert!((lp - want).abs() < 1e-4, "{head}: {lp} vs {want}");
        }
    }
}

#[test]
fn only_the_local_index_policy_sees_candidate_positions() {
    // Ten candidates with the same semantic ID: a set encoder gives them identical encodings,
    // while the local-index ablation must tell the positions its head points at apart.
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut req = request(&mut rng, 10, 3);
    req.candidates = vec![req.candidates[0].clone(); 10];
    req.retriever_scores = vec![0.5; 10];
    for (space, distinct) in [
        (ActionSpace::Global, false),
        (ActionSpace::LocalIndex, true),
    ] {
        let policy = Policy::new(&config(space), &dev).unwrap();
        let batch = policy
            .encode_inputs(std::slice::from_ref(&req), &dev)
            .unwrap();
        let [_, s, d] = batch.memory.dims();
        let rows: Vec<f32> = batch
            .memory
            .slice([0..1, s - 10..s, 0..d])
            .into_data()
            .iter::<f32>()
            .collect();
        let spread = (1..10)
            .map(|c| {
                (0..d)
                    .map(|k| (rows[c * d + k] - rows[k]).abs())
                    .fold(0f32, f32::max)
            })
            .fold(0f32, f32::max);
        assert_eq!(spread > 1e-3, distinct, "{space:?}: spread {spread}");
    }
}

#[test]
fn action_spaces_parse_by_name_and_old_files_still_read() {
    assert_eq!(
        "local-index".parse::<ActionSpace>().unwrap(),
        ActionSpace::LocalIndex
    );
    assert_eq!(
        "global".parse::<ActionSpace>().unwrap(),
        ActionSpace::Global
    );
    assert_eq!(ActionSpace::LocalIndex.to_string(), "local-index");
    assert!("pointer".parse::<ActionSpace>().is_err());
    // Saved policy files spell the variant; configuration files may use the name.
    let saved: ActionSpace = serde_json::from_str("\"LocalIndex\"").unwrap();
    let named: ActionSpace = serde_json::from_str("\"local-index\"").unwrap();
    assert_eq!(saved, named);
}

#[test]
fn first_item_logprobs_match_teacher_forcing_of_lists_that_start_with_the_item() {
    // log p(c first) = the first slot's token log-probs of any list starting with c.
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for cfg in variants() {
        let space = (cfg.arch.action_space, cfg.arch.output_head);
        let policy = Policy::new(&cfg, &dev).unwrap();
        let reqs: Vec<Request> = (0..3).map(|k| request(&mut rng, 5 + k, k)).collect();
        let got = glorank_policy::first_item_logprobs(&policy, &reqs, &dev).unwrap();
        let depth = policy.steps() / policy.list_len();
        for (r, req) in reqs.iter().enumerate() {
            let n = req.candidates.len();
            assert_eq!(got[r].len(), n);
            let mass: f32 = got[r].iter().map(|x| x.exp()).sum();
            assert!((mass - 1.0).abs() < 1e-4, "{space:?}: mass {mass}");
            for (c, &lp) in got[r].iter().enumerate() {
                let list: Vec<usize> = std::iter::once(c)
                    .chain((0..n).filter(|&o| o != c))
                    .take(policy.list_len())
                    .collect();
                let tf = token_log_probs(&policy, &reqs[r..r + 1], &[list], &dev);
                let want: f32 = tf[0][..depth].iter().sum();
                assert!((lp - want).abs() < 1e-4, "{space:?} {c}: {lp} vs {want}");
            }
        }
    }
}

/// The chosen-item input adds no weights and changes nothing before the second slot; from
/// there on the decoder reads the chosen candidate's encoder output, so the same weights
/// give other token log-probabilities.
#[test]
fn the_chosen_item_input_changes_only_later_slots() {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let reqs: Vec<Request> = (0..3).map(|k| request(&mut rng, 8 + k, k)).collect();
    let plain_cfg =
        config(ActionSpace::Global).arch_with(|a| a.with_output_head(OutputHead::CandidateAware));
    let plain = Policy::new(&plain_cfg, &dev).unwrap();
    let chosen = Policy::new(
        &plain_cfg
            .clone()
            .arch_with(|a| a.with_chosen_item_input(true)),
        &dev,
    )
    .unwrap();
    assert_eq!(plain.parameter_count(), chosen.parameter_count());
    let lists: Vec<Vec<usize>> = reqs
        .iter()
        .map(|r| {
            (0..plain.list_len())
                .map(|i| (i * 3) % r.candidates.len())
                .collect()
        })
        .collect();
    let a = token_log_probs(&plain, &reqs, &lists, &dev);
    let b = token_log_probs(&chosen, &reqs, &lists, &dev);
    let depth = plain.depth();
    for (x, y) in a.iter().zip(&b) {
        for t in 0..depth {
            assert!(
                (x[t] - y[t]).abs() < 1e-6,
                "slot 0, step {t}: {} vs {}",
                x[t],
                y[t]
            );
        }
        let later = x[depth..]
            .iter()
            .zip(&y[depth..])
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(later > 1e-3, "later slots unchanged: {later}");
    }
    // The local-index ablation refuses it.
    let err = Policy::new(
        &config(ActionSpace::LocalIndex).arch_with(|a| a.with_chosen_item_input(true)),
        &dev,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("chosen_item_input"), "{err}");
}

/// A content table over every tuple of `reqs`' candidates but the first request's first,
/// with 4-wide vectors drawn from `rng`.
fn content_of(reqs: &[Request], rng: &mut ChaCha8Rng) -> ItemContent {
    let tuples: Vec<Vec<u32>> = reqs
        .iter()
        .flat_map(|r| r.candidates.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|t| *t != reqs[0].candidates[0])
        .collect();
    let vectors = (0..tuples.len() * 4)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    ItemContent {
        dim: 4,
        tuples,
        vectors,
    }
}

/// Item content reaches the candidates by semantic ID: a candidate the table lacks reads
/// zeros (the same scores as a zero vector), another vector moves its score, a saved policy
/// keeps the table, and a malformed table is refused.
#[test]
fn item_content_is_looked_up_by_semantic_id() {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let reqs: Vec<Request> = (0..3).map(|k| request(&mut rng, 7 + k, k)).collect();
    let content = content_of(&reqs, &mut rng);
    let mut cfg =
        config(ActionSpace::Global).arch_with(|a| a.with_output_head(OutputHead::CandidateAware));
    cfg = cfg.with_content(content.clone());
    let policy = Policy::new(&cfg, &dev).unwrap();
    let scores = |p: &Policy| glorank_policy::first_item_logprobs(p, &reqs, &dev).unwrap();
    let base = scores(&policy);
    // The missing tuple reads zeros: adding it with a zero vector changes nothing.
    let mut with_zero = content.clone();
    with_zero.tuples.push(reqs[0].candidates[0].clone());
    with_zero.vectors.extend([0.0; 4]);
    let mut cfg_zero = cfg.clone();
    cfg_zero.content = Some(with_zero.clone());
    let zero = scores(&Policy::new(&cfg_zero, &dev).unwrap());
    for (a, b) in base.iter().flatten().zip(zero.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // A non-zero vector for it moves that candidate's score.
    let mut moved = with_zero;
    let last = moved.vectors.len() - 4;
    moved.vectors[last..].copy_from_slice(&[2.0, -2.0, 1.5, -1.5]);
    let mut cfg_moved = cfg.clone();
    cfg_moved.content = Some(moved);
    let other = scores(&Policy::new(&cfg_moved, &dev).unwrap());
    assert!((other[0][0] - base[0][0]).abs() > 1e-4);
    // Saved and loaded with the table.
    let dir = tempfile::tempdir().unwrap();
    policy.save(&cfg, dir.path()).unwrap();
    let (loaded, loaded_cfg) = Policy::load(dir.path(), &dev).unwrap();
    assert_eq!(loaded_cfg.content, Some(content.clone()));
    assert_eq!(scores(&loaded), base);
    // The host path agrees with burn's.
    let host = glorank_policy::HostPolicy::new(&policy);
    for (a, b) in base
        .iter()
        .flatten()
        .zip(host.first_item_logprobs(&reqs).unwrap().iter().flatten())
    {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // Malformed tables.
    for (edit, why) in [
        (
            Box::new(|c: &mut ItemContent| c.vectors.pop().map(drop).unwrap_or(()))
                as Box<dyn Fn(&mut ItemContent)>,
            "vector values",
        ),
        (
            Box::new(|c: &mut ItemContent| c.vectors[0] = f32::NAN),
            "finite",
        ),
        (
            Box::new(|c: &mut ItemContent| c.tuples[0].push(0)),
            "one token per level",
        ),
    ] {
        let mut bad = content.clone();
        edit(&mut bad);
        let mut c = cfg.clone();
        c.content = Some(bad);
        let err = Policy::new(&c, &dev).unwrap_err().to_string();
        assert!(err.contains("content") && err.contains(why), "{err}");
    }
}

#[test]
fn first_slot_scores_give_the_first_token_distribution() {
    // At the first step every candidate is eligible, so the level-0 token's probability is
    // the softmax mass of the first-slot scores over the candidates under that token; the
    // padded positions of the shorter pools carry no mass.
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    // The local-index ablation's tokens are the candidates themselves.
    for cfg in [
        config(ActionSpace::Global).arch_with(|a| a.with_output_head(OutputHead::CandidateAware)),
        config(ActionSpace::Global).arch_with(|a| a.with_output_head(OutputHead::Pointer)),
        config(ActionSpace::LocalIndex),
    ] {
        let head = (cfg.arch.action_space, cfg.arch.output_head);
        let local = cfg.arch.action_space == ActionSpace::LocalIndex;
        let policy = Policy::new(&cfg, &dev).unwrap();
        let reqs: Vec<Request> = (0..4).map(|k| request(&mut rng, 5 + 2 * k, k)).collect();
        let lists: Vec<Vec<usize>> = reqs
            .iter()
            .map(|r| {
                let mut p: Vec<usize> = (0..r.candidates.len()).collect();
                p.shuffle(&mut rng);
                p.truncate(3);
                p
            })
            .collect();
        let batch = policy.encode_inputs(&reqs, &dev).unwrap();
        let tries: Vec<CandidateTrie> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
        let (tok, total, scores) = policy
            .log_probs_and_first_scores(&batch, &tries, &lists)
            .unwrap();
        let (plain_tok, plain_total) = policy.log_probs(&batch, &tries, &lists).unwrap();
        tok.into_data()
            .assert_approx_eq::<f32>(&plain_tok.into_data(), Default::default());
        total
            .into_data()
            .assert_approx_eq::<f32>(&plain_total.into_data(), Default::default());
        let n = scores.dims()[1];
        assert_eq!(scores.dims(), [reqs.len(), 11]);
        let scores: Vec<f32> = scores.into_data().iter::<f32>().collect();
        let tok = token_log_probs(&policy, &reqs, &lists, &dev);
        for (r, req) in reqs.iter().enumerate() {
            let row = &scores[r * n..(r + 1) * n];
            let pool = req.candidates.len();
            let max = row[..pool].iter().copied().fold(f32::MIN, f32::max);
            let z: f32 = row[..pool].iter().map(|s| (s - max).exp()).sum();
            let first = req.candidates[lists[r][0]][0];
            let mass: f32 = (0..pool)
                .filter(|&c| {
                    if local {
                        c == lists[r][0]
                    } else {
                        req.candidates[c][0] == first
                    }
                })
                .map(|c| (row[c] - max).exp())
                .sum();
            let expected = (mass / z).ln();
            assert!(
                (expected - tok[r][0]).abs() < 1e-4,
                "{head:?} request {r}: first token {} vs scores {expected}",
                tok[r][0]
            );
            assert!(row[pool..].iter().all(|&s| s <= -1e8), "{head:?}: padding");
        }
    }
    let global = Policy::new(
        &config(ActionSpace::Global).arch_with(|a| a.with_output_head(OutputHead::Global)),
        &dev,
    )
    .unwrap();
    let req = request(&mut rng, 4, 1);
    let batch = global
        .encode_inputs(std::slice::from_ref(&req), &dev)
        .unwrap();
    let trie = global.trie(&req).unwrap();
    let err = global
        .log_probs_and_first_scores(&batch, &[trie], &[vec![0, 1, 2]])
        .unwrap_err();
    assert!(err.to_string().contains("CandidateAware"), "{err}");
}

/// With `user_lr_scale` the user table starts at zero, so at first the user's attributes
/// change nothing; after training they do, and a saved policy reads its table scaled again.
#[test]
fn a_scaled_user_table_starts_silent_and_is_saved_with_its_scale() {
    let train = Device::flex().autodiff();
    let dev = Device::flex();
    let cfg = config(ActionSpace::Global)
        .arch_with(|a| a.with_dropout(0.0))
        .with_inputs(ModelInputs::default().with_user_lr_scale(10.0));
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let a = request(&mut rng, 8, 2);
    let mut b = a.clone();
    b.user_features = vec![1 - a.user_features[0], (a.user_features[1] + 1) % 3];
    let lists = vec![vec![0, 1, 2]];
    let for_user = |p: &Policy, r: &Request| log_prob(p, std::slice::from_ref(r), &lists, &dev)[0];
    let mut policy = Policy::new(&cfg, &train).unwrap();
    assert_eq!(for_user(&policy.valid(), &a), for_user(&policy.valid(), &b));
    let unscaled = Policy::new(&config(ActionSpace::Global), &dev).unwrap();
    assert_ne!(for_user(&unscaled, &a), for_user(&unscaled, &b));

    let tries = vec![policy.trie(&a).unwrap()];
    let mut optim = AdamConfig::new().init();
    for _ in 0..3 {
        let batch = policy
            .encode_inputs(std::slice::from_ref(&a), &train)
            .unwrap();
        let (_, total) = policy.log_probs(&batch, &tries, &lists).unwrap();
        let grads = GradientsParams::from_grads(total.mean().neg().backward(), &policy);
        policy = optim.step(1e-3, policy, grads);
    }
    let trained = policy.valid();
    let (pa, pb) = (for_user(&trained, &a), for_user(&trained, &b));
    assert!(
        pa > pb,
        "the trained user's list: {pa} against {pb} for another user"
    );

    let dir = tempfile::tempdir().unwrap();
    trained.save(&cfg, dir.path()).unwrap();
    let (loaded, loaded_cfg) = Policy::load(dir.path(), &dev).unwrap();
    assert_eq!(loaded_cfg.inputs.user_lr_scale, 10.0);
    assert_eq!(for_user(&loaded, &a), pa);
    assert_eq!(for_user(&loaded, &b), pb);
    for bad in [-1.0, f32::NAN, 1e6] {
        let err = Policy::new(
            &config(ActionSpace::Global)
                .with_inputs(ModelInputs::default().with_user_lr_scale(bad)),
            &dev,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("user_lr_scale"), "{bad}: {err}");
    }
}

/// With `use_exposures` the policy reads each candidate's exposure count after the retriever
/// features: the counts change its scores, saved policies keep the option, a wrongly sized
/// list is an error, and a policy without the option ignores them.
#[test]
fn exposure_counts_are_read_only_by_a_policy_trained_with_them() {
    let dev = Device::flex();
    let mut cfg = config(ActionSpace::Global);
    cfg.inputs.retriever_score = true;
    cfg.inputs.exposures = true;
    let policy = Policy::new(&cfg, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let plain = request(&mut rng, 8, 3);
    let mut seen = plain.clone();
    seen.exposures = (0..8).map(|c| c * 3).collect();
    let lists = vec![vec![1, 2, 3]];
    let without = log_prob(&policy, std::slice::from_ref(&plain), &lists, &dev);
    let with = log_prob(&policy, std::slice::from_ref(&seen), &lists, &dev);
    assert_ne!(with, without);
    // All-zero counts read as no counts (ln(1 + 0) = 0).
    let mut zeros = plain.clone();
    zeros.exposures = vec![0; 8];
    assert_eq!(log_prob(&policy, &[zeros], &lists, &dev), without);
    let dir = tempfile::tempdir().unwrap();
    policy.save(&cfg, dir.path()).unwrap();
    let (loaded, loaded_cfg) = Policy::load(dir.path(), &dev).unwrap();
    assert!(loaded_cfg.inputs.exposures);
    assert_eq!(
        log_prob(&loaded, std::slice::from_ref(&seen), &lists, &dev),
        with
    );
    let mut short = seen.clone();
    short.exposures.pop();
    let err = policy
        .encode_inputs(&[short], &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exposures"), "{err}");
    // Without the option the counts are not read.
    cfg.inputs.exposures = false;
    let blind = Policy::new(&cfg, &dev).unwrap();
    assert_eq!(
        log_prob(&blind, &[seen], &lists, &dev),
        log_prob(&blind, &[plain], &lists, &dev)
    );
}
