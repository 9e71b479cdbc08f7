//! t and k of ApproxSign per epoch (RBNN-SPEC.md section 1, "Backward").
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
    /// The spec's defaults: Tmin = 1e-2, Tmax = 10.
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
