//! The first thing to run:
//!
//! ```text
//! cargo run --release --example classifier
//! ```
//!
//! trains a small RBNN (resnet20_1w1a, 1-bit weights and activations) on Fashion-MNIST, evaluates
//! it with the float evaluation path (as `rbnn eval`), exports it to the packed 1-bit form (as
//! `rbnn export`), reloads that file in the packed XNOR-popcount engine, checks that both agree
//! on the test images, and classifies a few of them, drawn in the terminal.
//!
//! Data: the full Fashion-MNIST (60,000 / 10,000 images) when /usr/share/datasets/fashion-mnist
//! holds its IDX files, else the 5,000 / 1,000-image subset embedded in rbnn. On a GPU it trains
//! 10 epochs on the subset (4 on the full set); on a software adapter (lavapipe, llvmpipe: the
//! GPU emulated on the CPU) it trains one short epoch on 1,000 images so that it finishes in a
//! few minutes, and says so.
//!
//! Everything lands in runs/classifier/ (replaced by the next run of the example): checkpoints,
//! metrics.jsonl, curves.png, the packed model.safetensors, and samples/*.png for `rbnn predict`.

use anyhow::{Context, Result};
use rbnn::data::augment::write_sample;
use rbnn::data::{Crop, Dataset, Normalizer, Split};
use rbnn::gpu::Gpu;
use rbnn::infer::export::{export_checkpoint, ExportOptions};
use rbnn::infer::predict::top_k;
use rbnn::infer::Engine;
use rbnn::model::network::{Mode, Network};
use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::train::checkpoint;
use rbnn::train::config::Config;
use rbnn::train::run_dir::{Existing, RunDir};
use rbnn::train::trainer::{self, load_split, restore};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const FULL_SET: &str = "/usr/share/datasets/fashion-mnist";
const OUT: &str = "runs/classifier";
/// Test images drawn at the end.
const SHOWN: usize = 6;
/// Pictures per terminal row.
const PER_ROW: usize = 3;
/// Side of the Fashion-MNIST pictures inside the 32x32 inputs.
const SIDE: usize = 28;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The training run: the whole budget on a GPU, a short one on a software adapter.
fn config(software: bool, full_set: bool) -> (Config, String) {
    let (dataset, data_path, name) = if full_set {
        ("fashion-mnist", Some(FULL_SET.to_string()), "Fashion-MNIST")
    } else {
        (
            "fashion-mnist-subset",
            None,
            "the Fashion-MNIST subset embedded in rbnn",
        )
    };
    let base = Config {
        model: ModelKind::Resnet20.name().into(),
        dataset: dataset.into(),
        data_path,
        batch_size_test: 200,
        ..Config::default()
    };
    let gpu_epochs = if full_set { 4 } else { 10 };
    if software {
        // 31 steps: too few for 1-bit weights to learn much (expect 20-30% top-1), enough to
        // show every stage; lr 0.02 because 0.1 only adds noise over so few steps.
        let cfg = Config {
            epochs: 1,
            batch_size: 32,
            lr: 0.02,
            max_train_images: Some(1000),
            max_test_images: Some(200),
            ..base
        };
        let note = format!(
            "software adapter: training briefly (1 epoch over 1,000 images of {name}, batch 32, \
             lr 0.02; 200 test images) so this finishes in a few minutes; the accuracy will be \
             low. On a GPU this example trains {gpu_epochs} epochs on every image."
        );
        (cfg, note)
    } else {
        // The official recipe is lr 0.1 at batch 256; at batch 128, half of it.
        let cfg = Config {
            epochs: gpu_epochs,
            batch_size: 128,
            lr: 0.05,
            ..base
        };
        let note = format!("training {gpu_epochs} epochs on {name}, batch 128, lr 0.05");
        (cfg, note)
    }
}

/// Every image of `ds`, normalised as in training (no augmentation): [n, c, h, w].
fn normalised(ds: &Dataset) -> Vec<f32> {
    let norm = Normalizer::for_dataset(ds);
    let mut out = vec![0.0; ds.n * ds.sample_len()];
    for (i, sample) in out.chunks_exact_mut(ds.sample_len()).enumerate() {
        write_sample(ds, i, &norm, Crop::IDENTITY, sample);
    }
    out
}

/// Logits of the float evaluation path (model::network in Mode::Eval, what `rbnn eval` runs) of
/// the checkpoint at `path`.
fn float_logits(gpu: &Gpu, path: &Path, ds: &Dataset, input: &[f32]) -> Result<Vec<f32>> {
    let ck = checkpoint::load(path)?;
    let spec = ModelSpec::new(ModelKind::Resnet20, ds.classes.len(), ds.c);
    let mut params = Params::new(gpu, spec)?;
    restore(gpu, &mut params, &ck.state, path)?;
    let batch = ds.n.min(200);
    let net = Network::new(gpu, &params, batch, Mode::Eval, false, [ds.c, ds.h, ds.w])?;
    let per_image = ds.sample_len();
    let mut logits = Vec::with_capacity(ds.n * ds.classes.len());
    for chunk in input.chunks(batch * per_image) {
        let mut full = chunk.to_vec();
        // A short last batch: the rows past it are zeros and their logits are dropped.
        full.resize(batch * per_image, 0.0);
        gpu.write(&net.input, &full);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            net.record_forward(&mut pass);
        }
        gpu.queue.submit([encoder.finish()]);
        let rows = chunk.len() / per_image;
        logits.extend_from_slice(&gpu.read_f32(&net.logits)?[..rows * ds.classes.len()]);
    }
    Ok(logits)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// The 28x28 picture inside image i's 32x32 input (row-major, 0..255).
