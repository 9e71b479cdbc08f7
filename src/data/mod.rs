//! Datasets: one in-memory form (`Dataset`, u8 NCHW) read from CIFAR-10/100 binary files, IDX
//! files (MNIST, Fashion-MNIST), image folders, or the Fashion-MNIST subset compiled into the
//! binary; ImageNet folders streamed from disk (`imagenet::ImageNet`: JPEG decoding and the
//! torchvision transforms on worker threads); augmentation (random crop with padding, horizontal
//! flip, normalisation); and a background batcher over either (`Source`) that produces f32 NCHW
//! batches whose content depends only on (seed, epoch, sample), never on thread timing.
//!
//! Every image is stored at the size the models take: 28x28 one-channel data (MNIST,
//! Fashion-MNIST) is zero-padded (black, value 0) to 32x32 with 2 pixels on each side when loaded,
//! so the CIFAR models apply unchanged; the number of input channels (1 or 3) and of classes come
//! from the dataset. What each kind is (shape, normalisation, class names, flips) is written
//! once, in `facts`.

pub mod augment;
pub mod batcher;
pub mod bench;
pub mod cifar;
pub mod decode;
pub mod facts;
pub mod idx;
pub mod image_folder;
pub mod imagenet;
pub mod plan;
pub mod source;
pub mod stream;
pub mod synth;
pub mod transform;

pub use augment::{Augment, Crop, Normalizer};
pub use batcher::Batcher;
pub use facts::DatasetFacts;
pub use plan::{Batch, BatchPlan, Shard};
pub use source::Source;

use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Which reader `load` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DatasetKind {
    /// The balanced Fashion-MNIST subset compiled into the binary (5,000 train / 1,000 test).
    #[default]
    Embedded,
    /// CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin (+ batches.meta.txt).
    Cifar10,
    /// CIFAR-100 binary version: train.bin, test.bin (+ fine_label_names.txt); fine labels.
    Cifar100,
    /// MNIST IDX files (train-images-idx3-ubyte, ... optionally .gz).
    Mnist,
    /// Fashion-MNIST IDX files (same names as MNIST).
    FashionMnist,
    /// A folder with one sub-folder of PNG/JPEG files per class, resized to `size` x `size` RGB.
    ImageFolder { size: usize },
    /// ImageNet's train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, streamed from disk, cropped to
    /// `crop` x `crop` (224 for the recipe; smaller for quick runs and tests).
    ImageNet { crop: usize },
}

/// Image size of an image folder when the kind is written as plain "folder".
pub const DEFAULT_FOLDER_SIZE: usize = 32;

impl FromStr for DatasetKind {
    type Err = anyhow::Error;

    /// Accepts embedded, cifar10, cifar100, mnist, fashion-mnist, folder, folder:SIZE, imagenet,
    /// imagenet:SIZE.
    fn from_str(s: &str) -> Result<DatasetKind> {
        let lower = s.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "embedded" | "fashion-mnist-subset" => DatasetKind::Embedded,
            "cifar10" | "cifar-10" => DatasetKind::Cifar10,
            "cifar100" | "cifar-100" => DatasetKind::Cifar100,
            "mnist" => DatasetKind::Mnist,
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => DatasetKind::FashionMnist,
            "folder" => DatasetKind::ImageFolder {
                size: DEFAULT_FOLDER_SIZE,
            },
            "imagenet" => DatasetKind::ImageNet {
                crop: imagenet::IMAGENET_CROP,
            },
            _ => {
                let sized = |prefix: &str| {
                    lower
                        .strip_prefix(prefix)
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| (1..=4096).contains(n))
                };
                if let Some(size) = sized("folder:") {
                    DatasetKind::ImageFolder { size }
                } else if let Some(crop) = sized("imagenet:") {
                    DatasetKind::ImageNet { crop }
                } else {
                    bail!(
                        "unknown dataset kind {s:?}: expected embedded, cifar10, cifar100, mnist, \
                         fashion-mnist, folder, folder:SIZE, imagenet or imagenet:SIZE (SIZE in \
                         1..=4096)"
                    )
                }
            }
        })
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetKind::Embedded => write!(f, "embedded"),
            DatasetKind::Cifar10 => write!(f, "cifar10"),
            DatasetKind::Cifar100 => write!(f, "cifar100"),
            DatasetKind::Mnist => write!(f, "mnist"),
            DatasetKind::FashionMnist => write!(f, "fashion-mnist"),
            DatasetKind::ImageFolder { size } => write!(f, "folder:{size}"),
            DatasetKind::ImageNet { crop } if *crop == imagenet::IMAGENET_CROP => {
                write!(f, "imagenet")
            }
            DatasetKind::ImageNet { crop } => write!(f, "imagenet:{crop}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A whole split in memory: `images` is [n, c, h, w] u8 (raw pixels, not normalised).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// What it is and where it came from, e.g. "cifar10 train (/data/cifar-10-batches-bin)".
    pub name: String,
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub classes: Vec<String>,
    /// Per channel (c entries), applied as (pixel/255 - mean) / std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Whether a random horizontal flip is a valid augmentation (off for digits).
    pub hflip: bool,
}

