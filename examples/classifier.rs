//! The first thing to run:
//!
//! ```text
//! cargo run --release --example classifier
//! ```
//!
//! trains a small RBNN (resnet20_1w1a, 1-bit weights and activations) on Fashion-MNIST with the
//! short-budget recipe (`--recipe fast`, docs/numerics.md section 9.1), exports it to the packed
//! 1-bit form (as `rbnn export`), reloads that file in the packed XNOR-popcount engine, scores
//! the test images with it, checks that its logits equal the float evaluation path's bit for
//! bit, and shows a few test images with their predictions: drawn in the terminal and as a
//! picture (runs/classifier/predictions.png).
//!
//! Data: on a software adapter, the 5,000 / 1,000-image Fashion-MNIST subset embedded in rbnn
//! (scoring the full set's 10,000 test images twice would take most of the 3 minutes); on a GPU,
//! the full Fashion-MNIST (60,000 / 10,000 images) when /usr/share/datasets/fashion-mnist holds
//! its IDX files, else the subset.
//!
//! Budget: on a software adapter (lavapipe, llvmpipe: the GPU emulated on the CPU) the whole
//! example is meant to finish within 3 minutes. It times the float evaluation path on one batch
//! of test images, reserves the time that scoring every test image twice (float path and packed
//! engine) and exporting will take, and gives the rest to the trainer as a time budget
//! (`Config::time_budget`, as `rbnn train --time-budget`): the trainer measures its own rate
//! after its first 20 steps and plans as many steps as fit, at most the fast recipe's 3 epochs
//! (a shuffled epoch is 5,000 distinct images: the README's recipe table, more distinct images
//! beat more epochs at one budget), with the schedules ending where the run ends. Both say what
//! they chose. On a GPU it trains longer (15 epochs over the subset, 3 over the full set) and
//! says so.
//!
//! Everything lands in runs/classifier/ (replaced by the next run of the example): checkpoints,
//! metrics.jsonl, curves.png, the packed model.safetensors, predictions.png, and samples/*.png
//! for `rbnn predict`.

use anyhow::{Context, Result};
use plotters::prelude::*;
use rbnn::data::augment::write_sample;
use rbnn::data::{Crop, Dataset, Normalizer, Split};
use rbnn::gpu::Gpu;
use rbnn::infer::export::{export_checkpoint, ExportOptions};
use rbnn::infer::predict::top_k;
use rbnn::infer::Engine;
use rbnn::model::network::{Mode, Network};
use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::rng::Rng;
use rbnn::train::checkpoint;
use rbnn::train::config::{Config, Recipe};
use rbnn::train::plot;
use rbnn::train::run_dir::{Existing, RunDir};
use rbnn::train::trainer::{self, load_split, restore};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const FULL_SET: &str = "/usr/share/datasets/fashion-mnist";
const OUT: &str = "runs/classifier";
/// Test images drawn in the terminal.
const SHOWN: usize = 6;
/// Pictures per terminal row.
const PER_ROW: usize = 3;
/// Test images in predictions.png, and per row there.
const PICTURED: usize = 24;
const PICTURED_PER_ROW: usize = 6;
/// Side of the Fashion-MNIST pictures inside the 32x32 inputs.
const SIDE: usize = 28;

/// Wall clock the whole example may take on a software adapter: the 3 minutes it promises,
/// less a margin for a machine busier at the end than when the rates were measured.
const SOFTWARE_BUDGET_SECONDS: f64 = 155.0;
/// Test images the trainer scores after each epoch on a software adapter (a progress line; the
/// result is scored on every test image at the end).
const MONITOR_TEST_IMAGES: usize = 200;
/// Batch of the evaluations (float path and packed engine).
const EVAL_BATCH: usize = 200;
/// Seconds after training not spent scoring images: the last checkpoints and curves, export,
/// loading the packed engine and building its plans, drawing the pictures (about 5 s on
/// lavapipe with 2 cores, 2026-12-03; counted high for a busier machine).
const FIXED_SECONDS_AFTER_TRAINING: f64 = 8.0;
/// The packed engine's scoring of the test images, with its loading, as a multiple of the float
/// path's (lavapipe, 2 cores, 2026-12-03/04: 11.4 s against 10.0 s at load average 2, 29.4 s
/// against 17.6 s at load average 5-7, where its loading competes for the cores).
const ENGINE_SHARE_OF_FLOAT: f64 = 1.5;
/// The least the trainer gets, however slow the evaluation probe found the machine.
const MIN_TRAINING_SECONDS: f64 = 20.0;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The dataset: the full Fashion-MNIST where it is installed, else the embedded subset.
fn base_config(full_set: bool) -> (Config, &'static str) {
    let (dataset, data_path, name) = if full_set {
        ("fashion-mnist", Some(FULL_SET.to_string()), "Fashion-MNIST")
    } else {
        (
            "fashion-mnist-subset",
            None,
            "the Fashion-MNIST subset embedded in rbnn",
        )
    };
    let cfg = Config {
        model: ModelKind::Resnet20.name().into(),
        dataset: dataset.into(),
        data_path,
        batch_size_test: EVAL_BATCH,
        ..Recipe::Fast.config()
    };
    (cfg, name)
}

