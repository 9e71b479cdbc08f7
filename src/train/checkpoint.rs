//! Checkpoints: a state dict (tensor name -> shape and data, PyTorch's names) plus string
//! metadata, stored as safetensors.
//!
//! Layout of a training checkpoint:
//! - the model's parameters and buffers under their official names (`conv1.weight`,
//!   `layer1.0.conv1.R1`, `bn1.num_batches_tracked` as int64, ...), so a checkpoint converted from
//!   PyTorch (tools/convert_official.py) maps one to one;
//! - SGD momentum buffers under `momentum.<param name>`;
//! - metadata (all strings): "format" = "rbnn-checkpoint", "format_version", "model", "dataset",
//!   "epoch" (epochs completed), "config" (the training config as JSON), "best_top1",
//!   "rng_state" (see [`CheckpointInfo`]).
//!
//! Files are replaced atomically ([`write_atomic`]): a run killed at any moment leaves either the
//! previous checkpoint or the new one, never a torn file. Loading refuses tensors holding NaN or
//! infinity (binarisation would hide them) and packed models (`rbnn export`'s output), naming
//! the file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::train::config::Config;

/// Metadata "format" of the checkpoints this crate writes.
pub const FORMAT: &str = "rbnn-checkpoint";
/// The newest checkpoint format version this build reads (and the one it writes).
pub const FORMAT_VERSION: u32 = 1;
/// Prefix of the SGD momentum buffers: `momentum.<param name>`.
pub const MOMENTUM_PREFIX: &str = "momentum.";
/// Metadata "format" of packed models (infer::model::FORMAT, which depends on this module and not
/// the other way round), recognised so that one given where a checkpoint belongs gets told so.
pub const PACKED_FORMAT: &str = "rbnn-packed";

/// Metadata keys.
pub mod keys {
    pub const FORMAT: &str = "format";
    pub const FORMAT_VERSION: &str = "format_version";
    pub const MODEL: &str = "model";
    pub const DATASET: &str = "dataset";
    pub const EPOCH: &str = "epoch";
    pub const CONFIG: &str = "config";
    pub const BEST_TOP1: &str = "best_top1";
    pub const RNG_STATE: &str = "rng_state";
}

/// String metadata of a safetensors file (sorted by key, so files are byte-for-byte repeatable).
pub type Metadata = BTreeMap<String, String>;

/// The element data of a stored tensor. Integer tensors (PyTorch's `num_batches_tracked`) stay
/// integers so a round trip through rbnn keeps the file loadable by PyTorch.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A tensor on the host, as stored in a checkpoint. A shape of `[]` is a scalar (one element).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl HostTensor {
    pub fn f32(shape: &[usize], data: Vec<f32>) -> HostTensor {
        HostTensor {
            shape: shape.to_vec(),
            data: TensorData::F32(data),
        }
    }

    pub fn i64(shape: &[usize], data: Vec<i64>) -> HostTensor {
        HostTensor {
            shape: shape.to_vec(),
            data: TensorData::I64(data),
        }
    }

    /// Number of elements the shape calls for (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of elements actually held.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            TensorData::F32(_) => "f32",
            TensorData::I64(_) => "i64",
        }
    }

    /// The values as f32 (integers converted; exact below 2^24 in magnitude).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    fn dtype(&self) -> Dtype {
        match self.data {
            TensorData::F32(_) => Dtype::F32,
            TensorData::I64(_) => Dtype::I64,
        }
    }

    /// The elements as little-endian bytes (safetensors' byte order); on little-endian hosts the
    /// memory already is the file, so nothing is copied.
    fn le_bytes(&self) -> Cow<'_, [u8]> {
        match &self.data {
            TensorData::F32(v) if cfg!(target_endian = "little") => {
                Cow::Borrowed(bytemuck::cast_slice(v))
            }
            TensorData::I64(v) if cfg!(target_endian = "little") => {
                Cow::Borrowed(bytemuck::cast_slice(v))
            }
            TensorData::F32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::I64(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        }
    }

    fn byte_len(&self) -> usize {
        self.len()
            * match self.data {
                TensorData::F32(_) => 4,
                TensorData::I64(_) => 8,
            }
    }
}

