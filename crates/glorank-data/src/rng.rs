//! Seeded random streams: one independent, reproducible generator per (seed, purpose, index).
//!
//! Parallel code draws from `rng_for(seed, &[purpose, user, ...])`, so its results do not
//! depend on scheduling or thread count.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

/// SplitMix64 finaliser: a well-mixed 64-bit hash of `x`.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A ChaCha8 generator for `seed` and a stream path (purpose tag, indices).
pub(crate) fn rng_for(seed: u64, stream: &[u64]) -> ChaCha8Rng {
    let mut h = splitmix64(seed);
    for &s in stream {
        h = splitmix64(h ^ s);
    }
    ChaCha8Rng::seed_from_u64(h)
}
