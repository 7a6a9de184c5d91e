//! How much of the best list a well-specified learner recovers from a synthetic run's
//! labels: a reference for what a reranker can learn from the same data (an estimate from
//! one well-chosen learner, not a proven bound).
//!
//! The synthetic world's pool feedback (`[data] pool_feedback`) labels every candidate with
//! one click drawn with probability `sigmoid(s(u, i))`, where `s(u, i) = base +
//! scale * <x_u, v_i> / sqrt(d) + b_i` (see `glorank_data::synthetic`). A logistic matrix
//! factorisation with a user embedding, an item embedding and an item bias is therefore the
//! world's own model family: fitted by maximum likelihood (L2-regularised SGD, rank,
//! regularisation and epoch chosen on the validation requests' log-loss) on the run's train
//! requests, it is exactly specified for these labels, and it reads the user's identity,
//! which GloRank and the baselines do not by default. Its estimate `s_hat(u, i)` is then
//! turned into lists two ways on the test requests:
//!
//! * **top estimated appeal**: the candidates sorted by `s_hat`;
//! * **estimated click model**: greedy slot by slot under the world's click model with
//!   `s_hat` for `s` and the cosine of the learned item vectors for the redundancy (the
//!   world's position decay and penalty weight are given to it).
//!
//! Each list's true expected clicks are divided by the best list's (the search with the true
//! model, `SyntheticWorld::best_list`), the "fraction of the best list", next to the
//! same fraction for the true model's top appeal and for every method in the run's
//! `predictions.jsonl`. It also prints how well `s_hat` tracks `s` on the test candidates.
//!
//! `cargo run --release -p glorank-examples --example learnability -- RUN`, for a run
//! directory of a synthetic world with pool feedback (`dataset.bin`, `predictions.jsonl`).
//!
//! * `--history`: the learner does not read the user's identity; its user vector is built
//!   from the request's history alone, as the networks see it (a vector per history item
//!   and label grade, summed, over the square root of the length), so the gap to a run
//!   without the flag is what the identity is worth.
//! * `--demonstration`: the learner is fitted to what SFT imitates instead of the labels (1
//!   for the candidates of each request's labels' demonstration, the top `slate_len` by
//!   grade, 0 for the rest), so the gap is what turning the labels into a demonstration
//!   loses.

use glorank::data::{PreparedDataset, RerankSample, SyntheticWorld};
use glorank::evaluation::Predictions;
use glorank::metrics::Summary;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One labelled (request, item) pair in dataset indices.
#[derive(Clone, Copy)]
struct Example {
    /// Index into the contexts (one per request).
    ctx: usize,
    item: usize,
    click: f64,
}

/// Who asks: the user, and the request's history (item, label grade 0-3: none, click, like,
/// star) as the networks see it.
struct Context {
    user: usize,
    history: Vec<(usize, u8)>,
}

/// Label grades a history item can have (none, click, like, star).
const GRADES: usize = 4;

/// How the learner represents the user.
#[derive(Clone, Copy, PartialEq)]
enum UserInput {
    /// A free vector per user id.
    Id,
    /// The request's history only, as the networks see it: the sum over the history of a
    /// vector per (item, label grade), over the square root of its length (asymmetric
    /// factorisation).
    History,
}

/// Logistic matrix factorisation: `s_hat(u, i) = g + <p_u, q_i> + c_i`, with `p_u` a free
/// vector per user or built from the history ([`UserInput`]).
#[derive(Clone)]
struct LogisticMf {
    rank: usize,
    input: UserInput,
    global: f64,
    /// Row-major `[users, rank]` ([`UserInput::Id`]) or `[GRADES * items, rank]`
    /// ([`UserInput::History`]: row `GRADES * item + grade`).
    user: Vec<f64>,
    /// Row-major `[items, rank]`.
    item: Vec<f64>,
    bias: Vec<f64>,
}

impl LogisticMf {
    fn new(users: usize, items: usize, rank: usize, input: UserInput, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut init =
            |n: usize| -> Vec<f64> { (0..n).map(|_| (rng.random::<f64>() - 0.5) * 0.2).collect() };
        let user_rows = match input {
            UserInput::Id => users,
            UserInput::History => GRADES * items,
        };
        Self {
            rank,
            input,
            global: -2.0,
            user: init(user_rows * rank),
            item: init(items * rank),
            bias: vec![0.0; items],
        }
    }

    /// The rows of the user table that make up `ctx`'s user vector, and their weight.
    fn user_rows(&self, ctx: &Context) -> (Vec<usize>, f64) {
        match self.input {
            UserInput::Id => (vec![ctx.user], 1.0),
            UserInput::History => (
                ctx.history
                    .iter()
                    .map(|&(i, grade)| GRADES * i + usize::from(grade))
                    .collect(),
                1.0 / (ctx.history.len().max(1) as f64).sqrt(),
            ),
        }
    }