/// An ordered map of tensor name -> tensor (sorted by name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    tensors: BTreeMap<String, HostTensor>,
}

impl StateDict {
    pub fn new() -> StateDict {
        StateDict::default()
    }

    /// Inserts (or replaces, returning the old one) a tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) -> Option<HostTensor> {
        self.tensors.insert(name.into(), tensor)
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    pub fn remove(&mut self, name: &str) -> Option<HostTensor> {
        self.tensors.remove(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A tensor's values as f32 (int64 buffers converted).
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.require(name)?.to_f32())
    }

    /// A tensor's values as f32, after checking its shape.
    pub fn f32_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.require(name)?;
        if t.shape != shape {
            bail!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape
            );
        }
        Ok(t.to_f32())
    }

    /// A tensor's values as i64; float tensors are refused (a float is no count).
    pub fn i64(&self, name: &str) -> Result<Vec<i64>> {
        match &self.require(name)?.data {
            TensorData::I64(v) => Ok(v.clone()),
            TensorData::F32(_) => bail!("tensor `{name}` is f32, expected an integer tensor"),
        }
    }

    /// Removes every tensor whose name starts with `prefix` and returns them with the prefix
    /// stripped: `state.split_prefix(MOMENTUM_PREFIX)` separates the momentum buffers from the
    /// model so each can be checked against its own expected list.
    pub fn split_prefix(&mut self, prefix: &str) -> StateDict {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut taken = StateDict::new();
        for name in names {
            if let Some(t) = self.tensors.remove(&name) {
                taken.insert(&name[prefix.len()..], t);
            }
        }
        taken
    }

    /// Adds every tensor of `other` under `prefix` + its name (the inverse of `split_prefix`).
    pub fn extend_prefixed(&mut self, prefix: &str, other: StateDict) {
        for (name, t) in other.tensors {
            self.tensors.insert(format!("{prefix}{name}"), t);
        }
    }

    /// (name, shape) of every tensor, in name order.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.iter()
            .map(|(k, t)| (k.to_string(), t.shape.clone()))
            .collect()
    }

    fn require(&self, name: &str) -> Result<&HostTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow!("tensor `{name}` is missing"))
    }
}

/// A checkpoint read back: where it came from, its tensors and its metadata.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub state: StateDict,
    pub metadata: Metadata,
}

impl Checkpoint {
    /// A tensor's values as f32; the error names the file.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        self.state
            .f32(name)
            .with_context(|| format!("checkpoint {}", self.path.display()))
    }

    /// The training state in the metadata (fails on a checkpoint that only holds weights, such
    /// as a converted official one).
    pub fn info(&self) -> Result<CheckpointInfo> {
        CheckpointInfo::from_metadata(&self.metadata, &self.path)
    }
}

/// The training state stored in a checkpoint's metadata, enough to resume a run.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    pub model: String,
    pub dataset: String,
    /// Epochs completed: a resumed run continues with this (0-based) epoch.
    pub epoch: usize,
    pub config: Config,
    /// Best test top-1 (percent) seen so far.
    pub best_top1: f64,
    /// `rbnn::rng::Rng::state` after the last completed epoch.
    pub rng_state: u64,
}

impl CheckpointInfo {
    /// The metadata map, including "format" and "format_version".
    pub fn to_metadata(&self) -> Metadata {
        let mut m = Metadata::new();
        m.insert(keys::FORMAT.into(), FORMAT.into());
        m.insert(keys::FORMAT_VERSION.into(), FORMAT_VERSION.to_string());
        m.insert(keys::MODEL.into(), self.model.clone());
        m.insert(keys::DATASET.into(), self.dataset.clone());
        m.insert(keys::EPOCH.into(), self.epoch.to_string());
        m.insert(keys::CONFIG.into(), self.config.to_json());
        // `{:?}` prints the shortest string that parses back to the same f64.
        m.insert(keys::BEST_TOP1.into(), format!("{:?}", self.best_top1));
        m.insert(keys::RNG_STATE.into(), self.rng_state.to_string());
        m
    }

