//! BatchNorm2d over x [N, C, H, W] and BatchNorm1d over x [N, C] (HW = 1) with PyTorch's
//! semantics (docs/numerics.md section 6; shaders/batchnorm.wgsl).
//!
//! Training: y = (x - mean) * rstd * gamma + beta with the batch mean and the BIASED batch
//! variance, rstd = 1/sqrt(var + eps); the running statistics move by
//! running = (1 - momentum) * running + momentum * batch value, the variance taken unbiased
//! (divisor N*HW - 1). The forward saves mean and rstd per channel for the backward.
//! Evaluation: the same affine map with the running statistics.
//!
//! Per-channel reductions (up to N*HW = 262,144 elements at batch 256 with as few as 16 channels)
//! run in two deterministic fixed-order stages parallel within each channel: `*_partials` with
//! one workgroup per (chunk of CHUNK elements, channel), then `*_finish` with one per channel.
//! Software adapters (`KernelVariant::Software`) run the `*_walk` first stages, elementwise
//! passes and partials of one per lane (shaders/common/channel_walk.wgsl); the finish kernels
//! are shared. Both variants compute y and dx with the same expressions; their statistics differ
//! only in the order of the sums.

use super::shape::{expect_at_least, expect_len, expect_u32};
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, KernelVariant, Tensor};
use anyhow::{bail, Context, Result};

/// PyTorch's default epsilon.
pub const EPS: f32 = 1e-5;
/// PyTorch's default momentum of the running statistics.
pub const MOMENTUM: f32 = 0.1;
/// Elements of one channel reduced by one first-stage workgroup (256 lanes x 16); equals CHUNK in
/// the shader.
pub const CHUNK: usize = 4096;
/// Values per channel whose count an f32 holds exactly (the statistics carry counts as f32).
const MAX_COUNT: usize = 1 << 24;
/// f32 values per (channel, chunk) in the workspace: the forward's (count, mean, M2).
const PARTIAL_WORDS: usize = 3;
/// Partials per chunk of the software variant: one per lane (WALK_LANES in the shader).
const WALK_LANES: usize = 64;

/// The sizes a BatchNorm sees: x is [n, c, hw] (BatchNorm1d: hw = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnDims {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl BnDims {
    /// [N, C, H, W] or [N, C].
    pub fn of(shape: &[usize]) -> Result<BnDims> {
        match *shape {
            [n, c] => Ok(BnDims { n, c, hw: 1 }),
            [n, c, h, w] => Ok(BnDims { n, c, hw: h * w }),
            _ => bail!("BatchNorm input must be [N, C, H, W] or [N, C], got {shape:?}"),
        }
    }
    /// Elements per channel, N*HW.
    pub fn count(&self) -> usize {
        self.n * self.hw
    }
    pub fn total(&self) -> usize {
        self.n * self.c * self.hw
    }
    /// First-stage partials per channel.
    pub fn chunks(&self) -> usize {
        self.count().div_ceil(CHUNK).max(1)
    }
    /// First-stage partials per channel in `variant`.
    pub fn partials_per_channel(&self, variant: KernelVariant) -> usize {
        match variant {
            KernelVariant::Gpu => self.chunks(),
            KernelVariant::Software => self.chunks() * WALK_LANES,
        }
    }
    /// Elements of `BatchNorm::dot_partials`: one per lane of every chunk of every channel.
    pub fn dot_partials_len(&self) -> usize {
        self.c * self.partials_per_channel(KernelVariant::Software)
    }
    /// Elements the `partials` workspace needs in `variant` (the backward uses fewer).
    pub fn partials_len(&self, variant: KernelVariant) -> usize {
        self.c * self.partials_per_channel(variant) * PARTIAL_WORDS
    }
}

/// The shader of each variant's kernels.
const SHADER: &str = "batchnorm";
const WALK_SHADER: &str = "batchnorm_walk";

/// The shader and entry points of one variant.
struct Entries {
    shader: &'static str,
    stats_partials: &'static str,
    stats_finish: &'static str,
    normalize: &'static str,
    grad_partials: &'static str,
    grad_finish: &'static str,
    grad_input: &'static str,
}

