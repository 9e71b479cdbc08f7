//! The per-epoch metrics log, metrics.jsonl: one JSON object per line, appended and flushed at
//! the end of every epoch, so a run killed at any moment keeps the record of every finished epoch.
//! Read back for the plot and on resume (which drops the entries of epochs it will redo).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

use crate::train::checkpoint::write_atomic;

/// What one epoch measured. Losses are mean cross-entropy per sample; accuracies are percent.
/// A non-finite number (a diverged loss) is written as null and read back as NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 0-based epoch index.
    pub epoch: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// t and k of the sign approximation in this epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub t: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub k: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_top1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_top1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_top5: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub epoch_seconds: f64,
    /// Training images per second over the epoch's steps (data loading and augmentation
    /// included; the rotation update and the evaluation excluded).
    #[serde(deserialize_with = "nan_if_null")]
    pub images_per_second: f64,
    /// Seconds of this epoch's rotation update (0 in epochs without one).
    #[serde(default)]
    pub rotation_seconds: f64,
    /// Per binary conv layer (by its name, e.g. "layer1.0.conv1"): share of weights whose sign the
    /// rotation changed (sign(w3) != sign(w2)). Empty in epochs without a rotation update.
    #[serde(default, deserialize_with = "map_nan_if_null")]
    pub flip_rate: BTreeMap<String, f64>,
    /// Per binary conv layer: cosine between w3 and sign(w3) (the angular bias).
    #[serde(default, deserialize_with = "map_nan_if_null")]
    pub angular_cosine: BTreeMap<String, f64>,
    /// Training and test samples of this epoch replaced by another file of their class because
    /// their own file could not be read or decoded (streamed datasets; each file is named in a
    /// warning line on stderr the first time).
    #[serde(default)]
    pub skipped_train_images: usize,
    #[serde(default)]
    pub skipped_test_images: usize,
    /// In a time-budgeted run (`--time-budget`): the optimizer steps this epoch ran (fewer than
    /// a full epoch in the last one) and the run's planned steps as they stood then (the
    /// schedules' length; None before the first plan). Absent from the log of a run without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_steps: Option<usize>,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn map_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// Appends epochs to a metrics.jsonl file.
pub struct MetricsWriter {
    path: PathBuf,
    /// Opened at the first write, so a run that finishes no epoch leaves no empty log.
    file: Option<fs::File>,
}

impl MetricsWriter {
    /// Appends to `path` (created at the first write if needed).
    pub fn append(path: &Path) -> Result<MetricsWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(anyhow!(
                    "cannot open metrics log {}: no folder {}",
                    path.display(),
                    dir.display()
                ));
            }
        }
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file: None,
        })
    }

    /// Writes one line and pushes it to disk (once per epoch, so the fsync costs nothing).
    pub fn write(&mut self, m: &EpochMetrics) -> Result<()> {
        let mut line = serde_json::to_string(m)?;
        line.push('\n');
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .with_context(|| format!("cannot open metrics log {}", self.path.display()))?,
            ),
        };
        // One write call per line: a kill can at worst leave an unterminated last line, which
        // `read_metrics` skips.
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .and_then(|_| file.sync_data())
            .with_context(|| format!("cannot write metrics log {}", self.path.display()))
    }
}

/// Reads every epoch of a metrics.jsonl file. Blank lines are skipped, and so is an unterminated
/// last line that does not parse (a run killed while writing it); any other bad line is an error
/// naming the file and the line number.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read metrics log {}", path.display()))?;
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let unterminated = i + 1 == lines.len();
        match serde_json::from_str::<EpochMetrics>(line) {
            Ok(m) => out.push(m),
            Err(_) if unterminated => break,
            Err(e) => {
                return Err(anyhow!(
                    "{}:{}: not a metrics record: {e}",
                    path.display(),
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

/// For a resumed run that continues with epoch `next_epoch`: rewrites the log (atomically) with
/// only the epochs before it, so the redone epochs are not listed twice. The kept lines stay byte
/// for byte as they were (they are not re-serialised), and a log with nothing to drop is not
/// rewritten at all. Returns what was kept. A missing log is left missing (nothing to keep).
pub fn retain_before(path: &Path, next_epoch: usize) -> Result<Vec<EpochMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read metrics log {}", path.display()))?;
    let mut kept_text = String::with_capacity(text.len());
    let mut kept = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim().is_empty() || !line.ends_with('\n') {
            // Blank, or the torn last line of a killed run (read_metrics skips it too).
            continue;
        }
        let m: EpochMetrics = serde_json::from_str(line)
            .map_err(|e| anyhow!("{}:{}: not a metrics record: {e}", path.display(), i + 1))?;
        if m.epoch < next_epoch {
            kept_text.push_str(line);
            kept.push(m);
        }
    }
    if kept_text != text {
        write_atomic(path, kept_text.as_bytes())?;
    }
    Ok(kept)
}
