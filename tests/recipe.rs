//! Recipes and the optimizer of a run: `rbnn train` without `--recipe` resolves to the official
//! recipe, `--recipe fast` to the fast one with every explicit flag overriding it (the
//! checkpoint's config records the resolved values); the parameter groups; and a run with Adam
//! resumes exactly (its moments and step count are in the checkpoint), refuses a resume with
//! the other optimizer, and its checkpoints evaluate and export like any other.
mod common;

use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::train::checkpoint::{self, TensorData};
use rbnn::train::config::{Config, LrUpdate, OptimizerKind, ParamGroup, Recipe};
use rbnn::train::metrics::read_metrics;
use rbnn::train::optimizer::{group_index, parse_groups, ADAM_STEP};
use rbnn::train::run_dir::{Existing, RunDir};
use rbnn::train::trainer::{eval_checkpoint, train, train_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-recipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `rbnn train` with `args` into a fresh directory; returns the config its checkpoint
/// records.
fn cli_config(name: &str, args: &[&str]) -> Config {
    let dir = temp_dir(name);
    let out = Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .arg("train")
        .args(args)
        .args([
            "--epochs",
            "1",
            "--max-train-images",
            "12",
            "--max-test-images",
            "8",
            "-b",
            "6",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    let ck = checkpoint::load(&dir.join("last.safetensors")).unwrap();
    ck.info().unwrap().config
}

/// What the short CLI runs of `cli_config` set themselves.
fn short_run(base: Config) -> Config {
    Config {
        epochs: 1,
        max_train_images: Some(12),
        max_test_images: Some(8),
        batch_size: 6,
        ..base
    }
}

#[test]
fn train_without_a_recipe_is_the_official_recipe_and_flags_override_fast() {
    if common::gpu().is_none() {
        eprintln!("skipped: no GPU adapter");
        return;
    }
    // No recipe flag: every value the official one.
    let official = cli_config("official", &[]);
    assert_eq!(official, short_run(Config::default()));
    assert_eq!(official.recipe, Recipe::Official);
    assert_eq!(official.optimizer, OptimizerKind::Sgd);
    assert_eq!(official.theta_init, std::f64::consts::FRAC_PI_2);
    assert_eq!((official.lr, official.weight_decay), (0.1, 1e-4));
    assert!(official.no_decay_on.is_empty());
    assert_eq!(official.lr_update, LrUpdate::Epoch);

    // The fast recipe, as its config says.
    let fast = cli_config("fast", &["--recipe", "fast"]);
    assert_eq!(fast, short_run(Recipe::Fast.config()));
    assert_eq!(fast.recipe, Recipe::Fast);
    assert_ne!(
        (fast.optimizer, fast.theta_init),
        (official.optimizer, official.theta_init)
    );

    // Explicit flags override the recipe's values, one by one, and are recorded.
    let overridden = cli_config(
        "fast-overridden",
        &[
            "--recipe",
            "fast",
            "--optimizer",
            "sgd",
            "--lr",
            "0.01",
            "--theta-init",
            "1.25",
            "--no-decay-on",
            "none",
            "--weight-decay",
            "5e-5",
            "--theta-lr-scale",
            "3",
            "--lr-update",
            "epoch",
            "--tmax",
            "2",
        ],
    );
    let want = Config {
        optimizer: OptimizerKind::Sgd,
        lr: 0.01,
        theta_init: 1.25,
        no_decay_on: vec![],
        weight_decay: 5e-5,
        theta_lr_scale: 3.0,
        lr_update: LrUpdate::Epoch,
        tmax: 2.0,
        ..short_run(Recipe::Fast.config())
    };
    assert_eq!(overridden, want);
}

#[test]
fn bad_recipe_flags_are_refused_before_training() {
    for (args, needle) in [
        (&["--no-decay-on", "theta,gamma"][..], "gamma"),
        (&["--theta-lr-scale=-1"][..], "--theta-lr-scale"),
        (&["--adam-beta2", "1"][..], "--adam-beta2"),
        (&["--recipe", "slow"][..], "slow"),
    ] {
        let dir = temp_dir("bad-flags");
        let out = Command::new(env!("CARGO_BIN_EXE_rbnn"))
            .arg("train")
            .args(args)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("adapter:"), "{args:?}: {stderr}");
        assert!(!dir.join("last.safetensors").exists());
    }
}

#[test]
fn parameter_groups_of_the_model() {
    let bns = vec!["bn1".to_string(), "layer1.0.bn2".into(), "bn2".into()];
    for (name, group) in [
        ("layer1.0.conv1.rotate", ParamGroup::Theta),
        ("layer3.2.conv2.alpha", ParamGroup::Alpha),
        ("bn1.weight", ParamGroup::Bn),
        ("layer1.0.bn2.bias", ParamGroup::Bn),
        ("bn2.weight", ParamGroup::Bn),
        ("conv1.weight", ParamGroup::Weights),
        ("layer1.0.conv1.weight", ParamGroup::Weights),
        ("linear.weight", ParamGroup::Weights),
        ("linear.bias", ParamGroup::Weights),
        // Not a BatchNorm of this list, though its name starts like one.
        ("bn10.weight", ParamGroup::Weights),
    ] {
        assert_eq!(ParamGroup::of(name, &bns), group, "{name}");
    }
    assert_eq!(
        parse_groups("alpha, theta,alpha").unwrap(),
        vec![ParamGroup::Theta, ParamGroup::Alpha]
    );
    assert!(parse_groups("none").unwrap().is_empty());
    let e = format!("{:#}", parse_groups("theta,gamma").unwrap_err());
    assert!(
        e.contains("\"gamma\"") && e.contains("weights, theta, alpha, bn"),
        "{e}"
    );

    // Over a real arena: every element of every tensor in its group; the counts add up.
    let Some(gpu) = common::gpu() else {
        eprintln!("skipped the arena part: no GPU adapter");
        return;
    };
    let params = Params::new(gpu, ModelSpec::new(ModelKind::Resnet20, 10, 1)).unwrap();
    let index = group_index(&params).unwrap();
    assert_eq!(index.len(), params.trainable.len());
    let mut counts = [0usize; 4];
    for t in params.spec.tensors.iter().filter(|t| t.trainable) {
        let view = params.get(&t.name).unwrap();
        let start = (view.offset / 4) as usize;
        let group = ParamGroup::of(&t.name, &params.batchnorm_names());
        let at = ParamGroup::ALL.iter().position(|&g| g == group).unwrap();
        assert!(
            index[start..start + view.len()]
                .iter()
                .all(|&g| g as usize == at),
            "{}",
            t.name
        );
        counts[at] += view.len();
    }
    // resnet20: 18 binary convs of 16 (6), 32 (6) and 64 (6) output channels have one theta and
    // one alpha per channel.
    let channels = 6 * (16 + 32 + 64);
    assert_eq!(counts[1], channels, "theta");
    assert_eq!(counts[2], channels, "alpha");
}

/// A run short enough for a CPU adapter, with Adam and the other options of the fast recipe:
/// 40 training images (2 batches of 16 and a partial batch of 8), 16 test images.
fn tiny_fast_config() -> Config {
    Config {
        epochs: 3,
        batch_size: 16,
        batch_size_test: 16,
        max_train_images: Some(40),
        max_test_images: Some(16),
        seed: 9,
        ..Recipe::Fast.config()
    }
}

fn fresh(dir: &Path) -> RunDir {
    RunDir::open(dir, Existing::Refuse).unwrap()
}

#[test]
fn an_adam_run_resumes_exactly_and_its_checkpoints_load_everywhere() {
    let gpu = gpu_or_skip!();
    let cfg = tiny_fast_config();
    let stop = AtomicBool::new(false);
    let whole = temp_dir("adam-whole");
    train(gpu, &cfg, &fresh(&whole), None, &stop, false).unwrap();

    let parts = temp_dir("adam-parts");
    train_until(gpu, &cfg, &fresh(&parts), None, &stop, false, 1).unwrap();
    let last = parts.join("last.safetensors");
    let after_one = checkpoint::load(&last).unwrap();
    // 3 steps per epoch (2 full batches and the partial one).
    assert_eq!(
        after_one.state.get(ADAM_STEP).unwrap().data,
        TensorData::I64(vec![3])
    );
    assert!(after_one
        .state
        .contains("adam.exp_avg.layer1.0.conv1.rotate"));
    assert!(after_one.state.contains("adam.exp_avg_sq.linear.weight"));
    assert!(!after_one.state.contains("momentum.linear.weight"));
    let run = RunDir::open(&parts, Existing::Resume(last.clone())).unwrap();
    train(gpu, &cfg, &run, Some(&last), &stop, false).unwrap();

    let (a, _) = checkpoint::read_safetensors(&whole.join("last.safetensors")).unwrap();
    let (b, _) = checkpoint::read_safetensors(&parts.join("last.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, t) in a.iter() {
        assert_eq!(Some(t), b.get(name), "{name} differs after resume");
    }
    assert_eq!(a.get(ADAM_STEP).unwrap().data, TensorData::I64(vec![9]));
    let (ma, mb) = (
        read_metrics(&whole.join("metrics.jsonl")).unwrap(),
        read_metrics(&parts.join("metrics.jsonl")).unwrap(),
    );
    assert_eq!(ma.len(), 3);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.train_loss, x.test_loss, x.test_top1),
            (y.train_loss, y.test_loss, y.test_top1)
        );
    }
    // theta started at the config's value, not the official pi/2, and trained.
    let first = checkpoint::load(&last).unwrap();
    let theta = first.state.f32("layer1.0.conv1.rotate").unwrap();
    assert!(theta
        .iter()
        .all(|&t| (t - cfg.theta_init as f32).abs() < 0.1));
    assert!(theta.iter().any(|&t| t != cfg.theta_init as f32));

    // The checkpoint evaluates to what the run logged, and exports.
    let (_, totals) = eval_checkpoint(gpu, &whole.join("last.safetensors"), None).unwrap();
    assert!((100.0 * totals.top1_accuracy() - ma[2].test_top1).abs() < 1e-9);
    let model = whole.join("model.safetensors");
    rbnn::infer::export::export_checkpoint(
        gpu,
        &whole.join("last.safetensors"),
        &model,
        &Default::default(),
    )
    .unwrap();
    assert!(model.is_file());

    // Resuming with the other optimizer is refused, naming the file and both optimizers.
    let sgd = Config {
        optimizer: OptimizerKind::Sgd,
        ..cfg.clone()
    };
    let other = temp_dir("adam-as-sgd");
    let err = train(gpu, &sgd, &fresh(&other), Some(&last), &stop, false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("last.safetensors") && msg.contains("adam") && msg.contains("sgd"),
        "{msg}"
    );
    assert!(!other.join("last.safetensors").exists());
}

