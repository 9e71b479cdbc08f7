//! The four CIFAR models of docs/numerics.md section 7 as data: every parameter and buffer with its
//! official PyTorch state_dict name, shape and initialisation, and the layer graph the GPU network
//! is built from.

use crate::rbnn::layer::{initial_alpha, rotation_dims};
use crate::rbnn::rotation::random_orthogonal;
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::f64::consts::PI;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Resnet20,
    Resnet20Bireal,
    Resnet18,
    VggSmall,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Resnet20,
        ModelKind::Resnet20Bireal,
        ModelKind::Resnet18,
        ModelKind::VggSmall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Resnet20 => "resnet20_1w1a",
            ModelKind::Resnet20Bireal => "resnet20_bireal_1w1a",
            ModelKind::Resnet18 => "resnet18_1w1a",
            ModelKind::VggSmall => "vgg_small_1w1a",
        }
    }

    pub fn parse(name: &str) -> Result<ModelKind> {
        for k in Self::ALL {
            if k.name() == name {
                return Ok(k);
            }
        }
        bail!(
            "unknown model {name:?}; models: {}",
            Self::ALL.map(|k| k.name()).join(", ")
        )
    }
}

/// How a tensor is initialised and whether SGD trains it.
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
    /// Trained by SGD (parameters) or state only (running stats, R1/R2).
    pub trainable: bool,
}

