//! Cross-entropy with accuracy counts against the f64 CPU reference (ties included), GPU
//! accumulation over several steps, the evaluation variant with a padded batch, the CPU gradient
//! against finite differences of the real loss, and determinism.
mod common;
mod numeric;

use numeric::{assert_close64, f64s, numeric_grad};
use rbnn::gpu::{Gpu, Tensor};
use rbnn::ops::loss::{self, cpu, LossTotals};
use rbnn::rng::Rng;

/// Logits with frequent exact ties (integers on every third row) and targets.
fn batch(rng: &mut Rng, n: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    let mut logits = Vec::with_capacity(n * k);
    for row in 0..n {
        for _ in 0..k {
            let v = if row % 3 == 0 {
                rng.below(3) as f64
            } else {
                3.0 * rng.normal()
            };
            logits.push(v as f32);
        }
    }
    let targets = (0..n).map(|_| rng.below(k) as u32).collect();
    (logits, targets)
}

struct Buffers {
    logits: Tensor,
    targets: Tensor,
    dlogits: Tensor,
    per_sample: Tensor,
    acc: Tensor,
}

fn buffers(gpu: &Gpu, n: usize, k: usize) -> Buffers {
    Buffers {
        logits: gpu.tensor("logits", &[n, k]),
        targets: gpu.tensor("targets", &[n]),
        dlogits: gpu.tensor("dlogits", &[n, k]),
        per_sample: gpu.tensor("per_sample", &[loss::per_sample_len(n)]),
        acc: gpu.tensor("acc", &[loss::ACC_LEN]),
    }
}

#[test]
fn train_step_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(51);
    // Batch 1; CIFAR's 10 classes at an odd batch; K < 5 (top-5 always right); a batch over 256
    // (several samples per accumulating lane) with K = 7.
    for (n, k) in [(1, 10), (37, 10), (5, 3), (300, 7)] {
        let (lv, tv) = batch(&mut rng, n, k);
        let b = buffers(gpu, n, k);
        gpu.write(&b.logits, &lv);
        gpu.write(&b.targets, &tv);
        let ds = loss::cross_entropy_train(
            gpu,
            &b.logits,
            &b.targets,
            &b.dlogits,
            &b.per_sample,
            &b.acc,
        )
        .unwrap();
        numeric::run(gpu, &ds);
        let want = cpu::cross_entropy(&f64s(&lv), &tv, n, k);
        let tag = format!("n {n} k {k}");
        let ps = gpu.read_u32(&b.per_sample).unwrap();
        let got_loss: Vec<f64> = ps[..n].iter().map(|&w| f32::from_bits(w) as f64).collect();
        // exp/log in f32 on logits of size ~10.
        assert_close64(
            &format!("loss {tag}"),
            &got_loss,
            &want.per_sample_loss,
            1e-5,
            1e-5,
        );
        let flags = |v: &[bool]| v.iter().map(|&b| b as u32).collect::<Vec<_>>();
        assert_eq!(ps[n..2 * n], flags(&want.top1), "top1 {tag}");
        assert_eq!(ps[2 * n..3 * n], flags(&want.top5), "top5 {tag}");
        let got_d = f64s(&gpu.read_f32(&b.dlogits).unwrap());
        assert_close64(&format!("dlogits {tag}"), &got_d, &want.dlogits, 1e-5, 1e-7);
        let t = loss::read_totals(gpu, &b.acc).unwrap();
        assert_eq!(t.samples, n as u64);
        assert_eq!(t.top1, want.top1.iter().filter(|&&b| b).count() as u64);
        assert_eq!(t.top5, want.top5.iter().filter(|&&b| b).count() as u64);
        assert_close64(
            &format!("loss sum {tag}"),
            &[t.loss_sum],
            &[want.loss * n as f64],
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn accumulates_over_three_steps_and_resets() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(52);
    let (n, k) = (64, 10);
    let b = buffers(gpu, n, k);
    let ds = loss::cross_entropy_train(
        gpu,
        &b.logits,
        &b.targets,
        &b.dlogits,
        &b.per_sample,
        &b.acc,
    )
    .unwrap();
    let mut want = (0.0, 0u64, 0u64);
    for _ in 0..3 {
        let (lv, tv) = batch(&mut rng, n, k);
        gpu.write(&b.logits, &lv);
        gpu.write(&b.targets, &tv);
        numeric::run(gpu, &ds);
        let s = cpu::cross_entropy(&f64s(&lv), &tv, n, k);
        want.0 += s.per_sample_loss.iter().sum::<f64>();
        want.1 += s.top1.iter().filter(|&&b| b).count() as u64;
        want.2 += s.top5.iter().filter(|&&b| b).count() as u64;
    }
    let t = loss::read_totals(gpu, &b.acc).unwrap();
    assert_eq!((t.samples, t.top1, t.top5), (3 * n as u64, want.1, want.2));
    assert_close64("3-step loss sum", &[t.loss_sum], &[want.0], 1e-5, 0.0);
    assert!((t.mean_loss() - want.0 / (3 * n) as f64).abs() < 1e-4);
    loss::reset(gpu, &b.acc).unwrap();
    numeric::run(gpu, &[]);
    assert_eq!(gpu.read_u32(&b.acc).unwrap(), vec![0; loss::ACC_LEN]);
}

#[test]
fn eval_counts_only_valid_rows() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(53);
    let (n, k, valid) = (40, 10, 23);
    let (lv, tv) = batch(&mut rng, n, k);
    let b = buffers(gpu, n, k);
    gpu.write(&b.logits, &lv);
    gpu.write(&b.targets, &tv);
    let ds =
        loss::cross_entropy_eval(gpu, &b.logits, &b.targets, &b.per_sample, &b.acc, valid).unwrap();
    numeric::run(gpu, &ds);
    let want = cpu::cross_entropy(&f64s(&lv[..valid * k]), &tv[..valid], valid, k);
    let t = loss::read_totals(gpu, &b.acc).unwrap();
    assert_eq!(t.samples, valid as u64);
    assert_eq!(t.top1, want.top1.iter().filter(|&&b| b).count() as u64);
    assert_eq!(t.top5, want.top5.iter().filter(|&&b| b).count() as u64);
    assert_close64(
        "eval loss sum",
        &[t.loss_sum],
        &[want.loss * valid as f64],
        1e-5,
        0.0,
    );
    // The same dispatches recorded with a full count take every row.
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        ds[0].record(&mut pass);
        ds[1].record_with(&mut pass, &loss::immediates(&[n, k], n).unwrap());
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait().unwrap();
    assert_eq!(
        loss::read_totals(gpu, &b.acc).unwrap().samples,
        (valid + n) as u64
    );
    assert!(loss::immediates(&[n, k], n + 1).is_err());
}

