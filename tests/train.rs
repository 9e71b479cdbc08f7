//! The trainer end to end on the embedded Fashion-MNIST subset (cut short): resume gives the same
//! numbers as an uninterrupted run, bad input gets errors that name the file or the limit, and
//! nothing non-finite passes: checkpoints holding NaN are refused by every command that loads
//! them, and a diverging run names the tensors and only checkpoints that exist.
mod common;

use rbnn::model::network::{Mode, Network};
use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::train::checkpoint;
use rbnn::train::config::Config;
use rbnn::train::metrics::read_metrics;
use rbnn::train::run_dir::{Existing, RunDir};
use rbnn::train::trainer::{eval_checkpoint, train, train_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `dir` opened for a fresh run.
fn fresh(dir: &Path) -> RunDir {
    RunDir::open(dir, Existing::Refuse).unwrap()
}

/// `dir` opened to resume the run of `checkpoint`.
fn resuming(dir: &Path, checkpoint: &Path) -> RunDir {
    RunDir::open(dir, Existing::Resume(checkpoint.to_path_buf())).unwrap()
}

fn rbnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbnn"))
}

/// A run short enough for a CPU adapter: 72 training images (4 batches of 16 + a partial batch
/// of 8, which trains on a network of its own size), 32 test images.
fn tiny_config() -> Config {
    Config {
        epochs: 3,
        batch_size: 16,
        batch_size_test: 16,
        max_train_images: Some(72),
        max_test_images: Some(32),
        seed: 5,
        ..Config::default()
    }
}

#[test]
fn resume_gives_the_same_numbers_as_an_uninterrupted_run() {
    let gpu = gpu_or_skip!();
    let cfg = tiny_config();
    let stop = AtomicBool::new(false);
    let whole = temp_dir("whole");
    let first = train(gpu, &cfg, &fresh(&whole), None, &stop, false).unwrap();
    assert_eq!(first.epochs_run, 3);

    let parts = temp_dir("parts");
    train_until(gpu, &cfg, &fresh(&parts), None, &stop, false, 1).unwrap();
    let last = parts.join("last.safetensors");
    let resumed = train(
        gpu,
        &cfg,
        &resuming(&parts, &last),
        Some(&last),
        &stop,
        false,
    )
    .unwrap();
    assert_eq!(resumed.epochs_run, 2);

    let (a, _) = checkpoint::read_safetensors(&whole.join("last.safetensors")).unwrap();
    let (b, _) = checkpoint::read_safetensors(&parts.join("last.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, t) in a.iter() {
        assert_eq!(Some(t), b.get(name), "{name} differs after resume");
    }
    let ma = read_metrics(&whole.join("metrics.jsonl")).unwrap();
    let mb = read_metrics(&parts.join("metrics.jsonl")).unwrap();
    assert_eq!(ma.len(), 3);
    assert_eq!(mb.len(), 3);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (
                x.epoch,
                x.train_loss,
                x.test_loss,
                x.test_top1,
                &x.flip_rate
            ),
            (
                y.epoch,
                y.train_loss,
                y.test_loss,
                y.test_top1,
                &y.flip_rate
            )
        );
    }
    assert!(whole.join("curves.png").exists());

    // The checkpoint evaluates to what the run logged for its last epoch.
    let (_, totals) = eval_checkpoint(gpu, &whole.join("last.safetensors"), None).unwrap();
    let last = ma.last().unwrap();
    assert!((100.0 * totals.top1_accuracy() - last.test_top1).abs() < 1e-9);

    // A checkpoint is refused for another model, naming the file.
    let other = Config {
        model: "vgg_small_1w1a".into(),
        ..cfg.clone()
    };
    let err = eval_checkpoint(gpu, &whole.join("last.safetensors"), Some(&other)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("last.safetensors") && msg.contains("resnet20_1w1a"),
        "{msg}"
    );
    let err = train(
        gpu,
        &other,
        &fresh(&temp_dir("other")),
        Some(&whole.join("last.safetensors")),
        &stop,
        false,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("last.safetensors"), "{err:#}");
}