/// One node of a model graph, in forward order. Tensor names are the module prefixes.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// Float conv (no bias).
    Conv {
        name: String,
        ci: usize,
        co: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// RBNN binary conv (no bias).
    BinConv {
        name: String,
        ci: usize,
        co: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    BatchNorm2d {
        name: String,
        c: usize,
    },
    BatchNorm1d {
        name: String,
        c: usize,
    },
    Linear {
        name: String,
        fin: usize,
        fout: usize,
    },
}

/// Everything a model is made of, in state_dict order.
pub struct ModelSpec {
    pub kind: ModelKind,
    pub classes: usize,
    pub in_channels: usize,
    pub tensors: Vec<TensorSpec>,
}

fn t(name: String, shape: Vec<usize>, init: Init, trainable: bool) -> TensorSpec {
    TensorSpec {
        name,
        shape,
        init,
        trainable,
    }
}

impl ModelSpec {
    pub fn new(kind: ModelKind, classes: usize, in_channels: usize) -> ModelSpec {
        let mut s = ModelSpec {
            kind,
            classes,
            in_channels,
            tensors: Vec::new(),
        };
        let bn2d_gamma = match kind {
            ModelKind::Resnet20 | ModelKind::Resnet20Bireal => 1e-8,
            _ => 1.0,
        };
        let conv_init = match kind {
            ModelKind::Resnet20 | ModelKind::Resnet20Bireal => Init::KaimingNormal,
            ModelKind::Resnet18 => Init::DefaultUniform,
            ModelKind::VggSmall => Init::Normal(0.0), // std set per layer below
        };
        for node in s.graph_nodes() {
            let is_bn2d = matches!(node, Node::BatchNorm2d { .. });
            match node {
                Node::Conv {
                    name, ci, co, k, ..
                } => {
                    let init = match conv_init {
                        Init::Normal(_) => Init::Normal((2.0 / (k * k * co) as f64).sqrt()),
                        other => other,
                    };
                    s.tensors
                        .push(t(format!("{name}.weight"), vec![co, ci, k, k], init, true));
                }
                Node::BinConv {
                    name, ci, co, k, ..
                } => {
                    let init = match conv_init {
                        Init::Normal(_) => Init::Normal((2.0 / (k * k * co) as f64).sqrt()),
                        other => other,
                    };
                    let (a, b) = rotation_dims(ci * k * k);
                    s.tensors
                        .push(t(format!("{name}.weight"), vec![co, ci, k, k], init, true));
                    s.tensors
                        .push(t(format!("{name}.R1"), vec![a, a], Init::Orthogonal, false));
                    s.tensors
                        .push(t(format!("{name}.R2"), vec![b, b], Init::Orthogonal, false));
                    s.tensors.push(t(
                        format!("{name}.alpha"),
                        vec![co, 1, 1],
                        Init::AlphaFromDefaultInit,
                        true,
                    ));
                    s.tensors.push(t(
                        format!("{name}.rotate"),
                        vec![co, 1, 1, 1],
                        Init::Const((PI / 2.0) as f32),
                        true,
                    ));
                }
                Node::BatchNorm2d { name, c } | Node::BatchNorm1d { name, c } => {
                    let gamma = if is_bn2d { bn2d_gamma } else { 1.0 };
                    s.tensors.push(t(
                        format!("{name}.weight"),
                        vec![c],
                        Init::Const(gamma),
                        true,
                    ));
                    s.tensors
                        .push(t(format!("{name}.bias"), vec![c], Init::Const(0.0), true));
                    s.tensors.push(t(
                        format!("{name}.running_mean"),
                        vec![c],
                        Init::Const(0.0),
                        false,
                    ));
                    s.tensors.push(t(
                        format!("{name}.running_var"),
                        vec![c],
                        Init::Const(1.0),
                        false,
                    ));
                }
                Node::Linear { name, fin, fout } => {
                    let (w, b) = match kind {
                        ModelKind::VggSmall => (Init::Normal(0.01), Init::Const(0.0)),
                        ModelKind::Resnet18 => (Init::DefaultUniform, Init::DefaultUniform),
                        _ => (Init::KaimingNormal, Init::DefaultUniform),
                    };
                    s.tensors
                        .push(t(format!("{name}.weight"), vec![fout, fin], w, true));
                    s.tensors
                        .push(t(format!("{name}.bias"), vec![fout], b, true));
                }
            }
        }
        s
    }

    /// The parameterised nodes in forward order (the graph's wiring lives in model::network).
    pub fn graph_nodes(&self) -> Vec<Node> {
        let conv = |name: &str, ci, co, k, stride, pad| Node::Conv {
            name: name.into(),
            ci,
            co,
            k,
            stride,
            pad,
        };
        let bconv = |name: String, ci, co, k, stride, pad| Node::BinConv {
            name,
            ci,
            co,
            k,
            stride,
            pad,
        };
        let bn = |name: String, c| Node::BatchNorm2d { name, c };
        let mut nodes = Vec::new();
        let classes = self.classes;
        match self.kind {
            ModelKind::Resnet20 | ModelKind::Resnet20Bireal | ModelKind::Resnet18 => {
                let (widths, blocks, stem) = if self.kind == ModelKind::Resnet18 {
                    (vec![64, 128, 256, 512], 2, 64)
                } else {
                    (vec![16, 32, 64], 3, 16)
                };
                nodes.push(conv("conv1", self.in_channels, stem, 3, 1, 1));
                nodes.push(bn("bn1".into(), stem));
                let mut cin = stem;
                for (stage, &planes) in widths.iter().enumerate() {
                    for block in 0..blocks {
                        let stride = if block == 0 && stage > 0 { 2 } else { 1 };
                        let p = format!("layer{}.{}", stage + 1, block);
                        nodes.push(bconv(format!("{p}.conv1"), cin, planes, 3, stride, 1));
                        nodes.push(bn(format!("{p}.bn1"), planes));
                        nodes.push(bconv(format!("{p}.conv2"), planes, planes, 3, 1, 1));
                        nodes.push(bn(format!("{p}.bn2"), planes));
                        if self.kind == ModelKind::Resnet18 && (stride != 1 || cin != planes) {
                            nodes.push(bconv(format!("{p}.shortcut.0"), cin, planes, 1, stride, 0));
                            nodes.push(bn(format!("{p}.shortcut.1"), planes));
                        }
                        cin = planes;
                    }
                }
                nodes.push(Node::BatchNorm1d {
                    name: "bn2".into(),
                    c: cin,
                });
                nodes.push(Node::Linear {
                    name: "linear".into(),
                    fin: cin,
                    fout: classes,
                });
            }
            ModelKind::VggSmall => {
                nodes.push(conv("conv0", self.in_channels, 128, 3, 1, 1));
                nodes.push(bn("bn0".into(), 128));
                let chans = [128, 128, 256, 256, 512, 512];
                for i in 1..6 {
                    nodes.push(bconv(format!("conv{i}"), chans[i - 1], chans[i], 3, 1, 1));
                    nodes.push(bn(format!("bn{i}"), chans[i]));
                }
                nodes.push(Node::Linear {
                    name: "fc".into(),
                    fin: 512 * 4 * 4,
                    fout: classes,
                });
            }
        }
        nodes
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
