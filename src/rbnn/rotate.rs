//! The weight side of the layer (shaders/rotate.wgsl): the rotated weight Rw = R1^T X_o R2 for
//! all output channels in one dispatch, the adjustable weight w3 and alpha*sign(w3); the
//! backward through ApproxSign, theta, alpha and the weight standardisation; the per-channel
//! diagnostics of the rotation.
//!
//! Software adapters (`KernelVariant::Software`) run the forward and the backward as
//! shaders/weight_software.wgsl's register-tiled, barrier-free twins: two dispatches for the
//! forward (T = R1^T X_o parked in bw, then T R2 and the outputs), one for the backward.

use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, KernelVariant, Tensor};
use crate::ops::shape::expect_len;
use anyhow::{bail, Result};
use std::f64::consts::SQRT_2;

/// (a, b) with a the largest divisor of n not above floor(sqrt(n)) and b = n / a: the shape of
/// the matrix X_o that R1 [a,a] and R2 [b,b] rotate.
pub fn rotation_dims(n: usize) -> (usize, usize) {
    let mut a = n.isqrt().max(1);
    while !n.is_multiple_of(a) {
        a -= 1;
    }
    (a, n / a)
}

/// Shape of a layer's weight: `co` rows of n = a*b (n = Ci*kh*kw, (a, b) = `rotation_dims(n)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightDims {
    pub co: usize,
    pub a: usize,
    pub b: usize,
}

