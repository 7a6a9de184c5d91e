//! The residual-quantized VAE tokenizer on burn.
//!
//! `x [B, dim] -> encoder MLP -> z [B, latent] -> D residual quantisation levels -> z_q ->
//! decoder MLP -> x_hat [B, dim]`. Level `l` picks the nearest of its `K_l` codewords to the
//! residual left by levels `0..l`; the codes of an item are its semantic ID.
//!
//! Loss per batch (sums over features, means over the batch):
//! `||x - x_hat||^2 + sum_l ||sg(r_l) - e_l||^2 + beta * sum_l ||r_l - sg(e_l)||^2`
//! (reconstruction, codebook, commitment), with the straight-through estimator
//! `z_q = z + sg(sum_l e_l - z)` carrying the decoder's gradient to the encoder.
//!
//! All weights are drawn from the tokenizer's own seeded generator and batches are shuffled
//! with it, so a fit is reproducible and independent of burn's global RNG. The model code is
//! device-agnostic: it runs on the `flex` CPU backend by default and on any burn device
//! (`wgpu` with the feature) passed to [`RqVae::with_device`].

use crate::ids::{SemanticIds, TokenizerStats};
use crate::kmeans::{kmeans, nearest};
use crate::{ItemTokenizer, Result, TokenizerError, check_vectors, seeded_rng};
use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// File name of the RQ-VAE weights (burnpack) inside a tokenizer directory.
pub const WEIGHTS_FILE: &str = "rqvae.bpk";

/// Hyper-parameters of [`RqVae`], checked by [`RqVaeConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RqVaeConfig {
    /// Codebook size of each level (default `[256, 256, 256]`).
    pub codes_per_level: Vec<usize>,
    /// Requested dedupe vocabulary (default 32).
    pub dedupe_codes: usize,
    /// Latent dimension (default 32).
    pub latent_dim: usize,
    /// Hidden layer widths of the encoder; the decoder mirrors them (default `[128, 64]`).
    pub hidden_dims: Vec<usize>,
    /// Commitment weight beta (default 0.25).
    pub beta: f64,
    /// AdamW learning rate (default 1e-3).
    pub learning_rate: f64,
    /// AdamW weight decay (default 1e-4).
    pub weight_decay: f64,
    /// Items per batch (default 256).
    pub batch_size: usize,
    /// Maximum epochs (default 50).
    pub max_epochs: usize,
    /// Early stopping: epochs without a relative improvement of the reconstruction error by
    /// `min_improvement` before stopping (default 8); the best epoch's weights are kept.
    pub patience: usize,
    /// Relative improvement that resets the patience counter (default 1e-3).
    pub min_improvement: f64,
    /// Re-seed codes unused during this many steps with high-error residuals (default
    /// `Some(50)`; `None` disables dead-code reset).
    pub dead_code_steps: Option<usize>,
    /// Lloyd iterations of the k-means++ codebook initialisation (default 10).
    pub kmeans_init_iters: usize,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for RqVaeConfig {
    fn default() -> Self {
        Self {
            codes_per_level: vec![256; 3],
            dedupe_codes: 32,
            latent_dim: 32,
            hidden_dims: vec![128, 64],
            beta: 0.25,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            batch_size: 256,
            max_epochs: 50,
            patience: 8,
            min_improvement: 1e-3,
            dead_code_steps: Some(50),
            kmeans_init_iters: 10,
            seed: 0,
        }
    }
}

