//! The command line itself: `rbnn info`, and `rbnn step` on the official golden tensors (the
//! numbers are checked in tests/golden.rs; here the CLI path: arguments, files, exit codes).
mod common;

use rbnn::train::checkpoint::read_safetensors;
use std::path::Path;
use std::process::{Command, Output};

fn rbnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbnn"))
}

#[test]
fn info_lists_the_adapter_in_use() {
    let _ = gpu_or_skip!();
    let out = rbnn().arg("info").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("using:") && text.contains("max storage binding"),
        "{text}"
    );
}

/// Runs `rbnn step --model MODEL EXTRA... --weights W --batch B --out OUT`.
fn step(model: &str, extra: &[&str], weights: &Path, batch: &Path, out: &Path) -> Output {
    step_command(model, extra, weights, batch, out)
        .output()
        .unwrap()
}

/// The command `step` runs.
fn step_command(model: &str, extra: &[&str], weights: &Path, batch: &Path, out: &Path) -> Command {
    let mut command = rbnn();
    command
        .args(["step", "--model", model])
        .args(extra)
        .arg("--weights")
        .arg(weights)
        .arg("--batch")
        .arg(batch)
        .arg("--out")
        .arg(out);
    command
}

#[test]
fn step_writes_logits_loss_gradients_and_rotations() {
    let _ = gpu_or_skip!();
    let out =
        std::env::temp_dir().join(format!("rbnn-cli-step-{}.safetensors", std::process::id()));
    let case = "resnet20_1w1a-rotate";
    let (weights, batch) = (
        common::golden_file(case, "weights.safetensors"),
        common::golden_file(case, "batch.safetensors"),
    );
    let args = ["--epoch", "3", "--epochs", "10", "--rotate"];
    assert!(step("resnet20_1w1a", &args, &weights, &batch, &out)
        .status
        .success());
    let (got, _) = read_safetensors(&out).unwrap();
    let (want, _) = read_safetensors(&common::golden_file(case, "expected.safetensors")).unwrap();
    for (name, _) in want.iter() {
        assert!(got.contains(name), "rbnn step wrote no {name}");
    }

    // --eval writes only the logits of the inference-mode forward.
    assert!(step("resnet20_1w1a", &["--eval"], &weights, &batch, &out)
        .status
        .success());
    let (got, _) = read_safetensors(&out).unwrap();
    assert_eq!(got.names().collect::<Vec<_>>(), vec!["logits"]);
    assert_eq!(got.get("logits").unwrap().shape, vec![4, 10]);

    // Weights of another model: an error naming the missing tensors, unless --init-missing.
    let fail = step("resnet20_bireal_1w1a", &["--eval"], &batch, &batch, &out);
    assert!(!fail.status.success());
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(
        err.contains("batch.safetensors")
            && err.contains("conv1.weight")
            && err.contains("--init-missing"),
        "{err}"
    );
    let ok = step(
        "resnet20_bireal_1w1a",
        &["--eval", "--init-missing"],
        &batch,
        &batch,
        &out,
    );
    assert!(ok.status.success());
}

/// Both kernel variants (RBNN_KERNEL_VARIANT, whatever the adapter: the GPU's and the software
/// adapters' BatchNorm, channel-dot and standardisation kernels, fused or not) take the official
/// step within the tolerances of tests/golden/README.md; a misspelt variant is an error naming it.
#[test]
fn both_kernel_variants_step_like_the_official_code() {
    let _ = gpu_or_skip!();
    let case = "resnet20_1w1a-rotate";
    let (weights, batch) = (
        common::golden_file(case, "weights.safetensors"),
        common::golden_file(case, "batch.safetensors"),
    );
    let (want, _) = read_safetensors(&common::golden_file(case, "expected.safetensors")).unwrap();
    let args = ["--epoch", "3", "--epochs", "10", "--rotate"];
    for variant in ["gpu", "software"] {
        let out = std::env::temp_dir().join(format!(
            "rbnn-cli-variant-{variant}-{}.safetensors",
            std::process::id()
        ));
        let run = step_command("resnet20_1w1a", &args, &weights, &batch, &out)
            .env(rbnn::gpu::KERNEL_VARIANT_ENV, variant)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{variant}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (got, _) = read_safetensors(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        for (name, w) in want.iter() {
            let g = got
                .get(name)
                .unwrap_or_else(|| panic!("{variant}: no {name}"));
            let err = common::rel_l2(&g.to_f32(), &w.to_f32());
            let tol = match name {
                n if n.starts_with("grad.") => 2e-2,
                n if n.ends_with(".R1") || n.ends_with(".R2") => 1e-3,
                _ => 2e-3,
            };
            assert!(
                err <= tol,
                "{variant}: {name}: relative L2 error {err:.3e} > {tol:.0e}"
            );
        }
    }
    let out = std::env::temp_dir().join(format!("rbnn-cli-bad-{}.st", std::process::id()));
    let bad = step_command("resnet20_1w1a", &["--eval"], &weights, &batch, &out)
        .env(rbnn::gpu::KERNEL_VARIANT_ENV, "gpus")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("RBNN_KERNEL_VARIANT") && err.contains("gpus"),
        "{err}"
    );
}

/// The fix for a machine without a usable adapter, as every command prints it.
const VULKAN_FIX: &str = "apt-get install mesa-vulkan-drivers";

#[test]
fn without_a_usable_adapter_every_command_stops_with_the_fix() {
    // WGPU_BACKEND=gl leaves wgpu only OpenGL (Mesa's llvmpipe when installed, else nothing):
    // either way no adapter that can run rbnn, and no command may get as far as a shader.
    let case = "resnet20_1w1a";
    let (weights, batch) = (
        common::golden_file(case, "weights.safetensors"),
        common::golden_file(case, "batch.safetensors"),
    );
    let out = std::env::temp_dir().join(format!("rbnn-cli-gl-{}.safetensors", std::process::id()));
    let mut step = rbnn();
    step.args(["step", "--model", "resnet20_1w1a", "--eval"])
        .arg("--weights")
        .arg(&weights)
        .arg("--batch")
        .arg(&batch)
        .arg("--out")
        .arg(&out);
    let mut info = rbnn();
    info.arg("info");
    let mut named = rbnn();
    named.args(["--adapter", "llvmpipe", "bench", "kernels", "--batch", "1"]);
    for mut command in [step, info, named] {
        let result = command.env("WGPU_BACKEND", "gl").output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("no adapter that can run rbnn") && stderr.contains(VULKAN_FIX),
            "{stderr}"
        );
        assert!(stderr.contains("WGPU_BACKEND=gl"), "{stderr}");
        assert!(!stderr.contains("ShaderModule"), "{stderr}");
        assert_eq!(stderr.matches("error:").count(), 1, "one message: {stderr}");
    }
    assert!(!out.exists());
}

#[test]
fn no_xdg_runtime_dir_errors_on_a_headless_machine() {
    let _ = gpu_or_skip!();
    // Unset, or not an absolute path: the Vulkan loader's window-system code used to print
    // "error: XDG_RUNTIME_DIR is invalid or not set" before every command.
    for value in [None, Some("relative/dir")] {
        let mut command = rbnn();
        command.arg("info");
        match value {
            None => command.env_remove("XDG_RUNTIME_DIR"),
            Some(v) => command.env("XDG_RUNTIME_DIR", v),
        };
        let result = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "{stderr}");
        assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{value:?}: {stderr}");
    }
}
