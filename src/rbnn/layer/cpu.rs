//! The plain-Rust reference of the whole RBNN layer in f64: forward and backward, written
//! straight from docs/numerics.md sections 1 and 2 (in the official code's order of operations,
//! e.g. alpha applied to dy before the conv backward) out of the references of its kernels
//! (`standardize::cpu`, `rotate::cpu`, `schedule::cpu`, `ops::conv::cpu`). The GPU layer
//! reorganises the same computation; the tests compare them. (`rotation::cpu` is the rotation
//! update's reference.)
//!
//! Layouts as on the GPU: weights [Co, Ci, kh, kw] (row o of length n = Ci*kh*kw), activations
//! [N, C, H, W] (row s of length m = C*H*W), R1 [a, a] and R2 [b, b] row-major.

use crate::ops::conv::{cpu as conv, ConvShape};
use crate::rbnn::rotate::cpu::rotate;
use crate::rbnn::rotate::rotation_dims;
use crate::rbnn::schedule::cpu::{activation_approx, approx_sign_grad, approx_sign_smooth, sign};
use crate::rbnn::standardize::cpu::{standardize_rows, standardize_rows_backward};

/// The layer's state: weight [Co,Ci,kh,kw], alpha [Co], rotate (theta) [Co], R1 [a,a], R2 [b,b].
#[derive(Clone, Debug)]
pub struct Params {
    pub weight: Vec<f64>,
    pub alpha: Vec<f64>,
    pub rotate: Vec<f64>,
    pub r1: Vec<f64>,
    pub r2: Vec<f64>,
}

/// What binarises w3 and a2 in the forward.
#[derive(Clone, Copy, Debug)]
pub enum Quantizer {
    /// The real layer: sign.
    Sign,
    /// `approx_sign_smooth` with (t, k) for the weights and (max(t,1), 1) for the activations,
    /// for finite-difference checks of the backward.
    Smooth { t: f64, k: f64 },
}

impl Quantizer {
    pub fn weight(&self, v: f64) -> f64 {
        match *self {
            Quantizer::Sign => sign(v),
            Quantizer::Smooth { t, k } => approx_sign_smooth(v, t, k),
        }
    }
    pub fn activation(&self, v: f64) -> f64 {
        match *self {
            Quantizer::Sign => sign(v),
            Quantizer::Smooth { t, .. } => {
                let (ta, ka) = activation_approx(t);
                approx_sign_smooth(v, ta, ka)
            }
        }
    }
}

/// Everything the forward computes (the backward reads what it needs).
pub struct Forward {
    pub w2: Vec<f64>,
    pub wstd: Vec<f64>,
    pub rw: Vec<f64>,
    pub w3: Vec<f64>,
    pub bw: Vec<f64>,
    pub a2: Vec<f64>,
    pub amean: Vec<f64>,
    pub astd: Vec<f64>,
    pub ba: Vec<f64>,
    /// conv2d(ba, bw) before the alpha scaling.
    pub raw: Vec<f64>,
    pub y: Vec<f64>,
}

/// The layer forward (docs/numerics.md section 1, steps 1-7). `fixed_rw` replaces the rotated
/// weight by a constant, as the backward sees it, for finite differences.
pub fn forward(
    s: &ConvShape,
    a32: bool,
    p: &Params,
    x: &[f64],
    q: Quantizer,
    fixed_rw: Option<&[f64]>,
) -> Forward {
    let n = s.ci * s.kh * s.kw;
    let (a, b) = rotation_dims(n);
    let ws = standardize_rows(&p.weight, n);
    let rw = match fixed_rw {
        Some(rw) => rw.to_vec(),
        None => rotate(&ws.out, &p.r1, &p.r2, a, b),
    };
    let w3: Vec<f64> = (0..ws.out.len())
        .map(|i| {
            let gate = p.rotate[i / n].sin().abs();
            ws.out[i] + gate * (rw[i] - ws.out[i])
        })
        .collect();
    let bw: Vec<f64> = w3.iter().map(|&v| q.weight(v)).collect();
    let st = standardize_rows(x, s.ci * s.h * s.w);
    let ba: Vec<f64> = if a32 {
        st.out.clone()
    } else {
        st.out.iter().map(|&v| q.activation(v)).collect()
    };
    let raw = conv::forward_f64(s, &ba, &bw);
    let plane = s.oh() * s.ow();
    let y = raw
        .iter()
        .enumerate()
        .map(|(i, r)| r * p.alpha[(i / plane) % s.co])
        .collect();
    Forward {
        w2: ws.out,
        wstd: ws.std,
        rw,
        w3,
        bw,
        a2: st.out,
        amean: st.mean,
        astd: st.std,
        ba,
        raw,
        y,
    }
}

/// Gradients of the layer's trainable parameters and input.
pub struct Grads {
    pub weight: Vec<f64>,
    pub alpha: Vec<f64>,
    pub rotate: Vec<f64>,
    pub x: Vec<f64>,
}

/// The layer backward (docs/numerics.md section 2) with ApproxSign (t, k) for the weights and
/// (max(t,1), 1) for the activations.
pub fn backward(
    s: &ConvShape,
    a32: bool,
    p: &Params,
    f: &Forward,
    dy: &[f64],
    t: f64,
    k: f64,
) -> Grads {
    let n = s.ci * s.kh * s.kw;
    let plane = s.oh() * s.ow();
    let mut alpha = vec![0.0; s.co];
    let mut graw = vec![0.0; dy.len()];
    for (i, &g) in dy.iter().enumerate() {
        let o = (i / plane) % s.co;
        alpha[o] += g * f.raw[i];
        graw[i] = g * p.alpha[o];
    }
    let dba = conv::backward_data_f64(s, &graw, &f.bw);
    let dbw = conv::backward_weight_f64(s, &f.ba, &graw);
    let mut rotate = vec![0.0; s.co];
    let mut dw2 = vec![0.0; dbw.len()];
    for (i, &g) in dbw.iter().enumerate() {
        let o = i / n;
        let dw3 = g * approx_sign_grad(f.w3[i], t, k);
        rotate[o] += dw3 * (f.rw[i] - f.w2[i]);
        dw2[i] = (1.0 - p.rotate[o].sin().abs()) * dw3;
    }
    for (r, th) in rotate.iter_mut().zip(&p.rotate) {
        *r *= sign(th.sin()) * th.cos();
    }
    let weight = standardize_rows_backward(&f.w2, &f.wstd, &dw2, n);
    let da2: Vec<f64> = if a32 {
        dba
    } else {
        let (ta, ka) = activation_approx(t);
        dba.iter()
            .zip(&f.a2)
            .map(|(g, &v)| g * approx_sign_grad(v, ta, ka))
            .collect()
    };
    let x = standardize_rows_backward(&f.a2, &f.astd, &da2, s.ci * s.h * s.w);
    Grads {
        weight,
        alpha,
        rotate,
        x,
    }
}
