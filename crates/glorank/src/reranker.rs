//! Serving: load a run directory and rerank requests given as item ids.

use crate::{Error, Result};
use burn::tensor::Device;
use glorank_data::{PreparedDataset, RerankRequest};
use glorank_policy::{HistoryItem, HostPolicy, Policy, Request, decode_with_host};
use glorank_tokenizer::{ItemTokenizer, SemanticIds, load_tokenizer};
use glorank_trie::{DecodeStrategy, Decoder};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// The body of one call to a serving front-end: one request, or a batch of them, each parsed
/// on its own so that one malformed request does not fail the others.
#[derive(Debug)]
#[non_exhaustive]
pub enum RerankCall {
    /// One request object.
    One(RerankRequest),
    /// An array of request objects; each is a request or the reason it is not one.
    Batch(Vec<Result<RerankRequest>>),
}

impl RerankCall {
    /// Reads a call's body: a request object or an array of them (object keys repeated are
    /// refused, as everywhere).
    ///
    /// # Errors
    /// [`Error::MalformedRequest`] for a body that is not UTF-8, not JSON, neither an object
    /// nor an array, an empty array, or (for one object) not a request.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let bad = Error::MalformedRequest;
        let text = std::str::from_utf8(body).map_err(|e| {
            bad(format!(
                "not valid UTF-8 (byte {} of the body)",
                e.valid_up_to()
            ))
        })?;
        if text.trim_start().starts_with('[') {
            let items: Vec<glorank_data::json::Strict> =
                serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            if items.is_empty() {
                return Err(bad("empty batch: give at least one request".into()));
            }
            return Ok(Self::Batch(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, s)| {
                        RerankRequest::from_strict(s)
                            .map_err(|e| bad(format!("batch index {index}: {e}")))
                    })
                    .collect(),
            ));
        }
        let value: glorank_data::json::Strict =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !value.value.is_object() {
            return Err(bad("expected a request object or an array of them".into()));
        }
        RerankRequest::from_strict(value)
            .map(Self::One)
            .map_err(|e| bad(e.to_string()))
    }
}

/// A request line of [`Reranker::serve_lines`] that goes on for this many times
/// `max_line_bytes` without a newline ends the stream (an input without end).
pub const ENDLESS_LINE_FACTOR: u64 = 64;

/// How a cold item (an id the model does not know) is seen: the codes its vector is given
/// and the known items that share the most of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdItem {
    /// The tokenizer's codes for the vector, one per level (a request adds the dedupe token
    /// that no other candidate of the request uses with this prefix).
    pub codes: Vec<u32>,
    /// How many leading codes the neighbours share with `codes`.
    pub shared_levels: usize,
    /// Known items whose semantic IDs share the longest prefix with `codes` (at most the
    /// number asked for, in item-table order): the items the policy cannot tell it from
    /// beyond that prefix.
    pub neighbours: Vec<String>,
}

/// A trained GloRank policy with everything needed to serve it: the semantic-ID table, the
/// item and user vocabularies, and the tokenizer for cold items.
///
/// `Reranker` is `Send + Sync`: concurrent callers share one instance (decoding needs no
/// lock; encoding a cold item takes a short one around the tokenizer).
pub struct Reranker {
    policy: Policy,
    /// The policy's weights on the host, built once at load on a CPU device (serving then
    /// decodes there; see [`HostPolicy`]).
    host: Option<HostPolicy>,
    ids: SemanticIds,
    /// Item id of each item index (the dataset's order).
    item_ids: Vec<String>,
    item_index: HashMap<String, usize>,
    user_index: HashMap<String, usize>,
    user_values: Vec<Vec<u32>>,
    tokenizer: Option<Mutex<Box<dyn ItemTokenizer>>>,
    uses_retriever_score: bool,
    /// Whether requests must carry `exposures`.
    uses_exposures: bool,
    uses_user_id: bool,
    device: Device,
    strategy: DecodeStrategy,
    prefix_penalty: f32,
    /// Whether the run directory has a manifest its artifacts were checked against.
    verified: bool,
}

impl std::fmt::Debug for Reranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reranker")
            .field("items", &self.ids.len())
            .field("strategy", &self.strategy)
            .field("prefix_penalty", &self.prefix_penalty)
            .finish()
    }
}

