//! A model's description (model::arch, written in model::zoo) for a class count and input
//! channels, with its state_dict: every parameter and buffer with its official PyTorch name,
//! shape and initialisation.

use super::arch::{Architecture, Init, TensorSpec};
use super::zoo::ModelKind;
use crate::rbnn::initial_alpha;
use crate::rbnn::rotation::random_orthogonal;
use crate::rng::Rng;

/// Everything a model is made of, in state_dict order.
pub struct ModelSpec {
    pub kind: ModelKind,
    pub classes: usize,
    pub in_channels: usize,
    /// The layers, blocks, pools and head every consumer walks.
    pub arch: Architecture,
    /// `arch.tensors()`: the state_dict without num_batches_tracked.
    pub tensors: Vec<TensorSpec>,
}

impl ModelSpec {
    pub fn new(kind: ModelKind, classes: usize, in_channels: usize) -> ModelSpec {
        let arch = kind.describe(classes, in_channels);
        ModelSpec {
            kind,
            classes,
            in_channels,
            tensors: arch.tensors(),
            arch,
        }
    }

    pub fn find(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Fresh values for every tensor, as the official model initialises them (seeded).
    pub fn initialise(&self, rng: &mut Rng) -> Vec<(String, Vec<f32>)> {
        self.tensors
            .iter()
            .map(|spec| {
                let n: usize = spec.shape.iter().product();
                let fan_in = |shape: &[usize]| shape[1..].iter().product::<usize>().max(1) as f64;
                let values = match spec.init {
                    Init::KaimingNormal => rng.normal_vec(n, (2.0 / fan_in(&spec.shape)).sqrt()),
                    Init::Normal(std) => rng.normal_vec(n, std),
                    Init::DefaultUniform => {
                        // A bias's bound uses the fan-in of its layer's weight.
                        let weight = spec.name.replace(".bias", ".weight");
                        let shape = &self.find(&weight).unwrap_or(spec).shape;
                        let bound = 1.0 / fan_in(shape).sqrt();
                        rng.uniform_vec(n, -bound, bound)
                    }
                    Init::Const(v) => vec![v; n],
                    Init::AlphaFromDefaultInit => {
                        let weight = &self
                            .find(&spec.name.replace(".alpha", ".weight"))
                            .unwrap()
                            .shape;
                        let bound = 1.0 / fan_in(weight).sqrt();
                        let default_init = rng.uniform_vec(weight.iter().product(), -bound, bound);
                        initial_alpha(&default_init, weight[0])
                    }
                    Init::Orthogonal => random_orthogonal(rng, spec.shape[0]),
                };
                (spec.name.clone(), values)
            })
            .collect()
    }
}