impl RqVaeConfig {
    /// `levels` levels of `codes` codes each, other fields default.
    pub fn new(levels: usize, codes: usize) -> Self {
        Self {
            codes_per_level: vec![codes; levels],
            ..Self::default()
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the latent dimension and hidden widths.
    pub fn with_shape(mut self, latent_dim: usize, hidden_dims: Vec<usize>) -> Self {
        self.latent_dim = latent_dim;
        self.hidden_dims = hidden_dims;
        self
    }

    /// Sets the epoch budget and the early-stopping patience.
    pub fn with_epochs(mut self, max_epochs: usize, patience: usize) -> Self {
        self.max_epochs = max_epochs;
        self.patience = patience;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets the learning rate.
    pub fn with_learning_rate(mut self, lr: f64) -> Self {
        self.learning_rate = lr;
        self
    }

    /// Sets the dead-code reset interval (`None` disables it).
    pub fn with_dead_code_steps(mut self, steps: Option<usize>) -> Self {
        self.dead_code_steps = steps;
        self
    }

    /// Checks every value (and, with `items`, that there are enough items for the codebooks).
    ///
    /// # Errors
    /// [`TokenizerError::InvalidConfig`] naming the field.
    pub fn validate(&self, items: Option<usize>) -> Result<()> {
        crate::check_levels(&self.codes_per_level, self.dedupe_codes, items)?;
        if self.latent_dim == 0 {
            return Err(TokenizerError::config("latent_dim", "must be > 0"));
        }
        if self.hidden_dims.contains(&0) {
            return Err(TokenizerError::config(
                "hidden_dims",
                "every width must be > 0",
            ));
        }
        for (name, v) in [("beta", self.beta), ("learning_rate", self.learning_rate)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(TokenizerError::config(
                    name,
                    format!("{v} must be finite and > 0"),
                ));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TokenizerError::config(
                "weight_decay",
                "must be finite and >= 0",
            ));
        }
        if !(self.min_improvement.is_finite() && self.min_improvement >= 0.0) {
            return Err(TokenizerError::config(
                "min_improvement",
                "must be finite and >= 0",
            ));
        }
        if self.batch_size == 0 || self.max_epochs == 0 || self.kmeans_init_iters == 0 {
            return Err(TokenizerError::config(
                "batch_size/max_epochs/kmeans_init_iters",
                "must be at least 1",
            ));
        }
        if self.dead_code_steps == Some(0) {
            return Err(TokenizerError::config(
                "dead_code_steps",
                "must be at least 1 (or None)",
            ));
        }
        Ok(())
    }
}

/// A multi-layer perceptron with ReLU between layers (none after the last).
#[derive(Module, Debug)]
pub struct Mlp {
    /// Weight of each layer, `[in, out]`.
    weights: Vec<Param<Tensor<2>>>,
    /// Bias of each layer, `[out]`.
    biases: Vec<Param<Tensor<1>>>,
}

impl Mlp {
    /// Layers `dims[0] -> dims[1] -> ...`, weights and biases uniform in
    /// `±1/sqrt(fan_in)` from `rng`.
    fn new(dims: &[usize], rng: &mut rand::rngs::ChaCha8Rng, device: &Device) -> Self {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for w in dims.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            };
            let wd = TensorData::new(draw(fan_in * fan_out), [fan_in, fan_out]);
            let bd = TensorData::new(draw(fan_out), [fan_out]);
            weights.push(Param::from_tensor(Tensor::from_data(wd, device)));
            biases.push(Param::from_tensor(Tensor::from_data(bd, device)));
        }
        Self { weights, biases }
    }

    /// `x [B, in] -> [B, out]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.weights.len().saturating_sub(1);
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            x = x.matmul(w.val()) + b.val().unsqueeze::<2>();
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// The RQ-VAE network: encoder, residual codebooks, decoder.
#[derive(Module, Debug)]
pub struct RqVaeModel {
    encoder: Mlp,
    decoder: Mlp,
    /// One codebook per level, `[K_l, latent]`.
    codebooks: Vec<Param<Tensor<2>>>,
}

/// Output of the residual quantiser for a batch.
struct Quantized {
    /// Straight-through quantised latent `[B, latent]`.
    z_q: Tensor<2>,
    /// Codes `[B, levels]`.
    codes: Tensor<2, Int>,
    /// Commitment loss (scalar `[1]`).
    commitment: Tensor<1>,
    /// Codebook loss (scalar `[1]`).
    codebook: Tensor<1>,
}

impl RqVaeModel {
    /// A freshly initialised network for `input_dim`-dimensional items; codebooks are drawn
    /// uniformly in `±1/sqrt(latent)` until [`RqVae::fit`] initialises them by k-means++.
    fn new(
        config: &RqVaeConfig,
        input_dim: usize,
        rng: &mut rand::rngs::ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let mut enc_dims = vec![input_dim];
        enc_dims.extend(&config.hidden_dims);
        enc_dims.push(config.latent_dim);
        let dec_dims: Vec<usize> = enc_dims.iter().rev().copied().collect();
        let encoder = Mlp::new(&enc_dims, rng, device);
        let decoder = Mlp::new(&dec_dims, rng, device);
        let bound = 1.0 / (config.latent_dim as f32).sqrt();
        let codebooks = config
            .codes_per_level
            .iter()
            .map(|&k| {
                let v: Vec<f32> = (0..k * config.latent_dim)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                Param::from_tensor(Tensor::from_data(
                    TensorData::new(v, [k, config.latent_dim]),
                    device,
                ))
            })
            .collect();
        Self {
            encoder,
            decoder,
            codebooks,
        }
    }

