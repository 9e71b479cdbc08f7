//! The trainer end to end on the embedded Fashion-MNIST subset (cut short): resume gives the same
//! numbers as an uninterrupted run, and bad input gets errors that name the file or the limit.
mod common;

use rbnn::model::network::{Mode, Network};
use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::train::checkpoint;
use rbnn::train::config::Config;
use rbnn::train::metrics::read_metrics;
use rbnn::train::trainer::{eval_checkpoint, train, train_until};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
    let first = train(gpu, &cfg, &whole, None, &stop, false).unwrap();
    assert_eq!(first.epochs_run, 3);

    let parts = temp_dir("parts");
    train_until(gpu, &cfg, &parts, None, &stop, false, 1).unwrap();
    let resumed = train(
        gpu,
        &cfg,
        &parts,
        Some(&parts.join("last.safetensors")),
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
        &temp_dir("other"),
        Some(&whole.join("last.safetensors")),
        &stop,
        false,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("last.safetensors"), "{err:#}");
}

#[test]
fn a_checkpoint_with_missing_or_misshaped_tensors_is_refused_by_name() {
    let gpu = gpu_or_skip!();
    let cfg = Config {
        epochs: 1,
        ..tiny_config()
    };
    let dir = temp_dir("broken");
    train(gpu, &cfg, &dir, None, &AtomicBool::new(false), false).unwrap();
    let good = checkpoint::load(&dir.join("last.safetensors")).unwrap();
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
fn a_diverging_run_stops_and_says_where() {
    let gpu = gpu_or_skip!();
    let cfg = Config {
        epochs: 1,
        lr: 1e30,
        ..tiny_config()
    };
    let err = train(
        gpu,
        &cfg,
        &temp_dir("nan"),
        None,
        &AtomicBool::new(false),
        false,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("loss became") && msg.contains("epoch"),
        "{msg}"
    );
}
