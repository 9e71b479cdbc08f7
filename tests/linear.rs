//! The fully connected layer against its f64 CPU reference, the CPU backward against finite
//! differences, and determinism of the reductions over the batch.
mod common;
mod numeric;

use numeric::{assert_close64, f64s, numeric_grad, project};
use rbnn::gpu::Gpu;
use rbnn::ops::linear::{self, cpu};
use rbnn::rng::Rng;

/// (y, dx, dW, db) from the GPU.
fn run_linear(gpu: &Gpu, n: usize, i: usize, o: usize, v: &[Vec<f32>; 4]) -> [Vec<f32>; 4] {
    let x = gpu.upload_f32("x", &[n, i], &v[0]);
    let w = gpu.upload_f32("w", &[o, i], &v[1]);
    let b = gpu.upload_f32("b", &[o], &v[2]);
    let dy = gpu.upload_f32("dy", &[n, o], &v[3]);
    let y = gpu.tensor("y", &[n, o]);
    let dx = gpu.tensor("dx", &[n, i]);
    let dw = gpu.tensor("dw", &[o, i]);
    let db = gpu.tensor("db", &[o]);
    let mut ds = vec![linear::forward(gpu, &x, &w, &b, &y).unwrap()];
    ds.extend(linear::backward(gpu, &x, &w, &dy, &dx, &dw, &db).unwrap());
    numeric::run(gpu, &ds);
    [&y, &dx, &dw, &db].map(|t| gpu.read_f32(t).unwrap())
}

fn inputs(rng: &mut Rng, n: usize, i: usize, o: usize) -> [Vec<f32>; 4] {
    [
        rng.uniform_vec(n * i, -1.0, 1.0),
        rng.normal_vec(o * i, 1.0 / (i as f64).sqrt()),
        rng.normal_vec(o, 0.1),
        rng.uniform_vec(n * o, -1.0, 1.0),
    ]
}

#[test]
fn linear_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(41);
    // resnet20's 64->10 at batch 1 and 1024, vgg's 8192->10, and sizes off every power of two.
    for (n, i, o) in [
        (1, 64, 10),
        (1024, 64, 10),
        (5, 8192, 10),
        (33, 300, 3),
        (3, 1, 1),
    ] {
        let v = inputs(&mut rng, n, i, o);
        let [y, dx, dw, db] = run_linear(gpu, n, i, o, &v);
        let [x64, w64, b64, dy64] = v.clone().map(|a| f64s(&a));
        let tag = format!("n {n} in {i} out {o}");
        // y and dx: f32 dots of IN (resp. OUT) terms whose sums are O(1); dW and db: sums over
        // N samples of terms of size <= 1, |sum| ~ sqrt(N).
        let want_y = cpu::forward(&x64, &w64, &b64, n, i, o);
        assert_close64(&format!("y {tag}"), &f64s(&y), &want_y, 1e-5, 1e-5);
        let (want_dx, want_dw, want_db) = cpu::backward(&x64, &w64, &dy64, n, i, o);
        assert_close64(&format!("dx {tag}"), &f64s(&dx), &want_dx, 1e-5, 1e-6);
        let sum_tol = 1e-6 * n as f64;
        assert_close64(&format!("dW {tag}"), &f64s(&dw), &want_dw, 1e-5, sum_tol);
        assert_close64(&format!("db {tag}"), &f64s(&db), &want_db, 1e-5, sum_tol);
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut rng = Rng::new(42);
    let (n, i, o) = (3, 4, 2);
    let x: Vec<f64> = (0..n * i).map(|_| rng.normal()).collect();
    let w: Vec<f64> = (0..o * i).map(|_| rng.normal()).collect();
    let b: Vec<f64> = (0..o).map(|_| rng.normal()).collect();
    let r: Vec<f64> = (0..n * o).map(|_| rng.normal()).collect();
    let (dx, dw, db) = cpu::backward(&x, &w, &r, n, i, o);
    let f = |x: &[f64], w: &[f64], b: &[f64]| project(&cpu::forward(x, w, b, n, i, o), &r);
    let h = 1e-6;
    assert_close64(
        "fd dx",
        &dx,
        &numeric_grad(|v| f(v, &w, &b), &x, h),
        1e-6,
        1e-8,
    );
    assert_close64(
        "fd dW",
        &dw,
        &numeric_grad(|v| f(&x, v, &b), &w, h),
        1e-6,
        1e-8,
    );
    assert_close64(
        "fd db",
        &db,
        &numeric_grad(|v| f(&x, &w, v), &b, h),
        1e-6,
        1e-8,
    );
}

#[test]
fn reductions_are_deterministic() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(43);
    let (n, i, o) = (257, 700, 10);
    let v = inputs(&mut rng, n, i, o);
    let bits = |r: [Vec<f32>; 4]| r.map(|a| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    assert_eq!(
        bits(run_linear(gpu, n, i, o, &v)),
        bits(run_linear(gpu, n, i, o, &v))
    );
}
