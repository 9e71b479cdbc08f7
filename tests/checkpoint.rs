//! Checkpoints: safetensors round trips, atomic replacement, load errors that name the file,
//! validation against a model's tensor list, the batch reader, and the golden files from the
//! official PyTorch code (tests/golden).
mod common;

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

use rbnn::train::checkpoint::{
    self, check_against, check_model, keys, load, read_batch, save_atomic, write_atomic,
    CheckpointInfo, HostTensor, Metadata, StateDict, TensorData, FORMAT, FORMAT_VERSION,
    MOMENTUM_PREFIX,
};
use rbnn::train::config::Config;
use safetensors::{Dtype, View};

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-ckpt-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn golden(file: &str) -> PathBuf {
    common::golden_file("resnet20_1w1a", file)
}

fn small_state(scale: f32) -> StateDict {
    let mut s = StateDict::new();
    s.insert(
        "conv1.weight",
        HostTensor::f32(&[2, 1, 2, 2], (0..8).map(|i| i as f32 * scale).collect()),
    );
    s.insert("bn1.num_batches_tracked", HostTensor::i64(&[], vec![391]));
    s.insert("linear.bias", HostTensor::f32(&[3], vec![0.5, -1.5, 1e-30]));
    s
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn round_trip_keeps_values_dtypes_and_metadata() {
    let dir = scratch("roundtrip");
    let path = dir.join("ckpt.safetensors");
    let state = small_state(0.25);
    let mut meta = Metadata::new();
    meta.insert("note".into(), "hello".into());
    save_atomic(&path, &state, &meta).unwrap();
    let ck = load(&path).unwrap();
    assert_eq!(ck.state, state);
    assert_eq!(ck.metadata.get("note").unwrap(), "hello");
    assert_eq!(ck.metadata.get(keys::FORMAT).unwrap(), FORMAT);
    assert_eq!(
        ck.metadata.get(keys::FORMAT_VERSION).unwrap(),
        &FORMAT_VERSION.to_string()
    );
    assert_eq!(ck.state.i64("bn1.num_batches_tracked").unwrap(), vec![391]);
    assert_eq!(
        ck.state.f32("bn1.num_batches_tracked").unwrap(),
        vec![391.0]
    );
    assert!(ck.state.i64("linear.bias").is_err());
    assert_eq!(ck.state.f32_shaped("linear.bias", &[3]).unwrap()[0], 0.5);
    let e = err_text(ck.state.f32_shaped("linear.bias", &[4]));
    assert!(
        e.contains("linear.bias") && e.contains("[3]") && e.contains("[4]"),
        "{e}"
    );
    assert!(err_text(ck.f32("nope")).contains("ckpt.safetensors"));
    // Same input, same bytes: checkpoints are reproducible.
    let again = dir.join("again.safetensors");
    save_atomic(&again, &state, &meta).unwrap();
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_replaces_and_leaves_no_temp_files() {
    let dir = scratch("replace");
    let path = dir.join("last.safetensors");
    save_atomic(&path, &small_state(1.0), &Metadata::new()).unwrap();
    save_atomic(&path, &small_state(2.0), &Metadata::new()).unwrap();
    assert_eq!(load(&path).unwrap().state, small_state(2.0));
    assert_eq!(files_in(&dir), vec!["last.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_save_leaves_the_old_checkpoint_and_its_temp_is_cleaned_later() {
    let dir = scratch("killed");
    let path = dir.join("last.safetensors");
    save_atomic(&path, &small_state(1.0), &Metadata::new()).unwrap();
    // What a save killed before its rename leaves: a partial temp file beside the target.
    let full = checkpoint::serialize(&small_state(3.0), &Metadata::new()).unwrap();
    let stale = dir.join(".last.safetensors.tmp-4242-0");
    fs::write(&stale, &full[..full.len() / 2]).unwrap();
    assert_eq!(load(&path).unwrap().state, small_state(1.0));
    // The next successful save removes the leftover.
    save_atomic(&path, &small_state(2.0), &Metadata::new()).unwrap();
    assert_eq!(load(&path).unwrap().state, small_state(2.0));
    assert_eq!(files_in(&dir), vec!["last.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_save_never_replaces_the_old_file() {
    let dir = scratch("failed");
    let path = dir.join("last.safetensors");
    save_atomic(&path, &small_state(1.0), &Metadata::new()).unwrap();

    // A tensor whose data does not fill its shape: refused before anything is written.
    let mut bad = small_state(5.0);
    bad.insert("broken", HostTensor::f32(&[2, 3], vec![1.0; 5]));
    let e = err_text(save_atomic(&path, &bad, &Metadata::new()));
    assert!(
        e.contains("broken") && e.contains("last.safetensors"),
        "{e}"
    );
    assert_eq!(load(&path).unwrap().state, small_state(1.0));
    assert_eq!(files_in(&dir), vec!["last.safetensors"]);

    // The rename fails (the target is a non-empty directory): the temp file is removed.
    let blocked = dir.join("blocked");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("keep"), b"x").unwrap();
    let e = err_text(save_atomic(&blocked, &small_state(5.0), &Metadata::new()));
    assert!(e.contains("blocked"), "{e}");
    assert_eq!(files_in(&dir), vec!["blocked", "last.safetensors"]);
    assert_eq!(files_in(&blocked), vec!["keep"]);

    // The directory does not exist: the error names the target.
    let e = err_text(write_atomic(
        &dir.join("no/such/dir/x.safetensors"),
        b"data",
    ));
    assert!(e.contains("no/such/dir/x.safetensors"), "{e}");
    assert_eq!(load(&path).unwrap().state, small_state(1.0));
    fs::remove_dir_all(&dir).unwrap();
}

/// A tensor of any dtype, to write files rbnn itself never writes.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn write_raw(path: &Path, tensors: &[(&str, Raw)]) {
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (*n, t)), None).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn load_errors_name_the_file_and_the_problem() {
    let dir = scratch("loaderr");
    let missing = dir.join("missing.safetensors");
    let e = err_text(load(&missing));
    assert!(
        e.contains("missing.safetensors") && e.contains("no such file"),
        "{e}"
    );

    let text = dir.join("notes.txt");
    fs::write(&text, "this is not a checkpoint, just some text\n").unwrap();
    let e = err_text(load(&text));
    assert!(
        e.contains("notes.txt") && e.contains("not a safetensors file"),
        "{e}"
    );

    let tiny = dir.join("tiny.safetensors");
    fs::write(&tiny, b"abc").unwrap();
    let e = err_text(load(&tiny));
    assert!(
        e.contains("tiny.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );

    let good = dir.join("good.safetensors");
    save_atomic(&good, &small_state(1.0), &Metadata::new()).unwrap();
    let bytes = fs::read(&good).unwrap();
    for (name, keep) in [("cut-data", bytes.len() - 7), ("cut-header", 20)] {
        let cut = dir.join(format!("{name}.safetensors"));
        fs::write(&cut, &bytes[..keep]).unwrap();
        let e = err_text(load(&cut));
        assert!(e.contains(name) && e.contains("truncated"), "{e}");
        assert!(e.contains(&format!("the file has {keep}")), "{e}");
    }

    let f64_file = dir.join("f64.safetensors");
    write_raw(
        &f64_file,
        &[(
            "w",
            Raw {
                dtype: Dtype::F64,
                shape: vec![2],
                bytes: [1.0f64, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
        )],
    );
    let e = err_text(load(&f64_file));
    assert!(
        e.contains("f64.safetensors") && e.contains("`w`") && e.contains("F64"),
        "{e}"
    );

    // int32 is accepted and widened.
    let i32_file = dir.join("i32.safetensors");
    write_raw(
        &i32_file,
        &[(
            "count",
            Raw {
                dtype: Dtype::I32,
                shape: vec![3],
                bytes: [7i32, -2, 100]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            },
        )],
    );
    let ck = load(&i32_file).unwrap();
    assert_eq!(ck.state.i64("count").unwrap(), vec![7, -2, 100]);
    assert_eq!(ck.state.f32("count").unwrap(), vec![7.0, -2.0, 100.0]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = scratch("version");
    let path = dir.join("future.safetensors");
    let write_with_version = |version: &str| {
        let mut meta = std::collections::HashMap::new();
        meta.insert(keys::FORMAT.to_string(), FORMAT.to_string());
        meta.insert(keys::FORMAT_VERSION.to_string(), version.to_string());
        let t = Raw {
            dtype: Dtype::F32,
            shape: vec![1],
            bytes: 1.0f32.to_le_bytes().to_vec(),
        };
        fs::write(
            &path,
            safetensors::serialize([("w", &t)], Some(meta)).unwrap(),
        )
        .unwrap();
    };
    write_with_version(&(FORMAT_VERSION + 1).to_string());
    let e = err_text(load(&path));
    assert!(
        e.contains("future.safetensors") && e.contains("newer"),
        "{e}"
    );

    write_with_version("one");
    let e = err_text(load(&path));
    assert!(
        e.contains("future.safetensors") && e.contains("format_version"),
        "{e}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_against_reports_every_problem_at_once() {
    let state = small_state(1.0);
    let file = Path::new("runs/x/last.safetensors");
    let ok: Vec<(&str, Vec<usize>)> = vec![
        ("conv1.weight", vec![2, 1, 2, 2]),
        ("bn1.num_batches_tracked", vec![]),
        ("linear.bias", vec![3]),
    ];
    check_against(&state, &ok, file).unwrap();

    let expected: Vec<(&str, Vec<usize>)> = vec![
        ("conv1.weight", vec![4, 1, 2, 2]),
        ("bn1.num_batches_tracked", vec![]),
        ("bn1.weight", vec![4]),
        ("layer1.0.conv1.R1", vec![2, 2]),
    ];
    let e = err_text(check_against(&state, &expected, file));
    assert!(e.contains("runs/x/last.safetensors"), "{e}");
    assert!(
        e.contains("2 missing, 1 of the wrong shape, 1 unexpected"),
        "{e}"
    );
    assert!(e.contains("missing: bn1.weight"), "{e}");
    assert!(e.contains("missing: layer1.0.conv1.R1"), "{e}");
    assert!(
        e.contains("wrong shape: conv1.weight: expected [4, 1, 2, 2], found [2, 1, 2, 2]"),
        "{e}"
    );
    assert!(e.contains("unexpected: linear.bias"), "{e}");
}

#[test]
fn checkpoint_of_another_model_is_refused_clearly() {
    let mut meta = Metadata::new();
    let file = Path::new("best.safetensors");
    check_model(&meta, "resnet20_1w1a", file).unwrap();
    meta.insert(keys::MODEL.into(), "resnet18_1w1a".into());
    check_model(&meta, "resnet18_1w1a", file).unwrap();
    let e = err_text(check_model(&meta, "resnet20_1w1a", file));
    assert!(
        e.contains("best.safetensors")
            && e.contains("`resnet18_1w1a`")
            && e.contains("--model resnet18_1w1a"),
        "{e}"
    );
}

#[test]
fn training_metadata_and_momentum_round_trip() {
    let dir = scratch("info");
    let path = dir.join("last.safetensors");
    let config = Config {
        epochs: 7,
        lr_decay_step: vec![3, 5],
        ..Config::default()
    };
    let info = CheckpointInfo {
        model: config.model.clone(),
        dataset: config.dataset.clone(),
        epoch: 4,
        config,
        best_top1: 81.234_567_890_123,
        rng_state: u64::MAX - 12345,
    };
    let mut state = small_state(1.0);
    let mut momentum = StateDict::new();
    momentum.insert("conv1.weight", HostTensor::f32(&[2, 1, 2, 2], vec![0.1; 8]));
    state.extend_prefixed(MOMENTUM_PREFIX, momentum.clone());
    assert!(state.contains("momentum.conv1.weight"));
    save_atomic(&path, &state, &info.to_metadata()).unwrap();

    let ck = load(&path).unwrap();
    assert_eq!(ck.info().unwrap(), info);
    let mut loaded = ck.state;
    assert_eq!(loaded.split_prefix(MOMENTUM_PREFIX), momentum);
    assert_eq!(loaded, small_state(1.0));

    // A weights-only file (no training metadata) loads but cannot be resumed.
    let plain = dir.join("plain.safetensors");
    save_atomic(&plain, &small_state(1.0), &Metadata::new()).unwrap();
    let e = err_text(load(&plain).unwrap().info());
    assert!(
        e.contains("plain.safetensors") && e.contains("\"epoch\""),
        "{e}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batch_reader_checks_shapes_dtypes_and_classes() {
    let dir = scratch("batch");
    let input = HostTensor::f32(&[2, 1, 2, 2], (0..8).map(|i| i as f32).collect());
    let write = |name: &str, target: Option<HostTensor>, input: Option<HostTensor>| {
        let mut s = StateDict::new();
        if let Some(t) = target {
            s.insert("target", t);
        }
        if let Some(i) = input {
            s.insert("input", i);
        }
        let p = dir.join(name);
        save_atomic(&p, &s, &Metadata::new()).unwrap();
        p
    };
    let p = write(
        "ok",
        Some(HostTensor::i64(&[2], vec![0, 9])),
        Some(input.clone()),
    );
    let b = read_batch(&p, 10).unwrap();
    assert_eq!(b.shape, [2, 1, 2, 2]);
    assert_eq!(b.target, vec![0, 9]);
    assert_eq!(b.input, input.to_f32());

    let e = err_text(read_batch(&p, 9));
    assert!(e.contains("target[1] = 9") && e.contains("0..9"), "{e}");
    let p = write(
        "neg",
        Some(HostTensor::i64(&[2], vec![-1, 0])),
        Some(input.clone()),
    );
    assert!(err_text(read_batch(&p, 10)).contains("target[0] = -1"));
    let p = write(
        "short",
        Some(HostTensor::i64(&[3], vec![0, 1, 2])),
        Some(input.clone()),
    );
    let e = err_text(read_batch(&p, 10));
    assert!(
        e.contains("short") && e.contains("[3]") && e.contains("[2]"),
        "{e}"
    );
    let p = write("notarget", None, Some(input.clone()));
    assert!(err_text(read_batch(&p, 10)).contains("no tensor \"target\""));
    let p = write("noinput", Some(HostTensor::i64(&[2], vec![0, 1])), None);
    assert!(err_text(read_batch(&p, 10)).contains("no tensor \"input\""));
    let p = write(
        "flat",
        Some(HostTensor::i64(&[2], vec![0, 1])),
        Some(HostTensor::f32(&[2, 4], vec![0.0; 8])),
    );
    assert!(err_text(read_batch(&p, 10)).contains("4 dimensions"));
    let p = write(
        "floattarget",
        Some(HostTensor::f32(&[2], vec![0.0, 1.0])),
        Some(input.clone()),
    );
    assert!(err_text(read_batch(&p, 10)).contains("expected int64 or int32"));

    let i32_target = dir.join("i32");
    let input_bytes: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    write_raw(
        &i32_target,
        &[
            (
                "input",
                Raw {
                    dtype: Dtype::F32,
                    shape: vec![2, 1, 2, 2],
                    bytes: input_bytes,
                },
            ),
            (
                "target",
                Raw {
                    dtype: Dtype::I32,
                    shape: vec![2],
                    bytes: [3i32, 4].iter().flat_map(|x| x.to_le_bytes()).collect(),
                },
            ),
        ],
    );
    assert_eq!(read_batch(&i32_target, 10).unwrap().target, vec![3, 4]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn golden_batch() {
    let path = golden("batch.safetensors");
    let b = read_batch(&path, 10).unwrap();
    assert_eq!(b.shape, [4, 3, 32, 32]);
    assert_eq!(b.input.len(), 4 * 3 * 32 * 32);
    // From the golden README: targets [1, 7, 3, 0], inputs standard normal.
    assert_eq!(b.target, vec![1, 7, 3, 0]);
    let mean = b.input.iter().map(|&x| x as f64).sum::<f64>() / b.input.len() as f64;
    assert!(mean.abs() < 0.1, "mean {mean}");
    let e = err_text(read_batch(&path, 5));
    assert!(
        e.contains("batch.safetensors") && e.contains("target[1] = 7"),
        "{e}"
    );
}

#[test]
fn golden_weights_and_expected() {
    let (weights, expected) = (
        golden("weights.safetensors"),
        golden("expected.safetensors"),
    );
    let w = load(&weights).unwrap();
    assert_eq!(w.state.len(), 193);
    assert_eq!(
        w.state.get("conv1.weight").unwrap().shape,
        vec![16, 3, 3, 3]
    );
    // n = 16*3*3 = 144 -> R1, R2 are 12x12; n = 64*3*3 = 576 -> 24x24.
    assert_eq!(
        w.state.get("layer1.0.conv1.R1").unwrap().shape,
        vec![12, 12]
    );
    assert_eq!(
        w.state.get("layer3.2.conv2.R2").unwrap().shape,
        vec![24, 24]
    );
    assert_eq!(
        w.state.get("layer3.2.conv2.alpha").unwrap().shape,
        vec![64, 1, 1]
    );
    assert_eq!(
        w.state.get("layer3.2.conv2.rotate").unwrap().shape,
        vec![64, 1, 1, 1]
    );
    let nbt = w.state.get("bn1.num_batches_tracked").unwrap();
    assert!(nbt.shape.is_empty());
    assert!(matches!(nbt.data, TensorData::I64(ref v) if v.len() == 1));
    // R1 is orthogonal: R1^T R1 = I.
    let r1 = w.f32("layer1.0.conv1.R1").unwrap();
    for i in 0..12 {
        for j in 0..12 {
            let dot: f64 = (0..12)
                .map(|k| r1[k * 12 + i] as f64 * r1[k * 12 + j] as f64)
                .sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-5, "R1^T R1 [{i},{j}] = {dot}");
        }
    }

    // The golden state dict validates against its own list, and a model expecting one more
    // tensor and a different shape gets both reported.
    let shapes = w.state.shapes();
    check_against(&w.state, &shapes, &weights).unwrap();
    let mut wrong = shapes.clone();
    wrong.retain(|(n, _)| n != "linear.bias");
    wrong.push(("fc.weight".into(), vec![10, 64]));
    for (n, s) in wrong.iter_mut() {
        if n == "conv1.weight" {
            *s = vec![16, 1, 3, 3];
        }
    }
    let e = err_text(check_against(&w.state, &wrong, &weights));
    assert!(e.contains("weights.safetensors"), "{e}");
    assert!(e.contains("missing: fc.weight"), "{e}");
    assert!(e.contains("unexpected: linear.bias"), "{e}");
    assert!(e.contains("wrong shape: conv1.weight"), "{e}");

    // Re-saved by rbnn, it reads back identical (int64 kept int64).
    let dir = scratch("golden");
    let copy = dir.join("weights.safetensors");
    save_atomic(&copy, &w.state, &Metadata::new()).unwrap();
    assert_eq!(load(&copy).unwrap().state, w.state);
    fs::remove_dir_all(&dir).unwrap();

    let x = load(&expected).unwrap();
    assert_eq!(x.state.get("logits").unwrap().shape, vec![4, 10]);
    assert_eq!(x.state.get("loss").unwrap().shape, vec![1]);
    // A gradient for every float parameter: BN running stats, R1/R2 and counters have none.
    for (name, t) in w.state.iter() {
        let trainable = !(name.ends_with("running_mean")
            || name.ends_with("running_var")
            || name.ends_with("num_batches_tracked")
            || name.ends_with(".R1")
            || name.ends_with(".R2"));
        let grad = x.state.get(&format!("grad.{name}"));
        if trainable {
            assert_eq!(grad.unwrap().shape, t.shape, "grad.{name}");
        } else {
            assert!(grad.is_none(), "unexpected grad.{name}");
        }
    }
    let loss = x.f32("loss").unwrap()[0];
    assert!(loss.is_finite() && loss > 0.0);
}
