//! The packed inference engine: a packed model's weights on the GPU once, and per batch size a
//! `Plan` (every buffer and dispatch built once, one compute pass and one submit per batch).
//!
//! The graph of a plan, per model (x = the activations entering a binary conv):
//!   stem        conv::forward_with (float; tiles for its short reduction) -> batchnorm (in
//!               place; hardtanh unless resnet18)
//!   binary conv mean_pack(x) -> binconv with the epilogue fused:
//!               [hardtanh](BN(alpha * dot) [+ residual])
//!   resnet20_1w1a / resnet18_1w1a block
//!               a1 = ht(BN(bconv1(x)))  (epilogue), out = ht(BN(bconv2(a1)) + shortcut(x))
//!               with the option-A shortcut read inside the epilogue (resnet20), or resnet18's
//!               1x1 binary shortcut conv + BN as one more fused conv on x's packed bits.
//!   resnet20_bireal_1w1a block
//!               out1 = ht(BN(bconv1(x)) + shortcut(x)), out = ht(BN(bconv2(out1)) + out1).
//!   vgg_small_1w1a: convs 1, 3, 5 are followed by a max pool before their BN: the conv writes
//!               alpha * dot, then maxpool_batchnorm applies the pool, BN and hardtanh.
//!   head        resnets: avgpool_batchnorm (global average pool + BN1d) -> ops::linear;
//!               vgg: ops::linear on the flattened features.
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
use crate::model::spec::{ModelKind, Node};
use crate::ops::conv::{self, ConvShape, Tiles};
use crate::ops::linear;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;

/// Output pixels per workgroup of the fused conv (kernels::binconv): bounds the batch so the
/// first layer's grid stays within 65535 workgroups.
const CONV_ROWS_PER_WORKGROUP: usize = 64;
/// Plans kept for reuse (the chunk size of a large request and its remainder).
const CACHED_PLANS: usize = 2;

/// True where a max pool sits between a binary conv and its BatchNorm (vgg_small's convs 1, 3
/// and 5): the conv then applies alpha only and the BN follows the pool.
fn pooled(kind: ModelKind, conv: &str) -> bool {
    kind == ModelKind::VggSmall && matches!(conv, "conv1" | "conv3" | "conv5")
}

/// The BatchNorm that follows each binary conv (the next node of the graph).
fn batchnorm_after(nodes: &[Node], conv: &str) -> Result<String> {
    let i = nodes
        .iter()
        .position(|n| matches!(n, Node::BinConv { name, .. } if name == conv))
        .ok_or_else(|| anyhow!("no binary conv {conv}"))?;
    match nodes.get(i + 1) {
        Some(Node::BatchNorm2d { name, .. }) => Ok(name.clone()),
        _ => bail!("binary conv {conv} is not followed by a BatchNorm"),
    }
}

/// Tiles of the float stem conv, whose reduction is only Ci*9 = 9 or 27 long: staging 4 input
/// channels at a time instead of conv::Tiles::for_columns' 16 makes it 2.7x (16 output channels)
/// to 4x (64) faster on lavapipe. The sums stay the float path's bit for bit: every output
/// accumulates its taps and channels in the same order with one fma each, whatever the tiles
/// (a staged zero adds exactly 0).
fn stem_tiles(co: usize) -> Tiles {
    Tiles {
        bm: 64,
        bn: if co <= 16 { 16 } else { 64 },
        bk: 4,
    }
}

fn out_size(size: usize, k: usize, stride: usize, pad: usize) -> usize {
    (size + 2 * pad - k) / stride + 1
}

/// (largest activation, largest packed activation) of one sample, in 32-bit elements.
fn per_sample_extent(meta: &ModelMeta) -> (usize, usize) {
    let [c, mut h, mut w] = meta.input;
    let (mut floats, mut words) = (c * h * w, 0);
    for node in meta.spec().graph_nodes() {
        match node {
            Node::Conv {
                co, k, stride, pad, ..
            } => {
                (h, w) = (out_size(h, k, stride, pad), out_size(w, k, stride, pad));
                floats = floats.max(co * h * w);
            }
            // resnet18's shortcut conv reads the block input (packed for the block's conv1) and
            // writes the block's output shape: nothing larger.
            Node::BinConv { name, .. } if name.ends_with("shortcut.0") => {}
            Node::BinConv {
                name,
                ci,
                co,
                k,
                stride,
                pad,
            } => {
                words = words.max(kernels::packed_len(1, ci, h, w));
                (h, w) = (out_size(h, k, stride, pad), out_size(w, k, stride, pad));
                floats = floats.max(co * h * w);
                if pooled(meta.kind, &name) {
                    (h, w) = (h / 2, w / 2);
                }
            }
            _ => {}
        }
    }
    (floats, words)
}

