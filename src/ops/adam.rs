//! PyTorch Adam (`torch.optim.Adam`: L2 weight decay added to the gradient, no AMSGrad;
//! docs/numerics.md section 9.1) over a whole parameter arena in one dispatch (shaders/adam.wgsl),
//! with per-group learning-rate and weight-decay scales (`ParamGroups`).
//!
//! Per element, at step t (1-based): g' = g + wd * w; m = beta1 * m + (1 - beta1) * g';
//! v = beta2 * v + (1 - beta2) * g'^2; w -= (lr / (1 - beta1^t)) * m / (sqrt(v) /
//! sqrt(1 - beta2^t) + eps). Both moments start at zero. Params, grads and the two moment
//! arenas share one layout (`Gpu::arena` with the same shapes); the gaps stay zero (a zero
//! gradient on a zero weight moves nothing). The scalars, including the bias corrections of step
//! t (computed on the host in f64), are immediates: build the dispatch once and record it every
//! step with `record_with(&mut pass, &step_immediates(len, &hyper))`.

use super::param_groups::ParamGroups;
use super::shape::expect_u32;
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

/// The scalars of one Adam step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f32,
    pub weight_decay: f32,
    /// This step's number t, 1-based (the bias corrections use it).
    pub step: u64,
}

impl AdamStep {
    /// 1 - beta1^t.
    pub fn bias_correction1(&self) -> f64 {
        1.0 - self.beta1.powf(self.step as f64)
    }

    /// sqrt(1 - beta2^t).
    pub fn bias_correction2_sqrt(&self) -> f64 {
        (1.0 - self.beta2.powf(self.step as f64)).sqrt()
    }
}

/// The immediates of the step dispatch for an arena of `len` elements.
pub fn step_immediates(len: usize, s: &AdamStep) -> Vec<u8> {
    Imm::new()
        .u(len as u32)
        .f(s.lr)
        .f(s.beta1 as f32)
        .f(s.beta2 as f32)
        .f((1.0 - s.beta1) as f32)
        .f((1.0 - s.beta2) as f32)
        .f(s.eps)
        .f(s.weight_decay)
        .f(s.bias_correction1() as f32)
        .f(s.bias_correction2_sqrt() as f32)
        .bytes()
        .to_vec()
}

/// One Adam step over whole arenas. Updates `params`, `exp_avg` (m) and `exp_avg_sq` (v) in
/// place; reads `grads`. The four tensors must be distinct buffers of one length, which the
/// groups cover. The step number `s.step` must be at least 1.
pub fn step(
    gpu: &Gpu,
    params: &Tensor,
    grads: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    groups: &ParamGroups,
    s: &AdamStep,
) -> Result<Dispatch> {
    let n = params.len();
    for t in [grads, exp_avg, exp_avg_sq] {
        if t.len() != n {
            bail!(
                "Adam: {} has {} elements, the parameters {} have {n}",
                t.label,
                t.len(),
                params.label
            );
        }
    }
    if s.step == 0 {
        bail!("Adam: step numbers start at 1 (the bias corrections divide by 1 - beta^t)");
    }
    expect_u32(n, "Adam arena elements")?;
    groups.expect_len(n, "Adam")?;
    gpu.dispatch(
        &gpu.kernel("adam", "step", &[])?,
        &[
            grads,
            params,
            exp_avg,
            exp_avg_sq,
            &groups.index,
            &groups.scales,
        ],
        &step_immediates(n, s),
        grid_1d(n, 256),
    )
}

/// Plain-Rust reference in f64.
pub mod cpu {
    use super::AdamStep;
    use crate::ops::param_groups::GroupScale;

    /// One step with the scales of each element (`param_groups::cpu::per_element`); updates `w`,
    /// `m` and `v` in place.
    pub fn step(
        w: &mut [f64],
        g: &[f64],
        m: &mut [f64],
        v: &mut [f64],
        s: &AdamStep,
        scales: &[GroupScale],
    ) {
        let (b1, b2, eps) = (s.beta1, s.beta2, s.eps as f64);
        let (bc1, bc2_sqrt) = (s.bias_correction1(), s.bias_correction2_sqrt());
        for i in 0..w.len() {
            let lr = s.lr as f64 * scales[i].lr as f64;
            let wd = s.weight_decay as f64 * scales[i].decay as f64;
            let g2 = g[i] + wd * w[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g2;
            v[i] = b2 * v[i] + (1.0 - b2) * g2 * g2;
            w[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2_sqrt + eps);
        }
    }
}
