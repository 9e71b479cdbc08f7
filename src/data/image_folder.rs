//! An image folder: one sub-folder per class holding PNG or JPEG files.
//!
//! Layout: when `path/train` or `path/test` exists, the split is read from that folder (the other
//! one is not needed), and the classes are the sub-folders of `path/train` (of `path/test` when
//! there is no train folder), so test labels agree with the trained model; a test class folder
//! that is not a training class is an error, a training class with no test folder is fine.
//! Otherwise `path` itself holds the class folders and the split is made deterministically: in
//! each class, files sorted by name, every fifth file (positions 4, 9, 14, ...) is Test and the
//! others are Train (an 80/20 split).
//! Classes: sub-folder names sorted by byte order (as torchvision's ImageFolder), label = index.
//! Files: names ending in .png, .jpg or .jpeg (any case) directly inside a class folder; hidden
//! files, other files and nested folders are skipped. The format is read from the content, so a
//! mislabelled extension still decodes; a file that does not decode is an error naming it, and
//! so is a class folder with no image file.
//! Each image becomes RGB (grey is replicated, alpha dropped) and `size` x `size`: scaled with a
//! bilinear (triangle) filter, antialiased when shrinking, so that its shorter side is `size`,
//! then the centre of the longer side is cropped (image's `resize_to_fill`). An image already
//! `size` x `size` is kept exactly. Normalised with the CIFAR-10 mean/std of the official code.

use super::{Dataset, DatasetKind, Split};
use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// Whether a file name is a picture: .png, .jpg or .jpeg in any case, not hidden.
pub(super) fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.')
        && (lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list folder {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list folder {}", dir.display()))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Names of the class sub-folders of `dir`, sorted.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let classes: Vec<String> = sorted_entries(dir)?
        .into_iter()
        .filter(|(name, p)| p.is_dir() && !name.starts_with('.'))
        .map(|(name, _)| name)
        .collect();
    if classes.is_empty() {
        bail!(
            "image folder {} has no class sub-folders (expected one folder of images per class)",
            dir.display()
        );
    }
    Ok(classes)
}

/// The image files of one class folder, sorted by name; none is an error.
fn class_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|(name, p)| is_image_name(name) && p.is_file())
        .map(|(_, p)| p)
        .collect();
    if files.is_empty() {
        bail!(
            "class folder {} is empty (no .png, .jpg or .jpeg file)",
            dir.display()
        );
    }
    Ok(files)
}

/// Decodes one file into `out` ([3, size, size] u8, CHW).
fn decode_into(file: &Path, size: usize, out: &mut [u8]) -> Result<()> {
    let img = image::ImageReader::open(file)
        .with_context(|| format!("cannot open image {}", file.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", file.display()))?
        .decode()
        .with_context(|| format!("{} is not a readable PNG or JPEG image", file.display()))?;
    let side = size as u32;
    let rgb = image::DynamicImage::ImageRgb8(img.into_rgb8());
    let rgb = if rgb.width() == side && rgb.height() == side {
        rgb.into_rgb8()
    } else {
        rgb.resize_to_fill(side, side, FilterType::Triangle)
            .into_rgb8()
    };
    let plane = size * size;
    for (i, px) in rgb.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = px.0[ch];
        }
    }
    Ok(())
}

/// Decodes every file on all cores; the result is in file order whatever the timing, and the
/// error reported is the first failing file in that order.
fn decode_all(files: &[PathBuf], size: usize) -> Result<Vec<u8>> {
    let sample = 3 * size * size;
    let mut images = vec![0u8; files.len() * sample];
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_thread = files.len().div_ceil(threads).max(1);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .zip(images.chunks_mut(per_thread * sample))
            .map(|(fs, out)| {
                s.spawn(move || {
                    for (f, o) in fs.iter().zip(out.chunks_exact_mut(sample)) {
                        decode_into(f, size, o)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an image decoder thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(images)
}

pub fn load(path: &Path, split: Split, size: usize) -> Result<Dataset> {
    if size == 0 {
        bail!(
            "image folder {}: image size must be positive",
            path.display()
        );
    }
    if !path.is_dir() {
        bail!("missing folder {}", path.display());
    }
    let train_dir = path.join("train");
    let test_dir = path.join("test");
    let split_dir = match split {
        Split::Train => &train_dir,
        Split::Test => &test_dir,
    };
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let classes;
    if train_dir.is_dir() || test_dir.is_dir() {
        if !split_dir.is_dir() {
            bail!(
                "missing folder {} (the {} split of an image folder with train/ and test/)",
                split_dir.display(),
                split.name()
            );
        }
        classes = class_folders(if train_dir.is_dir() {
            &train_dir
        } else {
            &test_dir
        })?;
        for name in class_folders(split_dir)? {
            let Some(label) = classes.iter().position(|c| *c == name) else {
                bail!(
                    "class folder {} is not a class of {} (classes: {})",
                    split_dir.join(&name).display(),
                    train_dir.display(),
                    classes.join(", ")
                );
            };
            for f in class_files(&split_dir.join(&name))? {
                files.push(f);
                labels.push(label as u32);
            }
        }
    } else {
        classes = class_folders(path)?;
        for (label, name) in classes.iter().enumerate() {
            for (i, f) in class_files(&path.join(name))?.into_iter().enumerate() {
                if (i % 5 == 4) == (split == Split::Test) {
                    files.push(f);
                    labels.push(label as u32);
                }
            }
        }
    }
    if files.is_empty() {
        bail!(
            "image folder {}: no {} images (every class has fewer than 5 files, so the 80/20 \
             split gives the test split nothing)",
            path.display(),
            split.name()
        );
    }
    let images = decode_all(&files, size)?;
    let facts = DatasetKind::ImageFolder { size }.facts();
    Ok(Dataset {
        name: format!(
            "folder {} ({}, {size}x{size})",
            split.name(),
            path.display()
        ),
        n: files.len(),
        images,
        labels,
        c: facts.channels,
        h: facts.size,
        w: facts.size,
        classes,
        mean: facts.mean.to_vec(),
        std: facts.std.to_vec(),
        hflip: facts.hflip,
    })
}
