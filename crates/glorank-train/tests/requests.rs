//! Requests built from a prepared synthetic dataset and RQ-KMeans IDs feed the policy.

use burn::tensor::Device;
use glorank_policy::{Policy, PolicyArch, decode};
use glorank_train::RequestBuilder;
use glorank_trie::{DecodeStrategy, Decoder};

mod common;

#[test]
fn requests_from_a_prepared_dataset_decode_through_the_policy() {
    let (ds, ids) = common::world(40, 150, 4, 10, 8);
    let builder = RequestBuilder::new(&ds, &ids).unwrap();
    let reqs = builder.requests(&ds.test[..5]);
    for (s, r) in ds.test.iter().zip(&reqs) {
        assert_eq!(r.candidates.len(), 20);
        assert_eq!(r.history.len(), ds.history(s).items.len());
        for (&item, t) in s.candidates.iter().zip(&r.candidates) {
            assert_eq!(ids.item(t), Some(item as usize));
        }
        assert_eq!(r.user_features.len(), builder.user_field_sizes().len());
    }
    let config = builder
        .policy_config()
        .with_arch(PolicyArch::default().with_size(16, 2, 1));
    let device = Device::flex();
    let policy = Policy::new(&config, &device).unwrap();
    let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
    let lists = decode(&policy, &reqs, &mut greedy, &device).unwrap();
    assert!(lists.iter().all(|l| l[0].items.len() == 6));

    // A table for another dataset is rejected.
    let (other, _) =
        glorank_tokenizer::SemanticIds::from_codes(vec![vec![0, 0]], &[8, 8], 4).unwrap();
    assert!(RequestBuilder::new(&ds, &other).is_err());
}
