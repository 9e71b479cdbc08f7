//! Per-row standardisation (shaders/standardize.wgsl): the weight per output channel and the
//! activations per sample, (x - mean) / std with the unbiased std, two-pass statistics, and the
//! full backward through mean and std.
//! The passes over the activations have a second formulation for software adapters
//! (`KernelVariant::Software`: shaders/standardize_walk.wgsl's `*_walk` entry points; the
//! elementwise ones with the same expressions, same bits; the statistics in one pass with
//! per-lane partials).

use super::rotate::{software_grid, software_immediates, WeightDims, WeightScratch, SOFTWARE};
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, KernelVariant, Tensor};
use crate::ops::shape::{expect_len, expect_u32};
use anyhow::{bail, Result};
use std::f64::consts::SQRT_2;

/// `rows` rows of `len` elements: the samples of an activation [N, C*H*W].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowDims {
    pub rows: usize,
    pub len: usize,
}

/// What `activation_output` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationOutput {
    /// a2 = (x - mean) / std (the a32 option's activations).
    Standardized,
    /// sign(x - mean) = sign(a2) with sign(0) = 0 (the binary activations as floats, for the
    /// backward's weight gradient).
    Sign,
}

/// The activation side of the backward: ApproxSign on binary activations, identity with a32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationGrad {
    ApproxSign,
    A32,
}

fn immediates(rows: usize, len: usize, mode: u32, c1: f32, t2: f32) -> Imm {
    Imm::new().u(rows as u32).u(len as u32).u(mode).f(c1).f(t2)
}

fn check_rows(what: &str, d: RowDims, gpu: &Gpu) -> Result<()> {
    if d.len < 2 {
        bail!("{what}: rows of {} element(s) have no unbiased std", d.len);
    }
    if d.rows as u32 > gpu.limits.max_compute_workgroups_per_dimension {
        bail!(
            "{what}: {} rows exceed the adapter's {} workgroups per dimension",
            d.rows,
            gpu.limits.max_compute_workgroups_per_dimension
        );
    }
    Ok(())
}

/// s.w2 = the weight standardised per output channel; s.wstats_o = (std, alpha, |sin theta|,
/// sign(sin theta) cos theta), so the backward sees this step's alpha and theta. Software
/// adapters (`KernelVariant::Software`) run shaders/weight_software.wgsl's twin: one invocation
/// per channel, serial sums, no barrier.
pub fn weight_forward(
    gpu: &Gpu,
    variant: KernelVariant,
    d: WeightDims,
    weight: &Tensor,
    alpha: &Tensor,
    rotate: &Tensor,
    s: &WeightScratch,
) -> Result<Dispatch> {
    check_rows(
        "weight standardisation",
        RowDims {
            rows: d.co,
            len: d.n(),
        },
        gpu,
    )?;
    expect_len(weight, d.len(), "weight")?;
    expect_len(alpha, d.co, "alpha")?;
    expect_len(rotate, d.co, "rotate")?;
    expect_len(&s.w2, d.len(), "w2")?;
    expect_len(&s.wstats, d.co * 4, "wstats")?;
    if variant == KernelVariant::Software {
        return gpu.dispatch(
            &gpu.kernel(SOFTWARE, "weight_forward", &[])?,
            &[weight, alpha, rotate, &s.wstats, &s.w2],
            software_immediates(d).bytes(),
            software_grid(d, d.co)?,
        );
    }
    let k = gpu.kernel("standardize", "weight_forward", &[])?;
    gpu.dispatch(
        &k,
        &[weight, alpha, rotate, &s.wstats, &s.w2],
        immediates(d.co, d.n(), 0, 0.0, 0.0).bytes(),
        [d.co as u32, 1, 1],
    )
}