impl Reranker {
    /// Loads a run directory: `dataset.bin`, `semantic_ids.json`, the tokenizer when present
    /// (`tokenizer.json`), and the RL policy (`policy_rl/`), or the SFT one (`policy_sft/`)
    /// when there is no RL policy. It decodes as the run's evaluation did: with a beam of the
    /// run's `eval.beam` when its `config.toml` sets one above 1 (the demo presets: 8), else
    /// greedily; [`Reranker::with_strategy`] changes that.
    ///
    /// # Errors
    /// [`Error::Missing`] naming the first missing artifact; file errors; an unreadable
    /// `config.toml` (named with TOML's line and column).
    pub fn load(dir: &Path) -> Result<Self> {
        let policy_dir = crate::RunDir::new(dir).trained_policy()?;
        Self::load_policy(dir, &policy_dir)
    }

    /// Loads the policy in `policy_dir` with the run directory `dir`'s tables.
    ///
    /// # Errors
    /// As [`Reranker::load`].
    pub fn load_policy(dir: &Path, policy_dir: &Path) -> Result<Self> {
        let device = Device::flex();
        let run = crate::RunDir::new(dir);
        for f in [run.dataset_file(), run.semantic_ids_file()] {
            if !f.exists() {
                return Err(Error::Missing {
                    path: f,
                    hint: "not a run directory (run `glorank prepare` and `glorank tokenize`)"
                        .into(),
                });
            }
        }
        // The recorded artifacts must be the bytes the run wrote (the policy directory checks
        // its own checksums when it loads).
        let served = run.policy_artifact(policy_dir).unwrap_or("");
        run.verify(&["dataset", "tokenizer", served])?;
        let verified = run.manifest_file().exists();
        let ds = PreparedDataset::load(run.root())?;
        let ids = SemanticIds::load(&run.semantic_ids_file())?;
        // The same check evaluation makes: the table must describe this dataset's items.
        glorank_train::RequestBuilder::new(&ds, &ids)?;
        let (policy, policy_config) = Policy::load(policy_dir, &device)?;
        // Decode as the run's evaluation did: a pipeline run records its beam.
        let eval_beam = run.eval_beam()?;
        let tokenizer = if run.tokenizer_file().exists() {
            Some(Mutex::new(load_tokenizer(
                run.tokenizer_dir(),
                device.clone(),
            )?))
        } else {
            None
        };
        let user_values = ds
            .user_features
            .as_ref()
            .map(|u| u.fields.iter().map(|f| f.values.clone()).collect())
            .unwrap_or_default();
        let uses_user_id = ds.user_features.as_ref().is_some_and(|u| {
            u.fields
                .iter()
                .any(|f| f.name == glorank_data::USER_ID_FIELD)
        });
        Ok(Self {
            item_index: ds
                .item_ids
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
            item_ids: ds.item_ids.clone(),
            user_index: ds
                .user_ids
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
            user_values,
            host: HostPolicy::for_device(&policy, &device),
            policy,
            ids,
            tokenizer,
            uses_retriever_score: policy_config.inputs.retriever_score,
            uses_exposures: policy_config.inputs.exposures,
            uses_user_id,
            device,
            strategy: DecodeStrategy::beam_or_greedy(eval_beam),
            prefix_penalty: 0.0,
            verified,
        })
    }

    /// Whether the run directory had a manifest (`manifest.json`) that the dataset, the
    /// tokenizer and the served policy were checked against at load. `false`: a directory
    /// without one (written by hand or by an old version), whose files are served as they
    /// are; front-ends say so.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// Decodes with beam search of this width (1: greedy).
    pub fn with_beam(mut self, width: usize) -> Self {
        self.strategy = DecodeStrategy::beam_or_greedy(width);
        self
    }

