//! `rbnn bench infer`: images per second of the packed engine against the float evaluation path
//! (model::network in Mode::Eval, what `rbnn eval` runs) at a few batch sizes, with the model
//! sizes. Both run initialised weights on synthetic input shaped as the model's own dataset
//! (CIFAR-10: 3x32x32, 10 classes; ImageNet: 3x224x224, 1000 classes);
//! inputs are on the GPU already, and each timed run is one batch recorded, submitted and waited
//! for (wall clock), so small batches include the submission overhead a caller sees.

use super::engine::Engine;
use super::export::{export_params, human, ExportReport};
use super::model::ModelMeta;
use crate::gpu::{breakdown, Dispatch, Gpu, KernelShare};
use crate::model::network::{Mode, Network};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::rng::Rng;
use anyhow::Result;
use std::time::Instant;

/// One model at one batch size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InferBenchRow {
    pub model: String,
    pub adapter: String,
    pub batch: usize,
    /// Submits per batch of the packed engine (batches above its largest plan run in chunks).
    pub chunks: usize,
    pub packed_images_per_second: f64,
    /// None when the float path could not run at this batch (the reason is in `float_note`).
    pub float_images_per_second: Option<f64>,
    pub float_note: Option<String>,
    pub packed_bytes: u64,
    /// The model's tensors as f32.
    pub float_bytes: u64,
    /// Per-kernel GPU time of one packed forward of (a chunk of) this batch.
    pub breakdown_method: String,
    pub breakdown: Vec<KernelShare>,
}

/// Median seconds of `runs` timed runs of `record` (one pass, one submit, waited for), after one
/// untimed warm-up run.
fn time_runs(gpu: &Gpu, runs: usize, record: impl Fn(&mut wgpu::ComputePass<'_>)) -> Result<f64> {
    let once = || -> Result<f64> {
        let started = Instant::now();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            record(&mut pass);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.wait()?;
        Ok(started.elapsed().as_secs_f64())
    };
    once()?;
    let mut seconds = (0..runs.max(1))
        .map(|_| once())
        .collect::<Result<Vec<_>>>()?;
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[seconds.len() / 2])
}

/// Times `kind` at each of `batches` (`runs` timed runs each).
pub fn infer(
    gpu: &Gpu,
    kind: ModelKind,
    batches: &[usize],
    runs: usize,
) -> Result<Vec<InferBenchRow>> {
    // Shaped and normalised as the model's own dataset (CIFAR-10 or ImageNet: data::facts), the
    // data and class names synthetic.
    let classes = kind.native_classes();
    let facts = kind.native_dataset().facts();
    let meta = ModelMeta {
        kind,
        input: facts.input(),
        content: facts.content,
        mean: facts.mean.to_vec(),
        std: facts.std.to_vec(),
        classes: (0..classes).map(|i| format!("class {i}")).collect(),
        dataset: "synthetic".into(),
        source: "rbnn bench infer (initialised weights)".into(),
    };
    meta.check()?;
    let spec = ModelSpec::new(kind, classes, 3);
    let mut rng = Rng::new(11);
    let values = spec.initialise(&mut rng);
    let params = Params::new(gpu, spec)?;
    params.upload(gpu, &values)?;
    let packed = export_params(gpu, &params, meta)?;
    let report = ExportReport::new(&packed, None);
    let engine = Engine::new(gpu, &packed)?;
    let mut rows = Vec::new();
    for &batch in batches {
        let chunk = batch.min(engine.max_batch());
        let full = engine.plan(gpu, chunk)?;
        let tail = match batch % chunk {
            0 => None,
            r => Some(engine.plan(gpu, r)?),
        };
        gpu.write(&full.input, &rng.normal_vec(full.input.len(), 1.0));
        if let Some(t) = &tail {
            gpu.write(&t.input, &rng.normal_vec(t.input.len(), 1.0));
        }
        let chunks = batch.div_ceil(chunk);
        let packed_seconds = time_runs(gpu, runs, |pass| {
            for _ in 0..batch / chunk {
                full.record(pass);
            }
            if let Some(t) = &tail {
                t.record(pass);
            }
        })?;
        let dispatches: Vec<&Dispatch> = full.dispatches().iter().collect();
        let (breakdown, breakdown_method) = breakdown(gpu, &dispatches)?;
        let net = Network::new(gpu, &params, batch, Mode::Eval, false, facts.input());
        let (float, note) = match net {
            Ok(net) => {
                gpu.write(&net.input, &rng.normal_vec(net.input.len(), 1.0));
                let s = time_runs(gpu, runs, |pass| net.record_forward(pass))?;
                (Some(batch as f64 / s), None)
            }
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        rows.push(InferBenchRow {
            model: kind.name().to_string(),
            adapter: gpu.info.name.clone(),
            batch,
            chunks,
            packed_images_per_second: batch as f64 / packed_seconds,
            float_images_per_second: float,
            float_note: note,
            packed_bytes: report.packed_bytes,
            float_bytes: report.float_model_bytes,
            breakdown_method,
            breakdown,
        });
    }
    Ok(rows)
}

/// The header of the Markdown table `format_row` continues.
pub fn format_header() -> String {
    "| model | batch | packed img/s | float eval img/s | speed-up | packed size | float size |\n\
     |---|---:|---:|---:|---:|---:|---:|\n"
        .to_string()
}

/// One row of the table.
pub fn format_row(r: &InferBenchRow) -> String {
    let (float, speedup) = match r.float_images_per_second {
        Some(f) => (
            format!("{f:.1}"),
            format!("{:.1}x", r.packed_images_per_second / f),
        ),
        None => ("n/a".into(), "-".into()),
    };
    let chunks = if r.chunks > 1 {
        format!(" ({} chunks)", r.chunks)
    } else {
        String::new()
    };
    format!(
        "| {} | {}{chunks} | {:.1} | {float} | {speedup} | {} | {} |\n",
        r.model,
        r.batch,
        r.packed_images_per_second,
        human(r.packed_bytes),
        human(r.float_bytes)
    )
}

/// What follows the table: why a float path could not run, and how everything was measured.
pub fn format_footer(rows: &[InferBenchRow]) -> String {
    let mut out = String::new();
    for r in rows {
        if let Some(n) = &r.float_note {
            out += &format!("float path of {} at batch {}: {n}\n", r.model, r.batch);
        }
    }
    if let Some(r) = rows.first() {
        out += &format!(
            "adapter: {}; wall clock per batch (record, submit, wait), median of the timed runs \
             after a warm-up; initialised weights, inputs shaped as each model's dataset\n",
            r.adapter
        );
    }
    out
}
