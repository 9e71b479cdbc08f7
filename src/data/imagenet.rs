//! ImageNet in its usual folder layout, streamed from disk: `DIR/train/<wnid>/*.JPEG` and
//! `DIR/val/<wnid>/*.JPEG` (the validation set sorted into class folders, as the official code
//! and torchvision's ImageFolder expect).
//!
//! Only the file list lives in memory (the relative names in one string, a label per file: about
//! 50 MB for the 1.28 million training files); each sample is read, decoded and transformed
//! (src/data/transform.rs) when a batch needs it, on the batcher's worker threads.
//!
//! Classes: the sub-folders of `train/` sorted by byte order (torchvision's ImageFolder), label =
//! index; without `train/` (an evaluation-only copy) those of `val/`. A `val/` folder that is not
//! a training class is an error naming it; a training class with no `val/` folder is allowed (its
//! label keeps its index). Files: names ending in .jpeg, .jpg or .png (any case) directly inside a
//! class folder, sorted by name; hidden files are skipped; a class folder with no such file is an
//! error naming it. The content decides the format (src/data/decode.rs).
//!
//! A file that cannot be read or decoded in the middle of a run does not stop it: a warning line
//! names it (once per file) and the sample is replaced by the next readable file of the same class
//! (wrapping around), transformed with the original sample's random draws, so batches stay a pure
//! function of (seed, epoch, sample) and the files' contents. The batch counts the replacements
//! (`Batch::skipped`), the trainer writes them to metrics.jsonl. Only a class none of whose files
//! can be read is an error.