/// A packed model on the GPU.
pub struct Engine {
    pub meta: ModelMeta,
    /// The model file (or "(in memory)"), named in errors.
    pub origin: String,
    /// The model's layers, in forward order.
    nodes: Vec<Node>,
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
        let spec = meta.spec();
        let nodes = spec.graph_nodes();
        let mut floats: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut words: Vec<(String, Vec<usize>, Vec<u32>)> = Vec::new();
        let copy = |name: String| -> Result<(String, Vec<usize>, Vec<f32>)> {
            let values = model.f32(&name)?.to_vec();
            let shape = model.tensors.get(&name).map(|t| t.shape.clone());
            Ok((name, shape.unwrap_or_default(), values))
        };
        for node in &nodes {
            match node {
                Node::Conv { name, .. } => floats.push(copy(format!("{name}.weight"))?),
                Node::BatchNorm2d { name, c } | Node::BatchNorm1d { name, c } => {
                    // [C, 4]: the four per-channel terms side by side, as the kernels read them.
                    let fields = BATCHNORM_FIELDS
                        .iter()
                        .map(|f| model.f32(&format!("{name}.{f}")))
                        .collect::<Result<Vec<_>>>()?;
                    let terms = (0..*c).flat_map(|i| fields.iter().map(move |f| f[i]));
                    floats.push((format!("{name}.bn"), vec![*c, 4], terms.collect()));
                }
                Node::Linear { name, .. } => {
                    floats.push(copy(format!("{name}.weight"))?);
                    floats.push(copy(format!("{name}.bias"))?);
                }
                Node::BinConv { name, ci, .. } => {
                    floats.push(copy(format!("{name}.alpha"))?);
                    let bits = model.interleaved_bits(name, *ci)?;
                    words.push((format!("{name}.bits"), vec![bits.len()], bits));
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

        let (per_sample_floats, per_sample_words) = per_sample_extent(&meta);
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
            nodes,
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

    /// The fused binary conv `name` on x (packed in `bits`), output in a slot not among `busy`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &Act,
        bits: &Tensor,
        name: &str,
        co: usize,
        k: usize,
        stride: usize,
        residual: Residual,
        hardtanh: bool,
        busy: &[usize],
    ) -> Result<Act> {
        let [n, ci, h, w] = x.dims();
        let s = ConvShape {
            n,
            ci,
            h,
            w,
            co,
            kh: k,
            kw: k,
            stride,
            pad: k / 2,
        };
        let out = self.act(&[n, co, s.oh(), s.ow()], busy)?;
        let e = self.engine;
        let batchnorm = if pooled(e.meta.kind, name) {
            None
        } else {
            let bn = batchnorm_after(&e.nodes, name)?;
            Some(e.weight(&format!("{bn}.bn"))?)
        };
        let epilogue = Epilogue {
            alpha: e.weight(&format!("{name}.alpha"))?,
            batchnorm,
            residual,
            hardtanh,
        };
        let d = kernels::binconv(
            self.gpu,
            &s,
            bits,
            e.weight(&format!("{name}.bits"))?,
            &epilogue,
            &out.t,
        )
        .with_context(|| format!("binary conv {name}"))?;
        self.dispatches.push(d);
        Ok(out)
    }

    /// Float stem conv `name` (3x3, pad 1) and its BatchNorm `bn`.
    fn stem(&mut self, input: &Tensor, name: &str, bn: &str, hardtanh: bool) -> Result<Act> {
        let e = self.engine;
        let weight = e.weight(&format!("{name}.weight"))?;
        let [n, ci, h, w] = [
            input.shape[0],
            input.shape[1],
            input.shape[2],
            input.shape[3],
        ];
        let s = ConvShape {
            n,
            ci,
            h,
            w,
            co: weight.shape[0],
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
        };
        let out = self.act(&[n, s.co, s.oh(), s.ow()], &[])?;
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
            e.weight(&format!("{bn}.bn"))?,
            hardtanh,
        )?);
        Ok(out)
    }

    /// resnet20_1w1a / resnet18_1w1a block: ht(BN(bconv2(ht(BN(bconv1(x))))) + shortcut(x)).
    fn basic_block(&mut self, x: &Act, p: &str, planes: usize, stride: usize) -> Result<Act> {
        let cin = x.dims()[1];
        let identity = stride == 1 && cin == planes;
        let bits = self.pack(x)?;
        let conv1 = format!("{p}.conv1");
        let a1 = self.conv(
            x,
            &bits,
            &conv1,
            planes,
            3,
            stride,
            Residual::None,
            true,
            &[x.slot],
        )?;
        let shortcut = if !identity && self.engine.meta.kind == ModelKind::Resnet18 {
            let name = format!("{p}.shortcut.0");
            let busy = [x.slot, a1.slot];
            Some(self.conv(
                x,
                &bits,
                &name,
                planes,
                1,
                stride,
                Residual::None,
                false,
                &busy,
            )?)
        } else {
            None
        };
        let residual = match (&shortcut, identity) {
            (Some(sc), _) => Residual::Identity(&sc.t),
            (None, true) => Residual::Identity(&x.t),
            (None, false) => Residual::OptionA(&x.t),
        };
        let bits = self.pack(&a1)?;
        let mut busy = vec![x.slot, a1.slot];
        busy.extend(shortcut.as_ref().map(|s| s.slot));
        let conv2 = format!("{p}.conv2");
        self.conv(&a1, &bits, &conv2, planes, 3, 1, residual, true, &busy)
    }

