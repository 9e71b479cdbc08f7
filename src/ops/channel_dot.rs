//! Per-channel dot products (shaders/channel_dot.wgsl): out[c] = sum over N and HW of a * b,
//! divided by div[c] (0 where div[c] is 0), with deterministic two-stage reductions. The binary conv layer uses it for dalpha = sum dy * y / alpha.
//! Software adapters (`KernelVariant::Software`) run the first stage as
//! shaders/channel_dot_walk.wgsl's `partials_walk`, one partial per lane
//! (shaders/common/channel_walk.wgsl), or take those partials from the BatchNorm backward
//! (`channel_dot_finish`).

use super::shape::{expect_at_least, expect_len, expect_u32};
use crate::gpu::{Dispatch, Gpu, Imm, KernelVariant, Tensor};
use anyhow::{bail, Context, Result};

/// Elements of a channel reduced by one first-stage workgroup (equals CHUNK in the shader).
pub const CHUNK: usize = 4096;
/// Partials per chunk of the software variant: one per lane (WALK_LANES in the shader).
const WALK_LANES: usize = 64;

/// The dispatches and the partial-sum scratch they own.
pub struct ChannelDot {
    pub partials: Tensor,
    pub dispatches: Vec<Dispatch>,
}

impl ChannelDot {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }
}

/// a, b: [N, C, H, W] (or [N, C]); div and out: [C], in `variant`. Overwrites `out`.
pub fn channel_dot(
    gpu: &Gpu,
    variant: KernelVariant,
    a: &Tensor,
    b: &Tensor,
    div: &Tensor,
    out: &Tensor,
) -> Result<ChannelDot> {
    let (n, c, hw) = dims(&a.shape).with_context(|| format!("tensor {}", a.label))?;
    expect_len(b, a.len(), "channel_dot b")?;
    expect_at_least(div, c, "channel_dot divisor")?;
    expect_len(out, c, "channel_dot output")?;
    let chunks = (n * hw).div_ceil(CHUNK).max(1);
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if chunks > max || c > max {
        bail!(
            "channel_dot over {:?}: {chunks} chunks x {c} channels exceeds {max} workgroups",
            a.shape
        );
    }
    if a.is_empty() {
        bail!("channel_dot: {} {:?} has no elements", a.label, a.shape);
    }
    expect_u32(a.len(), "channel_dot elements")?;
    let (shader, entry, per_channel) = match variant {
        KernelVariant::Gpu => ("channel_dot", "partials", chunks),
        KernelVariant::Software => ("channel_dot_walk", "partials_walk", chunks * WALK_LANES),
    };
    let (finish, finish_grid) = finish_kernel(variant, c);
    let partials = gpu.try_tensor("channel_dot partials", &[c * per_channel])?;
    let imm = Imm::new()
        .u(n as u32)
        .u(c as u32)
        .u(hw as u32)
        .u(per_channel as u32);
    let dispatches = vec![
        gpu.dispatch(
            &gpu.kernel(shader, entry, &[])?,
            &[a, b, &partials],
            imm.bytes(),
            [chunks as u32, c as u32, 1],
        )?,
        gpu.dispatch(
            &gpu.kernel(shader, finish, &[])?,
            &[&partials, div, out],
            imm.bytes(),
            finish_grid,
        )?,
    ];
    Ok(ChannelDot {
        partials,
        dispatches,
    })
}

/// The software variant's second stage alone, over per-lane `partials` another kernel wrote in
/// the layout of `channel_dot_walk.wgsl` (the BatchNorm backward after a binary conv,
/// `batchnorm::BatchNorm::dot_partials`): out[c] = sum of channel c's partials / div[c], for
/// a, b of `shape` ([N, C, H, W] or [N, C]). Overwrites `out`.
pub fn channel_dot_finish(
    gpu: &Gpu,
    shape: &[usize],
    partials: &Tensor,
    div: &Tensor,
    out: &Tensor,
) -> Result<ChannelDot> {
    let (n, c, hw) = dims(shape)?;
    expect_at_least(div, c, "channel_dot divisor")?;
    expect_len(out, c, "channel_dot output")?;
    let per_channel = (n * hw).div_ceil(CHUNK).max(1) * WALK_LANES;
    expect_at_least(partials, c * per_channel, "channel_dot partials")?;
    if c > gpu.limits.max_compute_workgroups_per_dimension as usize {
        bail!("channel_dot over {shape:?}: {c} channels exceed the adapter's workgroups");
    }
    let imm = Imm::new()
        .u(n as u32)
        .u(c as u32)
        .u(hw as u32)
        .u(per_channel as u32);
    let (finish, grid) = finish_kernel(KernelVariant::Software, c);
    let dispatches = vec![gpu.dispatch(
        &gpu.kernel("channel_dot_walk", finish, &[])?,
        &[partials, div, out],
        imm.bytes(),
        grid,
    )?];
    Ok(ChannelDot {
        partials: partials.clone(),
        dispatches,
    })
}

/// The second stage's entry point and grid over `c` channels in `variant`: a workgroup per
/// channel, or an invocation per channel.
fn finish_kernel(variant: KernelVariant, c: usize) -> (&'static str, [u32; 3]) {
    match variant {
        KernelVariant::Gpu => ("finish", [c as u32, 1, 1]),
        KernelVariant::Software => ("finish_walk", [c.div_ceil(64) as u32, 1, 1]),
    }
}

/// (N, C, HW) of [N, C, H, W] or [N, C].
fn dims(shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *shape {
        [n, c] => Ok((n, c, 1)),
        [n, c, h, w] => Ok((n, c, h * w)),
        _ => bail!("channel_dot: {shape:?} must be [N, C, H, W] or [N, C]"),
    }
}

/// Plain-Rust reference in f64.
pub mod cpu {
    pub fn channel_dot(
        a: &[f64],
        b: &[f64],
        n: usize,
        c: usize,
        hw: usize,
        div: &[f64],
    ) -> Vec<f64> {
        (0..c)
            .map(|ch| {
                let s: f64 = (0..n)
                    .flat_map(|i| (0..hw).map(move |j| (i * c + ch) * hw + j))
                    .map(|e| a[e] * b[e])
                    .sum();
                if div[ch] == 0.0 {
                    0.0
                } else {
                    s / div[ch]
                }
            })
            .collect()
    }
}
