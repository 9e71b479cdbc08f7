//! Data-parallel training and gradient accumulation.
//!
//! Always: launcher detection, the fixed-order reduction (the exchange simulated in one process,
//! against the reference), the messages of the checks across ranks, the batch split, and the
//! refusal of a build without MPI started as several ranks.
//!
//! With the `mpi` feature (`cargo test --release --features mpi --test distributed`, which
//! .ci/run runs; needs Open MPI's mpirun): real jobs of 2 and 3 ranks on this machine's adapter.
//! Two ranks with a global batch of 2B give the weights of one process accumulating two
//! micro-batches of B, bit for bit, also across a resume from 1 rank to 2; a rank that errors
//! or dies stops the job with its rank named, the last checkpoint stays good and resumes on
//! another rank count; ranks with different configs are refused; the exchange is exact for
//! awkward sizes.
mod common;

use rbnn::distributed::{describe_differences, launcher, reduce};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

fn rbnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbnn"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-dist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn each_launcher_is_recognised_and_srun_only_inside_a_step() {
    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        launcher::detect_with(move |name| map.get(name).cloned())
    };
    assert_eq!(env(&[]), None);
    let ompi = env(&[
        ("OMPI_COMM_WORLD_SIZE", "4"),
        ("OMPI_COMM_WORLD_RANK", "3"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
    ])
    .unwrap();
    assert_eq!((ompi.size, ompi.rank, ompi.local_rank), (4, 3, Some(1)));
    assert_eq!(ompi.evidence, "OMPI_COMM_WORLD_SIZE=4");
    let hydra = env(&[("PMI_SIZE", "2"), ("PMI_RANK", "1")]).unwrap();
    assert_eq!((hydra.size, hydra.rank, hydra.local_rank), (2, 1, None));
    let srun = env(&[
        ("SLURM_STEP_NUM_TASKS", "8"),
        ("SLURM_PROCID", "5"),
        ("SLURM_LOCALID", "1"),
    ])
    .unwrap();
    assert_eq!((srun.size, srun.rank, srun.local_rank), (8, 5, Some(1)));
    // A batch script sees its job's SLURM_NTASKS but is one process: not a launch.
    assert_eq!(env(&[("SLURM_NTASKS", "8"), ("SLURM_PROCID", "0")]), None);
    let message = launcher::needs_mpi_build(&ompi);
    for needed in [
        "--features mpi",
        "OMPI_COMM_WORLD_SIZE=4",
        "libopenmpi-dev",
        "mpirun",
    ] {
        assert!(message.contains(needed), "no {needed:?} in: {message}");
    }
}

#[test]
fn the_exchange_sums_in_rank_order_whatever_the_chunking() {
    // The MPI exchange, simulated: rank r receives chunk r of every rank, sums it in rank
    // order and scales (reduce::sum_in_rank_order), then everyone gathers the chunks.
    let mut rng = rbnn::rng::Rng::new(7);
    for ranks in 1..=5 {
        for len in [0, 1, 3, 4, 1001] {
            let per_rank: Vec<Vec<f32>> = (0..ranks)
                .map(|_| {
                    (0..len)
                        .map(|_| (rng.uniform() - 0.5) as f32 * 2f32.powi(rng.below(17) as i32 - 8))
                        .collect()
                })
                .collect();
            let scale = reduce::mean_scale(ranks);
            let mut gathered = vec![f32::NAN; len];
            for r in 0..ranks {
                let mine = reduce::chunk(len, ranks, r);
                let received: Vec<f32> = per_rank
                    .iter()
                    .flat_map(|g| g[mine.clone()].iter().copied())
                    .collect();
                reduce::sum_in_rank_order(&received, ranks, scale, &mut gathered[mine]);
            }
            let want = reduce::reference(&per_rank, scale);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&gathered),
                bits(&want),
                "{ranks} ranks, {len} elements"
            );
        }
    }
    // The chunks cover the arena once, in order.
    for (len, ranks) in [(10, 3), (2, 5), (0, 2)] {
        let all: Vec<usize> = (0..ranks)
            .flat_map(|r| reduce::chunk(len, ranks, r))
            .collect();
        assert_eq!(all, (0..len).collect::<Vec<_>>());
    }
}

