//! The f64 reference of the RBNN layer itself (no GPU): rotation shapes, the t/k schedule,
//! ApproxSign at known points, the backward against finite differences, the rotation update's
//! invariants.
mod common;
mod rbnn_common;

use rbnn::ops::conv::ConvShape;
use rbnn::rbnn::layer::cpu::{self, Quantizer};
use rbnn::rbnn::rotation::cpu::rotation_update;
use rbnn::rbnn::rotation::random_orthogonal;
use rbnn::rbnn::schedule::cpu::{activation_approx, approx_sign_grad, approx_sign_smooth};
use rbnn::rbnn::standardize::cpu::{standardize_rows, standardize_rows_backward};
use rbnn::rbnn::{initial_alpha, rotation_dims, ApproxSignSchedule};
use rbnn::rng::Rng;
use rbnn_common::*;
use std::f64::consts::SQRT_2;

#[test]
fn rotation_dims_follow_the_spec() {
    // The examples of docs/numerics.md section 1, then a prime (a = 1), a non-square and tiny
    // sizes.
    for (n, ab) in [
        (144, (12, 12)),
        (288, (16, 18)),
        (576, (24, 24)),
        (64, (8, 8)),
        (4608, (64, 72)),
        (1152, (32, 36)),
        (27, (3, 9)),
        (13, (1, 13)),
        (2, (1, 2)),
        (1, (1, 1)),
    ] {
        assert_eq!(rotation_dims(n), ab, "n = {n}");
    }
}

#[test]
fn schedule_matches_the_golden_epoch_and_the_ends() {
    let s = ApproxSignSchedule::new(10);
    // The golden tensors use epoch 3 of 10: t = 10^-1.1, k = 1/t.
    let (t, k) = s.at(3);
    assert!((t - 10f64.powf(-1.1)).abs() < 1e-15);
    assert!((k - 1.0 / t).abs() < 1e-12);
    let (t0, k0) = s.at(0);
    assert!((t0 - 0.01).abs() < 1e-15 && (k0 - 100.0).abs() < 1e-9);
    // t crosses 1 at e = 2/3 E; from there on k = 1.
    let (t7, k7) = s.at(7);
    assert!(t7 > 1.0 && k7 == 1.0);
    let (t10, k10) = s.at(10);
    assert!((t10 - 10.0).abs() < 1e-12 && k10 == 1.0);
}

#[test]
fn approx_sign_at_known_points() {
    let g = approx_sign_grad;
    // t < 1 (with k = 1/t, as early in training): peak k*sqrt(2)*t = sqrt(2) at 0, cut-off
    // sqrt(2)/t = 14.14.
    let (t, k) = (0.1, 10.0);
    assert!((g(0.0, t, k) - SQRT_2).abs() < 1e-15);
    assert!((g(5.0, t, k) - 10.0 * (0.1 * SQRT_2 - 0.05)).abs() < 1e-14);
    assert!((g(-5.0, t, k) - g(5.0, t, k)).abs() == 0.0);
    assert_eq!(g(SQRT_2 / t, t, k), 0.0);
    assert_eq!(g(15.0, t, k), 0.0);
    assert!(g(14.0, t, k) > 0.0);
    // t > 1, k = 1: peak 3*sqrt(2), cut-off sqrt(2)/3 = 0.4714.
    let (t, k) = (3.0, 1.0);
    assert!((g(0.0, t, k) - 3.0 * SQRT_2).abs() < 1e-14);
    assert!((g(0.3, t, k) - (3.0 * SQRT_2 - 2.7)).abs() < 1e-14);
    assert_eq!(g(0.5, t, k), 0.0);
    assert_eq!(g(-0.5, t, k), 0.0);
    // Activations use ta = max(t, 1), k = 1.
    assert_eq!(activation_approx(0.1), (1.0, 1.0));
    assert_eq!(activation_approx(3.0), (3.0, 1.0));
    // The smooth stand-in's derivative is ApproxSign, including at 0 and past the cut-off, and
    // it saturates at +-k.
    for (t, k) in [(0.1, 10.0), (3.0, 1.0)] {
        for x in [-20.0, -0.3, -1e-3, 0.0, 2e-3, 0.2, 0.47, 5.0, 14.0, 20.0] {
            let h = 1e-7;
            let fd =
                (approx_sign_smooth(x + h, t, k) - approx_sign_smooth(x - h, t, k)) / (2.0 * h);
            assert!(
                (fd - g(x, t, k)).abs() < 1e-5,
                "t {t} x {x}: {fd} vs {}",
                g(x, t, k)
            );
        }
        assert!((approx_sign_smooth(100.0, t, k) - k).abs() < 1e-12);
    }
}

#[test]
fn standardisation_backward_matches_finite_differences() {
    let mut rng = Rng::new(5);
    let len = 7;
    let x = normal(&mut rng, 3 * len, 2.0);
    let g = normal(&mut rng, 3 * len, 1.0);
    let st = standardize_rows(&x, len);
    // Unbiased std: each row of out has sum 0 and sum of squares len-1.
    for r in st.out.chunks(len) {
        assert!(r.iter().sum::<f64>().abs() < 1e-12);
        assert!((r.iter().map(|v| v * v).sum::<f64>() - (len - 1) as f64).abs() < 1e-12);
    }
    let dx = standardize_rows_backward(&st.out, &st.std, &g, len);
    check_fd("standardize", &x, &dx, 1e-6, 1e-8, |x| {
        let o = standardize_rows(x, len).out;
        o.iter().zip(&g).map(|(a, b)| a * b).sum()
    });
}