    /// The user vector of `ctx`.
    fn user_vec(&self, ctx: &Context) -> Vec<f64> {
        let r = self.rank;
        let (rows, w) = self.user_rows(ctx);
        let mut p = vec![0.0; r];
        for row in rows {
            for (k, x) in p.iter_mut().enumerate() {
                *x += w * self.user[row * r + k];
            }
        }
        p
    }

    fn logit(&self, ctx: &Context, i: usize) -> f64 {
        self.logit_with(&self.user_vec(ctx), i)
    }

    /// The logits of `items` for `ctx`, its user vector built once.
    fn logits(&self, ctx: &Context, items: &[usize]) -> Vec<f64> {
        let p = self.user_vec(ctx);
        items.iter().map(|&i| self.logit_with(&p, i)).collect()
    }

    fn logit_with(&self, p: &[f64], i: usize) -> f64 {
        let r = self.rank;
        let q = &self.item[i * r..(i + 1) * r];
        self.global + p.iter().zip(q).map(|(a, b)| a * b).sum::<f64>() + self.bias[i]
    }

    /// One epoch of SGD on the logistic loss with L2 weight `l2`, in `order`.
    fn epoch(&mut self, contexts: &[Context], data: &[Example], order: &[usize], lr: f64, l2: f64) {
        let r = self.rank;
        for &n in order {
            let e = data[n];
            let ctx = &contexts[e.ctx];
            let p = self.user_vec(ctx);
            let grad = sigmoid(self.logit_with(&p, e.item)) - e.click;
            self.global -= lr * grad;
            self.bias[e.item] -= lr * (grad + l2 * self.bias[e.item]);
            let (rows, w) = self.user_rows(ctx);
            for (k, &pk) in p.iter().enumerate() {
                let qi = self.item[e.item * r + k];
                for &row in &rows {
                    let pu = self.user[row * r + k];
                    self.user[row * r + k] -= lr * (grad * qi * w + l2 * pu);
                }
                self.item[e.item * r + k] -= lr * (grad * pk + l2 * qi);
            }
        }
    }

    /// Mean logistic loss over `data`.
    fn log_loss(&self, contexts: &[Context], data: &[Example]) -> f64 {
        let total: f64 = data
            .iter()
            .map(|e| {
                let p = sigmoid(self.logit(&contexts[e.ctx], e.item)).clamp(1e-9, 1.0 - 1e-9);
                -(e.click * p.ln() + (1.0 - e.click) * (1.0 - p).ln())
            })
            .sum();
        total / data.len().max(1) as f64
    }

    /// Cosine of two items' learned vectors.
    fn cosine(&self, a: usize, b: usize) -> f64 {
        let r = self.rank;
        let qa = &self.item[a * r..(a + 1) * r];
        let qb = &self.item[b * r..(b + 1) * r];
        let dot: f64 = qa.iter().zip(qb).map(|(x, y)| x * y).sum();
        let na: f64 = qa.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb: f64 = qb.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb).max(1e-12)
    }
}

/// Logistic function.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// What the learner is fitted to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// Each candidate's click label.
    Clicks,
    /// 1 for the candidates of the labels' demonstration (the top `slate_len` by grade,
    /// what SFT imitates), 0 for the others.
    Demonstration,
}

/// Every candidate of every request as a labelled example; `contexts` gets one context
/// per request, in order.
fn examples(
    ds: &PreparedDataset,
    requests: &[RerankSample],
    target: Target,
    contexts: &mut Vec<Context>,
) -> Vec<Example> {
    let first = contexts.len();
    contexts.extend(requests.iter().map(|r| {
        let h = ds.history(r);
        let labels = ds.history_labels(r);
        Context {
            user: r.user as usize,
            history: h
                .items
                .iter()
                .zip(&labels)
                .map(|(&i, l)| (i as usize, l.grade().min(GRADES as u8 - 1)))
                .collect(),
        }
    }));
    requests
        .iter()
        .enumerate()
        .flat_map(|(n, r)| {
            let demo = match target {
                Target::Clicks => Vec::new(),
                Target::Demonstration => ds.label_demonstration(r),
            };
            r.candidates
                .iter()
                .zip(&r.labels)
                .enumerate()
                .map(move |(p, (&i, l))| Example {
                    ctx: first + n,
                    item: i as usize,
                    click: match target {
                        Target::Clicks => f64::from(u8::from(l.click())),
                        Target::Demonstration => f64::from(u8::from(demo.contains(&p))),
                    },
                })
        })
        .collect()
}

