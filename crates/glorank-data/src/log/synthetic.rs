//! A request log written by the synthetic world at any scale ([`write_synthetic_log`]):
//! time and memory linear in the requests (each request touches its pool, not the
//! catalog), written as Parquet parts as it is generated, with the world's configuration
//! beside it so runs on the log still score lists with the true click model.
//!
//! Each request: a user drawn uniformly; a pool of `pool_size` distinct items drawn
//! uniformly from the catalog, scored by a noisy retrieval stage (the true relevance logit
//! plus Gaussian noise); the shown list drawn from the pool by the world's behaviour
//! policy (Gumbel top-`slate_len` of `s(u, i) / temperature`); the behaviours drawn from
//! the world's list-wise click model; the user's history, the last `history` items they
//! clicked.

use super::catalog::CatalogSource;
use super::{LoggedRequest, write_request_log_parquet};
use crate::labels::{LabelThresholds, Labels};
use crate::progress::Progress;
use crate::rng::rng_for;
use crate::synthetic::draw_rating;
use crate::{DataError, RerankHistoryItem, RerankRequest, Result, SyntheticConfig, SyntheticWorld};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

/// The shape of a synthetic request log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SyntheticLogConfig {
    /// The world (users, items, click model, seed); its `slate_len` is the shown length.
    pub world: SyntheticConfig,
    /// Requests to write.
    pub requests: usize,
    /// Candidates per request (default 50).
    pub pool_size: usize,
    /// Clicked items kept as a user's history (default 20).
    pub history: usize,
    /// Standard deviation of the retrieval stage's noise on the relevance logit (default 1).
    pub retriever_noise: f64,
    /// Rows per Parquet part (default 1,000,000).
    pub part_rows: usize,
}

impl SyntheticLogConfig {
    /// `requests` requests from `world`, with the defaults.
    pub fn new(world: SyntheticConfig, requests: usize) -> Self {
        Self {
            world,
            requests,
            pool_size: 50,
            history: 20,
            retriever_noise: 1.0,
            part_rows: 1_000_000,
        }
    }

    /// Checks the shape before anything is generated.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let mut world = self.world.clone();
        world.sessions_per_user = 1;
        world.validate()?;
        if self.requests == 0 || self.part_rows == 0 {
            return Err(DataError::config(
                "requests",
                "requests and rows per part must be at least 1",
            ));
        }
        if self.pool_size < self.world.slate_len || self.pool_size > self.world.items {
            return Err(DataError::config(
                "pool_size",
                format!(
                    "{} candidates: at least the shown {} and at most the {} items",
                    self.pool_size, self.world.slate_len, self.world.items
                ),
            ));
        }
        if !self.retriever_noise.is_finite() || self.retriever_noise < 0.0 {
            return Err(DataError::config(
                "retriever_noise",
                "must be finite and non-negative",
            ));
        }
        Ok(())
    }
}

/// One request of the log: request `k`, its user's history updated after it.
fn request(
    world: &SyntheticWorld,
    config: &SyntheticLogConfig,
    k: usize,
    histories: &mut [VecDeque<u32>],
) -> LoggedRequest {
    let c = world.config();
    let mut rng = rng_for(c.seed, &[0x5359_4C47, k as u64]);
    let user = rng.random_range(0..c.users);
    // A uniform pool of distinct items (rejection: the pool is far smaller than the catalog
    // or the catalog is small enough for a few retries).
    let mut pool: Vec<usize> = Vec::with_capacity(config.pool_size);
    while pool.len() < config.pool_size {
        let i = rng.random_range(0..c.items);
        if !pool.contains(&i) {
            pool.push(i);
        }
    }
    let logits: Vec<f64> = pool
        .iter()
        .map(|&i| world.relevance_logit(user, i))
        .collect();
    let scores: Vec<f32> = logits
        .iter()
        .map(|s| {
            let z: f64 = StandardNormal.sample(&mut rng);
            (s + config.retriever_noise * z) as f32
        })
        .collect();
    // Gumbel-top-k over the pool: the behaviour policy's shown list.
    let mut keys: Vec<(f64, usize)> = logits
        .iter()
        .enumerate()
        .map(|(p, s)| {
            let u: f64 = rng.random::<f64>().max(1e-300);
            (s / c.behaviour_temperature - (-u.ln()).ln(), p)
        })
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let shown: Vec<usize> = keys[..c.slate_len].iter().map(|&(_, p)| pool[p]).collect();
    let probs = world.click_probabilities(user, &shown);
    let thresholds = LabelThresholds::default();
    let (mut click, mut like, mut star, mut rating) = (vec![], vec![], vec![], vec![]);
    let history = &mut histories[user];
    let past: Vec<RerankHistoryItem> = history
        .iter()
        .map(|&i| RerankHistoryItem {
            item: format!("i{i}"),
            labels: Labels::CLICK,
        })
        .collect();
    for (&i, &p) in shown.iter().zip(&probs) {
        let r = draw_rating(&mut rng, p, world.relevance_logit(user, i));
        let l = Labels::from_rating(r, &thresholds, false);
        click.push(f32::from(u8::from(l.click())));
        like.push(f32::from(u8::from(l.like())));
        star.push(f32::from(u8::from(l.star())));
        rating.push(r);
        if l.click() {
            if history.len() == config.history {
                history.pop_front();
            }
            history.push_back(i as u32);
        }
    }
    LoggedRequest {
        request_id: k.to_string(),
        timestamp: k as i64,
        request: RerankRequest {
            user: Some(format!("u{user}")),
            history: past,
            candidates: pool.iter().map(|i| format!("i{i}")).collect(),
            retriever_scores: Some(scores),
            ..RerankRequest::default()
        },
        shown: shown.iter().map(|i| format!("i{i}")).collect(),
        feedback: BTreeMap::from([
            ("click".to_string(), click),
            ("like".to_string(), like),
            ("star".to_string(), star),
            ("rating".to_string(), rating),
        ]),
    }
}

