//! Float 2D convolution: forward, data gradient and weight gradient.
//!
//! Layouts: input x [N, Ci, H, W], weight w [Co, Ci, kh, kw], output y [N, Co, OH, OW], zero
//! padding, any kernel size, stride and padding, no bias. Used by the float stem convs, the 1x1
//! stride-2 shortcuts of resnet18, and the float backward of the binary conv layer.
//!
//! Two kernel families, one file each, with the CPU reference beside them:
//! - `direct` (shaders/conv_direct.wgsl): groups of 8 subgroup lanes that share loaded values
//!   through subgroup shuffles instead of workgroup memory, with register tiles the driver
//!   unrolls; `forward`, `backward_data` and `backward_weight` run them wherever
//!   `direct_supported` holds (software adapters with subgroups, kernels up to 3x3, stride 1 or
//!   2), and their vec4 variants (shaders/conv_direct4.wgsl, conv_weight4.wgsl: the same bits)
//!   where `vec4_supported` holds too.
//! - `gemm` (shaders/conv_gemm.wgsl): tiled implicit GEMMs with 4x4 register micro-tiles, for
//!   every other shape and adapter. Their tile shape is a `Tiles` (WGSL override constants); the
//!   `*_with` variants always run them with the tiles given (for the benchmark and for tuning).
//! - `cpu`: the f64 reference.
//!
//! Every conv kernel (these, ops::conv_coop, rbnn::binconv, infer::kernels::binconv) takes its
//! shape as the immediates `ConvParams` (shaders/common/conv_params.wgsl).

pub mod cpu;
mod direct;
mod gemm;

pub use direct::{direct_supported, vec4_supported, DirectLoads};
pub(crate) use gemm::tiled_weight_grad;
pub use gemm::{backward_data_with, backward_weight_with, forward_naive, forward_with, Tiles};

use crate::gpu::{grid_1d, Dispatch, Gpu, Kernel, Tensor};
use crate::ops::shape::expect_len;
use anyhow::{ensure, Context, Result};
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

/// One convolution: batch `n`, `ci` input channels of `h` x `w`, `co` output channels, a `kh` x
/// `kw` kernel, `stride`, and `pad` zero pixels on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    /// A square kernel with equal stride and padding in both directions, the only kind the models
    /// use.
    pub fn square(
        n: usize,
        ci: usize,
        hw: usize,
        co: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        ConvShape {
            n,
            ci,
            h: hw,
            w: hw,
            co,
            kh: k,
            kw: k,
            stride,
            pad,
        }
    }

    /// Output height; 0 when the kernel does not fit the padded input (see `validate`).
    pub fn oh(&self) -> usize {
        out_size(self.h, self.kh, self.stride, self.pad)
    }

    pub fn ow(&self) -> usize {
        out_size(self.w, self.kw, self.stride, self.pad)
    }

    pub fn input_len(&self) -> usize {
        self.n * self.ci * self.h * self.w
    }

    pub fn output_len(&self) -> usize {
        self.n * self.co * self.oh() * self.ow()
    }

    pub fn weight_len(&self) -> usize {
        self.co * self.ci * self.kh * self.kw
    }

    /// Multiply-adds of the forward (and of each backward): N*OH*OW * Co * Ci*kh*kw.
    pub fn macs(&self) -> usize {
        self.output_len() * self.ci * self.kh * self.kw
    }

    /// Operations of the forward (and of each backward), 2 per multiply-add: what benchmarks
    /// divide by the time for GFLOP/s.
    pub fn flop(&self) -> f64 {
        2.0 * self.macs() as f64
    }

    /// Output pixels of the whole batch, N*OH*OW: the GEMM rows of the forwards.
    pub fn output_pixels(&self) -> usize {
        self.n * self.oh() * self.ow()
    }

    /// Fails unless every size is positive and the kernel fits the padded input.
    pub fn validate(&self) -> Result<()> {
        let s = self;
        ensure!(
            s.n > 0 && s.ci > 0 && s.h > 0 && s.w > 0 && s.co > 0 && s.kh > 0 && s.kw > 0,
            "conv {s:?}: every size must be positive"
        );
        ensure!(s.stride > 0, "conv {s:?}: stride must be positive");
        ensure!(
            s.h + 2 * s.pad >= s.kh && s.w + 2 * s.pad >= s.kw,
            "conv {s:?}: the {}x{} kernel does not fit the padded {}x{} input",
            s.kh,
            s.kw,
            s.h + 2 * s.pad,
            s.w + 2 * s.pad
        );
        Ok(())
    }
}

