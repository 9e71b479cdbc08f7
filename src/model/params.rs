//! A model's tensors on the GPU: trainable parameters, their gradients and momentum buffers as
//! three arenas of identical layout (so SGD is one dispatch), and the state that SGD does not
//! train (BatchNorm running statistics, the rotations R1/R2) as a fourth.

use super::spec::ModelSpec;
use crate::gpu::{Gpu, Tensor};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// A tensor read back to the host: (official name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

pub struct Params {
    pub spec: ModelSpec,
    pub trainable: Tensor,
    pub grads: Tensor,
    pub momentum: Tensor,
    pub state: Tensor,
    values: HashMap<String, Tensor>,
    grad_views: HashMap<String, Tensor>,
    momentum_views: HashMap<String, Tensor>,
    /// BatchNorm's num_batches_tracked (the same for every BatchNorm: one per training step).
    pub batches_tracked: i64,
}

impl Params {
    /// Allocates the arenas (zero-filled) for `spec`.
    pub fn new(gpu: &Gpu, spec: ModelSpec) -> Result<Params> {
        let shapes = |trainable: bool| -> Vec<(String, Vec<usize>)> {
            spec.tensors
                .iter()
                .filter(|t| t.trainable == trainable)
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect()
        };
        let (trainable, views) = gpu.arena("parameters", &shapes(true))?;
        let (grads, gviews) = gpu.arena("gradients", &shapes(true))?;
        let (momentum, mviews) = gpu.arena("momentum", &shapes(true))?;
        let (state, sviews) = gpu.arena("state", &shapes(false))?;
        let by_name = |v: Vec<Tensor>| v.into_iter().map(|t| (t.label.clone(), t)).collect();
        let mut values: HashMap<String, Tensor> = by_name(views);
        values.extend(by_name(sviews));
        Ok(Params {
            spec,
            trainable,
            grads,
            momentum,
            state,
            values,
            grad_views: by_name(gviews),
            momentum_views: by_name(mviews),
            batches_tracked: 0,
        })
    }

    /// The tensor of a parameter or buffer by its official name.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.values
            .get(name)
            .with_context(|| format!("model {} has no tensor {name}", self.spec.kind.name()))
    }

    /// The gradient of a trainable parameter.
    pub fn grad(&self, name: &str) -> Result<&Tensor> {
        self.grad_views
            .get(name)
            .with_context(|| format!("model {} has no trainable {name}", self.spec.kind.name()))
    }

    pub fn momentum_of(&self, name: &str) -> Result<&Tensor> {
        self.momentum_views
            .get(name)
            .with_context(|| format!("model {} has no trainable {name}", self.spec.kind.name()))
    }

    /// Writes values (by official name) into the arenas; every name must be known and sized right.
    pub fn upload(&self, gpu: &Gpu, values: &[(String, Vec<f32>)]) -> Result<()> {
        for (name, v) in values {
            let t = self.get(name)?;
            if v.len() != t.len() {
                bail!(
                    "tensor {name}: {} values for shape {:?} ({} expected)",
                    v.len(),
                    t.shape,
                    t.len()
                );
            }
            gpu.write(t, v);
        }
        Ok(())
    }

    pub fn upload_momentum(&self, gpu: &Gpu, values: &[(String, Vec<f32>)]) -> Result<()> {
        for (name, v) in values {
            let t = self.momentum_of(name)?;
            if v.len() != t.len() {
                bail!(
                    "momentum of {name}: {} values for shape {:?}",
                    v.len(),
                    t.shape
                );
            }
            gpu.write(t, v);
        }
        Ok(())
    }

    /// Reads every parameter and buffer (one readback per arena), in spec order.
    pub fn download(&self, gpu: &Gpu) -> Result<Vec<NamedTensor>> {
        let trainable = gpu.read_f32(&self.trainable)?;
        let state = gpu.read_f32(&self.state)?;
        Ok(self
            .spec
            .tensors
            .iter()
            .map(|s| {
                let t = &self.values[&s.name];
                let arena = if s.trainable { &trainable } else { &state };
                let start = (t.offset / 4) as usize;
                (
                    s.name.clone(),
                    s.shape.clone(),
                    arena[start..start + t.len()].to_vec(),
                )
            })
            .collect())
    }

    /// Reads an arena laid out like the trainable one (gradients or momentum), in spec order.
    fn download_like_trainable(&self, gpu: &Gpu, arena: &Tensor) -> Result<Vec<NamedTensor>> {
        let data = gpu.read_f32(arena)?;
        Ok(self
            .spec
            .tensors
            .iter()
            .filter(|s| s.trainable)
            .map(|s| {
                let t = &self.values[&s.name];
                let start = (t.offset / 4) as usize;
                (
                    s.name.clone(),
                    s.shape.clone(),
                    data[start..start + t.len()].to_vec(),
                )
            })
            .collect())
    }

    pub fn download_grads(&self, gpu: &Gpu) -> Result<Vec<NamedTensor>> {
        self.download_like_trainable(gpu, &self.grads)
    }

    pub fn download_momentum(&self, gpu: &Gpu) -> Result<Vec<NamedTensor>> {
        self.download_like_trainable(gpu, &self.momentum)
    }

    /// Names of the BatchNorm layers (for num_batches_tracked).
    pub fn batchnorm_names(&self) -> Vec<String> {
        self.spec.arch.batchnorm_names()
    }
}