/// Test images per second the float evaluation path scores here: one batch of `input` through a
/// freshly initialised network, timed after one untimed batch that compiles its kernels.
fn evaluation_rate(gpu: &Gpu, test: &Dataset, input: &[f32]) -> Result<f64> {
    let spec = ModelSpec::new(ModelKind::Resnet20, test.classes.len(), test.c);
    let values = spec.initialise(&mut Rng::new(0));
    let params = Params::new(gpu, spec)?;
    params.upload(gpu, &values)?;
    let batch = test.n.min(EVAL_BATCH);
    let net = Network::new(
        gpu,
        &params,
        batch,
        Mode::Eval,
        false,
        [test.c, test.h, test.w],
    )?;
    let one_batch = &input[..batch * test.sample_len()];
    eval_logits(gpu, &net, one_batch, test.sample_len(), test.classes.len())?;
    let started = Instant::now();
    eval_logits(gpu, &net, one_batch, test.sample_len(), test.classes.len())?;
    Ok(batch as f64 / started.elapsed().as_secs_f64())
}

/// The software adapter's run: the trainer gets the time left once the evaluation after
/// training is reserved, and plans its steps from its own rate. Returns the config and a
/// sentence saying what was chosen and why.
fn software_budget(
    base: Config,
    eval_rate: f64,
    elapsed: f64,
    train_images: usize,
    test_images: usize,
) -> (Config, String) {
    // After training: the trainer's last progress check, the float path and the packed engine
    // over every test image, and the fixed costs.
    let scored = MONITOR_TEST_IMAGES + 2 * test_images;
    let float_images =
        MONITOR_TEST_IMAGES as f64 + (1.0 + ENGINE_SHARE_OF_FLOAT) * test_images as f64;
    let after = float_images / eval_rate + FIXED_SECONDS_AFTER_TRAINING;
    let training = (SOFTWARE_BUDGET_SECONDS - elapsed - after).max(MIN_TRAINING_SECONDS);
    let cfg = Config {
        time_budget: Some(training),
        max_test_images: Some(MONITOR_TEST_IMAGES),
        ..base
    };
    let note = format!(
        "software adapter: evaluation runs at {eval_rate:.0} img/s here, so of the example's \
         {SOFTWARE_BUDGET_SECONDS:.0} s, {elapsed:.0} s are gone and {after:.0} s are kept for \
         scoring {scored} test images and exporting after training; training gets the other \
         {training:.0} s: the trainer measures its own rate after 20 steps and plans as many \
         steps as fit (at most {} epochs over the {train_images} training images). On a GPU it \
         trains 15 epochs over every image.",
        cfg.epochs
    );
    (cfg, note)
}

/// A GPU's run: the fast recipe over every training image, for longer.
fn gpu_budget(base: Config, full_set: bool) -> (Config, String) {
    let epochs = if full_set { 3 } else { 15 };
    let note = format!(
        "GPU: training longer than the 3 minutes of a software adapter allow: {epochs} epochs \
         over every training image (batch {}), the fast recipe",
        base.batch_size
    );
    (Config { epochs, ..base }, note)
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
    let batch = ds.n.min(EVAL_BATCH);
    let net = Network::new(gpu, &params, batch, Mode::Eval, false, [ds.c, ds.h, ds.w])?;
    eval_logits(gpu, &net, input, ds.sample_len(), ds.classes.len())
}

