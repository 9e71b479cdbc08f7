//! The epoch runner: data -> one submit per training step (forward, loss, backward, optimizer) ->
//! rotation update at the first batch of every rotation epoch -> evaluation -> metrics and
//! checkpoints (atomic) -> curves.
//!
//! Gradient accumulation and data-parallel training (several ranks under MPI) hook in between the
//! backward and the optimizer (`data_parallel`); in a data-parallel run rank 0 alone evaluates,
//! writes the run directory and prints progress.
//!
//! A run with a time budget (`Config::time_budget`, `rbnn train --time-budget`) plans its length
//! from its own rate: after its first REPLAN_AFTER_STEPS steps it counts the steps that fit in
//! the budget's rest at the rate it has measured so far and fits the learning-rate and t/k
//! schedules onto them; at every later readback it plans again when the count has moved by more
//! than REPLAN_TOLERANCE (another engineer's build starting or ending). Every plan is recorded
//! (`Config::replans`, in the checkpoints; the last in metrics.jsonl). The run ends at its
//! planned step with the usual end of an epoch (evaluation, metrics, checkpoints, curves), or
//! at the budget should the machine slow down faster than the plans follow. Its length depends
//! on the machine, so it cannot be resumed exactly, and `--resume` refuses it.
//!
//! Nothing non-finite passes silently: binarisation hides NaN from the loss, so every time the
//! loss is read back (every READBACK_EVERY steps) the parameters and state are checked on the GPU
//! too, and every checkpoint is checked on the host before it is written. A run that goes
//! non-finite stops, naming the tensors and the last good checkpoint (only one that exists).

use crate::data::{self, BatchPlan, Batcher, Dataset, DatasetKind, Source, Split};
use crate::distributed::Cluster;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::network::{Mode, Network, StepScalars};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::ops::{loss, sgd};
use crate::rbnn::rotation::{LayerDiagnostics, RotationUpdate};
use crate::rbnn::schedule::ApproxSignSchedule;
use crate::rng::Rng;
use crate::train::checkpoint::{self, CheckpointInfo, HostTensor, StateDict, MOMENTUM_PREFIX};
use crate::train::config::{Config, Replan};
use crate::train::data_parallel::DataParallel;
use crate::train::metrics::{self, EpochMetrics, MetricsWriter};
use crate::train::optimizer::{self, Optimizer};
use crate::train::plot;
use crate::train::run_dir::{RunDir, RunFiles};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Loss and accuracy are read back (one small copy) every this many steps for the progress bar
/// and the NaN checks of the loss and the parameters; never inside a step.
const READBACK_EVERY: usize = 20;

/// Steps a time-budgeted run takes to measure its rate before it plans its length (at a
/// readback, so the GPU has finished them). Early enough that the cosine has barely moved.
const REPLAN_AFTER_STEPS: usize = READBACK_EVERY;

/// A time-budgeted run plans again when the steps that fit differ from its plan by more than
/// this share of it (smaller moves are noise of the measured rate).
const REPLAN_TOLERANCE: f64 = 0.02;

/// What a finished (or interrupted) run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub epochs_run: usize,
    pub best_top1: f64,
    pub last: Option<EpochMetrics>,
    pub interrupted: bool,
    /// Optimizer steps this call ran.
    pub steps_run: usize,
    /// The run's planned steps (`Config::planned_steps`) as they stood at its end; None for a
    /// run of whole epochs.
    pub planned_steps: Option<usize>,
}

/// A split of the configured dataset, cut to --max-train-images / --max-test-images.
pub fn load_split(cfg: &Config, split: Split) -> Result<Dataset> {
    let kind: DatasetKind = cfg.dataset.parse()?;
    let path = cfg.data_path.as_deref().map(Path::new);
    let ds = data::load(kind, path, split)?;
    let limit = match split {
        Split::Train => cfg.max_train_images,
        Split::Test => cfg.max_test_images,
    };
    Ok(match limit {
        Some(n) => ds.take(n),
        None => ds,
    })
}

/// A split of the configured dataset as the batcher reads it (ImageNet streamed from disk, the
/// others in memory), cut to --max-train-images / --max-test-images.
pub fn load_source(cfg: &Config, split: Split) -> Result<Source> {
    let kind: DatasetKind = cfg.dataset.parse()?;
    let limit = match split {
        Split::Train => cfg.max_train_images,
        Split::Test => cfg.max_test_images,
    };
    data::open(kind, cfg.data_path.as_deref().map(Path::new), split, limit)
}

