//! The synthetic world: the embedded default dataset (no download, no licence issue).
//!
//! A seeded generative model of users, items and a list-wise click model:
//!
//! * `G` genres, each with a latent centroid `c_g ~ N(0, I_d)`.
//! * Item `i`: one to three genres (popular genres more often), a release year, a title of
//!   genre-specific and generic words, a latent vector
//!   `v_i = w * mean(c_g, g in genres(i)) + sqrt(1 - w^2) * e_i`, `e_i ~ N(0, I_d)` (content
//!   weight `w` makes the latent factors correlated with the content), and a quality bias
//!   `b_i ~ N(0, quality_std^2)`.
//! * User `u`: one or two favourite genres and `x_u` built the same way.
//! * Relevance logit `s(u, i) = base_logit + relevance_scale * <x_u, v_i> / sqrt(d) + b_i`.
//! * Click model of a list `(i_1, ..., i_L)`: relevance, a position bias, and a penalty for
//!   items similar to ones shown above them,
//!   `P(click at slot k) = sigmoid(s(u, i_k) - position_decay * (k - 1) - diversity_penalty * r_k)`
//!   with redundancy `r_k = max_{j<k} max(0, cos(v_{i_k}, v_{i_j}))`.
//! * Logged data: every user sees `sessions_per_user` slates of `slate_len` items chosen by a
//!   noisy behaviour policy (sampling without replacement from `softmax(s / temperature)`,
//!   never re-showing an item), and clicks drawn from the click model. A clicked item gets
//!   rating 3, plus 1 for a like (`P = sigmoid(s - 0.5)`), plus 1 more for a star
//!   (`P = sigmoid(s - 2)`, given a like); a skipped one gets 1 or 2. With the default label
//!   thresholds (click >= 3, like >= 4, star 5) the labels are exactly the simulated
//!   behaviours.
//!
//! * Pool feedback ([`SyntheticConfig::pool_feedback`], off by default, on in the demo
//!   presets): every candidate of a prepared request, logged or retrieved, is relabelled with
//!   one draw of its behaviours as if shown alone in the first slot
//!   ([`PreparedDataset::label_pools`](crate::PreparedDataset::label_pools)), so that the labels measure what the click model
//!   rewards instead of what the behaviour policy happened to show.
//!
//! [`SyntheticWorld::click_probabilities`] exposes the true click model, so later stages can
//! compute an oracle reward.

use crate::raw::{CategoricalField, Interaction, ItemFeatures, RawDataset, UserFeatures};
use crate::rng::rng_for;
use crate::{DataError, Result};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of the synthetic world. Every field is documented with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SyntheticConfig {
    /// Users (default 2,000).
    pub users: usize,
    /// Items (default 1,000).
    pub items: usize,
    /// Genres (default 12).
    pub genres: usize,
    /// Latent dimension `d` (default 16).
    pub latent_dim: usize,
    /// Logged slates per user (default 10).
    pub sessions_per_user: usize,
    /// Items per logged slate (default 6).
    pub slate_len: usize,
    /// Weight `w` in [0, 1] of the genre centroid in the latent vectors (default 0.8).
    pub content_weight: f64,
    /// Standard deviation of the item quality bias (default 0.5).
    pub quality_std: f64,
    /// Intercept of the relevance logit (default -2.0).
    pub base_logit: f64,
    /// Scale of the user-item affinity in the logit (default 1.5).
    pub relevance_scale: f64,
    /// Logit decrease per slot down the list (default 0.15).
    pub position_decay: f64,
    /// Logit penalty times the highest cosine similarity to an item above (default 1.0).
    pub diversity_penalty: f64,
    /// Softmax temperature of the behaviour policy; higher is noisier (default 1.5).
    pub behaviour_temperature: f64,
    /// Seed of everything (default 7).
    pub seed: u64,
    /// Give every candidate of every request feedback from the true click model (default
    /// false). Off, a request's labels are the logged slate's feedback and the retrieved
    /// candidates, never shown, are labelled 0, although the retriever's top unseen items
    /// are as clickable as the shown ones (`docs/notebook/2026-11-30-the-synthetic-world-why-its-labels-contradict-its-truth-meas.md`, "The synthetic world: why
    /// its labels contradict its truth"). On, each candidate, logged or not, gets the
    /// behaviours of one draw as if it were shown alone in the first slot
    /// ([`SyntheticWorld::pool_ratings`]), so the labels are unbiased draws of each item's
    /// appeal to the user. It changes the labels only, not the world or its click model, and
    /// is not stored in a prepared dataset's copy of this configuration (its labels are).
    #[serde(skip)]
    pub pool_feedback: bool,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            users: 2000,
            items: 1000,
            genres: 12,
            latent_dim: 16,
            sessions_per_user: 10,
            slate_len: 6,
            content_weight: 0.8,
            quality_std: 0.5,
            base_logit: -2.0,
            relevance_scale: 1.5,
            position_decay: 0.15,
            diversity_penalty: 1.0,
            behaviour_temperature: 1.5,
            seed: 7,
            pool_feedback: false,
        }
    }
}

