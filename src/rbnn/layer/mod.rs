//! `BinaryConv2d`: the RBNN binary convolution (docs/numerics.md sections 1-2) as a set of
//! dispatches built once over preallocated tensors and recorded into a training step's compute
//! pass.
//!
//! Forward (`record_forward`):
//!   weight side   standardize::weight_forward  weight -> w2 (+ std, alpha, theta terms)
//!                 rotate::rotate_forward       w2, R1, R2 -> rw, w3, bw = alpha*sign(w3)
//!                 binconv::pack_weights        w3 -> packed sign/nonzero bits
//!   input side    standardize::activation_stats  x -> per-sample mean, std (software adapters:
//!                                                  activation_stats_walk, one pass, two stages)
//!                 binconv::pack_activations      x - mean -> packed bits
//!                 binconv::binconv               y = alpha * (1-bit conv, exact integers)
//!   with a32, the input side is a2 = (x - mean)/std and y = conv::forward(a2, bw) in float.
//!
//! Backward (`record_backward`, float, from the foundation's conv kernels). Since
//! y = conv(ba, alpha*sign(w3)) and the conv is bilinear, alpha is folded into the weight instead
//! of scaling dy:
//!   dL/dba   = conv::backward_data(dy, alpha*sign(w3))                -> dx (in place below)
//!   dbw      = conv::backward_weight(sign(a2), dy), dL/dsign(w3) = alpha_o dbw
//!   dalpha_o = ops::channel_dot(dy, y) / alpha_o  (= sum dy_o * (conv before scaling)_o)
//!   then rotate::weight_backward (ApproxSign, theta, standardisation) and
//!   standardize::activation_backward (ApproxSign with ta = max(t,1), standardisation).
//! With `KernelVariant::Software` (software adapters) the activation backward is
//! standardize::activation_backward_walk, whose sums pass runs right after the data gradient and
//! also writes sign(a2) (no separate sign pass), a network whose BatchNorm consumes y hands
//! the layer the partials of its dalpha sum (`take_alpha_partials`), and the weight side
//! (standardisation, rotation, their backward) runs shaders/weight_software.wgsl's barrier-free
//! twins.

pub mod cpu;

use super::binconv;
pub use super::rotate::rotation_dims;
use super::rotate::{self, ParamGrads, WeightDims, WeightScratch};
use super::standardize::{self, ActivationGrad, ActivationOutput, RowDims};
use crate::gpu::{Dispatch, Gpu, Imm, KernelVariant, Tensor};
use crate::ops::channel_dot::{channel_dot, channel_dot_finish, ChannelDot};
use crate::ops::conv::{self, ConvBackwardWeight, ConvShape};
use crate::ops::conv_coop;
use crate::ops::shape::expect_len;
use anyhow::{bail, Context, Result};

/// alpha's initial value, mean(|W_o|) per output channel of a weight [Co, ...]
/// (docs/numerics.md section 1: taken from PyTorch's default conv init, before the model
/// re-initialises W). theta starts at pi/2 and R1, R2 as `rotation::random_orthogonal`.
pub fn initial_alpha(weight: &[f32], co: usize) -> Vec<f32> {
    let n = weight.len() / co.max(1);
    weight
        .chunks(n.max(1))
        .map(|row| (row.iter().map(|v| v.abs() as f64).sum::<f64>() / n as f64) as f32)
        .collect()
}

/// The tensors a layer is built on, all allocated by the caller (parameters and gradients are
/// typically views into arenas). Names follow the official state_dict: weight, alpha, rotate
/// (theta), R1, R2. The five gradient tensors are all given (training) or all None (evaluation:
/// no backward, no backward scratch).
pub struct BinaryConvTensors {
    /// [Co, Ci, kh, kw].
    pub weight: Tensor,
    /// [Co] (the official shape [Co,1,1] has the same elements).
    pub alpha: Tensor,
    /// theta, [Co] (officially [Co,1,1,1]).
    pub rotate: Tensor,
    /// [a, a]: state, but not trained by SGD (keep it out of the optimizer's arena); rewritten by
    /// the rotation update.
    pub r1: Tensor,
    /// [b, b], likewise.
    pub r2: Tensor,
    pub weight_grad: Option<Tensor>,
    pub alpha_grad: Option<Tensor>,
    pub rotate_grad: Option<Tensor>,
    /// Input [N, Ci, H, W].
    pub x: Tensor,
    /// Output [N, Co, OH, OW].
    pub y: Tensor,
    /// dL/dy, read by the backward.
    pub dy: Option<Tensor>,
    /// dL/dx, overwritten by the backward.
    pub dx: Option<Tensor>,
}

