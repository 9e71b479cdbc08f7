//! resnet18_1w1a_imagenet: the official ImageNet `resnet18_1w1a` (docs/numerics.md section 7b),
//! 2 Bi-Real blocks per stage; the rest is `resnet::imagenet_resnet`. The official code names
//! it `resnet18_1w1a` like the CIFAR model, hence the suffix here.

use crate::model::arch::Architecture;

pub const NAME: &str = "resnet18_1w1a_imagenet";

pub fn describe(classes: usize, in_channels: usize) -> Architecture {
    super::resnet::imagenet_resnet(NAME, &[2, 2, 2, 2], classes, in_channels)
}
