//! Host wrappers of the packed engine's kernels (shaders/infer_binconv.wgsl and
//! shaders/infer_ops.wgsl) and their plain-Rust references (`cpu`, f64 accumulation). Why and how
//! the engine reproduces the float evaluation path bit for bit: docs/numerics.md section 8.
//!
//! - `mean_pack`: per-sample mean and sign packing in one kernel (one workgroup per sample).
//! - `binconv`: the XOR-popcount convolution with the epilogue fused:
//!   y = [hardtanh]([BN](alpha * dot) [+ residual]).
//! - `batchnorm` (in place), `maxpool_batchnorm`, `avgpool_batchnorm`: a BatchNorm (and
//!   hardtanh) after the stem, after VGG's max pools and after the ResNets' global average pool.
//!
//! Every BatchNorm is evaluated with the running statistics exactly as ops::batchnorm's
//! `forward_eval` evaluates it (same operations in the same order, eps = ops::batchnorm::EPS), so
//! the packed engine reproduces the float evaluation path's activations bit for bit where the
//! shader compiler does: a BatchNorm folded into one scale and shift rounds differently, and
//! an activation that moves across its sample's mean flips its sign in the next layer.
//! `bn` tensors are [C, 4]: (running_mean, running_var, gamma, beta) per channel.

use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use crate::ops::batchnorm::EPS;
use crate::ops::conv::{ConvParams, ConvShape};
use crate::ops::shape::{expect_len, expect_shape, expect_u32};
use crate::rbnn::binconv::{activation_bits_len, weight_bits_len, words_per_tap, BinaryTiles};
use anyhow::{bail, Result};
use bytemuck::{Pod, Zeroable};

/// What the fused conv adds before its hardtanh.
#[derive(Clone, Copy)]
pub enum Residual<'a> {
    None,
    /// The same shape as the output, [N, Co, OH, OW].
    Identity(&'a Tensor),
    /// resnet20's option-A shortcut of a block input [N, RC, RH, RW]: x[:, :, ::2, ::2] with
    /// (Co - RC) / 2 zero channels on each side.
    OptionA(&'a Tensor),
}

/// The per-channel epilogue of the fused conv.
pub struct Epilogue<'a> {
    /// [Co].
    pub alpha: &'a Tensor,
    /// The BatchNorm that follows the conv, [Co, 4]; None where a pool comes first.
    pub batchnorm: Option<&'a Tensor>,
    pub residual: Residual<'a>,
    pub hardtanh: bool,
}

fn nchw(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match *t.shape.as_slice() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!(
            "{what}: tensor {} must be [N, C, H, W], got {:?}",
            t.label,
            t.shape
        ),
    }
}

fn ops_immediates(n: usize, c: usize, h: usize, w: usize, total: usize, ht: bool) -> Imm {
    Imm::new()
        .u(n as u32)
        .u(c as u32)
        .u(h as u32)
        .u(w as u32)
        .u(words_per_tap(c) as u32)
        .u(total as u32)
        .u(ht as u32)
        .f(EPS)
}

fn expect_bn(bn: &Tensor, c: usize, what: &str) -> Result<()> {
    expect_len(
        bn,
        c * 4,
        &format!("{what} BatchNorm (running_mean, running_var, gamma, beta)"),
    )
}

/// Elements of packed activations [N, H, W, Cw, 2] of an [N, C, H, W] tensor.
pub fn packed_len(n: usize, c: usize, h: usize, w: usize) -> usize {
    n * h * w * words_per_tap(c) * 2
}

/// bits [N, H, W, Cw, 2] = the packed signs of x - mean_s, x [N, C, H, W], mean_s the mean of
/// sample s over C*H*W.
pub fn mean_pack(gpu: &Gpu, x: &Tensor, bits: &Tensor) -> Result<Dispatch> {
    let [n, c, h, w] = nchw(x, "mean_pack input")?;
    expect_u32(x.len(), "mean_pack elements")?;
    expect_len(bits, packed_len(n, c, h, w), "mean_pack bits")?;
    if n as u32 > gpu.limits.max_compute_workgroups_per_dimension {
        bail!(
            "mean_pack: {n} samples exceed the adapter's {} workgroups per dimension; use a \
             smaller batch",
            gpu.limits.max_compute_workgroups_per_dimension
        );
    }
    gpu.dispatch(
        &gpu.kernel("infer_ops", "mean_pack", &[])?,
        &[x, bits],
        ops_immediates(n, c, h, w, 0, false).bytes(),
        [n as u32, 1, 1],
    )
}

