//! The `[serve]` section: how `glorank rerank` and `glorank serve` decode, and the server's
//! limits.

use crate::{Error, Result};
use glorank_trie::{DecodeStrategy, MAX_BEAM_WIDTH};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serving settings (the `[serve]` section), checked by [`ServeConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Decoding: `greedy`, `beam:W`, `sample:T` or `sample:T:K` (default: as the run's
    /// evaluation, a beam of its `eval.beam` when above 1, else greedy). A call to the HTTP
    /// server may ask for another with `?decode=`.
    #[serde(
        serialize_with = "decode_to_str",
        deserialize_with = "decode_from_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub decode: Option<DecodeStrategy>,
    /// Prefix-repetition penalty: each token loses this much per earlier item of the list
    /// sharing its semantic-ID prefix, so lists spread over clusters (0: none, the default).
    pub prefix_penalty: f32,
    /// Address the HTTP server listens on, `HOST:PORT` (port 0: any free port; default
    /// `127.0.0.1:8080`).
    pub addr: String,
    /// Most requests decoded in one batch (a single call larger than this is decoded alone;
    /// default 64).
    pub max_batch: usize,
    /// Longest wait, in milliseconds, for more requests after the first of a batch. The
    /// default 0 is continuous batching: the worker takes whatever queued up while it was
    /// busy, so a lone request is not delayed and a loaded server still decodes in batches;
    /// a wait trades latency for larger batches.
    pub max_wait_ms: u64,
    /// Largest request body, in bytes (larger: 413; default 1 MiB).
    pub max_body_bytes: usize,
    /// Most requests in one call's array (more: 413; default 256).
    pub max_requests_per_call: usize,
    /// Widest beam a call may ask for with `?decode=beam:W` (default 16).
    pub max_beam: usize,
    /// Calls waiting for the batcher; when full, new calls get 503 (default 1024).
    pub queue: usize,
    /// Longest request line `glorank rerank` reads from standard input, in bytes; a longer
    /// one gets an error line and is skipped (default 1 MiB).
    pub max_line_bytes: usize,
    /// Milliseconds a client has to send a request's whole head (request line and headers),
    /// counted from when the server starts waiting for it: after the connection opens, or
    /// after the previous answer on a kept-alive connection, so this also bounds how long a
    /// kept-alive connection may sit idle. Late: the connection is closed (default 10 000).
    pub header_timeout_ms: u64,
    /// Milliseconds a client has, after a request's head, to send its whole body. Late: 408
    /// and the connection is closed (default 30 000).
    pub body_timeout_ms: u64,
    /// Milliseconds a connection may go without a byte read or written while none of its
    /// requests is being decoded (a client that stops reading its answer, a stalled
    /// transfer). Then it is closed (default 60 000).
    pub idle_timeout_ms: u64,
    /// On shutdown (SIGTERM, Ctrl-C, `glorank_serve::Server::shutdown`) the server stops accepting at
    /// once, lets the calls in flight finish for at most this many milliseconds, then drops
    /// what is left and exits (default 10 000; 0 drops them at once).
    pub shutdown_grace_ms: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            decode: None,
            prefix_penalty: 0.0,
            addr: "127.0.0.1:8080".into(),
            max_batch: 64,
            max_wait_ms: 0,
            max_body_bytes: 1 << 20,
            max_requests_per_call: 256,
            max_beam: 16,
            queue: 1024,
            max_line_bytes: 1 << 20,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

fn decode_to_str<S: Serializer>(d: &Option<DecodeStrategy>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

fn decode_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DecodeStrategy>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

impl ServeConfig {
    /// Checks every bound.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field (`serve.max_batch`...).
    pub fn validate(&self) -> Result<()> {
        let check = |field: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                return Err(Error::InvalidConfig {
                    field: format!("serve.{field}"),
                    message: format!("{v} is outside {lo}..={hi}"),
                });
            }
            Ok(())
        };
        check("max_batch", self.max_batch as u64, 1, 65_536)?;
        check("max_wait_ms", self.max_wait_ms, 0, 10_000)?;
        check("max_body_bytes", self.max_body_bytes as u64, 64, 256 << 20)?;
        check(
            "max_requests_per_call",
            self.max_requests_per_call as u64,
            1,
            65_536,
        )?;
        check("max_beam", self.max_beam as u64, 1, MAX_BEAM_WIDTH as u64)?;
        check("queue", self.queue as u64, 1, 1 << 20)?;
        check(
            "max_line_bytes",
            self.max_line_bytes as u64,
            1,
            glorank_data::MAX_LINE_BYTES as u64,
        )?;
        const HOUR_MS: u64 = 3_600_000;
        check("header_timeout_ms", self.header_timeout_ms, 1, HOUR_MS)?;
        check("body_timeout_ms", self.body_timeout_ms, 1, HOUR_MS)?;
        check("idle_timeout_ms", self.idle_timeout_ms, 1, HOUR_MS)?;
        check("shutdown_grace_ms", self.shutdown_grace_ms, 0, HOUR_MS)?;
        fn field(name: &'static str) -> impl Fn(glorank_trie::TrieError) -> Error {
            move |e| Error::InvalidConfig {
                field: format!("serve.{name}"),
                message: e.to_string(),
            }
        }
        if let Some(d) = &self.decode {
            d.validate().map_err(field("decode"))?;
        }
        glorank_trie::check_prefix_penalty(self.prefix_penalty).map_err(field("prefix_penalty"))
    }
}