/// The config of a one-epoch tiny run.
fn one_epoch_config() -> Config {
    Config {
        epochs: 1,
        ..tiny_config()
    }
}

/// The last.safetensors of a one-epoch tiny run, trained once for the tests of this file that
/// build bad checkpoints from it.
fn one_epoch_checkpoint(gpu: &rbnn::gpu::Gpu) -> &'static Path {
    static CHECKPOINT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKPOINT.get_or_init(|| {
        let dir = temp_dir("one-epoch");
        let cfg = one_epoch_config();
        train(
            gpu,
            &cfg,
            &fresh(&dir),
            None,
            &AtomicBool::new(false),
            false,
        )
        .unwrap();
        dir.join("last.safetensors")
    })
}

#[test]
fn a_checkpoint_with_missing_or_misshaped_tensors_is_refused_by_name() {
    let gpu = gpu_or_skip!();
    let dir = temp_dir("broken");
    let good = checkpoint::load(one_epoch_checkpoint(gpu)).unwrap();
    let mut state = good.state.clone();
    state.remove("layer2.1.conv1.R1");
    state.insert(
        "layer3.0.bn1.weight",
        checkpoint::HostTensor::f32(&[3], vec![1.0; 3]),
    );
    let broken = dir.join("broken.safetensors");
    checkpoint::save_atomic(&broken, &state, &good.metadata).unwrap();
    let err = eval_checkpoint(gpu, &broken, None).unwrap_err();
    let msg = format!("{err:#}");
    for needle in [
        "broken.safetensors",
        "layer2.1.conv1.R1",
        "layer3.0.bn1.weight",
    ] {
        assert!(msg.contains(needle), "error should name {needle}: {msg}");
    }
}