/// The gradient tensors of a training layer.
struct GradTensors<'a> {
    weight: &'a Tensor,
    alpha: &'a Tensor,
    rotate: &'a Tensor,
    dy: &'a Tensor,
    dx: &'a Tensor,
}

impl BinaryConvTensors {
    /// Every tensor (gradients included) on its own zeroed buffer, named `{name}.weight` etc.
    /// (tests and tools; a model uses arena views instead).
    pub fn allocate(gpu: &Gpu, name: &str, s: &ConvShape) -> Result<BinaryConvTensors> {
        let (a, b) = rotation_dims(s.ci * s.kh * s.kw);
        let w = [s.co, s.ci, s.kh, s.kw];
        let t = |what: &str, shape: &[usize]| gpu.try_tensor(&format!("{name}.{what}"), shape);
        Ok(BinaryConvTensors {
            weight: t("weight", &w)?,
            alpha: t("alpha", &[s.co])?,
            rotate: t("rotate", &[s.co])?,
            r1: t("R1", &[a, a])?,
            r2: t("R2", &[b, b])?,
            weight_grad: Some(t("weight.grad", &w)?),
            alpha_grad: Some(t("alpha.grad", &[s.co])?),
            rotate_grad: Some(t("rotate.grad", &[s.co])?),
            x: t("x", &[s.n, s.ci, s.h, s.w])?,
            y: t("y", &[s.n, s.co, s.oh(), s.ow()])?,
            dy: Some(t("dy", &[s.n, s.co, s.oh(), s.ow()])?),
            dx: Some(t("dx", &[s.n, s.ci, s.h, s.w])?),
        })
    }

    /// Checks every length; returns the gradient tensors when all five are given.
    fn check(&self, s: &ConvShape, d: WeightDims) -> Result<Option<GradTensors<'_>>> {
        expect_len(&self.weight, d.len(), "weight")?;
        expect_len(&self.alpha, d.co, "alpha")?;
        expect_len(&self.rotate, d.co, "rotate")?;
        expect_len(&self.r1, d.a * d.a, "R1")?;
        expect_len(&self.r2, d.b * d.b, "R2")?;
        expect_len(&self.x, s.input_len(), "input")?;
        expect_len(&self.y, s.output_len(), "output")?;
        match (
            &self.weight_grad,
            &self.alpha_grad,
            &self.rotate_grad,
            &self.dy,
            &self.dx,
        ) {
            (Some(weight), Some(alpha), Some(rotate), Some(dy), Some(dx)) => {
                expect_len(weight, d.len(), "weight gradient")?;
                expect_len(alpha, d.co, "alpha gradient")?;
                expect_len(rotate, d.co, "rotate gradient")?;
                expect_len(dy, s.output_len(), "output gradient")?;
                expect_len(dx, s.input_len(), "input gradient")?;
                Ok(Some(GradTensors {
                    weight,
                    alpha,
                    rotate,
                    dy,
                    dx,
                }))
            }
            (None, None, None, None, None) => Ok(None),
            _ => bail!(
                "the weight, alpha and rotate gradients, dy and dx must be given all together \
                 (training) or not at all (evaluation)"
            ),
        }
    }
}

/// The input side of the forward: 1-bit (packed, exact) or a32 (float activations).
enum InputForward {
    Binary {
        abits: Tensor,
        pack: Dispatch,
        conv: Dispatch,
    },
    A32 {
        standardize: Dispatch,
        conv: Dispatch,
    },
}

/// The backward's dispatches and scratch (training layers only).
struct Backward {
    /// Conv weight gradient against the unscaled dy, [Co, Ci, kh, kw].
    dbw: Tensor,
    /// Per-sample sums of the activation backward, [N, 2].
    asums: Tensor,
    /// Their per-lane partials (software variant, standardize::activation_backward_walk).
    apartials: Option<Tensor>,
    data: Dispatch,
    /// sign(a2) into `act` (binary activations, GPU variant; with a32 the forward wrote a2
    /// there).
    activation_sign: Option<Dispatch>,
    /// Right after `data`, with the activation backward's immediates: the software variant's
    /// activation sums, which also write sign(a2) into `act` (binary activations).
    activation_early: Vec<Dispatch>,
    weight_conv: ConvBackwardWeight,
    weight: Dispatch,
    alpha: ChannelDot,
    /// Last, with the same immediates: the rest of the activation backward.
    activation: Vec<Dispatch>,
}

