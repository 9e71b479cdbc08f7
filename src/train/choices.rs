//! The choices a run's config names, as plain values: the recipe, the optimizer and the
//! parameter groups. Their behaviour lives with what uses them (`train::recipe`,
//! `train::optimizer`); this leaf module lets `train::config` hold them without importing those.

use serde::{Deserialize, Serialize};

/// `--recipe`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// The official recipe (docs/numerics.md section 9).
    #[default]
    Official,
    /// The short-budget recipe (docs/numerics.md section 9.1).
    Fast,
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum (the official recipe).
    Sgd,
    /// Adam (torch.optim.Adam: L2 weight decay on the gradient).
    Adam,
}

/// The parameter groups whose learning rate and weight decay can be set apart (`--no-decay-on`,
/// `--theta-lr-scale`, `--alpha-lr-scale`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ParamGroup {
    /// Everything else: conv and linear weights, the linear bias.
    Weights,
    /// The rotation gates of the binary convs (`<conv>.rotate`).
    Theta,
    /// The scales of the binary convs (`<conv>.alpha`).
    Alpha,
    /// BatchNorm's gamma and beta.
    Bn,
}
