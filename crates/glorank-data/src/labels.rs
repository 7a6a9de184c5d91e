//! The labels of a logged item: click, like and star bits from its rating, and the rating
//! thresholds of the three behaviours.

use serde::{Deserialize, Serialize};

/// Rating thresholds of the three behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LabelThresholds {
    /// Minimum rating of a click, the positive label of Precision (default 3).
    pub click: f32,
    /// Minimum rating of a like (default 4).
    pub like: f32,
    /// Minimum rating of a star (default 5).
    pub star: f32,
}

impl Default for LabelThresholds {
    fn default() -> Self {
        Self {
            click: 3.0,
            like: 4.0,
            star: 5.0,
        }
    }
}

impl LabelThresholds {
    /// Thresholds `click <= like <= star`.
    pub fn new(click: f32, like: f32, star: f32) -> Self {
        Self { click, like, star }
    }
}

/// Behaviour labels of one candidate as bit flags (click, like, star).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Labels(pub u8);

impl Labels {
    /// Click bit.
    pub const CLICK: u8 = 1;
    /// Like bit.
    pub const LIKE: u8 = 2;
    /// Star bit.
    pub const STAR: u8 = 4;

    /// Labels of a logged interaction with `rating`.
    pub fn from_rating(rating: f32, t: &LabelThresholds, implicit: bool) -> Self {
        if implicit {
            return Self(Self::CLICK);
        }
        let mut b = 0;
        if rating >= t.click {
            b |= Self::CLICK;
        }
        if rating >= t.like {
            b |= Self::LIKE;
        }
        if rating >= t.star {
            b |= Self::STAR;
        }
        Self(b)
    }

    /// Whether the item was clicked (the positive label).
    pub fn click(self) -> bool {
        self.0 & Self::CLICK != 0
    }

    /// Whether the item was liked.
    pub fn like(self) -> bool {
        self.0 & Self::LIKE != 0
    }

    /// Whether the item was starred.
    pub fn star(self) -> bool {
        self.0 & Self::STAR != 0
    }

    /// Number of behaviours set (0..=3), a graded relevance.
    pub fn grade(self) -> u8 {
        self.0.count_ones() as u8
    }
}
