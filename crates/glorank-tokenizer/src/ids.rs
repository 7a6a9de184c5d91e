//! The semantic-ID table: every item's unique token tuple, mapped both ways, with a dedupe
//! level; and the codebook statistics computed after every fit.

use crate::{Result, TokenizerError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Unique semantic IDs of a catalog: `levels` code tokens plus one dedupe token per item.
///
/// Items whose `levels` codes coincide (a collision) are told apart by the dedupe token
/// `0, 1, 2, ...` in item order, so every tuple is unique and the table maps item -> tuple
/// and tuple -> item. Token `t` of level `l` is below [`SemanticIds::vocab_sizes`]`[l]`, the
/// global vocabulary a generative ranker decodes over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticIds {
    codes_per_level: Vec<usize>,
    dedupe_codes: usize,
    tuples: Vec<Vec<u32>>,
    #[serde(skip)]
    index: HashMap<Vec<u32>, usize>,
    #[serde(skip)]
    prefix_count: HashMap<Vec<u32>, u32>,
}

/// What [`SemanticIds::from_codes`] found about collisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeReport {
    /// Largest number of items sharing one code prefix.
    pub max_collisions: usize,
    /// Whether that number exceeded the requested dedupe vocabulary (which was then enlarged).
    pub overflow: bool,
}

impl SemanticIds {
    /// Builds the table from each item's `levels` codes, adding the dedupe token.
    ///
    /// The dedupe vocabulary is `max(dedupe_codes, max collisions)`; when collisions exceed
    /// `dedupe_codes` the report says so (the caller warns), and the vocabulary grows to fit.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidInput`] for an empty table, a tuple of the wrong length or a
    /// code outside its level's vocabulary (naming the item).
    pub fn from_codes(
        codes: Vec<Vec<u32>>,
        codes_per_level: &[usize],
        dedupe_codes: usize,
    ) -> Result<(Self, DedupeReport)> {
        if codes.is_empty() {
            return Err(TokenizerError::InvalidInput("no items to identify".into()));
        }
        check_codes(&codes, codes_per_level)?;
        let mut prefix_count: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut tuples = Vec::with_capacity(codes.len());
        for mut c in codes {
            let k = prefix_count.entry(c.clone()).or_insert(0);
            c.push(*k);
            *k += 1;
            tuples.push(c);
        }
        let max_collisions = prefix_count.values().copied().max().unwrap_or(0) as usize;
        let report = DedupeReport {
            max_collisions,
            overflow: max_collisions > dedupe_codes,
        };
        let mut ids = Self {
            codes_per_level: codes_per_level.to_vec(),
            dedupe_codes: dedupe_codes.max(max_collisions).max(1),
            tuples,
            index: HashMap::new(),
            prefix_count,
        };
        ids.rebuild_index();
        Ok((ids, report))
    }

    /// Rebuilds the reverse maps (after deserialisation).
    fn rebuild_index(&mut self) {
        self.index = self
            .tuples
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        self.prefix_count.clear();
        let levels = self.codes_per_level.len();
        for t in &self.tuples {
            *self.prefix_count.entry(t[..levels].to_vec()).or_insert(0) += 1;
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.tuples.len()
    }

    /// Whether the table is empty (never true for a fitted table).
    pub fn is_empty(&self) -> bool {
        self.tuples.is_empty()
    }

    /// Code levels (without the dedupe level).
    pub fn levels(&self) -> usize {
        self.codes_per_level.len()
    }

    /// Codebook size of each code level.
    pub fn codes_per_level(&self) -> &[usize] {
        &self.codes_per_level
    }

    /// Size of the dedupe vocabulary.
    pub fn dedupe_codes(&self) -> usize {
        self.dedupe_codes
    }

    /// Vocabulary size of every token position, dedupe level last (what a trie or a policy
    /// head needs).
    pub fn vocab_sizes(&self) -> Vec<usize> {
        let mut v = self.codes_per_level.clone();
        v.push(self.dedupe_codes);
        v
    }

    /// The tuple of `item` (`levels + 1` tokens).
    pub fn tuple(&self, item: usize) -> Option<&[u32]> {
        self.tuples.get(item).map(Vec::as_slice)
    }

    /// All tuples, by item.
    pub fn tuples(&self) -> &[Vec<u32>] {
        &self.tuples
    }

    /// The item with this tuple.
    pub fn item(&self, tuple: &[u32]) -> Option<usize> {
        self.index.get(tuple).copied()
    }

    /// Appends a new (cold-start) item with the given codes and a fresh dedupe token, and
    /// returns its item index. Nothing is retrained.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidInput`] for malformed codes; [`TokenizerError::DedupeOverflow`]
    /// when the prefix already holds `dedupe_codes` items (the dedupe vocabulary is fixed once a
    /// model is trained on it).
    pub fn add_item(&mut self, codes: &[u32]) -> Result<usize> {
        check_codes(std::slice::from_ref(&codes.to_vec()), &self.codes_per_level)?;
        let used = self.prefix_count.get(codes).copied().unwrap_or(0);
        if used as usize >= self.dedupe_codes {
            return Err(TokenizerError::DedupeOverflow {
                prefix: codes.to_vec(),
                dedupe_codes: self.dedupe_codes,
            });
        }
        let mut t = codes.to_vec();
        t.push(used);
        self.prefix_count.insert(codes.to_vec(), used + 1);
        let item = self.tuples.len();
        self.index.insert(t.clone(), item);
        self.tuples.push(t);
        Ok(item)
    }

    /// Writes the table as human-readable JSON, atomically (temp file + rename).
    ///
    /// # Errors
    /// [`TokenizerError::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(glorank_nn::persist::save_json(path, self)?)
    }

