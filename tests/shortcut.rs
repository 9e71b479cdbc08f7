//! The option-A shortcut against its CPU reference (exact: it only moves values), and the CPU
//! backward against finite differences.
mod common;
mod numeric;

use numeric::{assert_close64, f64s, numeric_grad, project};
use rbnn::ops::shortcut::{self, cpu};
use rbnn::rng::Rng;

#[test]
fn shortcut_matches_cpu_exactly() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(31);
    // resnet20's 16 -> 32 (pad 8) on odd 7x7 at batch 1; 32 -> 64 on 8x8; odd channels with an
    // odd spatial size (3 -> 7, pad 2); pad 0 (subsampling only).
    for (shape, c_out) in [
        ([1usize, 16, 7, 7], 32),
        ([2, 32, 8, 8], 64),
        ([3, 3, 6, 5], 7),
        ([2, 4, 5, 5], 4),
    ] {
        let xv = rng.normal_vec(shape.iter().product(), 1.0);
        let oshape = shortcut::output_shape(&shape, c_out).unwrap();
        let dyv = rng.normal_vec(oshape.iter().product(), 1.0);
        let x = gpu.upload_f32("x", &shape, &xv);
        let y = gpu.tensor("y", &oshape);
        let dy = gpu.upload_f32("dy", &oshape, &dyv);
        let dx = gpu.tensor("dx", &shape);
        gpu.run(&[
            &shortcut::forward(gpu, &x, &y).unwrap(),
            &shortcut::backward(gpu, &dy, &dx).unwrap(),
        ])
        .unwrap();
        let pad = (c_out - shape[1]) / 2;
        let want_y = cpu::forward(&f64s(&xv), shape, pad);
        assert_eq!(
            f64s(&gpu.read_f32(&y).unwrap()),
            want_y,
            "y {shape:?} -> {c_out}"
        );
        let want_dx = cpu::backward(&f64s(&dyv), shape, pad);
        assert_eq!(
            f64s(&gpu.read_f32(&dx).unwrap()),
            want_dx,
            "dx {shape:?} -> {c_out}"
        );
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut rng = Rng::new(32);
    let (shape, pad) = ([2usize, 2, 3, 4], 1);
    let x: Vec<f64> = (0..48).map(|_| rng.normal()).collect();
    let r: Vec<f64> = (0..2 * 4 * 2 * 2).map(|_| rng.normal()).collect();
    let num = numeric_grad(|v| project(&cpu::forward(v, shape, pad), &r), &x, 1e-6);
    assert_close64(
        "fd shortcut dx",
        &cpu::backward(&r, shape, pad),
        &num,
        1e-6,
        1e-8,
    );
}

#[test]
fn odd_channel_difference_is_rejected() {
    let gpu = gpu_or_skip!();
    let x = gpu.tensor("x", &[1, 16, 8, 8]);
    let y = gpu.tensor("y", &[1, 31, 4, 4]);
    assert!(shortcut::forward(gpu, &x, &y).is_err());
}
