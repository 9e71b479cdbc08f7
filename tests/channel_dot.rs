//! The per-channel dot product (dalpha of the binary conv) against an f64 reference, including
//! a heavily cancelling case like the one a BatchNorm after the conv produces, in both kernel
//! variants (the GPU's and the software adapters'), whatever the adapter.
mod common;
use rbnn::gpu::KernelVariant;
use rbnn::ops::channel_dot::{channel_dot, cpu};
use rbnn::rng::Rng;

const VARIANTS: [KernelVariant; 2] = [KernelVariant::Gpu, KernelVariant::Software];

fn run(
    variant: KernelVariant,
    (n, c, hw): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    div: &[f32],
) -> Vec<f32> {
    let gpu = common::gpu().unwrap();
    let ta = gpu.upload_f32("a", &[n, c, hw, 1], a);
    let tb = gpu.upload_f32("b", &[n, c, hw, 1], b);
    let td = gpu.upload_f32("div", &[c], div);
    let out = gpu.upload_f32("out", &[c], &vec![f32::NAN; c]);
    let op = channel_dot(gpu, variant, &ta, &tb, &td, &out).unwrap();
    let ds: Vec<_> = op.dispatches.iter().collect();
    gpu.run(&ds).unwrap();
    gpu.read_f32(&out).unwrap()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn channel_dot_matches_f64_reference() {
    let _ = gpu_or_skip!();
    let mut rng = Rng::new(3);
    // Several chunks per channel (M = 3 * 1500 = 4500 > 4096), odd sizes, a zero divisor,
    // planes smaller than the software variant's 64 lanes.
    let shapes = [(1, 1, 1), (3, 5, 1500), (2, 7, 33), (9, 3, 5)];
    for (&(n, c, hw), variant) in shapes.iter().flat_map(|s| VARIANTS.map(|v| (s, v))) {
        let len = n * c * hw;
        let a = rng.uniform_vec(len, -1.0, 1.0);
        let b = rng.uniform_vec(len, -2.0, 2.0);
        let mut div = rng.uniform_vec(c, 0.5, 1.5);
        div[0] = 0.0;
        let got = run(variant, (n, c, hw), &a, &b, &div);
        let want = cpu::channel_dot(&f64s(&a), &f64s(&b), n, c, hw, &f64s(&div));
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        assert_eq!(got[0], 0.0, "zero divisor gives 0");
        let tag = format!("channel_dot {variant:?}");
        common::assert_close(&tag, &got, &want, 1e-5, 1e-6);
    }
}

#[test]
fn channel_dot_error_stays_within_f32_rounding_under_cancellation() {
    let _ = gpu_or_skip!();
    // A sum whose value is ~4e-6 of its terms' magnitudes (as dalpha before a BatchNorm): the
    // error must stay at f32 rounding of the magnitudes (bounded here by 1e-6 of sum |a*b|),
    // with no blow-up from the two-stage tree.
    let mut rng = Rng::new(9);
    let (n, c, hw) = (4, 2, 4096);
    let len = n * c * hw;
    let b: Vec<f32> = (0..len)
        .map(|i| if (i * 7919) % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    let a: Vec<f32> = (0..len)
        .map(|i| 0.3 * if i % 2 == 0 { 1.0 } else { -1.0 } + 1e-4 * rng.normal() as f32)
        .collect();
    for variant in VARIANTS {
        cancelling_sum_within_rounding(variant, (n, c, hw), &a, &b);
    }
}

fn cancelling_sum_within_rounding(
    variant: KernelVariant,
    (n, c, hw): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
) {
    let len = n * c * hw;
    let got = run(variant, (n, c, hw), a, b, &[1.0, 1.0]);
    let want = cpu::channel_dot(&f64s(a), &f64s(b), n, c, hw, &[1.0, 1.0]);
    let magnitude: Vec<f64> = cpu::channel_dot(
        &a.iter().map(|&v| v.abs() as f64).collect::<Vec<_>>(),
        &vec![1.0; len],
        n,
        c,
        hw,
        &[1.0, 1.0],
    );
    for ch in 0..c {
        let err = (got[ch] as f64 - want[ch]).abs();
        assert!(
            err <= 1e-6 * magnitude[ch],
            "{variant:?} channel {ch}: got {}, want {} (error {err:.1e}, magnitudes {:.1})",
            got[ch],
            want[ch],
            magnitude[ch]
        );
    }
}
