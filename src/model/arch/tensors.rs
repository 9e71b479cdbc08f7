//! The state_dict of a description: every parameter and buffer with its official name, shape,
//! initialisation and whether SGD trains it.

use super::{Architecture, Layer};
use crate::rbnn::rotation_dims;
use std::f64::consts::PI;

/// How a tensor is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// kaiming_normal_ (fan_in, gain sqrt(2)): N(0, 2/fan_in).
    KaimingNormal,
    /// N(0, std^2).
    Normal(f64),
    /// PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform a=sqrt(5)).
    DefaultUniform,
    Const(f32),
    /// The binary conv's alpha: mean |W_o| of a PyTorch default-initialised weight of this layer.
    AlphaFromDefaultInit,
    /// A random orthogonal (Haar) matrix.
    Orthogonal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// Trained by SGD (parameters) or state only (running stats, R1/R2, unused modules).
    pub trainable: bool,
}

fn t(name: String, shape: Vec<usize>, init: Init, trainable: bool) -> TensorSpec {
    TensorSpec {
        name,
        shape,
        init,
        trainable,
    }
}

/// The tensors of one layer, in state_dict order; `used` is false for the unused modules, whose
/// parameters SGD must leave alone.
fn layer_tensors(layer: &Layer, used: bool) -> Vec<TensorSpec> {
    match layer {
        Layer::Conv(c) => {
            let weight = t(
                format!("{}.weight", c.name),
                vec![c.co, c.ci, c.k, c.k],
                c.init,
                used,
            );
            if !c.is_binary() {
                return vec![weight];
            }
            let (a, b) = rotation_dims(c.ci * c.k * c.k);
            let name = &c.name;
            vec![
                weight,
                t(format!("{name}.R1"), vec![a, a], Init::Orthogonal, false),
                t(format!("{name}.R2"), vec![b, b], Init::Orthogonal, false),
                t(
                    format!("{name}.alpha"),
                    vec![c.co, 1, 1],
                    Init::AlphaFromDefaultInit,
                    used,
                ),
                t(
                    format!("{name}.rotate"),
                    vec![c.co, 1, 1, 1],
                    Init::Const((PI / 2.0) as f32),
                    used,
                ),
            ]
        }
        Layer::BatchNorm(bn) => {
            let (name, c) = (&bn.name, bn.c);
            vec![
                t(
                    format!("{name}.weight"),
                    vec![c],
                    Init::Const(bn.gamma),
                    used,
                ),
                t(format!("{name}.bias"), vec![c], Init::Const(0.0), used),
                t(
                    format!("{name}.running_mean"),
                    vec![c],
                    Init::Const(0.0),
                    false,
                ),
                t(
                    format!("{name}.running_var"),
                    vec![c],
                    Init::Const(1.0),
                    false,
                ),
            ]
        }
        Layer::Linear(l) => vec![
            t(
                format!("{}.weight", l.name),
                vec![l.fout, l.fin],
                l.weight,
                used,
            ),
            t(format!("{}.bias", l.name), vec![l.fout], l.bias, used),
        ],
    }
}

impl Architecture {
    /// Every tensor of the official state_dict (BatchNorm's num_batches_tracked aside), in its
    /// order: the layers the forward uses, then the unused modules.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let used = self.layers().into_iter().map(|l| (l, true));
        let unused = self.unused.iter().map(|l| (l.clone(), false));
        used.chain(unused)
            .flat_map(|(l, used)| layer_tensors(&l, used))
            .collect()
    }
}