/// Fits one model: up to `MAX_EPOCHS` of SGD, stopping `PATIENCE` epochs after the best,
/// and keeping the epoch with the lowest validation log-loss.
fn fit(
    ds: &PreparedDataset,
    contexts: &[Context],
    (train, valid): (&[Example], &[Example]),
    (rank, l2, input): (usize, f64, UserInput),
) -> (LogisticMf, f64, usize) {
    const MAX_EPOCHS: usize = 60;
    const PATIENCE: usize = 4;
    let mut model = LogisticMf::new(ds.num_users(), ds.item_ids.len(), rank, input, 17);
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut best = (f64::INFINITY, 0usize);
    let mut kept: Option<LogisticMf> = None;
    for epoch in 1..=MAX_EPOCHS {
        for k in (1..order.len()).rev() {
            order.swap(k, rng.random_range(0..=k));
        }
        model.epoch(contexts, train, &order, 0.02, l2);
        let loss = model.log_loss(contexts, valid);
        if loss < best.0 {
            best = (loss, epoch);
            kept = Some(model.clone());
        } else if epoch - best.1 >= PATIENCE {
            break;
        }
    }
    (kept.unwrap_or(model), best.0, best.1)
}

/// Greedy list under the click model with estimated logits and redundancy: at each slot the
/// candidate with the highest estimated click probability below the items above it.
/// `scores[p]` is the estimated logit of `pool[p]`.
fn greedy_estimated(
    model: &LogisticMf,
    world: &SyntheticWorld,
    pool: &[usize],
    scores: &[f64],
    len: usize,
) -> Vec<usize> {
    let c = world.config();
    let mut list: Vec<usize> = Vec::with_capacity(len);
    for k in 0..len.min(pool.len()) {
        let next = pool
            .iter()
            .zip(scores)
            .filter(|(i, _)| !list.contains(i))
            .map(|(&i, &score)| {
                let redundancy = list
                    .iter()
                    .map(|&j| model.cosine(i, j).max(0.0))
                    .fold(0.0, f64::max);
                let v = score - c.position_decay * k as f64 - c.diversity_penalty * redundancy;
                (v, i)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, i)) = next {
            list.push(i);
        }
    }
    list
}

