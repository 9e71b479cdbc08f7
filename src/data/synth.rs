//! Synthetic photographs in the ImageNet layout, for the loader's tests and its benchmark where
//! ImageNet itself is not at hand (`rbnn make-imagenet-like`).
//!
//! A picture is "natural-image-like" where it matters to a JPEG decoder: its spectrum falls with
//! frequency like a textured photograph's (octaves of smooth value noise, each finer octave a
//! little weaker, `FALLOFF`), with correlated colour channels, a few hard-edged shapes, and fine
//! grain; so the entropy-coded size is a real photo's. At ImageNet's typical 400x350 and quality 90 the files
//! come out near 110 KB (`rbnn make-imagenet-like` prints the mean). Encoded by the `image`
//! crate: baseline JPEG, 4:4:4 chroma (no subsampling; libjpeg's default, and most of ImageNet,
//! is 4:2:0, which decodes a little faster).

use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use std::path::Path;

/// Amplitude ratio of successive noise octaves (finer / coarser). 0.5 would be a 1/f amplitude
/// spectrum exactly; photographs have more texture than that in their fine scales (foliage, fur,
/// fabric), and this, with the grain, puts the file sizes where ImageNet's are.
const FALLOFF: f32 = 0.92;
/// Peak-to-peak amplitude of the per-pixel grain, in grey levels.
const GRAIN: f32 = 40.0;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub classes: usize,
    pub train_per_class: usize,
    pub val_per_class: usize,
    /// Picture sizes are drawn uniformly from these ranges (inclusive).
    pub width: (usize, usize),
    pub height: (usize, usize),
    /// JPEG quality (1-100).
    pub quality: u8,
    pub seed: u64,
}

