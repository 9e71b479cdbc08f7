//! The tiled implicit-GEMM convolutions (shaders/conv_gemm.wgsl): every adapter runs them
//! (GPUs always; software adapters where the direct kernels do not apply), with a `Tiles` shape
//! chosen per layer.

use super::{
    check_backward_data, check_backward_weight, check_forward, check_z, grid, split_weight_grad,
    ConvBackwardWeight, ConvParams, ConvShape, SplitSum, MAX_PARTIAL,
};
use crate::gpu::{grid_1d, Dispatch, Gpu, Kernel, Tensor};
use anyhow::{ensure, Result};
use std::sync::Arc;

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
    let k = gpu.kernel("conv_gemm", "forward", &tiles.constants())?;
    let rows = s.output_pixels();
    let z = check_z(s, s.co.div_ceil(tiles.bn as usize))?;
    Ok(gpu
        .dispatch(
            &k,
            &[x, w, y],
            ConvParams::new(s, rows, 0).bytes(),
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
    let k = gpu.kernel("conv_gemm", "forward_naive", &[])?;
    gpu.dispatch(
        &k,
        &[x, w, y],
        ConvParams::new(s, s.output_len(), 0).bytes(),
        grid_1d(s.output_len(), 256),
    )
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
    let k = gpu.kernel("conv_gemm", "backward_data", &tiles.constants())?;
    // Phase (0, 0) has the most input pixels: ceil(H/stride) x ceil(W/stride).
    let phase_rows = s.n * s.h.div_ceil(s.stride) * s.w.div_ceil(s.stride);
    let col_tiles = s.ci.div_ceil(tiles.bn as usize);
    let z = check_z(s, s.stride * s.stride * col_tiles)?;
    Ok(gpu
        .dispatch(
            &k,
            &[dy, w, dx],
            ConvParams::new(s, 0, col_tiles).bytes(),
            grid(phase_rows.div_ceil(tiles.bm as usize), z),
        )?
        .with_flop(s.flop()))
}

/// Workgroups the weight gradient aims for (output tiles x chunks): enough to fill a large GPU.
/// A fixed number, not one read from the adapter, so every adapter sums in the same order.
const WEIGHT_GRAD_WORKGROUPS: usize = 1024;
/// Fewest reduction elements per chunk, so a chunk's partial write stays small beside its work.
const MIN_CHUNK: usize = 256;

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
    let gemm = gpu.kernel("conv_gemm", "backward_weight", &tiles.constants())?;
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
    let imm = ConvParams::new(s, s.output_pixels(), chunk);
    let sum = SplitSum::Scalar;
    split_weight_grad(gpu, s, gemm, sum, imm, workgroups, splits, [x, dy, dw])
}