#[test]
fn an_adam_checkpoint_with_broken_state_is_refused_by_name() {
    let gpu = gpu_or_skip!();
    let cfg = Config {
        epochs: 1,
        ..tiny_fast_config()
    };
    let stop = AtomicBool::new(false);
    let dir = temp_dir("adam-broken");
    train(gpu, &cfg, &fresh(&dir), None, &stop, false).unwrap();
    let good = checkpoint::load(&dir.join("last.safetensors")).unwrap();
    for (what, edit) in [
        ("adam.exp_avg_sq.conv1.weight", "remove"),
        (ADAM_STEP, "remove"),
        ("adam.exp_avg.bn1.bias", "reshape"),
    ] {
        let mut state = good.state.clone();
        match edit {
            "remove" => {
                state.remove(what);
            }
            _ => {
                state.insert(what, checkpoint::HostTensor::f32(&[3], vec![0.0; 3]));
            }
        }
        let file = dir.join("broken.safetensors");
        checkpoint::save_atomic(&file, &state, &good.metadata).unwrap();
        let run = temp_dir("adam-broken-resume");
        let err = train(
            gpu,
            &Config {
                epochs: 2,
                ..cfg.clone()
            },
            &fresh(&run),
            Some(&file),
            &stop,
            false,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("broken.safetensors") && msg.contains(what),
            "{what}: {msg}"
        );
    }
}
