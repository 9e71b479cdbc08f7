//! The rotation update (docs/numerics.md section 5) of several layers batched: R1 and R2 stay
//! orthogonal, the objective never decreases, and everything equals the f64 reference of the same
//! steps; the diagnostics equal their reference.
mod common;
mod rbnn_common;

use rbnn::ops::conv::ConvShape;
use rbnn::rbnn::layer::cpu::Params;
use rbnn::rbnn::rotate::cpu::rotate;
use rbnn::rbnn::rotation::cpu::{diagnostics, rotation_update};
use rbnn::rbnn::standardize::cpu::standardize_rows;
use rbnn::rbnn::{BinaryConv2d, BinaryConvTensors, RotationUpdate};
use rbnn::rng::Rng;
use rbnn_common::*;

fn layer(gpu: &rbnn::gpu::Gpu, name: &str, s: ConvShape, p: &Params) -> BinaryConv2d {
    let t = BinaryConvTensors::allocate(gpu, name, &s).unwrap();
    gpu.write(&t.weight, &common::f32s(&p.weight));
    gpu.write(&t.alpha, &common::f32s(&p.alpha));
    gpu.write(&t.rotate, &common::f32s(&p.rotate));
    gpu.write(&t.r1, &common::f32s(&p.r1));
    gpu.write(&t.r2, &common::f32s(&p.r2));
    BinaryConv2d::new(gpu, s, false, t).unwrap()
}

/// max |M^T M - I| of a row-major d x d matrix.
fn orthogonality_error(m: &[f32], d: usize) -> f64 {
    let mut worst = 0.0f64;
    for i in 0..d {
        for j in 0..d {
            let dot: f64 = (0..d)
                .map(|k| m[k * d + i] as f64 * m[k * d + j] as f64)
                .sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

#[test]
fn batched_update_matches_reference() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(31);
    // n = 27 (3 x 9), 144 (12 x 12), 10 (2 x 5, a 1x1 kernel) and 72 (8 x 9) with 40 channels.
    // D1 and D2 must have full rank, or their SVDs, hence R1 and R2, are not unique and f32 and
    // f64 may legitimately pick different optima: that rules out a = 1 (X_o a zero-mean row
    // vector) and channel counts below b.
    let shapes = [
        ConvShape::square(1, 3, 4, 6, 3, 1, 1),
        ConvShape::square(1, 16, 4, 10, 3, 1, 1),
        ConvShape::square(1, 10, 4, 7, 1, 1, 0),
        ConvShape::square(1, 8, 4, 40, 3, 2, 1),
    ];
    let params: Vec<Params> = shapes.iter().map(|s| random_params(&mut rng, s)).collect();
    let layers: Vec<BinaryConv2d> = shapes
        .iter()
        .zip(&params)
        .enumerate()
        .map(|(i, (s, p))| layer(gpu, &format!("l{i}"), *s, p))
        .collect();
    let refs: Vec<&BinaryConv2d> = layers.iter().collect();
    let update = RotationUpdate::new(gpu, &refs).unwrap();

    let before = update.measure(gpu).unwrap();
    let diags = update.update(gpu).unwrap();
    for (((l, p), d), b) in layers.iter().zip(&params).zip(&diags).zip(&before) {
        let (a, bd, n) = (l.dims.a, l.dims.b, l.dims.n());
        let what = &l.tensors.weight.label;
        let w2 = standardize_rows(&p.weight, n).out;
        let want = rotation_update(&w2, &p.r1, &p.r2, a, bd, 3).unwrap();
        let r1 = gpu.read_f32(&l.tensors.r1).unwrap();
        let r2 = gpu.read_f32(&l.tensors.r2).unwrap();
        assert!(orthogonality_error(&r1, a) < 1e-4, "{what} R1");
        assert!(orthogonality_error(&r2, bd) < 1e-4, "{what} R2");
        common::assert_close(
            &format!("{what} R1"),
            &r1,
            &common::f32s(&want.r1),
            0.0,
            1e-4,
        );
        common::assert_close(
            &format!("{what} R2"),
            &r2,
            &common::f32s(&want.r2),
            0.0,
            1e-4,
        );
        assert_eq!(d.objectives.len(), 4);
        for (got, w) in d.objectives.iter().zip(&want.objectives) {
            assert!(
                (got - w).abs() <= 1e-5 * w,
                "{what}: {:?} vs {:?}",
                d.objectives,
                want.objectives
            );
        }
        for pair in d.objectives.windows(2) {
            assert!(
                pair[1] >= pair[0] * (1.0 - 1e-6),
                "{what}: {:?}",
                d.objectives
            );
        }
        assert_eq!(b.objectives.len(), 1);
        assert!((b.objective_after() - d.objective_before()).abs() <= 1e-6 * b.objective_after());

        // Diagnostics of the updated layer against the reference on the same w3.
        let rw = rotate(&w2, &want.r1, &want.r2, a, bd);
        let w3: Vec<f64> = (0..w2.len())
            .map(|i| w2[i] + p.rotate[i / n].sin().abs() * (rw[i] - w2[i]))
            .collect();
        assert!(
            margin(&w3) > 1e-4,
            "{what}: test data too close to 0 for exact flip counts"
        );
        let (flip, cos) = diagnostics(&w2, &w3, n);
        assert_eq!(d.flip_rate, flip, "{what} flip rate");
        assert!(
            (d.mean_cosine - cos).abs() < 1e-5,
            "{what} cos {} vs {cos}",
            d.mean_cosine
        );
    }

    // measure() changes nothing.
    let r1 = gpu.read_f32(&layers[1].tensors.r1).unwrap();
    let again = update.measure(gpu).unwrap();
    assert_eq!(gpu.read_f32(&layers[1].tensors.r1).unwrap(), r1);
    for (a, d) in again.iter().zip(&diags) {
        assert!((a.objective_after() - d.objective_after()).abs() <= 1e-6 * d.objective_after());
        assert_eq!(a.flip_rate, d.flip_rate);
    }
}
