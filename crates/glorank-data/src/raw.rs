//! Raw interaction logs and side features, as the readers produce them.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One logged user-item interaction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Dense user index (into [`RawDataset::user_ids`]).
    pub user: u32,
    /// Dense item index (into [`RawDataset::item_ids`]).
    pub item: u32,
    /// Explicit rating, or 1 for implicit data.
    pub rating: f32,
    /// Time of the interaction (Unix seconds, or the position in the log when the source has
    /// no time).
    pub timestamp: i64,
}

/// Content features of items: categories (genres), release year and title.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemFeatures {
    /// Names of the categories, indexed by category id.
    pub genre_names: Vec<String>,
    /// Category ids of each item (multi-hot as a sorted list).
    pub genres: Vec<Vec<u16>>,
    /// Release year of each item, when known.
    pub years: Vec<Option<u16>>,
    /// Title of each item (empty when unknown), year suffix removed.
    pub titles: Vec<String>,
}

impl ItemFeatures {
    /// Features for `n` items with nothing known.
    pub fn unknown(n: usize, genre_names: Vec<String>) -> Self {
        Self {
            genre_names,
            genres: vec![Vec::new(); n],
            years: vec![None; n],
            titles: vec![String::new(); n],
        }
    }

    /// Keeps the features of the items in `keep` (old indices), in that order.
    pub(crate) fn select(&self, keep: &[u32]) -> Self {
        Self {
            genre_names: self.genre_names.clone(),
            genres: keep
                .iter()
                .map(|&i| self.genres[i as usize].clone())
                .collect(),
            years: keep.iter().map(|&i| self.years[i as usize]).collect(),
            titles: keep
                .iter()
                .map(|&i| self.titles[i as usize].clone())
                .collect(),
        }
    }
}

/// A categorical user attribute (for example MovieLens gender, age bucket, occupation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalField {
    /// Attribute name.
    pub name: String,
    /// Category names; index 0 is always `"<unknown>"`, used for users without a value.
    pub vocabulary: Vec<String>,
    /// Category id of each user.
    pub values: Vec<u32>,
}

impl CategoricalField {
    /// An attribute with only the unknown category, for `n` users.
    pub fn new(name: &str, n: usize) -> Self {
        Self {
            name: name.to_string(),
            vocabulary: vec!["<unknown>".to_string()],
            values: vec![0; n],
        }
    }

    /// The id of `category`, adding it to the vocabulary on first sight.
    pub(crate) fn code(&mut self, category: &str) -> u32 {
        match self.vocabulary.iter().position(|v| v == category) {
            Some(i) => i as u32,
            None => {
                self.vocabulary.push(category.to_string());
                (self.vocabulary.len() - 1) as u32
            }
        }
    }
}

/// Categorical side features of users.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserFeatures {
    /// One entry per attribute.
    pub fields: Vec<CategoricalField>,
}

impl UserFeatures {
    /// Keeps the users in `keep` (old indices), in that order.
    pub(crate) fn select(&self, keep: &[u32]) -> Self {
        Self {
            fields: self
                .fields
                .iter()
                .map(|f| CategoricalField {
                    name: f.name.clone(),
                    vocabulary: f.vocabulary.clone(),
                    values: keep.iter().map(|&u| f.values[u as usize]).collect(),
                })
                .collect(),
        }
    }
}

/// A dataset as read from disk: interactions over dense ids, plus optional side features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawDataset {
    /// Short dataset name (`ml-1m`, `synthetic`, ...).
    pub name: String,
    /// Original user id of each dense user index.
    pub user_ids: Vec<String>,
    /// Original item id of each dense item index.
    pub item_ids: Vec<String>,
    /// All interactions, in file order.
    pub interactions: Vec<Interaction>,
    /// Whether the data is implicit feedback (every logged item counts as a click).
    pub implicit: bool,
    /// Item content features, when the source has them.
    pub item_features: Option<ItemFeatures>,
    /// User attributes, when the source has them.
    pub user_features: Option<UserFeatures>,
}

/// Maps original string ids to dense indices in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    map: HashMap<String, u32>,
    ids: Vec<String>,
}

impl Interner {
    /// The dense index of `id`, assigned on first sight.
    pub(crate) fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.map.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.map.insert(id.to_string(), i);
        self.ids.push(id.to_string());
        i
    }

    /// The dense index of `id`, if seen.
    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        self.map.get(id).copied()
    }

    /// The original ids in dense order (first seen first).
    pub(crate) fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The original ids in dense order.
    pub(crate) fn into_ids(self) -> Vec<String> {
        self.ids
    }

    /// Number of distinct ids.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}
