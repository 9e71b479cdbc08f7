//! The packed inference engine: a packed model's weights on the GPU once, and per batch size a
//! `Plan` (every buffer and dispatch built once, one compute pass and one submit per batch).
//!
//! The graph of a plan walks the model's description (model::arch) as the training graph does
//! (x = the activations entering a binary conv):
//!   stem        conv::forward_with (float; tiles for its short reduction) -> batchnorm (in
//!               place, with the stem's hardtanh) [-> the float path's max pool (ops::pool)]
//!   binary conv mean_pack(x) -> binconv with the epilogue fused:
//!               [hardtanh](BN(alpha * dot) [+ residual])
//!   basic block a1 = ht(BN(bconv1(x))) (epilogue), out = ht(BN(bconv2(a1)) + shortcut(x)),
//!               the option-A shortcut read inside the epilogue, a binary projection shortcut
//!               (conv + BN) one more fused conv on x's packed bits, a full-precision one (the
//!               ImageNet ResNets' downsample) conv::forward -> batchnorm (in place) on x.
//!   Bi-Real block
//!               out1 = ht(BN(bconv1(x)) + shortcut(x)), out = ht(BN(bconv2(out1)) + out1).
//!   plain unit  with a max pool between the conv and its BN (vgg_small's convs 1, 3, 5) the
//!               conv writes alpha * dot and maxpool_batchnorm applies the pool, BN and
//!               hardtanh; without, the BN and hardtanh are the conv's epilogue.
//!   head        pool + norm + linear: avgpool_batchnorm (global average pool, or an average
//!               pool whose window is the whole map, + BN1d) ->
//!               ops::linear; flatten + linear: ops::linear on the flattened features.
//! Activations live in a few reused buffers ("slots", each sized for the largest activation of
//! the batch) and one buffer of packed bits, so memory does not grow with depth.
//!
//! Every float operation is the float evaluation path's (model::network, Mode::Eval): the same
//! stem conv kernel with its sums in the same order, the BatchNorms evaluated term by term as ops::batchnorm does, the
//! per-sample mean summed in standardize.wgsl's order, the same pools, adds and classifier. So the
//! logits are the float path's bit for bit wherever the shader compiler rounds both alike (the
//! tests see this on lavapipe); the XOR-popcount dot is exact either way. Only the weight side
//! (standardisation, rotation, sign) is gone: it was computed once, at export.

use super::kernels::{self, Epilogue, Residual};
use super::model::{ModelMeta, PackedModel, BATCHNORM_FIELDS};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::arch::{
    Architecture, BatchNorm, Block, BlockKind, Conv, Head, Layer, Pool, Shortcut, Stem, Unit,
    MAX_POOL_2X2,
};
use crate::model::network::is_whole_map_average;
use crate::ops::conv::{self, ConvShape, Tiles};
use crate::ops::linear;
use crate::ops::pool::{self, MaxPool};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;

/// Output pixels per workgroup of the fused conv (kernels::binconv): bounds the batch so the
/// first layer's grid stays within 65535 workgroups.
const CONV_ROWS_PER_WORKGROUP: usize = 64;
/// Plans kept for reuse (the chunk size of a large request and its remainder).
const CACHED_PLANS: usize = 2;

/// Tiles of the float stem conv, whose reduction is short (Ci*9 = 9 or 27 for the CIFAR stems,
/// 147 for the ImageNet 7x7): staging 4 input channels at a time instead of
/// conv::Tiles::for_columns' 16 makes the CIFAR stems 2.7x (16 output channels) to 4x (64)
/// faster on lavapipe. The sums stay the float path's bit for bit: every output
/// accumulates its taps and channels in the same order with one fma each, whatever the tiles
/// (a staged zero adds exactly 0).
fn stem_tiles(co: usize) -> Tiles {
    Tiles {
        bm: 64,
        bn: if co <= 16 { 16 } else { 64 },
        bk: 4,
    }
}

/// (largest activation, largest packed activation) of one sample, in 32-bit elements.
fn per_sample_extent(arch: &Architecture, input: [usize; 3]) -> Result<(usize, usize)> {
    let trace = arch.trace(input)?;
    let words = trace
        .convs
        .iter()
        .filter(|t| t.conv.is_binary())
        .map(|t| {
            let [c, h, w] = t.input;
            kernels::packed_len(1, c, h, w)
        })
        .max()
        .unwrap_or(0);
    Ok((trace.largest_activation(), words))
}

