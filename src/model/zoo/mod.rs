//! The models rbnn knows, one file each: a `NAME` and a `describe(classes, in_channels)` that
//! writes the model's `Architecture` (model::arch). Adding a model is a new file here and its
//! row in `REGISTRY` (with its `ModelKind` variant); every consumer walks the description.

pub mod resnet;
pub mod resnet18;
pub mod resnet20;
pub mod resnet20_bireal;
pub mod vgg_small;

use super::arch::Architecture;
use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Resnet20,
    Resnet20Bireal,
    Resnet18,
    VggSmall,
}

/// A registered model: its name and its description (for a class count and input channels).
#[derive(Clone, Copy)]
struct Entry {
    kind: ModelKind,
    name: &'static str,
    describe: fn(usize, usize) -> Architecture,
}

const REGISTRY: [Entry; 4] = [
    Entry {
        kind: ModelKind::Resnet20,
        name: resnet20::NAME,
        describe: resnet20::describe,
    },
    Entry {
        kind: ModelKind::Resnet20Bireal,
        name: resnet20_bireal::NAME,
        describe: resnet20_bireal::describe,
    },
    Entry {
        kind: ModelKind::Resnet18,
        name: resnet18::NAME,
        describe: resnet18::describe,
    },
    Entry {
        kind: ModelKind::VggSmall,
        name: vgg_small::NAME,
        describe: vgg_small::describe,
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