    /// Serves JSON Lines: one request per line of `input` (blank lines skipped), one answer
    /// per line of `output`: `{"list": [...]}`, or `{"error": "...", "line": N}` for a line
    /// that is longer than `max_line_bytes`, not UTF-8, not a request or not servable (the
    /// next lines are still served). What `glorank rerank` does with standard input.
    ///
    /// A line longer than `max_line_bytes` is answered as soon as it passes the limit, and
    /// its rest skipped; a line that goes on for [`ENDLESS_LINE_FACTOR`] times the limit
    /// without a newline ends the stream with an error (an input without end, such as
    /// `/dev/zero`).
    ///
    /// # Errors
    /// Reading `input` or writing `output` failed (a closed pipe among them); an endless line
    /// ([`std::io::ErrorKind::InvalidData`], naming the line).
    pub fn serve_lines(
        &self,
        input: &mut dyn std::io::BufRead,
        output: &mut dyn std::io::Write,
        max_line_bytes: usize,
    ) -> std::io::Result<()> {
        use glorank_data::{BoundedLine, Skipped, read_line_bounded, skip_line};
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            let got = read_line_bounded(input, &mut buf, max_line_bytes)?;
            n += 1;
            let error = |message: String| serde_json::json!({"error": message, "line": n});
            let answer = match got {
                BoundedLine::Eof => break,
                BoundedLine::TooLong => {
                    writeln!(
                        output,
                        "{}",
                        error(format!(
                            "request longer than serve.max_line_bytes {max_line_bytes}"
                        ))
                    )?;
                    output.flush()?;
                    let cap = (max_line_bytes as u64).saturating_mul(ENDLESS_LINE_FACTOR);
                    match skip_line(input, cap)? {
                        Skipped::Newline { .. } => continue,
                        Skipped::Eof => break,
                        Skipped::Endless => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!(
                                    "line {n} has no end: more than {cap} bytes without a newline"
                                ),
                            ));
                        }
                    }
                }
                BoundedLine::Line => match std::str::from_utf8(&buf) {
                    Err(e) => error(format!(
                        "request is not valid UTF-8 (byte {} of the line)",
                        e.valid_up_to()
                    )),
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(line) => match RerankRequest::from_json(line) {
                        Err(e) => error(e.to_string()),
                        Ok(r) => match self.rerank(&r) {
                            Ok(list) => serde_json::json!({ "list": list }),
                            Err(e) => error(e.to_string()),
                        },
                    },
                },
            };
            writeln!(output, "{answer}")?;
        }
        output.flush()
    }

    /// Decodes as the `[serve]` section says: its `decode` strategy when it names one (the
    /// run's evaluation decoding otherwise) and its `prefix_penalty`.
    ///
    /// # Errors
    /// An invalid section (see [`crate::ServeConfig::validate`]).
    pub fn with_serving(self, serve: &crate::ServeConfig) -> Result<Self> {
        serve.validate()?;
        let r = self.with_prefix_penalty(serve.prefix_penalty)?;
        Ok(match serve.decode {
            Some(d) => r.with_strategy(d),
            None => r,
        })
    }

    /// Decodes with `strategy` (by default the run's evaluation decoding, see
    /// [`Reranker::load`]; sampling is seeded with 0 per call).
    pub fn with_strategy(mut self, strategy: DecodeStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Decodes with this prefix-repetition penalty (`glorank_trie::PrefixPenalty`: each
    /// token loses `penalty` per earlier item of the list sharing its semantic-ID prefix, so
    /// lists spread over clusters; 0, the default: none).
    ///
    /// # Errors
    /// [`Error::Trie`] for a negative or non-finite penalty.
    pub fn with_prefix_penalty(mut self, penalty: f32) -> Result<Self> {
        glorank_trie::check_prefix_penalty(penalty)?;
        self.prefix_penalty = penalty;
        Ok(self)
    }

    /// The prefix-repetition penalty of the decoding (0: none).
    pub fn prefix_penalty(&self) -> f32 {
        self.prefix_penalty
    }

    /// The decoding strategy of [`Reranker::rerank`] and [`Reranker::rerank_batch`].
    pub fn strategy(&self) -> DecodeStrategy {
        self.strategy
    }

    /// Number of items with a semantic ID (the items the model knows by id).
    pub fn num_items(&self) -> usize {
        self.ids.len()
    }

    /// The semantic ID of a known item (`None` for an id the model does not know: a cold
    /// item is encoded per request from its vector).
    pub fn semantic_id(&self, item: &str) -> Option<&[u32]> {
        self.item_index.get(item).and_then(|&i| self.ids.tuple(i))
    }

    /// The codes a cold item with side-feature `vector` gets, and up to `neighbours` known
    /// items with the longest common code prefix: what the policy sees of an item it never
    /// trained on.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the run has no tokenizer or the vector has the wrong
    /// size; tokenizer errors (a non-finite value).
    pub fn cold_item(&self, vector: &[f32], neighbours: usize) -> Result<ColdItem> {
        let codes = self.encode_cold(vector, "the vector")?;
        let shared = |t: &[u32]| t.iter().zip(&codes).take_while(|(a, b)| a == b).count();
        let shared_levels = self
            .ids
            .tuples()
            .iter()
            .map(|t| shared(t))
            .max()
            .unwrap_or(0);
        let neighbours = self
            .ids
            .tuples()
            .iter()
            .enumerate()
            .filter(|(_, t)| shared(t) == shared_levels)
            .take(neighbours)
            .map(|(i, _)| self.item_ids[i].clone())
            .collect();
        Ok(ColdItem {
            codes,
            shared_levels,
            neighbours,
        })
    }

    /// Whether requests must name a known `user` (the data had `user_id_feature`).
    pub fn uses_user_id(&self) -> bool {
        self.uses_user_id
    }

    /// Whether requests must carry `retriever_scores` (the policy was trained with them).
    pub fn uses_retriever_score(&self) -> bool {
        self.uses_retriever_score
    }

    /// Whether requests must carry `exposures` (the policy was trained with them).
    pub fn uses_exposures(&self) -> bool {
        self.uses_exposures
    }

    /// Items per generated list.
    pub fn list_len(&self) -> usize {
        self.policy.list_len()
    }

    /// The tokenizer's codes of one cold item's `vector` (`what` names it in errors).
    fn encode_cold(&self, vector: &[f32], what: &str) -> Result<Vec<u32>> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| {
            Error::InvalidRequest(format!(
                "{what}: this run directory has no tokenizer to encode cold items"
            ))
        })?;
        let tok = tok.lock().unwrap_or_else(|e| e.into_inner());
        let dim = tok.input_dim().unwrap_or(0);
        if vector.len() != dim {
            return Err(Error::InvalidRequest(format!(
                "{what} has {} values, the tokenizer expects {dim}",
                vector.len()
            )));
        }
        Ok(tok.encode(vector, dim)?.pop().unwrap_or_default())
    }

    /// The policy request of `r`.
    fn request(&self, r: &RerankRequest) -> Result<Request> {
        if r.candidates.len() < self.list_len() {
            return Err(Error::InvalidRequest(format!(
                "{} candidates, the model writes lists of {}",
                r.candidates.len(),
                self.list_len()
            )));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = r.candidates.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(Error::InvalidRequest(format!(
                "candidate `{dup}` appears twice"
            )));
        }
        let user = r.user.as_ref().and_then(|u| self.user_index.get(u));
        if self.uses_user_id && user.is_none() {
            return Err(Error::InvalidRequest(match &r.user {
                Some(u) => format!(
                    "unknown user `{u}`: this model was trained with user ids \
                     (data.user_id_feature) and serves the users of its training data"
                ),
                None => "this model was trained with user ids (data.user_id_feature): the \
                         request needs a `user` of its training data"
                    .into(),
            }));
        }
        let user_features = self
            .user_values
            .iter()
            .map(|vals| user.map_or(0, |&u| vals[u]))
            .collect();
        let history = r
            .history
            .iter()
            .filter_map(|h| {
                let i = *self.item_index.get(&h.item)?;
                Some(HistoryItem {
                    tuple: self.ids.tuple(i)?.to_vec(),
                    labels: h.labels,
                })
            })
            .collect();
        let mut candidates: Vec<Option<Vec<u32>>> = r
            .candidates
            .iter()
            .map(|c| {
                self.item_index
                    .get(c)
                    .and_then(|&i| self.ids.tuple(i))
                    .map(<[u32]>::to_vec)
            })
            .collect();
        // Cold candidates: semantic-ID prefix from the tokenizer, then a dedupe token no
        // other candidate of this request uses with that prefix.
        let mut used: HashSet<Vec<u32>> = candidates.iter().flatten().cloned().collect();
        for (k, slot) in candidates.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let id = &r.candidates[k];
            let v = r.candidate_vectors.get(id).ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "unknown item `{id}` has no entry in candidate_vectors (cold items need side features)"
                ))
            })?;
            let codes = self.encode_cold(v, &format!("candidate_vectors[`{id}`]"))?;
            let dedupe = (0..self.ids.dedupe_codes() as u32)
                .map(|d| {
                    let mut t = codes.clone();
                    t.push(d);
                    t
                })
                .find(|t| !used.contains(t))
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "cold item `{id}`: every dedupe code of its prefix is taken in this request"
                    ))
                })?;
            used.insert(dedupe.clone());
            *slot = Some(dedupe);
        }
        if r.retriever_scores
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| !x.is_finite()))
        {
            return Err(Error::InvalidRequest(
                "retriever_scores must be finite numbers".into(),
            ));
        }
        let n = r.candidates.len();
        let retriever_scores = per_candidate(
            r.retriever_scores.as_deref(),
            ("retriever_scores", "use_retriever_score"),
            n,
            self.uses_retriever_score,
        )?;
        let exposures = per_candidate(
            r.exposures.as_deref(),
            ("exposures", "use_exposures"),
            n,
            self.uses_exposures,
        )?;
        Ok(Request {
            user_features,
            history,
            candidates: candidates.into_iter().flatten().collect(),
            retriever_scores,
            exposures,
        })
    }

    /// Reranks one request: the generated list of candidate item ids, best first.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the problem (too few or repeated candidates, an
    /// unknown item without a vector, a vector of the wrong size).
    pub fn rerank(&self, request: &RerankRequest) -> Result<Vec<String>> {
        self.rerank_batch(std::slice::from_ref(request))
            .pop()
            .unwrap_or_else(|| Err(Error::InvalidRequest("empty batch".into())))
    }

    /// Reranks many requests in one batched decode; each request gets its own result, so
    /// one bad request does not fail the others.
    pub fn rerank_batch(&self, requests: &[RerankRequest]) -> Vec<Result<Vec<String>>> {
        self.rerank_batch_with(requests, self.strategy)
    }

    /// [`Reranker::rerank_batch`] with another decoding strategy than the configured one
    /// (a server chooses it per call). An invalid strategy (a beam wider than
    /// [`glorank_trie::MAX_BEAM_WIDTH`], a zero temperature) fails every request with its
    /// message.
    pub fn rerank_batch_with(
        &self,
        requests: &[RerankRequest],
        strategy: DecodeStrategy,
    ) -> Vec<Result<Vec<String>>> {
        let built: Vec<Result<Request>> = requests.iter().map(|r| self.request(r)).collect();
        let valid: Vec<Request> = built
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let decoded = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            Decoder::new(strategy, 0)
                .and_then(|d| d.with_prefix_penalty(self.prefix_penalty))
                .map_err(Error::from)
                .and_then(|mut d| {
                    let host = self.host.as_ref();
                    Ok(decode_with_host(
                        host,
                        &self.policy,
                        &valid,
                        &mut d,
                        &self.device,
                    )?)
                })
        };
        let mut lists = match decoded {
            Ok(l) => l.into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return built
                    .into_iter()
                    .map(|b| b.and_then(|_| Err(Error::InvalidRequest(msg.clone()))))
                    .collect();
            }
        };
        built
            .into_iter()
            .zip(requests)
            .map(|(b, r)| {
                b?;
                let mut best = lists
                    .next()
                    .ok_or_else(|| Error::InvalidRequest("decoding returned fewer lists".into()))?;
                let list = best.swap_remove(0);
                Ok(list
                    .items
                    .iter()
                    .map(|&p| r.candidates[p].clone())
                    .collect())
            })
            .collect()
    }
}
/// A per-candidate input of a request (`field`, read by policies trained with `option`),
/// checked: one value per candidate when given, present when `read`. Returns the values
/// when the policy reads them, else nothing.
fn per_candidate<T: Clone>(
    given: Option<&[T]>,
    (field, option): (&str, &str),
    candidates: usize,
    read: bool,
) -> Result<Vec<T>> {
    match given {
        Some(v) if v.len() != candidates => Err(Error::InvalidRequest(format!(
            "{} {field} for {candidates} candidates",
            v.len()
        ))),
        Some(v) if read => Ok(v.to_vec()),
        None if read => Err(Error::InvalidRequest(format!(
            "this policy was trained with {option}: the request needs {field} (one per candidate)"
        ))),
        _ => Ok(Vec::new()),
    }
}