/// A packed model on the GPU.
pub struct Engine {
    pub meta: ModelMeta,
    /// The model file (or "(in memory)"), named in errors.
    pub origin: String,
    /// The model's description, walked by every plan.
    arch: Architecture,
    weights: HashMap<String, Tensor>,
    per_sample_floats: usize,
    per_sample_words: usize,
    /// The largest batch the adapter's limits allow.
    adapter_max_batch: usize,
    max_batch: usize,
    plans: Vec<Plan>,
}

impl Engine {
    /// Loads a packed model file onto the GPU.
    pub fn load(gpu: &Gpu, path: &std::path::Path) -> Result<Engine> {
        Engine::new(gpu, &PackedModel::load(path)?)
    }

    /// Uploads the weights (and the epilogue terms derived from them) once.
    pub fn new(gpu: &Gpu, model: &PackedModel) -> Result<Engine> {
        model.validate()?;
        let meta = model.meta.clone();
        let arch = meta.spec().arch;
        let mut floats: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut words: Vec<(String, Vec<usize>, Vec<u32>)> = Vec::new();
        let copy = |name: String| -> Result<(String, Vec<usize>, Vec<f32>)> {
            let values = model.f32(&name)?.to_vec();
            let shape = model.tensors.get(&name).map(|t| t.shape.clone());
            Ok((name, shape.unwrap_or_default(), values))
        };
        for layer in arch.layers() {
            match layer {
                Layer::Conv(c) if c.is_binary() => {
                    floats.push(copy(format!("{}.alpha", c.name))?);
                    let bits = model.interleaved_bits(&c.name, c.ci)?;
                    words.push((format!("{}.bits", c.name), vec![bits.len()], bits));
                }
                Layer::Conv(c) => floats.push(copy(format!("{}.weight", c.name))?),
                Layer::BatchNorm(bn) => {
                    // [C, 4]: the four per-channel terms side by side, as the kernels read them.
                    let fields = BATCHNORM_FIELDS
                        .iter()
                        .map(|f| model.f32(&format!("{}.{f}", bn.name)))
                        .collect::<Result<Vec<_>>>()?;
                    let terms = (0..bn.c).flat_map(|i| fields.iter().map(move |f| f[i]));
                    floats.push((format!("{}.bn", bn.name), vec![bn.c, 4], terms.collect()));
                }
                Layer::Linear(l) => {
                    floats.push(copy(format!("{}.weight", l.name))?);
                    floats.push(copy(format!("{}.bias", l.name))?);
                }
            }
        }
        let mut weights = HashMap::new();
        let float_shapes: Vec<(String, Vec<usize>)> = floats
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect();
        let (_, views) = gpu.arena("packed float weights", &float_shapes)?;
        for (view, (name, _, data)) in views.into_iter().zip(&floats) {
            gpu.write(&view, data);
            weights.insert(name.clone(), view);
        }
        let word_shapes: Vec<(String, Vec<usize>)> = words
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect();
        let (_, views) = gpu.arena("packed binary weights", &word_shapes)?;
        for (view, (name, _, data)) in views.into_iter().zip(&words) {
            gpu.write(&view, data);
            weights.insert(name.clone(), view);
        }

        let (per_sample_floats, per_sample_words) = per_sample_extent(&arch, meta.input)
            .with_context(|| format!("{}: the model's input {:?}", model.origin, meta.input))?;
        let limit = gpu.max_binding_bytes() as usize / 4;
        let [_, h, w] = meta.input;
        let max_batch = [
            limit / per_sample_floats.max(1),
            limit / per_sample_words.max(1),
            gpu.limits.max_compute_workgroups_per_dimension as usize,
            gpu.limits.max_compute_workgroups_per_dimension as usize * CONV_ROWS_PER_WORKGROUP
                / (h * w),
        ]
        .into_iter()
        .min()
        .unwrap_or(1);
        if max_batch == 0 {
            bail!(
                "{}: one {:?} image needs more than the adapter's {} MiB per storage binding",
                model.origin,
                meta.input,
                gpu.max_binding_bytes() >> 20
            );
        }
        Ok(Engine {
            meta,
            origin: model.origin.clone(),
            arch,
            weights,
            per_sample_floats,
            per_sample_words,
            adapter_max_batch: max_batch,
            max_batch,
            plans: Vec::new(),
        })
    }

