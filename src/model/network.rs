//! A model's computation graph on the GPU for one batch size: every activation and gradient
//! tensor allocated once, every dispatch (with its bind group) created once, then recorded into
//! one compute pass per step.
//! Tensors whose lifetimes within a step do not overlap share buffers (model::liveness).
//!
//! Gradient flow: each op's backward OVERWRITES the gradient of its input. A tensor consumed by
//! two ops (a residual block's input) gives each consumer its own gradient tensor, and a
//! dispatch that sums them runs after both (see `Builder::fork`).

use super::arch::{
    BatchNorm, Block, BlockKind, Conv, ConvKind, Head, Linear, Pool, Shortcut, Stem, Unit,
    MAX_POOL_2X2,
};
use super::liveness::{MadeTensors, SharedBuffers};
use super::params::Params;
use super::zoo::ModelKind;
use crate::gpu::{Dispatch, Gpu, Imm, KernelVariant, Tensor};
use crate::ops::conv::{self, ConvBackwardWeight, ConvShape};
use crate::ops::pool::MaxPool;
use crate::ops::{batchnorm, elementwise, linear, loss, pool, shortcut};
use crate::rbnn::layer::{BinaryConv2d, BinaryConvTensors};
use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BatchNorm with batch statistics; forward, loss and backward.
    Train,
    /// BatchNorm with running statistics; forward and loss only.
    Eval,
}

/// An activation and the gradient tensor its consumers' backward writes.
#[derive(Clone)]
struct Act {
    y: Tensor,
    dy: Tensor,
}

enum Op {
    Dispatch(Dispatch),
    ConvWeight(ConvBackwardWeight),
    BinForward(usize),
    BinBackward(usize),
}

/// The per-step values that reach kernels as immediates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    /// ApproxSign's t and k (docs/numerics.md section 4).
    pub t: f32,
    pub k: f32,
}

pub struct Network {
    pub kind: ModelKind,
    pub mode: Mode,
    pub batch: usize,
    /// [N, C, H, W] f32, written by the host before each submit.
    pub input: Tensor,
    /// [N] u32 class indices.
    pub target: Tensor,
    pub logits: Tensor,
    pub dlogits: Tensor,
    /// [loss_sum, top1, top5, samples] accumulated over steps (ops::loss).
    pub loss_acc: Tensor,
    /// Names of the binary conv layers, in forward order (same order as `binconvs`).
    pub binconv_names: Vec<String>,
    pub binconvs: Vec<BinaryConv2d>,
    forward: Vec<Op>,
    loss_ops: Vec<Dispatch>,
    backward: Vec<Op>,
    /// Per-sample loss workspace (kept alive for the bind groups).
    _per_sample: Tensor,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    params: &'a Params,
    mode: Mode,
    a32: bool,
    /// The formulation of the BatchNorm and channel-dot kernels (`Gpu::kernel_variant`).
    variant: KernelVariant,
    forward: Vec<Op>,
    /// Backward segments in forward order; executed last to first.
    backward: Vec<Vec<Op>>,
    binconvs: Vec<BinaryConv2d>,
    binconv_names: Vec<String>,
    count: usize,
    /// Every tensor made, (label, shape), for the liveness plan (model::liveness).
    made: MadeTensors,
    /// Where the tensors that share buffers live (empty when planning them).
    shared: &'a SharedBuffers,
}

/// A BatchNorm layer's tensors (see `batchnorm::BatchNorm`), owned by the builder.
struct BnTensors {
    /// The software variant's (`batchnorm::BatchNorm::dot_partials`).
    dot_partials: Option<Tensor>,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    mean: Tensor,
    rstd: Tensor,
    partials: Tensor,
}

impl BnTensors {
    fn bn(&self) -> batchnorm::BatchNorm<'_> {
        batchnorm::BatchNorm {
            gamma: &self.gamma,
            beta: &self.beta,
            running_mean: &self.running_mean,
            running_var: &self.running_var,
            mean: &self.mean,
            rstd: &self.rstd,
            partials: &self.partials,
            dot_partials: self.dot_partials.as_ref(),
        }
    }
}