/// astats [N, 2] = (mean, std) of each sample of x.
pub fn activation_stats(gpu: &Gpu, d: RowDims, x: &Tensor, astats: &Tensor) -> Result<Dispatch> {
    check_rows("activation standardisation", d, gpu)?;
    expect_len(x, d.rows * d.len, "input")?;
    expect_len(astats, d.rows * 2, "activation stats")?;
    let k = gpu.kernel("standardize", "activation_stats", &[])?;
    gpu.dispatch(
        &k,
        &[x, astats],
        immediates(d.rows, d.len, 0, 0.0, 0.0).bytes(),
        [d.rows as u32, 1, 1],
    )
}

/// out = a2 or sign(a2) elementwise, from x and astats.
pub fn activation_output(
    gpu: &Gpu,
    variant: KernelVariant,
    d: RowDims,
    x: &Tensor,
    astats: &Tensor,
    out: &Tensor,
    what: ActivationOutput,
) -> Result<Dispatch> {
    expect_len(x, d.rows * d.len, "input")?;
    expect_len(astats, d.rows * 2, "activation stats")?;
    expect_len(out, d.rows * d.len, "activation output")?;
    let mode = match what {
        ActivationOutput::Standardized => 0,
        ActivationOutput::Sign => 1,
    };
    let (shader, entry, grid) = elementwise(gpu, variant, d, "activation_output")?;
    gpu.dispatch(
        &gpu.kernel(shader, &entry, &[])?,
        &[x, astats, out],
        immediates(d.rows, d.len, mode, 0.0, 0.0).bytes(),
        grid,
    )
}

/// Elements of a row one workgroup of a `*_walk` kernel covers (WALK_LANES * WALK_STEPS in
/// shaders/common/channel_walk.wgsl).
const WALK_CHUNK: usize = 4096;
/// The software variant's shader.
const WALK_SHADER: &str = "standardize_walk";

/// The shader, entry point and grid of the elementwise pass `entry` in `variant`: one invocation
/// per element, or workgroup (chunk, row) of its `_walk` twin in standardize_walk.wgsl.
fn elementwise(
    gpu: &Gpu,
    variant: KernelVariant,
    d: RowDims,
    entry: &str,
) -> Result<(&'static str, String, [u32; 3])> {
    Ok(match variant {
        KernelVariant::Gpu => (
            "standardize",
            entry.to_string(),
            grid_1d(d.rows * d.len, 256),
        ),
        KernelVariant::Software => {
            if d.rows == 0 || d.len == 0 {
                bail!(
                    "{entry}: {} rows of {} elements: nothing to walk",
                    d.rows,
                    d.len
                );
            }
            expect_u32(d.rows * d.len, "standardised elements")?;
            let chunks = d.len.div_ceil(WALK_CHUNK);
            let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
            if chunks > max || d.rows > max {
                bail!(
                    "{entry}: {chunks} chunks x {} rows exceed the adapter's {max} workgroups \
                     per dimension",
                    d.rows
                );
            }
            (
                WALK_SHADER,
                format!("{entry}_walk"),
                [chunks as u32, d.rows as u32, 1],
            )
        }
    })
}

/// Immediates of both `activation_backward` dispatches for the ApproxSign of epoch t
/// (ta = max(t, 1), k = 1); recorded anew each step.
pub fn activation_backward_immediates(d: RowDims, grad: ActivationGrad, t: f32) -> Imm {
    let ta = (t as f64).max(1.0);
    let mode = match grad {
        ActivationGrad::ApproxSign => 0,
        ActivationGrad::A32 => 1,
    };
    immediates(d.rows, d.len, mode, (SQRT_2 * ta) as f32, (ta * ta) as f32)
}

