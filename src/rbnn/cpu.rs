//! The plain-Rust reference of the whole RBNN layer in f64: forward, backward and the rotation
//! update, written straight from RBNN-SPEC.md sections 1 to 3 (in the official code's order of
//! operations, e.g. alpha applied to dy before the conv backward). The GPU kernels reorganise
//! the same computation; the tests compare them against this.
//!
//! Layouts as on the GPU: weights [Co, Ci, kh, kw] (row o of length n = Ci*kh*kw), activations
//! [N, C, H, W] (row s of length m = C*H*W), R1 [a, a] and R2 [b, b] row-major.

use crate::ops::conv::ConvShape;
use nalgebra::DMatrix;
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

/// Rows standardised to zero mean and unit unbiased std, with the saved statistics.
pub struct Standardized {
    pub out: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// out_r = (x_r - mean(x_r)) / std(x_r - mean(x_r)) for each row r of length `len`.
pub fn standardize_rows(x: &[f64], len: usize) -> Standardized {
    let rows = x.len() / len;
    let mut out = vec![0.0; x.len()];
    let (mut mean, mut std) = (vec![0.0; rows], vec![0.0; rows]);
    for r in 0..rows {
        let row = &x[r * len..(r + 1) * len];
        let m = row.iter().sum::<f64>() / len as f64;
        let var = row.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (len as f64 - 1.0);
        let s = var.sqrt();
        for (o, v) in out[r * len..(r + 1) * len].iter_mut().zip(row) {
            *o = (v - m) / s;
        }
        mean[r] = m;
        std[r] = s;
    }
    Standardized { out, mean, std }
}

/// The gradient through `standardize_rows`, mean and std included:
/// dx = (g - mean(g) - out * sum(g*out)/(len-1)) / std.
pub fn standardize_rows_backward(out: &[f64], std: &[f64], g: &[f64], len: usize) -> Vec<f64> {
    let mut dx = vec![0.0; g.len()];
    for (r, &s) in std.iter().enumerate() {
        let span = r * len..(r + 1) * len;
        let (o, gr) = (&out[span.clone()], &g[span.clone()]);
        let gm = gr.iter().sum::<f64>() / len as f64;
        let go = gr.iter().zip(o).map(|(g, o)| g * o).sum::<f64>() / (len as f64 - 1.0);
        for ((d, &g), &o) in dx[span].iter_mut().zip(gr).zip(o) {
            *d = (g - gm - o * go) / s;
        }
    }
    dx
}

/// Row-major `rows` x `cols` slice as a matrix.
fn mat(data: &[f64], rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(rows, cols, data)
}

/// A matrix back to a row-major vector.
fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}

/// Rw_o = R1^T X_o R2 for every output channel o (X_o = row o of w2 as an a x b matrix).
pub fn rotate(w2: &[f64], r1: &[f64], r2: &[f64], a: usize, b: usize) -> Vec<f64> {
    let (r1, r2) = (mat(r1, a, a), mat(r2, b, b));
    w2.chunks(a * b)
        .flat_map(|x| row_major(&(r1.transpose() * mat(x, a, b) * &r2)))
        .collect()
}

