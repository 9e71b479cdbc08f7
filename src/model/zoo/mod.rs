//! The models rbnn knows, one file each: a `NAME` and a `describe(classes, in_channels)` that
//! writes the model's `Architecture` (model::arch). Adding a model is a new file here and its
//! row in `REGISTRY` (with its `ModelKind` variant); every consumer walks the description.

pub mod resnet;
pub mod resnet18;
pub mod resnet18_imagenet;
pub mod resnet20;
pub mod resnet20_bireal;
pub mod resnet34_imagenet;
pub mod vgg_small;

use super::arch::Architecture;
use crate::data::DatasetKind;
use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Resnet20,
    Resnet20Bireal,
    Resnet18,
    VggSmall,
    Resnet18Imagenet,
    Resnet34Imagenet,
}

/// A registered model: its name and its description (for a class count and input channels).
#[derive(Clone, Copy)]
struct Entry {
    kind: ModelKind,
    name: &'static str,
    describe: fn(usize, usize) -> Architecture,
    /// The dataset the official code trains it on (data::DatasetKind's name) and its class
    /// count, used where no dataset is given (benchmarks, tests).
    native: (&'static str, usize),
}

const REGISTRY: [Entry; 6] = [
    Entry {
        kind: ModelKind::Resnet20,
        name: resnet20::NAME,
        describe: resnet20::describe,
        native: ("cifar10", 10),
    },
    Entry {
        kind: ModelKind::Resnet20Bireal,
        name: resnet20_bireal::NAME,
        describe: resnet20_bireal::describe,
        native: ("cifar10", 10),
    },
    Entry {
        kind: ModelKind::Resnet18,
        name: resnet18::NAME,
        describe: resnet18::describe,
        native: ("cifar10", 10),
    },
    Entry {
        kind: ModelKind::VggSmall,
        name: vgg_small::NAME,
        describe: vgg_small::describe,
        native: ("cifar10", 10),
    },
    Entry {
        kind: ModelKind::Resnet18Imagenet,
        name: resnet18_imagenet::NAME,
        describe: resnet18_imagenet::describe,
        native: ("imagenet", 1000),
    },
    Entry {
        kind: ModelKind::Resnet34Imagenet,
        name: resnet34_imagenet::NAME,
        describe: resnet34_imagenet::describe,
        native: ("imagenet", 1000),
    },
];

impl ModelKind {
    /// Every model, in registry order.
    pub const ALL: [ModelKind; REGISTRY.len()] = {
        let mut all = [ModelKind::Resnet20; REGISTRY.len()];
        let mut i = 0;
        while i < REGISTRY.len() {
            all[i] = REGISTRY[i].kind;
            i += 1;
        }
        all
    };

    fn entry(self) -> Entry {
        REGISTRY
            .into_iter()
            .find(|e| e.kind == self)
            .expect("every ModelKind has its REGISTRY row")
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// The model's description for `classes` outputs and `in_channels` input channels.
    pub fn describe(self, classes: usize, in_channels: usize) -> Architecture {
        (self.entry().describe)(classes, in_channels)
    }

    /// The dataset the official code trains it on: "cifar10" or "imagenet".
    pub fn native_dataset(self) -> DatasetKind {
        self.entry()
            .native
            .0
            .parse()
            .expect("the registry names datasets DatasetKind parses")
    }

    /// The side of that dataset's square images (32 for CIFAR-10, 224 for ImageNet).
    pub fn native_input_side(self) -> usize {
        self.native_dataset().facts().size
    }

    /// The class count of that dataset (10 or 1000).
    pub fn native_classes(self) -> usize {
        self.entry().native.1
    }

    pub fn parse(name: &str) -> Result<ModelKind> {
        match REGISTRY.into_iter().find(|e| e.name == name) {
            Some(e) => Ok(e.kind),
            None => bail!(
                "unknown model {name:?}; models: {}",
                Self::ALL.map(|k| k.name()).join(", ")
            ),
        }
    }
}
