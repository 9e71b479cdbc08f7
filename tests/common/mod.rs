//! Shared test helpers: the one GPU of the test process, random data, tolerant comparisons.
#![allow(dead_code)]

use rbnn::gpu::Gpu;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A file of the golden tensors in tests/golden/ (see its README): `case` is the folder
/// ("resnet20_1w1a" or "resnet20_1w1a-rotate"). They are part of the repository, so a missing
/// file fails the test instead of skipping it.
pub fn golden_file(case: &str, file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
        .join(file);
    assert!(
        path.is_file(),
        "golden file {} is missing: it belongs to the repository (tests/golden/README.md)",
        path.display()
    );
    path
}

/// The adapter tests run on, or None (with a visible message) when the machine has none.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(None) {
        Ok(g) => {
            eprintln!("tests run on: {} ({:?})", g.info.name, g.info.backend);
            Some(g)
        }
        Err(e) => {
            eprintln!("SKIPPING GPU TESTS: {e:#}");
            None
        }
    })
    .as_ref()
}

/// Early-returns from a test (with a message) when no adapter exists.
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match common::gpu() {
            Some(g) => g,
            None => {
                eprintln!("skipped: no GPU adapter");
                return;
            }
        }
    };
}

/// f32 data as f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// f64 data as f32.
pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise, reporting the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs() - (atol + rtol * (w as f64).abs());
        if (err > worst.1 || err.is_nan()) && (err > 0.0 || g.is_nan()) {
            worst = (i, if err.is_nan() { f64::INFINITY } else { err });
        }
        assert!(!g.is_nan() || w.is_nan(), "{what}[{i}]: got NaN, want {w}");
    }
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}[{i}]: got {}, want {} (rtol {rtol}, atol {atol})",
        got[i],
        want[i]
    );
}

/// Relative L2 error ||got - want|| / ||want||.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// The text of an error (with its causes) a call must return.
pub fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}
