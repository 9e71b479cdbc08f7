//! Float 2D convolution (shaders/conv.wgsl): forward, data gradient and weight gradient.
//!
//! Layouts: input x [N, Ci, H, W], weight w [Co, Ci, kh, kw], output y [N, Co, OH, OW], zero
//! padding, any kernel size, stride and padding, no bias. Used by the float stem convs, the 1x1
//! stride-2 shortcuts of resnet18, and the float backward of the binary conv layer.
//!
//! Two implementations:
//! - direct kernels (`direct`, `direct_weight`), used by `forward`, `backward_data` and
//!   `backward_weight` wherever `direct_supported` holds (kernels up to 3x3, stride 1 or 2, an
//!   adapter with subgroups): groups of 8 subgroup lanes that share loaded values through
//!   subgroup shuffles instead of workgroup memory, with register tiles the driver unrolls.
//! - tiled implicit GEMMs with 4x4 register micro-tiles, for every other shape and adapter. Their
//!   tile shape is a `Tiles` (WGSL override constants); the `*_with` variants always run them with
//!   the tiles given (for the benchmark and for tuning).

use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Kernel, Tensor};
use crate::ops::shape::expect_len;
use anyhow::{ensure, Context, Result};
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

    pub(crate) fn immediates(&self, rows: usize, aux: usize) -> Imm {
        let s = self;
        [
            s.n,
            s.ci,
            s.h,
            s.w,
            s.co,
            s.kh,
            s.kw,
            s.stride,
            s.pad,
            s.oh(),
            s.ow(),
            rows,
            aux,
        ]
        .iter()
        .fold(Imm::new(), |imm, &v| imm.u(v as u32))
    }
}

fn out_size(size: usize, k: usize, stride: usize, pad: usize) -> usize {
    if size + 2 * pad < k || stride == 0 {
        0
    } else {
        (size + 2 * pad - k) / stride + 1
    }
}

/// Workgroup tile of one implicit GEMM: `bm` x `bn` outputs, the reduction staged `bk` at a time.
/// Each invocation computes 4x4 outputs, so a workgroup has bm*bn/16 invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
}

impl Tiles {
    pub fn invocations(&self) -> u32 {
        self.bm * self.bn / 16
    }

    fn workgroup_bytes(&self) -> u32 {
        // As, Bs and backward_weight's column table (a vec4 per column).
        4 * (self.bk * (self.bm + self.bn) + 4 * self.bn)
    }

    /// The rules the shader's load loops rely on (every invocation loads the same number of
    /// elements at a fixed row or column) and the adapter's limits.
    pub fn check(&self, gpu: &Gpu) -> Result<()> {
        let t = self;
        let wg = t.invocations();
        ensure!(
            t.bm.is_multiple_of(16)
                && t.bn.is_multiple_of(16)
                && (16..=256).contains(&t.bm)
                && (16..=256).contains(&t.bn),
            "conv tiles {t:?}: bm and bn must be multiples of 16 in 16..=256"
        );
        ensure!(
            t.bk > 0
                && (16 * t.bk).is_multiple_of(t.bm)
                && (16 * t.bk).is_multiple_of(t.bn)
                && wg.is_multiple_of(t.bk),
            "conv tiles {t:?}: bk must be a multiple of bm/16 and bn/16 and divide bm*bn/16"
        );
        ensure!(
            wg <= gpu.limits.max_compute_invocations_per_workgroup.min(256),
            "conv tiles {t:?}: {wg} invocations per workgroup, over the limit of {}",
            gpu.limits.max_compute_invocations_per_workgroup.min(256)
        );
        ensure!(
            t.workgroup_bytes() <= gpu.limits.max_compute_workgroup_storage_size,
            "conv tiles {t:?}: {} bytes of workgroup memory, the adapter allows {}",
            t.workgroup_bytes(),
            gpu.limits.max_compute_workgroup_storage_size
        );
        Ok(())
    }

