//! Shared setup of the training tests: a prepared synthetic world and RQ-KMeans IDs.

use glorank_data::{
    DatasetSource, ItemVectorSource, NoProgress, PreparedDataset, ProtocolConfig, RetrieverConfig,
    SyntheticConfig, item_vectors,
};
use glorank_tokenizer::{ItemTokenizer, RqKMeans, RqKMeansConfig, SemanticIds};

/// A synthetic world of `users` x `items` with `sessions` logged slates per user, prepared
/// with a 5-core filter, slates of 6, histories of `history` and pools of 20; its items get
/// 2-level RQ-KMeans IDs with `codes` codes per level (seed 1).
#[allow(dead_code)]
pub fn world(
    users: usize,
    items: usize,
    sessions: usize,
    history: usize,
    codes: usize,
) -> (PreparedDataset, SemanticIds) {
    let ds = DatasetSource::Synthetic(SyntheticConfig::small(users, items).with_sessions(sessions))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(5)
                .with_shape(6, history, 20),
            &NoProgress,
        )
        .unwrap();
    let v = item_vectors(&ds, &ItemVectorSource::Concat { title_buckets: 8 }).unwrap();
    let ids = RqKMeans::new(RqKMeansConfig::new(2, codes).with_seed(1))
        .unwrap()
        .fit(&v.data, v.dim)
        .unwrap();
    (ds, ids)
}

/// A synthetic world of `users` x 200 items with 8 logged slates per user, 5-core filtered,
/// slates of 6, histories of 12 and pools of 20, and a deliberately weak 2-factor retriever.
/// With the default 32-factor retriever on a catalogue this small, the 14 retrieved
/// negatives are the items the user likes most, and nothing a small model learns from a few
/// thousand requests beats a random list on validation; with 2 factors the negatives are
/// easier, as in a real pool.
#[allow(dead_code)]
pub fn weak_retriever_world(users: usize) -> PreparedDataset {
    DatasetSource::Synthetic(SyntheticConfig::small(users, 200).with_sessions(8))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(5)
                .with_shape(6, 12, 20)
                .with_retriever(RetrieverConfig::default().with_factors(2)),
            &NoProgress,
        )
        .unwrap()
}