    /// Reads the training state back; errors name the file and the key.
    pub fn from_metadata(meta: &Metadata, file: &Path) -> Result<CheckpointInfo> {
        let f = file.display();
        let get = |key: &str| {
            meta.get(key).map(String::as_str).ok_or_else(|| {
                anyhow!(
                    "{f}: metadata has no \"{key}\": not a training checkpoint written by rbnn \
                     (a converted or weights-only file can be evaluated but not resumed)"
                )
            })
        };
        let parse_err = |key: &str, v: &str| anyhow!("{f}: metadata \"{key}\" = {v:?} is invalid");
        let epoch = get(keys::EPOCH)?;
        let best = get(keys::BEST_TOP1)?;
        let rng = get(keys::RNG_STATE)?;
        Ok(CheckpointInfo {
            model: get(keys::MODEL)?.to_string(),
            dataset: get(keys::DATASET)?.to_string(),
            epoch: epoch.parse().map_err(|_| parse_err(keys::EPOCH, epoch))?,
            config: Config::from_json(get(keys::CONFIG)?, &format!("{f}: metadata \"config\""))?,
            best_top1: best.parse().map_err(|_| parse_err(keys::BEST_TOP1, best))?,
            rng_state: rng.parse().map_err(|_| parse_err(keys::RNG_STATE, rng))?,
        })
    }
}

/// Writes `state` and `metadata` to `path` atomically (see [`write_atomic`]). "format" and
/// "format_version" are always set to this build's.
pub fn save_atomic(path: &Path, state: &StateDict, metadata: &Metadata) -> Result<()> {
    let bytes = serialize(state, metadata)
        .with_context(|| format!("cannot write checkpoint {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// The safetensors bytes of a state dict ("format" and "format_version" set to this build's).
/// Written here rather than by `safetensors::serialize`, whose metadata is a HashMap in random
/// order: the same state and metadata always give the same bytes.
pub fn serialize(state: &StateDict, metadata: &Metadata) -> Result<Vec<u8>> {
    for (name, t) in state.iter() {
        if t.len() != t.numel() {
            bail!(
                "tensor `{name}` has shape {:?} ({} elements) but holds {} values",
                t.shape,
                t.numel(),
                t.len()
            );
        }
    }
    let mut meta = metadata.clone();
    meta.insert(keys::FORMAT.into(), FORMAT.into());
    meta.insert(keys::FORMAT_VERSION.into(), FORMAT_VERSION.to_string());

    // 8-byte elements first, so every tensor starts aligned to its element size (the header is
    // padded to a multiple of 8).
    let mut order: Vec<(&str, &HostTensor)> = state.iter().collect();
    order.sort_by_key(|(name, t)| (t.dtype() != Dtype::I64, *name));

    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(&meta)?);
    let mut offset = 0usize;
    for (name, t) in &order {
        let end = offset + t.byte_len();
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": t.dtype(),
                "shape": t.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    for (_, t) in &order {
        out.extend(t.le_bytes().as_ref());
    }
    Ok(out)
}

/// Distinguishes temp files of concurrent saves within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` so that a crash or kill at any moment leaves either the old file
/// or the new one: the bytes go to a temporary file in the same directory (same filesystem, so
/// the rename is atomic), which is fsynced, then renamed over the target; the directory is
/// fsynced so the rename itself survives a power cut. On failure the temporary file is removed
/// and the target is untouched. On success, temporary files that a killed earlier save of the
/// same target left behind are removed too.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("cannot write {}: not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = temp_prefix(&file_name);
    let tmp = dir.join(format!(
        "{prefix}{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "cannot write {} (temporary file {})",
                path.display(),
                tmp.display()
            )
        });
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot replace {} with {}", path.display(), tmp.display()));
    }
    // Some filesystems refuse fsync on a directory; the data is in place either way, so this is
    // best effort.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    remove_stale_temps(&dir, &prefix);
    Ok(())
}

fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp-")
}

fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Reads a checkpoint (any safetensors state dict: rbnn's own, a converted official one, the
/// golden files). Errors name the file: missing, not safetensors, truncated, a packed model, a
/// dtype other than F32/I64/I32 (I32 is widened to i64), written by a newer rbnn
/// (format_version too high), or tensors holding NaN or infinity (naming them).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let (state, metadata) = read_safetensors(path)?;
    check_format_version(&metadata, path)?;
    check_finite(&state, path)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        state,
        metadata,
    })
}

/// Refuses checkpoints of a newer format than this build understands.
pub fn check_format_version(metadata: &Metadata, file: &Path) -> Result<()> {
    // Other writers use "format" for their own purposes (Hugging Face writes "pt"); only ours
    // carry a version to check.
    if metadata.get(keys::FORMAT).map(String::as_str) != Some(FORMAT) {
        return Ok(());
    }
    let f = file.display();
    let Some(v) = metadata.get(keys::FORMAT_VERSION) else {
        bail!("{f}: rbnn checkpoint without a \"format_version\" in its metadata");
    };
    let version: u32 = v
        .parse()
        .map_err(|_| anyhow!("{f}: metadata \"format_version\" = {v:?} is not a number"))?;
    if version > FORMAT_VERSION {
        bail!(
            "{f}: checkpoint format version {version} is newer than this build reads \
             (up to {FORMAT_VERSION}); use a newer rbnn"
        );
    }
    Ok(())
}

/// Tensors holding NaN or infinite values: (name, how many such values, how many values).
pub fn nonfinite_tensors(state: &StateDict) -> Vec<(String, usize, usize)> {
    state
        .iter()
        .filter_map(|(name, t)| match &t.data {
            TensorData::F32(v) => {
                let bad = v.iter().filter(|x| !x.is_finite()).count();
                (bad > 0).then(|| (name.to_string(), bad, v.len()))
            }
            TensorData::I64(_) => None,
        })
        .collect()
}

/// "conv1.weight (432 of 432 values), bn1.bias (1 of 16 values)".
pub fn describe_nonfinite(found: &[(String, usize, usize)]) -> String {
    found
        .iter()
        .map(|(name, bad, all)| format!("{name} ({bad} of {all} values)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails when a tensor of `state` holds NaN or infinity, naming every such tensor and `file`.
pub fn check_finite(state: &StateDict, file: &Path) -> Result<()> {
    let found = nonfinite_tensors(state);
    if found.is_empty() {
        return Ok(());
    }
    bail!(
        "{}: NaN or infinite values in {} tensor{}: {}. A model with them computes nothing \
         meaningful (binarisation hides them); use an earlier checkpoint",
        file.display(),
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        describe_nonfinite(&found)
    )
}

/// The error for a packed model given where a training checkpoint (or weights) belongs.
fn packed_model_error(file: &Path, metadata: &Metadata) -> anyhow::Error {
    let f = file.display();
    let source = match metadata.get("source") {
        Some(s) if !s.is_empty() => format!(" ({s})"),
        _ => String::new(),
    };
    anyhow!(
        "{f} is a packed 1-bit model (written by `rbnn export`), not a training checkpoint: \
         evaluate it with `rbnn eval --checkpoint {f}`, classify pictures with `rbnn predict \
         --model {f}`; training (--resume), export and `rbnn step` need the training checkpoint \
         it was exported from{source}"
    )
}

/// The metadata of a safetensors file, reading only its header (cheap for any file size).
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let f = path.display();
    let mut file = fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{f}: no such file"),
        _ => anyhow!("cannot read {f}: {e}"),
    })?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| anyhow!("{f}: not a safetensors file (shorter than 8 bytes)"))?;
    let len = u64::from_le_bytes(len);
    // safetensors' own limit on the header size.
    if len > 100_000_000 {
        bail!("{f}: not a safetensors file (it declares a header of {len} bytes)");
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|_| anyhow!("{f}: truncated: the file ends inside its {len}-byte header"))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow!("{f}: not a safetensors file (header: {e})"))?;
    let Some(meta) = header.get("__metadata__") else {
        return Ok(Metadata::new());
    };
    serde_json::from_value(meta.clone())
        .map_err(|e| anyhow!("{f}: metadata is not a map of strings ({e})"))
}

