//! Helpers shared by the tests/rbnn_*.rs files: random layer states and the finite-difference
//! check.
#![allow(dead_code)]

use crate::common;
use rbnn::gpu::Gpu;
use rbnn::ops::conv::ConvShape;
use rbnn::rbnn::layer::cpu::Params;
use rbnn::rbnn::rotation::random_orthogonal;
use rbnn::rbnn::rotation_dims;
use rbnn::rng::Rng;

/// Records what `record` puts into one compute pass, submits and waits (dispatches whose
/// immediates change per step go through `record_with`, which `Gpu::run` does not offer).
pub fn record_and_wait(gpu: &Gpu, record: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        record(&mut pass);
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait().unwrap();
}

/// f32 values widened to f64, so the GPU (f32) and the CPU reference (f64) start from the same
/// numbers.
pub fn normal(rng: &mut Rng, len: usize, std: f64) -> Vec<f64> {
    common::f64s(&rng.normal_vec(len, std))
}

pub fn uniform(rng: &mut Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    common::f64s(&rng.uniform_vec(len, lo, hi))
}

/// A layer state away from its initial values: kaiming-scaled weights, alpha ~ U(0.5, 1.5),
/// theta ~ U(0.3, 2.8) (both signs of cos, |sin| well inside (0, 1)), Haar R1 and R2.
pub fn random_params(rng: &mut Rng, s: &ConvShape) -> Params {
    let n = s.ci * s.kh * s.kw;
    let (a, b) = rotation_dims(n);
    Params {
        weight: normal(rng, s.co * n, (2.0 / n as f64).sqrt()),
        alpha: uniform(rng, s.co, 0.5, 1.5),
        rotate: uniform(rng, s.co, 0.3, 2.8),
        r1: common::f64s(&random_orthogonal(rng, a)),
        r2: common::f64s(&random_orthogonal(rng, b)),
    }
}

/// Checks `analytic` against central differences of `f` at `x` (every coordinate, step h):
/// |fd - analytic| <= tol * (1 + max |analytic|).
pub fn check_fd(
    what: &str,
    x: &[f64],
    analytic: &[f64],
    h: f64,
    tol: f64,
    f: impl Fn(&[f64]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: length");
    let scale = 1.0 + analytic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let up = f(&xp);
        xp[i] = x[i] - h;
        let down = f(&xp);
        xp[i] = x[i];
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - analytic[i]).abs() <= tol * scale,
            "{what}[{i}]: finite difference {fd}, analytic {}",
            analytic[i]
        );
    }
}

/// The smallest |v| over `values`: the test's margin against sign flips between f32 and f64.
pub fn margin(values: &[f64]) -> f64 {
    values.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()))
}