/// The state of a model as a checkpoint holds it: parameters and buffers by official name,
/// num_batches_tracked per BatchNorm, and the momentum buffers under "momentum.".
pub fn state_dict(gpu: &Gpu, params: &Params, with_momentum: bool) -> Result<StateDict> {
    let mut state = StateDict::new();
    for (name, shape, data) in params.download(gpu)? {
        state.insert(name, HostTensor::f32(&shape, data));
    }
    for bn in params.batchnorm_names() {
        state.insert(
            format!("{bn}.num_batches_tracked"),
            HostTensor::i64(&[], vec![params.batches_tracked]),
        );
    }
    if with_momentum {
        for (name, shape, data) in params.download_momentum(gpu)? {
            state.insert(
                format!("{MOMENTUM_PREFIX}{name}"),
                HostTensor::f32(&shape, data),
            );
        }
    }
    Ok(state)
}

/// Uploads a checkpoint's model tensors into `params`, failing with every missing or mis-shaped
/// tensor named. Returns the optimizer's tensors (SGD's momentum buffers or Adam's state, empty
/// when the checkpoint has none) for `Optimizer::restore`.
pub fn restore(
    gpu: &Gpu,
    params: &mut Params,
    state: &StateDict,
    file: &Path,
) -> Result<StateDict> {
    let mut state = state.clone();
    let optimizer_state = optimizer::split_state(&mut state);
    let mut expected: Vec<(String, Vec<usize>)> = params
        .spec
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    for bn in params.batchnorm_names() {
        expected.push((format!("{bn}.num_batches_tracked"), vec![]));
    }
    checkpoint::check_against(&state, &expected, file)?;
    let values: Vec<(String, Vec<f32>)> = params
        .spec
        .tensors
        .iter()
        .map(|t| Ok((t.name.clone(), state.f32(&t.name)?)))
        .collect::<Result<_>>()?;
    params.upload(gpu, &values)?;
    if let Some(bn) = params.batchnorm_names().first() {
        params.batches_tracked = state.i64(&format!("{bn}.num_batches_tracked"))?[0];
    }
    Ok(optimizer_state)
}

/// The initial parameters of a fresh run: the model's initialisation (docs/numerics.md section
/// 7), with every binary conv's rotation gate theta set to `cfg.theta_init` and, when the config
/// says, every BatchNorm2d's gamma to `cfg.bn_gamma_init`.
fn initial_values(params: &Params, cfg: &Config, rng: &mut Rng) -> Vec<(String, Vec<f32>)> {
    let mut values = params.spec.initialise(rng);
    let gammas: Vec<String> = params
        .batchnorm_names()
        .iter()
        .map(|bn| format!("{bn}.weight"))
        .collect();
    for (name, v) in values.iter_mut() {
        if name.ends_with(".rotate") {
            v.fill(cfg.theta_init as f32);
        }
        if let Some(gamma) = cfg.bn_gamma_init.filter(|_| gammas.contains(name)) {
            v.fill(gamma as f32);
        }
    }
    values
}

/// Evaluates `net` (built in Mode::Eval) over a whole split; returns the loss totals and the
/// number of samples replaced because their file could not be read.
pub fn evaluate(
    gpu: &Gpu,
    net: &Network,
    source: &Source,
    data_threads: usize,
) -> Result<(loss::LossTotals, usize)> {
    loss::reset(gpu, &net.loss_acc)?;
    let plan = BatchPlan {
        threads: data_threads,
        ..BatchPlan::eval(net.batch)
    };
    let mut batcher = Batcher::new(source.clone(), plan, 0..1)?;
    let mut skipped = 0;
    while let Some(batch) = batcher.next() {
        skipped += batch.skipped;
        write_batch(gpu, net, &batch.images, &batch.labels);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            net.record_eval(&mut pass, batch.len())?;
        }
        gpu.queue.submit([encoder.finish()]);
        batcher.recycle(batch);
    }
    batcher.finished()?;
    Ok((loss::read_totals(gpu, &net.loss_acc)?, skipped))
}

/// Writes a batch (possibly shorter than the network's batch: the rest keeps stale data, which
/// only evaluation allows, since it scores the first `len` rows).
fn write_batch(gpu: &Gpu, net: &Network, images: &[f32], labels: &[u32]) {
    gpu.queue.write_buffer(
        &net.input.buffer,
        net.input.offset,
        bytemuck::cast_slice(images),
    );
    gpu.queue.write_buffer(
        &net.target.buffer,
        net.target.offset,
        bytemuck::cast_slice(labels),
    );
}