    /// Reads a table written by [`SemanticIds::save`] and checks it.
    ///
    /// # Errors
    /// [`TokenizerError::Io`] / [`TokenizerError::Format`] naming the file; the message names
    /// the first bad item (wrong length, token out of range, duplicate tuple).
    pub fn load(path: &Path) -> Result<Self> {
        let mut ids: Self = glorank_nn::persist::load_json(path)?;
        let bad = |message: String| TokenizerError::Format {
            path: path.to_path_buf(),
            message,
        };
        let vocab = ids.vocab_sizes();
        for (i, t) in ids.tuples.iter().enumerate() {
            if t.len() != vocab.len() {
                return Err(bad(format!(
                    "item {i} has {} tokens, expected {}",
                    t.len(),
                    vocab.len()
                )));
            }
            if let Some(l) = (0..t.len()).find(|&l| t[l] as usize >= vocab[l]) {
                return Err(bad(format!(
                    "item {i}: token {} at level {l} exceeds the vocabulary of {}",
                    t[l], vocab[l]
                )));
            }
        }
        ids.rebuild_index();
        if ids.index.len() != ids.tuples.len() {
            return Err(bad("two items share a tuple".into()));
        }
        Ok(ids)
    }
}

/// Checks tuple lengths and code ranges.
fn check_codes(codes: &[Vec<u32>], codes_per_level: &[usize]) -> Result<()> {
    for (i, c) in codes.iter().enumerate() {
        if c.len() != codes_per_level.len() {
            return Err(TokenizerError::InvalidInput(format!(
                "item {i} has {} codes, expected {}",
                c.len(),
                codes_per_level.len()
            )));
        }
        if let Some(l) = (0..c.len()).find(|&l| c[l] as usize >= codes_per_level[l]) {
            return Err(TokenizerError::InvalidInput(format!(
                "item {i}: code {} at level {l} exceeds the codebook of {}",
                c[l], codes_per_level[l]
            )));
        }
    }
    Ok(())
}

/// Statistics of a fitted tokenizer, written as `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenizerStats {
    /// `rqvae` or `rqkmeans`.
    pub method: String,
    /// Items fitted.
    pub items: usize,
    /// Code levels.
    pub levels: usize,
    /// Codebook size per level.
    pub codes_per_level: Vec<usize>,
    /// Fraction of each level's codes used by at least one item.
    pub usage_per_level: Vec<f64>,
    /// Entropy (nats) of each level's code distribution over items.
    pub entropy_per_level: Vec<f64>,
    /// `exp(entropy)`: the effective number of codes per level.
    pub perplexity_per_level: Vec<f64>,
    /// Distinct code prefixes (before dedupe) over items.
    pub unique_prefix_fraction: f64,
    /// Largest number of items sharing a code prefix (1 = no collision).
    pub max_collisions: usize,
    /// Size of the dedupe vocabulary.
    pub dedupe_codes: usize,
    /// Whether collisions exceeded the requested dedupe vocabulary (it was enlarged).
    pub dedupe_overflow: bool,
    /// Mean over items of the squared reconstruction error `||x - x_hat||^2` (RQ-VAE: decoder
    /// output; RQ-KMeans: sum of the chosen codewords).
    pub reconstruction_error: f64,
    /// Mean over items of `||x||^2`, to put the error in scale.
    pub mean_squared_norm: f64,
    /// Training epochs run (RQ-VAE) or k-means iterations summed over levels (RQ-KMeans).
    pub iterations: usize,
    /// Wall time of the fit, seconds.
    pub fit_seconds: f64,
}

