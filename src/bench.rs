//! Benchmarks: `rbnn bench kernels` (GFLOP/s of the float conv kernels at the layer shapes of the
//! models) and `rbnn bench train` (training img/s, the rotation update, and a per-kernel breakdown
//! of one step), timed on the GPU with timestamp queries where the adapter has them.

pub use crate::gpu::{breakdown, format_breakdown, KernelShare};
use crate::gpu::{Dispatch, Gpu, GpuTimer};
use crate::model::network::{Mode, Network, StepScalars};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::ops::conv::{self, ConvShape, Tiles};
use crate::ops::conv_coop;
use crate::ops::sgd;
use crate::rbnn::binconv;
use crate::rbnn::rotation::{RotationTiming, RotationUpdate};
use crate::rng::Rng;
use crate::train::memory::{self, TrainingMemory, TrainingShape};
use anyhow::{Context, Result};
use std::time::Instant;

/// Timed runs per kernel after one untimed warm-up run; the median is reported.
const RUNS: usize = 5;

/// One kernel at one layer shape.
#[derive(Clone, Debug)]
pub struct KernelBenchRow {
    /// The model layer the shape comes from, e.g. "resnet20 stage 1".
    pub layer: &'static str,
    /// "forward", "data grad", "weight grad", "forward (tiled)" or "forward (naive)".
    pub kernel: &'static str,
    pub shape: ConvShape,
    /// "direct" (the subgroup kernels), the tile shape (bm x bn x bk), or "-" (naive).
    pub tiles: String,
    /// 2 FLOP per multiply-add.
    pub gflop: f64,
    /// Median seconds of the timed runs.
    pub seconds: f64,
    pub gflops: f64,
    /// "timestamp" (GPU timestamp queries) or "wall clock" (submit and wait, adapters without
    /// timestamps: includes the submission overhead).
    pub method: &'static str,
}

/// The 3x3, pad 1 layer shapes at `batch`: ResNet-20's three stages and resnet18's last two.
/// The naive forward, far slower, runs at the ResNet-20 shapes only.
fn layers(batch: usize) -> [(&'static str, ConvShape, bool); 5] {
    let sq = |ci, hw, co| ConvShape::square(batch, ci, hw, co, 3, 1, 1);
    [
        ("resnet20 stage 1", sq(16, 32, 16), true),
        ("resnet20 stage 2", sq(32, 16, 32), true),
        ("resnet20 stage 3", sq(64, 8, 64), true),
        ("resnet18 stage 3", sq(256, 8, 256), false),
        ("resnet18 stage 4", sq(512, 4, 512), false),
    ]
}

fn tiles_label(t: Tiles) -> String {
    format!("{}x{}x{}", t.bm, t.bn, t.bk)
}

/// Warm-up, then RUNS timed runs of `dispatches` as one group each; the median in seconds.
fn time_median(gpu: &Gpu, timer: &GpuTimer, dispatches: &[&Dispatch]) -> Result<f64> {
    gpu.run(dispatches)?;
    let groups: Vec<Vec<&Dispatch>> = (0..RUNS).map(|_| dispatches.to_vec()).collect();
    let mut seconds = timer.time_groups(gpu, &groups)?.seconds;
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[RUNS / 2])
}

