//! CIFAR-10 and CIFAR-100, "binary version" (the files of cifar-10-binary.tar.gz and
//! cifar-100-binary.tar.gz).
//!
//! CIFAR-10: data_batch_1.bin .. data_batch_5.bin (train, read in that order) and test_batch.bin,
//! each a sequence of 3073-byte records: 1 label byte (0..9), then 3072 pixels as the red, green
//! and blue 32x32 planes, row-major (already CHW). Class names from batches.meta.txt (one per
//! line) when present, else the standard ones.
//! CIFAR-100: train.bin and test.bin, 3074-byte records: coarse label, fine label (0..99), 3072
//! pixels; the fine label is used. Names from fine_label_names.txt when present.
//! `path` may be the folder holding these files or its parent (holding cifar-10-batches-bin/ or
//! cifar-100-binary/, as the archives unpack).

use super::facts::{CIFAR100_CLASSES, CIFAR10_CLASSES};
use super::{read_file, Dataset, DatasetKind, Split};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

const PIXELS: usize = 3 * 32 * 32;

/// The folder holding `probe`: `path` itself, or the archive's sub-folder `sub` inside it.
fn data_dir(path: &Path, sub: &str, probe: &str) -> PathBuf {
    if !path.join(probe).exists() && path.join(sub).join(probe).exists() {
        path.join(sub)
    } else {
        path.to_path_buf()
    }
}

/// Appends the records of one file: `label_offset` is the label byte used within a record of
/// `PIXELS + label_bytes` bytes.
fn read_records(
    file: &Path,
    label_bytes: usize,
    label_offset: usize,
    classes: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<()> {
    let bytes = read_file(file)?;
    let record = label_bytes + PIXELS;
    if bytes.len() % record != 0 || bytes.is_empty() {
        let next = bytes.len() / record + 1;
        bail!(
            "{}: size {} bytes is not a positive multiple of the {record}-byte record \
             ({label_bytes} label byte(s) + {PIXELS} pixels; the next whole size is {} bytes): \
             the file is truncated or not in this format",
            file.display(),
            bytes.len(),
            next * record
        );
    }
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[label_offset] as usize;
        if label >= classes {
            bail!(
                "{}: record {i} has label {label}, out of range for {classes} classes",
                file.display()
            );
        }
        labels.push(label as u32);
        images.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

/// Class names from a one-name-per-line file when it exists (blank lines ignored), else the
/// standard names; a file with the wrong count is an error rather than silently mislabelled.
fn class_names(file: &Path, standard: &[&str]) -> Result<Vec<String>> {
    if !file.exists() {
        return Ok(standard.iter().map(|s| s.to_string()).collect());
    }
    let text = String::from_utf8(read_file(file)?)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", file.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != standard.len() {
        bail!(
            "{}: {} class names, expected {}",
            file.display(),
            names.len(),
            standard.len()
        );
    }
    Ok(names)
}

fn finish(
    kind: DatasetKind,
    name: String,
    images: Vec<u8>,
    labels: Vec<u32>,
    classes: Vec<String>,
) -> Result<Dataset> {
    let facts = kind.facts();
    Ok(Dataset {
        name,
        n: labels.len(),
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

pub fn load_cifar10(path: &Path, split: Split) -> Result<Dataset> {
    let dir = data_dir(path, "cifar-10-batches-bin", "test_batch.bin");
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for f in &files {
        read_records(&dir.join(f), 1, 0, 10, &mut images, &mut labels)?;
    }
    let classes = class_names(&dir.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    finish(
        DatasetKind::Cifar10,
        format!("cifar10 {} ({})", split.name(), dir.display()),
        images,
        labels,
        classes,
    )
}

pub fn load_cifar100(path: &Path, split: Split) -> Result<Dataset> {
    let dir = data_dir(path, "cifar-100-binary", "test.bin");
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    read_records(&dir.join(file), 2, 1, 100, &mut images, &mut labels)?;
    let classes = class_names(&dir.join("fine_label_names.txt"), &CIFAR100_CLASSES)?;
    finish(
        DatasetKind::Cifar100,
        format!("cifar100 {} ({})", split.name(), dir.display()),
        images,
        labels,
        classes,
    )
}