impl SyntheticConfig {
    /// A small world for tests and quick demos: `users` x `items`, other fields default.
    pub fn small(users: usize, items: usize) -> Self {
        Self {
            users,
            items,
            ..Self::default()
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the number of logged slates per user.
    pub fn with_sessions(mut self, sessions: usize) -> Self {
        self.sessions_per_user = sessions;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("synthetic.users", self.users),
            ("synthetic.items", self.items),
            ("synthetic.genres", self.genres),
            ("synthetic.latent_dim", self.latent_dim),
            ("synthetic.sessions_per_user", self.sessions_per_user),
            ("synthetic.slate_len", self.slate_len),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(DataError::config(name, "must be at least 1"));
            }
        }
        if self.genres > u16::MAX as usize {
            return Err(DataError::config(
                "synthetic.genres",
                "must be at most 65535",
            ));
        }
        if self.sessions_per_user * self.slate_len > self.items {
            return Err(DataError::config(
                "synthetic.sessions_per_user",
                format!(
                    "{} sessions x {} items exceed the catalog of {} (items are never re-shown)",
                    self.sessions_per_user, self.slate_len, self.items
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.content_weight) {
            return Err(DataError::config(
                "synthetic.content_weight",
                "must be in [0, 1]",
            ));
        }
        if !(self.behaviour_temperature.is_finite() && self.behaviour_temperature > 0.0) {
            return Err(DataError::config(
                "synthetic.behaviour_temperature",
                "must be finite and > 0",
            ));
        }
        for (name, v) in [
            ("synthetic.quality_std", self.quality_std),
            ("synthetic.base_logit", self.base_logit),
            ("synthetic.relevance_scale", self.relevance_scale),
            ("synthetic.position_decay", self.position_decay),
            ("synthetic.diversity_penalty", self.diversity_penalty),
        ] {
            if !v.is_finite() {
                return Err(DataError::config(name, "must be finite"));
            }
        }
        Ok(())
    }
}

/// The rating of one exposure with click probability `p` and relevance logit `s`: a click
/// gives 3, plus 1 for a like (`P = sigmoid(s - 0.5)`), plus 1 for a star (`P = sigmoid(s -
/// 2)`, given a like); a skip gives 1 or 2.
pub(crate) fn draw_rating(rng: &mut impl rand::Rng, p: f64, s: f64) -> f32 {
    if rng.random_bool(p) {
        let like = rng.random_bool(sigmoid(s - 0.5));
        let star = like && rng.random_bool(sigmoid(s - 2.0));
        3.0 + f32::from(u8::from(like)) + f32::from(u8::from(star))
    } else {
        1.0 + f32::from(u8::from(rng.random_bool(0.5)))
    }
}

/// A generated world: latent factors, content and the true click model.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticWorld {
    config: SyntheticConfig,
    /// Row-major `[items, d]`.
    item_latent: Vec<f64>,
    /// Euclidean norm of each item's latent vector.
    item_norm: Vec<f64>,
    item_bias: Vec<f64>,
    /// Row-major `[users, d]`.
    user_latent: Vec<f64>,
    item_features: ItemFeatures,
    user_features: UserFeatures,
}

/// Logistic function.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Draws `n` standard normal values.
fn normals(rng: &mut impl rand::Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

impl SyntheticWorld {
    /// Generates the world (content, factors); deterministic in `config.seed`.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] for a bad configuration.
    pub fn new(config: &SyntheticConfig) -> Result<Self> {
        config.validate()?;
        let c = config;
        let d = c.latent_dim;
        let g = c.genres;
        let mut rng = rng_for(c.seed, &[0x574F_524C]);
        let centroids = normals(&mut rng, g * d);
        // Genre popularity ~ 1 / rank (Zipf), so some genres dominate the catalog.
        let genre_weights: Vec<f64> = (0..g).map(|k| 1.0 / (k as f64 + 1.0)).collect();
        let total_w: f64 = genre_weights.iter().sum();
        let pick_genre = |rng: &mut rand::rngs::ChaCha8Rng| -> usize {
            let mut t = rng.random::<f64>() * total_w;
            for (k, w) in genre_weights.iter().enumerate() {
                t -= w;
                if t <= 0.0 {
                    return k;
                }
            }
            g - 1
        };
        let mix = |genres: &[usize], noise: &[f64]| -> Vec<f64> {
            let w = c.content_weight;
            let rest = (1.0 - w * w).sqrt();
            (0..d)
                .map(|j| {
                    let m = genres.iter().map(|&k| centroids[k * d + j]).sum::<f64>()
                        / genres.len() as f64;
                    w * m + rest * noise[j]
                })
                .collect()
        };

        let mut item_latent = Vec::with_capacity(c.items * d);
        let mut item_bias = Vec::with_capacity(c.items);
        let genre_names: Vec<String> = (0..g).map(|k| format!("genre-{k}")).collect();
        let mut feats = ItemFeatures::unknown(c.items, genre_names);
        for i in 0..c.items {
            let n_genres = 1 + rng.random_range(0..3usize).min(g - 1);
            let mut genres: Vec<usize> = Vec::new();
            while genres.len() < n_genres {
                let k = pick_genre(&mut rng);
                if !genres.contains(&k) {
                    genres.push(k);
                }
            }
            genres.sort_unstable();
            let noise = normals(&mut rng, d);
            item_latent.extend(mix(&genres, &noise));
            let z: f64 = StandardNormal.sample(&mut rng);
            item_bias.push(z * c.quality_std);
            let words = 2 + rng.random_range(0..3usize);
            let title: Vec<String> = (0..words)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        let k = genres[rng.random_range(0..genres.len())];
                        format!("g{k}w{}", rng.random_range(0..8u32))
                    } else {
                        format!("w{}", rng.random_range(0..40u32))
                    }
                })
                .collect();
            feats.titles[i] = title.join(" ");
            feats.years[i] = Some(1970 + rng.random_range(0..51u16));
            feats.genres[i] = genres.iter().map(|&k| k as u16).collect();
        }
        let item_norm = item_latent
            .chunks(d)
            .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12))
            .collect();

        let mut user_latent = Vec::with_capacity(c.users * d);
        let mut favourite = CategoricalField::new("favourite_genre", c.users);
        let mut region = CategoricalField::new("region", c.users);
        for u in 0..c.users {
            let first = pick_genre(&mut rng);
            let mut genres = vec![first];
            if g > 1 && rng.random_bool(0.5) {
                let second = pick_genre(&mut rng);
                if second != first {
                    genres.push(second);
                }
            }
            let noise = normals(&mut rng, d);
            user_latent.extend(mix(&genres, &noise));
            favourite.values[u] = favourite.code(&format!("genre-{first}"));
            region.values[u] = region.code(&format!("region-{}", rng.random_range(0..5u32)));
        }
        Ok(Self {
            config: c.clone(),
            item_latent,
            item_norm,
            item_bias,
            user_latent,
            item_features: feats,
            user_features: UserFeatures {
                fields: vec![favourite, region],
            },
        })
    }

    /// The items' content features.
    pub(crate) fn item_features(&self) -> &ItemFeatures {
        &self.item_features
    }

    /// The users' attributes.
    pub(crate) fn user_features(&self) -> &UserFeatures {
        &self.user_features
    }

    /// The configuration this world was generated from.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// The relevance logit `s(u, i)`.
    pub fn relevance_logit(&self, user: usize, item: usize) -> f64 {
        let d = self.config.latent_dim;
        let x = &self.user_latent[user * d..(user + 1) * d];
        let v = &self.item_latent[item * d..(item + 1) * d];
        let dot: f64 = x.iter().zip(v).map(|(a, b)| a * b).sum();
        self.config.base_logit
            + self.config.relevance_scale * dot / (d as f64).sqrt()
            + self.item_bias[item]
    }

    /// Cosine similarity of two items' latent vectors.
    pub fn similarity(&self, a: usize, b: usize) -> f64 {
        let d = self.config.latent_dim;
        let va = &self.item_latent[a * d..(a + 1) * d];
        let vb = &self.item_latent[b * d..(b + 1) * d];
        let dot: f64 = va.iter().zip(vb).map(|(x, y)| x * y).sum();
        dot / (self.item_norm[a] * self.item_norm[b])
    }

    /// True click probability of each slot of `list` (world item indices) for `user`, under
    /// the list-wise click model in the module docs.
    pub fn click_probabilities(&self, user: usize, list: &[usize]) -> Vec<f64> {
        let c = &self.config;
        list.iter()
            .enumerate()
            .map(|(k, &i)| {
                let redundancy = list[..k]
                    .iter()
                    .map(|&j| self.similarity(i, j).max(0.0))
                    .fold(0.0, f64::max);
                sigmoid(
                    self.relevance_logit(user, i)
                        - c.position_decay * k as f64
                        - c.diversity_penalty * redundancy,
                )
            })
            .collect()
    }

    /// Expected clicks of `list`: the sum of [`click_probabilities`](Self::click_probabilities).
    pub fn expected_clicks(&self, user: usize, list: &[usize]) -> f64 {
        self.click_probabilities(user, list).iter().sum()
    }

    /// The list of `len` items from `pool` (world item indices) with the most expected clicks
    /// for `user` that a search with the true click model finds: greedy slot by slot (the
    /// item with the highest click probability below the items above it), then local search
    /// (replace one item by one from outside the list, or swap two slots) until no move gains.
    /// Returns positions into `pool`. The click model is not additive over items (position
    /// and redundancy interact), so this is a strong reference, not a proven optimum.
    pub fn best_list(&self, user: usize, pool: &[usize], len: usize) -> Vec<usize> {
        let len = len.min(pool.len());
        let clicks = |list: &[usize]| {
            let items: Vec<usize> = list.iter().map(|&p| pool[p]).collect();
            self.expected_clicks(user, &items)
        };
        // Greedy: `items` holds the world items of `list`, plus one trial item at slot k.
        let mut list: Vec<usize> = Vec::with_capacity(len);
        let mut items: Vec<usize> = Vec::with_capacity(len + 1);
        for k in 0..len {
            let mut next: Option<(f64, usize)> = None;
            for p in (0..pool.len()).filter(|p| !list.contains(p)) {
                items.push(pool[p]);
                let gain = self.click_probabilities(user, &items)[k];
                items.pop();
                if next.is_none_or(|(g, _)| gain > g) {
                    next = Some((gain, p));
                }
            }
            // len <= pool.len(), so a free position always remains.
            let Some((_, p)) = next else { break };
            list.push(p);
            items.push(pool[p]);
        }
        let mut best = clicks(&list);
        loop {
            let mut improved = false;
            for slot in 0..list.len() {
                for p in 0..pool.len() {
                    if list.contains(&p) {
                        continue;
                    }
                    let old = std::mem::replace(&mut list[slot], p);
                    let v = clicks(&list);
                    if v > best + 1e-12 {
                        best = v;
                        improved = true;
                    } else {
                        list[slot] = old;
                    }
                }
                for other in slot + 1..list.len() {
                    list.swap(slot, other);
                    let v = clicks(&list);
                    if v > best + 1e-12 {
                        best = v;
                        improved = true;
                    } else {
                        list.swap(slot, other);
                    }
                }
            }
            if !improved {
                return list;
            }
        }
    }

    /// Ratings of `items` (world item indices) for `user`, each from one draw of the
    /// behaviours of the item shown alone in the first slot (click probability
    /// `sigmoid(s(u, i))`, then like and star as in the logged data). `request` picks the
    /// random stream (one per request), so the draws are reproducible and independent of
    /// the logged ones. See [`SyntheticConfig::pool_feedback`].
    pub fn pool_ratings(&self, user: usize, items: &[usize], request: u64) -> Vec<f32> {
        let mut rng = rng_for(self.config.seed, &[0x504F_4642, user as u64, request]);
        items
            .iter()
            .map(|&i| {
                let s = self.relevance_logit(user, i);
                draw_rating(&mut rng, sigmoid(s), s)
            })
            .collect()
    }

    /// The world item index of an item id produced by [`SyntheticWorld::log`] (`"i17"` -> 17).
    pub fn item_index(id: &str) -> Option<usize> {
        id.strip_prefix('i')?.parse().ok()
    }

    /// The world user index of a user id produced by [`SyntheticWorld::log`] (`"u3"` -> 3).
    pub fn user_index(id: &str) -> Option<usize> {
        id.strip_prefix('u')?.parse().ok()
    }

    /// Simulates the logged data: each user's slates from the behaviour policy with sampled
    /// behaviours, as a [`RawDataset`] (user ids `u<n>`, item ids `i<n>`; timestamps count
    /// slots, per user). Deterministic in the seed, parallel over users.
    pub fn log(&self) -> RawDataset {
        let c = &self.config;
        let per_user: Vec<Vec<Interaction>> = (0..c.users)
            .into_par_iter()
            .map(|u| self.log_user(u))
            .collect();
        RawDataset {
            name: "synthetic".into(),
            user_ids: (0..c.users).map(|u| format!("u{u}")).collect(),
            item_ids: (0..c.items).map(|i| format!("i{i}")).collect(),
            interactions: per_user.into_iter().flatten().collect(),
            implicit: false,
            item_features: Some(self.item_features.clone()),
            user_features: Some(self.user_features.clone()),
        }
    }

    /// One user's logged slates.
    fn log_user(&self, u: usize) -> Vec<Interaction> {
        let c = &self.config;
        let mut rng = rng_for(c.seed, &[0x4C4F_4753, u as u64]);
        let logits: Vec<f64> = (0..c.items).map(|i| self.relevance_logit(u, i)).collect();
        let mut shown = vec![false; c.items];
        let mut out = Vec::with_capacity(c.sessions_per_user * c.slate_len);
        let mut keys: Vec<(f64, usize)> = Vec::with_capacity(c.items);
        for session in 0..c.sessions_per_user {
            // Gumbel-top-k = sampling without replacement from softmax(s / temperature).
            keys.clear();
            for (i, &s) in logits.iter().enumerate() {
                if !shown[i] {
                    let uni: f64 = rng.random::<f64>().max(1e-300);
                    keys.push((s / c.behaviour_temperature - (-uni.ln()).ln(), i));
                }
            }
            let k = c.slate_len.min(keys.len());
            keys.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            keys[..k].sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let slate: Vec<usize> = keys[..k].iter().map(|&(_, i)| i).collect();
            let probs = self.click_probabilities(u, &slate);
            for (slot, (&i, &p)) in slate.iter().zip(&probs).enumerate() {
                shown[i] = true;
                let rating = draw_rating(&mut rng, p, logits[i]);
                out.push(Interaction {
                    user: u as u32,
                    item: i as u32,
                    rating,
                    timestamp: (session * c.slate_len + slot) as i64,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_deterministic_and_valid() {
        let cfg = SyntheticConfig::small(50, 80).with_sessions(4);
        let a = SyntheticWorld::new(&cfg).unwrap().log();
        let b = SyntheticWorld::new(&cfg).unwrap().log();
        assert_eq!(a, b);
        assert_eq!(a.interactions.len(), 50 * 4 * 6);
        assert!(
            a.interactions
                .iter()
                .all(|x| (1.0..=5.0).contains(&x.rating))
        );
        // No item is shown twice to a user.
        let mut pairs: Vec<(u32, u32)> = a.interactions.iter().map(|x| (x.user, x.item)).collect();
        pairs.sort_unstable();
        let n = pairs.len();
        pairs.dedup();
        assert_eq!(pairs.len(), n);
        let c = SyntheticWorld::new(&cfg.clone().with_seed(8))
            .unwrap()
            .log();
        assert_ne!(a, c);
    }

    #[test]
    fn click_model_has_position_bias_and_diversity_penalty() {
        let w = SyntheticWorld::new(&SyntheticConfig::small(5, 30).with_sessions(2)).unwrap();
        // The same item twice is maximally redundant: slot 2 gets position decay + penalty.
        let p = w.click_probabilities(0, &[3, 3]);
        let expect = sigmoid(w.relevance_logit(0, 3) - 0.15 - 1.0);
        assert!((p[1] - expect).abs() < 1e-12);
        assert!(p[1] < p[0]);
        assert!((w.similarity(4, 4) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn behaviour_policy_prefers_relevant_items() {
        let cfg = SyntheticConfig::small(40, 200).with_sessions(3);
        let w = SyntheticWorld::new(&cfg).unwrap();
        let log = w.log();
        let shown: f64 = log
            .interactions
            .iter()
            .map(|x| w.relevance_logit(x.user as usize, x.item as usize))
            .sum::<f64>()
            / log.interactions.len() as f64;
        let all: f64 = (0..40)
            .flat_map(|u| (0..200).map(move |i| (u, i)))
            .map(|(u, i)| w.relevance_logit(u, i))
            .sum::<f64>()
            / 8000.0;
        assert!(shown > all + 0.5, "shown {shown} vs catalog {all}");
    }

    #[test]
    fn the_best_list_search_matches_exhaustive_search_on_small_pools() {
        let w = SyntheticWorld::new(&SyntheticConfig::small(20, 60).with_sessions(2)).unwrap();
        let mut worst = f64::INFINITY;
        for user in 0..20 {
            let pool: Vec<usize> = (0..7).map(|k| (user * 7 + k * 5) % 60).collect();
            let found = w.best_list(user, &pool, 3);
            let mut seen = found.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 3);
            let items = |l: &[usize]| l.iter().map(|&p| pool[p]).collect::<Vec<_>>();
            let got = w.expected_clicks(user, &items(&found));
            let mut exhaustive = 0f64;
            for a in 0..7 {
                for b in (0..7).filter(|&b| b != a) {
                    for c in (0..7).filter(|&c| c != a && c != b) {
                        exhaustive = exhaustive.max(w.expected_clicks(user, &items(&[a, b, c])));
                    }
                }
            }
            assert!(got <= exhaustive + 1e-12);
            worst = worst.min(got / exhaustive);
        }
        assert!(worst > 0.995, "worst ratio {worst}");
    }

    #[test]
    fn invalid_config_is_rejected() {
        let mut cfg = SyntheticConfig::small(10, 10);
        assert!(SyntheticWorld::new(&cfg).is_err()); // 10 sessions x 6 > 10 items
        cfg.sessions_per_user = 1;
        cfg.content_weight = 2.0;
        assert!(matches!(
            SyntheticWorld::new(&cfg),
            Err(DataError::InvalidConfig { field, .. }) if field == "synthetic.content_weight"
        ));
    }
}