#[test]
fn out_of_range_target_gives_nan_and_counts_wrong() {
    let gpu = gpu_or_skip!();
    let b = buffers(gpu, 2, 3);
    gpu.write(&b.logits, &[0.0f32, 1.0, 2.0, 5.0, 1.0, 0.0]);
    gpu.write(&b.targets, &[7u32, 0]);
    let ds = loss::cross_entropy_train(
        gpu,
        &b.logits,
        &b.targets,
        &b.dlogits,
        &b.per_sample,
        &b.acc,
    )
    .unwrap();
    numeric::run(gpu, &ds);
    let ps = gpu.read_u32(&b.per_sample).unwrap();
    assert!(f32::from_bits(ps[0]).is_nan());
    assert_eq!((ps[2], ps[3], ps[4], ps[5]), (0, 1, 0, 1));
}

#[test]
fn cpu_gradient_matches_finite_differences_of_the_loss() {
    let mut rng = Rng::new(54);
    let (n, k) = (3, 5);
    let logits: Vec<f64> = (0..n * k).map(|_| 2.0 * rng.normal()).collect();
    let targets: Vec<u32> = (0..n).map(|_| rng.below(k) as u32).collect();
    let want = cpu::cross_entropy(&logits, &targets, n, k);
    let num = numeric_grad(
        |v| cpu::cross_entropy(v, &targets, n, k).loss,
        &logits,
        1e-6,
    );
    assert_close64("fd dlogits", &want.dlogits, &num, 1e-6, 1e-9);
}

#[test]
fn accumulation_is_deterministic() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(55);
    let (n, k) = (1000, 10);
    let (lv, tv) = batch(&mut rng, n, k);
    let mut results: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
    for _ in 0..2 {
        let b = buffers(gpu, n, k);
        gpu.write(&b.logits, &lv);
        gpu.write(&b.targets, &tv);
        let ds = loss::cross_entropy_train(
            gpu,
            &b.logits,
            &b.targets,
            &b.dlogits,
            &b.per_sample,
            &b.acc,
        )
        .unwrap();
        numeric::run(gpu, &ds);
        numeric::run(gpu, &ds);
        let d: Vec<u32> = gpu
            .read_f32(&b.dlogits)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        results.push((gpu.read_u32(&b.acc).unwrap(), d));
    }
    assert_eq!(results[0], results[1]);
    let t: LossTotals = LossTotals::from_words(&results[0].0);
    assert_eq!(t.samples, 2 * n as u64);
}