/// Times the conv forward, data gradient and weight gradient (and the naive forward as a baseline)
/// at the model layer shapes with batch `batch`.
pub fn kernels(gpu: &Gpu, batch: usize) -> Result<Vec<KernelBenchRow>> {
    let timer = GpuTimer::new(gpu, RUNS as u32);
    let mut rng = Rng::new(0x00c0_ffee);
    let mut rows = Vec::new();
    for (layer, s, with_naive) in layers(batch) {
        let x = gpu.try_tensor("bench x", &[s.input_len()])?;
        let w = gpu.try_tensor("bench w", &[s.weight_len()])?;
        let y = gpu.try_tensor("bench y", &[s.output_len()])?;
        let dy = gpu.try_tensor("bench dy", &[s.output_len()])?;
        let dx = gpu.try_tensor("bench dx", &[s.input_len()])?;
        let dw = gpu.try_tensor("bench dw", &[s.weight_len()])?;
        gpu.write(&x, &rng.uniform_vec(s.input_len(), -1.0, 1.0));
        gpu.write(&w, &rng.uniform_vec(s.weight_len(), -1.0, 1.0));
        gpu.write(&dy, &rng.uniform_vec(s.output_len(), -1.0, 1.0));

        // The kernels training uses (the direct subgroup kernels where the adapter supports
        // them), and the tiled fallback beside them for comparison.
        let direct = conv::direct_supported(gpu, &s);
        let forward_tiles = Tiles::for_columns(s.co);
        let data_tiles = Tiles::for_data_grad(s.ci, s.h * s.w);
        let weight_tiles = Tiles::for_weight_grad(s.co);
        let label = |t: Tiles| {
            if direct {
                "direct".to_string()
            } else {
                tiles_label(t)
            }
        };
        let forward = conv::forward(gpu, &s, &x, &w, &y)?;
        let data = conv::backward_data(gpu, &s, &dy, &w, &dx)?;
        let weight = conv::backward_weight(gpu, &s, &x, &dy, &dw)?;
        let tiled_forward = conv::forward_with(gpu, &s, forward_tiles, &x, &w, &y)?;
        let mut cases = vec![
            ("forward", label(forward_tiles), vec![&forward]),
            ("data grad", label(data_tiles), vec![&data]),
            (
                "weight grad",
                format!("{} / {} splits", label(weight_tiles), weight.splits()),
                weight.dispatches(),
            ),
        ];
        let tiled_data;
        let tiled_weight;
        if direct {
            tiled_data = conv::backward_data_with(gpu, &s, data_tiles, &dy, &w, &dx)?;
            tiled_weight = conv::backward_weight_with(gpu, &s, weight_tiles, &x, &dy, &dw)?;
            cases.push((
                "forward (tiled)",
                tiles_label(forward_tiles),
                vec![&tiled_forward],
            ));
            cases.push((
                "data grad (tiled)",
                tiles_label(data_tiles),
                vec![&tiled_data],
            ));
            cases.push((
                "weight grad (tiled)",
                format!(
                    "{} / {} splits",
                    tiles_label(weight_tiles),
                    tiled_weight.splits()
                ),
                tiled_weight.dispatches(),
            ));
        }
        // The tensor-core kernels, on a ternary weight / activation operand as in training.
        let coop = if conv_coop::supported(gpu) {
            let alpha = gpu.try_tensor("bench alpha", &[s.co])?;
            gpu.write(&alpha, &rng.uniform_vec(s.co, 0.5, 1.5));
            let ternary = |len: usize, rng: &mut Rng| -> Vec<f32> {
                (0..len).map(|_| rng.below(3) as f32 - 1.0).collect()
            };
            gpu.write(&w, &ternary(s.weight_len(), &mut rng));
            gpu.write(&x, &ternary(s.input_len(), &mut rng));
            let data = conv_coop::backward_data(gpu, &s, &dy, &w, &alpha, &dx)?;
            let weight = conv_coop::backward_weight(gpu, &s, &x, &dy, &dw)?;
            Some((alpha, data, weight))
        } else {
            None
        };
        // The 1-bit forward of the binary layers (XOR-popcount on packed bits; random bits).
        let abits = gpu.try_tensor("bench abits", &[binconv::activation_bits_len(&s)])?;
        let wbits = gpu.try_tensor("bench wbits", &[binconv::weight_bits_len(&s)])?;
        let ones = gpu.try_tensor("bench alpha ones", &[s.co])?;
        let random_bits = |len: usize, rng: &mut Rng| -> Vec<u32> {
            (0..len).map(|_| rng.below(1 << 31) as u32).collect()
        };
        gpu.write(&abits, &random_bits(abits.len(), &mut rng));
        gpu.write(&wbits, &random_bits(wbits.len(), &mut rng));
        gpu.write(&ones, &vec![1f32; s.co]);
        let binary = binconv::binconv(gpu, &s, &abits, &wbits, &ones, &y)?;
        let binary_label = if direct { "direct" } else { "tiled" };
        cases.push(("binary forward", binary_label.into(), vec![&binary]));
        if let Some((_, data, weight)) = &coop {
            cases.push(("data grad (tensor cores)", "64x64x32".into(), vec![data]));
            cases.push((
                "weight grad (tensor cores)",
                format!("64x64x32 / {} splits", weight.splits()),
                weight.dispatches(),
            ));
        }
        let naive = if with_naive {
            Some(conv::forward_naive(gpu, &s, &x, &w, &y)?)
        } else {
            None
        };
        if let Some(d) = &naive {
            cases.push(("forward (naive)", "-".to_string(), vec![d]));
        }
        let gflop = s.flop() * 1e-9;
        for (kernel, tiles, dispatches) in cases {
            let seconds = time_median(gpu, &timer, &dispatches)
                .with_context(|| format!("timing conv {kernel} at {layer} {s:?}"))?;
            rows.push(KernelBenchRow {
                layer,
                kernel,
                shape: s,
                tiles,
                gflop,
                seconds,
                gflops: gflop / seconds,
                method: timer.method(),
            });
        }
    }
    Ok(rows)
}

