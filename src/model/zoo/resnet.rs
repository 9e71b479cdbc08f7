//! What the ResNets share: stages of residual blocks named as the official code names them,
//! the CIFAR ResNets' stem and head, and the whole of the ImageNet ResNets but their depth.

use crate::model::arch::{
    Architecture, BatchNorm, Block, BlockKind, Conv, ConvKind, Head, Init, Layer, Linear, Pool,
    Shortcut, Stem, Unit,
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

/// The ImageNet ResNets (docs/numerics.md section 7b), `blocks[i]` Bi-Real blocks in stage i:
/// conv1 (float 7x7, stride 2, padding 3, 64) -> bn1 -> hardtanh -> max pool 3x3/s2/p1; four
/// stages of 64, 128, 256 and 512 channels, where the shape changes a full-precision 1x1 conv
/// with the block's stride + BatchNorm as the shortcut (`downsample.0`, `downsample.1`);
/// AvgPool2d(7, stride=1) (on the 7x7 map of a 224x224 input: the global average) -> bn2
/// (BatchNorm1d) -> fc. bn3 = BatchNorm1d(classes) is in the state_dict, unused. Every conv
/// kaiming_normal, every BatchNorm2d gamma 1e-8; bn2, bn3 and fc PyTorch's defaults.
pub fn imagenet_resnet(
    name: &'static str,
    blocks: &[usize],
    classes: usize,
    in_channels: usize,
) -> Architecture {
    let (init, gamma) = (Init::KaimingNormal, 1e-8);
    let stages = Stages {
        widths: &[64, 128, 256, 512],
        blocks,
        kind: BlockKind::BiReal,
        conv_init: init,
        bn_gamma: gamma,
    };
    let downsample = |p: &str, cin, planes, stride| Shortcut::Projection {
        conv: Conv::new(
            ConvKind::Float,
            format!("{p}.downsample.0"),
            cin,
            planes,
            1,
            stride,
            init,
        ),
        bn: BatchNorm::new(format!("{p}.downsample.1"), planes, gamma),
    };
    let conv1 = Conv {
        pad: 3,
        ..Conv::new(ConvKind::Float, "conv1", in_channels, 64, 7, 2, init)
    };
    Architecture {
        name,
        stem: Stem {
            conv: conv1,
            bn: BatchNorm::new("bn1", 64, gamma),
            hardtanh: true,
            pool: Some(Pool::Max {
                kernel: 3,
                stride: 2,
                pad: 1,
            }),
        },
        body: stages.units(64, downsample),
        head: Head::PoolNormLinear {
            pool: Pool::Average {
                kernel: 7,
                stride: 1,
                pad: 0,
            },
            bn: BatchNorm::new("bn2", 512, 1.0),
            linear: Linear {
                name: "fc".into(),
                fin: 512,
                fout: classes,
                weight: Init::DefaultUniform,
                bias: Init::DefaultUniform,
            },
        },
        unused: vec![Layer::BatchNorm(BatchNorm::new("bn3", classes, 1.0))],
    }
}
