//! The benchmarks run end to end at tiny batches (no timing thresholds: only that every row comes
//! back with positive, finite numbers and the tables hold what they claim).
mod common;

use rbnn::model::ModelKind;

#[test]
fn kernel_bench_runs_at_tiny_batch() {
    let gpu = gpu_or_skip!();
    let rows = rbnn::bench::kernels(gpu, 2).unwrap();
    // Five layer shapes x (forward, data grad, weight grad, binary forward), plus the naive
    // forward at the three ResNet-20 shapes; the tiled kernels beside the direct ones where the
    // adapter runs the direct kernels; the tensor-core kernels where it has them.
    let probe = rbnn::ops::conv::ConvShape::square(2, 16, 32, 16, 3, 1, 1);
    let direct = rbnn::ops::conv::direct_supported(gpu, &probe);
    let coop = rbnn::ops::conv_coop::supported(gpu);
    let want = 5 * 4 + 3 + if direct { 15 } else { 0 } + if coop { 10 } else { 0 };
    assert_eq!(rows.len(), want);
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

/// Training and inference benchmarks of resnet20 at tiny batches, and the summary table of
/// `rbnn bench` built from them.
#[test]
fn train_and_infer_benches_run_and_tabulate() {
    let gpu = gpu_or_skip!();
    let kind = ModelKind::Resnet20;
    let t = rbnn::bench::train(gpu, kind, 4, 1).unwrap();
    assert!(
        t.images_per_second.is_finite() && t.images_per_second > 0.0,
        "{t:?}"
    );
    assert!(t.rotation_update_ms > 0.0);
    assert!(t.rotation_timing.gpu_seconds > 0.0 && t.rotation_timing.host_seconds > 0.0);
    let calls: usize = t.breakdown.iter().map(|k| k.dispatches).sum();
    assert_eq!(calls, t.dispatches_per_step);
    let share: f64 = t.breakdown.iter().map(|k| k.share).sum();
    assert!((share - 1.0).abs() < 1e-6, "shares sum to {share}");
    // The convolutions carry their FLOP counts; every kernel binds some bytes.
    assert!(t
        .breakdown
        .iter()
        .any(|k| k.gflops.is_some_and(|g| g > 0.0)));
    assert!(t.breakdown.iter().all(|k| k.gbps > 0.0 || k.seconds == 0.0));

    let infer = rbnn::infer::bench::infer(gpu, kind, &[1, 3], 1).unwrap();
    assert_eq!(infer.len(), 2);
    for r in &infer {
        assert!(r.packed_images_per_second > 0.0);
        assert!(r
            .breakdown
            .iter()
            .any(|k| k.kernel.starts_with("infer_binconv")));
    }
    // A model whose training did not run still gets its inference row.
    let mut infer = infer;
    let mut other = infer[0].clone();
    other.model = "vgg_small_1w1a".into();
    infer.push(other);
    let all = rbnn::bench::FullBench {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        driver: gpu.info.driver.clone(),
        date: "2026-11-26".into(),
        train: vec![t],
        infer,
        failed: vec!["vgg_small_1w1a: training at batch 256: (an example)".into()],
    };
    let table = rbnn::bench::format_all(&all);
    let row = table
        .lines()
        .find(|l| l.starts_with("| resnet20_1w1a |"))
        .unwrap_or_else(|| panic!("{table}"));
    // Batches 1 and 3 ran; 256 and 1024 did not.
    assert_eq!(row.matches(" - |").count(), 2, "{row}");
    assert!(
        table.contains("per-kernel breakdown of one step"),
        "{table}"
    );
    let vgg = table
        .lines()
        .find(|l| l.starts_with("| vgg_small_1w1a |"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(vgg.starts_with("| vgg_small_1w1a | - | - | - |"), "{vgg}");
    assert!(
        table.contains("not measured: vgg_small_1w1a: training at batch 256"),
        "{table}"
    );
    let json = serde_json::to_string(&all).unwrap();
    assert!(json.contains("\"breakdown\""));
}
