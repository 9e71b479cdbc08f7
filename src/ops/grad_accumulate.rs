//! Gradient accumulation over the micro-batches of one optimizer step (shaders/grad_accumulate.wgsl):
//! the running sum of the gradient arena in a second arena, added in micro-batch order and scaled
//! once, exactly as the sum over ranks (src/distributed/reduce.rs) adds and scales.

use super::shape::expect_u32;
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

/// What a micro-batch's dispatch does with the gradient its backward just wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// acc = grad (the first micro-batch).
    Store,
    /// acc = acc + grad (the ones between).
    Add,
    /// grad = (acc + grad) * scale (the last: the arena now holds the step's gradient).
    Finish,
}

/// The dispatch of `what` over `grad` and `acc` (same length); `scale` is used by Finish.
pub fn dispatch(
    gpu: &Gpu,
    what: Accumulate,
    grad: &Tensor,
    acc: &Tensor,
    scale: f32,
) -> Result<Dispatch> {
    if grad.len() != acc.len() {
        bail!(
            "gradient accumulation: {} ({}) and {} ({}) must have the same length",
            grad.label,
            grad.len(),
            acc.label,
            acc.len()
        );
    }
    let n = expect_u32(grad.len(), "accumulated gradient elements")?;
    let entry = match what {
        Accumulate::Store => "store",
        Accumulate::Add => "add",
        Accumulate::Finish => "finish",
    };
    gpu.dispatch(
        &gpu.kernel("grad_accumulate", entry, &[])?,
        &[grad, acc],
        Imm::new().u(n).f(scale).bytes(),
        grid_1d(grad.len(), 256),
    )
}

/// Plain-Rust reference.
pub mod cpu {
    /// The gradient after micro-batches with gradients `grads` (in order): their f32 sum in
    /// order, scaled once; the same expression as `distributed::reduce::reference`.
    pub fn accumulate(grads: &[Vec<f32>], scale: f32) -> Vec<f32> {
        crate::distributed::reduce::reference(grads, scale)
    }
}
