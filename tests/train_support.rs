//! The training run's support pieces: config defaults and JSON round trip, the metrics log
//! (append, read, NaN, a torn last line, truncation on resume) and the PNG of the curves.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use rbnn::train::config::{Config, LrType, Replan};
use rbnn::train::lr::learning_rate;
use rbnn::train::metrics::{read_metrics, retain_before, EpochMetrics, MetricsWriter};
use rbnn::train::plot::{plot_curves, plot_metrics_file};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-train-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn config_defaults_are_the_official_recipe() {
    let c = Config::default();
    assert_eq!(c.model, "resnet20_1w1a");
    assert_eq!((c.lr, c.batch_size, c.batch_size_test), (0.1, 256, 128));
    assert_eq!((c.weight_decay, c.momentum), (1e-4, 0.9));
    assert_eq!((c.tmin, c.tmax), (1e-2, 10.0));
    assert_eq!(c.lr_type, LrType::Cos);
    assert_eq!((c.warm_up, c.a32, c.rotation_update), (false, false, 1));
    c.validate().unwrap();
    // The config's schedule is the closed form of docs/numerics.md section 10.
    assert_eq!(c.learning_rate(0), 0.1);
    assert!((c.learning_rate(c.epochs / 2) - 0.05).abs() < 1e-12);
    let step = Config {
        lr_type: LrType::Step,
        lr_decay_step: vec![2],
        ..c
    };
    assert!((step.learning_rate(2) - 0.01).abs() < 1e-12);
}

#[test]
fn config_json_round_trip_and_old_configs() {
    let c = Config {
        model: "vgg_small_1w1a".into(),
        data_path: Some("/data/cifar".into()),
        lr_type: LrType::Step,
        lr_decay_step: vec![30, 60, 90],
        warm_up: true,
        seed: u64::MAX,
        ..Config::default()
    };
    let json = c.to_json();
    assert!(json.contains("\"lr_type\":\"step\""), "{json}");
    assert_eq!(Config::from_json(&json, "test").unwrap(), c);
    // A config written before a field existed takes that field's default.
    let old = r#"{"model":"resnet18_1w1a","epochs":3}"#;
    let parsed = Config::from_json(old, "old").unwrap();
    assert_eq!(parsed.model, "resnet18_1w1a");
    assert_eq!(parsed.epochs, 3);
    assert_eq!(parsed.lr, 0.1);
    let e = err_text(Config::from_json(
        "{\"epochs\": \"many\"}",
        "ckpt.safetensors",
    ));
    assert!(e.contains("ckpt.safetensors"), "{e}");
}

#[test]
fn config_validation_names_the_flag() {
    let bad = |f: fn(&mut Config)| {
        let mut c = Config::default();
        f(&mut c);
        err_text(c.validate())
    };
    assert!(bad(|c| c.epochs = 0).contains("--epochs"));
    assert!(bad(|c| c.lr = -1.0).contains("--lr"));
    assert!(bad(|c| c.momentum = 1.0).contains("--momentum"));
    assert!(bad(|c| c.tmin = 20.0).contains("--tmin"));
    assert!(bad(|c| c.rotation_update = 0).contains("--rotation-update"));
    for seconds in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let mut c = Config {
            time_budget: Some(seconds),
            ..Config::default()
        };
        let e = err_text(c.validate());
        assert!(e.contains("--time-budget") && e.contains("positive"), "{e}");
        c.time_budget = Some(30.0);
        c.validate().unwrap();
    }
    assert!(bad(|c| c.lr_type = LrType::Step).contains("--lr-decay-step"));
    assert!(bad(|c| {
        c.lr_type = LrType::Step;
        c.lr_decay_step = vec![60, 30];
    })
    .contains("increasing"));
}