/// The first `len` of `items` by `scores` (one per item), highest first.
fn top_by(items: &[usize], scores: &[f64], len: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.into_iter().take(len).map(|p| items[p]).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    const USAGE: &str = "usage: learnability RUN [--demonstration] [--history]";
    let (mut target, mut input) = (Target::Clicks, UserInput::Id);
    let mut run: Option<PathBuf> = None;
    for a in &args {
        match a.as_str() {
            "--demonstration" => target = Target::Demonstration,
            "--history" => input = UserInput::History,
            flag if flag.starts_with("--") => return Err(format!("{flag}: {USAGE}").into()),
            path if run.is_none() => run = Some(path.into()),
            _ => return Err(USAGE.into()),
        }
    }
    let run = run.ok_or(USAGE)?;
    let learner = match input {
        UserInput::Id => "well-specified MF (user id)",
        UserInput::History => "well-specified MF (history)",
    };
    let ds = PreparedDataset::load(&run)?;
    let config = ds
        .synthetic
        .as_ref()
        .ok_or("not a synthetic run: dataset.bin has no world configuration")?;
    let world = SyntheticWorld::new(config)?;
    let world_user: Vec<usize> = ds
        .user_ids
        .iter()
        .map(|id| SyntheticWorld::user_index(id).ok_or(format!("user id {id:?}")))
        .collect::<Result<_, _>>()?;
    let world_item: Vec<usize> = ds
        .item_ids
        .iter()
        .map(|id| SyntheticWorld::item_index(id).ok_or(format!("item id {id:?}")))
        .collect::<Result<_, _>>()?;
    let len = config.slate_len;

    let mut contexts = Vec::new();
    let train = examples(&ds, &ds.train, target, &mut contexts);
    let valid = examples(&ds, &ds.valid, target, &mut contexts);
    let test_first = contexts.len();
    examples(&ds, &ds.test, target, &mut contexts);
    println!(
        "{} train requests ({} labelled pairs, {:.3} clicked), {} validation, {} test",
        ds.train.len(),
        train.len(),
        train.iter().map(|e| e.click).sum::<f64>() / train.len().max(1) as f64,
        ds.valid.len(),
        ds.test.len()
    );
    // Model selection on validation log-loss.
    let mut chosen: Option<(LogisticMf, f64)> = None;
    println!("| rank | L2 | validation log-loss | best epoch |");
    println!("|---|---|---|---|");
    for rank in [4, 8, 16] {
        for l2 in [0.003, 0.01, 0.03] {
            let (model, loss, epoch) = fit(&ds, &contexts, (&train, &valid), (rank, l2, input));
            println!("| {rank} | {l2} | {loss:.5} | {epoch} |");
            if chosen.as_ref().is_none_or(|(_, l)| loss < *l) {
                chosen = Some((model, loss));
            }
        }
    }
    let (model, _) = chosen.ok_or("no model fitted")?;
    println!("chosen: rank {}", model.rank);

    // Per test request: the estimate against the truth over its candidates, and each list's
    // true clicks against the best list's.
    let (mut sx, mut sy, mut sxx, mut syy, mut sxy, mut m) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    // list -> (true clicks, the best list's true clicks) per test request.
    let mut fractions: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    // Test request index -> (world user, the best list's true clicks).
    let mut best_clicks: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
    for (n, r) in ds.test.iter().enumerate() {
        let wu = world_user[r.user as usize];
        let pool: Vec<usize> = r.candidates.iter().map(|&i| i as usize).collect();
        let world_pool: Vec<usize> = pool.iter().map(|&i| world_item[i]).collect();
        let estimate = model.logits(&contexts[test_first + n], &pool);
        let truth: Vec<f64> = world_pool
            .iter()
            .map(|&i| world.relevance_logit(wu, i))
            .collect();
        for (&x, &y) in estimate.iter().zip(&truth) {
            (sx, sy, sxx, syy, sxy, m) = (
                sx + x,
                sy + y,
                sxx + x * x,
                syy + y * y,
                sxy + x * y,
                m + 1.0,
            );
        }
        let best: Vec<usize> = world
            .best_list(wu, &world_pool, len)
            .into_iter()
            .map(|p| world_pool[p])
            .collect();
        let best = world.expected_clicks(wu, &best);
        best_clicks.insert(n as u64, (wu, best));
        let to_world = |list: &[usize]| list.iter().map(|&i| world_item[i]).collect::<Vec<_>>();
        let mut by = |name: &str, list: Vec<usize>| {
            let clicks = world.expected_clicks(wu, &list);
            fractions
                .entry(name.to_string())
                .or_default()
                .push((clicks, best));
        };
        by("top appeal (true model)", top_by(&world_pool, &truth, len));
        by(
            &format!("{learner}: top estimated appeal"),
            to_world(&top_by(&pool, &estimate, len)),
        );
        let greedy = greedy_estimated(&model, &world, &pool, &estimate, len);
        by(
            &format!("{learner}: estimated click model"),
            to_world(&greedy),
        );
    }
    let corr = (sxy / m - sx / m * sy / m)
        / ((sxx / m - (sx / m).powi(2)).sqrt() * (syy / m - (sy / m).powi(2)).sqrt());
    println!("Pearson correlation of s_hat with s over the test candidates: {corr:.3}");

    // The run's own methods, by request index; a row computed above (the pipeline also
    // lists "top appeal (true model)") is not counted twice.
    let own: Vec<String> = fractions.keys().cloned().collect();
    let path = run.join("predictions.jsonl");
    if path.exists() {
        let predictions = Predictions::read(&path)?;
        for row in predictions.lines() {
            let bad = |what: &str| format!("{}: {what}", path.display());
            let request = row.request;
            let (method, Some(user)) = (&row.method, SyntheticWorld::user_index(&row.user)) else {
                return Err(bad(&format!("request {request}: not a synthetic user id")).into());
            };
            if own.iter().any(|o| o == method) {
                continue;
            }
            let items: Vec<usize> = row
                .list
                .iter()
                .map(|id| SyntheticWorld::item_index(id))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("a list item is not a synthetic item id"))?;
            let Some(&(test_user, best)) = best_clicks.get(&(request as u64)) else {
                return Err(bad(&format!("request {request} is not a test request")).into());
            };
            let same_pool = row.candidates.len() == ds.test[request].candidates.len()
                && row
                    .candidates
                    .iter()
                    .zip(&ds.test[request].candidates)
                    .all(|(id, &i)| *id == ds.item_ids[i as usize]);
            if user != test_user || !same_pool {
                return Err(bad(&format!(
                    "request {request} has another user or other candidates in dataset.bin: \
                     the predictions come from another run"
                ))
                .into());
            }
            fractions
                .entry(method.to_string())
                .or_default()
                .push((world.expected_clicks(user, &items), best));
        }
    }
    println!();
    println!(
        "| list | true clicks | mean true clicks over the best list's | mean per-request fraction (95% interval) |"
    );
    println!("|---|---|---|---|");
    for (name, pairs) in &fractions {
        let clicks: f64 = pairs.iter().map(|p| p.0).sum();
        let best: f64 = pairs.iter().map(|p| p.1).sum();
        let ratios: Vec<f64> = pairs.iter().map(|p| p.0 / p.1).collect();
        let s = Summary::from_values(&ratios)?;
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} ({:.3} to {:.3}) |",
            clicks / pairs.len() as f64,
            clicks / best,
            s.mean,
            s.ci_low,
            s.ci_high
        );
    }
    Ok(())
}