/// Most word pairs per reduction stage (staged in workgroup memory: (BM + 64) * 16 * 8 bytes =
/// 16 KiB, WebGPU's default limit).
const MAX_STAGE: usize = 16;

/// Word pairs per reduction stage: the largest divisor of `kwords` up to MAX_STAGE, so no stage
/// runs over zero padding (9 for the 3x3 convs of 16 or 32 channels, 12 for 128 or 256, 16 for
/// 512; a stage of 16 over 9 words would waste 7/16 of the popcounts).
fn stage_words(kwords: usize) -> usize {
    (1..=MAX_STAGE.min(kwords))
        .rev()
        .find(|d| kwords.is_multiple_of(*d))
        .unwrap_or(1)
}

/// The immediates of shaders/infer_binconv.wgsl, field for field its struct Params.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct FusedConvParams {
    conv: ConvParams,
    residual: u32,
    rc: u32,
    rh: u32,
    rw: u32,
    hardtanh: u32,
    batchnorm: u32,
    eps: f32,
}

/// y [N, Co, OH, OW] = [hardtanh]([BN](alpha * dot) [+ residual]) from the packed activations
/// (`mean_pack`) and weights [Co, kh*kw, Cw, 2].
pub fn binconv(
    gpu: &Gpu,
    s: &ConvShape,
    abits: &Tensor,
    wbits: &Tensor,
    e: &Epilogue,
    y: &Tensor,
) -> Result<Dispatch> {
    s.validate()?;
    expect_len(abits, activation_bits_len(s), "packed activations")?;
    expect_len(wbits, weight_bits_len(s), "packed weights")?;
    expect_len(e.alpha, s.co, "binconv alpha")?;
    if let Some(bn) = e.batchnorm {
        expect_bn(bn, s.co, "binconv")?;
    }
    expect_shape(y, &[s.n, s.co, s.oh(), s.ow()], "binconv output")?;
    expect_u32(s.output_len().max(abits.len()), "binconv elements")?;
    let (mode, res, [rc, rh, rw]) = match e.residual {
        // Unused by the kernel; any read-only tensor fills the binding.
        Residual::None => (0u32, e.alpha, [0, 0, 0]),
        Residual::Identity(r) => {
            expect_shape(r, &y.shape, "identity residual")?;
            (1, r, [0, 0, 0])
        }
        Residual::OptionA(r) => {
            let [rn, rc, rh, rw] = nchw(r, "option-A residual")?;
            if rn != s.n
                || rc > s.co
                || !(s.co - rc).is_multiple_of(2)
                || rh.div_ceil(2) != s.oh()
                || rw.div_ceil(2) != s.ow()
            {
                bail!(
                    "option-A residual {:?} does not fit the output {:?}",
                    r.shape,
                    y.shape
                );
            }
            (2, r, [rc, rh, rw])
        }
    };
    let tiles = BinaryTiles::new(gpu, s)?;
    let imm = FusedConvParams {
        conv: ConvParams::new(s, s.output_pixels(), 0),
        residual: mode,
        rc: rc as u32,
        rh: rh as u32,
        rw: rw as u32,
        hardtanh: e.hardtanh as u32,
        batchnorm: e.batchnorm.is_some() as u32,
        eps: EPS,
    };
    let kwords = s.kh * s.kw * words_per_tap(s.ci);
    let k = gpu.kernel(
        "infer_binconv",
        "binconv",
        &tiles.constants(stage_words(kwords)),
    )?;
    Ok(gpu
        .dispatch(
            &k,
            &[
                abits,
                wbits,
                e.alpha,
                e.batchnorm.unwrap_or(e.alpha),
                res,
                y,
            ],
            bytemuck::bytes_of(&imm),
            tiles.workgroups,
        )?
        .with_flop(s.flop()))
}

