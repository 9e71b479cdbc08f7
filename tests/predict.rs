//! `rbnn predict`'s side: pictures become model inputs by the documented rule (luminance or RGB,
//! fill and centre-crop to the content size, black padding, the dataset's normalisation), folders
//! expand to their pictures, bad pictures fail naming the file, and the CLI exports a checkpoint
//! and classifies a folder end to end.
mod common;
mod infer_common;

use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use infer_common::{meta, random_params, scratch};
use rbnn::data::facts::FASHION_MNIST_CLASSES;
use rbnn::data::Normalizer;
use rbnn::infer::predict::{image_files, image_to_input, load_image, top_k};
use rbnn::infer::ModelMeta;
use rbnn::model::ModelKind;
use rbnn::train::checkpoint::{self, CheckpointInfo};
use rbnn::train::config::Config;
use rbnn::train::trainer::state_dict;
use std::path::{Path, PathBuf};
use std::process::Command;

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// A Fashion-MNIST-like model: 1 channel, 28x28 pictures in 32x32 inputs.
fn fashion_meta() -> ModelMeta {
    ModelMeta {
        content: 28,
        mean: vec![0.2860],
        std: vec![0.3530],
        ..meta(ModelKind::Resnet20, [1, 32, 32], 10)
    }
}

fn gradient(w: u32, h: u32) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| Luma([((x * 7 + y * 3) % 256) as u8]))
}

#[test]
fn a_28x28_picture_is_padded_like_the_training_data() {
    let m = fashion_meta();
    let img = gradient(28, 28);
    let input = image_to_input(&DynamicImage::ImageLuma8(img.clone()), &m).unwrap();
    assert_eq!(input.len(), 32 * 32);
    let norm = Normalizer::new(&m.mean, &m.std);
    for y in 0..32 {
        for x in 0..32 {
            let inside = (2..30).contains(&y) && (2..30).contains(&x);
            let pixel = if inside {
                img.get_pixel(x as u32 - 2, y as u32 - 2).0[0]
            } else {
                0
            };
            assert_eq!(input[y * 32 + x], norm.value(0, pixel), "({y}, {x})");
        }
    }
}

