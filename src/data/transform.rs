//! The ImageNet transforms of the official code (torchvision on PIL images), fused into one pass
//! from decoded RGB pixels to the normalised f32 input:
//!
//! - train: RandomResizedCrop(S, scale=(0.08, 1.25), ratio=(3/4, 4/3)) then
//!   RandomHorizontalFlip(0.5), with torchvision's algorithm for the crop box (`random_resized_crop`);
//! - validation: Resize(R) of the shorter side, then CenterCrop(S) (`center_crop`), where S is 224
//!   and R 256 for the real recipe;
//! - then ToTensor and Normalize(mean, std).
//!
//! Resampling is PIL's bilinear filter with its antialiasing: separable, a triangle filter whose
//! support widens by the scale factor when shrinking (so every source pixel under an output
//! pixel counts), with PIL's coefficient formula and its clamping at the borders of the image
//! being resized (the crop box for the train transform, which torchvision crops before resizing;
//! the whole picture for validation, cropped after). What differs from PIL: the arithmetic is f32
//! throughout (weights, the intermediate between the two passes and the result), where PIL rounds
//! the weights to 22-bit fixed point and the intermediate and result to 8 bits; so a value here
//! differs from PIL's by at most one grey level, PIL's two roundings (tests/imagenet.rs compares
//! with Pillow's output in tests/fixtures/imagenet), and normalisation sees the unrounded value.

use crate::rng::Rng;

/// torchvision's RandomResizedCrop defaults for the ratio, and the scale the official ImageNet
/// recipe passes (docs/numerics.md section 11: scale=(0.08, 1.25)).
pub const RRC_SCALE: (f64, f64) = (0.08, 1.25);
pub const RRC_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// torchvision gives up drawing after this many attempts and takes the central crop.
pub const RRC_ATTEMPTS: usize = 10;