/// The 3x3, pad 1 binary-layer shapes of all four models at `batch` (stride 1; the stride-2
/// layers have the same output shapes).
fn model_layers(batch: usize) -> Vec<(&'static str, ConvShape)> {
    let sq = |ci, hw, co| ConvShape::square(batch, ci, hw, co, 3, 1, 1);
    vec![
        ("resnet20 stage 1", sq(16, 32, 16)),
        ("resnet20 stage 2", sq(32, 16, 32)),
        ("resnet20 stage 3", sq(64, 8, 64)),
        ("resnet18 stage 1", sq(64, 32, 64)),
        ("resnet18 stage 2", sq(128, 16, 128)),
        ("resnet18 stage 3", sq(256, 8, 256)),
        ("resnet18 stage 4", sq(512, 4, 512)),
        ("vgg_small 32x32", sq(128, 32, 128)),
        ("vgg_small 16x16", sq(256, 16, 256)),
        ("vgg_small 8x8", sq(512, 8, 512)),
    ]
}

/// Every tile shape `Tiles::check` accepts with bm, bn in 16..=128 and bk in {8, 16, 32}.
fn candidate_tiles(gpu: &Gpu) -> Vec<Tiles> {
    let mut all = Vec::new();
    for bm in [16, 32, 64, 128] {
        for bn in [16, 32, 64, 128] {
            for bk in [8, 16, 32] {
                let t = Tiles { bm, bn, bk };
                if t.check(gpu).is_ok() {
                    all.push(t);
                }
            }
        }
    }
    all
}

/// `rbnn bench kernels --sweep`: for each model layer shape and each tiled kernel, the three
/// fastest tile shapes and the default one, timed like `kernels`.
pub fn sweep(gpu: &Gpu, batch: usize) -> Result<String> {
    let timer = GpuTimer::new(gpu, RUNS as u32);
    let mut rng = Rng::new(0x5eed);
    let tiles = candidate_tiles(gpu);
    let mut out = format!(
        "{} tile shapes per kernel; median of {RUNS} runs ({})\n",
        tiles.len(),
        timer.method()
    );
    for (layer, s) in model_layers(batch) {
        let x = gpu.try_tensor("sweep x", &[s.input_len()])?;
        let w = gpu.try_tensor("sweep w", &[s.weight_len()])?;
        let y = gpu.try_tensor("sweep y", &[s.output_len()])?;
        let dx = gpu.try_tensor("sweep dx", &[s.input_len()])?;
        let dw = gpu.try_tensor("sweep dw", &[s.weight_len()])?;
        gpu.write(&x, &rng.uniform_vec(s.input_len(), -1.0, 1.0));
        gpu.write(&w, &rng.uniform_vec(s.weight_len(), -1.0, 1.0));
        gpu.write(&y, &rng.uniform_vec(s.output_len(), -1.0, 1.0));
        let gflop = s.flop() * 1e-9;
        let defaults = [
            Tiles::for_columns(s.co),
            Tiles::for_data_grad(s.ci, s.h * s.w),
            Tiles::for_weight_grad(s.co),
        ];
        for (kernel, default) in ["forward", "data grad", "weight grad"].iter().zip(defaults) {
            let mut timed: Vec<(f64, Tiles, usize)> = Vec::new();
            for &t in &tiles {
                let (dispatches, splits) = match *kernel {
                    "forward" => (vec![conv::forward_with(gpu, &s, t, &x, &w, &y)?], 1),
                    "data grad" => (vec![conv::backward_data_with(gpu, &s, t, &y, &w, &dx)?], 1),
                    _ => {
                        let b = conv::backward_weight_with(gpu, &s, t, &x, &y, &dw)?;
                        let splits = b.splits();
                        (b.into_dispatches(), splits)
                    }
                };
                let refs: Vec<&Dispatch> = dispatches.iter().collect();
                let seconds = time_median(gpu, &timer, &refs)?;
                timed.push((seconds, t, splits));
            }
            timed.sort_by(|a, b| a.0.total_cmp(&b.0));
            let row = |(seconds, t, splits): &(f64, Tiles, usize)| {
                format!(
                    "{} ({splits} splits) {:.3} ms {:.0} GFLOP/s",
                    tiles_label(*t),
                    seconds * 1e3,
                    gflop / seconds
                )
            };
            let default_row = timed
                .iter()
                .find(|r| r.1 == default)
                .map(row)
                .unwrap_or_default();
            out += &format!(
                "{layer:<17} {kernel:<12} best: {} | {} | {}; default {}\n",
                row(&timed[0]),
                row(&timed[1.min(timed.len() - 1)]),
                row(&timed[2.min(timed.len() - 1)]),
                default_row
            );
        }
    }
    Ok(out)
}