/// io [N, C, ...] = [hardtanh](BN(io)), in place.
pub fn batchnorm(gpu: &Gpu, io: &Tensor, bn: &Tensor, hardtanh: bool) -> Result<Dispatch> {
    let (n, c) = match io.shape.as_slice() {
        [n, c, ..] => (*n, *c),
        _ => bail!("batchnorm: tensor {} must be [N, C, ...]", io.label),
    };
    let hw: usize = io.shape[2..].iter().product();
    expect_bn(bn, c, "in-place")?;
    let total = expect_u32(io.len(), "batchnorm elements")? as usize;
    gpu.dispatch(
        &gpu.kernel("infer_ops", "batchnorm", &[])?,
        &[bn, io],
        ops_immediates(n, c, hw, 1, total, hardtanh).bytes(),
        grid_1d(total, 256),
    )
}

/// out [N, C, H/2, W/2] = [hardtanh](BN(2x2 max pool of x)).
pub fn maxpool_batchnorm(
    gpu: &Gpu,
    x: &Tensor,
    bn: &Tensor,
    hardtanh: bool,
    out: &Tensor,
) -> Result<Dispatch> {
    let [n, c, h, w] = nchw(x, "maxpool_batchnorm input")?;
    expect_shape(out, &[n, c, h / 2, w / 2], "maxpool_batchnorm output")?;
    expect_bn(bn, c, "maxpool_batchnorm")?;
    expect_u32(x.len(), "maxpool_batchnorm elements")?;
    gpu.dispatch(
        &gpu.kernel("infer_ops", "maxpool_batchnorm", &[])?,
        &[x, bn, out],
        ops_immediates(n, c, h, w, out.len(), hardtanh).bytes(),
        grid_1d(out.len(), 256),
    )
}

/// out [N, C] = BN(mean of x over H, W).
pub fn avgpool_batchnorm(gpu: &Gpu, x: &Tensor, bn: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let [n, c, h, w] = nchw(x, "avgpool_batchnorm input")?;
    expect_shape(out, &[n, c], "avgpool_batchnorm output")?;
    expect_bn(bn, c, "avgpool_batchnorm")?;
    expect_u32(x.len(), "avgpool_batchnorm elements")?;
    gpu.dispatch(
        &gpu.kernel("infer_ops", "avgpool_batchnorm", &[])?,
        &[x, bn, out],
        ops_immediates(n, c, h, w, n * c, false).bytes(),
        grid_1d(n * c, 256),
    )
}

/// Plain-Rust references (f64 accumulation).
pub mod cpu {
    use crate::ops::conv::cpu::forward_f64;
    use crate::ops::conv::ConvShape;
    use crate::rbnn::schedule::cpu::sign;

    /// The per-sample means of x [n, len].
    pub fn sample_means(x: &[f32], n: usize) -> Vec<f64> {
        let len = x.len() / n.max(1);
        x.chunks(len.max(1))
            .map(|r| r.iter().map(|&v| v as f64).sum::<f64>() / len as f64)
            .collect()
    }

    /// Packs ternary values t [n, c, h, w] (-1, 0, +1) as [n, h, w, Cw, 2] (sign plane, nonzero
    /// plane, channel c -> bit c % 32 of word c / 32).
    pub fn pack_ternary(t: &[f64], [n, c, h, w]: [usize; 4]) -> Vec<u32> {
        let cw = c.div_ceil(32);
        let mut out = vec![0u32; n * h * w * cw * 2];
        for img in 0..n {
            for ch in 0..c {
                for pix in 0..h * w {
                    let v = t[(img * c + ch) * h * w + pix];
                    let o = ((img * h * w + pix) * cw + ch / 32) * 2;
                    if v < 0.0 {
                        out[o] |= 1 << (ch % 32);
                    }
                    if v != 0.0 {
                        out[o + 1] |= 1 << (ch % 32);
                    }
                }
            }
        }
        out
    }

