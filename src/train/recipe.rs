//! Training recipes: named sets of defaults for `rbnn train` (`--recipe`), each flag of which an
//! explicit flag overrides; the checkpoint's config records the values a run resolved to.
//!
//! - `official` (the default): the paper's recipe as the official code runs it, docs/numerics.md
//!   section 9: SGD, momentum 0.9, weight decay 1e-4 on everything, lr 0.1, batch 256, theta
//!   starting at pi/2. Right for its 400-1000 epochs; it learns slowly in a few.
//! - `fast`: the short-budget recipe of docs/numerics.md section 9.1, chosen by the measurements
//!   of the README's A/B table, for a first run on a CPU or a quick experiment of one or a few
//!   epochs: Adam at lr 5e-3 with the cosine decay applied every step, batch 16, theta starting
//!   at 0.1 (`FAST_THETA_INIT`), no weight decay (never on theta and alpha), no augmentation.

pub use crate::train::choices::Recipe;
use crate::train::choices::{OptimizerKind, ParamGroup};
use crate::train::config::{Config, LrUpdate};

/// The fast recipe's initial theta: the rotation starts at |sin 0.1| = 10% of its full
/// strength, so the latent weights get 90% of their gradient from the first step; 0 would
/// switch the rotation off for good (theta's gradient carries sign(sin theta), docs/numerics.md
/// section 2).
pub const FAST_THETA_INIT: f64 = 0.1;

impl Recipe {
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Official => "official",
            Recipe::Fast => "fast",
        }
    }

    /// The recipe's config (model, dataset and data flags as `Config::default`).
    pub fn config(self) -> Config {
        match self {
            Recipe::Official => Config::default(),
            Recipe::Fast => Config {
                recipe: Recipe::Fast,
                optimizer: OptimizerKind::Adam,
                epochs: 3,
                batch_size: 16,
                lr: 5e-3,
                lr_update: LrUpdate::Step,
                weight_decay: 0.0,
                theta_init: FAST_THETA_INIT,
                no_decay_on: vec![ParamGroup::Theta, ParamGroup::Alpha],
                augment: false,
                ..Config::default()
            },
        }
    }
}
