//! resnet20_bireal_1w1a (docs/numerics.md section 7): resnet20_1w1a with Bi-Real blocks (a
//! residual around each binary conv); the same stem, head and initialisation.

use crate::model::arch::{Architecture, BlockKind};

pub const NAME: &str = "resnet20_bireal_1w1a";

pub fn describe(classes: usize, in_channels: usize) -> Architecture {
    super::resnet20::with_blocks(NAME, BlockKind::BiReal, classes, in_channels)
}