#[test]
fn a_batch_too_large_for_the_adapter_names_the_limit() {
    let gpu = gpu_or_skip!();
    let spec = ModelSpec::new(ModelKind::Resnet20, 10, 3);
    let params = Params::new(gpu, spec).unwrap();
    // 3*32*32*4 bytes per image of input alone: this batch is past any adapter's 4 GiB.
    let batch = 400_000;
    let err = match Network::new(gpu, &params, batch, Mode::Eval, false, [3, 32, 32]) {
        Ok(_) => panic!("a batch of {batch} should not fit"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
}

#[test]
fn a_diverging_run_stops_naming_the_tensors_and_no_missing_checkpoint() {
    let gpu = gpu_or_skip!();
    let cfg = Config {
        epochs: 1,
        lr: 1e30,
        ..tiny_config()
    };
    let dir = temp_dir("nan");
    let err = train(
        gpu,
        &cfg,
        &fresh(&dir),
        None,
        &AtomicBool::new(false),
        false,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    // The parameters are checked where the loss is read back, and named.
    assert!(
        msg.contains("parameters became NaN or infinite in epoch 1")
            && msg.contains("conv1.weight"),
        "{msg}"
    );
    // Epoch 1 never finished: no checkpoint exists, and the message names none.
    assert!(msg.contains("No checkpoint was written"), "{msg}");
    assert!(!msg.contains("last.safetensors"), "{msg}");
    assert!(!dir.join("last.safetensors").exists());
}

/// A copy of `good` with every value of `tensor` replaced by `value`, saved as `name` in `dir`.
fn poisoned(good: &Path, tensor: &str, value: f32, dir: &Path, name: &str) -> PathBuf {
    let ck = checkpoint::load(good).unwrap();
    let mut state = ck.state.clone();
    let t = state.get(tensor).unwrap().clone();
    state.insert(
        tensor,
        checkpoint::HostTensor::f32(&t.shape, vec![value; t.numel()]),
    );
    let path = dir.join(name);
    checkpoint::save_atomic(&path, &state, &ck.metadata).unwrap();
    path
}

#[test]
fn checkpoints_with_nan_are_refused_by_every_command() {
    let gpu = gpu_or_skip!();
    let cfg = one_epoch_config();
    let dir = temp_dir("poisoned");
    let good = one_epoch_checkpoint(gpu);
    // The report's file: the float stem all NaN, which binarisation would hide.
    let nan = poisoned(good, "conv1.weight", f32::NAN, &dir, "nan.safetensors");
    let expect_named = |what: &str, msg: &str| {
        assert!(
            msg.contains("nan.safetensors") && msg.contains("conv1.weight (144 of 144 values)"),
            "{what}: {msg}"
        );
    };
    expect_named(
        "load",
        &format!("{:#}", checkpoint::load(&nan).unwrap_err()),
    );
    expect_named(
        "eval",
        &format!("{:#}", eval_checkpoint(gpu, &nan, None).unwrap_err()),
    );
    let resumed_into = temp_dir("poisoned-resume");
    let err = train(
        gpu,
        &cfg,
        &fresh(&resumed_into),
        Some(&nan),
        &AtomicBool::new(false),
        false,
    )
    .unwrap_err();
    expect_named("resume", &format!("{err:#}"));
    assert!(!resumed_into.join("last.safetensors").exists());

    // The command line: eval, export and step exit 1 with the same message.
    let inf = poisoned(
        good,
        "layer2.0.bn1.running_var",
        f32::INFINITY,
        &dir,
        "inf.safetensors",
    );
    let model = dir.join("model.safetensors");
    let batch = common::golden_file("resnet20_1w1a", "batch.safetensors");
    let commands: [(&str, Vec<&std::ffi::OsStr>); 3] = [
        (
            "eval",
            vec!["eval".as_ref(), "--checkpoint".as_ref(), inf.as_os_str()],
        ),
        (
            "export",
            vec![
                "export".as_ref(),
                "--checkpoint".as_ref(),
                inf.as_os_str(),
                "--out".as_ref(),
                model.as_os_str(),
            ],
        ),
        (
            "step",
            vec![
                "step".as_ref(),
                "--model".as_ref(),
                "resnet20_1w1a".as_ref(),
                "--weights".as_ref(),
                inf.as_os_str(),
                "--batch".as_ref(),
                batch.as_os_str(),
                "--out".as_ref(),
                model.as_os_str(),
            ],
        ),
    ];
    for (what, args) in commands {
        let out = rbnn().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("inf.safetensors")
                && stderr.contains("layer2.0.bn1.running_var (32 of 32 values)"),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("top-1"), "{what}: {stderr}");
    }
    assert!(!model.exists());
}

#[test]
fn step_rejects_a_batch_with_non_finite_values() {
    let case = "resnet20_1w1a";
    let (batch, _) =
        checkpoint::read_safetensors(&common::golden_file(case, "batch.safetensors")).unwrap();
    let dir = temp_dir("nan-batch");
    let mut bad = batch.clone();
    let input = bad.get("input").unwrap().clone();
    let mut values = input.to_f32();
    values[5000] = f32::NAN;
    values[7] = f32::NEG_INFINITY;
    bad.insert("input", checkpoint::HostTensor::f32(&input.shape, values));
    let path = dir.join("nan-batch.safetensors");
    checkpoint::save_atomic(&path, &bad, &Default::default()).unwrap();
    let out_file = dir.join("out.safetensors");
    let out = rbnn()
        .args(["step", "--model", "resnet20_1w1a", "--weights"])
        .arg(common::golden_file(case, "weights.safetensors"))
        .arg("--batch")
        .arg(&path)
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nan-batch.safetensors")
            && stderr.contains("\"input\" holds 2 NaN or infinite values")
            && stderr.contains("index 7"),
        "{stderr}"
    );
    assert!(!out_file.exists());
}