/// A readable table of `rows`, one line per kernel and shape, and how they were timed.
pub fn format_kernels(rows: &[KernelBenchRow]) -> String {
    let mut out = format!(
        "{:<17} {:<22} {:<26} {:<24} {:>8} {:>10} {:>9}\n",
        "layer", "shape", "kernel", "tiles", "GFLOP", "ms", "GFLOP/s"
    );
    for r in rows {
        let s = &r.shape;
        let shape = format!("{}x{}x{} {}->{} k{}", s.n, s.h, s.w, s.ci, s.co, s.kh);
        out += &format!(
            "{:<17} {:<22} {:<26} {:<24} {:>8.3} {:>10.3} {:>9.1}\n",
            r.layer,
            shape,
            r.kernel,
            r.tiles,
            r.gflop,
            r.seconds * 1e3,
            r.gflops
        );
    }
    if let Some(r) = rows.first() {
        out += &format!(
            "timed with {}; median of {RUNS} runs after a warm-up; 2 FLOP per multiply-add\n",
            r.method
        );
    }
    out
}

/// `rbnn bench train`: steady-state training speed of one model on synthetic data.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainBench {
    pub model: String,
    pub adapter: String,
    pub batch: usize,
    pub steps: usize,
    /// Training images per second (forward, loss, backward, SGD; one submit per step).
    pub images_per_second: f64,
    pub step_ms: f64,
    /// The per-epoch rotation update of every binary conv (3 iterations), wall clock.
    pub rotation_update_ms: f64,
    /// Its submits (GPU products, readbacks, waits) and host work (SVDs, uploads).
    pub rotation_timing: RotationTiming,
    pub dispatches_per_step: usize,
    /// The buffers of this benchmark's parameters, training network and rotation update, as
    /// `train::memory::plan` counts them on this adapter.
    pub memory: TrainingMemory,
    /// "timestamp" or "wall clock".
    pub breakdown_method: String,
    pub breakdown: Vec<KernelShare>,
}

