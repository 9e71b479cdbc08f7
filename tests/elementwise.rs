//! Elementwise kernels against their CPU references (exact: no arithmetic beyond one add).
mod common;
use rbnn::gpu::KernelVariant;
use rbnn::ops::elementwise::{self as ew, cpu};
use rbnn::rng::Rng;

#[test]
fn elementwise_kernels_match_cpu() {
    let gpu = gpu_or_skip!();
    // 70_001 elements: not a multiple of the 256-lane workgroup; values straddle the +-1 bounds
    // and include the bounds themselves (where hardtanh's gradient is zero).
    let n = 70_001;
    let mut rng = Rng::new(1);
    let mut xv = rng.uniform_vec(n, -2.0, 2.0);
    xv[0] = 1.0;
    xv[1] = -1.0;
    xv[2] = 0.0;
    let dyv = rng.uniform_vec(n, -1.0, 1.0);
    let x = gpu.upload_f32("x", &[n], &xv);
    let dy = gpu.upload_f32("dy", &[n], &dyv);
    let out = gpu.tensor("out", &[n]);
    let cases: Vec<(&str, rbnn::gpu::Dispatch, Vec<f32>)> = vec![
        (
            "hardtanh_forward",
            ew::hardtanh_forward(gpu, &x, &out).unwrap(),
            cpu::hardtanh_forward(&xv),
        ),
        (
            "hardtanh_backward",
            ew::hardtanh_backward(gpu, &x, &dy, &out).unwrap(),
            cpu::hardtanh_backward(&xv, &dyv),
        ),
        (
            "relu_forward",
            ew::relu_forward(gpu, &x, &out).unwrap(),
            cpu::relu_forward(&xv),
        ),
        (
            "relu_backward",
            ew::relu_backward(gpu, &x, &dy, &out).unwrap(),
            cpu::relu_backward(&xv, &dyv),
        ),
        (
            "add",
            ew::add(gpu, KernelVariant::Gpu, &x, &dy, &out).unwrap(),
            cpu::add(&xv, &dyv),
        ),
    ];
    for (name, d, want) in cases {
        gpu.run(&[&d]).unwrap();
        let got = gpu.read_f32(&out).unwrap();
        assert_eq!(got, want, "{name}");
    }
}

/// The software adapters' add: vec4s where the length is a multiple of 4 (70_004: 17_501 vec4s,
/// not a multiple of the 256-lane workgroup; 4), the scalar kernel for the rest (70_001, 1).
/// Exact, as the scalar add.
#[test]
fn software_add_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(2);
    for n in [70_004, 70_001, 4, 1] {
        let av = rng.uniform_vec(n, -2.0, 2.0);
        let bv = rng.uniform_vec(n, -1.0, 1.0);
        let a = gpu.upload_f32("a", &[n], &av);
        let b = gpu.upload_f32("b", &[n], &bv);
        let out = gpu.tensor("out", &[n]);
        let d = ew::add(gpu, KernelVariant::Software, &a, &b, &out).unwrap();
        gpu.run(&[&d]).unwrap();
        assert_eq!(gpu.read_f32(&out).unwrap(), cpu::add(&av, &bv), "add n {n}");
    }
}