fn entries(variant: KernelVariant) -> Entries {
    match variant {
        KernelVariant::Gpu => Entries {
            shader: SHADER,
            stats_partials: "stats_partials",
            stats_finish: "stats_finish",
            normalize: "normalize",
            grad_partials: "grad_partials",
            grad_finish: "grad_finish",
            grad_input: "grad_input",
        },
        KernelVariant::Software => Entries {
            shader: WALK_SHADER,
            stats_partials: "stats_partials_walk",
            stats_finish: "stats_finish_walk",
            normalize: "normalize_walk",
            grad_partials: "grad_partials_walk",
            grad_finish: "grad_finish_walk",
            grad_input: "grad_input_walk",
        },
    }
}

/// The grid of the elementwise passes (normalize, grad_input) in `variant`.
fn elementwise_grid(d: BnDims, variant: KernelVariant, chunk_grid: [u32; 3]) -> [u32; 3] {
    match variant {
        KernelVariant::Gpu => grid_1d(d.total(), 256),
        KernelVariant::Software => chunk_grid,
    }
}

/// The tensors of one BatchNorm layer. All per-channel tensors are [C].
pub struct BatchNorm<'a> {
    /// Weight (PyTorch `bn.weight`).
    pub gamma: &'a Tensor,
    /// Bias (PyTorch `bn.bias`).
    pub beta: &'a Tensor,
    pub running_mean: &'a Tensor,
    pub running_var: &'a Tensor,
    /// Written by the training forward, read by the backward: batch mean.
    pub mean: &'a Tensor,
    /// Written by the training forward, read by the backward: 1/sqrt(biased var + eps).
    pub rstd: &'a Tensor,
    /// Workspace of at least `BnDims::partials_len()` elements; layers may share one, since
    /// dispatches of a pass run in order.
    pub partials: &'a Tensor,
    /// The software variant's backward (`KernelVariant::Software`; `BnDims::dot_partials_len`
    /// elements, required there): the partials of `ops::channel_dot(dx, x)` it writes, in the
    /// layout of the software variant's channel dot (`channel_dot::channel_dot_finish`).
    pub dot_partials: Option<&'a Tensor>,
}

/// The immediates every BatchNorm dispatch takes in `variant`. `update_running` matters only to
/// the second dispatch of `forward_train` (stats_finish): record it with
/// `immediates(dims, variant, false)` to run a training forward that leaves the running
/// statistics alone.
pub fn immediates(dims: BnDims, variant: KernelVariant, update_running: bool) -> Vec<u8> {
    Imm::new()
        .u(dims.n as u32)
        .u(dims.c as u32)
        .u(dims.hw as u32)
        .u(dims.partials_per_channel(variant) as u32)
        .u(dims.total() as u32)
        .f(EPS)
        .f(MOMENTUM)
        .u(update_running as u32)
        .bytes()
        .to_vec()
}

fn check(bn: &BatchNorm, x: &Tensor, out: &Tensor) -> Result<BnDims> {
    let d = BnDims::of(&x.shape).with_context(|| format!("tensor {}", x.label))?;
    expect_u32(d.total(), "BatchNorm elements")?;
    for (t, what) in [
        (bn.gamma, "BatchNorm gamma"),
        (bn.beta, "BatchNorm beta"),
        (bn.running_mean, "BatchNorm running_mean"),
        (bn.running_var, "BatchNorm running_var"),
        (bn.mean, "BatchNorm saved mean"),
        (bn.rstd, "BatchNorm saved rstd"),
    ] {
        expect_len(t, d.c, what)?;
    }
    expect_len(out, d.total(), "BatchNorm output")?;
    Ok(d)
}

/// The grids of the first stages (chunks x channels) and of the finish kernels in `variant` (a
/// workgroup per channel, or an invocation per channel).
fn channel_grids(gpu: &Gpu, d: BnDims, variant: KernelVariant) -> Result<([u32; 3], [u32; 3])> {
    if d.total() == 0 {
        bail!("BatchNorm of {d:?}: no elements");
    }
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if d.chunks() > max || d.c > max {
        bail!(
            "BatchNorm of {d:?}: {} chunks x {} channels exceeds {max} workgroups per dimension",
            d.chunks(),
            d.c
        );
    }
    let channels = match variant {
        KernelVariant::Gpu => d.c,
        KernelVariant::Software => d.c.div_ceil(64),
    };
    Ok(([d.chunks() as u32, d.c as u32, 1], [channels as u32, 1, 1]))
}