fn progress_bar(len: usize, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}

/// Flags NaN or infinity in the parameters and the state (BatchNorm statistics, R1/R2) on the
/// GPU: one dispatch per arena into one flag, run where the loss is read back anyway.
struct FiniteCheck {
    flag: Tensor,
    dispatches: Vec<Dispatch>,
}

impl FiniteCheck {
    fn new(gpu: &Gpu, params: &Params) -> Result<FiniteCheck> {
        let flag = gpu.tensor("non-finite parameter flag", &[1]);
        let dispatches = vec![
            sgd::find_nonfinite(gpu, &params.trainable, &flag)?,
            sgd::find_nonfinite(gpu, &params.state, &flag)?,
        ];
        Ok(FiniteCheck { flag, dispatches })
    }

    /// None when every value is finite; else the tensors holding NaN or infinity, described.
    fn run(&self, gpu: &Gpu, params: &Params) -> Result<Option<String>> {
        gpu.write(&self.flag, &[0u32]);
        gpu.run(&self.dispatches.iter().collect::<Vec<_>>())?;
        if gpu.read_u32(&self.flag)?[0] == 0 {
            return Ok(None);
        }
        let state = state_dict(gpu, params, false)?;
        Ok(Some(checkpoint::describe_nonfinite(
            &checkpoint::nonfinite_tensors(&state),
        )))
    }
}

/// The end of a message about a stopped run: the last good checkpoint, only if one exists
/// (last.safetensors, else the checkpoint the run resumed from).
fn last_good(files: &RunFiles, resume: Option<&Path>) -> String {
    let last = files.last();
    match resume {
        _ if last.exists() => format!("The last good checkpoint is {}", last.display()),
        Some(r) => format!(
            "The last good checkpoint is {}, which this run resumed from",
            r.display()
        ),
        None => "No checkpoint was written: no epoch had finished".into(),
    }
}

/// Trains per `cfg`, writing into `run`. With `resume`, continues from that checkpoint (same
/// numbers as an uninterrupted run on the same adapter). `stop` is polled after every step
/// (Ctrl-C, SIGTERM): the run then saves its weights to interrupted.safetensors and returns.
pub fn train(
    gpu: &Gpu,
    cfg: &Config,
    run: &RunDir,
    resume: Option<&Path>,
    stop: &AtomicBool,
    show_progress: bool,
) -> Result<TrainSummary> {
    train_until(gpu, cfg, run, resume, stop, show_progress, cfg.epochs)
}

/// `train`, but returns after epoch `end_epoch` (exclusive, at most cfg.epochs) with the run's
/// schedules still those of cfg.epochs: a later `--resume` continues as if never stopped.
pub fn train_until(
    gpu: &Gpu,
    cfg: &Config,
    run: &RunDir,
    resume: Option<&Path>,
    stop: &AtomicBool,
    show_progress: bool,
    end_epoch: usize,
) -> Result<TrainSummary> {
    let place = RankPlace {
        cluster: &Cluster::single(),
        run: Some(run),
        files: RunFiles {
            dir: run.dir().to_path_buf(),
        },
    };
    train_rank(gpu, cfg, &place, resume, stop, show_progress, end_epoch)
}

/// Where one rank of a (possibly data-parallel) run stands: rank 0 holds the run directory (its
/// lock and files); the other ranks only know its paths, to name the last good checkpoint.
pub struct RankPlace<'a> {
    pub cluster: &'a Cluster,
    /// Rank 0's run directory; None on the other ranks.
    pub run: Option<&'a RunDir>,
    pub files: RunFiles,
}

