//! `rbnn predict`: PNG or JPEG files -> the model's input tensors -> top-k classes.
//!
//! How a picture becomes an input of a model with input [C, H, W] and content size S (both in
//! the packed model's metadata):
//! 1. Decode it; the format is read from the content, so the extension does not matter.
//! 2. Channels: a 1-channel model takes the luminance (colour pictures become grey), a 3-channel
//!    model takes RGB (grey pictures are replicated); an alpha channel is dropped. Models with
//!    another channel count cannot take pictures.
//! 3. Size: scaled with a bilinear filter (antialiased when shrinking) so that its shorter side
//!    is S, then the centre of the longer side is cropped to S x S (as image folders are read
//!    for training); a picture already S x S is kept exactly.
//! 4. Placed in the centre of the H x W input with black (pixel 0) around it: a Fashion-MNIST
//!    model has S = 28 in a 32x32 input, exactly as its training images were padded.
//! 5. Normalised per channel: (pixel / 255 - mean) / std, as the training data.
//!
//! Fashion-MNIST pictures are light garments on a black background; a photo of a shirt on white
//! is far from what such a model has seen.

use super::engine::Engine;
use super::model::ModelMeta;
use crate::data::Normalizer;
use crate::gpu::Gpu;
use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::DynamicImage;
use std::path::{Path, PathBuf};

fn is_image_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    !name.starts_with('.')
        && (name.ends_with(".png") || name.ends_with(".jpg") || name.ends_with(".jpeg"))
}

/// The files to classify: each path as given, except that a directory stands for its .png,
/// .jpg and .jpeg files (not recursive, sorted by name). A directory without any is an error.
pub fn image_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_image_name(f))
                .collect();
            if found.is_empty() {
                bail!("folder {} holds no .png, .jpg or .jpeg file", p.display());
            }
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    if files.is_empty() {
        bail!("no image given");
    }
    Ok(files)
}

/// A decoded picture as the model's normalised input [C, H, W] (the rule of the module docs).
pub fn image_to_input(img: &DynamicImage, meta: &ModelMeta) -> Result<Vec<f32>> {
    let [c, h, w] = meta.input;
    let side = meta.content as u32;
    let fit = |img: DynamicImage| {
        if img.width() == side && img.height() == side {
            img
        } else {
            img.resize_to_fill(side, side, FilterType::Triangle)
        }
    };
    // Planes of the S x S picture, one per channel.
    let planes: Vec<Vec<u8>> = match c {
        1 => vec![fit(DynamicImage::ImageLuma8(img.to_luma8()))
            .to_luma8()
            .into_raw()],
        3 => {
            let rgb = fit(DynamicImage::ImageRgb8(img.to_rgb8())).to_rgb8();
            (0..3)
                .map(|ch| rgb.pixels().map(|p| p.0[ch]).collect())
                .collect()
        }
        _ => bail!(
            "wrong channel count: the model takes {c}-channel input, and pictures convert to 1 \
             (grey) or 3 (RGB) channels"
        ),
    };
    let norm = Normalizer::new(&meta.mean, &meta.std);
    let s = meta.content;
    let (top, left) = ((h - s) / 2, (w - s) / 2);
    let mut out = Vec::with_capacity(c * h * w);
    for (ch, plane) in planes.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let inside = (top..top + s).contains(&y) && (left..left + s).contains(&x);
                let pixel = if inside {
                    plane[(y - top) * s + (x - left)]
                } else {
                    0
                };
                out.push(norm.value(ch, pixel));
            }
        }
    }
    Ok(out)
}

/// Decodes a picture file into the model's input; errors name the file.
pub fn load_image(path: &Path, meta: &ModelMeta) -> Result<Vec<f32>> {
    let f = path.display();
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {f}"))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {f}"))?
        .decode()
        .with_context(|| format!("{f} is not a readable PNG or JPEG image"))?;
    image_to_input(&img, meta).with_context(|| f.to_string())
}

/// One class of a top-k list.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub label: String,
    /// Softmax probability.
    pub probability: f64,
}

/// The k most probable classes of one image's logits (softmax in f64), best first.
pub fn top_k(logits: &[f32], classes: &[String], k: usize) -> Vec<Prediction> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Prediction {
            class,
            label: classes
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string()),
            probability: exp[class] / total,
        })
        .collect()
}

/// Classifies `files` with the engine: every picture decoded first, then one batched run over
/// those that could be read. Per file, in order: its `k` best classes, or why it could not be
/// read (one unreadable picture does not stop the others). `k` must be at least 1.
pub fn predict_files(
    gpu: &Gpu,
    engine: &mut Engine,
    files: &[PathBuf],
    k: usize,
) -> Result<Vec<Result<Vec<Prediction>>>> {
    if k == 0 {
        bail!("--top must be at least 1");
    }
    let meta = engine.meta.clone();
    let decoded: Vec<Result<Vec<f32>>> = files.iter().map(|f| load_image(f, &meta)).collect();
    let input: Vec<f32> = decoded.iter().flatten().flatten().copied().collect();
    let readable = decoded.iter().filter(|d| d.is_ok()).count();
    let [c, h, w] = meta.input;
    let logits = if readable > 0 {
        engine.run(gpu, &input, [readable, c, h, w])?
    } else {
        Vec::new()
    };
    let mut rows = logits.chunks(meta.classes.len());
    Ok(decoded
        .into_iter()
        .map(|d| {
            d.map(|_| {
                let row = rows.next().expect("one row of logits per readable picture");
                top_k(row, &meta.classes, k)
            })
        })
        .collect())
}

/// The predictions as text: the file, then one line per class, the labels padded to the widest
/// of `classes` so that every file's list is aligned alike.
pub fn format_predictions(file: &Path, predictions: &[Prediction], classes: &[String]) -> String {
    let width = classes.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let mut s = format!("{}\n", file.display());
    for (i, p) in predictions.iter().enumerate() {
        s += &format!(
            "  {}. {:<width$} {:>6.2}%\n",
            i + 1,
            p.label,
            100.0 * p.probability
        );
    }
    s
}
