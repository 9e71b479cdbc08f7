//! The training configuration. Its defaults are the official recipe (docs/numerics.md section
//! 9); `train::recipe` holds the short-budget one. The whole struct, with every value resolved,
//! is saved as JSON in every checkpoint's metadata so a resumed run (and a reader of the
//! checkpoint) knows exactly how it was trained.

pub use crate::train::choices::{OptimizerKind, ParamGroup, Recipe};
pub use crate::train::lr::{LrType, LrUpdate};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

/// The dataset used when none is named: the small Fashion-MNIST subset embedded in the binary, so
/// a first run needs no download.
pub const DEFAULT_DATASET: &str = "fashion-mnist-subset";

/// Everything that determines a training run (the output folder and `--resume` are not part of
/// it: they say where, not how).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// Fields missing from an older checkpoint's config take their defaults.
#[serde(default)]
pub struct Config {
    pub model: String,
    pub dataset: String,
    /// Folder of the dataset files; None for the embedded dataset or the dataset's usual place.
    pub data_path: Option<String>,
    pub epochs: usize,
    pub lr: f64,
    /// Samples per optimizer step: the global batch, split over the ranks of a data-parallel run
    /// and the micro-batches of `accumulate`.
    pub batch_size: usize,
    pub batch_size_test: usize,
    pub weight_decay: f64,
    pub momentum: f64,
    /// Tmin and Tmax of the t/k schedule of the sign approximation (docs/numerics.md section 4).
    pub tmin: f64,
    pub tmax: f64,
    pub lr_type: LrType,
    /// Whether the learning rate changes every epoch (official) or every step.
    pub lr_update: LrUpdate,
    /// Milestone epochs of the step schedule.
    pub lr_decay_step: Vec<usize>,
    pub warm_up: bool,
    /// Run the rotation update at epochs e with e % rotation_update == 0.
    pub rotation_update: usize,
    /// Keep activations full precision (1-bit weights, 32-bit activations).
    pub a32: bool,
    pub seed: u64,
    /// Train on the first N training images only (short runs and tests); None: all.
    pub max_train_images: Option<usize>,
    /// Evaluate on the first N test images only; None: all.
    pub max_test_images: Option<usize>,
    /// Micro-batches per optimizer step on each rank (`--accumulate`): their gradients are summed
    /// in order and averaged, each with BatchNorm statistics of its own.
    pub accumulate: usize,
    /// Ranks of the data-parallel run (MPI) that trained it: set by the trainer, not a flag. A
    /// resumed run may use another count; BatchNorm statistics are per rank.
    pub ranks: usize,
    /// Threads decoding a streamed dataset (ImageNet); 0: one per core. The batches do not
    /// depend on it.
    pub data_threads: usize,
    /// The recipe the defaults came from (the values below are what the run used).
    pub recipe: Recipe,
    /// SGD (the official recipe: `momentum`, `weight_decay`) or Adam (`adam_beta1`,
    /// `adam_beta2`, `adam_eps`, `weight_decay` as L2 on the gradient).
    pub optimizer: OptimizerKind,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// The rotation gate theta of every binary conv at initialisation (official: pi/2).
    pub theta_init: f64,
    /// The learning rate of theta and of alpha as multiples of `lr`.
    pub theta_lr_scale: f64,
    pub alpha_lr_scale: f64,
    /// Parameter groups trained without weight decay (official: none).
    pub no_decay_on: Vec<ParamGroup>,
    /// The initial gamma of every BatchNorm2d; None: the model's own (docs/numerics.md section
    /// 7: 1e-8 for the resnet20 models, 1 for the others).
    pub bn_gamma_init: Option<f64>,
    /// Random crops and flips of the training images (docs/numerics.md section 11); off, the
    /// training images are seen as they are.
    pub augment: bool,
    /// Wall-clock seconds the training may take (`--time-budget`); None: no limit. The trainer
    /// then plans the run's length from its own measured rate (`replans`) and stops at the
    /// budget at the latest. Absent from the JSON of a run without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_budget: Option<f64>,
    /// How the run's length was planned, in order: each entry says that from optimizer step
    /// `at_step` on the run was planned to `planned_steps` steps in all, and the schedules' clock
    /// (`schedule_position`) spreads what is left of its `epochs` epochs over the steps left, so
    /// the learning rate and t/k schedules end where the run ends without a jump. Set by the
    /// trainer from `time_budget` (not a flag) and recorded in the checkpoint and metrics.jsonl;
    /// empty (and absent from the JSON): `epochs` full epochs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replans: Vec<Replan>,
}