    /// The largest batch one plan runs (larger requests are split into chunks of this size):
    /// bounded by the adapter's storage binding and workgroup limits.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Caps the batch of one plan at `n` (at most what the adapter allows), e.g. to bound the
    /// memory a large request takes; larger requests run in chunks.
    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = n.clamp(1, self.adapter_max_batch);
        self.plans.clear();
    }

    fn weight(&self, name: &str) -> Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| anyhow!("packed engine: no weight {name}"))
    }

    /// Builds the buffers and dispatches of one forward at `batch` (1..=max_batch).
    pub fn plan(&self, gpu: &Gpu, batch: usize) -> Result<Plan> {
        if batch == 0 || batch > self.max_batch {
            bail!(
                "a plan takes 1 to {} images on this adapter, asked for {batch}",
                self.max_batch
            );
        }
        let [c, h, w] = self.meta.input;
        let input = gpu.try_tensor("packed input", &[batch, c, h, w])?;
        let logits = gpu.try_tensor("packed logits", &[batch, self.meta.classes.len()])?;
        let mut b = Builder {
            gpu,
            engine: self,
            capacity: batch * self.per_sample_floats,
            slots: Vec::new(),
            bits: gpu.try_tensor("packed bits", &[batch * self.per_sample_words.max(1)])?,
            dispatches: Vec::new(),
        };
        b.build(&input, &logits).with_context(|| {
            format!(
                "building the packed {} at batch {batch}",
                self.meta.kind.name()
            )
        })?;
        Ok(Plan {
            batch,
            input,
            logits,
            dispatches: b.dispatches,
        })
    }

    /// Checks an input of `shape` [N, C, H, W] against the model; the error names the model file.
    pub fn check_input(&self, input: &[f32], shape: [usize; 4]) -> Result<()> {
        let [n, c, h, w] = shape;
        let [mc, mh, mw] = self.meta.input;
        if c != mc {
            bail!(
                "{}: wrong channel count: the model takes {mc}-channel {mh}x{mw} images, the \
                 input has {c} channel(s)",
                self.origin
            );
        }
        if (h, w) != (mh, mw) {
            bail!(
                "{}: the model takes {mh}x{mw} images, the input is {h}x{w}",
                self.origin
            );
        }
        if input.len() != n * c * h * w {
            bail!(
                "{}: {} values for an input of shape {shape:?} ({} expected)",
                self.origin,
                input.len(),
                n * c * h * w
            );
        }
        Ok(())
    }

    /// Logits [N, classes] of a batch of any size (chunks of at most `max_batch`, each one
    /// submit); the plans of the last two chunk sizes are kept for the next call.
    pub fn run(&mut self, gpu: &Gpu, input: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        self.check_input(input, shape)?;
        let n = shape[0];
        let per_image = shape[1] * shape[2] * shape[3];
        let mut logits = Vec::with_capacity(n * self.meta.classes.len());
        let mut start = 0;
        while start < n {
            let m = (n - start).min(self.max_batch);
            let i = self.plan_index(gpu, m)?;
            logits.extend(
                self.plans[i].run(gpu, &input[start * per_image..(start + m) * per_image])?,
            );
            start += m;
        }
        Ok(logits)
    }

    fn plan_index(&mut self, gpu: &Gpu, batch: usize) -> Result<usize> {
        if let Some(i) = self.plans.iter().position(|p| p.batch == batch) {
            return Ok(i);
        }
        let plan = self.plan(gpu, batch)?;
        if self.plans.len() == CACHED_PLANS {
            self.plans.remove(0);
        }
        self.plans.push(plan);
        Ok(self.plans.len() - 1)
    }
}

/// One forward at a fixed batch size: input, logits and every dispatch, built once.
pub struct Plan {
    pub batch: usize,
    /// [N, C, H, W], normalised images.
    pub input: Tensor,
    /// [N, classes].
    pub logits: Tensor,
    dispatches: Vec<Dispatch>,
}

