//! The cooperative-matrix (tensor core) GEMM against the CPU, on adapters that offer 16x16x16
//! f16 -> f32 cooperative matrices (skipped elsewhere, e.g. on lavapipe). Operands are small
//! multiples of 1/4, exact in f16, so every product and sum is exact and the result must match
//! bit for bit. Also pins which WGSL load builtin reads row-major data.
mod common;

use rbnn::gpu::{Imm, ShaderSource};
use rbnn::ops::half::pack_f16;
use rbnn::rng::Rng;

/// The test's own shader (not embedded in the binary).
const COOP_GEMM: ShaderSource = ShaderSource {
    name: "test_coop_gemm",
    source: include_str!("shaders/coop_gemm.wgsl"),
    lines: &[(1, "tests/shaders/coop_gemm.wgsl", 1)],
};

fn cpu_gemm(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn coop_gemm_matches_cpu_and_load_t_is_row_major() {
    let gpu = gpu_or_skip!();
    if gpu.cooperative_matrix.is_empty() {
        eprintln!("skipped: {} offers no cooperative matrices", gpu.info.name);
        return;
    }
    let (m, n, k) = (64usize, 96usize, 48usize);
    let mut rng = Rng::new(5);
    let mut quarter = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| (rng.below(17) as f32 - 8.0) / 4.0)
            .collect()
    };
    let a = quarter(m * k);
    let b = quarter(k * n);
    let want = cpu_gemm(&a, &b, m, n, k);
    let ta = gpu.upload_u32("a", &[m * k / 2], &pack_f16(&a));
    let tb = gpu.upload_u32("b", &[k * n / 2], &pack_f16(&b));
    let tc = gpu.tensor("c", &[m * n]);
    let imm = Imm::new().u(m as u32).u(n as u32).u(k as u32);
    let mut matches = Vec::new();
    for (entry, t) in [("gemm_t", 1.0), ("gemm_n", 0.0)] {
        let kernel = gpu.kernel_from(&COOP_GEMM, "gemm", &[("T", t)]).unwrap();
        let d = gpu
            .dispatch(
                &kernel,
                &[&ta, &tb, &tc],
                imm.bytes(),
                [n as u32 / 32, m as u32 / 32, 1],
            )
            .unwrap();
        gpu.run(&[&d]).unwrap();
        let got = gpu.read_f32(&tc).unwrap();
        let wrong = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        eprintln!("{entry}: {wrong} of {} elements differ from the CPU", m * n);
        matches.push(wrong == 0);
    }
    assert_eq!(
        matches,
        [true, false],
        "coopLoadT/coopStoreT must read/write row-major"
    );
}
