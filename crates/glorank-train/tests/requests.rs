//! Requests built from a prepared synthetic dataset and RQ-KMeans IDs feed the policy.

use burn::tensor::Device;
use glorank_data::{
    DatasetSource, ItemVectorSource, NoProgress, ProtocolConfig, SyntheticConfig, item_vectors,
};
use glorank_policy::{Policy, decode};
use glorank_tokenizer::{ItemTokenizer, RqKMeans, RqKMeansConfig};
use glorank_train::RequestBuilder;
use glorank_trie::{DecodeStrategy, Decoder};

#[test]
fn requests_from_a_prepared_dataset_decode_through_the_policy() {
    let ds = DatasetSource::Synthetic(SyntheticConfig::small(40, 150).with_sessions(4))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(5)
                .with_shape(6, 10, 20),
            &NoProgress,
        )
        .unwrap();
    let v = item_vectors(&ds, &ItemVectorSource::Concat { title_buckets: 8 }).unwrap();
    let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 8).with_seed(1)).unwrap();
    let ids = tok.fit(&v.data, v.dim).unwrap();
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
    let config = builder.policy_config().with_size(16, 2, 1);
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
