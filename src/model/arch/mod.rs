//! The architecture description: what a model is made of, written once per model (one file in
//! src/model/zoo/) and walked by every consumer: the state_dict layout and initialisation
//! (`tensors`), the shapes and their checks (`trace`), the training graph (model::network), the
//! packed engine (infer::engine), export and the packed file's tensor list (infer::export,
//! infer::model), `rbnn step` and the checkpoints.
//!
//! A model is a float stem, a body of units in forward order (residual blocks, or plain
//! conv -> [pool] -> BatchNorm -> hardtanh units), a head, and the modules the official model
//! owns but its forward never uses (their tensors are in the official state_dict, so they are in
//! ours). Every layer carries its official PyTorch module name, its shapes and its
//! initialisation. What each kind of block, shortcut, pool and head computes is written in its
//! doc comment here; the consumers implement exactly that.

pub mod tensors;
pub mod trace;

pub use tensors::{Init, TensorSpec};
pub use trace::{ConvTrace, Trace};

use crate::ops::conv::ConvShape;
use std::fmt;

/// A conv's weights: the RBNN layer of docs/numerics.md sections 1-2 (tensors weight, R1, R2,
/// alpha, rotate) or full precision (weight only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    Binary,
    Float,
}

/// A convolution without bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub kind: ConvKind,
    /// The module name: its tensors are `{name}.weight`, `{name}.R1`, ...
    pub name: String,
    pub ci: usize,
    pub co: usize,
    /// Square kernel side.
    pub k: usize,
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// The weight's initialisation.
    pub init: Init,
}

impl Conv {
    /// A k x k conv with padding k/2 (every conv of the official models pads so).
    pub fn new(
        kind: ConvKind,
        name: impl Into<String>,
        ci: usize,
        co: usize,
        k: usize,
        stride: usize,
        init: Init,
    ) -> Conv {
        Conv {
            kind,
            name: name.into(),
            ci,
            co,
            k,
            stride,
            pad: k / 2,
            init,
        }
    }

    pub fn is_binary(&self) -> bool {
        self.kind == ConvKind::Binary
    }

    /// Output side for an input side, or None when the input is smaller than the kernel.
    pub fn output_size(&self, size: usize) -> Option<usize> {
        window_output(size, self.k, self.stride, self.pad)
    }

    /// The kernels' shape of this conv on an input [N, Ci, H, W].
    pub fn shape(&self, [n, ci, h, w]: [usize; 4]) -> ConvShape {
        ConvShape {
            n,
            ci,
            h,
            w,
            co: self.co,
            kh: self.k,
            kw: self.k,
            stride: self.stride,
            pad: self.pad,
        }
    }
}

/// (size + 2 pad - k) / stride + 1 (floor, as PyTorch), or None when the window does not fit.
fn window_output(size: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (size + 2 * pad)
        .checked_sub(k)
        .filter(|_| stride > 0)
        .map(|d| d / stride + 1)
}

/// BatchNorm (eps 1e-5, momentum 0.1): 2d after a conv, 1d in a head. Beta starts at 0, the
/// running mean at 0 and the running variance at 1.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub name: String,
    pub c: usize,
    /// The initial gamma (`{name}.weight`).
    pub gamma: f32,
}

impl BatchNorm {
    pub fn new(name: impl Into<String>, c: usize, gamma: f32) -> BatchNorm {
        BatchNorm {
            name: name.into(),
            c,
            gamma,
        }
    }
}

/// A fully connected layer with bias: [N, fin] -> [N, fout].
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub name: String,
    pub fin: usize,
    pub fout: usize,
    pub weight: Init,
    pub bias: Init,
}

/// A pooling layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// The maximum of each kernel x kernel window (padding never wins; the first maximum on ties,
    /// as PyTorch's MaxPool2d).
    Max {
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    /// The mean of each kernel x kernel window (AvgPool2d).
    Average {
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    /// The mean over the whole map: [N, C, H, W] -> [N, C].
    GlobalAverage,
}

/// vgg_small's 2x2 max pool with stride 2.
pub const MAX_POOL_2X2: Pool = Pool::Max {
    kernel: 2,
    stride: 2,
    pad: 0,
};

impl Pool {
    /// Output side for an input side, or None when the window does not fit.
    pub fn output_size(self, size: usize) -> Option<usize> {
        match self {
            Pool::Max {
                kernel,
                stride,
                pad,
            }
            | Pool::Average {
                kernel,
                stride,
                pad,
            } => window_output(size, kernel, stride, pad),
            Pool::GlobalAverage => Some(1),
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pool::Max {
                kernel,
                stride,
                pad,
            } => {
                write!(f, "max pool {kernel}x{kernel}/s{stride}/p{pad}")
            }
            Pool::Average {
                kernel,
                stride,
                pad,
            } => {
                write!(f, "average pool {kernel}x{kernel}/s{stride}/p{pad}")
            }
            Pool::GlobalAverage => write!(f, "global average pool"),
        }
    }
}

/// The first layers, on the input images: float conv -> BatchNorm -> [hardtanh] -> [pool].
/// The stem's conv takes the data, so it needs no data gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Stem {
    pub conv: Conv,
    pub bn: BatchNorm,
    pub hardtanh: bool,
    pub pool: Option<Pool>,
}

