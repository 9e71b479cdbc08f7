//! resnet20_1w1a (docs/numerics.md section 7): conv1 (float 3x3, 16) -> bn1 -> hardtanh; three
//! stages of 3 basic blocks with 16, 32 and 64 channels, the option-A shortcut where the shape
//! changes; global average pool -> bn2 (BatchNorm1d) -> linear. Every conv and the linear weight
//! kaiming_normal, BatchNorm2d gamma 1e-8 (sic).

use super::resnet::{cifar_head, cifar_stem, Stages};
use crate::model::arch::{Architecture, BlockKind, Init, Shortcut};

pub const NAME: &str = "resnet20_1w1a";

pub fn describe(classes: usize, in_channels: usize) -> Architecture {
    with_blocks(NAME, BlockKind::Basic, classes, in_channels)
}

/// resnet20's layout with blocks of `kind` (resnet20_bireal_1w1a shares all the rest).
pub fn with_blocks(
    name: &'static str,
    kind: BlockKind,
    classes: usize,
    in_channels: usize,
) -> Architecture {
    let stages = Stages {
        widths: &[16, 32, 64],
        blocks: &[3, 3, 3],
        kind,
        conv_init: Init::KaimingNormal,
        bn_gamma: 1e-8,
    };
    Architecture {
        name,
        stem: cifar_stem(in_channels, 16, Init::KaimingNormal, 1e-8, true),
        body: stages.units(16, |_, _, _, _| Shortcut::OptionA),
        head: cifar_head(64, classes, Init::KaimingNormal, Init::DefaultUniform),
        unused: Vec::new(),
    }
}
