//! `rbnn bench data`: how many pictures per second the streaming loader decodes and transforms
//! (read, decode, crop/resize/flip, normalise, batch), with the train and with the validation
//! transform, through the same `Batcher` the trainer uses; and whether that keeps up with a
//! model's training rate (`rbnn bench train` on the GPU gives it).

use super::imagenet::ImageNet;
use super::{BatchPlan, Batcher, DatasetKind, Source, Split};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One measured transform.
#[derive(Clone, Debug, Serialize)]
pub struct LoaderRate {
    /// "train" (RandomResizedCrop + flip) or "val" (resize + centre crop).
    pub transform: String,
    pub files: usize,
    /// Mean size and picture area of the files (over up to 1,000 evenly spread ones).
    pub mean_file_kb: f64,
    pub threads: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    pub images_per_second_per_thread: f64,
    /// Images per second of CPU time the process used meanwhile (Linux): the per-core rate with
    /// no other work on the machine, where the wall-clock rate above counts time lost to it.
    pub images_per_cpu_second: Option<f64>,
}

/// CPU time (user + system) of this process so far, from /proc/self/stat (Linux; None
/// elsewhere). Its fields count USER_HZ = 100 ticks per second.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the command name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Mean file size in KB of up to 1,000 evenly spread files.
fn mean_file_kb(images: &ImageNet) -> f64 {
    let n = images.len().min(1000);
    let total: u64 = (0..n)
        .map(|k| {
            std::fs::metadata(images.file(k * images.len() / n))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    total as f64 / n.max(1) as f64 / 1000.0
}

/// Times `images` samples (at least one batch after an untimed warm-up batch) of the split's
/// transform with `threads` decoding threads (0: one per core).
pub fn loader_rate(
    root: &Path,
    split: Split,
    crop: usize,
    threads: usize,
    batch: usize,
    images: usize,
) -> Result<LoaderRate> {
    if batch == 0 || images == 0 {
        bail!("--batch and --images must be at least 1");
    }
    let set = ImageNet::open(root, split, crop)?;
    let files = set.len();
    let kb = mean_file_kb(&set);
    let source = Source::from(set);
    let batch = batch.min(files);
    let mut plan = match split {
        Split::Train => BatchPlan::train_source(&source, batch, 0),
        Split::Test => BatchPlan::eval(batch),
    };
    plan.threads = threads;
    // Enough epochs for the warm-up batch and `images` more, partial batches included.
    let epochs = (images + batch).div_ceil(files) + 1;
    let mut batcher = Batcher::new(source, plan, 0..epochs)?;
    let warm = batcher.next().ok_or_else(|| batcher.failure())?;
    batcher.recycle(warm);
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    let mut made = 0;
    while made < images {
        let b = batcher.next().ok_or_else(|| batcher.failure())?;
        made += b.len();
        batcher.recycle(b);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds()
        .zip(cpu_started)
        .map(|(end, start)| end - start);
    let threads = super::stream::worker_threads(threads);
    let rate = made as f64 / seconds;
    Ok(LoaderRate {
        transform: match split {
            Split::Train => "train".into(),
            Split::Test => "val".into(),
        },
        files,
        mean_file_kb: kb,
        threads,
        images: made,
        seconds,
        images_per_second: rate,
        images_per_second_per_thread: rate / threads as f64,
        images_per_cpu_second: cpu_seconds.filter(|&s| s > 0.0).map(|s| made as f64 / s),
    })
}

/// `rbnn bench data`: the train and the validation transform of the ImageNet folder `root`
/// (`dataset` is imagenet or imagenet:SIZE), each split that exists.
pub fn run(
    dataset: &str,
    root: &Path,
    threads: usize,
    batch: usize,
    images: usize,
) -> Result<Vec<LoaderRate>> {
    let DatasetKind::ImageNet { crop } = dataset.parse()? else {
        bail!("rbnn bench data measures the streaming loader: --dataset imagenet or imagenet:SIZE");
    };
    let mut rows = Vec::new();
    for (split, folder) in [(Split::Train, "train"), (Split::Test, "val")] {
        if root.join(folder).is_dir() {
            rows.push(loader_rate(root, split, crop, threads, batch, images)?);
        }
    }
    if rows.is_empty() {
        bail!("{} has neither train/ nor val/", root.display());
    }
    Ok(rows)
}

/// The table `rbnn bench data` prints, with the verdict against `train_rate` (img/s) if given.
pub fn format_rates(rows: &[LoaderRate], train_rate: Option<f64>) -> String {
    let mut s = String::from(
        "transform  files  mean file  threads  images  seconds  img/s total  img/s per thread  \
         img/s per CPU second\n",
    );
    for r in rows {
        s += &format!(
            "{:<9} {:>6} {:>7.1} KB {:>8} {:>7} {:>8.2} {:>12.0} {:>17.0} {:>21}\n",
            r.transform,
            r.files,
            r.mean_file_kb,
            r.threads,
            r.images,
            r.seconds,
            r.images_per_second,
            r.images_per_second_per_thread,
            r.images_per_cpu_second
                .map_or("-".into(), |v| format!("{v:.0}"))
        );
    }
    if let (Some(rate), Some(train)) = (train_rate, rows.iter().find(|r| r.transform == "train")) {
        let needed = (rate / train.images_per_second_per_thread).ceil();
        s += &if train.images_per_second >= rate {
            format!(
                "keeps up with training at {rate:.0} img/s: yes ({:.0} img/s, {:.1}x)\n",
                train.images_per_second,
                train.images_per_second / rate
            )
        } else {
            format!(
                "keeps up with training at {rate:.0} img/s: no ({:.0} img/s; at {:.0} img/s per \
                 thread it needs {needed:.0} threads)\n",
                train.images_per_second, train.images_per_second_per_thread
            )
        };
    }
    s
}
