//! The GPU memory of training, planned without allocating: the parameters (with their gradients,
//! momentum and state), the training network at a batch, the partial last batch's and the
//! evaluation network (as `trainer::train` builds them) and the rotation update, each built on a
//! `Gpu::planner`, which runs the allocating code itself and counts its tensors. So the numbers
//! are what those buffers take on the planner's adapter and limits; the limit errors are the
//! ones a real build would give.

use crate::gpu::Gpu;
use crate::model::network::{Mode, Network};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::rbnn::rotation::RotationUpdate;
use anyhow::{Context, Result};

/// Buffer bytes of one training run's GPU state, part by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrainingMemory {
    /// Parameters, gradients, momentum and state (running statistics, R1, R2).
    pub parameters: u64,
    /// The training network at the batch: activations, gradients, layer scratch.
    pub train_step: u64,
    /// The network of the partial last batch (0 without one).
    pub tail_step: u64,
    /// The evaluation network (0 when not planned).
    pub evaluation: u64,
    /// The rotation update's buffers.
    pub rotation: u64,
}

impl TrainingMemory {
    pub fn total(&self) -> u64 {
        self.parameters + self.train_step + self.tail_step + self.evaluation + self.rotation
    }
}

/// What to plan: the model and its input, the training batch, the partial last batch (0 or 1
/// for none: one sample trains no BatchNorm) and the evaluation batch (0 for none).
#[derive(Clone, Copy, Debug)]
pub struct TrainingShape {
    pub kind: ModelKind,
    pub classes: usize,
    pub image: [usize; 3],
    pub batch: usize,
    pub tail: usize,
    pub eval_batch: usize,
}

/// Plans `shape` on `planner` (a `Gpu::planner`); errors name the tensor or limit that does not
/// fit, as a real build's would.
pub fn plan(planner: &Gpu, shape: &TrainingShape) -> Result<TrainingMemory> {
    let counted = || {
        planner
            .planned_bytes()
            .context("memory::plan needs a Gpu::planner, which allocates nothing")
    };
    let start = counted()?;
    let spec = ModelSpec::new(shape.kind, shape.classes, shape.image[0]);
    let params = Params::new(planner, spec)?;
    let mut at = counted()?;
    let part = |since: &mut u64| -> Result<u64> {
        let now = counted()?;
        Ok(now - std::mem::replace(since, now))
    };
    let parameters = at - start;
    let net = |batch, mode| Network::new(planner, &params, batch, mode, false, shape.image);
    let train = net(shape.batch, Mode::Train)
        .with_context(|| format!("training {} at batch {}", shape.kind.name(), shape.batch))?;
    let train_step = part(&mut at)?;
    if shape.tail >= 2 {
        net(shape.tail, Mode::Train)?;
    }
    let tail_step = part(&mut at)?;
    if shape.eval_batch > 0 {
        net(shape.eval_batch, Mode::Eval)?;
    }
    let evaluation = part(&mut at)?;
    let layers: Vec<_> = train.binconvs.iter().collect();
    RotationUpdate::new(planner, &layers)?;
    let rotation = part(&mut at)?;
    Ok(TrainingMemory {
        parameters,
        train_step,
        tail_step,
        evaluation,
        rotation,
    })
}