fn epoch(e: usize, epochs: usize) -> EpochMetrics {
    let x = e as f64;
    let mut flip = BTreeMap::new();
    let mut cos = BTreeMap::new();
    for layer in ["layer1.0.conv1", "layer1.0.conv2"] {
        flip.insert(layer.to_string(), 0.5 - 0.01 * x);
        cos.insert(layer.to_string(), 0.7 + 0.01 * x);
    }
    EpochMetrics {
        epoch: e,
        lr: learning_rate(0.1, e, epochs, LrType::Cos, &[], false),
        t: 10f64.powf(-2.0 + 3.0 * x / epochs as f64),
        k: 1.0,
        train_loss: 2.3 / (1.0 + x),
        train_top1: 20.0 + 20.0 * x,
        test_loss: 2.2 / (1.0 + 0.8 * x),
        test_top1: 25.0 + 18.0 * x,
        test_top5: 60.0 + 10.0 * x,
        epoch_seconds: 12.5,
        images_per_second: 4000.0,
        rotation_seconds: 0.25,
        flip_rate: flip,
        angular_cosine: cos,
        skipped_train_images: e,
        skipped_test_images: 0,
        steps: None,
        planned_steps: None,
    }
}

#[test]
fn metrics_log_appends_reads_and_truncates_on_resume() {
    let dir = scratch("metrics");
    let path = dir.join("metrics.jsonl");
    let mut w = MetricsWriter::append(&path).unwrap();
    for e in 0..3 {
        w.write(&epoch(e, 5)).unwrap();
    }
    drop(w);
    // Reopening appends.
    let mut w = MetricsWriter::append(&path).unwrap();
    let mut diverged = epoch(3, 5);
    diverged.train_loss = f64::NAN;
    diverged.flip_rate.insert("layer2.0.conv1".into(), f64::NAN);
    w.write(&diverged).unwrap();
    drop(w);

    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().all(|l| l.starts_with("{\"epoch\":")));
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for key in [
        "epoch",
        "lr",
        "t",
        "k",
        "train_loss",
        "train_top1",
        "test_loss",
        "test_top1",
        "test_top5",
        "epoch_seconds",
        "images_per_second",
        "flip_rate",
        "angular_cosine",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(first["flip_rate"]["layer1.0.conv2"], 0.5);

    let read = read_metrics(&path).unwrap();
    assert_eq!(read.len(), 4);
    assert_eq!(read[..3], [epoch(0, 5), epoch(1, 5), epoch(2, 5)]);
    assert!(read[3].train_loss.is_nan());
    assert!(read[3].flip_rate["layer2.0.conv1"].is_nan());

    // A run killed mid-line leaves an unterminated record: skipped.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"epoch\":4,\"lr\":0.0")
        .unwrap();
    assert_eq!(read_metrics(&path).unwrap().len(), 4);

    // Resuming at epoch 2 drops epochs 2, 3 and the torn line; appending continues after them.
    let kept = retain_before(&path, 2).unwrap();
    assert_eq!(kept, vec![epoch(0, 5), epoch(1, 5)]);
    let mut w = MetricsWriter::append(&path).unwrap();
    w.write(&epoch(2, 5)).unwrap();
    drop(w);
    let epochs: Vec<usize> = read_metrics(&path)
        .unwrap()
        .iter()
        .map(|m| m.epoch)
        .collect();
    assert_eq!(epochs, vec![0, 1, 2]);
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["metrics.jsonl"]);

    // A bad line in the middle is an error naming the file and the line.
    fs::write(
        &path,
        format!(
            "{}\nnot json\n{}\n",
            text.lines().next().unwrap(),
            text.lines().nth(1).unwrap()
        ),
    )
    .unwrap();
    let e = err_text(read_metrics(&path));
    assert!(e.contains("metrics.jsonl:2"), "{e}");
    // Nothing to keep when there is no log yet.
    assert!(retain_before(&dir.join("none.jsonl"), 3)
        .unwrap()
        .is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_writes_a_readable_png() {
    let dir = scratch("plot");
    let jsonl = dir.join("metrics.jsonl");
    let png = dir.join("curves.png");
    let mut w = MetricsWriter::append(&jsonl).unwrap();
    for e in 0..3 {
        w.write(&epoch(e, 3)).unwrap();
    }
    drop(w);
    plot_metrics_file(&jsonl, &png, "resnet20_1w1a on fashion-mnist-subset").unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1500, 500));
    // Something was drawn in the series colours (train blue, test red, lr green).
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(count([31, 119, 180]) > 200, "train line");
    assert!(count([214, 39, 40]) > 200, "test line");
    assert!(count([44, 160, 44]) > 100, "lr line");
    // Dark text pixels (title, ticks, legends) exist: the embedded font rendered.
    let dark = img.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count();
    assert!(dark > 2000, "text pixels {dark}");

    // One epoch, and a diverged loss, still plot.
    let mut one = epoch(0, 1);
    one.test_loss = f64::NAN;
    plot_curves(&[one], &dir.join("one.png"), "one epoch").unwrap();
    image::open(dir.join("one.png")).unwrap();
    let e = err_text(plot_curves(&[], &dir.join("none.png"), "empty"));
    assert!(e.contains("none.png") && e.contains("no epochs"), "{e}");
    if std::env::var_os("RBNN_KEEP_PLOT").is_some() {
        eprintln!("plot kept at {}", png.display());
    } else {
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn resuming_keeps_the_earlier_metrics_lines_byte_for_byte() {
    let dir = scratch("metrics-bytes");
    let path = dir.join("metrics.jsonl");
    // Lines as a run writes them, with values of many digits (serde_json's parser is not exact
    // in the last digit, so a re-serialised line can differ), and one line written by hand with
    // a number in a form serialisation would change (12.50, 1e-2).
    let mut w = MetricsWriter::append(&path).unwrap();
    let mut x = 0.123_456_789_012_345_67_f64;
    for e in 0..3 {
        let mut m = epoch(e, 5);
        for _ in 0..7 {
            x = (x * 9.876_543_210_987_654 + 0.314_159_265_358_979_3).fract();
        }
        (m.lr, m.t, m.train_loss, m.test_top1) = (x / 7.0, x * 1e-3, 2.0 + x, 100.0 * x);
        m.flip_rate.insert("layer1.0.conv1".into(), x.sqrt());
        w.write(&m).unwrap();
    }
    drop(w);
    let written = fs::read_to_string(&path).unwrap();
    let by_hand = serde_json::to_string(&epoch(3, 5))
        .unwrap()
        .replace("\"epoch_seconds\":12.5", "\"epoch_seconds\":12.50")
        .replace("\"rotation_seconds\":0.25", "\"rotation_seconds\":2.5e-1");
    assert!(by_hand.contains("12.50") && by_hand.contains("2.5e-1"));
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(format!("{by_hand}\n").as_bytes()).unwrap();
    // And a torn line after it.
    f.write_all(b"{\"epoch\":4,\"lr\"").unwrap();
    drop(f);
    let before = fs::read(&path).unwrap();

    // Continuing at epoch 4: every complete line stays, exactly; the torn one goes.
    let kept = retain_before(&path, 4).unwrap();
    assert_eq!(kept.len(), 4);
    let after = fs::read(&path).unwrap();
    assert_eq!(
        String::from_utf8(after).unwrap(),
        format!("{written}{by_hand}\n")
    );
    // Continuing at epoch 2 keeps the first two lines as they were.
    retain_before(&path, 2).unwrap();
    let first_two: String = written.split_inclusive('\n').take(2).collect();
    assert_eq!(fs::read_to_string(&path).unwrap(), first_two);
    assert!(before.starts_with(first_two.as_bytes()));
    // With nothing to drop, the file is not even rewritten.
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    retain_before(&path, 2).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
}

#[test]
fn planned_steps_compress_the_schedules_onto_the_run() {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12;
    let cfg = Config {
        epochs: 3,
        lr: 0.01,
        lr_update: rbnn::train::config::LrUpdate::Step,
        ..Config::default()
    };
    // 100 steps per epoch, the run planned to 150 from the start: the cosine of 3 epochs ends
    // at step 150.
    let planned = Config {
        replans: vec![Replan {
            at_step: 0,
            planned_steps: 150,
        }],
        ..cfg.clone()
    };
    planned.validate().unwrap();
    assert_eq!(planned.planned_steps(), Some(150));
    assert!(close(planned.step_learning_rate(0, 0, 100), 0.01));
    assert!(close(planned.step_learning_rate(0, 75, 100), 0.005));
    assert!(close(planned.step_learning_rate(1, 50, 100), 0.0));
    assert!(close(planned.schedule_position(1, 0, 100), 2.0));
    assert_eq!(planned.schedule_epoch(0, 100), 0);
    assert_eq!(planned.schedule_epoch(1, 100), 2);
    // Never past the schedule's last epoch.
    assert_eq!(planned.schedule_epoch(2, 100), 2);
    // Without a plan: the usual clock e + s/S.
    assert_eq!(cfg.schedule_epoch(1, 100), 1);
    assert!(close(
        cfg.step_learning_rate(1, 50, 100),
        rbnn::train::lr::learning_rate_at(0.01, 1.5, 3, LrType::Cos, &[], false)
    ));
    // Per-epoch updates take the epoch the compressed clock is in.
    let per_epoch = Config {
        lr_update: rbnn::train::config::LrUpdate::Epoch,
        ..planned.clone()
    };
    assert!(close(
        per_epoch.step_learning_rate(0, 60, 100),
        learning_rate(0.01, 1, 3, LrType::Cos, &[], false)
    ));
    // Planned to 150 at step 20 (the clock then at 0.2 epochs), then to 250 at step 100: each
    // piece runs the rest of the clock to 3 epochs at its last step, with no jump.
    let twice = Config {
        replans: vec![
            Replan {
                at_step: 20,
                planned_steps: 150,
            },
            Replan {
                at_step: 100,
                planned_steps: 250,
            },
        ],
        ..cfg.clone()
    };
    twice.validate().unwrap();
    assert!(close(twice.schedule_position(0, 10, 100), 0.1));
    assert!(close(twice.schedule_position(0, 20, 100), 0.2));
    let at_100 = 0.2 + 2.8 * 80.0 / 130.0;
    assert!(close(
        twice.schedule_position(0, 99, 100),
        0.2 + 2.8 * 79.0 / 130.0
    ));
    assert!(close(twice.schedule_position(1, 0, 100), at_100));
    assert!(close(
        twice.schedule_position(1, 75, 100),
        at_100 + (3.0 - at_100) * 75.0 / 150.0
    ));
    assert!(close(twice.schedule_position(2, 50, 100), 3.0));
    assert!(close(twice.step_learning_rate(2, 50, 100), 0.0));
    // Out of order, or planning fewer steps than are done: refused.
    for replans in [
        vec![
            Replan {
                at_step: 50,
                planned_steps: 150,
            },
            Replan {
                at_step: 20,
                planned_steps: 150,
            },
        ],
        vec![Replan {
            at_step: 50,
            planned_steps: 40,
        }],
    ] {
        let bad = Config {
            replans,
            ..cfg.clone()
        };
        assert!(err_text(bad.validate()).contains("replans"));
    }
    // A run without a budget writes neither field (its checkpoints stay as they were); a
    // planned one records both and reads them back.
    let json = cfg.to_json();
    assert!(
        !json.contains("time_budget") && !json.contains("replans"),
        "{json}"
    );
    let budgeted = Config {
        time_budget: Some(42.5),
        ..planned
    };
    let back = Config::from_json(&budgeted.to_json(), "test").unwrap();
    assert_eq!(back, budgeted);
}
