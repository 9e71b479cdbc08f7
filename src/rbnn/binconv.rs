//! The 1-bit convolution of the layer's forward (shaders/binconv.wgsl): the signs of the
//! activations and weights packed 32 channels per word, then XOR and countOneBits.
//!
//! sign(0) = 0, as torch.sign: each word of 32 channels is a pair (sign plane, nonzero plane),
//! so -1, 0 and +1 are all representable and the integer result equals the float convolution of
//! the same -1/0/+1 values exactly, zero padding and channel tails (Ci not a multiple of 32)
//! included. The cost of the zeros is one more word per operand and one more AND + popcount per
//! word pair.
//!
//! Two kernels compute the convolution: a direct one on groups of 8 subgroup lanes (as
//! ops::conv's direct kernels) where the adapter and shape allow, and a workgroup-tiled one
//! everywhere else.

use crate::gpu::{grid_1d, Dispatch, Gpu, KernelVariant, Tensor};
use crate::ops::conv::{direct_supported, ConvParams, ConvShape};
use crate::ops::shape::expect_len;
use anyhow::{bail, Result};

/// u32 words per tap and pixel: ceil(Ci / 32).
pub fn words_per_tap(ci: usize) -> usize {
    ci.div_ceil(32)
}

/// Elements of the packed activations [N, H, W, Cw, 2].
pub fn activation_bits_len(s: &ConvShape) -> usize {
    s.n * s.h * s.w * words_per_tap(s.ci) * 2
}

/// Elements of the packed weights [Co, kh*kw, Cw, 2].
pub fn weight_bits_len(s: &ConvShape) -> usize {
    s.co * s.kh * s.kw * words_per_tap(s.ci) * 2
}

/// The kernels' immediates: the shape, rows = N*OH*OW (the tiled kernel's GEMM rows).
fn immediates(s: &ConvShape) -> ConvParams {
    ConvParams::new(s, s.output_pixels(), 0)
}

/// abits = the packed signs of x - mean_s (= sign(a2)), from x [N,Ci,H,W] and astats [N,2].
/// Software adapters (`KernelVariant::Software`) read x as vec4s where H*W % 4 == 0
/// (`pack_activations4`, the same bits).
pub fn pack_activations(
    gpu: &Gpu,
    variant: KernelVariant,
    s: &ConvShape,
    x: &Tensor,
    astats: &Tensor,
    abits: &Tensor,
) -> Result<Dispatch> {
    s.validate()?;
    expect_len(x, s.input_len(), "input")?;
    expect_len(astats, s.n * 2, "activation stats")?;
    expect_len(abits, activation_bits_len(s), "packed activations")?;
    let plane = s.h * s.w;
    if variant == KernelVariant::Software && plane.is_multiple_of(4) {
        let k = gpu.kernel("binconv", "pack_activations4", &[])?;
        // Bindings in increasing number: astats, abits, then x as vec4s.
        return gpu.dispatch(
            &k,
            &[astats, abits, x],
            immediates(s).bytes(),
            grid_1d(s.n * words_per_tap(s.ci) * plane / 4, 256),
        );
    }
    let k = gpu.kernel("binconv", "pack_activations", &[])?;
    gpu.dispatch(
        &k,
        &[x, astats, abits],
        immediates(s).bytes(),
        grid_1d(activation_bits_len(s) / 2, 256),
    )
}

/// wbits = the packed signs of w3 [Co,Ci,kh,kw].
pub fn pack_weights(gpu: &Gpu, s: &ConvShape, w3: &Tensor, wbits: &Tensor) -> Result<Dispatch> {
    s.validate()?;
    expect_len(w3, s.weight_len(), "w3")?;
    expect_len(wbits, weight_bits_len(s), "packed weights")?;
    let k = gpu.kernel("binconv", "pack_weights", &[])?;
    gpu.dispatch(
        &k,
        &[w3, wbits],
        immediates(s).bytes(),
        grid_1d(weight_bits_len(s) / 2, 256),
    )
}

/// Output rows (pixels) per workgroup of the tiled kernels.
const BM: usize = 64;

fn check_binconv(
    s: &ConvShape,
    abits: &Tensor,
    wbits: &Tensor,
    alpha: &Tensor,
    y: &Tensor,
) -> Result<()> {
    s.validate()?;
    expect_len(abits, activation_bits_len(s), "packed activations")?;
    expect_len(wbits, weight_bits_len(s), "packed weights")?;
    expect_len(alpha, s.co, "alpha")?;
    expect_len(y, s.output_len(), "output")
}