/// One RBNN binary convolution: parameters (the caller's), scratch (its own, allocated once) and
/// every dispatch of its forward and backward, built once.
pub struct BinaryConv2d {
    pub shape: ConvShape,
    /// Activations kept in full precision (the official `a32` option).
    pub a32: bool,
    pub dims: WeightDims,
    pub tensors: BinaryConvTensors,
    /// w2, rw, w3, alpha*sign(w3) and the per-channel terms of the last forward.
    pub scratch: WeightScratch,
    /// Per-sample (mean, std) of x, [N, 2].
    pub astats: Tensor,
    /// The activations the float kernels see, [N, Ci, H, W]: a2 with a32 (written by the
    /// forward), else sign(a2) (written by the backward for the weight gradient; absent in
    /// evaluation).
    pub act: Option<Tensor>,
    /// Packed sign(w3) [Co, kh*kw, Cw, 2] (sign and nonzero planes; binary activations only).
    pub wbits: Option<Tensor>,
    weight_forward: Vec<Dispatch>,
    /// The per-lane partials of the software variant's activation statistics
    /// (standardize::activation_stats_walk).
    stats_partials: Option<Tensor>,
    activation_stats: Vec<Dispatch>,
    input_forward: InputForward,
    backward: Option<Backward>,
}

impl BinaryConv2d {
    /// Builds the layer over the caller's tensors (checked against `shape`), allocating its
    /// scratch and every dispatch once.
    pub fn new(
        gpu: &Gpu,
        shape: ConvShape,
        a32: bool,
        tensors: BinaryConvTensors,
    ) -> Result<BinaryConv2d> {
        let s = shape;
        s.validate()?;
        let dims = WeightDims::new(s.co, s.ci * s.kh * s.kw);
        let name = tensors
            .weight
            .label
            .strip_suffix(".weight")
            .unwrap_or(&tensors.weight.label)
            .to_string();
        let context = || format!("binary conv {name} {s:?}");
        let grads = tensors.check(&s, dims).with_context(context)?;
        let t = &tensors;
        let rows = RowDims {
            rows: s.n,
            len: s.ci * s.h * s.w,
        };
        let scratch = WeightScratch::new(gpu, &name, dims)?;
        let variant = gpu.kernel_variant()?;
        let astats = gpu.try_tensor(&format!("{name}.astats"), &[s.n, 2])?;
        let act = if a32 || grads.is_some() {
            Some(gpu.try_tensor(&format!("{name}.act"), &[s.n, s.ci, s.h, s.w])?)
        } else {
            None
        };

        let mut weight_forward = vec![standardize::weight_forward(
            gpu, variant, dims, &t.weight, &t.alpha, &t.rotate, &scratch,
        )?];
        weight_forward.extend(rotate::rotate_forward(
            gpu, variant, dims, &t.r1, &t.r2, &scratch,
        )?);
        let (stats_partials, activation_stats) = if variant == KernelVariant::Software {
            let partials = gpu.try_tensor(
                &format!("{name}.stats_partials"),
                &[standardize::walk_stats_partials_len(rows)],
            )?;
            let stats = standardize::activation_stats_walk(gpu, rows, &t.x, &astats, &partials)?;
            (Some(partials), stats.into())
        } else {
            let stats = standardize::activation_stats(gpu, rows, &t.x, &astats)?;
            (None, vec![stats])
        };
        let (wbits, input_forward) = match &act {
            Some(a2) if a32 => {
                let standardize = standardize::activation_output(
                    gpu,
                    variant,
                    rows,
                    &t.x,
                    &astats,
                    a2,
                    ActivationOutput::Standardized,
                )?;
                let conv = conv::forward(gpu, &s, a2, &scratch.bw, &t.y)?;
                (None, InputForward::A32 { standardize, conv })
            }
            _ => {
                let wbits =
                    gpu.try_tensor(&format!("{name}.wbits"), &[binconv::weight_bits_len(&s)])?;
                let abits = gpu.try_tensor(
                    &format!("{name}.abits"),
                    &[binconv::activation_bits_len(&s)],
                )?;
                weight_forward.push(binconv::pack_weights(gpu, &s, &scratch.w3, &wbits)?);
                let pack = binconv::pack_activations(gpu, variant, &s, &t.x, &astats, &abits)?;
                let conv = binconv::binconv(gpu, &s, &abits, &wbits, &t.alpha, &t.y)?;
                (Some(wbits), InputForward::Binary { abits, pack, conv })
            }
        };
        let has_grads = grads.is_some();
        let mut layer = BinaryConv2d {
            shape: s,
            a32,
            dims,
            tensors,
            scratch,
            astats,
            act,
            wbits,
            weight_forward,
            stats_partials,
            activation_stats,
            input_forward,
            backward: None,
        };
        if has_grads {
            layer.backward = Some(layer.build_backward(gpu, &name).with_context(context)?);
        }
        Ok(layer)
    }

