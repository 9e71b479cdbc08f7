//! The optimizer of a training run: SGD (the official recipe, docs/numerics.md section 9) or Adam
//! (section 9.1), one dispatch over the whole parameter arena per step, with the learning rate
//! and weight decay of each parameter group (`ParamGroup`: the binary convs' theta and alpha,
//! BatchNorm, the other weights) scaled as the config says; and its state in checkpoints.
//!
//! Checkpoint layout of the state: SGD's momentum buffers under `momentum.<name>` (as always);
//! Adam's moments under `adam.exp_avg.<name>` and `adam.exp_avg_sq.<name>` (PyTorch's names) and
//! its step count as the int64 scalar `adam.step`, so a resumed run takes exactly the steps an
//! uninterrupted one would have.

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::Params;
use crate::ops::adam::{self, AdamStep};
use crate::ops::param_groups::{GroupScale, ParamGroups};
use crate::ops::sgd::{self, SgdStep};
use crate::train::checkpoint::{self, HostTensor, StateDict, MOMENTUM_PREFIX};
pub use crate::train::choices::{OptimizerKind, ParamGroup};
use crate::train::config::Config;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Prefix of Adam's first moments: `adam.exp_avg.<param name>`.
pub const ADAM_EXP_AVG_PREFIX: &str = "adam.exp_avg.";
/// Prefix of Adam's second moments: `adam.exp_avg_sq.<param name>`.
pub const ADAM_EXP_AVG_SQ_PREFIX: &str = "adam.exp_avg_sq.";
/// Adam's step count (int64 scalar): the steps taken so far.
pub const ADAM_STEP: &str = "adam.step";
/// Every checkpoint tensor of an optimizer starts with one of these.
const STATE_PREFIXES: [&str; 2] = [MOMENTUM_PREFIX, "adam."];

impl OptimizerKind {
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }
}

impl ParamGroup {
    pub const ALL: [ParamGroup; 4] = [
        ParamGroup::Weights,
        ParamGroup::Theta,
        ParamGroup::Alpha,
        ParamGroup::Bn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ParamGroup::Weights => "weights",
            ParamGroup::Theta => "theta",
            ParamGroup::Alpha => "alpha",
            ParamGroup::Bn => "bn",
        }
    }

    /// The group of the trainable tensor `name`; `batchnorms` are the model's BatchNorm module
    /// names (`Params::batchnorm_names`).
    pub fn of(name: &str, batchnorms: &[String]) -> ParamGroup {
        if name.ends_with(".rotate") {
            return ParamGroup::Theta;
        }
        if name.ends_with(".alpha") {
            return ParamGroup::Alpha;
        }
        let module = name.rsplit_once('.').map_or("", |(m, _)| m);
        if batchnorms.iter().any(|b| b == module) {
            return ParamGroup::Bn;
        }
        ParamGroup::Weights
    }

    /// This group's scales under `cfg`.
    pub fn scale(self, cfg: &Config) -> GroupScale {
        let lr = match self {
            ParamGroup::Theta => cfg.theta_lr_scale,
            ParamGroup::Alpha => cfg.alpha_lr_scale,
            ParamGroup::Weights | ParamGroup::Bn => 1.0,
        };
        GroupScale {
            lr: lr as f32,
            decay: if cfg.no_decay_on.contains(&self) {
                0.0
            } else {
                1.0
            },
        }
    }
}

