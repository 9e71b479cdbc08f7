//! The learning rate of each epoch (docs/numerics.md section 10), in closed form so a resumed
//! run gets exactly the rate an uninterrupted one would have had.

use serde::{Deserialize, Serialize};

/// Learning-rate schedule type (`--lr-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrType {
    /// Cosine annealing to 0 over the run.
    Cos,
    /// Multiply by 0.1 at each epoch listed in `lr_decay_step`.
    Step,
}

/// Epochs of linear warm-up when warm-up is on (the official code's fixed 5).
pub const WARM_UP_EPOCHS: usize = 5;

/// The learning rate of epoch `epoch` (0-based) of `epochs`.
///
/// - cos, no warm-up: `lr/2 * (1 + cos(pi*e/E))`.
/// - warm-up (either type): `lr*(e+1)/5` for e < 5; afterwards the schedule runs on the shifted
///   clock e' = e-4, E' = E-4, as the official code steps its scheduler only from epoch 4 on:
///   cos gives `lr/2 * (1 + cos(pi*(e-4)/(E-4)))`.
/// - step: `lr * 0.1^(number of milestones <= e')` with e' = e (or e-4 after warm-up).
pub fn learning_rate(
    base_lr: f64,
    epoch: usize,
    epochs: usize,
    lr_type: LrType,
    milestones: &[usize],
    warm_up: bool,
) -> f64 {
    if warm_up && epoch < WARM_UP_EPOCHS {
        return base_lr * (epoch + 1) as f64 / WARM_UP_EPOCHS as f64;
    }
    // The official scheduler starts counting at epoch 4 when warm-up is on, so its epoch 4 (the
    // last warm-up epoch, at the full rate) is the cosine's step 0.
    let shift = if warm_up { WARM_UP_EPOCHS - 1 } else { 0 };
    let e = epoch.saturating_sub(shift);
    let total = epochs.saturating_sub(shift).max(1);
    match lr_type {
        LrType::Cos => {
            base_lr / 2.0 * (1.0 + (std::f64::consts::PI * e as f64 / total as f64).cos())
        }
        LrType::Step => {
            let passed = milestones.iter().filter(|&&m| m <= e).count();
            base_lr * 0.1f64.powi(passed as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn cosine_without_warm_up() {
        let lr = |e| learning_rate(0.1, e, 1000, LrType::Cos, &[], false);
        assert!(close(lr(0), 0.1));
        assert!(close(lr(500), 0.05));
        assert!(close(
            lr(250),
            0.05 * (1.0 + std::f64::consts::FRAC_1_SQRT_2)
        ));
        assert!(close(
            lr(999),
            0.05 * (1.0 + (std::f64::consts::PI * 0.999).cos())
        ));
        // Strictly decreasing over the run.
        assert!((1..1000).all(|e| lr(e) < lr(e - 1)));
    }

    #[test]
    fn cosine_with_warm_up() {
        let lr = |e| learning_rate(0.1, e, 104, LrType::Cos, &[], true);
        for (e, want) in [(0, 0.02), (1, 0.04), (2, 0.06), (3, 0.08), (4, 0.1)] {
            assert!(close(lr(e), want), "epoch {e}: {} vs {want}", lr(e));
        }
        // E-4 = 100, so epoch 54 is half way down the cosine.
        assert!(close(lr(54), 0.05));
        assert!(close(
            lr(5),
            0.05 * (1.0 + (std::f64::consts::PI / 100.0).cos())
        ));
    }

    #[test]
    fn step_decay() {
        let lr = |e| learning_rate(0.1, e, 120, LrType::Step, &[30, 60, 90], false);
        for (e, want) in [
            (0, 0.1),
            (29, 0.1),
            (30, 0.01),
            (59, 0.01),
            (60, 1e-3),
            (90, 1e-4),
            (119, 1e-4),
        ] {
            assert!(close(lr(e), want), "epoch {e}: {} vs {want}", lr(e));
        }
        // No milestones: constant.
        assert!(close(
            learning_rate(0.1, 77, 120, LrType::Step, &[], false),
            0.1
        ));
    }

    #[test]
    fn step_decay_with_warm_up_counts_from_epoch_4() {
        let lr = |e| learning_rate(0.1, e, 120, LrType::Step, &[30], true);
        assert!(close(lr(0), 0.02));
        assert!(close(lr(4), 0.1));
        assert!(close(lr(33), 0.1));
        assert!(close(lr(34), 0.01));
    }
}