impl Plan {
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// Records the whole forward (input -> logits) into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }

    /// Uploads `input` (exactly `batch` images), runs the forward in one submit and reads the
    /// logits back.
    pub fn run(&self, gpu: &Gpu, input: &[f32]) -> Result<Vec<f32>> {
        if input.len() != self.input.len() {
            bail!(
                "plan for {} images of shape {:?}: got {} values",
                self.batch,
                &self.input.shape[1..],
                input.len()
            );
        }
        gpu.write(&self.input, input);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record(&mut pass);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.read_f32(&self.logits)
    }
}

/// An activation: the slot holding it and its view [N, C, H, W] (or [N, C]).
#[derive(Clone)]
struct Act {
    slot: usize,
    t: Tensor,
}

impl Act {
    fn dims(&self) -> [usize; 4] {
        match *self.t.shape.as_slice() {
            [n, c, h, w] => [n, c, h, w],
            [n, c] => [n, c, 1, 1],
            _ => [0; 4],
        }
    }
}

struct Builder<'a> {
    gpu: &'a Gpu,
    engine: &'a Engine,
    /// Elements of every slot.
    capacity: usize,
    slots: Vec<Tensor>,
    bits: Tensor,
    dispatches: Vec<Dispatch>,
}

impl Builder<'_> {
    /// A slot not among `busy` (allocated on first use).
    fn acquire(&mut self, busy: &[usize]) -> Result<usize> {
        if let Some(i) = (0..self.slots.len()).find(|i| !busy.contains(i)) {
            return Ok(i);
        }
        let label = format!("packed activations {}", self.slots.len());
        self.slots
            .push(self.gpu.try_tensor(&label, &[self.capacity])?);
        Ok(self.slots.len() - 1)
    }

    /// A new activation of `shape` in a slot not among `busy`.
    fn act(&mut self, shape: &[usize], busy: &[usize]) -> Result<Act> {
        let slot = self.acquire(busy)?;
        let len: usize = shape.iter().product();
        if len > self.capacity {
            bail!(
                "activation {shape:?} exceeds the slot size {} (a bug in per_sample_extent)",
                self.capacity
            );
        }
        let whole = &self.slots[slot];
        Ok(Act {
            slot,
            t: Tensor {
                buffer: whole.buffer.clone(),
                offset: whole.offset,
                shape: shape.to_vec(),
                label: format!("{} {shape:?}", whole.label),
            },
        })
    }

    /// Packs x's signs against its per-sample mean into the bits buffer.
    fn pack(&mut self, x: &Act) -> Result<Tensor> {
        let [n, c, h, w] = x.dims();
        let len = kernels::packed_len(n, c, h, w);
        if len > self.bits.len() {
            bail!(
                "packed activations of {:?} exceed the bits buffer (a bug in per_sample_extent)",
                x.t.shape
            );
        }
        let bits = Tensor {
            shape: vec![len],
            ..self.bits.clone()
        };
        self.dispatches
            .push(kernels::mean_pack(self.gpu, &x.t, &bits)?);
        Ok(bits)
    }

    /// The fused binary conv on x (packed in `bits`) with its epilogue: [hardtanh](BN(alpha *
    /// dot) [+ residual]); output in a slot not among `busy`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &Act,
        bits: &Tensor,
        conv: &Conv,
        bn: Option<&BatchNorm>,
        residual: Residual,
        hardtanh: bool,
        busy: &[usize],
    ) -> Result<Act> {
        if !conv.is_binary() {
            bail!(
                "the packed engine has no full-precision conv outside the stem yet ({})",
                conv.name
            );
        }
        let s = shape_of(x, conv);
        let out = self.act(&[s.n, conv.co, s.oh(), s.ow()], busy)?;
        let e = self.engine;
        let batchnorm = match bn {
            Some(bn) => Some(e.weight(&format!("{}.bn", bn.name))?),
            None => None,
        };
        let epilogue = Epilogue {
            alpha: e.weight(&format!("{}.alpha", conv.name))?,
            batchnorm,
            residual,
            hardtanh,
        };
        let d = kernels::binconv(
            self.gpu,
            &s,
            bits,
            e.weight(&format!("{}.bits", conv.name))?,
            &epilogue,
            &out.t,
        )
        .with_context(|| format!("binary conv {}", conv.name))?;
        self.dispatches.push(d);
        Ok(out)
    }

    /// The stem: float conv and BatchNorm (in place, with the stem's hardtanh), then its pool:
    /// the float path's max pool kernel (ops::pool), exact either way.
    fn stem(&mut self, input: &Tensor, stem: &Stem) -> Result<Act> {
        let e = self.engine;
        let weight = e.weight(&format!("{}.weight", stem.conv.name))?;
        let s = stem.conv.shape([
            input.shape[0],
            input.shape[1],
            input.shape[2],
            input.shape[3],
        ]);
        let out = self.act(&[s.n, s.co, s.oh(), s.ow()], &[])?;
        self.dispatches.push(conv::forward_with(
            self.gpu,
            &s,
            stem_tiles(s.co),
            input,
            weight,
            &out.t,
        )?);
        self.dispatches.push(kernels::batchnorm(
            self.gpu,
            &out.t,
            e.weight(&format!("{}.bn", stem.bn.name))?,
            stem.hardtanh,
        )?);
        match stem.pool {
            None => Ok(out),
            Some(Pool::Max {
                kernel,
                stride,
                pad,
            }) => {
                let m = MaxPool {
                    kernel,
                    stride,
                    pad,
                };
                let pooled = self.act(&m.output_shape(&out.t)?, &[out.slot])?;
                self.dispatches
                    .push(pool::max_forward(self.gpu, m, &out.t, &pooled.t)?);
                Ok(pooled)
            }
            Some(other) => bail!("the packed engine has no {other} yet (the stem's)"),
        }
    }

    /// A full-precision conv and its BatchNorm (the ImageNet ResNets' downsample): the float
    /// path's conv kernel (conv::forward) and the BatchNorm in place, as the stem's.
    fn float_conv(&mut self, x: &Act, conv: &Conv, bn: &BatchNorm, busy: &[usize]) -> Result<Act> {
        let e = self.engine;
        let s = shape_of(x, conv);
        let out = self.act(&[s.n, s.co, s.oh(), s.ow()], busy)?;
        self.dispatches.push(conv::forward(
            self.gpu,
            &s,
            &x.t,
            e.weight(&format!("{}.weight", conv.name))?,
            &out.t,
        )?);
        self.dispatches.push(kernels::batchnorm(
            self.gpu,
            &out.t,
            e.weight(&format!("{}.bn", bn.name))?,
            false,
        )?);
        Ok(out)
    }

    /// A projection shortcut's conv + BN: a binary one as one fused conv on x's packed bits, a
    /// full-precision one on x itself (None for the shortcuts without tensors).
    fn projection(
        &mut self,
        x: &Act,
        bits: &Tensor,
        shortcut: &Shortcut,
        busy: &[usize],
    ) -> Result<Option<Act>> {
        match shortcut {
            Shortcut::Projection { conv, bn } if !conv.is_binary() => {
                Ok(Some(self.float_conv(x, conv, bn, busy)?))
            }
            Shortcut::Projection { conv, bn } => {
                let p = self.conv(x, bits, conv, Some(bn), Residual::None, false, busy)?;
                Ok(Some(p))
            }
            Shortcut::Identity | Shortcut::OptionA => Ok(None),
        }
    }

    /// BlockKind::Basic: ht(BN(bconv2(ht(BN(bconv1(x))))) + shortcut(x)).
    fn basic_block(&mut self, x: &Act, b: &Block) -> Result<Act> {
        let bits = self.pack(x)?;
        let a1 = self.conv(
            x,
            &bits,
            &b.conv1,
            Some(&b.bn1),
            Residual::None,
            true,
            &[x.slot],
        )?;
        let projection = self.projection(x, &bits, &b.shortcut, &[x.slot, a1.slot])?;
        let residual = residual(x, &b.shortcut, projection.as_ref());
        let bits = self.pack(&a1)?;
        let mut busy = vec![x.slot, a1.slot];
        busy.extend(projection.as_ref().map(|s| s.slot));
        self.conv(&a1, &bits, &b.conv2, Some(&b.bn2), residual, true, &busy)
    }

    /// BlockKind::BiReal: out1 = ht(BN(bconv1(x)) + sc(x)); ht(BN(bconv2(out1)) + out1).
    fn bireal_block(&mut self, x: &Act, b: &Block) -> Result<Act> {
        let bits = self.pack(x)?;
        let projection = self.projection(x, &bits, &b.shortcut, &[x.slot])?;
        let residual = residual(x, &b.shortcut, projection.as_ref());
        let mut busy = vec![x.slot];
        busy.extend(projection.as_ref().map(|s| s.slot));
        let out1 = self.conv(x, &bits, &b.conv1, Some(&b.bn1), residual, true, &busy)?;
        let bits = self.pack(&out1)?;
        let residual = Residual::Identity(&out1.t);
        self.conv(
            &out1,
            &bits,
            &b.conv2,
            Some(&b.bn2),
            residual,
            true,
            &[out1.slot],
        )
    }

    /// conv -> [pool] -> BN -> hardtanh.
    fn plain(&mut self, x: &Act, conv: &Conv, pool: Option<Pool>, bn: &BatchNorm) -> Result<Act> {
        let bits = self.pack(x)?;
        let busy = [x.slot];
        match pool {
            None => self.conv(x, &bits, conv, Some(bn), Residual::None, true, &busy),
            Some(MAX_POOL_2X2) => {
                let y = self.conv(x, &bits, conv, None, Residual::None, false, &busy)?;
                let [n, c, h, w] = y.dims();
                let z = self.act(&[n, c, h / 2, w / 2], &[y.slot])?;
                let e = self.engine;
                self.dispatches.push(kernels::maxpool_batchnorm(
                    self.gpu,
                    &y.t,
                    e.weight(&format!("{}.bn", bn.name))?,
                    true,
                    &z.t,
                )?);
                Ok(z)
            }
            Some(other) => bail!("the packed engine has no {other} yet (after {})", conv.name),
        }
    }

    fn head(&mut self, x: &Act, head: &Head, logits: &Tensor) -> Result<()> {
        let e = self.engine;
        let (features, linear) = match head {
            Head::PoolNormLinear { pool, bn, linear }
                if *pool == Pool::GlobalAverage || is_whole_map_average(*pool, &x.t.shape) =>
            {
                let [n, c, _, _] = x.dims();
                let pooled = self.act(&[n, c], &[x.slot])?;
                self.dispatches.push(kernels::avgpool_batchnorm(
                    self.gpu,
                    &x.t,
                    e.weight(&format!("{}.bn", bn.name))?,
                    &pooled.t,
                )?);
                (pooled.t, linear)
            }
            Head::PoolNormLinear { pool, .. } => {
                bail!("the packed engine has no {pool} yet (the head's)")
            }
            Head::FlattenLinear { linear } => {
                let [n, c, h, w] = x.dims();
                (x.t.reshaped(&[n, c * h * w]), linear)
            }
        };
        self.dispatches.push(linear::forward(
            self.gpu,
            &features,
            e.weight(&format!("{}.weight", linear.name))?,
            e.weight(&format!("{}.bias", linear.name))?,
            logits,
        )?);
        Ok(())
    }

    fn build(&mut self, input: &Tensor, logits: &Tensor) -> Result<()> {
        let engine = self.engine;
        let arch = &engine.arch;
        let mut x = self.stem(input, &arch.stem)?;
        for unit in &arch.body {
            x = match unit {
                Unit::Block(b) => match b.kind {
                    BlockKind::Basic => self.basic_block(&x, b)?,
                    BlockKind::BiReal => self.bireal_block(&x, b)?,
                },
                Unit::Plain { conv, pool, bn } => self.plain(&x, conv, *pool, bn)?,
            };
        }
        self.head(&x, &arch.head, logits)
    }
}

/// The shape of `conv` applied to `x`.
fn shape_of(x: &Act, conv: &Conv) -> ConvShape {
    conv.shape(x.dims())
}

/// What a block's first residual sum adds: the projection's output, x read as option A, or x.
fn residual<'t>(x: &'t Act, shortcut: &Shortcut, projection: Option<&'t Act>) -> Residual<'t> {
    match (projection, shortcut) {
        (Some(p), _) => Residual::Identity(&p.t),
        (None, Shortcut::OptionA) => Residual::OptionA(&x.t),
        (None, _) => Residual::Identity(&x.t),
    }
}