#[test]
fn a_check_across_ranks_names_the_rank_and_what_differs() {
    let item = |name: &str, value: &[u8]| (name.to_string(), value.to_vec());
    let hash = |x: u8| rbnn::distributed::fingerprint(&[x; 16]);
    let rank0 = vec![
        item("layer1.0.conv1.R1", &hash(1)),
        item("layer1.0.conv1.R2", &hash(2)),
    ];
    let same = rank0.clone();
    let rotated = vec![
        item("layer1.0.conv1.R1", &hash(1)),
        item("layer1.0.conv1.R2", &hash(3)),
    ];
    let what = "the rotations R1/R2 after the rotation update of epoch 4";
    assert_eq!(
        describe_differences(what, &[rank0.clone(), same.clone()]),
        None
    );
    let message =
        describe_differences(what, &[rank0.clone(), same, rotated]).expect("rank 2 differs");
    assert!(message.starts_with(what), "{message}");
    assert!(message.contains("rank 2: layer1.0.conv1.R2"), "{message}");
    let found = &message[what.len()..];
    assert!(
        !found.contains("rank 1") && !found.contains("R1"),
        "{message}"
    );
    // Config fields are short text: both values are shown.
    let configs = [
        vec![item("lr", b"0.1"), item("seed", b"5")],
        vec![item("lr", b"0.2"), item("seed", b"5")],
    ];
    let message = describe_differences("training configs", &configs).unwrap();
    assert!(
        message.contains("rank 1: lr (rank 0: 0.1; rank 1: 0.2)"),
        "{message}"
    );
}

#[test]
fn the_global_batch_splits_into_contiguous_parts() {
    use rbnn::data::Shard;
    // Rank 1 of 2, accumulating 3: parts 3, 4, 5 of 6.
    let shard = Shard {
        parts: 6,
        first: 3,
        count: 3,
    };
    assert_eq!(shard.own_sizes(24), [4, 4, 4]);
    assert_eq!(
        (0..6).map(|p| shard.part(13, p)).collect::<Vec<_>>(),
        [0..2, 2..4, 4..6, 6..8, 8..10, 10..13]
    );
    assert_eq!(shard.own_sizes(13), [2, 2, 3]);
    assert_eq!(shard.smallest_part(13), 2);
    let e = rbnn::train::data_parallel::check_split(6, 2, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--batch-size 6") && e.contains("at least 12"),
        "{e}"
    );
    let e = rbnn::train::data_parallel::check_split(10, 1, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("multiple of 3") && e.contains("--accumulate 3"),
        "{e}"
    );
    rbnn::train::data_parallel::check_split(12, 2, 3).unwrap();
    rbnn::train::data_parallel::check_split(24, 2, 3).unwrap();
    rbnn::train::data_parallel::check_split(7, 1, 1).unwrap();
}

#[test]
fn accumulate_flags_are_checked_before_anything_is_written() {
    let out_dir = temp_dir("flags").join("run");
    for (args, needle) in [
        (
            &["--accumulate", "0"][..],
            "--accumulate must be at least 1",
        ),
        (&["-b", "10", "--accumulate", "3"][..], "multiple of 3"),
    ] {
        let out = rbnn()
            .args(["train", "--epochs", "1", "--out"])
            .arg(&out_dir)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(needle), "{}", text(&out));
        assert!(!out_dir.exists(), "no run directory for a refused run");
    }
}