/// Whether `path` is a packed model (by its metadata "format"), reading only its header.
pub fn is_packed_model(path: &Path) -> Result<bool> {
    Ok(read_metadata(path)?.get(keys::FORMAT).map(String::as_str) == Some(PACKED_FORMAT))
}

/// Reads any safetensors file into a state dict and its metadata (no format checks, except that
/// a packed model is refused with a message saying what it is and what to use).
pub fn read_safetensors(path: &Path) -> Result<(StateDict, Metadata)> {
    let f = path.display();
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{f}: no such file"),
        _ => anyhow!("cannot read {f}: {e}"),
    })?;
    let (header_len, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{f}: {}", describe_parse_error(&e, &bytes)))?;
    let metadata: Metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if metadata.get(keys::FORMAT).map(String::as_str) == Some(PACKED_FORMAT) {
        return Err(packed_model_error(path, &metadata));
    }
    // read_metadata has checked that the offsets tile the data section exactly.
    let data_section = &bytes[8 + header_len..];
    let mut state = StateDict::new();
    for (name, info) in header.tensors() {
        let raw = &data_section[info.data_offsets.0..info.data_offsets.1];
        let data = match info.dtype {
            Dtype::F32 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::I64 => TensorData::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                    .collect(),
            ),
            Dtype::I32 => TensorData::I64(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            other => bail!(
                "{f}: tensor `{name}` has dtype {other:?}; only F32, I64 and I32 are supported"
            ),
        };
        state.insert(
            name,
            HostTensor {
                shape: info.shape.clone(),
                data,
            },
        );
    }
    Ok((state, metadata))
}

fn describe_parse_error(e: &SafeTensorError, bytes: &[u8]) -> String {
    let len = bytes.len();
    match e {
        SafeTensorError::HeaderTooSmall => format!("not a safetensors file (only {len} bytes)"),
        SafeTensorError::HeaderTooLarge
        | SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderDeserialization(_) => {
            format!("not a safetensors file ({e})")
        }
        SafeTensorError::InvalidHeaderLength => format!(
            "truncated: the header alone needs {} bytes, the file has {len}",
            header_len(bytes).map_or(0, |n| n.saturating_add(8))
        ),
        SafeTensorError::MetadataIncompleteBuffer => match declared_size(bytes) {
            Some(want) if want > len => {
                format!("truncated: the header declares {want} bytes, the file has {len}")
            }
            Some(want) => format!(
                "corrupt: the header declares {want} bytes, the file has {len} (data past the \
                 tensors or gaps between them)"
            ),
            None => format!("truncated or corrupt safetensors file ({e})"),
        },
        _ => format!("invalid safetensors file: {e}"),
    }
}

fn header_len(bytes: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    usize::try_from(n).ok()
}

/// The file size a parsable header implies: 8 + header + the end of the last tensor.
fn declared_size(bytes: &[u8]) -> Option<usize> {
    let n = header_len(bytes)?;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data_end = header
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    (8 + n).checked_add(usize::try_from(data_end).ok()?)
}