/// Parses `--no-decay-on`: group names separated by commas, or "none".
pub fn parse_groups(list: &str) -> Result<Vec<ParamGroup>> {
    let list = list.trim();
    if list.is_empty() || list == "none" {
        return Ok(Vec::new());
    }
    let mut groups = Vec::new();
    for word in list.split(',').map(str::trim) {
        let Some(g) = ParamGroup::ALL.into_iter().find(|g| g.name() == word) else {
            bail!(
                "unknown parameter group {word:?}; groups: {}, or none",
                ParamGroup::ALL.map(ParamGroup::name).join(", ")
            );
        };
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups.sort();
    Ok(groups)
}

/// The group index of every element of the trainable arena (its gaps in group 0, `Weights`).
pub fn group_index(params: &Params) -> Result<Vec<u32>> {
    let batchnorms = params.batchnorm_names();
    let mut index = vec![0u32; params.trainable.len()];
    for t in params.spec.tensors.iter().filter(|t| t.trainable) {
        let view = params.get(&t.name)?;
        let start = (view.offset / 4) as usize;
        let group = ParamGroup::of(&t.name, &batchnorms);
        let at = ParamGroup::ALL
            .iter()
            .position(|&g| g == group)
            .unwrap_or(0);
        index[start..start + view.len()].fill(at as u32);
    }
    Ok(index)
}

/// Adam's moment arenas, laid out as the trainable one.
struct AdamMoments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// The optimizer of one run, built once; `record` adds one step to a pass.
pub struct Optimizer {
    kind: OptimizerKind,
    dispatch: Dispatch,
    sgd: SgdStep,
    adam: AdamStep,
    moments: Option<AdamMoments>,
    /// Steps taken (by this run and the runs it resumed).
    steps: u64,
    /// SGD: the next step creates the momentum buffer (no buffer restored, no step taken yet).
    first_sgd_step: bool,
    len: usize,
}

impl Optimizer {
    /// The optimizer `cfg` asks for over `params`, its state fresh (no step taken).
    pub fn new(gpu: &Gpu, params: &Params, cfg: &Config) -> Result<Optimizer> {
        let scales: Vec<GroupScale> = ParamGroup::ALL.iter().map(|g| g.scale(cfg)).collect();
        let groups = ParamGroups::new(gpu, &group_index(params)?, &scales)?;
        let sgd = SgdStep {
            lr: cfg.lr as f32,
            momentum: cfg.momentum as f32,
            weight_decay: cfg.weight_decay as f32,
            first_step: true,
        };
        let adam = AdamStep {
            lr: cfg.lr as f32,
            beta1: cfg.adam_beta1,
            beta2: cfg.adam_beta2,
            eps: cfg.adam_eps as f32,
            weight_decay: cfg.weight_decay as f32,
            step: 1,
        };
        let (dispatch, moments) = match cfg.optimizer {
            OptimizerKind::Sgd => (
                sgd::step_grouped(
                    gpu,
                    &params.trainable,
                    &params.grads,
                    &params.momentum,
                    &groups,
                    &sgd,
                )?,
                None,
            ),
            OptimizerKind::Adam => {
                let shapes = trainable_shapes(params);
                let (exp_avg, _) = gpu.arena("adam exp_avg", &shapes)?;
                let (exp_avg_sq, _) = gpu.arena("adam exp_avg_sq", &shapes)?;
                let d = adam::step(
                    gpu,
                    &params.trainable,
                    &params.grads,
                    &exp_avg,
                    &exp_avg_sq,
                    &groups,
                    &adam,
                )?;
                (
                    d,
                    Some(AdamMoments {
                        exp_avg,
                        exp_avg_sq,
                    }),
                )
            }
        };
        Ok(Optimizer {
            kind: cfg.optimizer,
            dispatch,
            sgd,
            adam,
            moments,
            steps: 0,
            first_sgd_step: true,
            len: params.trainable.len(),
        })
    }

    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Steps taken so far (including those of the runs this one resumed, for Adam).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Records one step at learning rate `lr` (scaled per group) into `pass`.
    pub fn record(&mut self, pass: &mut wgpu::ComputePass<'_>, lr: f64) {
        let immediates = self.next_step(lr);
        self.record_with(pass, &immediates);
    }

    /// The immediates of the next step at learning rate `lr` (scaled per group), counting the
    /// step as taken: record them with [`Optimizer::record_with`] once the step's gradient is
    /// complete (after the last micro-batch, or after the sum over ranks).
    pub fn next_step(&mut self, lr: f64) -> Vec<u8> {
        let immediates = match self.kind {
            OptimizerKind::Sgd => sgd::step_immediates(
                self.len,
                &SgdStep {
                    lr: lr as f32,
                    first_step: self.first_sgd_step,
                    ..self.sgd
                },
            ),
            OptimizerKind::Adam => adam::step_immediates(
                self.len,
                &AdamStep {
                    lr: lr as f32,
                    step: self.steps + 1,
                    ..self.adam
                },
            ),
        };
        self.steps += 1;
        self.first_sgd_step = false;
        immediates
    }

    /// Records the step whose immediates [`Optimizer::next_step`] made.
    pub fn record_with(&self, pass: &mut wgpu::ComputePass<'_>, immediates: &[u8]) {
        self.dispatch.record_with(pass, immediates);
    }

    /// The optimizer's state as checkpoint tensors (names with their prefixes).
    pub fn state_dict(&self, gpu: &Gpu, params: &Params) -> Result<StateDict> {
        let mut state = StateDict::new();
        match &self.moments {
            None => {
                for (name, shape, data) in params.download_momentum(gpu)? {
                    state.insert(
                        format!("{MOMENTUM_PREFIX}{name}"),
                        HostTensor::f32(&shape, data),
                    );
                }
            }
            Some(m) => {
                for (prefix, arena) in [
                    (ADAM_EXP_AVG_PREFIX, &m.exp_avg),
                    (ADAM_EXP_AVG_SQ_PREFIX, &m.exp_avg_sq),
                ] {
                    let data = gpu.read_f32(arena)?;
                    for (name, shape, start) in trainable_layout(params)? {
                        let n: usize = shape.iter().product();
                        state.insert(
                            format!("{prefix}{name}"),
                            HostTensor::f32(&shape, data[start..start + n].to_vec()),
                        );
                    }
                }
                state.insert(ADAM_STEP, HostTensor::i64(&[], vec![self.steps as i64]));
            }
        }
        Ok(state)
    }

    /// Restores the state saved by `state_dict` from a checkpoint's optimizer tensors
    /// (`split_state`). Without any, the state stays fresh (as for a converted official
    /// checkpoint). A checkpoint of the other optimizer, or with missing or misshaped tensors,
    /// is an error naming `file` and the tensors.
    pub fn restore(
        &mut self,
        gpu: &Gpu,
        params: &Params,
        state: &StateDict,
        file: &Path,
    ) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        let mut state = state.clone();
        let momentum = state.split_prefix(MOMENTUM_PREFIX);
        match &self.moments {
            None => {
                if !state.is_empty() {
                    bail!(
                        "{} holds Adam's state ({}, ...) but this run uses SGD (--optimizer sgd): \
                         resume with the optimizer it was trained with",
                        file.display(),
                        state.names().next().unwrap_or("adam.")
                    );
                }
                let expected = trainable_shapes(params);
                checkpoint::check_against(&momentum, &expected, file)
                    .context("momentum buffers (momentum.<name>)")?;
                let values: Vec<(String, Vec<f32>)> = expected
                    .iter()
                    .map(|(n, _)| Ok((n.clone(), momentum.f32(n)?)))
                    .collect::<Result<_>>()?;
                params.upload_momentum(gpu, &values)?;
                self.first_sgd_step = false;
            }
            Some(m) => {
                if !momentum.is_empty() {
                    bail!(
                        "{} holds SGD momentum buffers (momentum.<name>) but this run uses Adam \
                         (--optimizer adam): resume with the optimizer it was trained with",
                        file.display()
                    );
                }
                let mut expected: Vec<(String, Vec<usize>)> = vec![(ADAM_STEP.into(), vec![])];
                for prefix in [ADAM_EXP_AVG_PREFIX, ADAM_EXP_AVG_SQ_PREFIX] {
                    expected.extend(
                        trainable_shapes(params)
                            .into_iter()
                            .map(|(name, shape)| (format!("{prefix}{name}"), shape)),
                    );
                }
                checkpoint::check_against(&state, &expected, file).context("Adam's state")?;
                let step = match state.i64(ADAM_STEP).map(|v| v[0]) {
                    Ok(step) if step >= 0 => step,
                    _ => bail!(
                        "{}: Adam's step count {ADAM_STEP} must be an int64 >= 0",
                        file.display()
                    ),
                };
                let layout = trainable_layout(params)?;
                for (prefix, arena) in [
                    (ADAM_EXP_AVG_PREFIX, &m.exp_avg),
                    (ADAM_EXP_AVG_SQ_PREFIX, &m.exp_avg_sq),
                ] {
                    let mut data = vec![0f32; arena.len()];
                    for (name, shape, start) in &layout {
                        let n: usize = shape.iter().product();
                        data[*start..start + n]
                            .copy_from_slice(&state.f32(&format!("{prefix}{name}"))?);
                    }
                    gpu.write(arena, &data);
                }
                self.steps = step as u64;
            }
        }
        Ok(())
    }
}

/// Removes the optimizer's tensors (SGD's momentum buffers, Adam's state) from a checkpoint's
/// state and returns them, names unchanged, for `Optimizer::restore`.
pub fn split_state(state: &mut StateDict) -> StateDict {
    let mut taken = StateDict::new();
    for prefix in STATE_PREFIXES {
        taken.extend_prefixed(prefix, state.split_prefix(prefix));
    }
    taken
}

fn trainable_shapes(params: &Params) -> Vec<(String, Vec<usize>)> {
    params
        .spec
        .tensors
        .iter()
        .filter(|t| t.trainable)
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

/// (name, shape, first element in the arena) of every trainable tensor.
fn trainable_layout(params: &Params) -> Result<Vec<(String, Vec<usize>, usize)>> {
    trainable_shapes(params)
        .into_iter()
        .map(|(name, shape)| {
            let start = (params.get(&name)?.offset / 4) as usize;
            Ok((name, shape, start))
        })
        .collect()
}