    /// The backward's scratch and dispatches, for a layer whose tensors hold gradients.
    fn build_backward(&self, gpu: &Gpu, name: &str) -> Result<Backward> {
        let (s, t) = (&self.shape, &self.tensors);
        let (Some(g), Some(act)) = (t.check(s, self.dims)?, &self.act) else {
            bail!("a backward needs the gradient tensors");
        };
        let rows = RowDims {
            rows: s.n,
            len: s.ci * s.h * s.w,
        };
        let dbw = gpu.try_tensor(&format!("{name}.dbw"), &[s.co, s.ci, s.kh, s.kw])?;
        let asums = gpu.try_tensor(&format!("{name}.asums"), &[s.n, 2])?;
        let variant = gpu.kernel_variant()?;
        let software = variant == KernelVariant::Software;
        let activation_sign = if self.a32 || software {
            None
        } else {
            Some(standardize::activation_output(
                gpu,
                variant,
                rows,
                &t.x,
                &self.astats,
                act,
                ActivationOutput::Sign,
            )?)
        };
        // Tensor cores when selected (opt-in, see ops::conv_coop) and both GEMMs have a ternary
        // operand.
        let (data, weight_conv) = if !self.a32 && conv_coop::selected(gpu) {
            (
                conv_coop::backward_data(gpu, s, g.dy, &self.scratch.bw, &t.alpha, g.dx)?,
                conv_coop::backward_weight(gpu, s, act, g.dy, &dbw)?,
            )
        } else {
            (
                conv::backward_data(gpu, s, g.dy, &self.scratch.bw, g.dx)?,
                conv::backward_weight(gpu, s, act, g.dy, &dbw)?,
            )
        };
        let grads = ParamGrads {
            weight: g.weight,
            rotate: g.rotate,
        };
        let weight = rotate::weight_backward(gpu, variant, self.dims, &dbw, &self.scratch, &grads)?;
        // dalpha_o = sum dy * (conv output before scaling) = sum dy * y / alpha_o.
        let alpha = channel_dot(gpu, variant, g.dy, &t.y, &t.alpha, g.alpha)?;
        let (apartials, activation_early, activation) = if software {
            let partials = gpu.try_tensor(
                &format!("{name}.apartials"),
                &[standardize::walk_partials_len(rows)],
            )?;
            let [sums, finish, apply] = standardize::activation_backward_walk(
                gpu,
                rows,
                activation_grad(self.a32),
                &t.x,
                &self.astats,
                g.dx,
                act,
                &partials,
                &asums,
            )?;
            (Some(partials), vec![sums, finish], vec![apply])
        } else {
            let activation = standardize::activation_backward(
                gpu,
                variant,
                rows,
                activation_grad(self.a32),
                &t.x,
                &self.astats,
                g.dx,
                &asums,
            )?;
            (None, Vec::new(), activation.into())
        };
        Ok(Backward {
            dbw,
            asums,
            apartials,
            data,
            activation_sign,
            activation_early,
            weight_conv,
            weight,
            alpha,
            activation,
        })
    }

    /// Takes the alpha gradient's per-channel dot products from `partials`, which a kernel that
    /// runs earlier in the backward writes (the software variant's BatchNorm backward on this
    /// layer's output, `batchnorm::BatchNorm::dot_partials`: the partials of sum dy * y), instead
    /// of the layer's own pass over dy and y: `ops::channel_dot::channel_dot_finish`.
    pub fn take_alpha_partials(&mut self, gpu: &Gpu, partials: &Tensor) -> Result<()> {
        let t = &self.tensors;
        let (Some(b), Some(alpha_grad)) = (&mut self.backward, &t.alpha_grad) else {
            bail!("only a training layer has an alpha gradient");
        };
        b.alpha = channel_dot_finish(gpu, &t.y.shape, partials, &t.alpha, alpha_grad)?;
        Ok(())
    }