/// The immediates of every conv kernel, field for field the WGSL struct ConvParams of
/// shaders/common/conv_params.wgsl: the shape, then `rows` and `aux`, whose meaning depends on
/// the entry point (see there).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ConvParams {
    pub n: u32,
    pub ci: u32,
    pub h: u32,
    pub w: u32,
    pub co: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    pub oh: u32,
    pub ow: u32,
    pub rows: u32,
    pub aux: u32,
}

impl ConvParams {
    pub fn new(s: &ConvShape, rows: usize, aux: usize) -> ConvParams {
        let u = |v: usize| v as u32;
        ConvParams {
            n: u(s.n),
            ci: u(s.ci),
            h: u(s.h),
            w: u(s.w),
            co: u(s.co),
            kh: u(s.kh),
            kw: u(s.kw),
            stride: u(s.stride),
            pad: u(s.pad),
            oh: u(s.oh()),
            ow: u(s.ow()),
            rows: u(rows),
            aux: u(aux),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

fn out_size(size: usize, k: usize, stride: usize, pad: usize) -> usize {
    if size + 2 * pad < k || stride == 0 {
        0
    } else {
        (size + 2 * pad - k) / stride + 1
    }
}

pub(crate) fn check_forward(s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<()> {
    s.validate()?;
    check_len("input", x, s.input_len(), s)?;
    check_len("weight", w, s.weight_len(), s)?;
    check_len("output", y, s.output_len(), s)
}

pub(crate) fn check_backward_data(
    s: &ConvShape,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    s.validate()?;
    check_len("output gradient", dy, s.output_len(), s)?;
    check_len("weight", w, s.weight_len(), s)?;
    check_len("input gradient", dx, s.input_len(), s)
}

pub(crate) fn check_backward_weight(
    s: &ConvShape,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<()> {
    s.validate()?;
    check_len("input", x, s.input_len(), s)?;
    check_len("output gradient", dy, s.output_len(), s)?;
    check_len("weight gradient", dw, s.weight_len(), s)
}

fn check_len(what: &str, t: &Tensor, want: usize, s: &ConvShape) -> Result<()> {
    expect_len(t, want, &format!("conv {s:?} {what}"))
}

pub(crate) fn check_z(s: &ConvShape, z: usize) -> Result<u32> {
    u32::try_from(z)
        .ok()
        .filter(|&z| z <= 65535)
        .with_context(|| format!("conv {s:?}: {z} workgroups along z, over the limit of 65535"))
}

/// Workgroups for `tiles` row tiles (split over x and y past 65535) and `z` along z.
pub(crate) fn grid(tiles: usize, z: u32) -> [u32; 3] {
    let [x, y, _] = grid_1d(tiles, 1);
    [x, y, z]
}

/// y = conv2d(x, w) (overwrites y): the direct kernel where `direct_supported` holds (its vec4
/// variant where `vec4_supported` does too), else the tiled GEMM with the default tiles.
pub fn forward(gpu: &Gpu, s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Dispatch> {
    if direct_supported(gpu, s) {
        return forward_direct(gpu, s, DirectLoads::Vec4, x, w, y);
    }
    forward_with(gpu, s, Tiles::for_columns(s.co), x, w, y)
}

/// dx = d(sum y*dy)/dx, the transposed convolution of dy with w (overwrites dx).
pub fn backward_data(
    gpu: &Gpu,
    s: &ConvShape,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    if direct_supported(gpu, s) {
        return backward_data_direct(gpu, s, DirectLoads::Vec4, dy, w, dx);
    }
    backward_data_with(gpu, s, Tiles::for_data_grad(s.ci, s.h * s.w), dy, w, dx)
}

/// dw = d(sum y*dy)/dw (overwrites dw). Allocates its partial-sum buffer here, once.
pub fn backward_weight(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<ConvBackwardWeight> {
    if direct_supported(gpu, s) {
        return backward_weight_direct(gpu, s, DirectLoads::Vec4, x, dy, dw);
    }
    backward_weight_with(gpu, s, Tiles::for_weight_grad(s.co), x, dy, dw)
}

/// `forward` on the direct kernels with the loads given; an error where `direct_supported` does
/// not hold.
pub fn forward_direct(
    gpu: &Gpu,
    s: &ConvShape,
    loads: DirectLoads,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    direct::check_supported(gpu, s)?;
    check_forward(s, x, w, y)?;
    direct::direct(gpu, s, false, loads, [x, w, y])
}

/// `backward_data` on the direct kernels with the loads given (see `forward_direct`).
pub fn backward_data_direct(
    gpu: &Gpu,
    s: &ConvShape,
    loads: DirectLoads,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    direct::check_supported(gpu, s)?;
    check_backward_data(s, dy, w, dx)?;
    direct::direct(gpu, s, true, loads, [dy, w, dx])
}

/// `backward_weight` on the direct kernels with the loads given (see `forward_direct`).
pub fn backward_weight_direct(
    gpu: &Gpu,
    s: &ConvShape,
    loads: DirectLoads,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<ConvBackwardWeight> {
    direct::check_supported(gpu, s)?;
    check_backward_weight(s, x, dy, dw)?;
    direct::direct_weight(gpu, s, loads, x, dy, dw)
}

/// The weight gradient's dispatches and the partial-sum buffer they own (allocated once, here).
pub struct ConvBackwardWeight {
    partial: Option<Tensor>,
    dispatches: Vec<Dispatch>,
    splits: usize,
}

impl ConvBackwardWeight {
    /// The GEMM over reduction chunks, then (with more than one chunk) the fixed-order sum.
    pub fn dispatches(&self) -> Vec<&Dispatch> {
        self.dispatches.iter().collect()
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }

    /// The dispatches, owned (the partial buffer lives as long as their bind groups).
    pub fn into_dispatches(self) -> Vec<Dispatch> {
        self.dispatches
    }

    /// Number of chunks the N*OH*OW reduction is split into.
    pub fn splits(&self) -> usize {
        self.splits
    }

    /// Bytes of the partial-sum buffer (0 with a single chunk, which writes dw directly).
    pub fn scratch_bytes(&self) -> u64 {
        self.partial.as_ref().map_or(0, Tensor::bytes)
    }
}

/// Most elements of the partial buffer of a split weight gradient (64 MiB).
const MAX_PARTIAL: usize = 16 << 20;

/// The kernel that sums a weight gradient's chunks in order: conv_gemm.wgsl's reduce_splits, or
/// (after the vec4 direct kernel) conv_weight4.wgsl's reduce_splits4, the same sums read as vec4s.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SplitSum {
    Scalar,
    Vec4,
}

/// A weight-gradient kernel (tiled GEMM or direct) over `splits` chunks of the reduction: with
/// one chunk it writes dw directly, else a partial buffer [splits, dw] that `sum` adds up in
/// order.
#[allow(clippy::too_many_arguments)]
fn split_weight_grad(
    gpu: &Gpu,
    s: &ConvShape,
    gemm: &Arc<Kernel>,
    sum: SplitSum,
    imm: ConvParams,
    workgroups: [u32; 3],
    splits: usize,
    [x, dy, dw]: [&Tensor; 3],
) -> Result<ConvBackwardWeight> {
    let flop = s.flop();
    if splits == 1 {
        let d = gpu
            .dispatch(gemm, &[x, dy, dw], imm.bytes(), workgroups)?
            .with_flop(flop);
        return Ok(ConvBackwardWeight {
            partial: None,
            dispatches: vec![d],
            splits,
        });
    }
    let partial = gpu.try_tensor(
        &format!("{} partial [{splits} splits]", dw.label),
        &[splits, s.weight_len()],
    )?;
    let d_gemm = gpu
        .dispatch(gemm, &[x, dy, &partial], imm.bytes(), workgroups)?
        .with_flop(flop);
    let (reduce, outputs_per_invocation) = match sum {
        SplitSum::Scalar => (gpu.kernel("conv_gemm", "reduce_splits", &[])?, 1),
        SplitSum::Vec4 => (gpu.kernel("conv_weight4", "reduce_splits4", &[])?, 4),
    };
    let d_reduce = gpu.dispatch(
        &reduce,
        &[&partial, dw],
        ConvParams::new(s, s.weight_len(), splits).bytes(),
        grid_1d(s.weight_len().div_ceil(outputs_per_invocation), 256),
    )?;
    Ok(ConvBackwardWeight {
        partial: Some(partial),
        dispatches: vec![d_gemm, d_reduce],
        splits,
    })
}