/// Times `steps` training steps of `kind` at `batch` on synthetic data shaped as the model's own
/// dataset (CIFAR-10: 3x32x32, 10 classes; ImageNet: 3x224x224, 1000 classes), after two warm-up
/// steps; then the rotation update; then each dispatch of one step on its own (timestamp
/// queries) for the breakdown. The buffer total is planned first, so a batch over the adapter's
/// limits fails before anything is allocated.
pub fn train(gpu: &Gpu, kind: ModelKind, batch: usize, steps: usize) -> Result<TrainBench> {
    let classes = kind.native_classes();
    let image = kind.native_dataset().facts().input();
    let shape = TrainingShape {
        kind,
        classes,
        image,
        batch,
        tail: 0,
        eval_batch: 0,
    };
    let memory = memory::plan(&gpu.planner(gpu.limits.clone(), false), &shape)?;
    let spec = ModelSpec::new(kind, classes, image[0]);
    let mut rng = Rng::new(7);
    let values = spec.initialise(&mut rng);
    let params = Params::new(gpu, spec)?;
    params.upload(gpu, &values)?;
    let net = Network::new(gpu, &params, batch, Mode::Train, false, image)?;
    gpu.write(&net.input, &rng.normal_vec(net.input.len(), 1.0));
    let targets: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
    gpu.write(&net.target, &targets);
    let sgd_step = sgd::SgdStep {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
        first_step: false,
    };
    let sgd = sgd::step(
        gpu,
        &params.trainable,
        &params.grads,
        &params.momentum,
        &sgd_step,
    )?;
    let scalars = StepScalars { t: 0.1, k: 10.0 };
    let step = || -> Result<()> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            net.record_step(&mut pass, scalars);
            sgd.record(&mut pass);
        }
        gpu.queue.submit([encoder.finish()]);
        Ok(())
    };
    for _ in 0..2 {
        step()?;
    }
    gpu.wait()?;
    let started = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    gpu.wait()?;
    let elapsed = started.elapsed().as_secs_f64();

    let layers: Vec<_> = net.binconvs.iter().collect();
    let rotation = RotationUpdate::new(gpu, &layers)?;
    rotation.update(gpu)?;
    let started = Instant::now();
    let (_, rotation_timing) = rotation.update_timed(gpu)?;
    let rotation_update_ms = started.elapsed().as_secs_f64() * 1e3;

    let dispatches: Vec<&Dispatch> = net
        .step_dispatches(scalars)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let (breakdown, breakdown_method) = breakdown(gpu, &dispatches)?;
    Ok(TrainBench {
        model: kind.name().to_string(),
        adapter: gpu.info.name.clone(),
        batch,
        steps,
        images_per_second: (steps * batch) as f64 / elapsed,
        step_ms: elapsed / steps as f64 * 1e3,
        rotation_update_ms,
        rotation_timing,
        dispatches_per_step: dispatches.len(),
        memory,
        breakdown_method,
        breakdown,
    })
}

/// The training benchmark as a readable table.
pub fn format_train(b: &TrainBench) -> String {
    let mut out = format!(
        "{} on {}: batch {}, {} steps: {:.0} img/s ({:.2} ms/step, {} dispatches/step); \
         rotation update {:.1} ms ({:.1} ms in submits, {:.1} ms on the host)\n",
        b.model,
        b.adapter,
        b.batch,
        b.steps,
        b.images_per_second,
        b.step_ms,
        b.dispatches_per_step,
        b.rotation_update_ms,
        b.rotation_timing.gpu_seconds * 1e3,
        b.rotation_timing.host_seconds * 1e3
    );
    out += &format_memory(&b.memory);
    out += &format_breakdown(
        "per-kernel breakdown of one step",
        &b.breakdown_method,
        &b.breakdown,
    );
    out
}

/// The planned buffer total and its parts, one line.
pub fn format_memory(m: &TrainingMemory) -> String {
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64);
    let mut parts = vec![
        format!("parameters+gradients+momentum+state {}", mib(m.parameters)),
        format!("training network {}", mib(m.train_step)),
    ];
    if m.tail_step > 0 {
        parts.push(format!("last-batch network {}", mib(m.tail_step)));
    }
    if m.evaluation > 0 {
        parts.push(format!("evaluation network {}", mib(m.evaluation)));
    }
    parts.push(format!("rotation update {}", mib(m.rotation)));
    format!(
        "buffers (planned): {} ({:.2} GiB) = {}\n",
        mib(m.total()),
        m.total() as f64 / (1u64 << 30) as f64,
        parts.join(" + ")
    )
}

/// `rbnn bench`: training and packed inference of every model on one adapter, with the
/// per-kernel breakdowns.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FullBench {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    /// UTC date of the run, YYYY-MM-DD.
    pub date: String,
    pub train: Vec<TrainBench>,
    pub infer: Vec<crate::infer::bench::InferBenchRow>,
    /// Benchmarks that could not run on this adapter (e.g. a batch of 256 over its buffer
    /// limits), as "model: what failed: why"; the others still ran.
    pub failed: Vec<String>,
}

