//! MNIST and Fashion-MNIST IDX files, and the Fashion-MNIST subset compiled into the binary.
//!
//! Files (in the dataset folder, each plain or gzipped with a .gz suffix; gzip is recognised by
//! its magic bytes): train-images-idx3-ubyte, train-labels-idx1-ubyte (train split),
//! t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (test split).
//! IDX: a big-endian u32 magic (0x00000803 for u8 images with 3 dimensions, 0x00000801 for u8
//! labels with 1), the dimension sizes as big-endian u32, then the data. Images must be 28x28;
//! they are zero-padded to 32x32 (2 black pixels on each side) so the CIFAR models apply.

use super::facts::{MNIST_SIDE, PADDED_SIDE};
use super::{read_file, Dataset, DatasetKind, Split};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The embedded subset (see data/fashion-mnist-subset/README.md: the first 500 / 100 images of
/// each class, MIT licence, Zalando SE).
const EMBEDDED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz");

/// Which digits-like dataset the IDX files hold (class names, mean/std, whether flips are valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxKind {
    Mnist,
    FashionMnist,
}

impl IdxKind {
    fn dataset_kind(self) -> DatasetKind {
        match self {
            IdxKind::Mnist => DatasetKind::Mnist,
            IdxKind::FashionMnist => DatasetKind::FashionMnist,
        }
    }
}

/// Gunzips `bytes` when they start with the gzip magic, else returns them as they are.
fn maybe_gunzip(bytes: Vec<u8>, source: &str) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{source}: corrupt or truncated gzip data"))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

fn header(bytes: &[u8], source: &str, magic: u32, dims: usize) -> Result<Vec<usize>> {
    let header_len = 4 + 4 * dims;
    if bytes.len() < header_len {
        bail!(
            "{source}: {} bytes is shorter than the {header_len}-byte IDX header",
            bytes.len()
        );
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if word(0) != magic {
        bail!(
            "{source}: bad IDX magic 0x{:08x}, expected 0x{magic:08x} (unsigned bytes, {dims} \
             dimension(s))",
            word(0)
        );
    }
    let sizes: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    // u128: three u32 sizes from a corrupt header could overflow a usize product.
    let expected = header_len as u128 + sizes.iter().map(|&s| s as u128).product::<u128>();
    if bytes.len() as u128 != expected {
        bail!(
            "{source}: size {} bytes, expected {expected} ({header_len}-byte header + {}); the \
             file is truncated or not in this format",
            bytes.len(),
            sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" x ")
        );
    }
    Ok(sizes)
}

/// Parses (maybe gzipped) IDX image and label files into a padded 1x32x32 dataset.
fn parse(
    images: Vec<u8>,
    images_source: &str,
    labels: Vec<u8>,
    labels_source: &str,
    kind: IdxKind,
    name: String,
) -> Result<Dataset> {
    let images = maybe_gunzip(images, images_source)?;
    let labels = maybe_gunzip(labels, labels_source)?;
    let dims = header(&images, images_source, IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows != MNIST_SIDE || cols != MNIST_SIDE {
        bail!("{images_source}: images are {rows}x{cols}, expected {MNIST_SIDE}x{MNIST_SIDE}");
    }
    let label_count = header(&labels, labels_source, LABELS_MAGIC, 1)?[0];
    if label_count != n {
        bail!("{labels_source}: {label_count} labels for the {n} images of {images_source}");
    }
    let facts = kind.dataset_kind().facts();
    let classes = facts.classes.unwrap_or_default();
    let labels = &labels[8..];
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes.len()) {
        bail!(
            "{labels_source}: label {} of image {i} is out of range for {} classes",
            labels[i],
            classes.len()
        );
    }
    let border = (PADDED_SIDE - MNIST_SIDE) / 2;
    let mut padded = vec![0u8; n * PADDED_SIDE * PADDED_SIDE];
    for (src, dst) in images[16..]
        .chunks_exact(MNIST_SIDE * MNIST_SIDE)
        .zip(padded.chunks_exact_mut(PADDED_SIDE * PADDED_SIDE))
    {
        for (y, row) in src.chunks_exact(MNIST_SIDE).enumerate() {
            let start = (y + border) * PADDED_SIDE + border;
            dst[start..start + MNIST_SIDE].copy_from_slice(row);
        }
    }
    Ok(Dataset {
        name,
        images: padded,
        labels: labels.iter().map(|&l| l as u32).collect(),
        n,
        c: facts.channels,
        h: PADDED_SIDE,
        w: PADDED_SIDE,
        classes: classes.iter().map(|s| s.to_string()).collect(),
        mean: facts.mean.to_vec(),
        std: facts.std.to_vec(),
        hflip: facts.hflip,
    })
}

/// Reads `dir/name`, or `dir/name.gz` when the plain file is absent.
fn read_idx(dir: &Path, name: &str) -> Result<(Vec<u8>, String)> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let file = if plain.exists() || !gz.exists() {
        plain
    } else {
        gz
    };
    if !file.exists() {
        bail!(
            "missing file {} (nor {}.gz)",
            dir.join(name).display(),
            name
        );
    }
    Ok((read_file(&file)?, file.display().to_string()))
}

fn file_prefix(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "t10k",
    }
}

pub fn load_dir(dir: &Path, split: Split, kind: IdxKind) -> Result<Dataset> {
    let prefix = file_prefix(split);
    let (images, images_source) = read_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (labels, labels_source) = read_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let kind_name = match kind {
        IdxKind::Mnist => "mnist",
        IdxKind::FashionMnist => "fashion-mnist",
    };
    parse(
        images,
        &images_source,
        labels,
        &labels_source,
        kind,
        format!("{kind_name} {} ({})", split.name(), dir.display()),
    )
}

/// The Fashion-MNIST subset compiled into the binary: 5,000 train / 1,000 test images, balanced.
pub fn load_embedded(split: Split) -> Result<Dataset> {
    let (images, labels) = match split {
        Split::Train => (EMBEDDED_TRAIN_IMAGES, EMBEDDED_TRAIN_LABELS),
        Split::Test => (EMBEDDED_TEST_IMAGES, EMBEDDED_TEST_LABELS),
    };
    let prefix = file_prefix(split);
    parse(
        images.to_vec(),
        &format!("embedded {prefix}-images-idx3-ubyte.gz"),
        labels.to_vec(),
        &format!("embedded {prefix}-labels-idx1-ubyte.gz"),
        IdxKind::FashionMnist,
        format!("fashion-mnist subset {} (embedded)", split.name()),
    )
}
