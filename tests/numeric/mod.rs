//! Helpers of the float-op tests: f32/f64 conversion, f64 comparisons, central finite
//! differences, and running a list of dispatches.
#![allow(dead_code)]

use rbnn::gpu::{Dispatch, Gpu};

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Runs the dispatches in one pass of one submit.
pub fn run(gpu: &Gpu, ds: &[Dispatch]) {
    gpu.run(&ds.iter().collect::<Vec<_>>()).unwrap();
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise in f64, naming the worst element.
pub fn assert_close64(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > 0.0 || excess.is_nan() {
            let e = if excess.is_nan() {
                f64::INFINITY
            } else {
                excess
            };
            if worst.is_none_or(|(_, we)| e > we) {
                worst = Some((i, e));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}[{i}]: got {}, want {} (rtol {rtol}, atol {atol})",
            got[i], want[i]
        );
    }
}

/// Central differences of `f` at `x`: (f(x + h e_i) - f(x - h e_i)) / 2h for every i.
pub fn numeric_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = x[i];
            x[i] = v + h;
            let plus = f(&x);
            x[i] = v - h;
            let minus = f(&x);
            x[i] = v;
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

/// sum(y * r): the scalar whose gradient with respect to y is r (a random projection).
pub fn project(y: &[f64], r: &[f64]) -> f64 {
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}
