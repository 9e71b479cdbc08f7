//! The kernel benchmark runs end to end at a tiny batch (no timing thresholds: only that every
//! row comes back with positive, finite numbers).
mod common;

#[test]
fn kernel_bench_runs_at_tiny_batch() {
    let gpu = gpu_or_skip!();
    let rows = rbnn::bench::kernels(gpu, 2).unwrap();
    // Five layer shapes x three kernels, plus the naive forward at the three ResNet-20 shapes,
    // plus the tiled forward beside the direct one where the adapter runs the direct kernels.
    let probe = rbnn::ops::conv::ConvShape::square(2, 16, 32, 16, 3, 1, 1);
    let direct = rbnn::ops::conv::direct_supported(gpu, &probe);
    assert_eq!(rows.len(), 18 + if direct { 5 } else { 0 });
    for r in &rows {
        assert!(
            r.seconds.is_finite() && r.seconds > 0.0 && r.gflops.is_finite() && r.gflops > 0.0,
            "{r:?}"
        );
        assert!(r.gflop > 0.0, "{r:?}");
    }
    let table = rbnn::bench::format_kernels(&rows);
    assert_eq!(table.lines().count(), rows.len() + 2, "{table}");
}