    fn constants(&self) -> [(&'static str, f64); 3] {
        [
            ("BM", self.bm as f64),
            ("BN", self.bn as f64),
            ("BK", self.bk as f64),
        ]
    }

    /// The default for a forward GEMM with `cols` output columns: 16 or 32 columns for the
    /// 16- and 32-channel layers (a wider tile would leave most of its columns idle), else
    /// 128x32. Chosen with `rbnn bench kernels --sweep` at batch 256 on an NVIDIA H100
    /// (2026-11-26): the fastest or within 6% of the fastest of 38 tile shapes at every layer
    /// shape of the four models. (On lavapipe the direct kernels run instead.)
    pub fn for_columns(cols: usize) -> Tiles {
        let t = |bm, bn, bk| Tiles { bm, bn, bk };
        match cols {
            0..=16 => t(128, 16, 16),
            _ => t(128, 32, 16),
        }
    }

    /// The default for the data gradient (`ci` output columns, `plane` = H*W input pixels per
    /// image): as `for_columns`, but 64x64 for wide layers on planes of 16x16 and more, which
    /// the same sweep found 5-10% faster there.
    pub fn for_data_grad(ci: usize, plane: usize) -> Tiles {
        if ci > 32 && plane >= 256 {
            Tiles {
                bm: 64,
                bn: 64,
                bk: 16,
            }
        } else {
            Self::for_columns(ci)
        }
    }

    /// The default for the weight gradient, whose tile rows are the `co` output channels. A
    /// reduction slice of 8 beat 16 at every shape in the same sweep (by 5-30%).
    pub fn for_weight_grad(co: usize) -> Tiles {
        let t = |bm, bn, bk| Tiles { bm, bn, bk };
        match co {
            0..=16 => t(16, 64, 8),
            17..=32 => t(32, 64, 8),
            _ => t(64, 64, 8),
        }
    }
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

/// Whether the direct kernels run `s` on this adapter: they need subgroup shuffles within
/// aligned groups of 8 lanes (subgroup sizes that are multiples of 8, at most a workgroup of 64),
/// and their register windows hold kernels up to 3x3 with stride 1 or 2.
///
/// They are chosen on software adapters only. Measured 2026-11-26 at batch 256 on the ResNet-20
/// shapes: on lavapipe they ran 4-10x faster than the tiled kernels; on an NVIDIA H100 (Vulkan)
/// the tiled forward ran 13-17 TFLOP/s against 0.6-1.4 for the direct one.
pub fn direct_supported(gpu: &Gpu, s: &ConvShape) -> bool {
    let (min, max) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    gpu.is_software()
        && gpu.features.contains(wgpu::Features::SUBGROUP)
        && min >= 8
        && min.is_multiple_of(8)
        && max.is_multiple_of(8)
        && max <= DIRECT_WORKGROUP
        && (1..=2).contains(&s.stride)
        && s.kh <= 3
        && s.kw <= 3
}

/// Invocations of a direct kernel's workgroup: 8 groups of 8 lanes (shaders/conv.wgsl DIRECT_GROUPS).
const DIRECT_WORKGROUP: u32 = 64;
const DIRECT_GROUPS: usize = 8;

/// The direct kernel for `s`: the tap geometry is compiled in (the padding only as far as it
/// decides which taps reach which outputs), so the tap loops unroll.
fn direct_kernel(gpu: &Gpu, s: &ConvShape, entry: &str, transposed: bool) -> Result<Arc<Kernel>> {
    let pad_mod = if transposed { s.pad % s.stride } else { 0 };
    gpu.kernel(
        "conv",
        entry,
        &[
            ("DKH", s.kh as f64),
            ("DKW", s.kw as f64),
            ("DS", s.stride as f64),
            ("DPMOD", pad_mod as f64),
            ("DTRANSPOSED", if transposed { 1.0 } else { 0.0 }),
        ],
    )
}

/// One `direct` dispatch: a group per 8 output channels of one 8x8 output tile of one image.
fn direct(gpu: &Gpu, s: &ConvShape, transposed: bool, buffers: [&Tensor; 3]) -> Result<Dispatch> {
    let (c, h, w) = if transposed {
        (s.ci, s.h, s.w)
    } else {
        (s.co, s.oh(), s.ow())
    };
    let groups = s.n * h.div_ceil(8) * w.div_ceil(8) * c.div_ceil(8);
    let k = direct_kernel(gpu, s, "direct", transposed)?;
    Ok(gpu
        .dispatch(
            &k,
            &buffers,
            s.immediates(0, 0).bytes(),
            grid(groups.div_ceil(DIRECT_GROUPS), 1),
        )?
        .with_flop(s.flop()))
}

fn check_forward(s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<()> {
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

/// y = conv2d(x, w) (overwrites y).
pub fn forward(gpu: &Gpu, s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Dispatch> {
    if direct_supported(gpu, s) {
        check_forward(s, x, w, y)?;
        return direct(gpu, s, false, [x, w, y]);
    }
    forward_with(gpu, s, Tiles::for_columns(s.co), x, w, y)
}

/// `forward` on the tiled kernel with an explicit tile shape.
pub fn forward_with(
    gpu: &Gpu,
    s: &ConvShape,
    tiles: Tiles,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    check_forward(s, x, w, y)?;
    tiles.check(gpu)?;
    let k = gpu.kernel("conv", "forward", &tiles.constants())?;
    let rows = s.n * s.oh() * s.ow();
    let z = check_z(s, s.co.div_ceil(tiles.bn as usize))?;
    Ok(gpu
        .dispatch(
            &k,
            &[x, w, y],
            s.immediates(rows, 0).bytes(),
            grid(rows.div_ceil(tiles.bm as usize), z),
        )?
        .with_flop(s.flop()))
}

/// y = conv2d(x, w) with one invocation per output and no workgroup memory: the baseline that
/// `rbnn bench kernels` compares the tiled forward with.
pub fn forward_naive(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    check_forward(s, x, w, y)?;
    let k = gpu.kernel("conv", "forward_naive", &[])?;
    gpu.dispatch(
        &k,
        &[x, w, y],
        s.immediates(s.output_len(), 0).bytes(),
        grid_1d(s.output_len(), 256),
    )
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
        check_backward_data(s, dy, w, dx)?;
        return direct(gpu, s, true, [dy, w, dx]);
    }
    backward_data_with(gpu, s, Tiles::for_data_grad(s.ci, s.h * s.w), dy, w, dx)
}

/// `backward_data` on the tiled kernel with an explicit tile shape.
pub fn backward_data_with(
    gpu: &Gpu,
    s: &ConvShape,
    tiles: Tiles,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    check_backward_data(s, dy, w, dx)?;
    tiles.check(gpu)?;
    let k = gpu.kernel("conv", "backward_data", &tiles.constants())?;
    // Phase (0, 0) has the most input pixels: ceil(H/stride) x ceil(W/stride).
    let phase_rows = s.n * s.h.div_ceil(s.stride) * s.w.div_ceil(s.stride);
    let col_tiles = s.ci.div_ceil(tiles.bn as usize);
    let z = check_z(s, s.stride * s.stride * col_tiles)?;
    Ok(gpu
        .dispatch(
            &k,
            &[dy, w, dx],
            s.immediates(0, col_tiles).bytes(),
            grid(phase_rows.div_ceil(tiles.bm as usize), z),
        )?
        .with_flop(s.flop()))
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

/// Workgroups the weight gradient aims for (output tiles x chunks): enough to fill a large GPU.
/// A fixed number, not one read from the adapter, so every adapter sums in the same order.
const WEIGHT_GRAD_WORKGROUPS: usize = 1024;
/// Fewest reduction elements per chunk, so a chunk's partial write stays small beside its work.
const MIN_CHUNK: usize = 256;
/// Most elements of the partial buffer (64 MiB).
const MAX_PARTIAL: usize = 16 << 20;

/// Chunk length of the weight gradient's reduction (a multiple of `bk`) and the number of chunks.
fn weight_grad_split(s: &ConvShape, tiles: Tiles) -> (usize, usize) {
    let reduction = s.n * s.oh() * s.ow();
    let out_tiles =
        s.co.div_ceil(tiles.bm as usize) * (s.ci * s.kh * s.kw).div_ceil(tiles.bn as usize);
    let wanted = WEIGHT_GRAD_WORKGROUPS.div_ceil(out_tiles);
    let by_chunk = reduction.div_ceil(MIN_CHUNK);
    let by_memory = (MAX_PARTIAL / s.weight_len()).max(1);
    let splits = wanted.min(by_chunk).min(by_memory).max(1);
    let chunk = reduction.div_ceil(splits).div_ceil(tiles.bk as usize) * tiles.bk as usize;
    (chunk, reduction.div_ceil(chunk))
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
        check_backward_weight(s, x, dy, dw)?;
        return direct_weight(gpu, s, x, dy, dw);
    }
    backward_weight_with(gpu, s, Tiles::for_weight_grad(s.co), x, dy, dw)
}

/// Groups the direct weight gradient aims for (channel blocks x chunks), a fixed number so every
/// adapter sums in the same order.
const DIRECT_WEIGHT_GROUPS: usize = 256;

/// The direct weight gradient: a group per (8 input channels, 16 output channels, chunk of
/// 8-column strips of the output), then the fixed-order sum of the chunks.
fn direct_weight(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<ConvBackwardWeight> {
    let strips = s.n * s.ow().div_ceil(8);
    let blocks = s.ci.div_ceil(8) * s.co.div_ceil(16);
    let wanted = DIRECT_WEIGHT_GROUPS
        .div_ceil(blocks)
        .min(MAX_PARTIAL / s.weight_len())
        .clamp(1, strips);
    let per_chunk = strips.div_ceil(wanted);
    let splits = strips.div_ceil(per_chunk);
    let k = direct_kernel(gpu, s, "direct_weight", false)?;
    let workgroups = grid((splits * blocks).div_ceil(DIRECT_GROUPS), 1);
    let imm = s.immediates(0, per_chunk);
    split_weight_grad(gpu, s, &k, imm, workgroups, splits, [x, dy, dw])
}

/// The weight gradient GEMM dispatch over `splits` chunks of the reduction: with one chunk it
/// writes dw directly, else a partial buffer [splits, dw] that reduce_splits sums in order.
fn split_weight_grad(
    gpu: &Gpu,
    s: &ConvShape,
    gemm: &Arc<Kernel>,
    imm: Imm,
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
    let reduce = gpu.kernel("conv", "reduce_splits", &[])?;
    let d_reduce = gpu.dispatch(
        &reduce,
        &[&partial, dw],
        s.immediates(s.weight_len(), splits).bytes(),
        grid_1d(s.weight_len(), 256),
    )?;
    Ok(ConvBackwardWeight {
        partial: Some(partial),
        dispatches: vec![d_gemm, d_reduce],
        splits,
    })
}

/// `backward_weight` on the tiled kernel with an explicit tile shape.
pub fn backward_weight_with(
    gpu: &Gpu,
    s: &ConvShape,
    tiles: Tiles,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<ConvBackwardWeight> {
    check_backward_weight(s, x, dy, dw)?;
    tiles.check(gpu)?;
    let reduction = s.n * s.oh() * s.ow();
    // The shader splits reduction indices with a float reciprocal, exact below 2^24.
    ensure!(
        reduction < 1 << 24,
        "conv {s:?}: N*OH*OW = {reduction} reaches 2^24, the limit of the weight-gradient kernel; \
         use a smaller batch"
    );
    let gemm = gpu.kernel("conv", "backward_weight", &tiles.constants())?;
    tiled_weight_grad(gpu, s, &gemm, tiles, [x, dy, dw])
}

/// A weight-gradient GEMM kernel with output tiles `tiles` (shaders conv and conv_coop share
/// the layout: workgroup x over the Ci*kh*kw columns, y over the Co rows, z over the reduction
/// chunks), split and summed as `split_weight_grad` does.
pub(crate) fn tiled_weight_grad(
    gpu: &Gpu,
    s: &ConvShape,
    gemm: &Arc<Kernel>,
    tiles: Tiles,
    [x, dy, dw]: [&Tensor; 3],
) -> Result<ConvBackwardWeight> {
    let (chunk, splits) = weight_grad_split(s, tiles);
    let cols = s.ci * s.kh * s.kw;
    let workgroups = [
        cols.div_ceil(tiles.bn as usize) as u32,
        s.co.div_ceil(tiles.bm as usize) as u32,
        check_z(s, splits)?,
    ];
    let imm = s.immediates(s.n * s.oh() * s.ow(), chunk);
    split_weight_grad(gpu, s, gemm, imm, workgroups, splits, [x, dy, dw])
}

/// Plain-Rust references with f64 accumulation.
pub mod cpu {
    use super::ConvShape;

    /// Calls `f(x index, w index, y index)` for every multiply-add of the convolution (padded
    /// taps skipped): the three functions below differ only in which operand they accumulate.
    fn for_each_mac(s: &ConvShape, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = (s.oh(), s.ow());
        for n in 0..s.n {
            for co in 0..s.co {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((n * s.co + co) * oh + oy) * ow + ox;
                        for ci in 0..s.ci {
                            for r in 0..s.kh {
                                let Some(iy) = (oy * s.stride + r).checked_sub(s.pad) else {
                                    continue;
                                };
                                if iy >= s.h {
                                    continue;
                                }
                                for c in 0..s.kw {
                                    let Some(ix) = (ox * s.stride + c).checked_sub(s.pad) else {
                                        continue;
                                    };
                                    if ix >= s.w {
                                        continue;
                                    }
                                    let xi = ((n * s.ci + ci) * s.h + iy) * s.w + ix;
                                    let wi = ((co * s.ci + ci) * s.kh + r) * s.kw + c;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn to_f32(v: Vec<f64>) -> Vec<f32> {
        v.into_iter().map(|v| v as f32).collect()
    }

    /// y = conv2d(x, w) in f64 (the finite-difference tests differentiate this).
    pub fn forward_f64(s: &ConvShape, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; s.output_len()];
        for_each_mac(s, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
        y
    }

    pub fn forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0f64; s.output_len()];
        for_each_mac(s, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
        to_f32(y)
    }

    pub fn backward_data(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let mut dx = vec![0.0f64; s.input_len()];
        for_each_mac(s, |xi, wi, yi| dx[xi] += dy[yi] as f64 * w[wi] as f64);
        to_f32(dx)
    }

    pub fn backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let mut dw = vec![0.0f64; s.weight_len()];
        for_each_mac(s, |xi, wi, yi| dw[wi] += x[xi] as f64 * dy[yi] as f64);
        to_f32(dw)
    }
}
