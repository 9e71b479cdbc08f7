//! The rbnn command line (thin: each subcommand calls into the library).

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rbnn::distributed::Cluster;
use rbnn::gpu::Gpu;
use rbnn::model::ModelKind;
use rbnn::train::config::{Config, LrType, LrUpdate, OptimizerKind, Recipe};
use rbnn::train::data_parallel::check_split;
use rbnn::train::optimizer::parse_groups;
use rbnn::train::run_dir::{Existing, RunDir, RunFiles};
use rbnn::train::step::{run_step, StepOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Where `rbnn train` makes a new run-NNN directory for each run without --out.
const RUNS_ROOT: &str = "runs";

#[derive(Parser)]
#[command(
    name = "rbnn",
    version,
    about = "Rotated Binary Neural Networks on any GPU (wgpu)"
)]
struct Cli {
    /// Use the first adapter whose name contains this (case-insensitive); else WGPU_ADAPTER_NAME;
    /// else the best one (a real GPU before a software adapter). WGPU_BACKEND picks the backend.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter with its limits and features, and say which one rbnn uses.
    Info,
    /// Train a model (defaults: resnet20_1w1a on the embedded Fashion-MNIST subset).
    Train(Box<TrainArgs>),
    /// Test loss, top-1 and top-5 of a training checkpoint (float evaluation path) or of a packed
    /// model from `rbnn export` (packed 1-bit engine).
    Eval {
        /// A training checkpoint, or a packed model (recognised from its metadata).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Evaluate on this dataset instead of the one the checkpoint was trained on.
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        data_path: Option<String>,
        /// Model, for checkpoints without a training config (converted official ones).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 128)]
        batch_size_test: usize,
        /// Evaluate on the first N test images only (default: those of the checkpoint's
        /// training config; all of them for a packed model).
        #[arg(long)]
        max_test_images: Option<usize>,
    },
    /// One forward and backward of the training graph on a given batch, written as tensors.
    Step(StepArgs),
    /// Pack a trained checkpoint into a deployable 1-bit model (sign bits of the rotated
    /// weights, alpha, BatchNorm as trained (unfolded), float stem and classifier).
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        /// The packed model file to write (safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Model, for checkpoints without a training config (converted official ones).
        #[arg(long)]
        model: Option<String>,
        /// Dataset the checkpoint was trained on (class names, normalisation), when its config
        /// does not say.
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        data_path: Option<String>,
    },
    /// Classify PNG or JPEG pictures (files or folders of them) with a packed model: top classes
    /// with their probabilities.
    Predict {
        /// A packed model written by `rbnn export`.
        #[arg(long)]
        model: PathBuf,
        /// Picture files, or folders (their .png/.jpg/.jpeg files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Classes listed per picture (at least 1).
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// Benchmarks. Without a subcommand: training and packed inference of every model, a
    /// summary table and the per-kernel breakdowns (or --json).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchWhat>,
        /// Models to time (default: all six).
        #[arg(long, value_delimiter = ',')]
        model: Vec<String>,
        /// Timed training steps per model.
        #[arg(long, default_value_t = 30)]
        steps: usize,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write a folder in ImageNet's layout of synthetic photo-like JPEGs (for the data loader's
    /// benchmark and tests where ImageNet is not at hand).
    #[command(hide = true)]
    MakeImagenetLike {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, default_value_t = 50)]
        train_per_class: usize,
        #[arg(long, default_value_t = 10)]
        val_per_class: usize,
        #[arg(long, default_value_t = 90)]
        quality: u8,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Inference img/s of the packed 1-bit engine against the float evaluation path, with the
    /// model sizes (initialised weights, synthetic input shaped as the model's dataset: CIFAR-10
    /// 3x32x32, ImageNet 3x224x224).
    Infer {
        /// Models to time (default: all six).
        #[arg(long, value_delimiter = ',')]
        model: Vec<String>,
        /// Batch sizes (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 256, 1024])]
        batch: Vec<usize>,
        /// Timed runs per measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// GFLOP/s of the float conv kernels (forward, data gradient, weight gradient).
    Kernels {
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Instead, time every valid tile shape of the tiled kernels at each layer shape of the
        /// four models and print the fastest ones (how the per-shape tiles were chosen).
        #[arg(long)]
        sweep: bool,
    },
    /// The sum of the gradient arena over the ranks of a data-parallel run, per step: read-back,
    /// exchange, write back (start it with mpirun; needs an rbnn built with --features mpi).
    Allreduce {
        /// Models whose gradient arena to sum (default: all of them).
        #[arg(long, value_delimiter = ',')]
        model: Vec<String>,
        /// Arena sizes in f32 elements to measure as well (comma-separated), e.g. 11700216 for
        /// the ImageNet ResNet-18 of the official code.
        #[arg(long, value_delimiter = ',')]
        elements: Vec<usize>,
        /// Timed steps per size (the median is reported).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Images per second of the streaming ImageNet loader (read, decode, transform, batch), per
    /// thread and in total, for the train and the validation transform. No GPU needed.
    Data {
        /// imagenet (224x224 crops) or imagenet:SIZE.
        #[arg(long, default_value = "imagenet")]
        dataset: String,
        /// The ImageNet folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG).
        #[arg(long)]
        data_path: PathBuf,
        /// Decoding threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Images timed per transform (after one untimed batch).
        #[arg(long, default_value_t = 2048)]
        images: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// The model's training rate in img/s (from `rbnn bench train` on the training GPU): say
        /// whether the loader keeps up with it.
        #[arg(long)]
        train_rate: Option<f64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Training img/s on synthetic data shaped as each model's dataset, the rotation update, a
    /// per-kernel breakdown, and the buffer total planned before anything is allocated.
    Train {
        /// Models to time (default: all six).
        #[arg(long, value_delimiter = ',')]
        model: Vec<String>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// resnet20_1w1a, resnet20_bireal_1w1a, resnet18_1w1a, vgg_small_1w1a (CIFAR models), or
    /// resnet18_1w1a_imagenet, resnet34_1w1a_imagenet (the official ImageNet resnet18_1w1a and
    /// resnet34_1w1a, renamed apart from the CIFAR resnet18_1w1a; inputs of 193 to 224 pixels).
    #[arg(long, default_value = "resnet20_1w1a")]
    model: String,
    /// embedded (the Fashion-MNIST subset in the binary), cifar10, cifar100, mnist,
    /// fashion-mnist, folder or folder:SIZE, imagenet (streamed from --data-path; 224x224) or
    /// imagenet:SIZE (crops of SIZE, for quick runs).
    #[arg(long, default_value = "fashion-mnist-subset")]
    dataset: String,
    /// Folder of the dataset files (not for the embedded dataset).
    #[arg(long)]
    data_path: Option<String>,
    /// The defaults of the flags below: official (the paper's recipe, docs/numerics.md section 9)
    /// or fast (the short-budget recipe of section 9.1: Adam, lr 5e-3, batch 16, theta from 0.1,
    /// no augmentation, ...). Explicit flags override the recipe's values; the checkpoint records
    /// what was used.
    #[arg(long, value_enum, default_value_t = Recipe::Official)]
    recipe: Recipe,
    /// [default: 10 for official (the paper trains 400-1000, which wants a GPU); fast: 3]
    #[arg(long)]
    epochs: Option<usize>,
    /// [default: official 0.1; fast 5e-3]
    #[arg(long)]
    lr: Option<f64>,
    /// Samples per optimizer step: the global batch, split evenly over the ranks of an mpirun
    /// job and the micro-batches of --accumulate [default: official 256; fast 16].
    #[arg(short = 'b', long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step (gradients summed in order and averaged; BatchNorm
    /// statistics per micro-batch): the batch of a step in less GPU memory.
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    #[arg(long, default_value_t = 128)]
    batch_size_test: usize,
    /// sgd (official) or adam (fast).
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// L2 weight decay (SGD and Adam alike) [default: official 1e-4; fast 0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Parameter groups without weight decay, comma-separated: weights, theta, alpha, bn; or
    /// none [default: official none; fast theta,alpha].
    #[arg(long)]
    no_decay_on: Option<String>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    momentum: Option<f64>,
    /// Adam's beta1 [default: 0.9].
    #[arg(long)]
    adam_beta1: Option<f64>,
    /// Adam's beta2 [default: 0.999].
    #[arg(long)]
    adam_beta2: Option<f64>,
    /// Adam's epsilon [default: 1e-8].
    #[arg(long)]
    adam_eps: Option<f64>,
    /// Initial rotation gate theta of every binary conv, in radians [default: official pi/2;
    /// fast 0.1].
    #[arg(long)]
    theta_init: Option<f64>,
    /// Learning rate of theta as a multiple of --lr [default: 1].
    #[arg(long)]
    theta_lr_scale: Option<f64>,
    /// Learning rate of alpha as a multiple of --lr [default: 1].
    #[arg(long)]
    alpha_lr_scale: Option<f64>,
    /// Initial gamma of every BatchNorm2d [default: the model's own: 1e-8 for the resnet20
    /// models, 1 for the others].
    #[arg(long)]
    bn_gamma_init: Option<f64>,
    /// Random crops and flips of the training images: true or false [default: official true;
    /// fast false].
    #[arg(long, action = clap::ArgAction::Set)]
    augment: Option<bool>,
    /// Tmin of ApproxSign's t/k schedule [default: 1e-2].
    #[arg(long)]
    tmin: Option<f64>,
    /// Tmax of ApproxSign's t/k schedule [default: 10].
    #[arg(long)]
    tmax: Option<f64>,
    #[arg(long, value_enum, default_value_t = LrType::Cos)]
    lr_type: LrType,
    /// When the learning rate changes: every epoch (the official code) or every step (the same
    /// closed form on a continuous clock) [default: official epoch; fast step].
    #[arg(long, value_enum)]
    lr_update: Option<LrUpdate>,
    /// Milestone epochs of the step schedule (comma-separated).
    #[arg(long, value_delimiter = ',')]
    lr_decay_step: Vec<usize>,
    /// Linear warm-up over the first 5 epochs.
    #[arg(long)]
    warm_up: bool,
    /// Run the rotation update every this many epochs.
    #[arg(long, default_value_t = 1)]
    rotation_update: usize,
    /// Keep activations full precision (1-bit weights only).
    #[arg(long)]
    a32: bool,
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    max_train_images: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    max_test_images: Option<usize>,
    /// Threads decoding a streamed dataset (imagenet); default one per core.
    #[arg(long, default_value_t = 0)]
    data_threads: usize,
    /// Stop training within SECONDS of wall clock (from the start of training; the last
    /// evaluation and checkpoints come after it). After its first 20 steps the run measures its
    /// rate, plans as many steps as fit (at most --epochs) and fits the learning-rate and t/k
    /// schedules onto them; it plans again when its rate moves, and records every plan in the
    /// checkpoints and metrics.jsonl. Such a run cannot be resumed.
    #[arg(long, value_name = "SECONDS", conflicts_with = "resume")]
    time_budget: Option<f64>,
    /// Run directory: checkpoints, metrics.jsonl, curves.png. Default: a new runs/run-NNN for
    /// every run (runs/latest points at the newest one that has finished an epoch); with
    /// --resume, the checkpoint's own directory. A directory that holds a run is refused unless
    /// resuming it or --overwrite.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from this checkpoint (usually RUN/last.safetensors), in its directory.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace the run already in --out (its checkpoints, metrics and curves are removed).
    #[arg(long, requires = "out", conflicts_with = "resume")]
    overwrite: bool,
}

#[derive(Args)]
struct StepArgs {
    /// The model, as for `rbnn train --model` (resnet18_1w1a_imagenet is the official ImageNet
    /// resnet18_1w1a).
    #[arg(long)]
    model: String,
    /// Parameters and buffers by official name (safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// "input" [N,C,H,W] f32 and "target" [N] int64 or int32 (safetensors).
    #[arg(long)]
    batch: PathBuf,
    /// 0-based epoch whose t and k the backward uses.
    #[arg(long)]
    epoch: Option<usize>,
    #[arg(long, default_value_t = 1000)]
    epochs: usize,
    #[arg(long, default_value_t = 1e-2)]
    tmin: f64,
    #[arg(long, default_value_t = 10.0)]
    tmax: f64,
    /// Run the rotation update before the forward and write the new R1/R2 too.
    #[arg(long)]
    rotate: bool,
    /// Only the logits of the inference-mode forward.
    #[arg(long)]
    eval: bool,
    /// Initialise tensors missing from --weights as the model does (else they are an error).
    #[arg(long)]
    init_missing: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    a32: bool,
    /// Classes, when --weights has no classifier.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    // Before any thread exists: the drivers read it when the wgpu instance is created.
    rbnn::gpu::environment::prepare();
    let cli = Cli::parse();
    match run(cli) {
        Ok(0) => {}
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn gpu(adapter: Option<&str>) -> Result<Gpu> {
    let gpu = Gpu::new(adapter)?;
    eprintln!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    Ok(gpu)
}

/// Runs the command; returns the exit status (0, or 1 after a partial failure that was already
/// reported, or 130/143 after a training run stopped by SIGINT/SIGTERM).
fn run(cli: Cli) -> Result<i32> {
    let adapter = cli.adapter.as_deref();
    match cli.command {
        Command::Info => info(adapter).map(|()| 0),
        Command::Train(a) => train(adapter, *a),
        Command::Predict { model, paths, top } => predict(adapter, &model, &paths, top),
        command => run_other(adapter, command).map(|()| 0),
    }
}

fn run_other(adapter: Option<&str>, command: Command) -> Result<()> {
    match command {
        Command::Info | Command::Train(_) | Command::Predict { .. } => {
            unreachable!("handled by run")
        }
        Command::Eval {
            checkpoint,
            dataset,
            data_path,
            model,
            batch_size_test,
            max_test_images,
        } => {
            if max_test_images == Some(0) {
                bail!("--max-test-images must be at least 1");
            }
            let packed = rbnn::train::checkpoint::is_packed_model(&checkpoint)?;
            let gpu = gpu(adapter)?;
            let (cfg, totals) = if packed {
                if let Some(m) = &model {
                    let own = rbnn::infer::PackedModel::load(&checkpoint)?.meta.kind;
                    if ModelKind::parse(m)? != own {
                        bail!(
                            "{} is a packed {}; --model {m} does not apply to it",
                            checkpoint.display(),
                            own.name()
                        );
                    }
                }
                rbnn::infer::eval::eval_packed(
                    &gpu,
                    &checkpoint,
                    dataset.as_deref(),
                    data_path.as_deref(),
                    batch_size_test,
                    max_test_images,
                )?
            } else {
                let mut cfg = None;
                if dataset.is_some()
                    || model.is_some()
                    || data_path.is_some()
                    || max_test_images.is_some()
                {
                    let base = rbnn::train::checkpoint::load(&checkpoint)?
                        .info()
                        .map(|i| i.config)
                        .unwrap_or_default();
                    cfg = Some(Config {
                        model: model.unwrap_or(base.model),
                        data_path: data_path.or(if dataset.is_none() {
                            base.data_path
                        } else {
                            None
                        }),
                        dataset: dataset.unwrap_or(base.dataset),
                        batch_size_test,
                        max_test_images: max_test_images.or(base.max_test_images),
                        ..base
                    });
                }
                rbnn::train::trainer::eval_checkpoint(&gpu, &checkpoint, cfg.as_ref())?
            };
            // The dataset by its canonical name, so a checkpoint and its export print alike.
            let dataset = cfg
                .dataset
                .parse::<rbnn::data::DatasetKind>()
                .map_or(cfg.dataset.clone(), |k| k.to_string());
            println!(
                "{} on {} ({} test images): loss {:.4}, top-1 {:.2}%, top-5 {:.2}%",
                cfg.model,
                dataset,
                totals.samples,
                totals.mean_loss(),
                100.0 * totals.top1_accuracy(),
                100.0 * totals.top5_accuracy()
            );
            Ok(())
        }
        Command::Step(a) => {
            let gpu = gpu(adapter)?;
            let kind = ModelKind::parse(&a.model)?;
            let opts = StepOptions {
                epoch: a.epoch,
                epochs: a.epochs,
                tmin: a.tmin,
                tmax: a.tmax,
                rotate: a.rotate,
                eval: a.eval,
                init_missing: a.init_missing,
                seed: a.seed,
                a32: a.a32,
                classes: a.classes,
            };
            let out = run_step(&gpu, kind, &a.weights, &a.batch, &opts)?;
            rbnn::train::checkpoint::save_atomic(&a.out, &out, &Default::default())?;
            println!("wrote {} tensors to {}", out.len(), a.out.display());
            Ok(())
        }
        Command::Bench {
            what:
                Some(BenchWhat::Allreduce {
                    model,
                    elements,
                    steps,
                    json,
                }),
            ..
        } => {
            let cluster = Cluster::from_environment()?;
            let result = bench_allreduce(adapter, &cluster, &model, &elements, steps, json);
            cluster.finish(result.map(|()| 0)).map(|_| ())
        }
        Command::Bench {
            what:
                Some(BenchWhat::Train {
                    model,
                    batch,
                    steps,
                    json,
                }),
            ..
        } => {
            let gpu = gpu(adapter)?;
            let kinds = parse_models(&model)?;
            let mut all = Vec::new();
            for kind in kinds {
                let b = rbnn::bench::train(&gpu, kind, batch, steps)
                    .with_context(|| format!("benchmarking {}", kind.name()))?;
                if !json {
                    print!("{}", rbnn::bench::format_train(&b));
                }
                all.push(b);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
            Ok(())
        }
        Command::Export {
            checkpoint,
            out,
            model,
            dataset,
            data_path,
        } => {
            let gpu = gpu(adapter)?;
            let opts = rbnn::infer::export::ExportOptions {
                model,
                dataset,
                data_path,
            };
            let report = rbnn::infer::export::export_checkpoint(&gpu, &checkpoint, &out, &opts)?;
            println!("wrote {}", out.display());
            print!("{}", report.describe());
            Ok(())
        }
        Command::Bench {
            what:
                Some(BenchWhat::Infer {
                    model,
                    batch,
                    runs,
                    json,
                }),
            ..
        } => {
            let gpu = gpu(adapter)?;
            let kinds = parse_models(&model)?;
            if batch.contains(&0) {
                anyhow::bail!("--batch sizes must be at least 1");
            }
            use rbnn::infer::bench;
            if !json {
                print!("{}", bench::format_header());
            }
            let mut rows = Vec::new();
            for kind in kinds {
                let r = bench::infer(&gpu, kind, &batch, runs)
                    .with_context(|| format!("benchmarking inference of {}", kind.name()))?;
                if !json {
                    // Rows as they come: a slow adapter shows the first models early.
                    r.iter()
                        .for_each(|row| print!("{}", bench::format_row(row)));
                }
                rows.extend(r);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", bench::format_footer(&rows));
            }
            Ok(())
        }
        Command::Bench {
            what: None,
            model,
            steps,
            json,
        } => {
            let gpu = gpu(adapter)?;
            let kinds = parse_models(&model)?;
            if gpu.is_software() {
                eprintln!(
                    "note: {} runs on the CPU; `rbnn bench` trains at batch 256 ({steps} steps per \
                     model, plus warm-up): several minutes for resnet20, far longer for resnet18 and \
                     vgg_small. For a quick look: rbnn bench train --model resnet20_1w1a --batch 32 \
                     --steps 3",
                    gpu.info.name
                );
            }
            let all = rbnn::bench::all(&gpu, &kinds, steps.max(1), |line| eprintln!("{line}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", rbnn::bench::format_all(&all));
            }
            Ok(())
        }
        Command::Bench {
            what:
                Some(BenchWhat::Data {
                    dataset,
                    data_path,
                    threads,
                    images,
                    batch,
                    train_rate,
                    json,
                }),
            ..
        } => {
            let rows = rbnn::data::bench::run(&dataset, &data_path, threads, batch, images)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", rbnn::data::bench::format_rates(&rows, train_rate));
            }
            Ok(())
        }
        Command::MakeImagenetLike {
            out,
            classes,
            train_per_class,
            val_per_class,
            quality,
            seed,
        } => {
            let opts = rbnn::data::synth::SynthOptions {
                classes,
                train_per_class,
                val_per_class,
                quality,
                seed,
                ..Default::default()
            };
            let r = rbnn::data::synth::write_imagenet_like(&out, &opts)?;
            println!(
                "wrote {} JPEGs to {}: mean {:.1} KB, {:.0} pixels ({:.2} bits per pixel)",
                r.files,
                out.display(),
                r.bytes as f64 / r.files as f64 / 1000.0,
                r.pixels as f64 / r.files as f64,
                r.bytes as f64 * 8.0 / r.pixels as f64
            );
            Ok(())
        }
        Command::Bench {
            what: Some(BenchWhat::Kernels { batch, sweep }),
            ..
        } => {
            let gpu = gpu(adapter)?;
            if sweep {
                print!("{}", rbnn::bench::sweep(&gpu, batch)?);
                return Ok(());
            }
            let rows = rbnn::bench::kernels(&gpu, batch)?;
            print!("{}", rbnn::bench::format_kernels(&rows));
            Ok(())
        }
    }
}

/// `rbnn bench allreduce` as one rank: the gradient arenas of `models` (all of them when neither
/// models nor sizes are named) and arenas of `elements` f32.
fn bench_allreduce(
    adapter: Option<&str>,
    cluster: &Cluster,
    models: &[String],
    elements: &[usize],
    steps: usize,
    json: bool,
) -> Result<()> {
    let gpu = Gpu::for_local_rank(adapter, cluster.local_rank())?;
    let kinds = match (models.is_empty(), elements.is_empty()) {
        (true, false) => Vec::new(),
        _ => parse_models(models)?,
    };
    let mut sizes: Vec<(String, usize)> = Vec::new();
    for kind in kinds {
        // The arena of the model on its own dataset, as training allocates it (alignment gaps
        // included).
        let dataset = kind.native_dataset();
        let (classes, channels) = (kind.native_classes(), dataset.facts().channels);
        let params =
            rbnn::model::Params::new(&gpu, rbnn::model::ModelSpec::new(kind, classes, channels))?;
        sizes.push((format!("{} ({})", kind.name(), dataset), params.grads.len()));
    }
    sizes.extend(elements.iter().map(|&n| (format!("{n} elements"), n)));
    let mut rows = Vec::new();
    for (what, n) in sizes {
        let row = rbnn::distributed::bench::allreduce(&gpu, cluster, &what, n, steps.max(1))?;
        rows.push(row);
    }
    if cluster.is_root() {
        match json {
            true => println!("{}", serde_json::to_string_pretty(&rows)?),
            false => print!("{}", rbnn::distributed::bench::format(&rows)),
        }
    }
    Ok(())
}

/// The models named on the command line, or all of them.
fn parse_models(names: &[String]) -> Result<Vec<ModelKind>> {
    if names.is_empty() {
        return Ok(ModelKind::ALL.to_vec());
    }
    names.iter().map(|m| ModelKind::parse(m)).collect()
}

/// `rbnn predict`: every picture that can be read is classified; each one that cannot gets its
/// error on a line of its own, and the exit status is then 1.
fn predict(adapter: Option<&str>, model: &Path, paths: &[PathBuf], top: usize) -> Result<i32> {
    if top == 0 {
        bail!("--top must be at least 1 (the number of classes listed per picture)");
    }
    let files = rbnn::infer::predict::image_files(paths)?;
    let packed = rbnn::infer::PackedModel::load(model)?;
    let gpu = gpu(adapter)?;
    let mut engine = rbnn::infer::Engine::new(&gpu, &packed)?;
    let all = rbnn::infer::predict::predict_files(&gpu, &mut engine, &files, top)?;
    let mut failed = 0;
    for (file, result) in files.iter().zip(&all) {
        match result {
            Ok(predictions) => print!(
                "{}",
                rbnn::infer::predict::format_predictions(file, predictions, &engine.meta.classes)
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} pictures could not be classified",
            files.len()
        );
        return Ok(1);
    }
    Ok(0)
}

/// The run directory of `rbnn train`: --out (refused if it holds a run, unless resumed or
/// --overwrite), else the --resume checkpoint's directory, else a new runs/run-NNN.
fn open_run_dir(a: &TrainArgs) -> Result<RunDir> {
    if let Some(r) = &a.resume {
        if !r.is_file() {
            bail!("--resume {}: no such file", r.display());
        }
    }
    match (&a.out, &a.resume) {
        (Some(out), resume) => {
            let existing = match resume {
                _ if a.overwrite => Existing::Overwrite,
                Some(r) => Existing::Resume(r.clone()),
                None => Existing::Refuse,
            };
            RunDir::open(out, existing)
        }
        (None, Some(r)) => {
            let dir = match r.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            // Through symlinks: runs/latest/last.safetensors continues in runs/run-NNN.
            let dir = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            RunDir::open(&dir, Existing::Resume(r.clone()))
        }
        (None, None) => RunDir::numbered(Path::new(RUNS_ROOT)),
    }
}

/// Ctrl-C (SIGINT) and SIGTERM (what batch schedulers send before they kill a job): the first
/// one sets `stop`, and training saves interrupted.safetensors after its current step; a second
/// one exits at once. `status` receives the exit status for after the save: 130 or 143.
/// `announce`: say so when the signal comes (rank 0 of a data-parallel run; the others are quiet).
/// `ranks`: the run's rank count, for the message.
fn handle_interrupts(announce: bool, ranks: usize) -> Result<(Arc<AtomicBool>, Arc<AtomicUsize>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(AtomicUsize::new(0));
    for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        // In this order: a signal that finds `stop` already set exits; the first one sets it.
        signal_hook::flag::register_conditional_shutdown(signal, code, stop.clone())
            .and_then(|_| signal_hook::flag::register_usize(signal, status.clone(), code as usize))
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .context("installing the Ctrl-C and SIGTERM handlers")?;
    }
    if !announce {
        return Ok((stop, status));
    }
    // A step may take seconds: say at once that the signal was seen (a handler cannot print).
    let (seen, which) = (stop.clone(), status.clone());
    std::thread::spawn(move || {
        while !seen.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let name = if which.load(Ordering::Relaxed) == 143 {
            "SIGTERM"
        } else {
            "Ctrl-C"
        };
        match ranks {
            1 => eprintln!(
                "\n{name}: stopping after this step and saving interrupted.safetensors (send it \
                 again to quit at once)"
            ),
            _ => eprintln!(
                "\n{name}: all ranks stop after this step and rank 0 saves \
                 interrupted.safetensors (unless mpirun is ending the job because a rank failed)"
            ),
        }
    });
    Ok((stop, status))
}

/// Epochs of the official recipe when --epochs is not given: a first look (the paper's 400-1000
/// want a GPU).
const OFFICIAL_CLI_EPOCHS: usize = 10;

/// The run's config: the recipe's values, each flag given overriding its own.
fn train_config(a: &TrainArgs) -> Result<Config> {
    let base = a.recipe.config();
    let default_epochs = match a.recipe {
        Recipe::Official => OFFICIAL_CLI_EPOCHS,
        Recipe::Fast => base.epochs,
    };
    let no_decay_on = match &a.no_decay_on {
        Some(list) => parse_groups(list).context("--no-decay-on")?,
        None => base.no_decay_on.clone(),
    };
    Ok(Config {
        model: a.model.clone(),
        dataset: a.dataset.clone(),
        data_path: a.data_path.clone(),
        epochs: a.epochs.unwrap_or(default_epochs),
        lr: a.lr.unwrap_or(base.lr),
        batch_size: a.batch_size.unwrap_or(base.batch_size),
        batch_size_test: a.batch_size_test,
        weight_decay: a.weight_decay.unwrap_or(base.weight_decay),
        momentum: a.momentum.unwrap_or(base.momentum),
        tmin: a.tmin.unwrap_or(base.tmin),
        tmax: a.tmax.unwrap_or(base.tmax),
        lr_type: a.lr_type,
        lr_update: a.lr_update.unwrap_or(base.lr_update),
        lr_decay_step: a.lr_decay_step.clone(),
        warm_up: a.warm_up,
        rotation_update: a.rotation_update,
        a32: a.a32,
        seed: a.seed,
        max_train_images: a.max_train_images,
        max_test_images: a.max_test_images,
        accumulate: a.accumulate,
        ranks: 1,
        data_threads: a.data_threads,
        recipe: a.recipe,
        optimizer: a.optimizer.unwrap_or(base.optimizer),
        adam_beta1: a.adam_beta1.unwrap_or(base.adam_beta1),
        adam_beta2: a.adam_beta2.unwrap_or(base.adam_beta2),
        adam_eps: a.adam_eps.unwrap_or(base.adam_eps),
        theta_init: a.theta_init.unwrap_or(base.theta_init),
        theta_lr_scale: a.theta_lr_scale.unwrap_or(base.theta_lr_scale),
        alpha_lr_scale: a.alpha_lr_scale.unwrap_or(base.alpha_lr_scale),
        no_decay_on,
        bn_gamma_init: a.bn_gamma_init.or(base.bn_gamma_init),
        augment: a.augment.unwrap_or(base.augment),
        time_budget: a.time_budget,
        replans: Vec::new(),
    })
}

fn train(adapter: Option<&str>, a: TrainArgs) -> Result<i32> {
    let cfg = train_config(&a)?;
    cfg.validate()?;
    // One rank without a launcher; under mpirun/srun (in an MPI build) one of several.
    let cluster = Cluster::from_environment()?;
    let result = check_split(cfg.batch_size, cluster.size(), cfg.accumulate)
        .map_err(|e| cluster.agreed(e))
        .and_then(|()| train_as_rank(adapter, &a, &cfg, &cluster));
    cluster.finish(result)
}

/// `rbnn train` as one rank of `cluster`: rank 0 opens the run directory and prints; every rank
/// trains.
fn train_as_rank(
    adapter: Option<&str>,
    a: &TrainArgs,
    cfg: &Config,
    cluster: &Cluster,
) -> Result<i32> {
    let root = cluster.is_root();
    let run = root.then(|| open_run_dir(a));
    let root_dir = run.as_ref().map(|r| match r {
        Ok(run) => Ok(run.dir().display().to_string()),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    });
    let dir = PathBuf::from(cluster.from_root(root_dir)?);
    let run = run.transpose()?;
    // From here on a signal saves what there is (after the first step) instead of killing.
    let (stop, status) = handle_interrupts(root, cluster.size())?;
    if let Some(run) = &run {
        for note in &run.notes {
            eprintln!("note: {note}");
        }
        eprintln!("run directory: {}", run.dir().display());
    }
    let gpu = Gpu::for_local_rank(adapter, cluster.local_rank())?;
    announce_adapters(&gpu, cluster, cfg);
    let place = rbnn::train::trainer::RankPlace {
        cluster,
        run: run.as_ref(),
        files: RunFiles { dir: dir.clone() },
    };
    let summary = rbnn::train::trainer::train_rank(
        &gpu,
        cfg,
        &place,
        a.resume.as_deref(),
        &stop,
        true,
        cfg.epochs,
    )?;
    if summary.interrupted {
        return Ok(status.load(Ordering::Relaxed).max(130) as i32);
    }
    if root {
        println!(
            "done: {} epochs, best test top-1 {:.2}%; run directory {}",
            summary.epochs_run,
            summary.best_top1,
            dir.display()
        );
    }
    // A signal that came during the last evaluation found nothing left to stop; it still ends
    // the process with its status.
    Ok(match stop.load(Ordering::Relaxed) {
        true => status.load(Ordering::Relaxed).max(130) as i32,
        false => 0,
    })
}

/// Rank 0 prints the adapter of every rank (one line for a single rank, as the other commands).
fn announce_adapters(gpu: &Gpu, cluster: &Cluster, cfg: &Config) {
    let mine = format!(
        "{} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    let all = cluster.all_gather_bytes(mine.as_bytes());
    if !cluster.is_root() {
        return;
    }
    if cluster.size() == 1 {
        eprintln!("adapter: {mine}");
        return;
    }
    let parts = cluster.size() * cfg.accumulate;
    eprintln!(
        "data-parallel run of {} ranks ({}): each global batch of {} is {} micro-batch(es) of {} \
         per rank",
        cluster.size(),
        cluster.launcher(),
        cfg.batch_size,
        cfg.accumulate,
        cfg.batch_size / parts,
    );
    for (rank, adapter) in all.iter().enumerate() {
        eprintln!("rank {rank} adapter: {}", String::from_utf8_lossy(adapter));
    }
}

fn info(adapter: Option<&str>) -> Result<()> {
    let all = Gpu::adapters();
    println!("adapters ({}):", all.len());
    for (i, a) in all.iter().enumerate() {
        println!("[{i}] {}", a.describe());
    }
    let gpu = Gpu::new(adapter)?;
    println!(
        "\nusing: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    if gpu.is_software() {
        println!("note: this is a software adapter: correct, but far slower than a GPU");
    }
    Ok(())
}