/// y = alpha_o * conv2d(ternary activations, ternary weights), from the packed operands: the
/// direct kernel where `conv::direct_supported` holds, else `binconv_tiled`.
pub fn binconv(
    gpu: &Gpu,
    s: &ConvShape,
    abits: &Tensor,
    wbits: &Tensor,
    alpha: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    if !direct_supported(gpu, s) {
        return binconv_tiled(gpu, s, abits, wbits, alpha, y);
    }
    check_binconv(s, abits, wbits, alpha, y)?;
    // A group of 8 lanes per 8 output channels of an 8x8 output tile, 8 groups per workgroup.
    let groups = s.n * s.oh().div_ceil(8) * s.ow().div_ceil(8) * s.co.div_ceil(8);
    let k = gpu.kernel(
        "binconv",
        "direct",
        &[
            ("DKH", s.kh as f64),
            ("DKW", s.kw as f64),
            ("DS", s.stride as f64),
        ],
    )?;
    Ok(gpu
        .dispatch(
            &k,
            &[abits, wbits, alpha, y],
            immediates(s).bytes(),
            grid_1d(groups.div_ceil(8), 1),
        )?
        .with_flop(s.flop()))
}

/// The workgroup tiles of the tiled 1-bit convolution (shaders/common/binary_tile.wgsl), shared
/// with the packed engine's fused conv (infer::kernels::binconv): BM output pixels x `bn` output
/// channels per workgroup.
pub(crate) struct BinaryTiles {
    pub bn: usize,
    pub workgroups: [u32; 3],
}

impl BinaryTiles {
    /// Narrow layers get narrow tiles, so 16 channels do not leave 3/4 of a 64-wide tile idle.
    pub(crate) fn new(gpu: &Gpu, s: &ConvShape) -> Result<BinaryTiles> {
        let bn = match s.co {
            0..=16 => 16,
            17..=32 => 32,
            _ => 64,
        };
        let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
        let grid = [s.output_pixels().div_ceil(BM), s.co.div_ceil(bn)];
        if grid.iter().any(|&g| g > max) {
            bail!(
                "binconv {s:?}: {grid:?} workgroups exceed the adapter's {max} per dimension; \
                 use a smaller batch"
            );
        }
        Ok(BinaryTiles {
            bn,
            workgroups: [grid[0] as u32, grid[1] as u32, 1],
        })
    }

    /// The shader's override constants, with `bk` word pairs per reduction stage.
    pub(crate) fn constants(&self, bk: usize) -> [(&'static str, f64); 3] {
        [("BM", BM as f64), ("BN", self.bn as f64), ("BK", bk as f64)]
    }
}

/// `binconv` on the workgroup-tiled kernel, which every adapter runs.
pub fn binconv_tiled(
    gpu: &Gpu,
    s: &ConvShape,
    abits: &Tensor,
    wbits: &Tensor,
    alpha: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    check_binconv(s, abits, wbits, alpha, y)?;
    let tiles = BinaryTiles::new(gpu, s)?;
    let k = gpu.kernel("binconv", "binconv", &tiles.constants(16))?;
    Ok(gpu
        .dispatch(
            &k,
            &[abits, wbits, alpha, y],
            immediates(s).bytes(),
            tiles.workgroups,
        )?
        .with_flop(s.flop()))
}

/// The packing of the 1-bit convolution's operands, as the kernels pack them.
pub mod cpu {
    use crate::ops::conv::ConvShape;

    /// (sign bit, nonzero bit) planes of `v` at bit `j`, as shaders/binconv.wgsl packs them.
    fn ternary_bits(v: f32, j: usize) -> (u32, u32) {
        (((v < 0.0) as u32) << j, ((v != 0.0) as u32) << j)
    }

    /// The packed activations [N, H, W, Cw, 2] of `v` [N, Ci, H, W] (the values whose signs are
    /// packed, e.g. x - mean in f32).
    pub fn pack_activations(s: &ConvShape, v: &[f32]) -> Vec<u32> {
        let cw = s.ci.div_ceil(32);
        let mut out = vec![0u32; s.n * s.h * s.w * cw * 2];
        for n in 0..s.n {
            for c in 0..s.ci {
                for y in 0..s.h {
                    for x in 0..s.w {
                        let (sb, nz) =
                            ternary_bits(v[((n * s.ci + c) * s.h + y) * s.w + x], c % 32);
                        let at = (((n * s.h + y) * s.w + x) * cw + c / 32) * 2;
                        out[at] |= sb;
                        out[at + 1] |= nz;
                    }
                }
            }
        }
        out
    }

    /// The packed weights [Co, kh*kw, Cw, 2] of w3 [Co, Ci, kh, kw].
    pub fn pack_weights(s: &ConvShape, w3: &[f32]) -> Vec<u32> {
        let cw = s.ci.div_ceil(32);
        let taps = s.kh * s.kw;
        let mut out = vec![0u32; s.co * taps * cw * 2];
        for o in 0..s.co {
            for c in 0..s.ci {
                for tap in 0..taps {
                    let (sb, nz) = ternary_bits(w3[(o * s.ci + c) * taps + tap], c % 32);
                    let at = ((o * taps + tap) * cw + c / 32) * 2;
                    out[at] |= sb;
                    out[at + 1] |= nz;
                }
            }
        }
        out
    }
}
