//! Training augmentation and normalisation, as torchvision does it in the official code:
//! RandomCrop(32, padding=4) pads the raw image with 0 (black), then crops a window at a random
//! offset; RandomHorizontalFlip(p=0.5); then ToTensor (pixel/255) and Normalize(mean, std). So a
//! padded pixel becomes (0 - mean)/std, not 0. The test split is only normalised.

use super::Dataset;
use crate::rng::Rng;

/// Padding of the random crop (docs/numerics.md section 11: random crop 32, zero padding 4).
pub const CROP_PADDING: usize = 4;

/// The random crop and flip of a training split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding on each side before cropping back to the original size.
    pub pad: usize,
    /// Random horizontal flip with probability 1/2 (off for digits, where a mirrored 2 is not a 2).
    pub hflip: bool,
}

/// One sample's draw: output pixel (y, x) is source pixel (y + dy, x' + dx) of the unpadded
/// image, where x' = w-1-x when `flip` and x otherwise; outside the image it is padding (0).
/// dy, dx lie in [-pad, pad]: torchvision's crop corner (top, left) in [0, 2*pad] minus pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub dy: isize,
    pub dx: isize,
    pub flip: bool,
}

impl Crop {
    /// The image unchanged (the test split).
    pub const IDENTITY: Crop = Crop {
        dy: 0,
        dx: 0,
        flip: false,
    };
}

impl Augment {
    /// Crop with padding 4, and the flip where the dataset allows it.
    pub fn for_dataset(ds: &Dataset) -> Augment {
        Augment {
            pad: CROP_PADDING,
            hflip: ds.hflip,
        }
    }

    /// Draws the crop offset (top, then left, uniform over the 2*pad+1 positions each, as
    /// torch.randint(0, h - th + 1)) and then the flip.
    pub fn sample(&self, rng: &mut Rng) -> Crop {
        let positions = 2 * self.pad + 1;
        let dy = rng.below(positions) as isize - self.pad as isize;
        let dx = rng.below(positions) as isize - self.pad as isize;
        let flip = self.hflip && rng.uniform() < 0.5;
        Crop { dy, dx, flip }
    }
}

/// Per-channel lookup tables from a raw pixel to its normalised value, computed in f32 exactly as
/// ToTensor + Normalize do: (pixel / 255 - mean) / std.
#[derive(Clone, Debug)]
pub struct Normalizer {
    luts: Vec<[f32; 256]>,
}

impl Normalizer {
    pub fn new(mean: &[f32], std: &[f32]) -> Normalizer {
        let luts = mean
            .iter()
            .zip(std)
            .map(|(&m, &s)| std::array::from_fn(|p| (p as f32 / 255.0 - m) / s))
            .collect();
        Normalizer { luts }
    }

    pub fn for_dataset(ds: &Dataset) -> Normalizer {
        Normalizer::new(&ds.mean, &ds.std)
    }

    /// The normalised value of raw `pixel` in `channel`.
    pub fn value(&self, channel: usize, pixel: u8) -> f32 {
        self.luts[channel][pixel as usize]
    }
}

/// Writes image `i` of `ds`, cropped and flipped by `crop` and normalised, into `out`
/// ([c, h, w], c*h*w floats).
pub fn write_sample(ds: &Dataset, i: usize, norm: &Normalizer, crop: Crop, out: &mut [f32]) {
    let (h, w) = (ds.h, ds.w);
    let plane = h * w;
    let img = ds.image(i);
    for (ch, (src, dst)) in img
        .chunks_exact(plane)
        .zip(out.chunks_exact_mut(plane))
        .enumerate()
    {
        let lut = &norm.luts[ch];
        let padding = lut[0];
        for (y, out_row) in dst.chunks_exact_mut(w).enumerate() {
            let sy = y as isize + crop.dy;
            if sy < 0 || sy >= h as isize {
                out_row.fill(padding);
                continue;
            }
            let src_row = &src[sy as usize * w..(sy as usize + 1) * w];
            for (x, o) in out_row.iter_mut().enumerate() {
                let sx = if crop.flip { w - 1 - x } else { x } as isize + crop.dx;
                *o = if sx >= 0 && sx < w as isize {
                    lut[src_row[sx as usize] as usize]
                } else {
                    padding
                };
            }
        }
    }
}
