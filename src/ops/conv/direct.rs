//! The direct convolutions on groups of 8 subgroup lanes (shaders/conv_direct.wgsl), which
//! software adapters run for kernels up to 3x3 with stride 1 or 2.

use super::{grid, split_weight_grad, ConvBackwardWeight, ConvParams, ConvShape, MAX_PARTIAL};
use crate::gpu::{Dispatch, Gpu, Kernel, Tensor};
use anyhow::Result;
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

/// Invocations of a direct kernel's workgroup: 8 groups of 8 lanes
/// (shaders/common/lane_groups.wgsl DIRECT_GROUPS).
const DIRECT_WORKGROUP: u32 = 64;
const DIRECT_GROUPS: usize = 8;

/// The direct kernel for `s`: the tap geometry is compiled in (the padding only as far as it
/// decides which taps reach which outputs), so the tap loops unroll.
fn direct_kernel(gpu: &Gpu, s: &ConvShape, entry: &str, transposed: bool) -> Result<Arc<Kernel>> {
    let pad_mod = if transposed { s.pad % s.stride } else { 0 };
    gpu.kernel(
        "conv_direct",
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
pub(super) fn direct(
    gpu: &Gpu,
    s: &ConvShape,
    transposed: bool,
    buffers: [&Tensor; 3],
) -> Result<Dispatch> {
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
    let imm = ConvParams::new(s, 0, per_chunk);
    split_weight_grad(gpu, s, &k, imm, workgroups, splits, [x, dy, dw])
}