/// `train_until` as one rank of `place.cluster`: every rank trains on its share of each global
/// batch; rank 0 alone evaluates, writes checkpoints and metrics, and shows progress.
pub fn train_rank(
    gpu: &Gpu,
    cfg: &Config,
    place: &RankPlace,
    resume: Option<&Path>,
    stop: &AtomicBool,
    show_progress: bool,
    end_epoch: usize,
) -> Result<TrainSummary> {
    let run_started = Instant::now();
    let end_epoch = end_epoch.min(cfg.epochs);
    cfg.validate()?;
    let cluster = place.cluster;
    if cfg.time_budget.is_some() && cluster.size() > 1 {
        bail!(
            "--time-budget is for a single process: the {} ranks of this run would each measure \
             a rate of their own and plan different lengths",
            cluster.size()
        );
    }
    if let (Some(_), Some(path)) = (cfg.time_budget, resume) {
        bail!(
            "--resume {} with --time-budget: a time-budgeted run's length is planned from the \
             rate it measures, which a resumed run cannot repeat, so it cannot continue exactly; \
             resume without --time-budget or start a new run",
            path.display()
        );
    }
    let root = place.run;
    let show_progress = show_progress && root.is_some();
    let cfg = &Config {
        ranks: cluster.size(),
        ..cfg.clone()
    };
    let kind = ModelKind::parse(&cfg.model)?;
    let train_ds = load_source(cfg, Split::Train)?;
    let test_ds = load_source(cfg, Split::Test)?;
    let image = train_ds.image_shape();
    let spec = ModelSpec::new(kind, train_ds.classes().len(), image[0]);
    let mut params = Params::new(gpu, spec)?;
    let files = &place.files;
    let mut parallel = DataParallel::new(gpu, &params, cluster, cfg.accumulate)?;
    parallel.check_same_run(cfg, train_ds.len(), test_ds.len())?;

    let mut rng = Rng::new(cfg.seed);
    let mut start_epoch = 0;
    let mut best_top1 = 0.0;
    let mut optimizer_state = StateDict::new();
    if let Some(path) = resume {
        let ck = checkpoint::load(path)?;
        checkpoint::check_model(&ck.metadata, kind.name(), path)?;
        let info = ck.info()?;
        if info.config.model != cfg.model || info.config.dataset != cfg.dataset {
            bail!(
                "{} was trained as {} on {}; this run asks for {} on {}",
                path.display(),
                info.config.model,
                info.config.dataset,
                cfg.model,
                cfg.dataset
            );
        }
        if info.config.optimizer != cfg.optimizer {
            bail!(
                "{} was trained with --optimizer {}; this run asks for {} (resume with the \
                 optimizer and recipe it was trained with)",
                path.display(),
                info.config.optimizer.name(),
                cfg.optimizer.name()
            );
        }
        if let Some(seconds) = info.config.time_budget {
            bail!(
                "{} is from a run with --time-budget {seconds}: its schedules were planned onto \
                 the {} steps that fit in that budget, so it cannot be resumed exactly; start a \
                 new run (from scratch)",
                path.display(),
                info.config.planned_steps().unwrap_or(0)
            );
        }
        optimizer_state = restore(gpu, &mut params, &ck.state, path)?;
        start_epoch = info.epoch;
        best_top1 = info.best_top1;
        rng.state = info.rng_state;
        if root.is_some() {
            metrics::retain_before(&files.metrics(), start_epoch)?;
        }
    } else {
        let values = initial_values(&params, cfg, &mut rng);
        params.upload(gpu, &values)?;
    }

    parallel.check_same_weights(gpu, &params, "at the start")?;

    // The global batch of one optimizer step; this rank trains on its parts of it, with one
    // network per part size (BatchNorm statistics per part).
    let global = cfg.batch_size.min(train_ds.len());
    let (sizes, keep_tail) = parallel.micro_batch_sizes(cfg.batch_size, train_ds.len())?;
    let nets: Vec<Network> = sizes
        .into_iter()
        .map(|size| {
            Network::new(gpu, &params, size, Mode::Train, cfg.a32, image)
                .with_context(|| format!("building {} for training batch {size}", kind.name()))
        })
        .collect::<Result<_>>()?;
    let train_net = &nets[0];
    let eval_bs = cfg.batch_size_test.min(test_ds.len());
    // Rank 0 alone evaluates.
    let eval_net = root
        .map(|_| {
            Network::new(gpu, &params, eval_bs, Mode::Eval, cfg.a32, image)
                .with_context(|| format!("building {} for evaluation batch {eval_bs}", kind.name()))
        })
        .transpose()?;
    let layers: Vec<_> = train_net.binconvs.iter().collect();
    let rotation = RotationUpdate::new(gpu, &layers)?;
    let finite_check = FiniteCheck::new(gpu, &params)?;

    let mut optimizer = Optimizer::new(gpu, &params, cfg)?;
    if let Some(path) = resume {
        optimizer.restore(gpu, &params, &optimizer_state, path)?;
    }
    let schedule = ApproxSignSchedule {
        t_min: cfg.tmin,
        t_max: cfg.tmax,
        epochs: cfg.epochs,
    };
    let mut writer = match root {
        Some(_) => Some(MetricsWriter::append(&files.metrics())?),
        None => None,
    };
    let mut plan = BatchPlan::train_source(&train_ds, global, cfg.seed);
    plan.threads = cfg.data_threads;
    if !cfg.augment {
        plan.augment = None;
    }
    plan.shard = parallel.shard();
    plan.drop_last = !keep_tail;
    let batcher = Batcher::new(
        train_ds.clone(),
        plan,
        start_epoch..end_epoch.max(start_epoch),
    )?;
    let per_epoch = batcher.batches_per_epoch();
    let mut batches = batcher.into_iter();
    let mut summary = TrainSummary {
        epochs_run: 0,
        best_top1,
        last: None,
        interrupted: false,
        steps_run: 0,
        planned_steps: cfg.planned_steps(),
    };
    // The config as the run goes: cfg, with the time budget's plans (`replans`) as they are
    // made. The schedules read it and the checkpoints record it.
    let mut run_cfg = cfg.clone();
    let deadline = cfg
        .time_budget
        .map(|seconds| run_started + Duration::from_secs_f64(seconds));
    // When this call's first step started: the clock of the measured rate.
    let mut steps_started_at: Option<Instant> = None;
    let mut run_ended = false;

    for epoch in start_epoch..end_epoch {
        let lr = match run_cfg.replans.is_empty() {
            false => run_cfg.step_learning_rate(epoch, 0, per_epoch),
            true => cfg.learning_rate(epoch),
        };
        let (t, k) = schedule.at(run_cfg.schedule_epoch(epoch, per_epoch));
        // Steps of this epoch (fewer in the last epoch of a run with planned steps) and the
        // epochs the run will have.
        let mut epoch_steps = epoch_steps(&run_cfg, epoch, per_epoch);
        let mut epochs_shown = run_epochs(&run_cfg, per_epoch);
        let scalars = StepScalars {
            t: t as f32,
            k: k as f32,
        };
        let started = Instant::now();
        let bar = progress_bar(epoch_steps, show_progress);
        bar.set_prefix(format!("epoch {}/{epochs_shown}", epoch + 1));
        let rotated = if epoch % cfg.rotation_update.max(1) == 0 {
            let diagnostics = rotation.update(gpu)?;
            parallel.check_same_rotations(gpu, &params, &train_net.binconv_names, epoch)?;
            Some(diagnostics)
        } else {
            None
        };
        let rotation_seconds = if rotated.is_some() {
            started.elapsed().as_secs_f64()
        } else {
            0.0
        };
        let steps_started = Instant::now();
        for net in &nets {
            loss::reset(gpu, &net.loss_acc)?;
        }
        let mut images = 0usize;
        let mut skipped_train = 0;
        let mut steps_in_epoch = 0;
        for step in 0..per_epoch {
            steps_started_at.get_or_insert_with(Instant::now);
            // The optimizer's step for this global batch, recorded once its gradient is
            // complete: in the last micro-batch's pass, or after the sum over ranks.
            let imm = optimizer.next_step(run_cfg.step_learning_rate(epoch, step, per_epoch));
            for micro in 0..parallel.micro_batches() {
                let Some(batch) = batches.next() else {
                    return Err(batches.failure());
                };
                skipped_train += batch.skipped;
                let net = nets
                    .iter()
                    .find(|n| n.batch == batch.len())
                    .context("no network for a micro-batch of this size")?;
                write_batch(gpu, net, &batch.images, &batch.labels);
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    net.record_step(&mut pass, scalars);
                    parallel.record_after_backward(&mut pass, micro);
                    if parallel.optimizer_in_pass(micro) {
                        optimizer.record_with(&mut pass, &imm);
                    }
                }
                parallel.record_readback(&mut encoder, micro);
                gpu.queue.submit([encoder.finish()]);
                params.batches_tracked += 1;
                batches.recycle(batch);
            }
            if parallel.sum_over_ranks(gpu)? {
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                optimizer.record_with(&mut encoder.begin_compute_pass(&Default::default()), &imm);
                gpu.queue.submit([encoder.finish()]);
            }
            // Every rank's share of this global batch (the last one may be partial).
            images += global.min(train_ds.len() - step * global);
            steps_in_epoch += 1;
            summary.steps_run += 1;
            if (step + 1) % READBACK_EVERY == 0 || step + 1 == epoch_steps {
                // This rank's share: the progress line of rank 0.
                let totals = sum_totals(gpu, &nets)?;
                // The parameters first: when they have gone, they are the cause to report.
                if let Some(bad) = finite_check.run(gpu, &params)? {
                    bail!(
                        "parameters became NaN or infinite in epoch {} (step {} of {per_epoch}, \
                         training loss {}): {bad}; stopped. {}",
                        epoch + 1,
                        step + 1,
                        totals.loss_sum,
                        last_good(files, resume)
                    );
                }
                if !totals.loss_sum.is_finite() {
                    bail!(
                        "the training loss became {} in epoch {} (step {} of {per_epoch}); \
                         stopped. {}",
                        totals.loss_sum,
                        epoch + 1,
                        step + 1,
                        last_good(files, resume)
                    );
                }
                let rate = images as f64 / steps_started.elapsed().as_secs_f64();
                let message = format!(
                    "loss {:.4} top1 {:.2}% {:.0} img/s",
                    totals.mean_loss(),
                    100.0 * totals.top1_accuracy(),
                    rate
                );
                if let Some(budget) = cfg
                    .time_budget
                    .filter(|_| summary.steps_run >= REPLAN_AFTER_STEPS)
                {
                    let done = epoch * per_epoch + step + 1;
                    let step_seconds = steps_started_at.map_or(0.0, |s| s.elapsed().as_secs_f64())
                        / summary.steps_run as f64;
                    let left = budget - run_started.elapsed().as_secs_f64();
                    let planned = plan_steps(done, step_seconds, left, cfg.epochs * per_epoch);
                    let moved = run_cfg.planned_steps().is_none_or(|current| {
                        planned.abs_diff(current) as f64 > REPLAN_TOLERANCE * current as f64
                    });
                    if moved {
                        run_cfg.replans.push(Replan {
                            at_step: done,
                            planned_steps: planned,
                        });
                        epoch_steps = self::epoch_steps(&run_cfg, epoch, per_epoch);
                        epochs_shown = run_epochs(&run_cfg, per_epoch);
                        bar.set_length(epoch_steps as u64);
                        bar.set_prefix(format!("epoch {}/{epochs_shown}", epoch + 1));
                        if show_progress {
                            bar.suspend(|| {
                                eprintln!(
                                    "time budget {budget:.0} s: after {done} steps {:.1} s are \
                                     left at {:.0} img/s so far ({:.3} s per step of {global}), \
                                     so the run is planned to {planned} steps ({} images, {:.2} \
                                     epochs of {per_epoch} steps); the learning rate and t/k \
                                     schedules end there",
                                    left.max(0.0),
                                    global as f64 / step_seconds,
                                    step_seconds,
                                    planned * global,
                                    planned as f64 / per_epoch.max(1) as f64,
                                )
                            });
                        }
                    }
                }
                if show_progress && bar.is_hidden() {
                    // Not a terminal (a log file, CI): plain lines instead of a bar.
                    eprintln!(
                        "epoch {}/{epochs_shown} step {}/{epoch_steps}: {message}",
                        epoch + 1,
                        step + 1
                    );
                }
                bar.set_message(message);
            }
            bar.set_position(step as u64 + 1);
            if parallel.any_rank(stop.load(Ordering::Relaxed)) {
                bar.abandon_with_message("interrupted");
                summary.interrupted = true;
                break;
            }
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            let planned_done = run_cfg
                .planned_steps()
                .is_some_and(|planned| epoch * per_epoch + step + 1 >= planned);
            if planned_done || out_of_time {
                // The planned steps are done, or the budget is spent: this epoch is the last.
                if out_of_time && show_progress {
                    bar.suspend(|| {
                        eprintln!(
                            "time budget {:.0} s spent after {} steps (planned: {}); the run \
                             ends here",
                            cfg.time_budget.unwrap_or(0.0),
                            epoch * per_epoch + step + 1,
                            run_cfg.planned_steps().unwrap_or(cfg.epochs * per_epoch)
                        )
                    });
                }
                run_ended = true;
                break;
            }
        }
        if summary.interrupted {
            // The epoch is incomplete: last.safetensors (the resume point) stays as it was, and
            // the weights as they are now go beside it.
            gpu.wait()?;
            if root.is_none() {
                break;
            }
            let info = CheckpointInfo {
                model: cfg.model.clone(),
                dataset: cfg.dataset.clone(),
                epoch,
                config: run_cfg.clone(),
                best_top1,
                rng_state: rng.state,
            };
            let path = files.interrupted();
            let state = checked_state(gpu, &params, &optimizer, &path, files, resume)?;
            checkpoint::save_atomic(&path, &state, &info.to_metadata())?;
            let resume_point = if files.last().exists() {
                Some(files.last())
            } else {
                resume.map(Path::to_path_buf)
            };
            match resume_point {
                Some(p) => eprintln!(
                    "interrupted in epoch {}: weights saved to {}; resume from {} to repeat that \
                     epoch exactly",
                    epoch + 1,
                    path.display(),
                    p.display()
                ),
                None => eprintln!(
                    "interrupted in epoch {}, before any epoch had finished: weights saved to {}; \
                     there is no resume point yet (the first is written when an epoch finishes)",
                    epoch + 1,
                    path.display()
                ),
            }
            break;
        }
        gpu.wait()?;
        let train_seconds = steps_started.elapsed().as_secs_f64();
        let train_totals = parallel.sum_totals(sum_totals(gpu, &nets)?)?;
        if !train_totals.loss_sum.is_finite() {
            return Err(parallel.agreed(anyhow::anyhow!(
                "the training loss became {} in epoch {}; stopped. {}",
                train_totals.loss_sum,
                epoch + 1,
                last_good(files, resume)
            )));
        }
        parallel.check_same_weights(gpu, &params, &format!("after epoch {}", epoch + 1))?;
        let (Some(run), Some(writer), Some(eval_net)) = (root, writer.as_mut(), &eval_net) else {
            // Not rank 0: evaluation, metrics and checkpoints are rank 0's.
            summary.epochs_run += 1;
            continue;
        };
        let (test, skipped_test) = evaluate(gpu, eval_net, &test_ds, cfg.data_threads)?;
        let diagnostics = match rotated {
            Some(d) => d,
            None => rotation.measure(gpu)?,
        };
        let test_top1 = 100.0 * test.top1_accuracy();
        // The first epoch of a run directory always writes best.safetensors (even at 0%), so
        // RUN/best.safetensors exists once an epoch has finished.
        let is_best = test_top1 > best_top1 || !files.best().exists();
        best_top1 = best_top1.max(test_top1);
        let m = EpochMetrics {
            epoch,
            lr,
            t,
            k,
            train_loss: train_totals.mean_loss(),
            train_top1: 100.0 * train_totals.top1_accuracy(),
            test_loss: test.mean_loss(),
            test_top1,
            test_top5: 100.0 * test.top5_accuracy(),
            epoch_seconds: started.elapsed().as_secs_f64(),
            images_per_second: images as f64 / train_seconds,
            rotation_seconds,
            flip_rate: per_layer(&train_net.binconv_names, &diagnostics, |d| d.flip_rate),
            angular_cosine: per_layer(&train_net.binconv_names, &diagnostics, |d| d.mean_cosine),
            skipped_train_images: skipped_train,
            skipped_test_images: skipped_test,
            steps: (cfg.time_budget.is_some() || !run_cfg.replans.is_empty())
                .then_some(steps_in_epoch),
            planned_steps: run_cfg.planned_steps(),
        };
        bar.finish_and_clear();
        writer.write(&m)?;
        let info = CheckpointInfo {
            model: cfg.model.clone(),
            dataset: cfg.dataset.clone(),
            epoch: epoch + 1,
            config: run_cfg.clone(),
            best_top1,
            rng_state: rng.state,
        };
        let state = checked_state(gpu, &params, &optimizer, &files.last(), files, resume)?;
        checkpoint::save_atomic(&files.last(), &state, &info.to_metadata())?;
        if is_best {
            checkpoint::save_atomic(&files.best(), &state, &info.to_metadata())?;
        }
        run.epoch_saved();
        if show_progress {
            println!(
                "epoch {:>4}/{} lr {:.5} t {:.4} | train loss {:.4} top1 {:.2}% | test loss {:.4} \
                 top1 {:.2}% top5 {:.2}% (best {:.2}%) | {:.1}s, {:.0} img/s, rotation {:.0} ms",
                epoch + 1,
                epochs_shown,
                lr,
                t,
                m.train_loss,
                m.train_top1,
                m.test_loss,
                m.test_top1,
                m.test_top5,
                best_top1,
                m.epoch_seconds,
                m.images_per_second,
                m.rotation_seconds * 1e3
            );
        }
        summary.epochs_run += 1;
        summary.best_top1 = best_top1;
        summary.last = Some(m);
        if run_ended {
            break;
        }
    }
    summary.planned_steps = run_cfg.planned_steps();
    if summary.epochs_run > 0 && root.is_some() {
        plot::plot_metrics_file(
            &files.metrics(),
            &files.curves(),
            &format!("{} on {}", cfg.model, cfg.dataset),
        )?;
    }
    Ok(summary)
}