/// Writes a synthetic request log into the folder `out`: `part-00000.parquet`, ... of
/// [`SyntheticLogConfig::part_rows`] rows each (signals `click`, `like`, `star` and
/// `rating`), `items.jsonl` (categories, year, title), `users.jsonl` (attributes),
/// `vocabularies.json` and `synthetic.json` (the world). Time and memory grow with the
/// requests, not with users x items: one request's pool at a time, plus each user's last
/// `history` clicks. Deterministic in the world's seed. Returns the number of requests.
///
/// # Errors
/// An invalid configuration (named); file errors naming the file.
pub fn write_synthetic_log(
    config: &SyntheticLogConfig,
    out: &Path,
    progress: &dyn Progress,
) -> Result<usize> {
    config.validate()?;
    let mut world_config = config.world.clone();
    world_config.sessions_per_user = 1;
    let world = SyntheticWorld::new(&world_config)?;
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let mut histories = vec![VecDeque::new(); world_config.users];
    let signals: Vec<String> = ["click", "like", "star", "rating"]
        .map(String::from)
        .to_vec();
    progress.stage("writing the log", config.requests as u64);
    let mut k = 0;
    let mut part = 0;
    while k < config.requests {
        let end = (k + config.part_rows).min(config.requests);
        let rows = (k..end).map(|j| {
            progress.advance(1);
            request(&world, config, j, &mut histories)
        });
        let file = out.join(format!("part-{part:05}.parquet"));
        write_request_log_parquet(&file, rows, &signals)?;
        k = end;
        part += 1;
    }
    progress.finish();
    let user_ids: Vec<String> = (0..world_config.users).map(|u| format!("u{u}")).collect();
    let item_ids: Vec<String> = (0..world_config.items).map(|i| format!("i{i}")).collect();
    CatalogSource {
        item_ids: &item_ids,
        item_features: Some(world.item_features()),
        item_vector: &|_| None,
        user_ids: &user_ids,
        user_features: Some(world.user_features()),
        synthetic: Some(world.config()),
    }
    .write(out)?;
    Ok(config.requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogConfig, NoProgress, read_request_log};

    #[test]
    fn a_synthetic_log_is_valid_deterministic_and_split_into_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SyntheticLogConfig::new(SyntheticConfig::small(30, 80), 25);
        config.pool_size = 12;
        config.part_rows = 10;
        assert_eq!(
            write_synthetic_log(&config, dir.path(), &NoProgress).unwrap(),
            25
        );
        for f in [
            "part-00000.parquet",
            "part-00002.parquet",
            "items.jsonl",
            "synthetic.json",
        ] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        let log_config =
            LogConfig::default().with_signals(&["click", "like", "star", "rating"], "click");
        let log = read_request_log(dir.path(), &log_config).unwrap();
        assert_eq!(log.requests.len(), 25);
        let r = &log.requests[24];
        assert_eq!((r.request.candidates.len(), r.shown.len()), (12, 6));
        // Histories are earlier clicks of the same user.
        assert!(log.requests.iter().any(|r| !r.request.history.is_empty()));
        let again = tempfile::tempdir().unwrap();
        write_synthetic_log(&config, again.path(), &NoProgress).unwrap();
        assert_eq!(
            read_request_log(again.path(), &log_config)
                .unwrap()
                .requests,
            log.requests
        );
        config.pool_size = 3;
        assert!(write_synthetic_log(&config, again.path(), &NoProgress).is_err());
    }
}