    /// The weight side of the forward (w2, rw, w3, packed or scaled sign(w3)): depends on the
    /// parameters only, so evaluation may record it once per weight update.
    pub fn forward_weight_dispatches(&self) -> Vec<&Dispatch> {
        self.weight_forward.iter().collect()
    }

    /// The input side of the forward: y from x and the weight side's results.
    pub fn forward_input_dispatches(&self) -> Vec<&Dispatch> {
        let mut out: Vec<&Dispatch> = self.activation_stats.iter().collect();
        match &self.input_forward {
            InputForward::Binary { pack, conv, .. } => out.extend([pack, conv]),
            InputForward::A32 { standardize, conv } => out.extend([standardize, conv]),
        }
        out
    }

    /// Every dispatch of the forward, in record order.
    pub fn forward_dispatches(&self) -> Vec<&Dispatch> {
        let mut out = self.forward_weight_dispatches();
        out.extend(self.forward_input_dispatches());
        out
    }

    /// The whole forward: y = alpha * conv(sign(a2), sign(w3)) (or a2 with a32).
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in self.forward_dispatches() {
            d.record(pass);
        }
    }

    /// True when built with gradient tensors (training).
    pub fn has_backward(&self) -> bool {
        self.backward.is_some()
    }

    /// Every dispatch of the backward in record order, each with the immediates it needs for
    /// ApproxSign's (t, k) where it depends on them (None: its own). Empty for an eval layer.
    pub fn backward_dispatches(&self, t: f32, k: f32) -> Vec<(&Dispatch, Option<Imm>)> {
        let Some(b) = &self.backward else {
            return Vec::new();
        };
        let rows = RowDims {
            rows: self.shape.n,
            len: self.shape.ci * self.shape.h * self.shape.w,
        };
        let imm = standardize::activation_backward_immediates(rows, activation_grad(self.a32), t);
        let mut out: Vec<(&Dispatch, Option<Imm>)> = vec![(&b.data, None)];
        if let Some(sign) = &b.activation_sign {
            out.push((sign, None));
        }
        out.extend(b.activation_early.iter().map(|d| (d, Some(imm.clone()))));
        out.extend(b.weight_conv.dispatches().into_iter().map(|d| (d, None)));
        out.extend(b.alpha.dispatches.iter().map(|d| (d, None)));
        out.push((
            &b.weight,
            Some(rotate::weight_backward_immediates(self.dims, t, k)),
        ));
        out.extend(b.activation.iter().map(|d| (d, Some(imm.clone()))));
        out
    }

    /// The backward with t and k of this step (immediates, so one submit may hold several
    /// steps): overwrites dx and the weight, alpha and rotate gradients.
    pub fn record_backward(&self, pass: &mut wgpu::ComputePass<'_>, t: f32, k: f32) {
        for (d, imm) in self.backward_dispatches(t, k) {
            match imm {
                Some(imm) => d.record_with(pass, imm.bytes()),
                None => d.record(pass),
            }
        }
    }

    /// Bytes of GPU memory the layer allocated for itself (scratch, not the caller's tensors).
    pub fn scratch_bytes(&self) -> u64 {
        let s = &self.scratch;
        let mut tensors = vec![&s.w2, &s.wstats, &s.rw, &s.w3, &s.bw, &self.astats];
        tensors.extend(
            self.act
                .iter()
                .chain(&self.wbits)
                .chain(&self.stats_partials),
        );
        if let InputForward::Binary { abits, .. } = &self.input_forward {
            tensors.push(abits);
        }
        let mut bytes: u64 = tensors.iter().map(|t| t.bytes()).sum();
        if let Some(b) = &self.backward {
            bytes += b.dbw.bytes()
                + b.asums.bytes()
                + b.apartials.as_ref().map_or(0, |t| t.bytes())
                + b.weight_conv.scratch_bytes()
                + b.alpha.partials.bytes();
        }
        bytes
    }
}

fn activation_grad(a32: bool) -> ActivationGrad {
    if a32 {
        ActivationGrad::A32
    } else {
        ActivationGrad::ApproxSign
    }
}