/// Calls `f(x index, w index, y index)` for every multiply-add of the convolution; padded taps
/// are skipped, i.e. contribute 0.
fn for_each_mac(s: &ConvShape, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (s.oh(), s.ow());
    for n in 0..s.n {
        for o in 0..s.co {
            for y in 0..oh {
                for x in 0..ow {
                    let yi = ((n * s.co + o) * oh + y) * ow + x;
                    for c in 0..s.ci {
                        for i in 0..s.kh {
                            let ih = (y * s.stride + i) as isize - s.pad as isize;
                            if ih < 0 || ih >= s.h as isize {
                                continue;
                            }
                            for j in 0..s.kw {
                                let iw = (x * s.stride + j) as isize - s.pad as isize;
                                if iw < 0 || iw >= s.w as isize {
                                    continue;
                                }
                                let xi = ((n * s.ci + c) * s.h + ih as usize) * s.w + iw as usize;
                                let wi = ((o * s.ci + c) * s.kh + i) * s.kw + j;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y = conv2d(x, w), zero padding, no bias.
pub fn conv2d(s: &ConvShape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; s.output_len()];
    for_each_mac(s, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// d(sum y*dy)/dx of `conv2d`.
pub fn conv2d_backward_data(s: &ConvShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.input_len()];
    for_each_mac(s, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// d(sum y*dy)/dw of `conv2d`.
pub fn conv2d_backward_weight(s: &ConvShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.weight_len()];
    for_each_mac(s, |xi, wi, yi| dw[wi] += x[xi] * dy[yi]);
    dw
}

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

/// The layer forward (spec section 1, steps 1-7). `fixed_rw` replaces the rotated weight by a
/// constant, as the backward sees it, for finite differences.
pub fn forward(
    s: &ConvShape,
    a32: bool,
    p: &Params,
    x: &[f64],
    q: Quantizer,
    fixed_rw: Option<&[f64]>,
) -> Forward {
    let n = s.ci * s.kh * s.kw;
    let (a, b) = crate::rbnn::rotation_dims(n);
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
    let raw = conv2d(s, &ba, &bw);
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

/// The layer backward (spec section 1, "Backward") with ApproxSign (t, k) for the weights and
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
    let dba = conv2d_backward_data(s, &graw, &f.bw);
    let dbw = conv2d_backward_weight(s, &f.ba, &graw);
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

/// sum_o tr(B_o^T R1^T X_o R2) with B_o = sign(R1^T X_o R2), i.e. sum |R1^T X_o R2|.
pub fn rotation_objective(w2: &[f64], r1: &[f64], r2: &[f64], a: usize, b: usize) -> f64 {
    rotate(w2, r1, r2, a, b).iter().map(|v| v.abs()).sum()
}

/// R1, R2 after the update and the objective before it and after each iteration.
pub struct Rotation {
    pub r1: Vec<f64>,
    pub r2: Vec<f64>,
    pub objectives: Vec<f64>,
}

/// The bi-rotation update (spec section 3): `iterations` alternating steps of
/// B_o = sign(R1^T X_o R2); R1 <- V1 U1^T from svd(sum_o B_o R2^T X_o^T);
/// R2 <- U2 V2^T from svd(sum_o X_o^T R1 B_o).
pub fn rotation_update(
    w2: &[f64],
    r1: &[f64],
    r2: &[f64],
    a: usize,
    b: usize,
    iterations: usize,
) -> anyhow::Result<Rotation> {
    let xs: Vec<DMatrix<f64>> = w2.chunks(a * b).map(|x| mat(x, a, b)).collect();
    let (mut r1m, mut r2m) = (mat(r1, a, a), mat(r2, b, b));
    let mut objectives = Vec::with_capacity(iterations + 1);
    for _ in 0..iterations {
        let bs: Vec<DMatrix<f64>> = xs
            .iter()
            .map(|x| (r1m.transpose() * x * &r2m).map(sign))
            .collect();
        objectives.push(rotation_objective(
            w2,
            &row_major(&r1m),
            &row_major(&r2m),
            a,
            b,
        ));
        let mut d1 = DMatrix::zeros(a, a);
        for (bo, x) in bs.iter().zip(&xs) {
            d1 += bo * r2m.transpose() * x.transpose();
        }
        r1m = crate::rbnn::rotation::rotation_from_d1(&d1)?;
        let mut d2 = DMatrix::zeros(b, b);
        for (bo, x) in bs.iter().zip(&xs) {
            d2 += x.transpose() * &r1m * bo;
        }
        r2m = crate::rbnn::rotation::rotation_from_d2(&d2)?;
    }
    let (r1, r2) = (row_major(&r1m), row_major(&r2m));
    objectives.push(rotation_objective(w2, &r1, &r2, a, b));
    Ok(Rotation { r1, r2, objectives })
}

/// (flip rate, mean over output channels of cos(w3_o, sign(w3_o))): the share of weights whose
/// sign the rotation changed, and how well the binary code approximates w3's direction.
pub fn diagnostics(w2: &[f64], w3: &[f64], n: usize) -> (f64, f64) {
    let flips = w2
        .iter()
        .zip(w3)
        .filter(|(a, b)| sign(**a) != sign(**b))
        .count();
    let cos: f64 = w3
        .chunks(n)
        .map(|row| {
            let l1: f64 = row.iter().map(|v| v.abs()).sum();
            let l2: f64 = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            let nnz = row.iter().filter(|v| **v != 0.0).count() as f64;
            channel_cosine(l1, l2, nnz)
        })
        .sum();
    let rows = (w3.len() / n).max(1) as f64;
    (flips as f64 / w3.len().max(1) as f64, cos / rows)
}

/// cos(w, sign(w)) = sum|w| / (||w|| * sqrt(#nonzero)); 0 for an all-zero channel.
pub fn channel_cosine(l1: f64, l2: f64, nonzero: f64) -> f64 {
    if l2 > 0.0 && nonzero > 0.0 {
        l1 / (l2 * nonzero.sqrt())
    } else {
        0.0
    }
}

/// f32 data as f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// f64 data as f32.
pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// (sign bit, nonzero bit) planes of `v` at bit `j`, as shaders/binconv.wgsl packs them.
fn ternary_bits(v: f32, j: usize) -> (u32, u32) {
    (((v < 0.0) as u32) << j, ((v != 0.0) as u32) << j)
}

/// The packed activations [N, H, W, Cw, 2] of `v` [N, Ci, H, W] (the values whose signs are
/// packed, e.g. x - mean in f32).
pub fn pack_activations(s: &ConvShape, v: &[f32]) -> Vec<u32> {
    let cw = s.ci.div_ceil(32);
    let mut out = vec![0u32; s.n * s.h * s.w * cw * 2];
    for n in 0..s.n {
        for c in 0..s.ci {
            for y in 0..s.h {
                for x in 0..s.w {
                    let (sb, nz) = ternary_bits(v[((n * s.ci + c) * s.h + y) * s.w + x], c % 32);
                    let at = (((n * s.h + y) * s.w + x) * cw + c / 32) * 2;
                    out[at] |= sb;
                    out[at + 1] |= nz;
                }
            }
        }
    }
    out
}

/// The packed weights [Co, kh*kw, Cw, 2] of w3 [Co, Ci, kh, kw].
pub fn pack_weights(s: &ConvShape, w3: &[f32]) -> Vec<u32> {
    let cw = s.ci.div_ceil(32);
    let taps = s.kh * s.kw;
    let mut out = vec![0u32; s.co * taps * cw * 2];
    for o in 0..s.co {
        for c in 0..s.ci {
            for tap in 0..taps {
                let (sb, nz) = ternary_bits(w3[(o * s.ci + c) * taps + tap], c % 32);
                let at = ((o * taps + tap) * cw + c / 32) * 2;
                out[at] |= sb;
                out[at + 1] |= nz;
            }
        }
    }
    out
}