/// Training forward, three dispatches: [stats_partials, stats_finish, normalize] (the `*_walk`
/// ones in `variant` Software). Overwrites `y`, `bn.mean`, `bn.rstd` and `bn.partials`; with
/// `update_running`, updates `bn.running_mean` and `bn.running_var` in place (see `immediates`
/// to change that per record). `y` must not share a buffer with the tensors it is computed from.
pub fn forward_train(
    gpu: &Gpu,
    variant: KernelVariant,
    bn: &BatchNorm,
    x: &Tensor,
    y: &Tensor,
    update_running: bool,
) -> Result<Vec<Dispatch>> {
    let Statistics {
        dispatches: mut out,
        d,
        chunk_grid,
        imm,
    } = statistics(gpu, variant, bn, x, y, update_running)?;
    let e = entries(variant);
    out.push(gpu.dispatch(
        &gpu.kernel(e.shader, e.normalize, &[])?,
        &[x, bn.gamma, bn.beta, bn.mean, bn.rstd, y],
        &imm,
        elementwise_grid(d, variant, chunk_grid),
    )?);
    Ok(out)
}

/// Software adapters' BatchNorm -> [+ residual] -> hardtanh in three dispatches (the variant
/// Software kernels): [stats_partials_walk, stats_finish_walk, normalize_hardtanh_walk or
/// normalize_add_hardtanh_walk]; y = hardtanh(BN(x) [+ residual]), nothing else written but
/// what `forward_train` writes.
pub fn forward_train_hardtanh(
    gpu: &Gpu,
    bn: &BatchNorm,
    x: &Tensor,
    residual: Option<&Tensor>,
    y: &Tensor,
    update_running: bool,
) -> Result<Vec<Dispatch>> {
    let variant = KernelVariant::Software;
    let Statistics {
        dispatches: mut out,
        d,
        chunk_grid,
        imm,
    } = statistics(gpu, variant, bn, x, y, update_running)?;
    // Buffers in binding order: res (19) after out (16).
    let mut buffers = vec![x, bn.gamma, bn.beta, bn.mean, bn.rstd, y];
    let entry = match residual {
        Some(r) => {
            expect_len(r, d.total(), "BatchNorm residual")?;
            buffers.push(r);
            "normalize_add_hardtanh_walk"
        }
        None => "normalize_hardtanh_walk",
    };
    out.push(gpu.dispatch(
        &gpu.kernel(WALK_SHADER, entry, &[])?,
        &buffers,
        &imm,
        chunk_grid,
    )?);
    Ok(out)
}

/// The checks of a training forward and its first two dispatches (the batch statistics), with
/// the dims, the chunk grid and the immediates the last one needs.
fn statistics(
    gpu: &Gpu,
    variant: KernelVariant,
    bn: &BatchNorm,
    x: &Tensor,
    y: &Tensor,
    update_running: bool,
) -> Result<Statistics> {
    let d = check(bn, x, y)?;
    if d.count() < 2 {
        bail!(
            "BatchNorm training on {} {:?} needs more than one value per channel (as PyTorch)",
            x.label,
            x.shape
        );
    }
    if d.count() > MAX_COUNT {
        bail!(
            "BatchNorm on {} {:?}: {} values per channel exceed {MAX_COUNT}, the most whose \
             count the shader's f32 statistics hold exactly",
            x.label,
            x.shape,
            d.count()
        );
    }
    expect_at_least(bn.partials, d.partials_len(variant), "BatchNorm partials")?;
    let (chunk_grid, channel_grid) = channel_grids(gpu, d, variant)?;
    let imm = immediates(d, variant, update_running);
    let e = entries(variant);
    let dispatches = vec![
        gpu.dispatch(
            &gpu.kernel(e.shader, e.stats_partials, &[])?,
            &[x, bn.partials],
            &imm,
            chunk_grid,
        )?,
        gpu.dispatch(
            &gpu.kernel(e.shader, e.stats_finish, &[])?,
            &[
                bn.partials,
                bn.mean,
                bn.rstd,
                bn.running_mean,
                bn.running_var,
            ],
            &imm,
            channel_grid,
        )?,
    ];
    Ok(Statistics {
        dispatches,
        d,
        chunk_grid,
        imm,
    })
}

