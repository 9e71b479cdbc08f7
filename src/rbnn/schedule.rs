//! t and k of ApproxSign per epoch (docs/numerics.md section 4).
//!
//! t grows geometrically from Tmin to Tmax over the run, so the gradient of sign starts wide and
//! flat (t small, scaled up by k = 1/t) and ends narrow and tall around 0.

/// t = 10^(log10(Tmin) + (log10(Tmax) - log10(Tmin)) * e / E), k = max(1/t, 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApproxSignSchedule {
    pub t_min: f64,
    pub t_max: f64,
    /// E, the number of epochs of the run.
    pub epochs: usize,
}

impl ApproxSignSchedule {
    /// The recipe's defaults: Tmin = 1e-2, Tmax = 10.
    pub fn new(epochs: usize) -> Self {
        ApproxSignSchedule {
            t_min: 1e-2,
            t_max: 10.0,
            epochs,
        }
    }

    /// (t, k) of 0-based epoch `epoch`, in f64; the kernels take them as f32.
    pub fn at(&self, epoch: usize) -> (f64, f64) {
        let (lo, hi) = (self.t_min.log10(), self.t_max.log10());
        let t = 10f64.powf(lo + (hi - lo) * epoch as f64 / self.epochs.max(1) as f64);
        (t, (1.0 / t).max(1.0))
    }
}

/// sign and ApproxSign in f64, the reference of the kernels' forward signs and backward
/// gradients (docs/numerics.md sections 2 and 3).
pub mod cpu {
    use std::f64::consts::SQRT_2;

    /// torch.sign: -1, 0 or +1.
    pub fn sign(x: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    }

    /// The ApproxSign gradient: max(0, k * (sqrt(2)*t - t^2*|x|)).
    pub fn approx_sign_grad(x: f64, t: f64, k: f64) -> f64 {
        (k * (SQRT_2 * t - t * t * x.abs())).max(0.0)
    }

    /// A smooth stand-in for sign whose derivative is exactly `approx_sign_grad`:
    /// k*sign(x)*(sqrt(2)*t*|x| - t^2*x^2/2) up to the cut-off |x| = sqrt(2)/t, then k*sign(x).
    /// A forward built with it has the layer's backward as its true gradient, which lets finite
    /// differences check the whole backward (sign itself has no useful derivative).
    pub fn approx_sign_smooth(x: f64, t: f64, k: f64) -> f64 {
        let ax = x.abs().min(SQRT_2 / t);
        k * sign(x) * (SQRT_2 * t * ax - t * t * ax * ax / 2.0)
    }

    /// ApproxSign parameters of the activations: ta = max(t, 1), k = 1.
    pub fn activation_approx(t: f64) -> (f64, f64) {
        (t.max(1.0), 1.0)
    }
}
