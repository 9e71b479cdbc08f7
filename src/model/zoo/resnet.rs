//! What the ResNets share: stages of residual blocks named as the official code names them,
//! and the CIFAR ResNets' stem and head.

use crate::model::arch::{
    BatchNorm, Block, BlockKind, Conv, ConvKind, Head, Init, Linear, Pool, Shortcut, Stem, Unit,
};

/// The body of a ResNet: `blocks[i]` blocks of `widths[i]` channels in stage i (modules
/// `layer{i+1}.{j}` with `conv1`, `bn1`, `conv2`, `bn2`); the first block of every stage after
/// the first has stride 2.
pub struct Stages<'a> {
    pub widths: &'a [usize],
    pub blocks: &'a [usize],
    pub kind: BlockKind,
    /// Initialisation of every conv weight of the blocks.
    pub conv_init: Init,
    /// Initial gamma of the blocks' BatchNorms.
    pub bn_gamma: f32,
}

impl Stages<'_> {
    /// The blocks for `cin` input channels. A block keeps its input as the shortcut when the
    /// shapes agree; otherwise `shortcut(prefix, cin, planes, stride)` gives it (`prefix` is the
    /// block's module name, `layer2.0`).
    pub fn units(
        &self,
        mut cin: usize,
        shortcut: impl Fn(&str, usize, usize, usize) -> Shortcut,
    ) -> Vec<Unit> {
        let mut units = Vec::new();
        for (stage, (&planes, &blocks)) in self.widths.iter().zip(self.blocks).enumerate() {
            for block in 0..blocks {
                let stride = if block == 0 && stage > 0 { 2 } else { 1 };
                let p = format!("layer{}.{block}", stage + 1);
                let conv = |name: &str, ci, stride| {
                    Conv::new(
                        ConvKind::Binary,
                        format!("{p}.{name}"),
                        ci,
                        planes,
                        3,
                        stride,
                        self.conv_init,
                    )
                };
                let bn = |name: &str| BatchNorm::new(format!("{p}.{name}"), planes, self.bn_gamma);
                units.push(Unit::Block(Box::new(Block {
                    kind: self.kind,
                    conv1: conv("conv1", cin, stride),
                    bn1: bn("bn1"),
                    conv2: conv("conv2", planes, 1),
                    bn2: bn("bn2"),
                    shortcut: if stride == 1 && cin == planes {
                        Shortcut::Identity
                    } else {
                        shortcut(&p, cin, planes, stride)
                    },
                })));
                cin = planes;
            }
        }
        units
    }
}

/// The CIFAR ResNets' stem: conv1 (float 3x3, stride 1) -> bn1 -> [hardtanh].
pub fn cifar_stem(
    in_channels: usize,
    width: usize,
    init: Init,
    gamma: f32,
    hardtanh: bool,
) -> Stem {
    Stem {
        conv: Conv::new(ConvKind::Float, "conv1", in_channels, width, 3, 1, init),
        bn: BatchNorm::new("bn1", width, gamma),
        hardtanh,
        pool: None,
    }
}

/// The CIFAR ResNets' head: global average pool -> bn2 (BatchNorm1d, gamma 1) -> linear.
pub fn cifar_head(features: usize, classes: usize, weight: Init, bias: Init) -> Head {
    Head::PoolNormLinear {
        pool: Pool::GlobalAverage,
        bn: BatchNorm::new("bn2", features, 1.0),
        linear: Linear {
            name: "linear".into(),
            fin: features,
            fout: classes,
            weight,
            bias,
        },
    }
}