/// One planning of a time-budgeted run's length (`Config::replans`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replan {
    /// Optimizer steps done when it was planned (the first step it applies to, 0-based).
    pub at_step: usize,
    /// Optimizer steps of the whole run from then on.
    pub planned_steps: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: "resnet20_1w1a".into(),
            dataset: DEFAULT_DATASET.into(),
            data_path: None,
            epochs: 1000,
            lr: 0.1,
            batch_size: 256,
            batch_size_test: 128,
            weight_decay: 1e-4,
            momentum: 0.9,
            tmin: 1e-2,
            tmax: 10.0,
            lr_type: LrType::Cos,
            lr_update: LrUpdate::Epoch,
            lr_decay_step: Vec::new(),
            warm_up: false,
            rotation_update: 1,
            a32: false,
            seed: 1234,
            max_train_images: None,
            max_test_images: None,
            accumulate: 1,
            ranks: 1,
            data_threads: 0,
            recipe: Recipe::Official,
            optimizer: OptimizerKind::Sgd,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            theta_init: FRAC_PI_2,
            theta_lr_scale: 1.0,
            alpha_lr_scale: 1.0,
            no_decay_on: Vec::new(),
            bn_gamma_init: None,
            augment: true,
            time_budget: None,
            replans: Vec::new(),
        }
    }
}

