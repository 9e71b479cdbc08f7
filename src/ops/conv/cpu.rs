//! Plain-Rust references of the convolution with f64 accumulation: what the GPU kernels (both
//! families) and the binary layer's reference (rbnn::layer::cpu) are tested against.

use super::ConvShape;

/// Calls `f(x index, w index, y index)` for every multiply-add of the convolution (padded
/// taps skipped): the three functions below differ only in which operand they accumulate.
fn for_each_mac(s: &ConvShape, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (s.oh(), s.ow());
    for n in 0..s.n {
        for co in 0..s.co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * s.co + co) * oh + oy) * ow + ox;
                    for ci in 0..s.ci {
                        for r in 0..s.kh {
                            let Some(iy) = (oy * s.stride + r).checked_sub(s.pad) else {
                                continue;
                            };
                            if iy >= s.h {
                                continue;
                            }
                            for c in 0..s.kw {
                                let Some(ix) = (ox * s.stride + c).checked_sub(s.pad) else {
                                    continue;
                                };
                                if ix >= s.w {
                                    continue;
                                }
                                let xi = ((n * s.ci + ci) * s.h + iy) * s.w + ix;
                                let wi = ((co * s.ci + ci) * s.kh + r) * s.kw + c;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

fn to_f32(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|v| v as f32).collect()
}

/// y = conv2d(x, w), zero padding, no bias (the finite-difference tests differentiate this).
pub fn forward_f64(s: &ConvShape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; s.output_len()];
    for_each_mac(s, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// d(sum y*dy)/dx of `forward_f64`: the transposed convolution of dy with w.
pub fn backward_data_f64(s: &ConvShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.input_len()];
    for_each_mac(s, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// d(sum y*dy)/dw of `forward_f64`.
pub fn backward_weight_f64(s: &ConvShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.weight_len()];
    for_each_mac(s, |xi, wi, yi| dw[wi] += x[xi] * dy[yi]);
    dw
}

/// `forward_f64` of f32 data, rounded to f32 once at the end.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    to_f32(forward_f64(s, &f64s(x), &f64s(w)))
}

pub fn backward_data(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    to_f32(backward_data_f64(s, &f64s(dy), &f64s(w)))
}

pub fn backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    to_f32(backward_weight_f64(s, &f64s(x), &f64s(dy)))
}