/// `statistics`' dispatches and what the last dispatch of a forward needs.
struct Statistics {
    dispatches: Vec<Dispatch>,
    d: BnDims,
    chunk_grid: [u32; 3],
    imm: Vec<u8>,
}

/// Inference forward with the running statistics. Overwrites `y`.
pub fn forward_eval(gpu: &Gpu, bn: &BatchNorm, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let d = check(bn, x, y)?;
    gpu.dispatch(
        &gpu.kernel(SHADER, "normalize_running", &[])?,
        &[x, bn.gamma, bn.beta, bn.running_mean, bn.running_var, y],
        &immediates(d, KernelVariant::Gpu, false),
        grid_1d(d.total(), 256),
    )
}

/// Backward of the training forward (batch statistics), three dispatches:
/// [grad_partials, grad_finish, grad_input] (the `*_walk` ones in `variant` Software). Reads x,
/// dy, gamma and the saved mean and rstd. Overwrites `dx`, `dgamma`, `dbeta` (each [C]) and
/// `bn.partials`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    variant: KernelVariant,
    bn: &BatchNorm,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
) -> Result<Vec<Dispatch>> {
    let BackwardPlan {
        d,
        chunk_grid,
        channel_grid,
        imm,
    } = backward_checks(gpu, variant, bn, [x, dy, dx, dgamma, dbeta])?;
    let e = entries(variant);
    let mut input = vec![x, dy, bn.gamma, bn.mean, bn.rstd, dgamma, dbeta, dx];
    if variant == KernelVariant::Software {
        input.push(dot_partials(bn, d)?);
    }
    Ok(vec![
        gpu.dispatch(
            &gpu.kernel(e.shader, e.grad_partials, &[])?,
            &[x, dy, bn.mean, bn.partials],
            &imm,
            chunk_grid,
        )?,
        gpu.dispatch(
            &gpu.kernel(e.shader, e.grad_finish, &[])?,
            &[bn.rstd, bn.partials, dgamma, dbeta],
            &imm,
            channel_grid,
        )?,
        gpu.dispatch(
            &gpu.kernel(e.shader, e.grad_input, &[])?,
            &input,
            &imm,
            elementwise_grid(d, variant, chunk_grid),
        )?,
    ])
}

/// The backward of `forward_train_hardtanh` from dy = dL/dy, three dispatches:
/// [grad_partials_hardtanh_walk, grad_finish_walk, grad_input_hardtanh_walk], or with a residual
/// (its tensor and its gradient) [grad_partials_add_hardtanh_walk, grad_finish_walk,
/// grad_input_walk],
/// which also writes the residual's gradient, dL/d(BN(x) + residual). Overwrites `dx`, `dgamma`,
/// `dbeta`, `bn.partials` (and the residual's gradient).
#[allow(clippy::too_many_arguments)]
pub fn backward_hardtanh(
    gpu: &Gpu,
    bn: &BatchNorm,
    x: &Tensor,
    residual: Option<(&Tensor, &Tensor)>,
    dy: &Tensor,
    dx: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
) -> Result<Vec<Dispatch>> {
    let variant = KernelVariant::Software;
    let BackwardPlan {
        d,
        chunk_grid,
        channel_grid,
        imm,
    } = backward_checks(gpu, variant, bn, [x, dy, dx, dgamma, dbeta])?;
    let kernel = |entry: &str| gpu.kernel(WALK_SHADER, entry, &[]);
    let params = [bn.gamma, bn.beta, bn.mean, bn.rstd];
    let dot = dot_partials(bn, d)?;
    let (partials, input) = match residual {
        Some((r, r_grad)) => {
            expect_len(r, d.total(), "BatchNorm residual")?;
            expect_len(r_grad, d.total(), "BatchNorm residual gradient")?;
            let mut partials = vec![x, dy];
            partials.extend(params);
            partials.extend([bn.partials, r, r_grad]);
            let input = gpu.dispatch(
                &kernel("grad_input_walk")?,
                &[
                    x, r_grad, bn.gamma, bn.mean, bn.rstd, dgamma, dbeta, dx, dot,
                ],
                &imm,
                chunk_grid,
            )?;
            (
                gpu.dispatch(
                    &kernel("grad_partials_add_hardtanh_walk")?,
                    &partials,
                    &imm,
                    chunk_grid,
                )?,
                input,
            )
        }
        None => {
            let mut partials = vec![x, dy];
            partials.extend(params);
            let mut input = partials.clone();
            partials.push(bn.partials);
            input.extend([dgamma, dbeta, dx, dot]);
            (
                gpu.dispatch(
                    &kernel("grad_partials_hardtanh_walk")?,
                    &partials,
                    &imm,
                    chunk_grid,
                )?,
                gpu.dispatch(
                    &kernel("grad_input_hardtanh_walk")?,
                    &input,
                    &imm,
                    chunk_grid,
                )?,
            )
        }
    };
    let finish = gpu.dispatch(
        &kernel("grad_finish_walk")?,
        &[bn.rstd, bn.partials, dgamma, dbeta],
        &imm,
        channel_grid,
    )?;
    Ok(vec![partials, finish, input])
}