use super::decode::{decode_rgb, Rgb8};
use super::facts::{IMAGENET_MEAN, IMAGENET_STD};
use super::image_folder::is_image_name;
use super::transform::{resample_normalise, Normalise, ResampleScratch, Transform};
use super::Split;
use crate::rng::Rng;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The recipe's crop (the models' input side) and validation resize (docs/numerics.md section
/// 11).
pub const IMAGENET_CROP: usize = 224;
pub const IMAGENET_RESIZE: usize = 256;

/// The validation resize for a crop other than 224 (test runs at small sizes): the recipe's
/// 256/224 ratio, rounded.
pub fn resize_for_crop(crop: usize) -> usize {
    (crop * IMAGENET_RESIZE + IMAGENET_CROP / 2) / IMAGENET_CROP
}

/// The folder of a split: train/ or val/.
fn split_dir(root: &Path, split: Split) -> PathBuf {
    root.join(match split {
        Split::Train => "train",
        Split::Test => "val",
    })
}

/// The names of the entries of `dir` that pass `keep(name, path)`, sorted.
fn sorted_names(dir: &Path, keep: impl Fn(&str, &Path) -> bool) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot list folder {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list folder {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&name, &entry.path()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The class folders (wnids) of `dir`, sorted.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let classes = sorted_names(dir, |name, path| !name.starts_with('.') && path.is_dir())?;
    if classes.is_empty() {
        bail!(
            "{} has no class folders (expected one folder per class, e.g. n01440764/, of .JPEG \
             files)",
            dir.display()
        );
    }
    Ok(classes)
}

/// The class names of an ImageNet folder: the sorted sub-folders of train/ (of val/ without
/// train/).
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let train = split_dir(root, Split::Train);
    let val = split_dir(root, Split::Test);
    if train.is_dir() {
        class_folders(&train)
    } else if val.is_dir() {
        class_folders(&val)
    } else {
        bail!(
            "{} is not an ImageNet folder: it has neither train/ nor val/ (expected \
             train/<wnid>/*.JPEG and val/<wnid>/*.JPEG)",
            root.display()
        )
    }
}

/// One split of an ImageNet folder, read file by file.
#[derive(Debug)]
pub struct ImageNet {
    /// What it is and where, e.g. "imagenet train (/data/imagenet, 224x224)".
    pub name: String,
    pub dir: PathBuf,
    pub classes: Vec<String>,
    /// Relative paths ("wnid/file.JPEG"), concatenated; file i is names[ends[i-1]..ends[i]].
    names: String,
    ends: Vec<u32>,
    labels: Vec<u32>,
    /// The files of each label: a range of file indices (empty for a class without files here).
    class_files: Vec<Range<u32>>,
    pub train_transform: Transform,
    pub eval_transform: Transform,
    /// ImageNet's mean and std (docs/numerics.md section 11).
    pub norm: Normalise,
    /// Files found unreadable so far (their warning was printed): not tried again.
    bad: Mutex<HashSet<u32>>,
}

/// A worker's reusable buffers.
#[derive(Debug, Default)]
pub struct SampleScratch {
    bytes: Vec<u8>,
    pixels: Rgb8,
    resample: ResampleScratch,
}

impl ImageNet {
    /// Lists one split of the ImageNet folder `root`, for crop size `crop` (224 for the recipe).
    pub fn open(root: &Path, split: Split, crop: usize) -> Result<ImageNet> {
        if crop == 0 {
            bail!("imagenet: the crop size must be positive");
        }
        if !root.is_dir() {
            bail!("missing folder {}", root.display());
        }
        let classes = class_names(root)?;
        let dir = split_dir(root, split);
        if !dir.is_dir() {
            bail!(
                "missing folder {} (the {} split of the ImageNet folder {})",
                dir.display(),
                split.name(),
                root.display()
            );
        }
        let mut names = String::new();
        let mut ends = Vec::new();
        let mut labels = Vec::new();
        let mut class_files = vec![0..0; classes.len()];
        for wnid in class_folders(&dir)? {
            let Ok(label) = classes.binary_search(&wnid) else {
                bail!(
                    "class folder {} is not a class of {} ({} classes, {} ... {})",
                    dir.join(&wnid).display(),
                    split_dir(root, Split::Train).display(),
                    classes.len(),
                    classes[0],
                    classes[classes.len() - 1]
                );
            };
            let class_dir = dir.join(&wnid);
            let files = sorted_names(&class_dir, |name, path| {
                is_image_name(name) && !path.is_dir()
            })?;
            if files.is_empty() {
                bail!(
                    "class folder {} is empty (no .JPEG, .jpg or .png file)",
                    class_dir.display()
                );
            }
            let first = ends.len() as u32;
            for f in files {
                names.push_str(&wnid);
                names.push('/');
                names.push_str(&f);
                ends.push(u32::try_from(names.len()).map_err(|_| {
                    anyhow!("{}: the file list exceeds 4 GiB of names", dir.display())
                })?);
                labels.push(label as u32);
            }
            class_files[label] = first..ends.len() as u32;
        }
        let resize = resize_for_crop(crop);
        Ok(ImageNet {
            name: format!(
                "imagenet {} ({}, {crop}x{crop})",
                split.name(),
                root.display()
            ),
            dir,
            classes,
            names,
            ends,
            labels,
            class_files,
            train_transform: Transform::Train { crop, hflip: true },
            eval_transform: Transform::Eval { crop, resize },
            norm: Normalise::new(&IMAGENET_MEAN, &IMAGENET_STD),
            bad: Mutex::new(HashSet::new()),
        })
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// [3, crop, crop].
    pub fn image_shape(&self) -> [usize; 3] {
        let s = self.train_transform.crop();
        [3, s, s]
    }

    /// The path of file i.
    pub fn file(&self, i: usize) -> PathBuf {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.dir.join(&self.names[start..self.ends[i] as usize])
    }

    /// Keeps `n` files spread evenly over the list (file floor(k * len / n) for k < n), so a
    /// short run still sees every class; all of them when there are fewer.
    pub fn take(mut self, n: usize) -> ImageNet {
        let len = self.len();
        if n >= len {
            return self;
        }
        let keep: Vec<usize> = (0..n).map(|k| k * len / n).collect();
        let mut names = String::new();
        let mut ends = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        let mut class_files = vec![0..0; self.classes.len()];
        for (new, &i) in keep.iter().enumerate() {
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            names.push_str(&self.names[start..self.ends[i] as usize]);
            ends.push(names.len() as u32);
            let label = self.labels[i];
            labels.push(label);
            // Files stay sorted by class, so each class is still one run of indices.
            let r = &mut class_files[label as usize];
            if r.start == r.end {
                r.start = new as u32;
            }
            r.end = new as u32 + 1;
        }
        self.names = names;
        self.ends = ends;
        self.labels = labels;
        self.class_files = class_files;
        self.name = format!("{} ({n} of {len} files, evenly spread)", self.name);
        self
    }

    /// Reads, decodes and transforms file `i` into `out` ([3, crop, crop] f32), drawing the
    /// random transform's parameters from a copy of `rng`.
    pub fn write_file(
        &self,
        i: usize,
        transform: &Transform,
        rng: &Rng,
        scratch: &mut SampleScratch,
        out: &mut [f32],
    ) -> Result<()> {
        let path = self.file(i);
        let read = |scratch: &mut SampleScratch| -> Result<()> {
            use std::io::Read;
            scratch.bytes.clear();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut scratch.bytes))
                .map_err(|e| anyhow!("cannot read: {e}"))?;
            // A decoder bug on a strange file is that file's problem, not the run's.
            let (bytes, pixels) = (&scratch.bytes, &mut scratch.pixels);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_rgb(bytes, pixels)))
                .unwrap_or_else(|_| Err(anyhow!("the decoder panicked")))
        };
        read(scratch).with_context(|| format!("{}", path.display()))?;
        let px = &scratch.pixels;
        let (ys, xs) = transform.weights(px.height, px.width, &mut rng.clone());
        resample_normalise(
            &px.rgb,
            px.width,
            &ys,
            &xs,
            &self.norm,
            &mut scratch.resample,
            out,
        );
        Ok(())
    }

    /// Writes sample `i` into `out`; when its file cannot be used, the next readable file of its
    /// class (wrapping around) with the same draws, after a warning line (once per file).
    /// Returns whether the sample was replaced.
    pub fn write_sample(
        &self,
        i: usize,
        transform: &Transform,
        rng: &Rng,
        scratch: &mut SampleScratch,
        out: &mut [f32],
    ) -> Result<bool> {
        let class = &self.class_files[self.labels[i] as usize];
        let (first, count) = (class.start as usize, class.len());
        for step in 0..count {
            let file = first + (i - first + step) % count;
            if self.known_bad(file) {
                continue;
            }
            match self.write_file(file, transform, rng, scratch, out) {
                Ok(()) => return Ok(step > 0),
                Err(e) => {
                    if self
                        .bad
                        .lock()
                        .map(|mut b| b.insert(file as u32))
                        .unwrap_or(true)
                    {
                        eprintln!("warning: skipping {e:#}; using another file of its class");
                    }
                }
            }
        }
        bail!(
            "no file of class {} in {} can be read (each failure was named in a warning line)",
            self.classes[self.labels[i] as usize],
            self.dir
                .join(&self.classes[self.labels[i] as usize])
                .display()
        )
    }

    fn known_bad(&self, file: usize) -> bool {
        self.bad
            .lock()
            .map(|b| b.contains(&(file as u32)))
            .unwrap_or(false)
    }
}