/// dx holds dL/d(ba) on entry (the conv data gradient) and dL/dx on exit: ApproxSign (unless
/// a32), then back through the per-sample standardisation. Two dispatches: per-sample sums into
/// `sums` [N, 2], then the elementwise update.
#[allow(clippy::too_many_arguments)]
pub fn activation_backward(
    gpu: &Gpu,
    variant: KernelVariant,
    d: RowDims,
    grad: ActivationGrad,
    x: &Tensor,
    astats: &Tensor,
    dx: &Tensor,
    sums: &Tensor,
) -> Result<[Dispatch; 2]> {
    check_rows("activation standardisation backward", d, gpu)?;
    expect_len(x, d.rows * d.len, "input")?;
    expect_len(astats, d.rows * 2, "activation stats")?;
    expect_len(dx, d.rows * d.len, "input gradient")?;
    expect_len(sums, d.rows * 2, "activation sums")?;
    let imm = activation_backward_immediates(d, grad, 1.0);
    let k_sums = gpu.kernel("standardize", "activation_backward_sums", &[])?;
    let (apply_shader, apply, apply_grid) =
        elementwise(gpu, variant, d, "activation_backward_apply")?;
    let k_apply = gpu.kernel(apply_shader, &apply, &[])?;
    Ok([
        gpu.dispatch(
            &k_sums,
            &[x, astats, dx, sums],
            imm.bytes(),
            [d.rows as u32, 1, 1],
        )?,
        gpu.dispatch(&k_apply, &[x, astats, dx, sums], imm.bytes(), apply_grid)?,
    ])
}

/// Elements of the per-lane partials of `activation_backward_walk` for rows `d`.
pub fn walk_partials_len(d: RowDims) -> usize {
    d.rows * d.len.div_ceil(WALK_CHUNK) * WALK_LANES * 2
}

/// Lanes per row of `activation_stats_walk`: those of `activation_stats`' workgroup (SUM_LANES in
/// shaders/common/workgroup_sum.wgsl), whose order of the sum it keeps.
const STATS_LANES: usize = 256;

/// Elements of the per-lane partials of `activation_stats_walk` for rows `d`: a (count, mean,
/// M2, sum) per lane of every row.
pub fn walk_stats_partials_len(d: RowDims) -> usize {
    d.rows * STATS_LANES * 4
}

/// Software adapters' `activation_stats` (`KernelVariant::Software`), two dispatches:
/// [activation_stats_walk, activation_stats_finish_walk]: astats [N, 2] = (mean, std) of each
/// sample of x in one pass over x without barriers (per-lane sums and Welford summaries in
/// `partials`, `walk_stats_partials_len`, combined per sample in a fixed order). The mean has
/// the bits of `activation_stats`' (the same sums in the same order), which the packed engine's
/// signs of x - mean rely on; the std may differ in its last bits.
pub fn activation_stats_walk(
    gpu: &Gpu,
    d: RowDims,
    x: &Tensor,
    astats: &Tensor,
    partials: &Tensor,
) -> Result<[Dispatch; 2]> {
    check_rows("activation standardisation", d, gpu)?;
    expect_len(x, d.rows * d.len, "input")?;
    expect_len(astats, d.rows * 2, "activation stats")?;
    expect_len(
        partials,
        walk_stats_partials_len(d),
        "activation statistics partials",
    )?;
    expect_u32(d.rows * d.len, "standardised elements")?;
    let imm = immediates(d.rows, d.len, 0, 0.0, 0.0);
    Ok([
        gpu.dispatch(
            &gpu.kernel(WALK_SHADER, "activation_stats_walk", &[])?,
            &[x, partials],
            imm.bytes(),
            [(STATS_LANES / 64) as u32, d.rows as u32, 1],
        )?,
        gpu.dispatch(
            &gpu.kernel(WALK_SHADER, "activation_stats_finish_walk", &[])?,
            &[astats, partials],
            imm.bytes(),
            [d.rows.div_ceil(64) as u32, 1, 1],
        )?,
    ])
}

/// Partials per chunk of the walk kernels (WALK_LANES in shaders/common/channel_walk.wgsl).
const WALK_LANES: usize = 64;

