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

/// When the learning rate changes (`--lr-update`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrUpdate {
    /// Once per epoch, the official code's way: `learning_rate` of the epoch.
    #[default]
    Epoch,
    /// Every step: the same closed form at the fractional epoch e + s/S (step s of S), so a
    /// run of few epochs still anneals smoothly.
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

/// `learning_rate` at a fractional epoch `position` (e + s/S at step s of S in epoch e): the
/// same closed form on a continuous clock. Warm-up: lr * min(1, (position + 1) / 5) before
/// epoch 5. At whole epochs it equals `learning_rate` (up to rounding).
pub fn learning_rate_at(
    base_lr: f64,
    position: f64,
    epochs: usize,
    lr_type: LrType,
    milestones: &[usize],
    warm_up: bool,
) -> f64 {
    let warm = WARM_UP_EPOCHS as f64;
    if warm_up && position < warm {
        return base_lr * ((position + 1.0) / warm).min(1.0);
    }
    let shift = if warm_up { warm - 1.0 } else { 0.0 };
    let x = (position - shift).max(0.0);
    let total = (epochs as f64 - shift).max(1.0);
    match lr_type {
        LrType::Cos => base_lr / 2.0 * (1.0 + (std::f64::consts::PI * x / total).cos()),
        LrType::Step => {
            let passed = milestones.iter().filter(|&&m| m as f64 <= x).count();
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
    fn per_step_rates_follow_the_closed_form_between_epochs() {
        for (lr_type, milestones, warm_up) in [
            (LrType::Cos, vec![], false),
            (LrType::Cos, vec![], true),
            (LrType::Step, vec![3, 7], false),
            (LrType::Step, vec![8], true),
        ] {
            let per_epoch = |e| learning_rate(0.1, e, 12, lr_type, &milestones, warm_up);
            let at = |x| learning_rate_at(0.1, x, 12, lr_type, &milestones, warm_up);
            // Whole epochs: the per-epoch rate (warm-up epochs 0-3 and the cosine alike).
            for e in 0..12 {
                assert!(close(at(e as f64), per_epoch(e)), "{lr_type:?} epoch {e}");
            }
            // Never above the base rate, never negative.
            for i in 0..=1200 {
                let r = at(i as f64 / 100.0);
                assert!((0.0..=0.1 + 1e-15).contains(&r), "{lr_type:?} at {i}: {r}");
            }
        }
        // Within an epoch the cosine keeps falling.
        let at = |x| learning_rate_at(0.1, x, 3, LrType::Cos, &[], false);
        assert!(close(at(1.5), 0.05));
        assert!((1..300).all(|i| at(i as f64 / 100.0) < at((i - 1) as f64 / 100.0)));
        // Warm-up rises linearly within its epochs, to the full rate from epoch 4.
        let warm = |x| learning_rate_at(0.1, x, 20, LrType::Cos, &[], true);
        assert!(close(warm(0.5), 0.03));
        assert!(close(warm(4.5), 0.1));
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
