//! rbnn against the official PyTorch code: `rbnn step` on tests/golden (resnet20_1w1a, one
//! training step at epoch 3 of 10, with and without the rotation update) must reproduce the
//! logits, loss, every gradient and the updated rotations within the tolerances of
//! tests/golden/README.md (relative L2: logits and loss 2e-3, gradients 2e-2, R1/R2 1e-3).
mod common;

use rbnn::model::ModelKind;
use rbnn::train::checkpoint::read_safetensors;
use rbnn::train::step::{run_step, StepOptions};

fn check_case(case: &str, rotate: bool) {
    let gpu = gpu_or_skip!();
    let expected = common::golden_file(case, "expected.safetensors");
    let opts = StepOptions {
        epoch: Some(3),
        epochs: 10,
        rotate,
        ..StepOptions::default()
    };
    let got = run_step(
        gpu,
        ModelKind::Resnet20,
        &common::golden_file(case, "weights.safetensors"),
        &common::golden_file(case, "batch.safetensors"),
        &opts,
    )
    .unwrap();
    let (want, _) = read_safetensors(&expected).unwrap();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, w) in want.iter() {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("rbnn step wrote no tensor {name}"));
        assert_eq!(g.shape, w.shape, "{name}: shape");
        let err = common::rel_l2(&g.to_f32(), &w.to_f32());
        let tol = if name.starts_with("grad.") {
            2e-2
        } else if name.ends_with(".R1") || name.ends_with(".R2") {
            1e-3
        } else {
            2e-3
        };
        report.push(format!("{name}: {err:.2e} (tol {tol:.0e})"));
        if err.is_nan() || err > tol {
            failures.push(format!("{name}: relative L2 error {err:.3e} > {tol:.0e}"));
        }
    }
    eprintln!("{case}:\n  {}", report.join("\n  "));
    assert!(failures.is_empty(), "{case}:\n{}", failures.join("\n"));
}

#[test]
fn step_matches_official_code_without_rotation() {
    check_case("resnet20_1w1a", false);
}

#[test]
fn step_matches_official_code_with_rotation_update() {
    check_case("resnet20_1w1a-rotate", true);
}