/// How a residual block wires its two convs (ht = hardtanh, sc = the shortcut).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// out = ht(bn2(conv2(ht(bn1(conv1(x))))) + sc(x)) (resnet20_1w1a, resnet18_1w1a).
    Basic,
    /// Bi-Real: a residual around each conv (resnet20_bireal_1w1a, the ImageNet ResNets):
    /// out1 = ht(bn1(conv1(x)) + sc(x)); out = ht(bn2(conv2(out1)) + out1).
    BiReal,
}

/// What a block adds to its first residual sum.
#[derive(Clone, Debug, PartialEq)]
pub enum Shortcut {
    /// x itself (same shape).
    Identity,
    /// Option A: x[:, :, ::2, ::2] with the missing channels zero-padded equally on both sides
    /// (resnet20's stride-2 blocks); no tensors.
    OptionA,
    /// bn(conv(x)): a 1x1 conv with the block's stride, binary (resnet18_1w1a's
    /// `shortcut.0/1`) or full precision (the ImageNet ResNets' `downsample.0/1`, whose float
    /// conv then needs its data gradient in training).
    Projection { conv: Conv, bn: BatchNorm },
}

/// A residual block of two binary convs, each followed by its BatchNorm.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub kind: BlockKind,
    pub conv1: Conv,
    pub bn1: BatchNorm,
    pub conv2: Conv,
    pub bn2: BatchNorm,
    pub shortcut: Shortcut,
}

/// One unit of the body, in forward order.
#[derive(Clone, Debug, PartialEq)]
pub enum Unit {
    Block(Box<Block>),
    /// conv -> [pool] -> bn -> hardtanh (vgg_small's layers).
    Plain {
        conv: Conv,
        pool: Option<Pool>,
        bn: BatchNorm,
    },
}

/// From the body's last activation to the logits.
#[derive(Clone, Debug, PartialEq)]
pub enum Head {
    /// pool to [N, C] (the pool must leave 1x1), BatchNorm1d, linear (the ResNets).
    PoolNormLinear {
        pool: Pool,
        bn: BatchNorm,
        linear: Linear,
    },
    /// flatten [N, C*H*W], linear (vgg_small).
    FlattenLinear { linear: Linear },
}

impl Head {
    /// The classifier: its `fout` is the number of classes.
    pub fn classifier(&self) -> &Linear {
        match self {
            Head::PoolNormLinear { linear, .. } | Head::FlattenLinear { linear } => linear,
        }
    }
}

/// A layer with tensors, as the state_dict lists them.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Conv(Conv),
    BatchNorm(BatchNorm),
    Linear(Linear),
}

/// A whole model.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    /// The model's name (`resnet20_1w1a`), as the command line and the files name it.
    pub name: &'static str,
    pub stem: Stem,
    pub body: Vec<Unit>,
    pub head: Head,
    /// Modules the official model owns but its forward never uses (the ImageNet ResNets' bn3):
    /// their tensors are in the state_dict and the checkpoints, SGD leaves them alone (PyTorch
    /// gives them no gradient), and nothing else reads them.
    pub unused: Vec<Layer>,
}

impl Architecture {
    /// Input channels (of the stem conv).
    pub fn in_channels(&self) -> usize {
        self.stem.conv.ci
    }

    /// Classes (outputs of the classifier).
    pub fn classes(&self) -> usize {
        self.head.classifier().fout
    }

    /// The layers the forward uses, in state_dict order (module definition order: stem, each
    /// unit with its shortcut last, head).
    pub fn layers(&self) -> Vec<Layer> {
        let mut out = vec![
            Layer::Conv(self.stem.conv.clone()),
            Layer::BatchNorm(self.stem.bn.clone()),
        ];
        for unit in &self.body {
            match unit {
                Unit::Block(b) => {
                    out.push(Layer::Conv(b.conv1.clone()));
                    out.push(Layer::BatchNorm(b.bn1.clone()));
                    out.push(Layer::Conv(b.conv2.clone()));
                    out.push(Layer::BatchNorm(b.bn2.clone()));
                    if let Shortcut::Projection { conv, bn } = &b.shortcut {
                        out.push(Layer::Conv(conv.clone()));
                        out.push(Layer::BatchNorm(bn.clone()));
                    }
                }
                Unit::Plain { conv, bn, .. } => {
                    out.push(Layer::Conv(conv.clone()));
                    out.push(Layer::BatchNorm(bn.clone()));
                }
            }
        }
        match &self.head {
            Head::PoolNormLinear { bn, linear, .. } => {
                out.push(Layer::BatchNorm(bn.clone()));
                out.push(Layer::Linear(linear.clone()));
            }
            Head::FlattenLinear { linear } => out.push(Layer::Linear(linear.clone())),
        }
        out
    }

    /// The binary convs, in forward order.
    pub fn binary_convs(&self) -> Vec<Conv> {
        self.layers()
            .into_iter()
            .filter_map(|l| match l {
                Layer::Conv(c) if c.is_binary() => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Names of every BatchNorm in the state_dict (unused ones included), in state_dict order.
    pub fn batchnorm_names(&self) -> Vec<String> {
        self.layers()
            .iter()
            .chain(&self.unused)
            .filter_map(|l| match l {
                Layer::BatchNorm(bn) => Some(bn.name.clone()),
                _ => None,
            })
            .collect()
    }
}