    /// Residual quantisation of `z [B, latent]`.
    fn quantize(&self, z: Tensor<2>) -> Quantized {
        let device = z.device();
        let [b, _] = z.dims();
        let mut residual = z.clone();
        let mut quant = z.zeros_like();
        let mut codes = Vec::with_capacity(self.codebooks.len());
        let mut commitment = Tensor::<1>::zeros([1], &device);
        let mut codebook = Tensor::<1>::zeros([1], &device);
        for cb in &self.codebooks {
            let c = cb.val(); // [K, latent]
            let dist = residual.clone().powi_scalar(2).sum_dim(1)
                - residual
                    .clone()
                    .matmul(c.clone().transpose())
                    .mul_scalar(2.0)
                + c.clone().powi_scalar(2).sum_dim(1).transpose(); // [B, K]
            let idx = dist.argmin(1); // [B, 1]
            let q = c.select(0, idx.clone().flatten::<1>(0, 1)); // [B, latent]
            codebook = codebook
                + (q.clone() - residual.clone().detach())
                    .powi_scalar(2)
                    .sum()
                    .div_scalar(b as f32)
                    .reshape([1]);
            commitment = commitment
                + (residual.clone() - q.clone().detach())
                    .powi_scalar(2)
                    .sum()
                    .div_scalar(b as f32)
                    .reshape([1]);
            quant = quant + q.clone();
            residual = residual - q.detach();
            codes.push(idx);
        }
        let z_q = z.clone() + (quant - z).detach();
        Quantized {
            z_q,
            codes: Tensor::cat(codes, 1),
            commitment,
            codebook,
        }
    }

    /// Training loss and codes of a batch `x [B, dim]`.
    fn loss(&self, x: Tensor<2>, beta: f64) -> (Tensor<1>, Tensor<2, Int>) {
        let [b, _] = x.dims();
        let z = self.encoder.forward(x.clone());
        let q = self.quantize(z);
        let x_hat = self.decoder.forward(q.z_q);
        let recon = (x_hat - x)
            .powi_scalar(2)
            .sum()
            .div_scalar(b as f32)
            .reshape([1]);
        let total = recon + q.codebook + q.commitment.mul_scalar(beta as f32);
        (total, q.codes)
    }
}

/// The RQ-VAE tokenizer: configuration, device, fitted network and statistics.
#[derive(Debug, Clone)]
pub struct RqVae {
    config: RqVaeConfig,
    device: Device,
    input_dim: usize,
    model: Option<RqVaeModel>,
    stats: Option<TokenizerStats>,
}

/// Row-major host rows as a `[rows, dim]` tensor.
fn rows_tensor(data: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(data.to_vec(), [data.len() / dim, dim]),
        device,
    )
}

/// Host copy of a float tensor.
fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

impl RqVae {
    /// An unfitted tokenizer on the `flex` CPU device.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidConfig`] for an invalid configuration.
    pub fn new(config: RqVaeConfig) -> Result<Self> {
        Self::with_device(config, Device::flex())
    }

