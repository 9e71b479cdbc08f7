//! PyTorch SGD (momentum, weight decay, dampening 0, no Nesterov; docs/numerics.md section 9)
//! over a whole parameter arena in one dispatch (shaders/sgd.wgsl), `fill`, and
//! `find_nonfinite`, the check that training runs on its parameters wherever it reads back
//! (binarisation hides NaN from the loss).
//!
//! Per element: g' = g + wd * w; buf = momentum * buf + g' (buf = g' at the very first step);
//! w -= lr * buf, with lr and wd multiplied by the element's parameter-group scales
//! (`ParamGroups`; `step` uses one group of scale 1, the official recipe). Params, grads and
//! momentum buffers are each one arena tensor (`Gpu::arena`) with the same layout; the arena's
//! alignment gaps are zero in all three and stay zero.
//! The step's scalars are immediates: build the dispatch once, then record it every step with
//! `dispatch.record_with(&mut pass, &step_immediates(len, &hyper))`.

use super::param_groups::ParamGroups;
use super::shape::expect_u32;
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

/// The scalars of one optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// True at the very first step: the momentum buffer starts as g' (its old contents are
    /// ignored).
    pub first_step: bool,
}

/// The immediates of the step dispatch for an arena of `len` elements.
pub fn step_immediates(len: usize, s: &SgdStep) -> Vec<u8> {
    Imm::new()
        .u(len as u32)
        .f(s.lr)
        .f(s.momentum)
        .f(s.weight_decay)
        .u(s.first_step as u32)
        .bytes()
        .to_vec()
}

/// One SGD step over whole arenas, every element with the learning rate and weight decay as
/// given. Updates `params` and `momentum_buf` in place; reads `grads`. The three tensors must be
/// distinct buffers of the same length.
pub fn step(
    gpu: &Gpu,
    params: &Tensor,
    grads: &Tensor,
    momentum_buf: &Tensor,
    s: &SgdStep,
) -> Result<Dispatch> {
    let groups = ParamGroups::uniform(gpu, params.len())?;
    step_grouped(gpu, params, grads, momentum_buf, &groups, s)
}

/// `step` with each element's learning rate and weight decay multiplied by its group's scales.
pub fn step_grouped(
    gpu: &Gpu,
    params: &Tensor,
    grads: &Tensor,
    momentum_buf: &Tensor,
    groups: &ParamGroups,
    s: &SgdStep,
) -> Result<Dispatch> {
    let n = params.len();
    if grads.len() != n || momentum_buf.len() != n {
        bail!(
            "SGD: params {} ({}), grads {} ({}) and momentum {} ({}) must have the same length",
            params.label,
            n,
            grads.label,
            grads.len(),
            momentum_buf.label,
            momentum_buf.len()
        );
    }
    expect_u32(n, "SGD arena elements")?;
    groups.expect_len(n, "SGD")?;
    gpu.dispatch(
        &gpu.kernel("sgd", "step", &[])?,
        &[grads, params, momentum_buf, &groups.index, &groups.scales],
        &step_immediates(n, s),
        grid_1d(n, 256),
    )
}

/// Sets every element of `t` to the 32 bits `bits` (f32 or u32). Overwrites `t`.
pub fn fill(gpu: &Gpu, t: &Tensor, bits: u32) -> Result<Dispatch> {
    let n = expect_u32(t.len(), "fill elements")?;
    gpu.dispatch(
        &gpu.kernel("sgd", "fill", &[])?,
        &[t],
        Imm::new().u(n).u(bits).bytes(),
        grid_1d(t.len(), 256),
    )
}

/// Sets every element of `t` to the f32 `value`. Overwrites `t`.
pub fn fill_f32(gpu: &Gpu, t: &Tensor, value: f32) -> Result<Dispatch> {
    fill(gpu, t, value.to_bits())
}

/// Sets `flag[0]` (a u32) to 1 when some element of `t` is NaN or infinite, and leaves it as it
/// is otherwise: zero the flag, record this for every arena to check, then read the flag.
pub fn find_nonfinite(gpu: &Gpu, t: &Tensor, flag: &Tensor) -> Result<Dispatch> {
    let n = expect_u32(t.len(), "checked elements")?;
    if flag.len() != 1 {
        bail!(
            "find_nonfinite: the flag {} must be one u32, got {:?}",
            flag.label,
            flag.shape
        );
    }
    gpu.dispatch(
        &gpu.kernel("sgd", "find_nonfinite", &[])?,
        &[t, flag],
        Imm::new().u(n).bytes(),
        grid_1d(t.len(), 256),
    )
}

/// Plain-Rust reference in f64.
pub mod cpu {
    use super::SgdStep;
    use crate::ops::param_groups::GroupScale;

    /// What `find_nonfinite` flags: some element is NaN or infinite.
    pub fn any_nonfinite(x: &[f32]) -> bool {
        x.iter().any(|v| !v.is_finite())
    }

    /// One step; updates `w` and `buf` in place.
    pub fn step(w: &mut [f64], g: &[f64], buf: &mut [f64], s: &SgdStep) {
        step_grouped(w, g, buf, s, &vec![GroupScale::ONE; w.len()]);
    }

    /// One step with the scales of each element (`param_groups::cpu::per_element`).
    pub fn step_grouped(
        w: &mut [f64],
        g: &[f64],
        buf: &mut [f64],
        s: &SgdStep,
        scales: &[GroupScale],
    ) {
        let m = s.momentum as f64;
        for i in 0..w.len() {
            let lr = s.lr as f64 * scales[i].lr as f64;
            let wd = s.weight_decay as f64 * scales[i].decay as f64;
            let g2 = g[i] + wd * w[i];
            buf[i] = if s.first_step { g2 } else { m * buf[i] + g2 };
            w[i] -= lr * buf[i];
        }
    }
}
