//! Decoding and first-item scores on the fastest path for the device: the host CPU
//! ([`HostPolicy`]) or burn's operations ([`decode_on_device`], [`PolicyScorer`]).

use crate::Result;
use crate::host::HostPolicy;
use crate::model::{Policy, Request};
use crate::scorer::{PolicyScorer, decode_on_device, first_item_chunks};
use burn::tensor::Device;
use glorank_trie::{DecodedList, Decoder};

/// Decodes one list per request (or `width` per request with beam search) with the policy,
/// constrained by each request's trie. Item indices in the result are candidate positions.
///
/// On a CPU device (`flex`, `ndarray`) the policy's weights are copied to a [`HostPolicy`]
/// and decoded there, which is several times faster than burn's operations; a caller that
/// decodes often with the same weights should keep one [`HostPolicy`] instead (the copy costs
/// a few milliseconds). On other devices, and always with [`decode_on_device`], every step
/// runs as burn operations on `device`.
///
/// Batches of at least `2 x` [`MIN_DECODE_SHARD`] requests are split into contiguous shards
/// decoded at once on the machine's threads ([`Decoder::decode_sharded`]); each request's
/// lists are what decoding the whole batch together gives, up to floating-point rounding
/// (which a batch's padding already affects), and sampled draws do not change.
///
/// # Errors
/// Input, trie and decoding errors.
pub fn decode(
    policy: &Policy,
    requests: &[Request],
    decoder: &mut Decoder,
    device: &Device,
) -> Result<Vec<Vec<DecodedList>>> {
    let host = HostPolicy::for_device(policy, device);
    decode_with_host(host.as_ref(), policy, requests, decoder, device)
}

/// [`decode`] with the caller's [`HostPolicy`] of `policy` when it keeps one (built once for
/// many calls), else [`decode_on_device`].
///
/// # Errors
/// Input, trie and decoding errors.
pub fn decode_with_host(
    host: Option<&HostPolicy>,
    policy: &Policy,
    requests: &[Request],
    decoder: &mut Decoder,
    device: &Device,
) -> Result<Vec<Vec<DecodedList>>> {
    match host {
        Some(host) => host.decode(requests, decoder),
        None => decode_on_device(policy, requests, decoder, device),
    }
}

/// The log-probability of each candidate being generated as the first item of the list,
/// per request in candidate order: how the policy scores candidates one by one (for an AUC
/// among candidates, say). See [`glorank_trie::first_item_logprobs`]. On a CPU device it
/// runs on a [`HostPolicy`], as [`decode`] does.
///
/// # Errors
/// Input, trie and scoring errors.
pub fn first_item_logprobs(
    policy: &Policy,
    requests: &[Request],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    if let Some(host) = HostPolicy::for_device(policy, device) {
        return host.first_item_logprobs(requests);
    }
    first_item_chunks(policy, requests, |chunk| {
        PolicyScorer::new(policy, chunk, device)
    })
}