/// Runs `train` (batch 256, `steps` steps) and the packed inference benchmark (batches 1, 256,
/// 1024) for each of `kinds`, reporting each model on `progress` as it finishes.
pub fn all(
    gpu: &Gpu,
    kinds: &[ModelKind],
    steps: usize,
    mut progress: impl FnMut(&str),
) -> Result<FullBench> {
    let mut train_rows = Vec::new();
    let mut infer_rows = Vec::new();
    let mut failed = Vec::new();
    for &kind in kinds {
        match train(gpu, kind, 256, steps) {
            Ok(t) => {
                progress(&format!(
                    "{}: training {:.0} img/s",
                    kind.name(),
                    t.images_per_second
                ));
                train_rows.push(t);
            }
            Err(e) => {
                let line = format!("{}: training at batch 256: {e:#}", kind.name());
                progress(&line);
                failed.push(line);
            }
        }
        match crate::infer::bench::infer(gpu, kind, &[1, 256, 1024], 5) {
            Ok(rows) => infer_rows.extend(rows),
            Err(e) => {
                let line = format!("{}: packed inference: {e:#}", kind.name());
                progress(&line);
                failed.push(line);
            }
        }
    }
    if train_rows.is_empty() && infer_rows.is_empty() {
        anyhow::bail!(
            "no benchmark ran on {}:\n{}",
            gpu.info.name,
            failed.join("\n")
        );
    }
    Ok(FullBench {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info),
        date: utc_date(),
        train: train_rows,
        infer: infer_rows,
        failed,
    })
}

/// Today's UTC date as YYYY-MM-DD.
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    date_from_unix_days((secs / 86_400) as i64)
}

/// The civil (proleptic Gregorian) date `days` after 1970-01-01, as YYYY-MM-DD.
fn date_from_unix_days(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The summary table (Markdown) and every breakdown.
pub fn format_all(b: &FullBench) -> String {
    let mut out = format!(
        "rbnn bench, {}: {} ({}, {})\n\n\
         | model | train img/s (batch 256) | ms/step | rotation update ms | packed img/s batch 1 \
         | batch 256 | batch 1024 |\n|---|---:|---:|---:|---:|---:|---:|\n",
        b.date, b.adapter, b.backend, b.driver
    );
    // Every model with any result, in the order measured.
    let mut models: Vec<&str> = Vec::new();
    for m in b
        .train
        .iter()
        .map(|t| &t.model)
        .chain(b.infer.iter().map(|r| &r.model))
    {
        if !models.contains(&m.as_str()) {
            models.push(m);
        }
    }
    for model in models {
        let packed = |batch: usize| {
            b.infer
                .iter()
                .find(|r| r.model == model && r.batch == batch)
                .map_or("-".to_string(), |r| {
                    format!("{:.0}", r.packed_images_per_second)
                })
        };
        let train = b.train.iter().find(|t| t.model == model).map_or_else(
            || "- | - | -".to_string(),
            |t| {
                format!(
                    "{:.0} | {:.2} | {:.1}",
                    t.images_per_second, t.step_ms, t.rotation_update_ms
                )
            },
        );
        out += &format!(
            "| {model} | {train} | {} | {} | {} |\n",
            packed(1),
            packed(256),
            packed(1024)
        );
    }
    for f in &b.failed {
        out += &format!("\nnot measured: {f}");
    }
    out += "\ntraining: synthetic input shaped as each model's dataset (CIFAR-10 3x32x32 with 10 \
            classes, ImageNet 3x224x224 with 1000), steady state (the rotation update \
            timed on its own); inference: the packed engine, wall clock per batch (record, \
            submit, wait)\n\n";
    for t in &b.train {
        out += &format_train(t);
        if let Some(r) = b
            .infer
            .iter()
            .find(|r| r.model == t.model && r.batch == 256)
        {
            out += &format_breakdown(
                "per-kernel breakdown of one packed forward at batch 256",
                &r.breakdown_method,
                &r.breakdown,
            );
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::date_from_unix_days;

    #[test]
    fn unix_days_become_civil_dates() {
        for (days, date) in [
            (0, "1970-01-01"),
            (11_016, "2000-02-29"),
            (20_783, "2026-11-26"),
            (47_541, "2100-03-01"),
        ] {
            assert_eq!(date_from_unix_days(days), date);
        }
    }
}
