//! The direct convolutions on groups of 8 subgroup lanes (shaders/conv_direct.wgsl), which
//! software adapters run for kernels up to 3x3 with stride 1 or 2, and their vec4 variants
//! (shaders/conv_direct4.wgsl, shaders/conv_weight4.wgsl: the same multiply-adds in the same
//! order, so the same bits) where `vec4_supported` holds.

use super::{
    grid, split_weight_grad, ConvBackwardWeight, ConvParams, ConvShape, SplitSum, MAX_PARTIAL,
};
use crate::gpu::{Dispatch, Gpu, Kernel, Tensor};
use anyhow::{ensure, Result};
use std::sync::Arc;

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

/// Which direct kernels run where `vec4_supported` holds: the vec4 variants (`Vec4`, what
/// `conv::forward`, `backward_data` and `backward_weight` run) or the scalar ones (`Scalar`: the
/// benchmark's comparison, and the tests' bit-for-bit check of the two). Elsewhere both mean the
/// scalar kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectLoads {
    Vec4,
    Scalar,
}

impl DirectLoads {
    /// Whether these loads run `s` on the vec4 kernels.
    fn vec4(self, gpu: &Gpu, s: &ConvShape) -> bool {
        self == DirectLoads::Vec4 && vec4_supported(gpu, s)
    }
}

/// The error `conv::*_direct` give where `direct_supported` does not hold.
pub(super) fn check_supported(gpu: &Gpu, s: &ConvShape) -> Result<()> {
    ensure!(
        direct_supported(gpu, s),
        "conv {s:?}: the direct kernels need a software adapter with subgroups of a multiple of 8 \
         lanes (up to 64), a kernel up to 3x3 and stride 1 or 2"
    );
    Ok(())
}

/// Whether the vec4 variants run `s` (besides `direct_supported`): subgroups of exactly 8 lanes
/// (their lanes8 broadcasts take whole subgroups), rows of the input and output that are whole
/// vec4s, and weights that are (so every tensor they bind is a whole number of vec4s).
///
/// On lavapipe every buffer access is a loop over the 8 lanes, whatever it moves; measured
/// 2026-12-04 at the ResNet-20 shapes, batch 32, idle 2-core EPYC: see the README's speed table.
pub fn vec4_supported(gpu: &Gpu, s: &ConvShape) -> bool {
    direct_supported(gpu, s)
        && gpu.info.subgroup_min_size == 8
        && gpu.info.subgroup_max_size == 8
        && s.w.is_multiple_of(4)
        && s.ow().is_multiple_of(4)
        && s.weight_len().is_multiple_of(4)
}

/// The columns of a window: window_len in shaders/common/direct_window.wgsl.
fn window_len(k: usize, stride: usize, transposed: bool, pad_mod: usize) -> usize {
    if transposed {
        let (k, s, pm) = (k as i64, stride as i64, pad_mod as i64);
        ((7 + pm).div_euclid(s) - (pm + 1 - k).div_euclid(s) + 1) as usize
    } else {
        7 * stride + k
    }
}

/// The window's first column modulo 4 (window_origin in shaders/common/direct_window.wgsl of a
/// tile column that is a multiple of 8).
fn window_offset(s: &ConvShape, transposed: bool) -> usize {
    let (pad, st, kw) = (s.pad as i64, s.stride as i64, s.kw as i64);
    let origin = if transposed {
        pad / st + ((pad % st) + 1 - kw).div_euclid(st)
    } else {
        -pad
    };
    origin.rem_euclid(4) as usize
}

/// Invocations of a direct kernel's workgroup: 8 groups of 8 lanes
/// (shaders/common/lane_groups.wgsl DIRECT_GROUPS).
const DIRECT_WORKGROUP: u32 = 64;
const DIRECT_GROUPS: usize = 8;

/// The direct kernel for `s`: the tap geometry is compiled in (the padding only as far as it
/// decides which taps reach which outputs), so the tap loops unroll. The vec4 variants also get
/// their window's alignment.
fn direct_kernel(
    gpu: &Gpu,
    s: &ConvShape,
    entry: &str,
    transposed: bool,
    vec4: bool,
) -> Result<Arc<Kernel>> {
    let pad_mod = if transposed { s.pad % s.stride } else { 0 };
    let mut constants = vec![
        ("DKH", s.kh as f64),
        ("DKW", s.kw as f64),
        ("DS", s.stride as f64),
        ("DPMOD", pad_mod as f64),
        ("DTRANSPOSED", if transposed { 1.0 } else { 0.0 }),
    ];
    if !vec4 {
        return gpu.kernel("conv_direct", entry, &constants);
    }
    let offset = window_offset(s, transposed);
    let cols = window_len(s.kw, s.stride, transposed, pad_mod);
    let vec4s = (offset + cols).div_ceil(4);
    constants.push(("DOFF", offset as f64));
    constants.push(("DNV", vec4s as f64));
    if entry == "direct" {
        let rows = window_len(s.kh, s.stride, transposed, pad_mod);
        constants.push(("DROUNDS", (rows * vec4s).div_ceil(8) as f64));
        gpu.kernel("conv_direct4", "direct4", &constants)
    } else {
        gpu.kernel("conv_weight4", "direct_weight4", &constants)
    }
}

/// One `direct` dispatch: a group per 8 output channels of one 8x8 output tile of one image.
pub(super) fn direct(
    gpu: &Gpu,
    s: &ConvShape,
    transposed: bool,
    loads: DirectLoads,
    buffers: [&Tensor; 3],
) -> Result<Dispatch> {
    let (c, h, w) = if transposed {
        (s.ci, s.h, s.w)
    } else {
        (s.co, s.oh(), s.ow())
    };
    let groups = s.n * h.div_ceil(8) * w.div_ceil(8) * c.div_ceil(8);
    let k = direct_kernel(gpu, s, "direct", transposed, loads.vec4(gpu, s))?;
    Ok(gpu
        .dispatch(
            &k,
            &buffers,
            ConvParams::new(s, 0, 0).bytes(),
            grid(groups.div_ceil(DIRECT_GROUPS), 1),
        )?
        .with_flop(s.flop()))
}

/// Groups the direct weight gradient aims for (channel blocks x chunks), a fixed number so every
/// adapter sums in the same order.
const DIRECT_WEIGHT_GROUPS: usize = 256;

/// The direct weight gradient: a group per (8 input channels, 16 output channels, chunk of
/// 8-column strips of the output), then the fixed-order sum of the chunks.
pub(super) fn direct_weight(
    gpu: &Gpu,
    s: &ConvShape,
    loads: DirectLoads,
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
    let vec4 = loads.vec4(gpu, s);
    let k = direct_kernel(gpu, s, "direct_weight", false, vec4)?;
    let workgroups = grid((splits * blocks).div_ceil(DIRECT_GROUPS), 1);
    let imm = ConvParams::new(s, 0, per_chunk);
    let sum = if vec4 {
        SplitSum::Vec4
    } else {
        SplitSum::Scalar
    };
    split_weight_grad(gpu, s, &k, sum, imm, workgroups, splits, [x, dy, dw])
}