/// The steps of a time-budgeted run: the `done` so far and as many more as fit in `seconds_left`
/// at `step_seconds` each, at most `full` (every epoch of the config), at least `done`.
fn plan_steps(done: usize, step_seconds: f64, seconds_left: f64, full: usize) -> usize {
    let more = (seconds_left / step_seconds.max(1e-9)).floor().max(0.0);
    (done + more.min(full as f64) as usize).clamp(done.min(full), full)
}

/// Steps of epoch `epoch`: a full epoch of `per_epoch`, or what is left of the planned steps.
fn epoch_steps(cfg: &Config, epoch: usize, per_epoch: usize) -> usize {
    match cfg.planned_steps() {
        Some(planned) => planned.saturating_sub(epoch * per_epoch).min(per_epoch),
        None => per_epoch,
    }
}

/// Epochs the run will have (its last one partial with planned steps).
fn run_epochs(cfg: &Config, per_epoch: usize) -> usize {
    match cfg.planned_steps() {
        Some(planned) => planned.div_ceil(per_epoch.max(1)).min(cfg.epochs),
        None => cfg.epochs,
    }
}

/// Loss and accuracy totals of this rank's training networks (one per micro-batch size).
fn sum_totals(gpu: &Gpu, nets: &[Network]) -> Result<loss::LossTotals> {
    let mut sum = loss::read_totals(gpu, &nets[0].loss_acc)?;
    for net in &nets[1..] {
        let t = loss::read_totals(gpu, &net.loss_acc)?;
        sum.loss_sum += t.loss_sum;
        sum.top1 += t.top1;
        sum.top5 += t.top5;
        sum.samples += t.samples;
    }
    Ok(sum)
}