impl Config {
    /// Rejects values the trainer cannot run with, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if self.batch_size == 0 || self.batch_size_test == 0 {
            bail!("--batch-size and --batch-size-test must be at least 1");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be >= 0, got {}", self.weight_decay);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum must be in [0, 1), got {}", self.momentum);
        }
        if !(self.tmin > 0.0 && self.tmax.is_finite() && self.tmin < self.tmax) {
            bail!(
                "need 0 < --tmin < --tmax, got tmin {} and tmax {}",
                self.tmin,
                self.tmax
            );
        }
        if self.accumulate == 0 {
            bail!("--accumulate must be at least 1 (1 = one batch per optimizer step)");
        }
        if self.rotation_update == 0 {
            bail!("--rotation-update must be at least 1 (1 = every epoch)");
        }
        for (flag, beta) in [
            ("--adam-beta1", self.adam_beta1),
            ("--adam-beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                bail!("{flag} must be in [0, 1), got {beta}");
            }
        }
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            bail!(
                "--adam-eps must be a positive number, got {}",
                self.adam_eps
            );
        }
        if !self.theta_init.is_finite() {
            bail!(
                "--theta-init must be a finite angle in radians, got {}",
                self.theta_init
            );
        }
        if let Some(g) = self.bn_gamma_init {
            if !g.is_finite() {
                bail!("--bn-gamma-init must be a finite number, got {g}");
            }
        }
        for (flag, scale) in [
            ("--theta-lr-scale", self.theta_lr_scale),
            ("--alpha-lr-scale", self.alpha_lr_scale),
        ] {
            if !(scale.is_finite() && scale >= 0.0) {
                bail!("{flag} must be a number >= 0, got {scale}");
            }
        }
        if let Some(seconds) = self.time_budget {
            if !(seconds.is_finite() && seconds > 0.0) {
                bail!("--time-budget must be a positive number of seconds, got {seconds}");
            }
        }
        let mut at = 0;
        for r in &self.replans {
            if r.at_step < at || r.planned_steps < r.at_step.max(1) {
                bail!(
                    "replans must be in step order, each planning at least the steps done and \
                     one step in all, got {:?}",
                    self.replans
                );
            }
            at = r.at_step;
        }
        if self.lr_type == LrType::Step {
            if self.lr_decay_step.is_empty() {
                bail!("--lr-type step needs --lr-decay-step, e.g. --lr-decay-step 30,60,90");
            }
            if self.lr_decay_step.windows(2).any(|w| w[0] >= w[1]) {
                bail!(
                    "--lr-decay-step must be increasing, got {:?}",
                    self.lr_decay_step
                );
            }
        }
        Ok(())
    }

    /// The learning rate of `epoch` (0-based) under this config's schedule.
    pub fn learning_rate(&self, epoch: usize) -> f64 {
        crate::train::lr::learning_rate(
            self.lr,
            epoch,
            self.epochs,
            self.lr_type,
            &self.lr_decay_step,
            self.warm_up,
        )
    }

    /// The learning rate of step `step` of `steps` in `epoch`: the epoch's rate, or with
    /// `lr_update` Step the closed form at the fractional epoch. With `replans`, both on the
    /// planned clock of `schedule_position`.
    pub fn step_learning_rate(&self, epoch: usize, step: usize, steps: usize) -> f64 {
        if !self.replans.is_empty() {
            let position = self.schedule_position(epoch, step, steps);
            return match self.lr_update {
                LrUpdate::Epoch => self.learning_rate(position.floor() as usize),
                LrUpdate::Step => self.learning_rate_at(position),
            };
        }
        match self.lr_update {
            LrUpdate::Epoch => self.learning_rate(epoch),
            LrUpdate::Step => {
                self.learning_rate_at(epoch as f64 + step as f64 / steps.max(1) as f64)
            }
        }
    }

    /// The run's planned optimizer steps (the last of `replans`); None for whole epochs.
    pub fn planned_steps(&self) -> Option<usize> {
        self.replans.last().map(|r| r.planned_steps)
    }

    /// Where step `step` of `steps` in `epoch` stands on the schedules' clock, in epochs of
    /// `self.epochs`: e + s/S; with `replans`, piecewise linear in the run's step n = e*S + s:
    /// from each re-plan's `at_step` on, the clock goes from where it stood to `epochs` at its
    /// `planned_steps` (before the first, at the unplanned pace of S steps per epoch).
    pub fn schedule_position(&self, epoch: usize, step: usize, steps: usize) -> f64 {
        let n = (epoch * steps + step) as f64;
        let end = self.epochs as f64;
        // The current piece: its first step, the clock there, and its last step.
        let (mut from, mut at, mut until) = (0.0, 0.0, end * steps.max(1) as f64);
        let along = |from: f64, at: f64, until: f64, n: f64| match until > from {
            true => at + (end - at) * (n - from) / (until - from),
            false => end,
        };
        for r in self.replans.iter().take_while(|r| r.at_step as f64 <= n) {
            at = along(from, at, until, r.at_step as f64);
            from = r.at_step as f64;
            until = r.planned_steps as f64;
        }
        along(from, at, until, n)
    }

    /// The epoch of the t/k schedule for training epoch `epoch` of `steps` steps: itself, or
    /// with `replans` the clock's epoch at its first step (never past the last).
    pub fn schedule_epoch(&self, epoch: usize, steps: usize) -> usize {
        match self.replans.is_empty() {
            false => (self.schedule_position(epoch, 0, steps).floor() as usize)
                .min(self.epochs.saturating_sub(1)),
            true => epoch,
        }
    }

    fn learning_rate_at(&self, position: f64) -> f64 {
        crate::train::lr::learning_rate_at(
            self.lr,
            position,
            self.epochs,
            self.lr_type,
            &self.lr_decay_step,
            self.warm_up,
        )
    }

    /// The JSON stored in checkpoint metadata under "config".
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Config always serialises")
    }

    /// Parses the JSON written by `to_json`; `source` names where it came from for the error.
    pub fn from_json(json: &str, source: &str) -> Result<Config> {
        serde_json::from_str(json)
            .with_context(|| format!("{source}: invalid training config JSON"))
    }
}