// In the plain suite only: the MPI build's run of this file is for the jobs below.
#[cfg(not(feature = "mpi"))]
#[test]
fn accumulating_micro_batches_resumes_exactly_and_changes_the_step() {
    use rbnn::train::checkpoint::read_safetensors;
    use rbnn::train::config::Config;
    use rbnn::train::run_dir::{Existing, RunDir};
    use rbnn::train::trainer::{train, train_until};
    let gpu = gpu_or_skip!();
    // 21 images, global batch 8 in 2 micro-batches of 4; the last batch of 5 as 2 + 3.
    let cfg = Config {
        epochs: 2,
        batch_size: 8,
        batch_size_test: 8,
        max_train_images: Some(21),
        max_test_images: Some(8),
        lr: 0.05,
        seed: 3,
        accumulate: 2,
        ..Config::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let dir = temp_dir("accumulate");
    let open = |name: &str, existing| RunDir::open(&dir.join(name), existing).unwrap();
    train(
        gpu,
        &cfg,
        &open("whole", Existing::Refuse),
        None,
        &stop,
        false,
    )
    .unwrap();
    train_until(
        gpu,
        &cfg,
        &open("parts", Existing::Refuse),
        None,
        &stop,
        false,
        1,
    )
    .unwrap();
    let last = dir.join("parts/last.safetensors");
    let resume = Existing::Resume(last.clone());
    train(gpu, &cfg, &open("parts", resume), Some(&last), &stop, false).unwrap();
    let plain = Config {
        accumulate: 1,
        ..cfg.clone()
    };
    train(
        gpu,
        &plain,
        &open("plain", Existing::Refuse),
        None,
        &stop,
        false,
    )
    .unwrap();
    let read = |name: &str| read_safetensors(&dir.join(name).join("last.safetensors")).unwrap();
    let ((whole, meta), (parts, _), (plain, _)) = (read("whole"), read("parts"), read("plain"));
    for (name, t) in whole.iter() {
        assert_eq!(Some(t), parts.get(name), "{name} differs after the resume");
    }
    assert!(
        meta["config"].contains("\"accumulate\":2"),
        "{}",
        meta["config"]
    );
    // Per-micro-batch BatchNorm makes the step another one than the whole batch's.
    assert_ne!(whole.get("conv1.weight"), plain.get("conv1.weight"));
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    let out_dir = temp_dir("no-mpi").join("run");
    let out = rbnn()
        .args(["train", "--epochs", "1", "--out"])
        .arg(&out_dir)
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "1")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for needed in [
        "built without MPI support",
        "rank 1 of 2",
        "OMPI_COMM_WORLD_SIZE=2",
        "cargo build --release --features mpi",
    ] {
        assert!(all.contains(needed), "no {needed:?} in: {all}");
    }
    assert!(
        !out_dir.exists(),
        "nothing may be written into the run directory"
    );
    // One process (np 1) is just a plain run as far as rbnn is concerned.
    let ok = rbnn()
        .args(["train", "--accumulate", "0"])
        .env("OMPI_COMM_WORLD_SIZE", "1")
        .output()
        .unwrap();
    assert!(text(&ok).contains("--accumulate"), "{}", text(&ok));
}

/// The MPI jobs: `mpirun` from PATH (Open MPI), as root where CI runs.
#[cfg(feature = "mpi")]
mod mpi_jobs {
    use super::*;
    use rbnn::train::checkpoint::{self, StateDict};
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// One job at a time: the machine's cores run every rank's software adapter.
    static ONE_JOB: Mutex<()> = Mutex::new(());

    /// mpirun with the options a test machine needs: root (CI), more ranks than cores, and
    /// waiting ranks that yield their core to the ranks still computing (software adapter).
    fn mpirun() -> Command {
        let found = Command::new("mpirun").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "mpirun not found: these tests need Open MPI (apt-get install openmpi-bin \
             libopenmpi-dev; .ci/run installs it)"
        );
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe"])
            .env("OMPI_MCA_mpi_yield_when_idle", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
        c
    }