/// The state to write to `path` (the model's and the optimizer's), refused (and not written)
/// when a tensor holds NaN or infinity.
fn checked_state(
    gpu: &Gpu,
    params: &Params,
    optimizer: &Optimizer,
    path: &Path,
    files: &RunFiles,
    resume: Option<&Path>,
) -> Result<StateDict> {
    let mut state = state_dict(gpu, params, false)?;
    for (name, t) in optimizer.state_dict(gpu, params)?.iter() {
        state.insert(name, t.clone());
    }
    let bad = checkpoint::nonfinite_tensors(&state);
    if !bad.is_empty() {
        bail!(
            "NaN or infinite values in {}; {} was not written, and the run stopped. {}",
            checkpoint::describe_nonfinite(&bad),
            path.display(),
            last_good(files, resume)
        );
    }
    Ok(state)
}

fn per_layer(
    names: &[String],
    d: &[LayerDiagnostics],
    f: impl Fn(&LayerDiagnostics) -> f64,
) -> BTreeMap<String, f64> {
    names
        .iter()
        .zip(d)
        .map(|(n, d)| (n.clone(), f(d)))
        .collect()
}

/// `rbnn eval`: test loss, top-1 and top-5 of a checkpoint.
pub fn eval_checkpoint(
    gpu: &Gpu,
    path: &Path,
    cfg_override: Option<&Config>,
) -> Result<(Config, loss::LossTotals)> {
    let ck = checkpoint::load(path)?;
    let cfg = match cfg_override {
        Some(c) => c.clone(),
        None => ck.info().map(|i| i.config).with_context(|| {
            format!(
                "{} has no training config; pass --model and --dataset",
                path.display()
            )
        })?,
    };
    let kind = ModelKind::parse(&cfg.model)?;
    checkpoint::check_model(&ck.metadata, kind.name(), path)?;
    let test_ds = load_source(&cfg, Split::Test)?;
    let image = test_ds.image_shape();
    let spec = ModelSpec::new(kind, test_ds.classes().len(), image[0]);
    let mut params = Params::new(gpu, spec)?;
    restore(gpu, &mut params, &ck.state, path)?;
    let bs = cfg.batch_size_test.min(test_ds.len());
    let net = Network::new(gpu, &params, bs, Mode::Eval, cfg.a32, image)?;
    let (totals, _) = evaluate(gpu, &net, &test_ds, cfg.data_threads)?;
    Ok((cfg, totals))
}