impl WeightDims {
    pub fn new(co: usize, n: usize) -> WeightDims {
        let (a, b) = rotation_dims(n);
        WeightDims { co, a, b }
    }
    /// Ci*kh*kw.
    pub fn n(&self) -> usize {
        self.a * self.b
    }
    /// Co*Ci*kh*kw.
    pub fn len(&self) -> usize {
        self.co * self.n()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The layer's weight-side scratch, written by the forward and read by the backward:
/// w2 (standardised weight), wstats [Co, 4] = (std, alpha, |sin theta|, sign(sin theta) cos theta)
/// captured with it, rw (R1^T X_o R2), w3 (adjustable rotated weight) and bw = alpha*sign(w3)
/// (the float weight of the backward's data gradient, and of the a32 forward), all [Co, n].
pub struct WeightScratch {
    pub w2: Tensor,
    pub wstats: Tensor,
    pub rw: Tensor,
    pub w3: Tensor,
    pub bw: Tensor,
}

impl WeightScratch {
    pub fn new(gpu: &Gpu, label: &str, d: WeightDims) -> Result<WeightScratch> {
        let shape = [d.co, d.n()];
        Ok(WeightScratch {
            w2: gpu.try_tensor(&format!("{label}.w2"), &shape)?,
            wstats: gpu.try_tensor(&format!("{label}.wstats"), &[d.co, 4])?,
            rw: gpu.try_tensor(&format!("{label}.rw"), &shape)?,
            w3: gpu.try_tensor(&format!("{label}.w3"), &shape)?,
            bw: gpu.try_tensor(&format!("{label}.bw"), &shape)?,
        })
    }

    fn check(&self, d: WeightDims) -> Result<()> {
        expect_len(&self.w2, d.len(), "w2")?;
        expect_len(&self.wstats, d.co * 4, "wstats")?;
        expect_len(&self.rw, d.len(), "rw")?;
        expect_len(&self.w3, d.len(), "w3")?;
        expect_len(&self.bw, d.len(), "bw")
    }
}

/// Gradients of the layer's trainable parameters: weight [Co,Ci,kh,kw], alpha [Co], rotate [Co].
pub struct ParamGrads<'a> {
    pub weight: &'a Tensor,
    pub rotate: &'a Tensor,
}

/// Rows of Rw per workgroup of `rotate_forward`: up to 8, as many as fit 4096 floats of T.
const T_CAP: usize = 4096;

fn immediates(d: WeightDims, rb: usize, c1: f32, t2: f32, k: f32) -> Imm {
    Imm::new()
        .u(d.co as u32)
        .u(d.a as u32)
        .u(d.b as u32)
        .u(rb as u32)
        .f(c1)
        .f(t2)
        .f(k)
}

/// rw_o = R1^T X_o R2, w3 = w2 + |sin theta_o| (rw - w2), bw = alpha_o sign(w3), from s.w2 and
/// s.wstats (written by `standardize::weight_forward`): one dispatch in `KernelVariant::Gpu`,
/// two in `KernelVariant::Software` (record them in order).
pub fn rotate_forward(
    gpu: &Gpu,
    variant: KernelVariant,
    d: WeightDims,
    r1: &Tensor,
    r2: &Tensor,
    s: &WeightScratch,
) -> Result<Vec<Dispatch>> {
    s.check(d)?;
    expect_len(r1, d.a * d.a, "R1")?;
    expect_len(r2, d.b * d.b, "R2")?;
    if variant == KernelVariant::Software {
        let imm = software_immediates(d);
        // 4 x 4 tiles of T, then blocks of 4 rows of rw (shaders/weight_software.wgsl).
        let left = d.co * d.a.div_ceil(4) * d.b.div_ceil(4);
        let right = d.co * d.a.div_ceil(4);
        return Ok(vec![
            gpu.dispatch(
                &gpu.kernel(SOFTWARE, "rotate_left", &[])?,
                &[&s.w2, r1, &s.bw],
                imm.bytes(),
                software_grid(d, left)?,
            )?,
            gpu.dispatch(
                &gpu.kernel(SOFTWARE, "rotate_right", &[])?,
                &[&s.w2, r2, &s.wstats, &s.rw, &s.w3, &s.bw],
                imm.bytes(),
                software_grid(d, right)?,
            )?,
        ]);
    }
    if d.b > T_CAP {
        bail!(
            "rotate_forward: b = {} (n = Ci*kh*kw = {}, a = {}) exceeds the kernel's {T_CAP}-float \
             row buffer",
            d.b,
            d.n(),
            d.a
        );
    }
    let rb = (T_CAP / d.b).min(8);
    let k = gpu.kernel("rotate", "rotate_forward", &[])?;
    Ok(vec![gpu.dispatch(
        &k,
        &[&s.w2, r1, r2, &s.wstats, &s.rw, &s.w3, &s.bw],
        immediates(d, rb, 0.0, 0.0, 0.0).bytes(),
        [d.a.div_ceil(rb) as u32, d.co as u32, 1],
    )?])
}

/// The software adapters' twins of the weight side (`KernelVariant::Software`).
pub(crate) const SOFTWARE: &str = "weight_software";

/// The immediates of the shaders/weight_software.wgsl kernels other than `weight_backward`.
pub(crate) fn software_immediates(d: WeightDims) -> Imm {
    immediates(d, 0, 0.0, 0.0, 0.0)
}

/// The grid of a shaders/weight_software.wgsl kernel with `invocations` invocations (8 per
/// workgroup), for weights `d`. The kernels run without naga's checks (gpu::kernel's
/// UNCHECKED_SHADERS), so an empty weight (a, b or Co of 0, where they would divide by 0 or wrap
/// a - 1) is refused here.
pub(crate) fn software_grid(d: WeightDims, invocations: usize) -> Result<[u32; 3]> {
    if d.is_empty() {
        bail!("weight side: an empty weight {d:?} (Co, a, b must be at least 1)");
    }
    if invocations > u32::MAX as usize {
        bail!("weight side: {invocations} invocations exceed the kernels' u32 indices");
    }
    Ok(grid_1d(invocations, 8))
}

/// Immediates of `weight_backward` for ApproxSign (t, k): recorded anew each step.
pub fn weight_backward_immediates(d: WeightDims, t: f32, k: f32) -> Imm {
    let t = t as f64;
    immediates(d, 0, (SQRT_2 * t) as f32, (t * t) as f32, k)
}

/// The weight-side backward from `dbw`, the conv weight gradient against the UNSCALED dy
/// (dL/dsign(w3) = alpha_o dbw): overwrites g.weight and g.rotate (g.alpha comes from
/// ops::channel_dot, see layer.rs). Record it with
/// `weight_backward_immediates(d, t, k)` (the same immediates for both variants).
pub fn weight_backward(
    gpu: &Gpu,
    variant: KernelVariant,
    d: WeightDims,
    dbw: &Tensor,
    s: &WeightScratch,
    g: &ParamGrads,
) -> Result<Dispatch> {
    s.check(d)?;
    expect_len(dbw, d.len(), "conv weight gradient")?;
    expect_len(g.weight, d.len(), "weight gradient")?;
    expect_len(g.rotate, d.co, "rotate gradient")?;
    let imm = weight_backward_immediates(d, 1.0, 1.0);
    if variant == KernelVariant::Software {
        // One invocation per output channel.
        return gpu.dispatch(
            &gpu.kernel(SOFTWARE, "weight_backward", &[])?,
            &[&s.w2, &s.wstats, dbw, &s.rw, &s.w3, g.weight, g.rotate],
            imm.bytes(),
            software_grid(d, d.co)?,
        );
    }
    let k = gpu.kernel("rotate", "weight_backward", &[])?;
    gpu.dispatch(
        &k,
        &[&s.w2, &s.wstats, dbw, &s.rw, &s.w3, g.weight, g.rotate],
        imm.bytes(),
        [d.co as u32, 1, 1],
    )
}

/// Per output channel: (#(sign(w3) != sign(w2)), sum |w3|, sum w3^2, #(w3 != 0)) into diag [Co, 4].
pub fn diagnostics(gpu: &Gpu, d: WeightDims, s: &WeightScratch, diag: &Tensor) -> Result<Dispatch> {
    s.check(d)?;
    expect_len(diag, d.co * 4, "diagnostics")?;
    let k = gpu.kernel("rotate", "diagnostics", &[])?;
    gpu.dispatch(
        &k,
        &[&s.w2, &s.w3, diag],
        immediates(d, 0, 0.0, 0.0, 0.0).bytes(),
        [d.co as u32, 1, 1],
    )
}

/// The rotated weight in f64 (docs/numerics.md section 1).
pub mod cpu {
    use crate::rbnn::procrustes::{mat, row_major};

    /// Rw_o = R1^T X_o R2 for every output channel o (X_o = row o of w2 as an a x b matrix).
    pub fn rotate(w2: &[f64], r1: &[f64], r2: &[f64], a: usize, b: usize) -> Vec<f64> {
        let (r1, r2) = (mat(r1, a, a), mat(r2, b, b));
        w2.chunks(a * b)
            .flat_map(|x| row_major(&(r1.transpose() * mat(x, a, b) * &r2)))
            .collect()
    }
}