/// The whole layer backward (ApproxSign included) is the exact gradient of the forward with the
/// smooth stand-in for sign and Rw held constant, so central differences check every gradient.
fn check_layer_backward(s: rbnn::ops::conv::ConvShape, a32: bool, t: f64, k: f64, seed: u64) {
    let mut rng = Rng::new(seed);
    let p = random_params(&mut rng, &s);
    let x = normal(&mut rng, s.input_len(), 1.0);
    let gy = normal(&mut rng, s.output_len(), 1.0);
    let q = Quantizer::Smooth { t, k };
    let f = cpu::forward(&s, a32, &p, &x, q, None);
    let grads = cpu::backward(&s, a32, &p, &f, &gy, t, k);
    let rw = f.rw.clone();
    let loss = |p: &cpu::Params, x: &[f64]| -> f64 {
        let y = cpu::forward(&s, a32, p, x, q, Some(&rw)).y;
        y.iter().zip(&gy).map(|(a, b)| a * b).sum()
    };
    let what = format!("{s:?} a32={a32} t={t}");
    let (h, tol) = (1e-6, 1e-6);
    check_fd(&format!("{what} dx"), &x, &grads.x, h, tol, |x| loss(&p, x));
    check_fd(
        &format!("{what} dweight"),
        &p.weight,
        &grads.weight,
        h,
        tol,
        |w| {
            loss(
                &cpu::Params {
                    weight: w.to_vec(),
                    ..p.clone()
                },
                &x,
            )
        },
    );
    check_fd(
        &format!("{what} dalpha"),
        &p.alpha,
        &grads.alpha,
        h,
        tol,
        |a| {
            loss(
                &cpu::Params {
                    alpha: a.to_vec(),
                    ..p.clone()
                },
                &x,
            )
        },
    );
    check_fd(
        &format!("{what} drotate"),
        &p.rotate,
        &grads.rotate,
        h,
        tol,
        |r| {
            loss(
                &cpu::Params {
                    rotate: r.to_vec(),
                    ..p.clone()
                },
                &x,
            )
        },
    );
}

#[test]
fn layer_backward_matches_finite_differences() {
    // a != b (n = 27 -> 3 x 9), padding, stride 2, a 1x1 kernel, batch 1; t < 1 and t > 1.
    check_layer_backward(
        ConvShape::square(2, 3, 5, 2, 3, 1, 1),
        false,
        0.7,
        1.0 / 0.7,
        1,
    );
    check_layer_backward(ConvShape::square(1, 2, 5, 3, 3, 2, 1), false, 1.6, 1.0, 2);
    check_layer_backward(
        ConvShape::square(2, 5, 3, 2, 1, 1, 0),
        false,
        0.3,
        1.0 / 0.3,
        3,
    );
    check_layer_backward(ConvShape::square(2, 3, 4, 2, 3, 2, 1), true, 0.5, 2.0, 4);
}

#[test]
fn rotation_update_keeps_rotations_orthogonal_and_raises_the_objective() {
    let mut rng = Rng::new(9);
    for (co, n) in [(6, 27), (5, 16), (3, 72)] {
        let (a, b) = rotation_dims(n);
        let w2 = standardize_rows(&normal(&mut rng, co * n, 1.0), n).out;
        let r1 = common::f64s(&random_orthogonal(&mut rng, a));
        let r2 = common::f64s(&random_orthogonal(&mut rng, b));
        let r = rotation_update(&w2, &r1, &r2, a, b, 3).unwrap();
        assert_eq!(r.objectives.len(), 4);
        for pair in r.objectives.windows(2) {
            assert!(
                pair[1] >= pair[0] * (1.0 - 1e-12),
                "n {n}: {:?}",
                r.objectives
            );
        }
        assert!(
            r.objectives[3] > r.objectives[0],
            "n {n}: {:?}",
            r.objectives
        );
        for (m, d) in [(&r.r1, a), (&r.r2, b)] {
            assert!(orthogonality_error(m, d) < 1e-12, "n {n}");
        }
    }
}

#[test]
fn random_rotations_are_orthogonal() {
    let mut rng = Rng::new(3);
    for d in [1, 2, 9, 64, 72] {
        let m = common::f64s(&random_orthogonal(&mut rng, d));
        assert!(orthogonality_error(&m, d) < 1e-5, "d {d}");
    }
}

/// max |M^T M - I| of a row-major d x d matrix.
fn orthogonality_error(m: &[f64], d: usize) -> f64 {
    let mut worst = 0.0f64;
    for i in 0..d {
        for j in 0..d {
            let dot: f64 = (0..d).map(|k| m[k * d + i] * m[k * d + j]).sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

#[test]
fn initial_alpha_is_the_mean_absolute_weight() {
    let w = [1.0, -3.0, 0.5, -0.5, 2.0, 0.0];
    assert_eq!(initial_alpha(&w, 2), vec![4.5 / 3.0, 2.5 / 3.0]);
}