/// Software adapters' activation backward (`KernelVariant::Software`), three dispatches:
/// [activation_backward_sums_walk, activation_backward_sums_finish_walk,
/// activation_backward_apply_walk]. Computes what `activation_backward` computes (and leaves the
/// same sums in `sums`), through the per-lane `partials` (`walk_partials_len`); with
/// `ActivationGrad::ApproxSign` the first pass also writes sign(x - mean) to `sign_out`, what
/// `activation_output(.., ActivationOutput::Sign)` writes, so that it replaces that pass. Record
/// the first two before anything reads `sign_out`, all three with
/// `activation_backward_immediates`.
#[allow(clippy::too_many_arguments)]
pub fn activation_backward_walk(
    gpu: &Gpu,
    d: RowDims,
    grad: ActivationGrad,
    x: &Tensor,
    astats: &Tensor,
    dx: &Tensor,
    sign_out: &Tensor,
    partials: &Tensor,
    sums: &Tensor,
) -> Result<[Dispatch; 3]> {
    check_rows("activation standardisation backward", d, gpu)?;
    expect_len(x, d.rows * d.len, "input")?;
    expect_len(astats, d.rows * 2, "activation stats")?;
    expect_len(dx, d.rows * d.len, "input gradient")?;
    expect_len(sign_out, d.rows * d.len, "activation signs")?;
    expect_len(partials, walk_partials_len(d), "activation partial sums")?;
    expect_len(sums, d.rows * 2, "activation sums")?;
    let imm = activation_backward_immediates(d, grad, 1.0);
    let (shader, _, grid) = elementwise(gpu, KernelVariant::Software, d, "activation_backward")?;
    let kernel = |entry: &str| gpu.kernel(shader, entry, &[]);

    Ok([
        gpu.dispatch(
            &kernel("activation_backward_sums_walk")?,
            &[x, astats, sign_out, dx, partials],
            imm.bytes(),
            grid,
        )?,
        gpu.dispatch(
            &kernel("activation_backward_sums_finish_walk")?,
            &[sums, partials],
            imm.bytes(),
            [d.rows.div_ceil(64) as u32, 1, 1],
        )?,
        gpu.dispatch(
            &kernel("activation_backward_apply_walk")?,
            &[x, astats, dx, sums],
            imm.bytes(),
            grid,
        )?,
    ])
}

/// The standardisations in f64 (docs/numerics.md section 1).
pub mod cpu {
    /// Rows standardised to zero mean and unit unbiased std, with the saved statistics.
    pub struct Standardized {
        pub out: Vec<f64>,
        pub mean: Vec<f64>,
        pub std: Vec<f64>,
    }

    /// out_r = (x_r - mean(x_r)) / std(x_r - mean(x_r)) for each row r of length `len`.
    pub fn standardize_rows(x: &[f64], len: usize) -> Standardized {
        let rows = x.len() / len;
        let mut out = vec![0.0; x.len()];
        let (mut mean, mut std) = (vec![0.0; rows], vec![0.0; rows]);
        for r in 0..rows {
            let row = &x[r * len..(r + 1) * len];
            let m = row.iter().sum::<f64>() / len as f64;
            let var = row.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (len as f64 - 1.0);
            let s = var.sqrt();
            for (o, v) in out[r * len..(r + 1) * len].iter_mut().zip(row) {
                *o = (v - m) / s;
            }
            mean[r] = m;
            std[r] = s;
        }
        Standardized { out, mean, std }
    }

    /// The gradient through `standardize_rows`, mean and std included:
    /// dx = (g - mean(g) - out * sum(g*out)/(len-1)) / std.
    pub fn standardize_rows_backward(out: &[f64], std: &[f64], g: &[f64], len: usize) -> Vec<f64> {
        let mut dx = vec![0.0; g.len()];
        for (r, &s) in std.iter().enumerate() {
            let span = r * len..(r + 1) * len;
            let (o, gr) = (&out[span.clone()], &g[span.clone()]);
            let gm = gr.iter().sum::<f64>() / len as f64;
            let go = gr.iter().zip(o).map(|(g, o)| g * o).sum::<f64>() / (len as f64 - 1.0);
            for ((d, &g), &o) in dx[span].iter_mut().zip(gr).zip(o) {
                *d = (g - gm - o * go) / s;
            }
        }
        dx
    }
}
