//! Benchmarks: `rbnn bench kernels` (GFLOP/s of the float conv kernels at the layer shapes of the
//! models) and `rbnn bench train` (training img/s, the rotation update, and a per-kernel breakdown
//! of one step), timed on the GPU with timestamp queries where the adapter has them.

use crate::gpu::{Dispatch, Gpu, GpuTimer};
use crate::model::network::{Mode, Network, StepScalars};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::ops::conv::{self, ConvShape, Tiles};
use crate::ops::sgd;
use crate::rbnn::rotation::RotationUpdate;
use crate::rng::Rng;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
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
        let data_tiles = Tiles::for_columns(s.ci);
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
        if direct {
            cases.push((
                "forward (tiled)",
                tiles_label(forward_tiles),
                vec![&tiled_forward],
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
        let gflop = 2.0 * s.macs() as f64 * 1e-9;
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

/// A readable table of `rows`, one line per kernel and shape, and how they were timed.
pub fn format_kernels(rows: &[KernelBenchRow]) -> String {
    let mut out = format!(
        "{:<17} {:<22} {:<16} {:<24} {:>8} {:>10} {:>9}\n",
        "layer", "shape", "kernel", "tiles", "GFLOP", "ms", "GFLOP/s"
    );
    for r in rows {
        let s = &r.shape;
        let shape = format!("{}x{}x{} {}->{} k{}", s.n, s.h, s.w, s.ci, s.co, s.kh);
        out += &format!(
            "{:<17} {:<22} {:<16} {:<24} {:>8.3} {:>10.3} {:>9.1}\n",
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

/// One kernel (shader entry point) in the per-kernel breakdown of a training step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelShare {
    /// "shader::entry".
    pub kernel: String,
    /// Dispatches of this kernel in one step.
    pub dispatches: usize,
    pub seconds: f64,
    /// Share of the step's summed kernel time.
    pub share: f64,
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
    pub dispatches_per_step: usize,
    /// "timestamp" or "wall clock".
    pub breakdown_method: String,
    pub breakdown: Vec<KernelShare>,
}

/// Times `steps` training steps of `kind` at `batch` on synthetic CIFAR-shaped data (10 classes,
/// 3x32x32), after two warm-up steps; then the rotation update; then each dispatch of one step
/// on its own (timestamp queries) for the breakdown.
pub fn train(gpu: &Gpu, kind: ModelKind, batch: usize, steps: usize) -> Result<TrainBench> {
    let spec = ModelSpec::new(kind, 10, 3);
    let mut rng = Rng::new(7);
    let values = spec.initialise(&mut rng);
    let params = Params::new(gpu, spec)?;
    params.upload(gpu, &values)?;
    let net = Network::new(gpu, &params, batch, Mode::Train, false, [3, 32, 32])?;
    gpu.write(&net.input, &rng.normal_vec(net.input.len(), 1.0));
    let targets: Vec<u32> = (0..batch).map(|_| rng.below(10) as u32).collect();
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
    rotation.update(gpu)?;
    let rotation_update_ms = started.elapsed().as_secs_f64() * 1e3;

    let dispatches: Vec<&Dispatch> = net
        .step_dispatches(scalars)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let timer = GpuTimer::new(gpu, dispatches.len() as u32);
    let groups: Vec<Vec<&Dispatch>> = dispatches.iter().map(|d| vec![*d]).collect();
    let timed = timer.time_groups(gpu, &groups)?;
    let mut by_kernel: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (d, s) in dispatches.iter().zip(&timed.seconds) {
        let name = d.label();
        let name = name.split('[').next().unwrap_or(name).to_string();
        let e = by_kernel.entry(name).or_default();
        e.0 += 1;
        e.1 += s;
    }
    let mut breakdown: Vec<KernelShare> = by_kernel
        .into_iter()
        .map(|(kernel, (dispatches, seconds))| KernelShare {
            kernel,
            dispatches,
            seconds,
            share: seconds / timed.total.max(1e-30),
        })
        .collect();
    breakdown.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(TrainBench {
        model: kind.name().to_string(),
        adapter: gpu.info.name.clone(),
        batch,
        steps,
        images_per_second: (steps * batch) as f64 / elapsed,
        step_ms: elapsed / steps as f64 * 1e3,
        rotation_update_ms,
        dispatches_per_step: dispatches.len(),
        breakdown_method: timed.method.to_string(),
        breakdown,
    })
}

/// The training benchmark as a readable table.
pub fn format_train(b: &TrainBench) -> String {
    let mut out = format!(
        "{} on {}: batch {}, {} steps: {:.0} img/s ({:.2} ms/step, {} dispatches/step); \
         rotation update {:.1} ms\n",
        b.model,
        b.adapter,
        b.batch,
        b.steps,
        b.images_per_second,
        b.step_ms,
        b.dispatches_per_step,
        b.rotation_update_ms
    );
    out += &format!(
        "  per-kernel breakdown of one step ({}):\n  {:<40} {:>5} {:>10} {:>7}\n",
        b.breakdown_method, "kernel", "calls", "ms", "share"
    );
    for k in &b.breakdown {
        out += &format!(
            "  {:<40} {:>5} {:>10.3} {:>6.1}%\n",
            k.kernel,
            k.dispatches,
            k.seconds * 1e3,
            100.0 * k.share
        );
    }
    out
}