impl Default for SynthOptions {
    /// ImageNet-like: pictures of 300-500 x 250-450 (mean 400x350), quality 90.
    fn default() -> Self {
        SynthOptions {
            classes: 10,
            train_per_class: 50,
            val_per_class: 10,
            width: (300, 500),
            height: (250, 450),
            quality: 90,
            seed: 0,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct SynthReport {
    pub files: usize,
    pub bytes: u64,
    pub pixels: u64,
}

/// The wnid-like name of class `c`.
pub fn class_name(c: usize) -> String {
    format!("n{:08}", 1_000_000 + c * 7919)
}

/// One synthetic photograph (interleaved RGB), its content drawn from `rng`; `tint` shifts its
/// colours (a class's look).
pub fn photo(width: usize, height: usize, tint: [f32; 3], rng: &mut Rng) -> Vec<u8> {
    // Luminance and two colour-difference fields, each a sum of value-noise octaves with 1/f
    // amplitude (the coarsest octave spans the picture).
    let mut fields = vec![vec![0f32; width * height]; 3];
    let mut cell = (width.max(height) as f32 / 2.0).max(2.0);
    let mut amplitude = 60f32;
    while cell >= 1.0 {
        for (k, field) in fields.iter_mut().enumerate() {
            let a = if k == 0 { amplitude } else { amplitude * 0.45 };
            add_value_noise(field, width, height, cell, a, rng);
        }
        cell /= 2.0;
        amplitude *= FALLOFF;
    }
    // Hard edges: a few filled ellipses of flat colour offsets.
    for _ in 0..8 + rng.below(12) {
        let cx = rng.range(0.0, width as f64) as f32;
        let cy = rng.range(0.0, height as f64) as f32;
        let rx = rng.range(0.05, 0.3) as f32 * width as f32;
        let ry = rng.range(0.05, 0.3) as f32 * height as f32;
        let offset: [f32; 3] = std::array::from_fn(|_| rng.range(-50.0, 50.0) as f32);
        for y in 0..height {
            let dy = (y as f32 - cy) / ry;
            if dy.abs() >= 1.0 {
                continue;
            }
            let half = (1.0 - dy * dy).sqrt() * rx;
            let x0 = (cx - half).max(0.0) as usize;
            let x1 = ((cx + half).max(0.0) as usize).min(width);
            for (k, field) in fields.iter_mut().enumerate() {
                for v in &mut field[y * width + x0..y * width + x1.max(x0)] {
                    *v += offset[k];
                }
            }
        }
    }
    let base: [f32; 3] = std::array::from_fn(|c| 110.0 + tint[c]);
    let mut rgb = vec![0u8; width * height * 3];
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        let (l, a, b) = (fields[0][i], fields[1][i], fields[2][i]);
        // Sensor-like grain: what makes a photo's fine detail cost bits.
        let grain = (rng.uniform() as f32 - 0.5) * GRAIN;
        let v = [l + a + grain, l - 0.5 * a - 0.5 * b + grain, l + b + grain];
        for c in 0..3 {
            px[c] = (base[c] + v[c]).round().clamp(0.0, 255.0) as u8;
        }
    }
    rgb
}

/// Adds bilinearly interpolated random values on a grid of `cell` pixels, uniform in
/// [-amplitude, amplitude], to `field`.
fn add_value_noise(
    field: &mut [f32],
    width: usize,
    height: usize,
    cell: f32,
    amplitude: f32,
    rng: &mut Rng,
) {
    let gw = (width as f32 / cell).ceil() as usize + 2;
    let gh = (height as f32 / cell).ceil() as usize + 2;
    let grid: Vec<f32> = (0..gw * gh)
        .map(|_| rng.range(-1.0, 1.0) as f32 * amplitude)
        .collect();
    for y in 0..height {
        let fy = y as f32 / cell;
        let (y0, ty) = (fy as usize, fy.fract());
        let (r0, r1) = (
            &grid[y0 * gw..(y0 + 1) * gw],
            &grid[(y0 + 1) * gw..(y0 + 2) * gw],
        );
        for (x, v) in field[y * width..(y + 1) * width].iter_mut().enumerate() {
            let fx = x as f32 / cell;
            let (x0, tx) = (fx as usize, fx.fract());
            let top = r0[x0] + (r0[x0 + 1] - r0[x0]) * tx;
            let bottom = r1[x0] + (r1[x0 + 1] - r1[x0]) * tx;
            *v += top + (bottom - top) * ty;
        }
    }
}

/// Encodes interleaved RGB as a baseline JPEG.
pub fn encode_jpeg(rgb: &[u8], width: usize, height: usize, quality: u8) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(
            rgb,
            width as u32,
            height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .context("encoding a synthetic JPEG")?;
    Ok(bytes)
}

/// Writes `root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG`; files that exist are
/// overwritten.
pub fn write_imagenet_like(root: &Path, opts: &SynthOptions) -> Result<SynthReport> {
    if opts.classes == 0 || opts.train_per_class + opts.val_per_class == 0 {
        bail!("nothing to generate: need at least one class and one picture per class");
    }
    if opts.width.0 == 0
        || opts.height.0 == 0
        || opts.width.0 > opts.width.1
        || opts.height.0 > opts.height.1
    {
        bail!(
            "invalid picture size ranges: width {:?}, height {:?}",
            opts.width,
            opts.height
        );
    }
    let mut report = SynthReport::default();
    let mut rng = Rng::new(opts.seed);
    for c in 0..opts.classes {
        let wnid = class_name(c);
        let tint: [f32; 3] = std::array::from_fn(|_| rng.range(-40.0, 40.0) as f32);
        for (split, count) in [("train", opts.train_per_class), ("val", opts.val_per_class)] {
            let dir = root.join(split).join(&wnid);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
            for k in 0..count {
                let w = opts.width.0 + rng.below(opts.width.1 - opts.width.0 + 1);
                let h = opts.height.0 + rng.below(opts.height.1 - opts.height.0 + 1);
                let rgb = photo(w, h, tint, &mut rng);
                let bytes = encode_jpeg(&rgb, w, h, opts.quality)?;
                let path = dir.join(format!("{wnid}_{k}.JPEG"));
                std::fs::write(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                report.files += 1;
                report.bytes += bytes.len() as u64;
                report.pixels += (w * h) as u64;
            }
        }
    }
    Ok(report)
}