/// The checks of a backward over [x, dy, dx, dgamma, dbeta]: its dims, grids and immediates.
fn backward_checks(
    gpu: &Gpu,
    variant: KernelVariant,
    bn: &BatchNorm,
    [x, dy, dx, dgamma, dbeta]: [&Tensor; 5],
) -> Result<BackwardPlan> {
    let d = check(bn, x, dx)?;
    expect_len(dy, d.total(), "BatchNorm dy")?;
    expect_len(dgamma, d.c, "BatchNorm dgamma")?;
    expect_len(dbeta, d.c, "BatchNorm dbeta")?;
    expect_at_least(bn.partials, d.partials_len(variant), "BatchNorm partials")?;
    let (chunk_grid, channel_grid) = channel_grids(gpu, d, variant)?;
    Ok(BackwardPlan {
        d,
        chunk_grid,
        channel_grid,
        imm: immediates(d, variant, false),
    })
}

/// What `backward_checks` finds: the dims, the grids and the immediates of a backward.
struct BackwardPlan {
    d: BnDims,
    chunk_grid: [u32; 3],
    channel_grid: [u32; 3],
    imm: Vec<u8>,
}

/// The software variant's `BatchNorm::dot_partials`, checked.
fn dot_partials<'a>(bn: &BatchNorm<'a>, d: BnDims) -> Result<&'a Tensor> {
    let Some(t) = bn.dot_partials else {
        bail!("the software variant's BatchNorm backward needs dot_partials (BnDims::dot_partials_len)");
    };
    expect_at_least(t, d.dot_partials_len(), "BatchNorm dot partials")?;
    Ok(t)
}

/// Plain-Rust references in f64.
pub mod cpu {
    use super::BnDims;

