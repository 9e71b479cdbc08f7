//! Time-budgeted training (`Config::time_budget`, `rbnn train --time-budget`): a run far longer
//! than its budget plans its steps from its own rate, stops at the budget with the usual end of
//! a run (metrics, checkpoints that load and evaluate) and records its plans; it cannot be
//! resumed; a bad budget is refused before any work.
mod common;

use rbnn::train::checkpoint;
use rbnn::train::config::{Config, Recipe};
use rbnn::train::metrics::read_metrics;
use rbnn::train::run_dir::{Existing, RunDir};
use rbnn::train::trainer::{eval_checkpoint, train};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-budget-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

/// Seconds of the budget: enough for the first 20 steps of batch 2 on a software adapter, far
/// too few for the 30,000 steps of the config.
const BUDGET: f64 = 8.0;

#[test]
fn a_budgeted_run_stops_in_time_records_its_plan_and_cannot_be_resumed() {
    let gpu = gpu_or_skip!();
    // 30 steps per epoch, 1,000 epochs: hours on a software adapter, minutes on a GPU.
    let cfg = Config {
        epochs: 1000,
        batch_size: 2,
        batch_size_test: 8,
        max_train_images: Some(60),
        max_test_images: Some(8),
        time_budget: Some(BUDGET),
        ..Recipe::Fast.config()
    };
    let dir = temp_dir("run");
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let run = RunDir::open(&dir, Existing::Refuse).unwrap();
    let summary = train(gpu, &cfg, &run, None, &stop, false).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    drop(run);
    eprintln!("{seconds:.1} s: {summary:?}");
    // The budget bounds the training; the last evaluation of 8 images and the checkpoints come
    // after it (a generous allowance for a machine shared with other builds).
    assert!(
        seconds < BUDGET + 30.0,
        "{seconds} s for a budget of {BUDGET} s"
    );
    assert!(!summary.interrupted);
    assert!(summary.steps_run < 30_000, "{summary:?}");
    assert!(summary.epochs_run >= 1, "{summary:?}");

    // The checkpoint records the budget and every plan; the last is the summary's.
    let last = dir.join("last.safetensors");
    let recorded = checkpoint::load(&last).unwrap().info().unwrap().config;
    assert_eq!(recorded.time_budget, Some(BUDGET));
    assert_eq!(recorded.planned_steps(), summary.planned_steps);
    recorded.validate().unwrap();
    if summary.steps_run >= 20 {
        // Planned after 20 steps: at least those, at most every epoch of the config.
        let first = recorded.replans[0];
        assert_eq!(first.at_step, 20, "{:?}", recorded.replans);
        let planned = summary.planned_steps.unwrap();
        assert!((20..=30_000).contains(&planned), "{planned}");
        // The run ends at its plan, or earlier at the budget.
        assert!(summary.steps_run <= planned, "{summary:?}");
    }
    // metrics.jsonl: one line per epoch, their steps adding up to the steps run, the last with
    // the plan as it stood at the end.
    let metrics = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), summary.epochs_run);
    let steps: usize = metrics.iter().map(|m| m.steps.unwrap()).sum();
    assert_eq!(steps, summary.steps_run);
    assert_eq!(metrics.last().unwrap().planned_steps, summary.planned_steps);
    assert!(dir.join("best.safetensors").exists() && dir.join("curves.png").exists());
    // The checkpoint evaluates like any other.
    let (_, totals) = eval_checkpoint(gpu, &last, None).unwrap();
    assert_eq!(totals.samples, 8);

    // Resuming it is refused, with or without a budget, naming the checkpoint.
    let without = Config {
        time_budget: None,
        ..cfg.clone()
    };
    for (c, want) in [(&cfg, "with --time-budget"), (&without, "from a run with")] {
        let run = RunDir::open(&dir, Existing::Resume(last.clone())).unwrap();
        let e = err_text(train(gpu, c, &run, Some(&last), &stop, false));
        assert!(e.contains(want) && e.contains("last.safetensors"), "{e}");
        assert!(e.contains("cannot"), "{e}");
    }
    // The refused resumes changed nothing.
    assert_eq!(read_metrics(&dir.join("metrics.jsonl")).unwrap(), metrics);
}

fn rbnn_train(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .arg("train")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_time_budget_is_refused_before_training() {
    let dir = temp_dir("bad");
    let out = dir.join("run");
    for value in ["0", "-3", "inf", "NaN"] {
        let (code, stderr) = rbnn_train(&[
            &format!("--time-budget={value}"),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_ne!(code, Some(0), "{value}: {stderr}");
        assert!(
            stderr.contains("--time-budget must be a positive number of seconds"),
            "{value}: {stderr}"
        );
        assert!(
            !out.exists(),
            "{value}: a refused run made {}",
            out.display()
        );
    }
    let (code, stderr) = rbnn_train(&["--time-budget", "soon"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--time-budget"), "{stderr}");
    let (code, stderr) = rbnn_train(&["--time-budget", "60", "--resume", "x.safetensors"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--time-budget") && stderr.contains("--resume"),
        "{stderr}"
    );
}