fn picture(ds: &Dataset, i: usize) -> Vec<u8> {
    let pad = (ds.h - SIDE) / 2;
    let img = ds.image(i);
    (0..SIDE * SIDE)
        .map(|p| img[(p / SIDE + pad) * ds.w + p % SIDE + pad])
        .collect()
}

/// A picture as SIDE/2 lines of SIDE characters (two pixel rows per line: terminal cells are
/// about twice as tall as wide), brighter pixels as denser characters.
fn ascii(pixels: &[u8]) -> Vec<String> {
    const RAMP: &[u8] = b" .:-=+*#%@";
    (0..SIDE / 2)
        .map(|line| {
            (0..SIDE)
                .map(|x| {
                    let v = (pixels[2 * line * SIDE + x] as usize
                        + pixels[(2 * line + 1) * SIDE + x] as usize)
                        / 2;
                    RAMP[v * RAMP.len() / 256] as char
                })
                .collect()
        })
        .collect()
}

fn run() -> Result<()> {
    let started = Instant::now();
    let gpu = Gpu::new(None)?;
    println!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    let full_set = Path::new(FULL_SET).is_dir();
    let (cfg, note) = config(gpu.is_software(), full_set);
    println!("{note}\n");

    // The example's own run directory, replaced by every run of the example.
    let run = RunDir::open(Path::new(OUT), Existing::Overwrite)?;
    let files = &run.files;
    let out = run.dir().to_path_buf();
    let summary = trainer::train(&gpu, &cfg, &run, None, &AtomicBool::new(false), true)?;
    let trained = started.elapsed().as_secs_f64();
    let last = summary.last.context("no epoch completed")?;
    println!(
        "\ntrained in {trained:.0} s: test top-1 {:.2}% (float evaluation path, {} test images)",
        last.test_top1,
        cfg.max_test_images.map_or("all".into(), |n| n.to_string())
    );

    let model_path = out.join("model.safetensors");
    let report = export_checkpoint(&gpu, &files.last(), &model_path, &ExportOptions::default())?;
    println!(
        "\nexported {}:\n{}",
        model_path.display(),
        report.describe()
    );

    let test = load_split(&cfg, Split::Test)?;
    let input = normalised(&test);
    let shape = [test.n, test.c, test.h, test.w];
    let engine_started = Instant::now();
    let mut engine = Engine::load(&gpu, &model_path)?;
    let packed = engine.run(&gpu, &input, shape)?;
    let engine_seconds = engine_started.elapsed().as_secs_f64();
    let float = float_logits(&gpu, &files.last(), &test, &input)?;
    let k = test.classes.len();
    let (mut correct, mut agree, mut worst) = (0, 0, 0.0f64);
    let identical = packed
        .iter()
        .zip(&float)
        .filter(|(a, b)| a.to_bits() == b.to_bits())
        .count();
    for (i, (p, f)) in packed.chunks(k).zip(float.chunks(k)).enumerate() {
        correct += (argmax(p) == test.labels[i] as usize) as usize;
        agree += (argmax(p) == argmax(f)) as usize;
        let scale = f.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        let diff = p
            .iter()
            .zip(f)
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
        worst = worst.max(diff / scale.max(1e-30));
    }
    println!(
        "packed engine: top-1 {:.2}% on {} test images ({:.2} s with loading); the float path's \
         prediction on {agree}/{}; logits bit for bit equal: {identical}/{} (largest difference \
         {worst:.1e} of the largest logit)",
        100.0 * correct as f64 / test.n as f64,
        test.n,
        engine_seconds,
        test.n,
        packed.len()
    );

    let samples = out.join("samples");
    std::fs::create_dir_all(&samples).with_context(|| format!("creating {}", samples.display()))?;
    // Evenly spread test images (the test split is ordered by class).
    let shown: Vec<usize> = (0..SHOWN).map(|j| j * test.n / SHOWN).collect();
    println!();
    for row in shown.chunks(PER_ROW) {
        let drawn: Vec<Vec<String>> = row.iter().map(|&i| ascii(&picture(&test, i))).collect();
        for line in 0..SIDE / 2 {
            let cells: Vec<&str> = drawn.iter().map(|d| d[line].as_str()).collect();
            println!("  {}", cells.join("    "));
        }
        let mut truth = String::new();
        let mut guess = String::new();
        for &i in row {
            let best = &top_k(&packed[i * k..(i + 1) * k], &test.classes, 1)[0];
            let mark = if best.class == test.labels[i] as usize {
                "ok"
            } else {
                "WRONG"
            };
            truth += &format!(
                "  {:<30}",
                format!("true: {}", test.classes[test.labels[i] as usize])
            );
            guess += &format!(
                "  {:<30}",
                format!(
                    "pred: {} {:.0}% {mark}",
                    best.label,
                    100.0 * best.probability
                )
            );
            let file = samples.join(format!("test-{i:05}.png"));
            image::GrayImage::from_raw(SIDE as u32, SIDE as u32, picture(&test, i))
                .context("a 28x28 picture")?
                .save(&file)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        println!("{}\n{}\n", truth.trim_end(), guess.trim_end());
    }
    println!(
        "the pictures above are in {}; classify them (or your own 28x28 light-on-black PNGs) \
         with\n  cargo run --release -- predict --model {} {}",
        samples.display(),
        model_path.display(),
        samples.display()
    );
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
