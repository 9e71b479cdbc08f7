//! resnet34_1w1a_imagenet: the official ImageNet `resnet34_1w1a` (docs/numerics.md section 7b),
//! 3, 4, 6 and 3 Bi-Real blocks per stage; the rest is `resnet::imagenet_resnet`.

use crate::model::arch::Architecture;

pub const NAME: &str = "resnet34_1w1a_imagenet";

pub fn describe(classes: usize, in_channels: usize) -> Architecture {
    super::resnet::imagenet_resnet(NAME, &[3, 4, 6, 3], classes, in_channels)
}