    /// A run short enough for a software adapter: global batch 8 over 21 images (2 full
    /// batches and a last one of 5, split 2 + 3), 2 epochs (2 rotation updates).
    fn train_args(out: &Path) -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--epochs",
            "2",
            "-b",
            "8",
            "--max-train-images",
            "21",
            "--max-test-images",
            "8",
            "--batch-size-test",
            "8",
            "--lr",
            "0.05",
            "--seed",
            "3",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out.display().to_string());
        a
    }

    fn run(mut c: Command) -> Output {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        out
    }

    fn load(path: &Path) -> StateDict {
        checkpoint::read_safetensors(path).unwrap().0
    }

    /// Every tensor but BatchNorm's running statistics (per rank, per micro-batch) is equal bit
    /// for bit: parameters, momentum buffers, R1/R2. Returns how many were compared.
    fn assert_same_model(a: &StateDict, b: &StateDict, what: &str) -> usize {
        let per_rank = |n: &str| {
            n.ends_with(".running_mean")
                || n.ends_with(".running_var")
                || n.ends_with(".num_batches_tracked")
        };
        let mut compared = 0;
        for (name, t) in a.iter().filter(|(n, _)| !per_rank(n)) {
            assert_eq!(Some(t), b.get(name), "{what}: {name} differs");
            compared += 1;
        }
        assert_eq!(a.len(), b.len(), "{what}: tensor count");
        compared
    }

    #[test]
    fn two_ranks_give_the_weights_of_one_process_accumulating_two_micro_batches() {
        let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
        let dir = temp_dir("equal");
        let (ranks, accumulated) = (dir.join("ranks"), dir.join("accumulated"));
        let job = run({
            let mut c = mpirun();
            c.args(["-np", "2", env!("CARGO_BIN_EXE_rbnn")])
                .args(train_args(&ranks));
            c
        });
        // Rank 0 alone prints: one line per epoch, one "done".
        let stdout = String::from_utf8_lossy(&job.stdout);
        assert_eq!(
            stdout.matches("done: 2 epochs").count(),
            1,
            "{}",
            text(&job)
        );
        assert_eq!(stdout.matches("epoch    1/2").count(), 1, "{}", text(&job));
        let stderr = String::from_utf8_lossy(&job.stderr);
        assert!(
            stderr.contains("data-parallel run of 2 ranks"),
            "{}",
            text(&job)
        );
        assert!(stderr.contains("rank 1 adapter:"), "{}", text(&job));

        run({
            let mut c = rbnn();
            c.args(train_args(&accumulated)).args(["--accumulate", "2"]);
            c
        });
        let a = load(&ranks.join("last.safetensors"));
        let b = load(&accumulated.join("last.safetensors"));
        let compared = assert_same_model(&a, &b, "2 ranks vs --accumulate 2");
        assert!(compared > 200, "{compared} tensors compared");
        // Not vacuous: BatchNorm's statistics are rank 0's alone on one side, both micro-batches'
        // on the other; the model has trained away from its initial weights.
        assert_ne!(
            a.get("bn1.running_mean"),
            b.get("bn1.running_mean"),
            "per-rank BatchNorm statistics"
        );
        let (_, meta) = checkpoint::read_safetensors(&ranks.join("last.safetensors")).unwrap();
        let config = &meta["config"];
        assert!(config.contains("\"ranks\":2"), "{config}");
    }

    #[test]
    fn a_run_resumed_on_two_ranks_continues_one_accumulating_bit_for_bit() {
        let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
        let gpu = gpu_or_skip!();
        let dir = temp_dir("resume-up");
        let (whole, parts) = (dir.join("whole"), dir.join("parts"));
        // One process accumulating 2 micro-batches: both epochs in one go...
        run({
            let mut c = rbnn();
            c.args(train_args(&whole)).args(["--accumulate", "2"]);
            c
        });
        // ... and the same run stopped after epoch 1 (in this process, the CLI's config), then
        // resumed by 2 ranks without accumulation for epoch 2.
        let cfg = rbnn::train::config::Config {
            epochs: 2,
            batch_size: 8,
            max_train_images: Some(21),
            max_test_images: Some(8),
            batch_size_test: 8,
            lr: 0.05,
            seed: 3,
            accumulate: 2,
            ..Default::default()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        {
            let run_dir =
                rbnn::train::run_dir::RunDir::open(&parts, rbnn::train::run_dir::Existing::Refuse)
                    .unwrap();
            rbnn::train::trainer::train_until(gpu, &cfg, &run_dir, None, &stop, false, 1).unwrap();
        }
        let last = parts.join("last.safetensors");
        let resumed = run({
            let mut c = mpirun();
            c.args(["-np", "2", env!("CARGO_BIN_EXE_rbnn")])
                .args(train_args(&parts))
                .arg("--resume")
                .arg(&last);
            c
        });
        assert!(
            String::from_utf8_lossy(&resumed.stdout).contains("done: 1 epochs"),
            "{}",
            text(&resumed)
        );
        assert_same_model(
            &load(&whole.join("last.safetensors")),
            &load(&last),
            "1 process accumulating 2 vs the same resumed on 2 ranks",
        );
    }

    #[test]
    fn a_rank_that_dies_stops_the_job_and_the_run_resumes_on_one_rank() {
        let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
        let dir = temp_dir("dies");
        let run_dir = dir.join("run");
        let pid_file = dir.join("rank1.pid");
        let mut args = train_args(&run_dir);
        args[2] = "3".into();
        let bin = env!("CARGO_BIN_EXE_rbnn");
        // Rank 1 writes its PID first (MPMD: one program per rank).
        let child = mpirun()
            .args(["-np", "1", bin])
            .args(&args)
            .args([":", "-np", "1", "sh", "-c"])
            .arg(format!(
                "echo $$ > {}; exec {bin} \"$@\"",
                pid_file.display()
            ))
            .arg("sh")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let last = run_dir.join("last.safetensors");
        let started = Instant::now();
        while !last.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "no checkpoint"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill rank 1");
        let out = child.wait_with_output().unwrap();
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains("rank 1"), "the dead rank is named: {all}");
        // The last checkpoint is good, and the run continues on one rank.
        let eval = run({
            let mut c = rbnn();
            c.args(["eval", "--checkpoint"]).arg(&last);
            c
        });
        assert!(String::from_utf8_lossy(&eval.stdout).contains("top-1"));
        let mut resume_args = args.clone();
        resume_args.extend(["--resume".to_string(), last.display().to_string()]);
        let resumed = run({
            let mut c = rbnn();
            c.args(&resume_args);
            c
        });
        assert!(
            String::from_utf8_lossy(&resumed.stdout).contains("done: 2 epochs"),
            "{}",
            text(&resumed)
        );
    }

    /// A 2-rank job (MPMD) whose rank 1 runs `train_args` changed by `rank1`.
    fn job_with_another_rank_1(name: &str, rank1: impl Fn(Vec<String>) -> Vec<String>) -> Output {
        let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
        let args = train_args(&temp_dir(name).join("run"));
        let bin = env!("CARGO_BIN_EXE_rbnn");
        mpirun()
            .args(["-np", "1", bin])
            .args(&args)
            .args([":", "-np", "1", bin])
            .args(rank1(args.clone()))
            .output()
            .unwrap()
    }

    #[test]
    fn a_rank_that_fails_stops_the_job_naming_it() {
        let out = job_with_another_rank_1("fails", |mut args| {
            let missing = "/nonexistent/no-such-folder";
            args.extend(["--dataset", "cifar10", "--data-path", missing].map(String::from));
            args
        });
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains("error (rank 1 of 2"), "{all}");
        assert!(all.contains("no-such-folder"), "{all}");
        assert!(all.contains("stopping all 2 ranks"), "{all}");
    }

    #[test]
    fn ranks_with_different_configs_are_refused_once_by_rank_0() {
        let out = job_with_another_rank_1("configs", |args| {
            args.into_iter()
                .map(|a| if a == "0.05" { "0.2".into() } else { a })
                .collect()
        });
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = "training configs differ between ranks";
        assert_eq!(stderr.matches(line).count(), 1, "{all}");
        assert!(
            stderr.contains("rank 1: lr (rank 0: 0.05; rank 1: 0.2)"),
            "{all}"
        );
        assert!(
            !stderr.contains("MPI_ABORT"),
            "an agreed error ends normally: {all}"
        );
    }

    #[test]
    fn the_exchange_is_exact_for_three_ranks_and_awkward_sizes() {
        let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
        // Each rank checks the first exchange against the reduction done in one place.
        let out = run({
            let mut c = mpirun();
            c.args(["-np", "3", env!("CARGO_BIN_EXE_rbnn")]).args([
                "bench",
                "allreduce",
                "--model",
                "resnet20_1w1a",
                "--elements",
                "1,2,1001",
                "--steps",
                "1",
            ]);
            c
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        for row in [
            "| resnet20_1w1a (cifar10) | 3 |",
            "| 1 elements | 3 | 1 |",
            "| 1001 elements | 3 | 1001 |",
        ] {
            assert_eq!(stdout.matches(row).count(), 1, "{row:?}: {}", text(&out));
        }
    }
}