impl Dataset {
    /// Keeps the first `n` samples (all of them when there are fewer), for short runs.
    pub fn take(mut self, n: usize) -> Dataset {
        if n < self.n {
            self.images.truncate(n * self.sample_len());
            self.labels.truncate(n);
            self.n = n;
            self.name = format!("{} (first {n})", self.name);
        }
        self
    }

    /// Pixels of image i: [c, h, w].
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.c * self.h * self.w;
        &self.images[i * s..(i + 1) * s]
    }

    /// Floats per image (c*h*w).
    pub fn sample_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Checks the invariants every reader promises (sizes agree, labels in range), so a reader
    /// bug surfaces as an error at load time and not as an out-of-bounds panic in the batcher.
    fn checked(self) -> Result<Dataset> {
        let ok_sizes = self.images.len() == self.n * self.sample_len()
            && self.labels.len() == self.n
            && self.mean.len() == self.c
            && self.std.len() == self.c;
        if !ok_sizes {
            bail!(
                "{}: inconsistent dataset ({} pixels for {} images of {}x{}x{}, {} labels, \
                 {} means, {} stds)",
                self.name,
                self.images.len(),
                self.n,
                self.c,
                self.h,
                self.w,
                self.labels.len(),
                self.mean.len(),
                self.std.len()
            );
        }
        if self.n == 0 {
            bail!("{}: no images", self.name);
        }
        if self.std.iter().any(|&s| s <= 0.0) {
            bail!("{}: std must be positive, got {:?}", self.name, self.std);
        }
        if let Some(i) = self
            .labels
            .iter()
            .position(|&l| l as usize >= self.classes.len())
        {
            bail!(
                "{}: label {} of image {i} is out of range ({} classes)",
                self.name,
                self.labels[i],
                self.classes.len()
            );
        }
        Ok(self)
    }
}

/// Loads one split. `path` is the dataset folder (required for every kind but `Embedded`, which
/// takes none); see each reader's module for the files it expects.
pub fn load(kind: DatasetKind, path: Option<&Path>, split: Split) -> Result<Dataset> {
    let need_path = || match path {
        Some(p) => Ok(p),
        None => Err(anyhow::anyhow!(
            "dataset {kind} needs a path (a folder holding its files)"
        )),
    };
    let ds = match kind {
        DatasetKind::Embedded => {
            if let Some(p) = path {
                bail!(
                    "the embedded dataset takes no path (got {}); use fashion-mnist to read \
                     IDX files from a folder",
                    p.display()
                );
            }
            idx::load_embedded(split)?
        }
        DatasetKind::Cifar10 => cifar::load_cifar10(need_path()?, split)?,
        DatasetKind::Cifar100 => cifar::load_cifar100(need_path()?, split)?,
        DatasetKind::Mnist => idx::load_dir(need_path()?, split, idx::IdxKind::Mnist)?,
        DatasetKind::FashionMnist => {
            idx::load_dir(need_path()?, split, idx::IdxKind::FashionMnist)?
        }
        DatasetKind::ImageFolder { size } => image_folder::load(need_path()?, split, size)?,
        DatasetKind::ImageNet { .. } => bail!(
            "dataset {kind} is streamed from disk, not loaded into memory: open it with \
             data::open"
        ),
    };
    ds.checked()
}

/// The class names of a dataset, in label order: the fixed ones of its kind (data::facts), or
/// those of the folder at `path` (an image folder's or ImageNet's class sub-folders).
pub fn class_names(kind: DatasetKind, path: Option<&Path>) -> Result<Vec<String>> {
    if let Some(names) = kind.facts().classes {
        return Ok(names.iter().map(|s| s.to_string()).collect());
    }
    let path = path.ok_or_else(|| {
        anyhow::anyhow!("dataset {kind} needs its folder (--data-path) for the class names")
    })?;
    match kind {
        DatasetKind::ImageNet { .. } => imagenet::class_names(path),
        _ => Ok(load(kind, Some(path), Split::Test)
            .context("reading the class names of the image folder")?
            .classes),
    }
}

/// Opens one split as a batcher source: ImageNet streamed from its folder, every other kind
/// loaded into memory (`load`). `limit` keeps that many samples (the first ones in memory,
/// evenly spread files of a stream).
pub fn open(
    kind: DatasetKind,
    path: Option<&Path>,
    split: Split,
    limit: Option<usize>,
) -> Result<Source> {
    match kind {
        DatasetKind::ImageNet { crop } => {
            let root = path.ok_or_else(|| {
                anyhow::anyhow!(
                    "dataset {kind} needs its folder (--data-path DIR with train/, val/)"
                )
            })?;
            let images = imagenet::ImageNet::open(root, split, crop)?;
            Ok(match limit {
                Some(n) => images.take(n),
                None => images,
            }
            .into())
        }
        _ => {
            let ds = load(kind, path, split)?;
            Ok(match limit {
                Some(n) => ds.take(n),
                None => ds,
            }
            .into())
        }
    }
}

/// Reads a whole file, with an error that names it (and says "missing" when it does not exist).
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("missing file {}", path.display())
        } else {
            anyhow::anyhow!("cannot read {}: {e}", path.display())
        }
    })
}
