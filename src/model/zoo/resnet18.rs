//! resnet18_1w1a for CIFAR (docs/numerics.md section 7): conv1 (float 3x3, 64) -> bn1, no
//! activation; four stages of 2 basic blocks with 64, 128, 256 and 512 channels, where the shape
//! changes a binary 1x1 conv with the block's stride + BatchNorm as the shortcut (`shortcut.0`,
//! `shortcut.1`); average pool (the official avg_pool2d(out, 4) on the 4x4 map: the global
//! average) -> bn2 (BatchNorm1d) -> linear. PyTorch's default initialisation.

use super::resnet::{cifar_head, cifar_stem, Stages};
use crate::model::arch::{Architecture, BatchNorm, BlockKind, Conv, ConvKind, Init, Shortcut};

pub const NAME: &str = "resnet18_1w1a";

pub fn describe(classes: usize, in_channels: usize) -> Architecture {
    let init = Init::DefaultUniform;
    let stages = Stages {
        widths: &[64, 128, 256, 512],
        blocks: &[2, 2, 2, 2],
        kind: BlockKind::Basic,
        conv_init: init,
        bn_gamma: 1.0,
    };
    let shortcut = |p: &str, cin, planes, stride| Shortcut::Projection {
        conv: Conv::new(
            ConvKind::Binary,
            format!("{p}.shortcut.0"),
            cin,
            planes,
            1,
            stride,
            init,
        ),
        bn: BatchNorm::new(format!("{p}.shortcut.1"), planes, 1.0),
    };
    Architecture {
        name: NAME,
        stem: cifar_stem(in_channels, 64, init, 1.0, false),
        body: stages.units(64, shortcut),
        head: cifar_head(512, classes, init, init),
        unused: Vec::new(),
    }
}
