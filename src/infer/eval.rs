//! `rbnn eval` of a packed model: the test split scored by the packed engine, with the batches,
//! the loss and the top-1/top-5 rule of the float evaluation path (`train::trainer::evaluate`),
//! so both print the same line for a checkpoint and its export.

use super::engine::Engine;
use super::model::PackedModel;
use crate::data::{BatchPlan, Batcher, Split};
use crate::gpu::Gpu;
use crate::ops::loss::{cpu, LossTotals};
use crate::train::config::Config;
use crate::train::trainer::load_source;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Scores the packed model at `path` on the test split of `dataset` (default: the dataset it
/// was exported from; its first `max_images` when given) in batches of `batch_size`. Returns the
/// configuration it ran (model, dataset, data path) and the totals.
pub fn eval_packed(
    gpu: &Gpu,
    path: &Path,
    dataset: Option<&str>,
    data_path: Option<&str>,
    batch_size: usize,
    max_images: Option<usize>,
) -> Result<(Config, LossTotals)> {
    if batch_size == 0 {
        bail!("--batch-size-test must be at least 1");
    }
    let packed = PackedModel::load(path)?;
    let meta = packed.meta.clone();
    let cfg = Config {
        model: meta.kind.name().to_string(),
        dataset: dataset.unwrap_or(&meta.dataset).to_string(),
        data_path: data_path.map(str::to_string),
        batch_size_test: batch_size,
        max_test_images: max_images,
        ..Config::default()
    };
    if cfg.dataset.is_empty() {
        bail!(
            "{}: the packed model does not say which dataset it was trained on; pass --dataset",
            path.display()
        );
    }
    // Streamed (ImageNet) or in memory, as `rbnn eval` of a checkpoint reads it.
    let test = load_source(&cfg, Split::Test)?;
    let [c, h, w] = meta.input;
    let [tc, th, tw] = test.image_shape();
    if [tc, th, tw] != meta.input || test.classes().len() != meta.classes.len() {
        bail!(
            "{} takes {c}x{h}x{w} images in {} classes; {} has {tc}x{th}x{tw} images in {} classes",
            path.display(),
            meta.classes.len(),
            test.name(),
            test.classes().len()
        );
    }
    let mut engine = Engine::new(gpu, &packed)?;
    let k = meta.classes.len();
    let mut totals = LossTotals {
        loss_sum: 0.0,
        top1: 0,
        top5: 0,
        samples: 0,
    };
    let batcher = Batcher::new(
        test.clone(),
        BatchPlan::eval(batch_size.min(test.len())),
        0..1,
    )?;
    for batch in batcher {
        let n = batch.len();
        let logits = engine
            .run(gpu, &batch.images, [n, c, h, w])
            .with_context(|| format!("running {} on {}", path.display(), test.name()))?;
        let logits: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
        let scored = cpu::cross_entropy(&logits, &batch.labels, n, k);
        totals.loss_sum += scored.per_sample_loss.iter().sum::<f64>();
        totals.top1 += scored.top1.iter().filter(|&&hit| hit).count() as u64;
        totals.top5 += scored.top5.iter().filter(|&&hit| hit).count() as u64;
        totals.samples += n as u64;
    }
    Ok((cfg, totals))
}