#[test]
fn channels_and_sizes_follow_the_rule() {
    let m = fashion_meta();
    // A wide picture keeps its height (28) and loses its sides: the centre 28 columns remain.
    let wide = gradient(56, 28);
    let input = image_to_input(&DynamicImage::ImageLuma8(wide.clone()), &m).unwrap();
    let norm = Normalizer::new(&m.mean, &m.std);
    let want = norm.value(0, wide.get_pixel(14 + 5, 3).0[0]);
    assert!(
        (input[(2 + 3) * 32 + 2 + 5] - want).abs() < 0.05,
        "centre crop"
    );
    // A large uniform picture stays uniform after the downscale.
    let big = GrayImage::from_pixel(300, 200, Luma([200]));
    let input = image_to_input(&DynamicImage::ImageLuma8(big), &m).unwrap();
    assert_eq!(input[16 * 32 + 16], norm.value(0, 200));
    // Colour to a 1-channel model: the luminance.
    let red = RgbImage::from_pixel(28, 28, Rgb([200, 30, 60]));
    let luma = DynamicImage::ImageRgb8(red.clone())
        .to_luma8()
        .get_pixel(0, 0)
        .0[0];
    let input = image_to_input(&DynamicImage::ImageRgb8(red.clone()), &m).unwrap();
    assert_eq!(input[10 * 32 + 10], norm.value(0, luma));
    // Grey to a 3-channel model: three equal planes (same mean/std per channel here).
    let rgb_meta = meta(ModelKind::Resnet20, [3, 32, 32], 10);
    let input = image_to_input(&DynamicImage::ImageLuma8(gradient(32, 32)), &rgb_meta).unwrap();
    assert_eq!(input.len(), 3 * 1024);
    assert_eq!(&input[..1024], &input[1024..2048]);
    assert_eq!(&input[..1024], &input[2048..]);
    // Colour to a 3-channel model keeps the channels apart.
    let input = image_to_input(&DynamicImage::ImageRgb8(red), &rgb_meta).unwrap();
    let n3 = Normalizer::new(&rgb_meta.mean, &rgb_meta.std);
    assert_eq!(
        [input[0], input[1024], input[2048]],
        [n3.value(0, 200), n3.value(1, 30), n3.value(2, 60)]
    );
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn bad_pictures_fail_naming_the_file() {
    let dir = scratch("bad-pictures");
    let m = fashion_meta();
    let text = write(&dir.join("notes.png"), b"not a picture, just some text");
    let e = err_text(load_image(&text, &m));
    assert!(
        e.contains("notes.png") && e.contains("not a readable PNG or JPEG"),
        "{e}"
    );

    let png = dir.join("good.png");
    gradient(28, 28).save(&png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let cut = write(&dir.join("cut.png"), &bytes[..bytes.len() / 2]);
    let e = err_text(load_image(&cut, &m));
    assert!(e.contains("cut.png"), "{e}");
    let jpg = dir.join("photo.jpg");
    DynamicImage::ImageLuma8(gradient(64, 64))
        .to_rgb8()
        .save(&jpg)
        .unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    let cut = write(&dir.join("cut.jpg"), &bytes[..bytes.len() / 3]);
    let e = err_text(load_image(&cut, &m));
    assert!(e.contains("cut.jpg"), "{e}");
    // The format comes from the content: a PNG named .jpg still decodes.
    let renamed = write(&dir.join("really-a-png.jpg"), &std::fs::read(&png).unwrap());
    assert_eq!(load_image(&renamed, &m).unwrap().len(), 1024);

    let two = meta(ModelKind::Resnet20, [2, 32, 32], 10);
    let e = err_text(load_image(&png, &two));
    assert!(
        e.contains("good.png") && e.contains("wrong channel count"),
        "{e}"
    );
    let e = err_text(load_image(&dir.join("absent.png"), &m));
    assert!(e.contains("absent.png"), "{e}");
}

#[test]
fn folders_expand_to_their_pictures() {
    let dir = scratch("folders");
    for name in ["b.png", "a.JPG", ".hidden.png", "notes.txt"] {
        write(&dir.join(name), b"x");
    }
    std::fs::create_dir_all(dir.join("sub.png")).unwrap();
    let extra = write(&dir.join("notes.txt"), b"x");
    let files = image_files(&[dir.clone(), extra.clone()]).unwrap();
    assert_eq!(files, vec![dir.join("a.JPG"), dir.join("b.png"), extra]);
    let empty = scratch("empty-folder");
    let e = err_text(image_files(&[empty]));
    assert!(e.contains("empty-folder") && e.contains("no .png"), "{e}");
    let e = err_text(image_files(&[dir.join("missing")]));
    assert!(e.contains("missing: no such file"), "{e}");
}

#[test]
fn top_k_is_a_sorted_softmax() {
    let classes: Vec<String> = ["cat", "dog", "emu"].map(String::from).to_vec();
    let p = top_k(&[1.0, 3.0, 2.0], &classes, 5);
    assert_eq!(
        p.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(),
        ["dog", "emu", "cat"]
    );
    let total: f64 = p.iter().map(|p| p.probability).sum();
    assert!((total - 1.0).abs() < 1e-12);
    let e = 1f64.exp();
    assert!((p[0].probability - e * e / (1.0 + e + e * e)).abs() < 1e-12);
    assert_eq!(top_k(&[1.0, 3.0, 2.0], &classes, 1).len(), 1);
}

fn rbnn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .args(args)
        .output()
        .expect("running rbnn")
}

#[test]
fn cli_exports_and_predicts() {
    let Some(gpu) = common::gpu() else { return };
    let dir = scratch("cli");
    let (ck, model, stdout) = checkpoint_and_export(gpu, &dir);
    assert!(stdout.contains("18 binary convs"), "{stdout}");

    let pictures = dir.join("pictures");
    std::fs::create_dir_all(&pictures).unwrap();
    for (i, v) in [30u8, 120, 250].iter().enumerate() {
        GrayImage::from_fn(28, 28, |x, y| Luma([v.wrapping_add((x * y) as u8)]))
            .save(pictures.join(format!("p{i}.png")))
            .unwrap();
    }
    let out = rbnn(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        pictures.to_str().unwrap(),
        "--top",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("p1.png").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("  3. ").count(), 3, "{stdout}");
    let best: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("1. "))
        .collect();
    assert_eq!(best.len(), 3, "{stdout}");
    for line in best {
        let named = FASHION_MNIST_CLASSES.iter().any(|c| line.contains(c));
        assert!(named && line.ends_with('%'), "{line}");
    }

    let bad = write(&dir.join("broken.png"), b"\x89PNG\r\n\x1a\n broken");
    let out = rbnn(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.png"), "{stderr}");
    let out = rbnn(&[
        "predict",
        "--model",
        ck.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a training checkpoint"), "{stderr}");
}

/// A training checkpoint of a random resnet20 on the embedded Fashion-MNIST subset and its
/// export, written with the library and the CLI: (checkpoint, packed model, export's stdout).
fn checkpoint_and_export(gpu: &rbnn::gpu::Gpu, dir: &Path) -> (PathBuf, PathBuf, String) {
    let params = random_params(gpu, ModelKind::Resnet20, 10, 1, 23);
    let config = Config {
        epochs: 2,
        ..Config::default()
    };
    let info = CheckpointInfo {
        model: config.model.clone(),
        dataset: config.dataset.clone(),
        epoch: 2,
        config,
        best_top1: 50.0,
        rng_state: 0,
    };
    let ck = dir.join("last.safetensors");
    checkpoint::save_atomic(
        &ck,
        &state_dict(gpu, &params, true).unwrap(),
        &info.to_metadata(),
    )
    .unwrap();
    let model = dir.join("model.safetensors");
    let out = rbnn(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (ck, model, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// stdout and stderr of a finished command, asserting its exit status.
fn finished(out: std::process::Output, status: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(status), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn eval_scores_a_packed_model_like_its_checkpoint() {
    let Some(gpu) = common::gpu() else { return };
    let dir = scratch("packed-eval");
    let (ck, model, _) = checkpoint_and_export(gpu, &dir);
    // 75 images: two batches of 64 and 11, so the last one is partial.
    let eval = |file: &Path| {
        finished(
            rbnn(&[
                "eval",
                "--checkpoint",
                file.to_str().unwrap(),
                "--max-test-images",
                "75",
                "--batch-size-test",
                "64",
            ]),
            0,
        )
        .0
    };
    let float_line = eval(&ck);
    let packed_line = eval(&model);
    // "resnet20_1w1a on fashion-mnist-subset (75 test images): loss L, top-1 A%, top-5 B%".
    let split = |line: &str| {
        let (head, rest) = line.trim().split_once(": loss ").unwrap();
        let (loss, accuracy) = rest.split_once(", ").unwrap();
        (
            head.to_string(),
            loss.parse::<f64>().unwrap(),
            accuracy.to_string(),
        )
    };
    let (float_head, float_loss, float_accuracy) = split(&float_line);
    let (packed_head, packed_loss, packed_accuracy) = split(&packed_line);
    assert_eq!(
        float_head, "resnet20_1w1a on embedded (75 test images)",
        "{float_line}"
    );
    assert_eq!(packed_head, float_head, "{packed_line}");
    // The engine's logits equal the float path's bit for bit: the same hits, and the loss up to
    // the float path's f32 accumulation.
    assert_eq!(packed_accuracy, float_accuracy, "{float_line}{packed_line}");
    assert!(
        (packed_loss - float_loss).abs() <= 2e-4,
        "{float_line}{packed_line}"
    );

    // --dataset / --data-path apply to a packed model too.
    let (_, stderr) = finished(
        rbnn(&[
            "eval",
            "--checkpoint",
            model.to_str().unwrap(),
            "--dataset",
            "cifar10",
            "--data-path",
            dir.to_str().unwrap(),
        ]),
        1,
    );
    assert!(
        stderr.contains("data_batch_1.bin") || stderr.contains("test_batch.bin"),
        "{stderr}"
    );
}

#[test]
fn a_packed_model_given_for_training_or_export_is_named_as_such() {
    // The checkpoint reader recognises packed models by the format their writer sets.
    assert_eq!(checkpoint::PACKED_FORMAT, rbnn::infer::model::FORMAT);
    let Some(gpu) = common::gpu() else { return };
    let dir = scratch("packed-misuse");
    let (_, model, _) = checkpoint_and_export(gpu, &dir);
    let m = model.to_str().unwrap();
    let again = dir.join("again.safetensors");
    let golden_batch = common::golden_file("resnet20_1w1a", "batch.safetensors");
    let runs = dir.join("run");
    for (what, args) in [
        (
            "export",
            vec![
                "export",
                "--checkpoint",
                m,
                "--out",
                again.to_str().unwrap(),
            ],
        ),
        (
            "resume",
            vec!["train", "--resume", m, "--out", runs.to_str().unwrap()],
        ),
        (
            "step",
            vec![
                "step",
                "--model",
                "resnet20_1w1a",
                "--weights",
                m,
                "--batch",
                golden_batch.to_str().unwrap(),
                "--out",
                again.to_str().unwrap(),
            ],
        ),
    ] {
        let (_, stderr) = finished(rbnn(&args), 1);
        assert!(
            stderr.contains("model.safetensors is a packed 1-bit model")
                && stderr.contains("rbnn eval --checkpoint")
                && stderr.contains("last.safetensors"),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("U32"), "{what}: {stderr}");
    }
    assert!(!again.exists());
    assert!(!runs.join("last.safetensors").exists());
}

#[test]
fn predict_classifies_every_readable_picture_and_reports_the_others() {
    let Some(gpu) = common::gpu() else { return };
    let dir = scratch("predict-partial");
    let (_, model, _) = checkpoint_and_export(gpu, &dir);
    let pictures = dir.join("pictures");
    std::fs::create_dir_all(&pictures).unwrap();
    gradient(28, 28).save(pictures.join("a-good.png")).unwrap();
    // A truncated copy of a real picture.
    let good = std::fs::read(pictures.join("a-good.png")).unwrap();
    write(&pictures.join("b-truncated.png"), &good[..good.len() / 2]);
    gradient(40, 30).save(pictures.join("c-good.png")).unwrap();
    let (stdout, stderr) = finished(
        rbnn(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            pictures.to_str().unwrap(),
            "--top",
            "2",
        ]),
        1,
    );
    assert!(
        stdout.contains("a-good.png") && stdout.contains("c-good.png"),
        "{stdout}"
    );
    assert!(!stdout.contains("b-truncated.png"), "{stdout}");
    assert_eq!(stdout.matches("  2. ").count(), 2, "{stdout}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("b-truncated.png"), "{stderr}");
    assert!(
        stderr.contains("1 of 3 pictures could not be classified"),
        "{stderr}"
    );

    // --top 0 lists nothing: an error, before any work.
    let (stdout, stderr) = finished(
        rbnn(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            pictures.join("a-good.png").to_str().unwrap(),
            "--top",
            "0",
        ]),
        1,
    );
    assert!(
        stdout.is_empty() && stderr.contains("--top must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn export_help_matches_the_engine() {
    let (stdout, _) = finished(rbnn(&["export", "--help"]), 0);
    assert!(!stdout.contains("folded BatchNorm"), "{stdout}");
    assert!(
        stdout.contains("BatchNorm as trained (unfolded)"),
        "{stdout}"
    );
    let (stdout, _) = finished(rbnn(&["--help"]), 0);
    assert!(!stdout.contains("folded BatchNorm"), "{stdout}");
}