/// Checks a state dict against the (name, shape) list a model expects and reports every problem
/// at once: missing tensors, tensors of the wrong shape, and tensors the model does not have.
pub fn check_against<N: AsRef<str>, S: AsRef<[usize]>>(
    state: &StateDict,
    expected: &[(N, S)],
    file: &Path,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (name, shape) in expected {
        let (name, shape) = (name.as_ref(), shape.as_ref());
        match state.get(name) {
            None => missing.push(name.to_string()),
            Some(t) if t.shape != shape => {
                misshaped.push(format!("{name}: expected {shape:?}, found {:?}", t.shape))
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_ref()).collect();
    let unexpected: Vec<&str> = state.names().filter(|n| !known.contains(n)).collect();
    if missing.is_empty() && misshaped.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{} does not match the model: {} missing, {} of the wrong shape, {} unexpected",
        file.display(),
        missing.len(),
        misshaped.len(),
        unexpected.len()
    );
    for m in &missing {
        msg.push_str(&format!("\n  missing: {m}"));
    }
    for m in &misshaped {
        msg.push_str(&format!("\n  wrong shape: {m}"));
    }
    for u in &unexpected {
        msg.push_str(&format!("\n  unexpected: {u}"));
    }
    Err(anyhow!(msg))
}

/// Refuses a checkpoint whose metadata names another model than `model` (files without a
/// "model" entry, such as the golden tensors, are left to `check_against`).
pub fn check_model(metadata: &Metadata, model: &str, file: &Path) -> Result<()> {
    match metadata.get(keys::MODEL) {
        Some(m) if m != model => bail!(
            "{} is a checkpoint of model `{m}`, not `{model}`: pass --model {m} to use it, or pick \
             a checkpoint of {model}",
            file.display()
        ),
        _ => Ok(()),
    }
}

/// One batch stored as safetensors: "input" [N,C,H,W] f32 and "target" [N] int64 or int32.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub input: Vec<f32>,
    /// [N, C, H, W]
    pub shape: [usize; 4],
    pub target: Vec<u32>,
}

/// Reads a batch file, checking the tensors' presence, dtypes and shapes, and that every target
/// is a class index below `num_classes`.
pub fn read_batch(path: &Path, num_classes: usize) -> Result<Batch> {
    let f = path.display();
    let (state, _) = read_safetensors(path)?;
    let input = state
        .get("input")
        .ok_or_else(|| anyhow!("{f}: no tensor \"input\" (expected [N,C,H,W] f32)"))?;
    let target = state
        .get("target")
        .ok_or_else(|| anyhow!("{f}: no tensor \"target\" (expected [N] int64 or int32)"))?;
    let shape: [usize; 4] = input.shape.as_slice().try_into().map_err(|_| {
        anyhow!(
            "{f}: \"input\" has shape {:?}, expected 4 dimensions [N,C,H,W]",
            input.shape
        )
    })?;
    let TensorData::F32(input_data) = &input.data else {
        bail!("{f}: \"input\" is {}, expected f32", input.dtype_name());
    };
    if let Some(i) = input_data.iter().position(|x| !x.is_finite()) {
        let bad = input_data.iter().filter(|x| !x.is_finite()).count();
        bail!(
            "{f}: \"input\" holds {bad} NaN or infinite values (the first at flat index {i}, \
             {}); a batch must be finite",
            input_data[i]
        );
    }
    let TensorData::I64(target_data) = &target.data else {
        bail!(
            "{f}: \"target\" is {}, expected int64 or int32",
            target.dtype_name()
        );
    };
    if target.shape != [shape[0]] {
        bail!(
            "{f}: \"target\" has shape {:?}, expected [{}] (one class per input)",
            target.shape,
            shape[0]
        );
    }
    let target = target_data
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if c < 0 || c as u64 >= num_classes as u64 {
                bail!("{f}: target[{i}] = {c} is not a class index in 0..{num_classes}");
            }
            Ok(c as u32)
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(Batch {
        input: input_data.clone(),
        shape,
        target,
    })
}