/// Logits of `net` (built in Mode::Eval) for the images of `input`, `per_image` values each, a
/// batch at a time.
fn eval_logits(
    gpu: &Gpu,
    net: &Network,
    input: &[f32],
    per_image: usize,
    classes: usize,
) -> Result<Vec<f32>> {
    let batch = net.batch;
    let mut logits = Vec::with_capacity(input.len() / per_image * classes);
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
        logits.extend_from_slice(&gpu.read_f32(&net.logits)?[..rows * classes]);
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

/// One classified test image.
struct Classified {
    pixels: Vec<u8>,
    truth: String,
    guess: String,
    probability: f64,
}

impl Classified {
    fn correct(&self) -> bool {
        self.truth == self.guess
    }
}

/// Writes the images in a grid, each scaled up with its true label and the prediction below
/// it (green when right, red when wrong).
fn write_predictions_png(path: &Path, shown: &[Classified]) -> Result<()> {
    const SCALE: usize = 4;
    const CELL_W: usize = 200;
    const CELL_H: usize = SIDE * SCALE + 62;
    const TITLE_H: usize = 44;
    let rows = shown.len().div_ceil(PICTURED_PER_ROW);
    let (width, height) = (PICTURED_PER_ROW * CELL_W, TITLE_H + rows * CELL_H);
    let mut buffer = vec![255u8; width * height * 3];
    // The pictures first, pixel by pixel (light on dark, as Fashion-MNIST stores them).
    for (k, c) in shown.iter().enumerate() {
        let x0 = (k % PICTURED_PER_ROW) * CELL_W + (CELL_W - SIDE * SCALE) / 2;
        let y0 = TITLE_H + (k / PICTURED_PER_ROW) * CELL_H + 4;
        for y in 0..SIDE * SCALE {
            for x in 0..SIDE * SCALE {
                let v = c.pixels[(y / SCALE) * SIDE + x / SCALE];
                let at = ((y0 + y) * width + x0 + x) * 3;
                buffer[at..at + 3].fill(v);
            }
        }
    }
    plot::register_font()?;
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width as u32, height as u32))
            .into_drawing_area();
        let err = |e| anyhow::anyhow!("drawing {}: {e:?}", path.display());
        let correct = shown.iter().filter(|c| c.correct()).count();
        root.draw_text(
            &format!(
                "resnet20_1w1a, 1-bit, packed engine: {correct} of {} right",
                shown.len()
            ),
            &(plot::FONT, 26).into_font().color(&BLACK),
            (12, 10),
        )
        .map_err(err)?;
        for (k, c) in shown.iter().enumerate() {
            let x = (k % PICTURED_PER_ROW * CELL_W + 10) as i32;
            let y = (TITLE_H + (k / PICTURED_PER_ROW) * CELL_H + SIDE * SCALE + 10) as i32;
            let color = if c.correct() {
                RGBColor(20, 130, 40)
            } else {
                RGBColor(200, 30, 30)
            };
            root.draw_text(
                &format!("true: {}", c.truth),
                &(plot::FONT, 17).into_font().color(&BLACK),
                (x, y),
            )
            .map_err(err)?;
            root.draw_text(
                &format!("pred: {} {:.0}%", c.guess, 100.0 * c.probability),
                &(plot::FONT, 17).into_font().color(&color),
                (x, y + 22),
            )
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    image::RgbImage::from_raw(width as u32, height as u32, buffer)
        .context("the predictions picture's buffer")?
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

fn run() -> Result<()> {
    let started = Instant::now();
    let gpu = Gpu::new(None)?;
    println!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    let full_set = !gpu.is_software() && Path::new(FULL_SET).is_dir();
    let (base, name) = base_config(full_set);
    let train_split = load_split(&base, Split::Train)?;
    let test = load_split(&base, Split::Test)?;
    println!(
        "data: {name} ({} training, {} test images)",
        train_split.n, test.n
    );
    let input = normalised(&test);
    let (cfg, note) = if gpu.is_software() {
        let eval_rate = evaluation_rate(&gpu, &test, &input)?;
        software_budget(
            base,
            eval_rate,
            started.elapsed().as_secs_f64(),
            train_split.n,
            test.n,
        )
    } else {
        gpu_budget(base, full_set)
    };
    let train_images = train_split.n;
    drop(train_split);
    println!("{note}");
    println!(
        "recipe fast: {} lr {} ({} per step, cosine), batch {}, theta from {:.3} rad, weight \
         decay {} (none on {}), {}, {}\n",
        cfg.optimizer.name(),
        cfg.lr,
        if cfg.lr_update == rbnn::train::config::LrUpdate::Step {
            "changed"
        } else {
            "fixed"
        },
        cfg.batch_size,
        cfg.theta_init,
        cfg.weight_decay,
        cfg.no_decay_on
            .iter()
            .map(|g| g.name())
            .collect::<Vec<_>>()
            .join(", "),
        if cfg.augment {
            "random crops and flips"
        } else {
            "no augmentation"
        },
        match cfg.time_budget {
            Some(seconds) => format!(
                "at most {} epochs, ended by a time budget of {seconds:.0} s",
                cfg.epochs
            ),
            None => format!(
                "{} epoch{}",
                cfg.epochs,
                if cfg.epochs == 1 { "" } else { "s" }
            ),
        }
    );

    // The example's own run directory, replaced by every run of the example.
    let run = RunDir::open(Path::new(OUT), Existing::Overwrite)?;
    let files = &run.files;
    let out = run.dir().to_path_buf();
    let training_started = Instant::now();
    let summary = trainer::train(&gpu, &cfg, &run, None, &AtomicBool::new(false), true)?;
    summary.last.context("no epoch completed")?;
    println!(
        "\ntrained {} steps of {} ({} training images seen, {} epoch{}) in {:.0} s ({:.0} s since \
         the start)",
        summary.steps_run,
        cfg.batch_size,
        // The last batch of an epoch may be short.
        (summary.steps_run * cfg.batch_size).min(summary.epochs_run * train_images),
        summary.epochs_run,
        if summary.epochs_run == 1 { "" } else { "s" },
        training_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let model_path = out.join("model.safetensors");
    let report = export_checkpoint(&gpu, &files.last(), &model_path, &ExportOptions::default())?;
    println!(
        "\nexported {}:\n{}",
        model_path.display(),
        report.describe()
    );

    let shape = [test.n, test.c, test.h, test.w];
    let engine_started = Instant::now();
    let mut engine = Engine::load(&gpu, &model_path)?;
    let packed = engine.run(&gpu, &input, shape)?;
    let engine_seconds = engine_started.elapsed().as_secs_f64();
    let float_started = Instant::now();
    let float = float_logits(&gpu, &files.last(), &test, &input)?;
    let float_seconds = float_started.elapsed().as_secs_f64();
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
    let top1 = 100.0 * correct as f64 / test.n as f64;
    println!(
        "packed engine: test top-1 {top1:.2}% on all {} test images ({:.1} s with loading)",
        test.n, engine_seconds,
    );
    println!(
        "float evaluation path ({float_seconds:.1} s): the same prediction on {agree}/{}; logits \
         bit for bit equal: {identical}/{} (largest difference {worst:.1e} of the largest logit)",
        test.n,
        packed.len()
    );
    if identical != packed.len() {
        println!("WARNING: the packed engine's logits differ from the float path's");
    }

    let classify = |i: usize| -> Classified {
        let best = &top_k(&packed[i * k..(i + 1) * k], &test.classes, 1)[0];
        Classified {
            pixels: picture(&test, i),
            truth: test.classes[test.labels[i] as usize].clone(),
            guess: best.label.clone(),
            probability: best.probability,
        }
    };
    let samples = out.join("samples");
    std::fs::create_dir_all(&samples).with_context(|| format!("creating {}", samples.display()))?;
    // Evenly spread test images (the classes are interleaved in the test split).
    let shown: Vec<usize> = (0..SHOWN).map(|j| j * test.n / SHOWN).collect();
    println!();
    for row in shown.chunks(PER_ROW) {
        let classified: Vec<Classified> = row.iter().map(|&i| classify(i)).collect();
        let drawn: Vec<Vec<String>> = classified.iter().map(|c| ascii(&c.pixels)).collect();
        for line in 0..SIDE / 2 {
            let cells: Vec<&str> = drawn.iter().map(|d| d[line].as_str()).collect();
            println!("  {}", cells.join("    "));
        }
        let mut truth = String::new();
        let mut guess = String::new();
        for (c, &i) in classified.iter().zip(row) {
            let mark = if c.correct() { "ok" } else { "WRONG" };
            truth += &format!("  {:<30}", format!("true: {}", c.truth));
            guess += &format!(
                "  {:<30}",
                format!("pred: {} {:.0}% {mark}", c.guess, 100.0 * c.probability)
            );
            let file = samples.join(format!("test-{i:05}.png"));
            image::GrayImage::from_raw(SIDE as u32, SIDE as u32, c.pixels.clone())
                .context("a 28x28 picture")?
                .save(&file)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        println!("{}\n{}\n", truth.trim_end(), guess.trim_end());
    }
    let pictured: Vec<Classified> = (0..PICTURED)
        .map(|j| classify(j * test.n / PICTURED))
        .collect();
    let png = out.join("predictions.png");
    write_predictions_png(&png, &pictured)?;
    println!(
        "{} test images with their predictions: {}\nthe pictures above are in {}; classify them \
         (or your own 28x28 light-on-black PNGs) with\n  cargo run --release -- predict --model \
         {} {}",
        PICTURED,
        png.display(),
        samples.display(),
        model_path.display(),
        samples.display()
    );
    println!(
        "done in {:.0} s: test top-1 {top1:.2}% (packed 1-bit engine, {} test images)",
        started.elapsed().as_secs_f64(),
        test.n
    );
    Ok(())
}