impl TokenizerStats {
    /// Statistics of `codes` (levels codes per item) and a dedupe report.
    pub(crate) fn compute(
        method: &str,
        codes: &[Vec<u32>],
        codes_per_level: &[usize],
        report: DedupeReport,
        dedupe_codes: usize,
    ) -> Self {
        let n = codes.len();
        let mut usage = Vec::new();
        let mut entropy = Vec::new();
        for (l, &k) in codes_per_level.iter().enumerate() {
            let mut counts = vec![0usize; k];
            for c in codes {
                counts[c[l] as usize] += 1;
            }
            usage.push(counts.iter().filter(|&&x| x > 0).count() as f64 / k as f64);
            let h: f64 = counts
                .iter()
                .filter(|&&x| x > 0)
                .map(|&x| {
                    let p = x as f64 / n as f64;
                    -p * p.ln()
                })
                .sum();
            entropy.push(h);
        }
        let mut prefixes: Vec<&Vec<u32>> = codes.iter().collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        Self {
            method: method.to_string(),
            items: n,
            levels: codes_per_level.len(),
            codes_per_level: codes_per_level.to_vec(),
            usage_per_level: usage,
            perplexity_per_level: entropy.iter().map(|h| h.exp()).collect(),
            entropy_per_level: entropy,
            unique_prefix_fraction: prefixes.len() as f64 / n.max(1) as f64,
            max_collisions: report.max_collisions,
            dedupe_codes,
            dedupe_overflow: report.overflow,
            reconstruction_error: 0.0,
            mean_squared_norm: 0.0,
            iterations: 0,
            fit_seconds: 0.0,
        }
    }

    /// A plain-text table of the statistics.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} on {} items: {} levels x {:?} codes, dedupe vocabulary {}\n",
            self.method, self.items, self.levels, self.codes_per_level, self.dedupe_codes
        );
        s += "  level   usage   entropy  perplexity\n";
        for l in 0..self.levels {
            s += &format!(
                "  {:>5} {:>7.3} {:>9.3} {:>11.1}\n",
                l, self.usage_per_level[l], self.entropy_per_level[l], self.perplexity_per_level[l]
            );
        }
        s += &format!(
            "  unique prefix fraction {:.4}, max collisions {}{}\n",
            self.unique_prefix_fraction,
            self.max_collisions,
            if self.dedupe_overflow {
                " (exceeded the requested dedupe vocabulary)"
            } else {
                ""
            }
        );
        s += &format!(
            "  reconstruction error {:.4} (mean ||x||^2 {:.4}), {} iterations, fit {:.2} s",
            self.reconstruction_error, self.mean_squared_norm, self.iterations, self.fit_seconds
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_makes_tuples_unique_and_maps_both_ways() {
        let codes = vec![vec![1, 2], vec![1, 2], vec![0, 0], vec![1, 2]];
        let (ids, report) = SemanticIds::from_codes(codes, &[3, 3], 2).unwrap();
        assert_eq!(report.max_collisions, 3);
        assert!(report.overflow);
        assert_eq!(ids.dedupe_codes(), 3);
        assert_eq!(ids.tuple(3), Some(&[1, 2, 2][..]));
        for i in 0..ids.len() {
            assert_eq!(ids.item(ids.tuple(i).unwrap()), Some(i));
        }
        assert_eq!(ids.vocab_sizes(), vec![3, 3, 3]);
    }

    #[test]
    fn cold_items_get_fresh_dedupe_tokens_until_full() {
        let (mut ids, _) = SemanticIds::from_codes(vec![vec![0, 1]], &[2, 2], 2).unwrap();
        let new = ids.add_item(&[0, 1]).unwrap();
        assert_eq!(ids.tuple(new), Some(&[0, 1, 1][..]));
        assert!(matches!(
            ids.add_item(&[0, 1]),
            Err(TokenizerError::DedupeOverflow { .. })
        ));
        assert!(ids.add_item(&[0, 5]).is_err());
        assert_eq!(ids.add_item(&[1, 1]).unwrap(), 2);
    }

    #[test]
    fn stats_of_a_hand_case() {
        let codes = vec![vec![0, 0], vec![0, 1], vec![1, 1], vec![1, 1]];
        let report = DedupeReport {
            max_collisions: 2,
            overflow: false,
        };
        let s = TokenizerStats::compute("x", &codes, &[4, 2], report, 4);
        assert_eq!(s.usage_per_level, vec![0.5, 1.0]);
        assert!((s.entropy_per_level[0] - 2f64.ln()).abs() < 1e-12);
        assert!((s.perplexity_per_level[0] - 2.0).abs() < 1e-9);
        assert_eq!(s.unique_prefix_fraction, 0.75);
    }
}
