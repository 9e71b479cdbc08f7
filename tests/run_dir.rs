//! Run directories never lose work: a directory holding a run is refused unless resumed or
//! overwritten on request, one process at a time holds it (a stale lock is taken over), every
//! run without --out gets a new runs/run-NNN, and Ctrl-C and SIGTERM save
//! interrupted.safetensors and exit with 130 and 143.
mod common;

use rbnn::train::checkpoint::{self, CheckpointInfo, HostTensor, StateDict};
use rbnn::train::config::Config;
use rbnn::train::run_dir::{Existing, RunDir, LOCK_FILE};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-rundir-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn rbnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbnn"))
}

/// The files of a finished run of 3 epochs out of 10, as the trainer writes them: a checkpoint
/// (last and best) and three lines of metrics.
fn write_run(dir: &Path) {
    let mut state = StateDict::new();
    state.insert(
        "conv1.weight",
        HostTensor::f32(&[2, 1, 3, 3], vec![0.5; 18]),
    );
    let info = CheckpointInfo {
        model: "resnet20_1w1a".into(),
        dataset: "fashion-mnist-subset".into(),
        epoch: 3,
        config: Config {
            epochs: 10,
            ..Config::default()
        },
        best_top1: 42.0,
        rng_state: 7,
    };
    for name in ["last.safetensors", "best.safetensors"] {
        checkpoint::save_atomic(&dir.join(name), &state, &info.to_metadata()).unwrap();
    }
    fs::write(
        dir.join("metrics.jsonl"),
        "{\"epoch\":0}\n{\"epoch\":1}\n{\"epoch\":2}\n",
    )
    .unwrap();
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_directory_holding_a_run_is_refused_naming_what_is_there() {
    let dir = scratch("refuse");
    write_run(&dir);
    let before = snapshot(&dir);
    let e = err_text(RunDir::open(&dir, Existing::Refuse));
    for needle in [
        "already holds a run",
        "last.safetensors (epoch 3 of 10)",
        "best.safetensors (epoch 3 of 10)",
        "metrics.jsonl",
        "--resume",
        "--out",
        "--overwrite",
    ] {
        assert!(e.contains(needle), "no {needle:?} in: {e}");
    }
    assert_eq!(snapshot(&dir), before, "a refused run must change nothing");

    // Resuming the run in its own directory is fine (through another spelling of the path too).
    let last = dir.join("last.safetensors");
    let run = RunDir::open(&dir.join("."), Existing::Resume(last.clone())).unwrap();
    drop(run);
    // A checkpoint from elsewhere may not continue into a directory holding another run.
    let other = scratch("refuse-other");
    write_run(&other);
    let e = err_text(RunDir::open(
        &dir,
        Existing::Resume(other.join("last.safetensors")),
    ));
    assert!(e.contains("already holds another run"), "{e}");
    assert_eq!(snapshot(&dir), before);

    // --overwrite removes the old run's files, and only those.
    fs::write(dir.join("model.safetensors"), b"kept").unwrap();
    let run = RunDir::open(&dir, Existing::Overwrite).unwrap();
    assert!(run.notes[0].contains("last.safetensors, best.safetensors, metrics.jsonl"));
    let names: Vec<String> = snapshot(&dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec!["model.safetensors".to_string(), LOCK_FILE.into()]
    );
    drop(run);
    assert!(!dir.join(LOCK_FILE).exists(), "the lock goes with the run");
}

#[test]
fn one_process_at_a_time_and_a_stale_lock_is_taken_over() {
    let dir = scratch("lock");
    let held = RunDir::open(&dir, Existing::Refuse).unwrap();
    let me = std::process::id().to_string();
    assert_eq!(fs::read_to_string(dir.join(LOCK_FILE)).unwrap().trim(), me);
    let e = err_text(RunDir::open(&dir, Existing::Refuse));
    assert!(
        e.contains("is in use") && e.contains(&format!("rbnn process {me}")),
        "{e}"
    );
    // The command line fails at start, naming the holder, and writes nothing.
    let out = rbnn()
        .args(["train", "--epochs", "1", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("rbnn process {me}")), "{stderr}");
    assert!(
        !stderr.contains("adapter:"),
        "must stop before the GPU: {stderr}"
    );
    drop(held);
    assert!(
        fs::read_dir(&dir).unwrap().next().is_none(),
        "left files behind"
    );

    // A lock file left by a killed process (its PID, but no OS lock held) is taken over.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .arg("--version")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dead = child.id().to_string();
    child.wait().unwrap();
    fs::write(dir.join(LOCK_FILE), format!("{dead}\n")).unwrap();
    let run = RunDir::open(&dir, Existing::Refuse).unwrap();
    assert!(
        run.notes
            .iter()
            .any(|n| n.contains(&format!("process {dead}"))),
        "{:?}",
        run.notes
    );
    assert_eq!(fs::read_to_string(dir.join(LOCK_FILE)).unwrap().trim(), me);
}

#[cfg(unix)]
#[test]
fn every_run_without_out_gets_a_new_numbered_directory() {
    let root = scratch("numbered");
    let first = RunDir::numbered(&root).unwrap();
    assert_eq!(first.dir(), root.join("run-001"));
    // Two at once get two directories.
    let second = RunDir::numbered(&root).unwrap();
    assert_eq!(second.dir(), root.join("run-002"));
    // `latest` appears once a run has saved an epoch, and follows the newest such run.
    assert!(fs::symlink_metadata(root.join("latest")).is_err());
    write_run(second.dir());
    second.epoch_saved();
    assert_eq!(
        fs::read_link(root.join("latest")).unwrap(),
        Path::new("run-002")
    );
    write_run(first.dir());
    first.epoch_saved();
    assert_eq!(
        fs::read_link(root.join("latest")).unwrap(),
        Path::new("run-001")
    );
    assert!(root.join("latest/last.safetensors").is_file());
    drop((first, second));
    // Numbers continue after the highest; a run that wrote nothing leaves no directory.
    fs::create_dir(root.join("run-041")).unwrap();
    let unused = RunDir::numbered(&root).unwrap();
    assert_eq!(unused.dir(), root.join("run-042"));
    drop(unused);
    assert!(!root.join("run-042").exists());
    assert!(root.join("run-001/last.safetensors").is_file());

    // A real directory named latest (the default run directory of earlier versions) is left as
    // it is.
    let old = scratch("numbered-old");
    fs::create_dir(old.join("latest")).unwrap();
    write_run(&old.join("latest"));
    let run = RunDir::numbered(&old).unwrap();
    write_run(run.dir());
    run.epoch_saved();
    assert!(
        old.join("latest").is_dir()
            && !fs::symlink_metadata(old.join("latest"))
                .unwrap()
                .file_type()
                .is_symlink()
    );
    assert!(old.join("latest/last.safetensors").is_file());
}

#[test]
fn a_second_plain_train_into_a_run_is_refused_and_changes_nothing() {
    let dir = scratch("cli-refuse");
    write_run(&dir);
    let before = snapshot(&dir);
    for extra in [&[][..], &["--epochs", "2"][..]] {
        let out = rbnn()
            .arg("train")
            .args(extra)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("already holds a run") && stderr.contains("--overwrite"),
            "{stderr}"
        );
    }
    assert_eq!(snapshot(&dir), before);
    // --overwrite needs --out, and cannot be combined with --resume.
    let out = rbnn().args(["train", "--overwrite"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = rbnn()
        .args(["train", "--overwrite", "--resume"])
        .arg(dir.join("last.safetensors"))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(snapshot(&dir), before);
}

/// Starts `rbnn train` into `dir` with a run long enough to be interrupted, waits until its
/// signal handlers are in place (it then names its run directory), sends `signal` and returns
/// the exit status and everything it printed on stderr. The run stops after its first step.
#[cfg(unix)]
fn interrupt_training(dir: &Path, signal: libc::c_int) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    let mut child = rbnn()
        .args([
            "train",
            "--epochs",
            "1",
            "-b",
            "2",
            "--max-train-images",
            "200",
            "--max-test-images",
            "8",
            "--out",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("rbnn train ended before its first progress line: {text}");
        }
        text += &line;
        if line.starts_with("run directory:") {
            break;
        }
    }
    // SAFETY: kill has no memory-safety preconditions; the child has not been waited for, so
    // its PID is still its own.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    text += &rest;
    let status = child.wait().unwrap();
    (status.code(), text)
}

#[cfg(unix)]
#[test]
fn sigterm_and_ctrl_c_save_the_weights_and_exit_with_their_status() {
    let _ = gpu_or_skip!();
    for (name, signal, status) in [("TERM", libc::SIGTERM, 143), ("INT", libc::SIGINT, 130)] {
        let dir = scratch(&format!("signal-{name}"));
        let (code, stderr) = interrupt_training(&dir, signal);
        assert_eq!(code, Some(status), "SIG{name}: {stderr}");
        assert!(dir.join("interrupted.safetensors").is_file(), "{stderr}");
        let saved = checkpoint::load(&dir.join("interrupted.safetensors")).unwrap();
        assert!(saved.state.contains("momentum.conv1.weight"));
        // Epoch 1 never finished: no resume point exists, and none is named.
        assert!(!dir.join("last.safetensors").exists());
        assert!(!stderr.contains("last.safetensors"), "{stderr}");
        assert!(stderr.contains("no resume point yet"), "{stderr}");
        assert!(!dir.join(LOCK_FILE).exists());
    }
}