/// The shape of `conv` applied to `x`.
fn conv_shape(x: &Act, conv: &Conv) -> ConvShape {
    let (n, ci, h, w) = dims4(&x.y);
    conv.shape([n, ci, h, w])
}

fn dims4(t: &Tensor) -> (usize, usize, usize, usize) {
    (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
}

impl<'a> Builder<'a> {
    fn train(&self) -> bool {
        self.mode == Mode::Train
    }

    fn tensor(&mut self, what: &str, shape: &[usize]) -> Result<Tensor> {
        self.count += 1;
        let label = format!("{what}#{}", self.count);
        self.made.push((label.clone(), shape.to_vec()));
        match self.shared.view(&label) {
            Some(view) => Ok(view.clone()),
            None => self.gpu.try_tensor(&label, shape),
        }
    }

    /// A new activation of `shape` (and its gradient, in training).
    fn act(&mut self, what: &str, shape: &[usize]) -> Result<Act> {
        let y = self.tensor(what, shape)?;
        let dy = self.grad(shape)?;
        Ok(Act { y, dy })
    }

    fn push_backward(&mut self, ops: Vec<Op>) {
        if self.train() {
            self.backward.push(ops);
        }
    }

    /// A gradient tensor of `shape` (in evaluation, where no gradient exists, a placeholder).
    fn grad(&mut self, shape: &[usize]) -> Result<Tensor> {
        if self.train() {
            self.tensor("grad", shape)
        } else {
            self.tensor("unused grad", &[1])
        }
    }

    /// `x` is about to feed two consumers: returns one view per consumer, each with its own
    /// gradient tensor (the second one's may be given), and sums those gradients into x.dy after
    /// both backwards have run.
    fn fork(&mut self, x: &Act, second_dy: Option<Tensor>) -> Result<(Act, Act)> {
        if !self.train() {
            return Ok((x.clone(), x.clone()));
        }
        let a = Act {
            y: x.y.clone(),
            dy: self.tensor("dfork", &x.y.shape)?,
        };
        let dy = match second_dy {
            Some(t) => t,
            None => self.tensor("dfork", &x.y.shape)?,
        };
        let b = Act { y: x.y.clone(), dy };
        let sum = elementwise::add(self.gpu, self.variant, &a.dy, &b.dy, &x.dy)?;
        // Pushed before either consumer's backward segment, so it runs after both.
        self.push_backward(vec![Op::Dispatch(sum)]);
        Ok((a, b))
    }

    /// A full-precision conv: its weight gradient and, with `data_grad`, the gradient of its
    /// input (overwriting x.dy). The stem's conv takes the data, which needs none.
    fn float_conv(&mut self, x: &Act, conv: &Conv, data_grad: bool) -> Result<Act> {
        let name = &conv.name;
        let s = conv_shape(x, conv);
        let weight = self.params.get(&format!("{name}.weight"))?.clone();
        let out = self.act(name, &[s.n, s.co, s.oh(), s.ow()])?;
        self.forward.push(Op::Dispatch(conv::forward(
            self.gpu, &s, &x.y, &weight, &out.y,
        )?));
        if self.train() {
            let dw = self.params.grad(&format!("{name}.weight"))?.clone();
            let mut ops = vec![Op::ConvWeight(conv::backward_weight(
                self.gpu, &s, &x.y, &out.dy, &dw,
            )?)];
            if data_grad {
                ops.push(Op::Dispatch(conv::backward_data(
                    self.gpu, &s, &out.dy, &weight, &x.dy,
                )?));
            }
            self.push_backward(ops);
        }
        Ok(out)
    }

    fn binconv(&mut self, x: &Act, conv: &Conv) -> Result<Act> {
        if !conv.is_binary() {
            bail!(
                "the training graph has full-precision convs only in the stem and shortcuts ({})",
                conv.name
            );
        }
        let name = conv.name.as_str();
        let s = conv_shape(x, conv);
        let out = self.act(name, &[s.n, s.co, s.oh(), s.ow()])?;
        let p = |field: &str| -> Result<Tensor> {
            Ok(self.params.get(&format!("{name}.{field}"))?.clone())
        };
        let g = |field: &str| -> Result<Option<Tensor>> {
            Ok(if self.train() {
                Some(self.params.grad(&format!("{name}.{field}"))?.clone())
            } else {
                None
            })
        };
        let tensors = BinaryConvTensors {
            weight: p("weight")?,
            alpha: p("alpha")?,
            rotate: p("rotate")?,
            r1: p("R1")?,
            r2: p("R2")?,
            weight_grad: g("weight")?,
            alpha_grad: g("alpha")?,
            rotate_grad: g("rotate")?,
            x: x.y.clone(),
            y: out.y.clone(),
            dy: self.train().then(|| out.dy.clone()),
            dx: self.train().then(|| x.dy.clone()),
        };
        let layer = BinaryConv2d::new(self.gpu, s, self.a32, tensors)
            .with_context(|| format!("building binary conv {name}"))?;
        let index = self.binconvs.len();
        self.binconvs.push(layer);
        self.binconv_names.push(name.to_string());
        self.forward.push(Op::BinForward(index));
        self.push_backward(vec![Op::BinBackward(index)]);
        Ok(out)
    }

    /// A BatchNorm layer's parameters (views into the arenas) and its own saved statistics and
    /// workspace, for input `x`.
    /// In training with the software variant, the BatchNorm's backward also writes the partials
    /// of sum dx * x per channel; when x is a binary conv's output, that conv takes its alpha
    /// gradient from them (`BinaryConv2d::take_alpha_partials`).
    fn bn_tensors(&mut self, x: &Act, name: &str) -> Result<BnTensors> {
        let d = batchnorm::BnDims::of(&x.y.shape)?;
        let dot_partials = if self.train() && self.variant == KernelVariant::Software {
            let t = self.tensor("bn.dot_partials", &[d.dot_partials_len()])?;
            let producer = self
                .binconvs
                .iter()
                .position(|l| l.tensors.y.label == x.y.label);
            if let Some(i) = producer {
                self.binconvs[i]
                    .take_alpha_partials(self.gpu, &t)
                    .with_context(|| format!("the alpha gradient of {}", self.binconv_names[i]))?;
            }
            Some(t)
        } else {
            None
        };
        Ok(BnTensors {
            dot_partials,
            mean: self.tensor("bn.mean", &[d.c])?,
            rstd: self.tensor("bn.rstd", &[d.c])?,
            partials: self.tensor("bn.partials", &[d.partials_len(self.variant)])?,
            gamma: self.params.get(&format!("{name}.weight"))?.clone(),
            beta: self.params.get(&format!("{name}.bias"))?.clone(),
            running_mean: self.params.get(&format!("{name}.running_mean"))?.clone(),
            running_var: self.params.get(&format!("{name}.running_var"))?.clone(),
        })
    }

    /// BatchNorm2d or 1d (by the rank of x). `dy` reuses a gradient tensor for the output.
    fn bn(&mut self, x: &Act, name: &str, dy: Option<Tensor>) -> Result<Act> {
        let shape = x.y.shape.clone();
        let out = Act {
            y: self.tensor(name, &shape)?,
            dy: match dy {
                Some(t) => t,
                None => self.grad(&shape)?,
            },
        };
        let t = self.bn_tensors(x, name)?;
        let bn = t.bn();
        if self.train() {
            for d in batchnorm::forward_train(self.gpu, self.variant, &bn, &x.y, &out.y, true)? {
                self.forward.push(Op::Dispatch(d));
            }
            let dgamma = self.params.grad(&format!("{name}.weight"))?;
            let dbeta = self.params.grad(&format!("{name}.bias"))?;
            let ops = batchnorm::backward(
                self.gpu,
                self.variant,
                &bn,
                &x.y,
                &out.dy,
                &x.dy,
                dgamma,
                dbeta,
            )?
            .into_iter()
            .map(Op::Dispatch)
            .collect();
            self.push_backward(ops);
        } else {
            self.forward.push(Op::Dispatch(batchnorm::forward_eval(
                self.gpu, &bn, &x.y, &out.y,
            )?));
        }
        Ok(out)
    }

    /// Whether BatchNorm -> [+ residual] -> hardtanh runs fused (software adapters, training).
    fn fuse_bn_hardtanh(&self) -> bool {
        self.train() && self.variant == KernelVariant::Software
    }

    /// hardtanh(BN(x)): fused where `fuse_bn_hardtanh`, else the two ops.
    fn bn_hardtanh(&mut self, x: &Act, name: &str) -> Result<Act> {
        if self.fuse_bn_hardtanh() {
            self.fused_bn_hardtanh(x, name, None)
        } else {
            let z = self.bn(x, name, None)?;
            self.hardtanh(&z)
        }
    }

    /// hardtanh(BN(x) + residual), where `residual`'s gradient tensor is `du`: fused where
    /// `fuse_bn_hardtanh` (then `residual` must already be built: the fused kernel reads it),
    /// else BN, add and hardtanh. `residual` is built by `make_residual` after the BN in the
    /// unfused order and before the fused op.
    fn bn_add_hardtanh(
        &mut self,
        x: &Act,
        name: &str,
        du: &Tensor,
        make_residual: impl FnOnce(&mut Self) -> Result<Act>,
    ) -> Result<Act> {
        if self.fuse_bn_hardtanh() {
            let residual = make_residual(self)?;
            self.fused_bn_hardtanh(x, name, Some((&residual, du)))
        } else {
            let z = self.bn(x, name, Some(du.clone()))?;
            let residual = make_residual(self)?;
            let u = self.add(&z, &residual, du)?;
            self.hardtanh(&u)
        }
    }

    /// batchnorm::forward_train_hardtanh and its backward; with a residual, the backward also
    /// writes the residual's gradient `du`.
    fn fused_bn_hardtanh(
        &mut self,
        x: &Act,
        name: &str,
        residual: Option<(&Act, &Tensor)>,
    ) -> Result<Act> {
        let out = self.act("hardtanh", &x.y.shape.clone())?;
        let t = self.bn_tensors(x, name)?;
        let bn = t.bn();
        let res = residual.map(|(r, _)| &r.y);
        for d in batchnorm::forward_train_hardtanh(self.gpu, &bn, &x.y, res, &out.y, true)? {
            self.forward.push(Op::Dispatch(d));
        }
        let dgamma = self.params.grad(&format!("{name}.weight"))?;
        let dbeta = self.params.grad(&format!("{name}.bias"))?;
        let res_grad = residual.map(|(r, du)| (&r.y, du));
        let ops = batchnorm::backward_hardtanh(
            self.gpu, &bn, &x.y, res_grad, &out.dy, &x.dy, dgamma, dbeta,
        )?
        .into_iter()
        .map(Op::Dispatch)
        .collect();
        self.push_backward(ops);
        Ok(out)
    }

    fn hardtanh(&mut self, x: &Act) -> Result<Act> {
        let out = self.act("hardtanh", &x.y.shape.clone())?;
        self.forward
            .push(Op::Dispatch(elementwise::hardtanh_forward(
                self.gpu, &x.y, &out.y,
            )?));
        if self.train() {
            let d = elementwise::hardtanh_backward(self.gpu, &x.y, &out.dy, &x.dy)?;
            self.push_backward(vec![Op::Dispatch(d)]);
        }
        Ok(out)
    }

    /// out = a + b; the gradient of both inputs is the output's gradient, so `a` and `b` must
    /// have been built with `dy` = the tensor passed here as `dout`.
    fn add(&mut self, a: &Act, b: &Act, dout: &Tensor) -> Result<Act> {
        let y = self.tensor("sum", &a.y.shape.clone())?;
        self.forward.push(Op::Dispatch(elementwise::add(
            self.gpu,
            self.variant,
            &a.y,
            &b.y,
            &y,
        )?));
        Ok(Act {
            y,
            dy: dout.clone(),
        })
    }

    /// Option A shortcut: x[:, :, ::2, ::2] with zero channels padded to `planes`.
    fn shortcut_a(&mut self, x: &Act, planes: usize, dy: Tensor) -> Result<Act> {
        let shape = shortcut::output_shape(&x.y.shape, planes)?;
        let y = self.tensor("shortcut", &shape)?;
        self.forward
            .push(Op::Dispatch(shortcut::forward(self.gpu, &x.y, &y)?));
        if self.train() {
            let d = shortcut::backward(self.gpu, &dy, &x.dy)?;
            self.push_backward(vec![Op::Dispatch(d)]);
        }
        Ok(Act { y, dy })
    }

    /// The pools the ops have kernels for: 2x2/s2 max, any k x k max, the global average, and an
    /// average pool whose window is the whole map (the ImageNet ResNets' 7x7 on their 7x7 map).
    fn pool(&mut self, x: &Act, pool: Pool) -> Result<Act> {
        match pool {
            MAX_POOL_2X2 => self.maxpool(x),
            Pool::Max {
                kernel,
                stride,
                pad,
            } => self.maxpool_window(
                x,
                MaxPool {
                    kernel,
                    stride,
                    pad,
                },
            ),
            Pool::GlobalAverage => self.global_avg(x),
            average if is_whole_map_average(average, &x.y.shape) => self.global_avg(x),
            other => bail!(
                "the training graph has no {other} on a {:?} map yet",
                &x.y.shape[1..]
            ),
        }
    }

    fn maxpool_window(&mut self, x: &Act, m: MaxPool) -> Result<Act> {
        let out = self.act("maxpool", &m.output_shape(&x.y)?)?;
        self.forward
            .push(Op::Dispatch(pool::max_forward(self.gpu, m, &x.y, &out.y)?));
        if self.train() {
            let d = pool::max_backward(self.gpu, m, &x.y, &out.dy, &x.dy)?;
            self.push_backward(vec![Op::Dispatch(d)]);
        }
        Ok(out)
    }

    fn maxpool(&mut self, x: &Act) -> Result<Act> {
        let out = self.act("maxpool", &pool::max2_shape(&x.y.shape))?;
        self.forward
            .push(Op::Dispatch(pool::max2_forward(self.gpu, &x.y, &out.y)?));
        if self.train() {
            let d = pool::max2_backward(self.gpu, &x.y, &out.dy, &x.dy)?;
            self.push_backward(vec![Op::Dispatch(d)]);
        }
        Ok(out)
    }

    fn global_avg(&mut self, x: &Act) -> Result<Act> {
        let (n, c, _, _) = dims4(&x.y);
        let out = self.act("avgpool", &[n, c])?;
        self.forward.push(Op::Dispatch(pool::global_avg_forward(
            self.gpu, &x.y, &out.y,
        )?));
        if self.train() {
            let d = pool::global_avg_backward(self.gpu, &out.dy, &x.dy)?;
            self.push_backward(vec![Op::Dispatch(d)]);
        }
        Ok(out)
    }

    fn linear(&mut self, x: &Act, linear: &Linear) -> Result<Act> {
        let name = linear.name.as_str();
        let n = x.y.shape[0];
        let out = self.act(name, &[n, linear.fout])?;
        let w = self.params.get(&format!("{name}.weight"))?.clone();
        let b = self.params.get(&format!("{name}.bias"))?.clone();
        self.forward.push(Op::Dispatch(linear::forward(
            self.gpu, &x.y, &w, &b, &out.y,
        )?));
        if self.train() {
            let dw = self.params.grad(&format!("{name}.weight"))?;
            let db = self.params.grad(&format!("{name}.bias"))?;
            let ops = linear::backward(self.gpu, &x.y, &w, &out.dy, &x.dy, dw, db)?
                .into_iter()
                .map(Op::Dispatch)
                .collect();
            self.push_backward(ops);
        }
        Ok(out)
    }

    /// The stem: float conv -> BatchNorm -> [hardtanh] -> [pool].
    fn stem(&mut self, x: &Act, stem: &Stem) -> Result<Act> {
        let c = self.float_conv(x, &stem.conv, false)?;
        let out = if stem.hardtanh {
            self.bn_hardtanh(&c, &stem.bn.name)?
        } else {
            self.bn(&c, &stem.bn.name, None)?
        };
        match stem.pool {
            Some(pool) => self.pool(&out, pool),
            None => Ok(out),
        }
    }

    /// BlockKind::Basic: ht(BN(bconv2(ht(BN(bconv1(x))))) + shortcut(x)).
    fn basic_block(&mut self, x: &Act, b: &Block) -> Result<Act> {
        let (du, identity) = self.block_grad(x, b)?;
        let (main_in, short_in) = self.fork(x, identity.then(|| du.clone()))?;
        let y1 = self.binconv(&main_in, &b.conv1)?;
        let a1 = self.bn_hardtanh(&y1, &b.bn1.name)?;
        let y2 = self.binconv(&a1, &b.conv2)?;
        self.bn_add_hardtanh(&y2, &b.bn2.name, &du.clone(), |me| {
            me.shortcut(&short_in, b, du)
        })
    }

    /// The gradient tensor of a block's first residual sum (shaped like conv1's output), and
    /// whether its shortcut is the identity.
    fn block_grad(&mut self, x: &Act, b: &Block) -> Result<(Tensor, bool)> {
        let s = conv_shape(x, &b.conv1);
        let shape = [s.n, s.co, s.oh(), s.ow()];
        Ok((self.grad(&shape)?, b.shortcut == Shortcut::Identity))
    }

    /// BlockKind::BiReal: out = ht(BN(bconv1(x)) + sc(x)); ht(BN(bconv2(out)) + out).
    fn bireal_block(&mut self, x: &Act, b: &Block) -> Result<Act> {
        let (du1, identity) = self.block_grad(x, b)?;
        let (main_in, short_in) = self.fork(x, identity.then(|| du1.clone()))?;
        let y1 = self.binconv(&main_in, &b.conv1)?;
        let out1 = self.bn_add_hardtanh(&y1, &b.bn1.name, &du1.clone(), |me| {
            me.shortcut(&short_in, b, du1)
        })?;
        let du2 = self.grad(&out1.y.shape.clone())?;
        let (main2, skip2) = self.fork(&out1, Some(du2.clone()))?;
        let y2 = self.binconv(&main2, &b.conv2)?;
        self.bn_add_hardtanh(&y2, &b.bn2.name, &du2, |_| Ok(skip2))
    }

    /// The block's shortcut, writing its output gradient `dy` back into x.dy. For the identity,
    /// the fork already made x.dy that same tensor.
    fn shortcut(&mut self, x: &Act, b: &Block, dy: Tensor) -> Result<Act> {
        match &b.shortcut {
            Shortcut::Identity => Ok(Act { y: x.y.clone(), dy }),
            Shortcut::OptionA => self.shortcut_a(x, b.conv1.co, dy),
            Shortcut::Projection { conv, bn } => {
                // Binary (resnet18_1w1a's shortcut.0) or full precision (the ImageNet ResNets'
                // downsample.0, with its data gradient).
                let c = match conv.kind {
                    ConvKind::Binary => self.binconv(x, conv)?,
                    ConvKind::Float => self.float_conv(x, conv, true)?,
                };
                self.bn(&c, &bn.name, Some(dy))
            }
        }
    }

    /// conv -> [pool] -> BN -> hardtanh.
    fn plain(&mut self, x: &Act, conv: &Conv, pool: Option<Pool>, bn: &BatchNorm) -> Result<Act> {
        let mut y = self.binconv(x, conv)?;
        if let Some(pool) = pool {
            y = self.pool(&y, pool)?;
        }
        self.bn_hardtanh(&y, &bn.name)
    }

    fn head(&mut self, x: &Act, head: &Head) -> Result<Act> {
        match head {
            Head::PoolNormLinear { pool, bn, linear } => {
                let pooled = self.pool(x, *pool)?;
                let normed = self.bn(&pooled, &bn.name, None)?;
                self.linear(&normed, linear)
            }
            Head::FlattenLinear { linear } => {
                let (n, c, h, w) = dims4(&x.y);
                let flat_shape = [n, c * h * w];
                let flat = Act {
                    y: x.y.reshaped(&flat_shape),
                    // In evaluation the gradient is a placeholder of one element.
                    dy: if self.train() {
                        x.dy.reshaped(&flat_shape)
                    } else {
                        x.dy.clone()
                    },
                };
                self.linear(&flat, linear)
            }
        }
    }
}

/// Whether `pool` is an average pool whose one window is the whole [N, C, H, W] map `shape`
/// (the ImageNet ResNets' AvgPool2d(7) on a 7x7 map): then it is the global average pool.
pub fn is_whole_map_average(pool: Pool, shape: &[usize]) -> bool {
    match (pool, shape) {
        (Pool::Average { kernel, pad: 0, .. }, &[_, _, h, w]) => h == kernel && w == kernel,
        _ => false,
    }
}

impl Network {
    /// The network, its tensors sharing buffers where their lifetimes in a step allow: the graph
    /// is first built on a memory planner of `gpu` to find those lifetimes (model::liveness).
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        batch: usize,
        mode: Mode,
        a32: bool,
        image: [usize; 3],
    ) -> Result<Network> {
        let probe = gpu.planner(gpu.limits.clone(), false);
        let none = SharedBuffers::default();
        let (trial, made) = Self::build(&probe, params, batch, mode, a32, image, &none)?;
        let step: Vec<&Dispatch> = trial
            .step_dispatches(StepScalars { t: 1.0, k: 1.0 })
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        // The host reads the logits after a step.
        let keep = [trial.logits.label.as_str(), trial.dlogits.label.as_str()];
        let shared = SharedBuffers::plan(gpu, &made, &step, &keep)?;
        Ok(Self::build(gpu, params, batch, mode, a32, image, &shared)?.0)
    }

    /// The network, with the tensors `shared` names in those buffers; also every tensor the
    /// builder made.
    fn build(
        gpu: &Gpu,
        params: &Params,
        batch: usize,
        mode: Mode,
        a32: bool,
        image: [usize; 3],
        shared: &SharedBuffers,
    ) -> Result<(Network, MadeTensors)> {
        if batch == 0 {
            bail!("batch size must be at least 1");
        }
        if mode == Mode::Train && batch < 2 {
            bail!("training needs a batch of at least 2 (BatchNorm uses batch statistics)");
        }
        let spec = &params.spec;
        let [c, h, w] = image;
        if c != spec.in_channels {
            bail!(
                "model built for {} input channels, images have {c}",
                spec.in_channels
            );
        }
        spec.arch.trace(image)?;
        let mut b = Builder {
            gpu,
            params,
            mode,
            a32,
            variant: gpu.kernel_variant()?,
            forward: Vec::new(),
            backward: Vec::new(),
            binconvs: Vec::new(),
            binconv_names: Vec::new(),
            count: 0,
            made: Vec::new(),
            shared,
        };
        let input = gpu.try_tensor("input", &[batch, c, h, w])?;
        let target = gpu.try_tensor("target", &[batch])?;
        // The input needs no gradient: its "dy" is never written (the stem skips backward_data).
        let x = Act {
            y: input.clone(),
            dy: input.clone(),
        };
        // The model's description, walked in forward order.
        let arch = &spec.arch;
        let mut out = b.stem(&x, &arch.stem)?;
        for unit in &arch.body {
            out = match unit {
                Unit::Block(block) => match block.kind {
                    BlockKind::Basic => b.basic_block(&out, block)?,
                    BlockKind::BiReal => b.bireal_block(&out, block)?,
                },
                Unit::Plain { conv, pool, bn } => b.plain(&out, conv, *pool, bn)?,
            };
        }
        let logits = b.head(&out, &arch.head)?;
        let per_sample = gpu.tensor("loss per sample", &[loss::per_sample_len(batch)]);
        let loss_acc = gpu.tensor("loss totals", &[loss::ACC_LEN]);
        let loss_ops = match mode {
            Mode::Train => loss::cross_entropy_train(
                gpu,
                &logits.y,
                &target,
                &logits.dy,
                &per_sample,
                &loss_acc,
            )?,
            Mode::Eval => {
                loss::cross_entropy_eval(gpu, &logits.y, &target, &per_sample, &loss_acc, batch)?
            }
        };
        let backward = b.backward.drain(..).rev().flatten().collect();
        let network = Network {
            kind: spec.kind,
            mode,
            batch,
            input,
            target,
            logits: logits.y,
            dlogits: logits.dy,
            loss_acc,
            binconv_names: b.binconv_names,
            binconvs: b.binconvs,
            forward: b.forward,
            loss_ops,
            backward,
            _per_sample: per_sample,
        };
        Ok((network, b.made))
    }

    fn dispatches_of<'a>(
        &'a self,
        ops: &'a [Op],
        s: StepScalars,
    ) -> Vec<(&'a Dispatch, Option<Imm>)> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Dispatch(d) => out.push((d, None)),
                Op::ConvWeight(c) => out.extend(c.dispatches().into_iter().map(|d| (d, None))),
                Op::BinForward(i) => out.extend(
                    self.binconvs[*i]
                        .forward_dispatches()
                        .into_iter()
                        .map(|d| (d, None)),
                ),
                Op::BinBackward(i) => out.extend(self.binconvs[*i].backward_dispatches(s.t, s.k)),
            }
        }
        out
    }

    /// Every dispatch of a training step (forward, loss, backward) in record order, with the
    /// immediates of this step where they differ from the dispatch's own.
    pub fn step_dispatches(&self, s: StepScalars) -> Vec<(&Dispatch, Option<Imm>)> {
        let mut out = self.dispatches_of(&self.forward, s);
        out.extend(self.loss_ops.iter().map(|d| (d, None)));
        out.extend(self.dispatches_of(&self.backward, s));
        out
    }

    /// The forward pass only (logits), no loss.
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>) {
        for (d, _) in self.dispatches_of(&self.forward, StepScalars { t: 1.0, k: 1.0 }) {
            d.record(pass);
        }
    }

    /// Forward, loss (accumulated into `loss_acc`) and, in training, the backward that writes
    /// every parameter gradient.
    pub fn record_step(&self, pass: &mut wgpu::ComputePass<'_>, s: StepScalars) {
        for (d, imm) in self.step_dispatches(s) {
            match imm {
                Some(imm) => d.record_with(pass, imm.bytes()),
                None => d.record(pass),
            }
        }
    }

    /// Evaluation of one batch whose first `valid` rows are real: forward and loss totals.
    pub fn record_eval(&self, pass: &mut wgpu::ComputePass<'_>, valid: usize) -> Result<()> {
        self.record_forward(pass);
        let imm = loss::immediates(&self.logits.shape, valid)?;
        for d in &self.loss_ops {
            d.record_with(pass, &imm);
        }
        Ok(())
    }
}