/// A crop box in source pixels: rows top..top+height, columns left..left+width (torchvision's
/// (i, j, h, w)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Python's round(): to the nearest integer, halves to even.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// torchvision's RandomResizedCrop.get_params for a `height` x `width` picture, drawing from
/// `rng`: up to 10 attempts of a target area uniform in scale * area and an aspect ratio
/// log-uniform in `ratio`, kept when the box fits; its corner uniform over the positions where it
/// fits; else the central crop of the whole picture with its ratio clamped to `ratio`.
pub fn random_resized_crop(
    height: usize,
    width: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut Rng,
) -> CropBox {
    let area = (height * width) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..RRC_ATTEMPTS {
        let target_area = area * rng.range(scale.0, scale.1);
        let aspect = rng.range(log_lo, log_hi).exp();
        let w = round_half_even((target_area * aspect).sqrt()) as usize;
        let h = round_half_even((target_area / aspect).sqrt()) as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.below(height - h + 1);
            let left = rng.below(width - w + 1);
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < ratio.0 {
        (
            (round_half_even(width as f64 / ratio.0) as usize).max(1),
            width,
        )
    } else if in_ratio > ratio.1 {
        (
            height,
            (round_half_even(height as f64 * ratio.1) as usize).max(1),
        )
    } else {
        (height, width)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// torchvision's Resize(resize) size for a `height` x `width` picture: the shorter side becomes
/// `resize`, the longer int(resize * long / short). Returns (height, width).
pub fn resized_size(height: usize, width: usize, resize: usize) -> (usize, usize) {
    let long = |l: usize, s: usize| ((resize as f64 * l as f64 / s as f64) as usize).max(1);
    if width <= height {
        (long(height, width), resize)
    } else {
        (resize, long(width, height))
    }
}

/// CenterCrop(crop)'s corner in a `height` x `width` picture: int(round((side - crop) / 2)) with
/// Python's rounding. The picture must be at least `crop` on each side.
pub fn center_crop(height: usize, width: usize, crop: usize) -> (usize, usize) {
    let offset = |side: usize| round_half_even((side - crop) as f64 / 2.0) as usize;
    (offset(height), offset(width))
}

/// Resampling weights along one axis: output position o reads source positions
/// start[o]..start[o] + taps[o], weighted by weights[o * stride..][..taps[o]].
#[derive(Clone, Debug, Default)]
pub struct AxisWeights {
    pub start: Vec<usize>,
    pub taps: Vec<usize>,
    pub weights: Vec<f32>,
    pub stride: usize,
}

impl AxisWeights {
    /// PIL's bilinear coefficients (ImagingResample's precompute_coeffs) for resizing the source
    /// span lo..lo+len (the clamp region) to `resized` pixels, for the outputs first..first+count
    /// of that resized axis, in reverse order when `flip`. Source positions are absolute.
    pub fn bilinear(
        lo: usize,
        len: usize,
        resized: usize,
        first: usize,
        count: usize,
        flip: bool,
    ) -> AxisWeights {
        let scale = len as f64 / resized as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // the triangle's support (1) times the filter scale
        let stride = (support.ceil() as usize) * 2 + 1;
        let mut a = AxisWeights {
            start: Vec::with_capacity(count),
            taps: Vec::with_capacity(count),
            weights: vec![0.0; count * stride],
            stride,
        };
        let mut row = vec![0f64; stride];
        for k in 0..count {
            let o = if flip {
                first + count - 1 - k
            } else {
                first + k
            };
            let center = (o as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(len as i64) as usize;
            let taps = xmax.saturating_sub(xmin).min(stride);
            let mut total = 0.0;
            for (t, w) in row.iter_mut().enumerate().take(taps) {
                let x = ((t + xmin) as f64 - center + 0.5) / filter_scale;
                *w = (1.0 - x.abs()).max(0.0);
                total += *w;
            }
            let dst = &mut a.weights[k * stride..k * stride + taps];
            for (d, &w) in dst.iter_mut().zip(&row[..taps]) {
                *d = if total != 0.0 {
                    (w / total) as f32
                } else {
                    0.0
                };
            }
            a.start.push(lo + xmin);
            a.taps.push(taps);
        }
        a
    }

    /// The source positions any output reads: lowest..highest+1.
    fn span(&self) -> (usize, usize) {
        let lo = self.start.iter().copied().min().unwrap_or(0);
        let hi = self
            .start
            .iter()
            .zip(&self.taps)
            .map(|(s, t)| s + t)
            .max()
            .unwrap_or(0);
        (lo, hi.max(lo))
    }
}

/// ToTensor + Normalize per RGB channel, (value / 255 - mean) / std, as one multiply-add.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalise {
    pub gain: [f32; 3],
    pub bias: [f32; 3],
}

impl Normalise {
    pub fn new(mean: &[f32; 3], std: &[f32; 3]) -> Normalise {
        Normalise {
            gain: std::array::from_fn(|c| 1.0 / (255.0 * std[c])),
            bias: std::array::from_fn(|c| -mean[c] / std[c]),
        }
    }
}

/// Scratch buffers of the resampler, reused from sample to sample.
#[derive(Clone, Debug, Default)]
pub struct ResampleScratch {
    /// The vertical pass's rows: [out_rows, span_columns * 3] f32.
    rows: Vec<f32>,
}

/// Resamples interleaved RGB `src` (`width` pixels a row) into planar normalised f32 `out`
/// ([3, ys.count, xs.count]): first the vertical pass over the source columns that any output
/// reads (contiguous rows, so it vectorises), then the horizontal pass, then `norm`. `xs` may
/// be flipped.
pub fn resample_normalise(
    src: &[u8],
    width: usize,
    ys: &AxisWeights,
    xs: &AxisWeights,
    norm: &Normalise,
    scratch: &mut ResampleScratch,
    out: &mut [f32],
) {
    let (out_h, out_w) = (ys.start.len(), xs.start.len());
    let (x_lo, x_hi) = xs.span();
    let span = (x_hi - x_lo) * 3;
    scratch.rows.clear();
    scratch.rows.resize(out_h * span, 0.0);
    for (y, acc) in scratch.rows.chunks_exact_mut(span.max(1)).enumerate() {
        let weights = &ys.weights[y * ys.stride..y * ys.stride + ys.taps[y]];
        for (t, &w) in weights.iter().enumerate() {
            let row = (ys.start[y] + t) * width * 3;
            let src_row = &src[row + x_lo * 3..row + x_hi * 3];
            for (a, &p) in acc.iter_mut().zip(src_row) {
                *a += w * p as f32;
            }
        }
    }
    let plane = out_h * out_w;
    let (out_r, rest) = out[..3 * plane].split_at_mut(plane);
    let (out_g, out_b) = rest.split_at_mut(plane);
    let (gain, bias) = (norm.gain, norm.bias);
    for y in 0..out_h {
        let acc = &scratch.rows[y * span..(y + 1) * span];
        for x in 0..out_w {
            let weights = &xs.weights[x * xs.stride..x * xs.stride + xs.taps[x]];
            let base = (xs.start[x] - x_lo) * 3;
            let mut v = [0f32; 3];
            for (t, &w) in weights.iter().enumerate() {
                let p = &acc[base + 3 * t..base + 3 * t + 3];
                v[0] += w * p[0];
                v[1] += w * p[1];
                v[2] += w * p[2];
            }
            let i = y * out_w + x;
            out_r[i] = v[0] * gain[0] + bias[0];
            out_g[i] = v[1] * gain[1] + bias[1];
            out_b[i] = v[2] * gain[2] + bias[2];
        }
    }
}

/// What becomes of a decoded picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// RandomResizedCrop(crop) with the recipe's scale and ratio, then a horizontal flip with
    /// probability 1/2 when `hflip`.
    Train { crop: usize, hflip: bool },
    /// Resize(resize) then CenterCrop(crop).
    Eval { crop: usize, resize: usize },
}

impl Transform {
    /// The resampling weights for a `height` x `width` picture (draws from `rng` for the train
    /// transform: the crop box, then the flip).
    pub fn weights(
        &self,
        height: usize,
        width: usize,
        rng: &mut Rng,
    ) -> (AxisWeights, AxisWeights) {
        match *self {
            Transform::Train { crop, hflip } => {
                let b = random_resized_crop(height, width, RRC_SCALE, RRC_RATIO, rng);
                let flip = hflip && rng.uniform() < 0.5;
                (
                    AxisWeights::bilinear(b.top, b.height, crop, 0, crop, false),
                    AxisWeights::bilinear(b.left, b.width, crop, 0, crop, flip),
                )
            }
            Transform::Eval { crop, resize } => {
                let (rh, rw) = resized_size(height, width, resize.max(crop));
                let (top, left) = center_crop(rh, rw, crop);
                (
                    AxisWeights::bilinear(0, height, rh, top, crop, false),
                    AxisWeights::bilinear(0, width, rw, left, crop, false),
                )
            }
        }
    }

    /// The output side length.
    pub fn crop(&self) -> usize {
        match *self {
            Transform::Train { crop, .. } | Transform::Eval { crop, .. } => crop,
        }
    }
}