    /// resnet20_bireal_1w1a block: out1 = ht(BN(bconv1(x)) + sc(x)); ht(BN(bconv2(out1)) + out1).
    fn bireal_block(&mut self, x: &Act, p: &str, planes: usize, stride: usize) -> Result<Act> {
        let identity = stride == 1 && x.dims()[1] == planes;
        let residual = if identity {
            Residual::Identity(&x.t)
        } else {
            Residual::OptionA(&x.t)
        };
        let bits = self.pack(x)?;
        let conv1 = format!("{p}.conv1");
        let out1 = self.conv(
            x,
            &bits,
            &conv1,
            planes,
            3,
            stride,
            residual,
            true,
            &[x.slot],
        )?;
        let bits = self.pack(&out1)?;
        let conv2 = format!("{p}.conv2");
        let residual = Residual::Identity(&out1.t);
        self.conv(
            &out1,
            &bits,
            &conv2,
            planes,
            3,
            1,
            residual,
            true,
            &[out1.slot],
        )
    }

    /// Global average pool + BN1d, then the classifier.
    fn resnet_head(&mut self, x: &Act, logits: &Tensor) -> Result<()> {
        let [n, c, _, _] = x.dims();
        let pooled = self.act(&[n, c], &[x.slot])?;
        let e = self.engine;
        self.dispatches.push(kernels::avgpool_batchnorm(
            self.gpu,
            &x.t,
            e.weight("bn2.bn")?,
            &pooled.t,
        )?);
        self.dispatches.push(linear::forward(
            self.gpu,
            &pooled.t,
            e.weight("linear.weight")?,
            e.weight("linear.bias")?,
            logits,
        )?);
        Ok(())
    }

    fn build(&mut self, input: &Tensor, logits: &Tensor) -> Result<()> {
        let kind = self.engine.meta.kind;
        match kind {
            ModelKind::Resnet20 | ModelKind::Resnet20Bireal | ModelKind::Resnet18 => {
                let resnet18 = kind == ModelKind::Resnet18;
                let mut x = self.stem(input, "conv1", "bn1", !resnet18)?;
                let (widths, blocks): (&[usize], usize) = if resnet18 {
                    (&[64, 128, 256, 512], 2)
                } else {
                    (&[16, 32, 64], 3)
                };
                for (stage, &planes) in widths.iter().enumerate() {
                    for block in 0..blocks {
                        let stride = if block == 0 && stage > 0 { 2 } else { 1 };
                        let p = format!("layer{}.{}", stage + 1, block);
                        x = if kind == ModelKind::Resnet20Bireal {
                            self.bireal_block(&x, &p, planes, stride)?
                        } else {
                            self.basic_block(&x, &p, planes, stride)?
                        };
                    }
                }
                self.resnet_head(&x, logits)
            }
            ModelKind::VggSmall => {
                let mut x = self.stem(input, "conv0", "bn0", true)?;
                for (i, co) in [(1, 128), (2, 256), (3, 256), (4, 512), (5, 512)] {
                    let name = format!("conv{i}");
                    let bits = self.pack(&x)?;
                    let busy = [x.slot];
                    if pooled(kind, &name) {
                        let y =
                            self.conv(&x, &bits, &name, co, 3, 1, Residual::None, false, &busy)?;
                        let [n, c, h, w] = y.dims();
                        let z = self.act(&[n, c, h / 2, w / 2], &[y.slot])?;
                        let e = self.engine;
                        self.dispatches.push(kernels::maxpool_batchnorm(
                            self.gpu,
                            &y.t,
                            e.weight(&format!("bn{i}.bn"))?,
                            true,
                            &z.t,
                        )?);
                        x = z;
                    } else {
                        x = self.conv(&x, &bits, &name, co, 3, 1, Residual::None, true, &busy)?;
                    }
                }
                let [n, c, h, w] = x.dims();
                let flat = x.t.reshaped(&[n, c * h * w]);
                let e = self.engine;
                self.dispatches.push(linear::forward(
                    self.gpu,
                    &flat,
                    e.weight("fc.weight")?,
                    e.weight("fc.bias")?,
                    logits,
                )?);
                Ok(())
            }
        }
    }
}
