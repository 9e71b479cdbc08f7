//! The binary layers' gradient convolutions on tensor cores (shaders/conv_coop.wgsl): the same
//! implicit GEMMs as `conv::backward_data` / `conv::backward_weight`, with f16 operands and f32
//! accumulation through WGSL cooperative matrices, on adapters that offer 16x16x16 f16 -> f32
//! matrices with 32-lane subgroups (NVIDIA through Vulkan; not lavapipe). The exact operand is
//! ternary ({-1, 0, 1}: sign(w3), or the binary activations), and dy travels as two f16 terms,
//! so the result agrees with the f32 kernels to about f32 precision (shader header). Every other
//! adapter, and the float-activation (a32) layers, use the f32 kernels.
//!
//! Opt-in: RBNN_COOP=1 in the environment selects it for training. Measured 2026-11-26 on an
//! NVIDIA H100 (Vulkan, batch 256): 3.6-4.3 TFLOP/s at the resnet18 shapes, against 15-25 for the
//! f32 tiled kernels, whose tiles are larger and whose staging is simpler; `rbnn bench kernels`
//! shows both wherever the adapter has cooperative matrices.

use super::conv::{self, ConvBackwardWeight, ConvParams, ConvShape, Tiles};
use super::shape::expect_len;
use crate::gpu::{Dispatch, Gpu, Tensor};
use anyhow::{ensure, Result};

/// The shader's output tile and reduction slice.
const TILES: Tiles = Tiles {
    bm: 64,
    bn: 64,
    bk: 32,
};
const SUBGROUP: u32 = 32;
/// Workgroup memory of the shader: three f16 staging tiles, the f32 output tile, the columns.
const WORKGROUP_BYTES: u32 = 3 * 2 * 2048 + 4 * 4096 + 16 * 64;

/// Whether training uses the tensor-core kernels: RBNN_COOP=1 and `supported`.
pub fn selected(gpu: &Gpu) -> bool {
    std::env::var("RBNN_COOP").is_ok_and(|v| v == "1") && supported(gpu)
}

/// Whether this adapter can run the tensor-core kernels.
pub fn supported(gpu: &Gpu) -> bool {
    gpu.features
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16)
        && gpu.cooperative_matrix.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
        && gpu.info.subgroup_min_size == SUBGROUP
        && gpu.info.subgroup_max_size == SUBGROUP
        && gpu.limits.max_compute_workgroup_storage_size >= WORKGROUP_BYTES
        && gpu.limits.max_compute_invocations_per_workgroup >= 128
}

/// dx = conv backward_data(dy, bw) for bw = alpha_o * t with t in {-1, 0, 1} per output channel
/// o (a binary layer's scaled signed weights); alpha is [Co]. Overwrites dx.
pub fn backward_data(
    gpu: &Gpu,
    s: &ConvShape,
    dy: &Tensor,
    bw: &Tensor,
    alpha: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    conv::check_backward_data(s, dy, bw, dx)?;
    expect_len(alpha, s.co, &format!("conv {s:?} alpha"))?;
    let k = gpu.kernel("conv_coop", "backward_data", &[])?;
    let phase_rows = s.n * s.h.div_ceil(s.stride) * s.w.div_ceil(s.stride);
    let col_tiles = s.ci.div_ceil(TILES.bn as usize);
    let z = conv::check_z(s, s.stride * s.stride * col_tiles)?;
    Ok(gpu
        .dispatch(
            &k,
            &[dy, bw, dx, alpha],
            ConvParams::new(s, 0, col_tiles).bytes(),
            conv::grid(phase_rows.div_ceil(TILES.bm as usize), z),
        )?
        .with_flop(s.flop()))
}

/// dw = conv backward_weight(x, dy) for x in {-1, 0, 1} (a binary layer's activations).
/// Overwrites dw; allocates its partial-sum buffer here, once.
pub fn backward_weight(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
) -> Result<ConvBackwardWeight> {
    conv::check_backward_weight(s, x, dy, dw)?;
    let reduction = s.n * s.oh() * s.ow();
    ensure!(
        reduction < 1 << 31,
        "conv {s:?}: N*OH*OW = {reduction} is too large; use a smaller batch"
    );
    let gemm = gpu.kernel("conv_coop", "backward_weight", &[])?;
    conv::tiled_weight_grad(gpu, s, &gemm, TILES, [x, dy, dw])
}
