//! `rbnn step`: exactly one forward and backward of the training graph on a given batch with
//! given parameters, written out as tensors. This is how rbnn is checked against the official
//! PyTorch code (tests/golden.rs) and against any other framework.

use crate::gpu::Gpu;
use crate::model::network::{Mode, Network, StepScalars};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::rbnn::rotation;
use crate::rbnn::schedule::ApproxSignSchedule;
use crate::rng::Rng;
use crate::train::checkpoint::{check_finite, read_batch, read_safetensors, HostTensor, StateDict};
use anyhow::{bail, Context, Result};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct StepOptions {
    /// 0-based epoch whose t and k the backward uses; None means the layers' epoch -1 (t and k
    /// of epoch 0).
    pub epoch: Option<usize>,
    pub epochs: usize,
    pub tmin: f64,
    pub tmax: f64,
    /// Run the rotation update (docs/numerics.md section 5) before the forward.
    pub rotate: bool,
    /// Only the inference-mode forward (BatchNorm with running statistics): logits.
    pub eval: bool,
    /// Initialise tensors missing from the weights file as the model does (seeded), instead of
    /// failing.
    pub init_missing: bool,
    pub seed: u64,
    pub a32: bool,
    /// Classes when the weights do not say (no classifier weight in the file).
    pub classes: usize,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            epoch: None,
            epochs: 1000,
            tmin: 1e-2,
            tmax: 10.0,
            rotate: false,
            eval: false,
            init_missing: false,
            seed: 0,
            a32: false,
            classes: 10,
        }
    }
}

/// The classifier weight's name (the same for any class count), whose rows give the classes.
fn classifier_weight(kind: ModelKind, opts: &StepOptions) -> String {
    let arch = kind.describe(opts.classes, 1);
    format!("{}.weight", arch.head.classifier().name)
}

/// Loads `weights` into freshly allocated parameters of `kind`, checking every name and shape.
pub fn load_params(
    gpu: &Gpu,
    kind: ModelKind,
    weights: &StateDict,
    file: &Path,
    in_channels: usize,
    opts: &StepOptions,
) -> Result<Params> {
    let classes = weights
        .get(&classifier_weight(kind, opts))
        .map(|t| t.shape[0])
        .unwrap_or(opts.classes);
    let spec = ModelSpec::new(kind, classes, in_channels);
    let mut values = Vec::new();
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for t in &spec.tensors {
        match weights.get(&t.name) {
            Some(h) => {
                let n: usize = t.shape.iter().product();
                if h.shape != t.shape && h.numel() == n && t.name.ends_with(".alpha") {
                    // Accept alpha as [Co] as well as the official [Co, 1, 1].
                    values.push((t.name.clone(), h.to_f32()));
                } else if h.shape != t.shape {
                    misshaped.push(format!("{} {:?} (expected {:?})", t.name, h.shape, t.shape));
                } else {
                    values.push((t.name.clone(), h.to_f32()));
                }
            }
            None => missing.push(t.name.clone()),
        }
    }
    if !misshaped.is_empty() {
        bail!(
            "{}: tensors of the wrong shape for {}: {}",
            file.display(),
            kind.name(),
            misshaped.join(", ")
        );
    }
    if !missing.is_empty() && !opts.init_missing {
        bail!(
            "{}: {} tensors of {} missing (pass --init-missing to initialise them as the model \
             does): {}",
            file.display(),
            missing.len(),
            kind.name(),
            missing.join(", ")
        );
    }
    if !missing.is_empty() {
        let fresh = spec.initialise(&mut Rng::new(opts.seed));
        values.extend(fresh.into_iter().filter(|(n, _)| missing.contains(n)));
    }
    let params = Params::new(gpu, spec)?;
    params.upload(gpu, &values)?;
    Ok(params)
}

/// Runs one step and returns the output tensors ("logits", "loss", "grad.<name>", and with
/// `rotate` the updated "<layer>.R1" / "<layer>.R2").
pub fn run_step(
    gpu: &Gpu,
    kind: ModelKind,
    weights: &Path,
    batch: &Path,
    opts: &StepOptions,
) -> Result<StateDict> {
    let (state, _) = read_safetensors(weights)?;
    check_finite(&state, weights)?;
    let classes = state
        .get(&classifier_weight(kind, opts))
        .map(|t| t.shape[0])
        .unwrap_or(opts.classes);
    let batch_data = read_batch(batch, classes)?;
    let [n, c, h, w] = batch_data.shape;
    let params = load_params(gpu, kind, &state, weights, c, opts)?;
    let mode = if opts.eval { Mode::Eval } else { Mode::Train };
    let net = Network::new(gpu, &params, n, mode, opts.a32, [c, h, w])
        .with_context(|| format!("building {} for batch {n}", kind.name()))?;
    gpu.write(&net.input, &batch_data.input);
    gpu.write(&net.target, &batch_data.target);
    let mut out = StateDict::new();
    if opts.rotate && !opts.eval {
        let layers: Vec<_> = net.binconvs.iter().collect();
        rotation::rotation_update(gpu, &layers)?;
        for name in &net.binconv_names {
            for r in ["R1", "R2"] {
                let key = format!("{name}.{r}");
                let t = params.get(&key)?;
                out.insert(key, HostTensor::f32(&t.shape, gpu.read_f32(t)?));
            }
        }
    }
    let schedule = ApproxSignSchedule {
        t_min: opts.tmin,
        t_max: opts.tmax,
        epochs: opts.epochs,
    };
    let (t, k) = schedule.at(opts.epoch.unwrap_or(0));
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        if opts.eval {
            net.record_forward(&mut pass);
        } else {
            net.record_step(
                &mut pass,
                StepScalars {
                    t: t as f32,
                    k: k as f32,
                },
            );
        }
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait()?;
    out.insert(
        "logits",
        HostTensor::f32(&net.logits.shape, gpu.read_f32(&net.logits)?),
    );
    if !opts.eval {
        let totals = crate::ops::loss::read_totals(gpu, &net.loss_acc)?;
        out.insert(
            "loss",
            HostTensor::f32(&[1], vec![totals.mean_loss() as f32]),
        );
        for (name, shape, data) in params.download_grads(gpu)? {
            out.insert(format!("grad.{name}"), HostTensor::f32(&shape, data));
        }
    }
    Ok(out)
}