    /// A layer's parameters and running statistics, each [C].
    pub struct Params<'a> {
        pub gamma: &'a [f64],
        pub beta: &'a [f64],
        pub running_mean: &'a [f64],
        pub running_var: &'a [f64],
    }

    /// What the training forward produces.
    pub struct TrainOutput {
        pub y: Vec<f64>,
        pub mean: Vec<f64>,
        pub rstd: Vec<f64>,
        pub running_mean: Vec<f64>,
        pub running_var: Vec<f64>,
    }

    fn at(d: BnDims, n: usize, c: usize, i: usize) -> usize {
        (n * d.c + c) * d.hw + i
    }

    pub fn forward_train(x: &[f64], d: BnDims, p: &Params, momentum: f64, eps: f64) -> TrainOutput {
        let (gamma, beta) = (p.gamma, p.beta);
        let m = d.count() as f64;
        let mut out = TrainOutput {
            y: vec![0.0; x.len()],
            mean: vec![0.0; d.c],
            rstd: vec![0.0; d.c],
            running_mean: p.running_mean.to_vec(),
            running_var: p.running_var.to_vec(),
        };
        for c in 0..d.c {
            let elems = || (0..d.n).flat_map(move |n| (0..d.hw).map(move |i| at(d, n, c, i)));
            let mean = elems().map(|e| x[e]).sum::<f64>() / m;
            let var = elems().map(|e| (x[e] - mean).powi(2)).sum::<f64>() / m;
            let rstd = 1.0 / (var + eps).sqrt();
            for e in elems() {
                out.y[e] = (x[e] - mean) * rstd * gamma[c] + beta[c];
            }
            out.mean[c] = mean;
            out.rstd[c] = rstd;
            out.running_mean[c] = (1.0 - momentum) * p.running_mean[c] + momentum * mean;
            out.running_var[c] =
                (1.0 - momentum) * p.running_var[c] + momentum * var * m / (m - 1.0);
        }
        out
    }

    pub fn forward_eval(x: &[f64], d: BnDims, p: &Params, eps: f64) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for n in 0..d.n {
            for c in 0..d.c {
                let rstd = 1.0 / (p.running_var[c] + eps).sqrt();
                for i in 0..d.hw {
                    let e = at(d, n, c, i);
                    y[e] = (x[e] - p.running_mean[c]) * rstd * p.gamma[c] + p.beta[c];
                }
            }
        }
        y
    }

    /// (dx, dgamma, dbeta) of the training forward, from its saved mean and rstd.
    pub fn backward(
        x: &[f64],
        dy: &[f64],
        d: BnDims,
        gamma: &[f64],
        mean: &[f64],
        rstd: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let m = d.count() as f64;
        let mut dx = vec![0.0; x.len()];
        let mut dgamma = vec![0.0; d.c];
        let mut dbeta = vec![0.0; d.c];
        for c in 0..d.c {
            let elems = || (0..d.n).flat_map(move |n| (0..d.hw).map(move |i| at(d, n, c, i)));
            let xhat = |e: usize| (x[e] - mean[c]) * rstd[c];
            dbeta[c] = elems().map(|e| dy[e]).sum();
            dgamma[c] = elems().map(|e| dy[e] * xhat(e)).sum();
            for e in elems() {
                dx[e] = gamma[c] * rstd[c] / m * (m * dy[e] - dbeta[c] - xhat(e) * dgamma[c]);
            }
        }
        (dx, dgamma, dbeta)
    }

    /// hardtanh(BN(x) [+ residual]) with the batch statistics (what `forward_train_hardtanh`
    /// computes); the other outputs are `forward_train`'s.
    pub fn forward_train_hardtanh(
        x: &[f64],
        d: BnDims,
        p: &Params,
        residual: Option<&[f64]>,
        momentum: f64,
        eps: f64,
    ) -> TrainOutput {
        let mut out = forward_train(x, d, p, momentum, eps);
        for (i, y) in out.y.iter_mut().enumerate() {
            *y = (*y + residual.map_or(0.0, |r| r[i])).clamp(-1.0, 1.0);
        }
        out
    }

    /// The backward of `forward_train_hardtanh` from dy, given its saved mean and rstd:
    /// (dx, dgamma, dbeta, g) with g = hardtanh'(BN(x) [+ residual]) * dy, which is also the
    /// residual's gradient (hardtanh' is 1 strictly inside (-1, 1), else 0).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_hardtanh(
        x: &[f64],
        dy: &[f64],
        d: BnDims,
        gamma: &[f64],
        beta: &[f64],
        mean: &[f64],
        rstd: &[f64],
        residual: Option<&[f64]>,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut g = vec![0.0; x.len()];
        for n in 0..d.n {
            for c in 0..d.c {
                for i in 0..d.hw {
                    let e = at(d, n, c, i);
                    let u = (x[e] - mean[c]) * rstd[c] * gamma[c]
                        + beta[c]
                        + residual.map_or(0.0, |r| r[e]);
                    g[e] = if u > -1.0 && u < 1.0 { dy[e] } else { 0.0 };
                }
            }
        }
        let (dx, dgamma, dbeta) = backward(x, &g, d, gamma, mean, rstd);
        (dx, dgamma, dbeta, g)
    }
}