    /// An unfitted tokenizer on `device` (a plain device; training uses its autodiff view).
    ///
    /// # Errors
    /// [`TokenizerError::InvalidConfig`] for an invalid configuration.
    pub fn with_device(config: RqVaeConfig, device: Device) -> Result<Self> {
        config.validate(None)?;
        Ok(Self {
            config,
            device,
            input_dim: 0,
            model: None,
            stats: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RqVaeConfig {
        &self.config
    }

    /// The fitted network, if any.
    pub fn model(&self) -> Option<&RqVaeModel> {
        self.model.as_ref()
    }

    /// Latents `z = encoder(x)` of every row, on the host, in batches.
    fn encode_latent(&self, model: &RqVaeModel, data: &[f32], dim: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(data.len() / dim * self.config.latent_dim);
        for chunk in data.chunks(4096 * dim) {
            let z = model.encoder.forward(rows_tensor(chunk, dim, &self.device));
            out.extend(host(z));
        }
        out
    }

    /// Codes and mean squared reconstruction error of every row under `model` (plain device).
    fn codes_and_error(
        &self,
        model: &RqVaeModel,
        data: &[f32],
        dim: usize,
    ) -> (Vec<Vec<u32>>, f64) {
        let levels = self.config.codes_per_level.len();
        let mut codes = Vec::with_capacity(data.len() / dim);
        let mut err = 0.0f64;
        for chunk in data.chunks(4096 * dim) {
            let x = rows_tensor(chunk, dim, &self.device);
            let q = model.quantize(model.encoder.forward(x.clone()));
            let x_hat = model.decoder.forward(q.z_q);
            err += f64::from((x_hat - x).powi_scalar(2).sum().into_scalar::<f32>());
            let flat: Vec<u32> = q
                .codes
                .into_data()
                .iter::<i64>()
                .map(|c| c as u32)
                .collect();
            codes.extend(flat.chunks(levels).map(<[u32]>::to_vec));
        }
        (codes, err / (data.len() / dim).max(1) as f64)
    }

    /// k-means++ (+ Lloyd) initialisation of every level on the residuals of the encoder's
    /// initial latents.
    fn init_codebooks(&self, model: &mut RqVaeModel, data: &[f32], dim: usize, train: &Device) {
        let latent = self.config.latent_dim;
        let mut residual = self.encode_latent(&model.valid(), data, dim);
        for (l, &k) in self.config.codes_per_level.iter().enumerate() {
            let km = kmeans(
                &residual,
                latent,
                k,
                self.config.kmeans_init_iters,
                0.0,
                self.config.seed ^ (0xC0DE + l as u64),
            );
            for (r, &a) in residual.chunks_mut(latent).zip(&km.assign) {
                let c = &km.centers[a as usize * latent..(a as usize + 1) * latent];
                r.iter_mut().zip(c).for_each(|(x, y)| *x -= y);
            }
            model.codebooks[l] = Param::from_tensor(Tensor::from_data(
                TensorData::new(km.centers, [k, latent]),
                train,
            ));
        }
    }

    /// Re-seeds the codes of each level that no item of the last steps used with the
    /// residuals of `batch` that are farthest from their nearest code.
    fn reset_dead_codes(
        &self,
        model: &mut RqVaeModel,
        usage: &mut [Vec<u32>],
        batch: &[f32],
        dim: usize,
        train: &Device,
    ) {
        let latent = self.config.latent_dim;
        let valid = model.valid();
        let mut residual = self.encode_latent(&valid, batch, dim);
        for (l, used) in usage.iter_mut().enumerate() {
            let mut cb = host(valid.codebooks[l].val());
            let dead: Vec<usize> = (0..used.len()).filter(|&c| used[c] == 0).collect();
            let mut errs: Vec<(f32, usize)> = residual
                .chunks(latent)
                .enumerate()
                .map(|(i, r)| (nearest(r, &cb, latent).1, i))
                .collect();
            errs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (&c, &(_, i)) in dead.iter().zip(&errs) {
                cb[c * latent..(c + 1) * latent]
                    .copy_from_slice(&residual[i * latent..(i + 1) * latent]);
            }
            if !dead.is_empty() {
                model.codebooks[l] = Param::from_tensor(Tensor::from_data(
                    TensorData::new(cb.clone(), [used.len(), latent]),
                    train,
                ));
            }
            for r in residual.chunks_mut(latent) {
                let (k, _) = nearest(r, &cb, latent);
                let c = &cb[k as usize * latent..(k as usize + 1) * latent];
                r.iter_mut().zip(c).for_each(|(x, y)| *x -= y);
            }
            used.fill(0);
        }
    }

    /// Writes `tokenizer.json` (configuration, input dimension, statistics) and the weights
    /// (`rqvae.bpk`) into `dir`.
    ///
    /// # Errors
    /// [`TokenizerError::NotFitted`], or I/O errors naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let model = self.model.as_ref().ok_or(TokenizerError::NotFitted)?;
        glorank_nn::persist::save_weights(model, &dir.join(WEIGHTS_FILE))?;
        let saved = crate::Saved::RqVae {
            config: self.config.clone(),
            input_dim: self.input_dim,
            stats: self.stats.clone(),
        };
        glorank_nn::persist::save_json(&dir.join(crate::TOKENIZER_FILE), &saved)?;
        Ok(())
    }

    /// Rebuilds a saved tokenizer on `device` from its configuration and weights.
    pub(crate) fn from_saved(
        config: RqVaeConfig,
        input_dim: usize,
        stats: Option<TokenizerStats>,
        dir: &Path,
        device: Device,
    ) -> Result<Self> {
        config.validate(None)?;
        let mut rng = seeded_rng(config.seed, 0);
        let model = glorank_nn::persist::load_weights(
            RqVaeModel::new(&config, input_dim, &mut rng, &device),
            &dir.join(WEIGHTS_FILE),
        )?;
        Ok(Self {
            config,
            device,
            input_dim,
            model: Some(model),
            stats,
        })
    }
}

impl ItemTokenizer for RqVae {
    fn fit(&mut self, vectors: &[f32], dim: usize) -> Result<SemanticIds> {
        let start = Instant::now();
        let n = check_vectors(vectors, dim)?;
        self.config.validate(Some(n))?;
        let cfg = self.config.clone();
        let train = self.device.clone().autodiff();
        let mut rng = seeded_rng(cfg.seed, 0x5251_5641);
        let mut model = RqVaeModel::new(&cfg, dim, &mut rng, &train);
        self.init_codebooks(&mut model, vectors, dim, &train);
        let mut optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .init();
        let mut order: Vec<usize> = (0..n).collect();
        let mut batch = Vec::with_capacity(cfg.batch_size * dim);
        let mut usage: Vec<Vec<u32>> = cfg.codes_per_level.iter().map(|&k| vec![0; k]).collect();
        let mut steps_since_reset = 0usize;
        let mut best: Option<(f64, RqVaeModel)> = None;
        let mut since_best = 0;
        let mut epochs = 0;
        for _ in 0..cfg.max_epochs {
            epochs += 1;
            order.shuffle(&mut rng);
            for idx in order.chunks(cfg.batch_size) {
                batch.clear();
                for &i in idx {
                    batch.extend_from_slice(&vectors[i * dim..(i + 1) * dim]);
                }
                let x = rows_tensor(&batch, dim, &train);
                let (loss, codes) = model.loss(x, cfg.beta);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(cfg.learning_rate, model, grads);
                if let Some(every) = cfg.dead_code_steps {
                    let levels = usage.len();
                    let flat: Vec<i64> = codes.into_data().iter::<i64>().collect();
                    for row in flat.chunks(levels) {
                        for (l, &c) in row.iter().enumerate() {
                            usage[l][c as usize] += 1;
                        }
                    }
                    steps_since_reset += 1;
                    if steps_since_reset >= every {
                        self.reset_dead_codes(&mut model, &mut usage, &batch, dim, &train);
                        steps_since_reset = 0;
                    }
                }
            }
            let (_, err) = self.codes_and_error(&model.valid(), vectors, dim);
            if !err.is_finite() {
                return Err(TokenizerError::Diverged { epoch: epochs });
            }
            match &best {
                Some((b, _)) if err > b * (1.0 - cfg.min_improvement) => {
                    since_best += 1;
                    if err < *b {
                        best = Some((err, model.clone()));
                    }
                    if since_best >= cfg.patience {
                        break;
                    }
                }
                _ => {
                    best = Some((err, model.clone()));
                    since_best = 0;
                }
            }
        }
        let model = best.map(|(_, m)| m).unwrap_or(model).valid();
        self.input_dim = dim;
        let (codes, err) = self.codes_and_error(&model, vectors, dim);
        self.model = Some(model);
        let (ids, report) =
            SemanticIds::from_codes(codes.clone(), &cfg.codes_per_level, cfg.dedupe_codes)?;
        let mut stats = TokenizerStats::compute(
            "rqvae",
            &codes,
            &cfg.codes_per_level,
            report,
            ids.dedupe_codes(),
        );
        stats.reconstruction_error = err;
        stats.mean_squared_norm = crate::mean_sq_norm(vectors, dim);
        stats.iterations = epochs;
        stats.fit_seconds = start.elapsed().as_secs_f64();
        crate::warn_overflow(&stats, cfg.dedupe_codes);
        self.stats = Some(stats);
        Ok(ids)
    }

    fn encode(&self, vectors: &[f32], dim: usize) -> Result<Vec<Vec<u32>>> {
        let model = self.model.as_ref().ok_or(TokenizerError::NotFitted)?;
        if dim != self.input_dim {
            return Err(TokenizerError::InvalidInput(format!(
                "vectors have dimension {dim}, the tokenizer was fitted on {}",
                self.input_dim
            )));
        }
        check_vectors(vectors, dim)?;
        Ok(self.codes_and_error(model, vectors, dim).0)
    }

    fn stats(&self) -> Option<&TokenizerStats> {
        self.stats.as_ref()
    }

    fn codes_per_level(&self) -> &[usize] {
        &self.config.codes_per_level
    }

    fn input_dim(&self) -> Option<usize> {
        self.model.as_ref().map(|_| self.input_dim)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        RqVae::save(self, dir)
    }
}
