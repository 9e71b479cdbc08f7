//! Softmax cross-entropy (shaders/loss.wgsl), mean over the batch as PyTorch's
//! `F.cross_entropy`, with its gradient and top-1/top-5 counts, accumulated on the GPU.
//!
//! Each step adds its batch into an accumulator tensor of ACC_LEN u32 words
//! [loss_sum (f32 bits), top1, top5, samples] that is read once per epoch (`read_totals`).
//! The loss sum is an f32 added once per step (relative error about steps * 6e-8, i.e. < 2e-5
//! for an epoch of 196 steps); the counts are exact u32.
//! Top-k rule: ties between the target's logit and another class go to the lower class index
//! (as a stable descending sort, which is what `torch.topk` returns in practice); a target >= K
//! gives a NaN loss and counts as wrong.

use super::shape::{expect_at_least, expect_len, expect_shape, expect_u32};
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

/// Words of the accumulator: [loss_sum (f32 bits), top1, top5, samples].
pub const ACC_LEN: usize = 4;

/// Elements of the per-sample workspace for a batch of `n`.
pub fn per_sample_len(n: usize) -> usize {
    3 * n
}

/// What an accumulator holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossTotals {
    pub loss_sum: f64,
    pub top1: u64,
    pub top5: u64,
    pub samples: u64,
}

impl LossTotals {
    pub fn from_words(w: &[u32]) -> LossTotals {
        LossTotals {
            loss_sum: f32::from_bits(w[0]) as f64,
            top1: w[1] as u64,
            top5: w[2] as u64,
            samples: w[3] as u64,
        }
    }
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }
    pub fn top1_accuracy(&self) -> f64 {
        self.top1 as f64 / self.samples.max(1) as f64
    }
    pub fn top5_accuracy(&self) -> f64 {
        self.top5 as f64 / self.samples.max(1) as f64
    }
}

/// Reads an accumulator (blocking: once per epoch, not per step).
pub fn read_totals(gpu: &Gpu, acc: &Tensor) -> Result<LossTotals> {
    expect_len(acc, ACC_LEN, "loss accumulator")?;
    Ok(LossTotals::from_words(&gpu.read_u32(acc)?))
}

/// Zeroes an accumulator (a queue write: it lands before the next submit).
pub fn reset(gpu: &Gpu, acc: &Tensor) -> Result<()> {
    expect_len(acc, ACC_LEN, "loss accumulator")?;
    gpu.write(acc, &[0u32; ACC_LEN]);
    Ok(())
}

/// The immediates of every loss dispatch: batch rows, classes, and how many leading rows the
/// accumulate dispatch counts (`valid` <= rows, for a padded last evaluation batch).
pub fn immediates(logits_shape: &[usize], valid: usize) -> Result<Vec<u8>> {
    let &[n, k] = logits_shape else {
        bail!("cross-entropy logits must be [N, K], got {logits_shape:?}");
    };
    if k == 0 || valid > n {
        bail!("cross-entropy over {logits_shape:?}: need K >= 1 and valid ({valid}) <= N");
    }
    expect_u32((n * k).max(3 * n), "cross-entropy elements")?;
    Ok(Imm::new()
        .u(n as u32)
        .u(k as u32)
        .u(valid as u32)
        .bytes()
        .to_vec())
}

fn check(logits: &Tensor, targets: &Tensor, per_sample: &Tensor, acc: &Tensor) -> Result<usize> {
    let n = logits.shape.first().copied().unwrap_or(0);
    expect_shape(targets, &[n], "cross-entropy targets")?;
    expect_at_least(
        per_sample,
        per_sample_len(n),
        "cross-entropy per-sample workspace",
    )?;
    expect_len(acc, ACC_LEN, "loss accumulator")?;
    Ok(n)
}

/// Training step, two dispatches: [train_rows, accumulate]. Overwrites `dlogits` [N, K] with the
/// gradient of the batch-mean loss and `per_sample`; ADDS the batch into `acc`.
pub fn cross_entropy_train(
    gpu: &Gpu,
    logits: &Tensor,
    targets: &Tensor,
    dlogits: &Tensor,
    per_sample: &Tensor,
    acc: &Tensor,
) -> Result<Vec<Dispatch>> {
    let n = check(logits, targets, per_sample, acc)?;
    let imm = immediates(&logits.shape, n)?;
    expect_shape(dlogits, &logits.shape, "cross-entropy dlogits")?;
    Ok(vec![
        gpu.dispatch(
            &gpu.kernel("loss", "train_rows", &[])?,
            &[logits, targets, dlogits, per_sample],
            &imm,
            grid_1d(n, 256),
        )?,
        gpu.dispatch(
            &gpu.kernel("loss", "accumulate", &[])?,
            &[per_sample, acc],
            &imm,
            [1, 1, 1],
        )?,
    ])
}

/// Evaluation, two dispatches: [eval_rows, accumulate]; only the first `valid` rows count (record
/// the accumulate dispatch with `immediates(shape, valid)` for another count). Overwrites
/// `per_sample`; ADDS into `acc`.
pub fn cross_entropy_eval(
    gpu: &Gpu,
    logits: &Tensor,
    targets: &Tensor,
    per_sample: &Tensor,
    acc: &Tensor,
    valid: usize,
) -> Result<Vec<Dispatch>> {
    let n = check(logits, targets, per_sample, acc)?;
    let imm = immediates(&logits.shape, valid)?;
    Ok(vec![
        gpu.dispatch(
            &gpu.kernel("loss", "eval_rows", &[])?,
            &[logits, targets, per_sample],
            &imm,
            grid_1d(n, 256),
        )?,
        gpu.dispatch(
            &gpu.kernel("loss", "accumulate", &[])?,
            &[per_sample, acc],
            &imm,
            [1, 1, 1],
        )?,
    ])
}

/// Plain-Rust references in f64.
pub mod cpu {
    /// Per-sample results of a batch.
    pub struct Scored {
        /// Mean loss over the batch.
        pub loss: f64,
        pub per_sample_loss: Vec<f64>,
        pub top1: Vec<bool>,
        pub top5: Vec<bool>,
        /// Gradient of the mean loss, [n, k].
        pub dlogits: Vec<f64>,
    }

    pub fn cross_entropy(logits: &[f64], targets: &[u32], n: usize, k: usize) -> Scored {
        let mut out = Scored {
            loss: 0.0,
            per_sample_loss: Vec::with_capacity(n),
            top1: Vec::with_capacity(n),
            top5: Vec::with_capacity(n),
            dlogits: vec![0.0; n * k],
        };
        for i in 0..n {
            let row = &logits[i * k..(i + 1) * k];
            let t = targets[i] as usize;
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - mx).exp()).sum();
            let lse = mx + s.ln();
            let rank = (0..k)
                .filter(|&j| row[j] > row[t] || (row[j] == row[t] && j < t))
                .count();
            out.per_sample_loss.push(lse - row[t]);
            out.top1.push(rank < 1);
            out.top5.push(rank < 5);
            let drow = &mut out.dlogits[i * k..(i + 1) * k];
            for (j, (d, v)) in drow.iter_mut().zip(row).enumerate() {
                let onehot = if j == t { 1.0 } else { 0.0 };
                *d = ((v - lse).exp() - onehot) / n as f64;
            }
        }
        out.loss = out.per_sample_loss.iter().sum::<f64>() / n as f64;
        out
    }
}