    /// sign(x - mean_s) per element, with the given per-sample means.
    pub fn signs(x: &[f32], means: &[f64]) -> Vec<f64> {
        let len = x.len() / means.len().max(1);
        x.iter()
            .enumerate()
            .map(|(i, &v)| sign(v as f64 - means[i / len]))
            .collect()
    }

    /// BatchNorm with running statistics of value v in channel c; bn [C, 4] = (running_mean,
    /// running_var, gamma, beta).
    pub fn batchnorm(v: f64, c: usize, bn: &[f64], eps: f64) -> f64 {
        (v - bn[4 * c]) / (bn[4 * c + 1] + eps).sqrt() * bn[4 * c + 2] + bn[4 * c + 3]
    }

    fn finish(v: f64, hardtanh: bool) -> f64 {
        if hardtanh {
            v.clamp(-1.0, 1.0)
        } else {
            v
        }
    }

    /// The fused conv: ternary activations ta [N, Ci, H, W], ternary weights tw [Co, Ci, kh, kw]
    /// (both -1/0/+1), then alpha * dot, the BatchNorm bn [Co, 4] when given, the residual and
    /// the optional hardtanh. `residual`: None, or (values, Some([rc, rh, rw]) for option A |
    /// None for identity).
    #[allow(clippy::too_many_arguments)]
    pub fn binconv(
        s: &ConvShape,
        ta: &[f64],
        tw: &[f64],
        alpha: &[f64],
        bn: Option<&[f64]>,
        eps: f64,
        residual: Option<(&[f64], Option<[usize; 3]>)>,
        hardtanh: bool,
    ) -> Vec<f64> {
        let dot = forward_f64(s, ta, tw);
        let (oh, ow) = (s.oh(), s.ow());
        let plane = oh * ow;
        dot.iter()
            .enumerate()
            .map(|(i, &d)| {
                let o = (i / plane) % s.co;
                let img = i / (plane * s.co);
                let pix = i % plane;
                let mut v = alpha[o] * d;
                if let Some(bn) = bn {
                    v = batchnorm(v, o, bn, eps);
                }
                match residual {
                    Some((r, None)) => v += r[i],
                    Some((r, Some([rc, rh, rw]))) => {
                        let pad = (s.co - rc) / 2;
                        if o >= pad && o < pad + rc {
                            let (oy, ox) = (pix / ow, pix % ow);
                            v += r[((img * rc + o - pad) * rh + 2 * oy) * rw + 2 * ox];
                        }
                    }
                    None => {}
                }
                finish(v, hardtanh)
            })
            .collect()
    }

    /// x [n, c, hw] -> [hardtanh](BN(x)).
    pub fn batchnorm_all(
        x: &[f64],
        c: usize,
        hw: usize,
        bn: &[f64],
        eps: f64,
        ht: bool,
    ) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, &v)| finish(batchnorm(v, (i / hw) % c, bn, eps), ht))
            .collect()
    }

    /// [n, c, h, w] -> [n, c, h/2, w/2]: [hardtanh](BN(max2x2)).
    pub fn maxpool_batchnorm(
        x: &[f64],
        [n, c, h, w]: [usize; 4],
        bn: &[f64],
        eps: f64,
        ht: bool,
    ) -> Vec<f64> {
        let (oh, ow) = (h / 2, w / 2);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let at = |dy: usize, dx: usize| x[(plane * h + 2 * oy + dy) * w + 2 * ox + dx];
                    let m = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                    out.push(finish(batchnorm(m, plane % c, bn, eps), ht));
                }
            }
        }
        out
    }

    /// [n, c, hw] -> [n, c]: BN(mean).
    pub fn avgpool_batchnorm(x: &[f64], c: usize, hw: usize, bn: &[f64], eps: f64) -> Vec<f64> {
        x.chunks(hw)
            .enumerate()
            .map(|(i, plane)| batchnorm(plane.iter().sum::<f64>() / hw as f64, i % c, bn, eps))
            .collect()
    }
}
