//! Gradient accumulation (shaders/grad_accumulate.wgsl) against its CPU reference, bit for bit:
//! micro-batch gradients added in order and scaled once, exactly as the sum over ranks.
mod common;

use rbnn::gpu::Tensor;
use rbnn::ops::grad_accumulate::{cpu, dispatch, Accumulate};
use rbnn::rng::Rng;

/// Runs the accumulation of `grads` (one per micro-batch, written into the arena in turn as a
/// backward would) and returns the arena after the last one.
fn accumulate_on_gpu(gpu: &rbnn::gpu::Gpu, grads: &[Vec<f32>], scale: f32) -> Vec<f32> {
    let n = grads[0].len();
    let arena: Tensor = gpu.tensor("gradients", &[n]);
    let sum = gpu.tensor("accumulated gradients", &[n]);
    let make = |what| dispatch(gpu, what, &arena, &sum, scale).unwrap();
    let (store, add, finish) = (
        make(Accumulate::Store),
        make(Accumulate::Add),
        make(Accumulate::Finish),
    );
    for (micro, g) in grads.iter().enumerate() {
        gpu.write(&arena, g);
        let d = match micro {
            0 => &store,
            m if m + 1 == grads.len() => &finish,
            _ => &add,
        };
        gpu.run(&[d]).unwrap();
    }
    gpu.read_f32(&arena).unwrap()
}

/// Gradients whose order of addition changes the f32 result (magnitudes 2^-8..2^8, both signs).
fn gradients(micro_batches: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..micro_batches)
        .map(|_| {
            (0..n)
                .map(|_| (rng.uniform() - 0.5) as f32 * 2f32.powi(rng.below(17) as i32 - 8))
                .collect()
        })
        .collect()
}

#[test]
fn accumulation_is_the_ordered_sum_scaled_once_bit_for_bit() {
    let gpu = gpu_or_skip!();
    // Not multiples of the 256-lane workgroup; 2, 3 and 5 micro-batches; the mean (1/A) and the
    // unscaled sum that a rank sends to the sum over ranks (1.0).
    for (micro_batches, n, scale) in [
        (2, 1000, 0.5),
        (3, 257, 1.0 / 3.0),
        (5, 1, 0.2),
        (3, 4099, 1.0),
    ] {
        let grads = gradients(micro_batches, n, n as u64);
        let got = accumulate_on_gpu(gpu, &grads, scale);
        let want = cpu::accumulate(&grads, scale);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{micro_batches} micro-batches of {n}, element {i}: {g} vs {w}"
            );
        }
        // For 3 or more micro-batches the order of the additions matters for these values
        // (a + b = b + a, so 2 cannot show it): the test would see another order.
        if micro_batches >= 3 && n > 100 {
            let reversed: Vec<Vec<f32>> = grads.iter().rev().cloned().collect();
            let other = cpu::accumulate(&reversed, scale);
            let differing = other.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert!(
                differing > 0,
                "{micro_batches} x {n}: order-insensitive data"
            );
        }
    }
}

#[test]
fn mismatched_arenas_are_refused_naming_them() {
    let gpu = gpu_or_skip!();
    let a = gpu.tensor("gradients", &[10]);
    let b = gpu.tensor("accumulated gradients", &[11]);
    let e = dispatch(gpu, Accumulate::Add, &a, &b, 1.0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gradients") && e.contains("11"), "{e}");
}
