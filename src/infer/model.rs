//! The packed model file: a trained RBNN in deployable 1-bit form, stored as safetensors.
//!
//! Tensors, by the official module names (docs/numerics.md section 7) of the layers the model's
//! forward uses (its description, model::arch; modules it never uses are left out):
//! - every binary conv `{name}` [Co, Ci, k, k]:
//!   `{name}.sign` u32 [Co, k*k, Cw] (Cw = ceil(Ci/32)): bit j of word (o, tap, c) is set where
//!   sign(w3[o, 32c+j, tap]) = -1, w3 being the rotated, gated weight exactly as training computes
//!   it; bits past Ci are 0.
//!   `{name}.nonzero` u32 [Co, k*k, Cw], present only when some w3 is exactly 0 (sign(0) = 0):
//!   bit set where w3 != 0. Without it every weight of the first Ci channels is +1 or -1.
//!   `{name}.alpha` f32 [Co].
//! - the float stem conv `{name}.weight` f32 [Co, Ci, k, k] and the classifier `{name}.weight`
//!   f32 [classes, features], `{name}.bias` f32 [classes], kept as trained;
//! - every BatchNorm `{name}` as trained: `{name}.weight` (gamma), `{name}.bias` (beta),
//!   `{name}.running_mean`, `{name}.running_var`, f32 [C]. They are not folded into one scale
//!   and shift: the engine evaluates them as the float evaluation path does, operation for
//!   operation, and so reproduces its activations bit for bit. A folded BatchNorm rounds
//!   differently, and in a 1-bit network a last-bit difference is not small: an activation that
//!   ends up on the other side of its sample's mean flips its sign in the next layer, and the
//!   flip travels on (one test image in 200 of a trained resnet20 changed its logits by 40%).
//!   The fold would save 8 bytes per channel.
//!
//! Metadata (strings): "format" = "rbnn-packed", "format_version", "model", "input_shape" (JSON
//! [C, H, W]), "content_size" (the side of the square a picture fills inside the input, the rest
//! being black padding: 28 for the 28x28 MNIST family in 32x32 inputs), "mean" and "std" (JSON,
//! per channel: input = (pixel/255 - mean) / std), "classes" (JSON list of names), "dataset",
//! "source" (the checkpoint it came from) and "layout" (this description in one line).

use crate::model::arch::Layer;
use crate::model::{ModelKind, ModelSpec};
use crate::rbnn::binconv::words_per_tap;
use crate::train::checkpoint::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata "format" of packed models.
pub const FORMAT: &str = "rbnn-packed";
/// The newest packed format version this build reads (and the one it writes).
pub const FORMAT_VERSION: u32 = 1;
/// "format" of training checkpoints (train::checkpoint), named in the error when one is given
/// where a packed model is expected.
const CHECKPOINT_FORMAT: &str = "rbnn-checkpoint";

/// Metadata keys.
pub mod keys {
    pub const FORMAT: &str = "format";
    pub const FORMAT_VERSION: &str = "format_version";
    pub const MODEL: &str = "model";
    pub const INPUT_SHAPE: &str = "input_shape";
    pub const CONTENT_SIZE: &str = "content_size";
    pub const MEAN: &str = "mean";
    pub const STD: &str = "std";
    pub const CLASSES: &str = "classes";
    pub const DATASET: &str = "dataset";
    pub const SOURCE: &str = "source";
    pub const LAYOUT: &str = "layout";
}

const LAYOUT: &str = "binary conv X: X.sign u32 [Co, k*k, ceil(Ci/32)], bit j of word (o, tap, c) \
set where sign(w3[o, 32c+j, tap]) = -1; X.nonzero (same shape, only when some w3 == 0) bit set \
where w3 != 0; X.alpha f32 [Co]; BatchNorm B: B.weight, B.bias, B.running_mean, B.running_var \
f32 [C] as trained (y = (x - running_mean) / sqrt(running_var + 1e-5) * weight + bias); float stem \
and classifier weights as trained";

/// What a packed model is and what its input must look like.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMeta {
    pub kind: ModelKind,
    /// [C, H, W] of one input image.
    pub input: [usize; 3],
    /// Side of the square a picture fills, centred in the H x W input (black around it).
    pub content: usize,
    /// Per channel: input = (pixel/255 - mean) / std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub classes: Vec<String>,
    pub dataset: String,
    pub source: String,
}

impl ModelMeta {
    /// The model's layer list and official tensor names.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec::new(self.kind, self.classes.len(), self.input[0])
    }

    /// Checks that the fields agree with each other and with the model's architecture.
    pub fn check(&self) -> Result<()> {
        let [c, h, w] = self.input;
        if c == 0 || h == 0 || w == 0 {
            bail!("input shape {:?} has a zero dimension", self.input);
        }
        if self.mean.len() != c || self.std.len() != c {
            bail!(
                "{} means and {} stds for {c} input channels",
                self.mean.len(),
                self.std.len()
            );
        }
        if self.std.iter().any(|&s| !(s > 0.0 && s.is_finite()))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            bail!(
                "normalisation mean {:?} / std {:?} must be finite with std > 0",
                self.mean,
                self.std
            );
        }
        if self.classes.is_empty() {
            bail!("no class names");
        }
        if self.content == 0 || self.content > h.min(w) {
            bail!(
                "content size {} must be in 1..={} (the input is {h}x{w})",
                self.content,
                h.min(w)
            );
        }
        self.spec().arch.trace(self.input)?;
        Ok(())
    }

    /// The metadata map (format and version included).
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(keys::FORMAT.into(), FORMAT.into());
        m.insert(keys::FORMAT_VERSION.into(), FORMAT_VERSION.to_string());
        m.insert(keys::MODEL.into(), self.kind.name().into());
        m.insert(keys::INPUT_SHAPE.into(), json(&self.input.to_vec()));
        m.insert(keys::CONTENT_SIZE.into(), self.content.to_string());
        m.insert(keys::MEAN.into(), json(&self.mean));
        m.insert(keys::STD.into(), json(&self.std));
        m.insert(keys::CLASSES.into(), json(&self.classes));
        m.insert(keys::DATASET.into(), self.dataset.clone());
        m.insert(keys::SOURCE.into(), self.source.clone());
        m.insert(keys::LAYOUT.into(), LAYOUT.into());
        m
    }

    /// Reads the metadata of `file`: refuses other formats and newer versions, names the key of
    /// every missing or invalid entry.
    pub fn from_metadata(meta: &BTreeMap<String, String>, file: &str) -> Result<ModelMeta> {
        match meta.get(keys::FORMAT).map(String::as_str) {
            Some(FORMAT) => {}
            Some(CHECKPOINT_FORMAT) => bail!(
                "{file} is a training checkpoint, not a packed model; make one with \
                 `rbnn export --checkpoint {file} --out model.safetensors`"
            ),
            other => bail!(
                "{file} is not an rbnn packed model (metadata \"format\" is {:?}, expected \
                 {FORMAT:?}); make one with `rbnn export`",
                other.unwrap_or("missing")
            ),
        }
        let get = |key: &str| {
            meta.get(key)
                .map(String::as_str)
                .ok_or_else(|| anyhow!("{file}: packed model metadata has no \"{key}\""))
        };
        let invalid = |key: &str, v: &str| anyhow!("{file}: metadata \"{key}\" = {v:?} is invalid");
        let version = get(keys::FORMAT_VERSION)?;
        let version: u32 = version
            .parse()
            .map_err(|_| invalid(keys::FORMAT_VERSION, version))?;
        if version > FORMAT_VERSION {
            bail!(
                "{file}: packed model format version {version} is newer than this build reads \
                 (up to {FORMAT_VERSION}); use a newer rbnn"
            );
        }
        fn parse_json<T: serde::de::DeserializeOwned>(
            v: &str,
            err: impl Fn() -> anyhow::Error,
        ) -> Result<T> {
            serde_json::from_str(v).map_err(|_| err())
        }
        let input_text = get(keys::INPUT_SHAPE)?;
        let input: Vec<usize> = parse_json(input_text, || invalid(keys::INPUT_SHAPE, input_text))?;
        let input: [usize; 3] = input
            .try_into()
            .map_err(|_| invalid(keys::INPUT_SHAPE, input_text))?;
        let content = get(keys::CONTENT_SIZE)?;
        let mean = get(keys::MEAN)?;
        let std = get(keys::STD)?;
        let classes = get(keys::CLASSES)?;
        let m = ModelMeta {
            kind: ModelKind::parse(get(keys::MODEL)?).with_context(|| file.to_string())?,
            input,
            content: content
                .parse()
                .map_err(|_| invalid(keys::CONTENT_SIZE, content))?,
            mean: parse_json(mean, || invalid(keys::MEAN, mean))?,
            std: parse_json(std, || invalid(keys::STD, std))?,
            classes: parse_json(classes, || invalid(keys::CLASSES, classes))?,
            dataset: meta.get(keys::DATASET).cloned().unwrap_or_default(),
            source: meta.get(keys::SOURCE).cloned().unwrap_or_default(),
        };
        m.check().with_context(|| format!("{file}: metadata"))?;
        Ok(m)
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain values serialise")
}

/// Element type of a packed tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

impl DType {
    fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum PackedData {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PackedTensor {
    pub shape: Vec<usize>,
    pub data: PackedData,
}

impl PackedTensor {
    pub fn f32(shape: &[usize], data: Vec<f32>) -> PackedTensor {
        PackedTensor {
            shape: shape.to_vec(),
            data: PackedData::F32(data),
        }
    }

    pub fn u32(shape: &[usize], data: Vec<u32>) -> PackedTensor {
        PackedTensor {
            shape: shape.to_vec(),
            data: PackedData::U32(data),
        }
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            PackedData::F32(_) => DType::F32,
            PackedData::U32(_) => DType::U32,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            PackedData::F32(v) => v.len(),
            PackedData::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the data (every element is 4 bytes).
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    fn le_bytes(&self) -> Vec<u8> {
        match &self.data {
            PackedData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            PackedData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// A tensor the model must (or, for `optional`, may) hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub optional: bool,
}

/// A BatchNorm's tensors, in the order the engine's kernels take them per channel.
pub const BATCHNORM_FIELDS: [&str; 4] = ["running_mean", "running_var", "weight", "bias"];

/// The binary convs of a model: (name, ci, co, k), in forward order.
pub fn binary_convs(spec: &ModelSpec) -> Vec<(String, usize, usize, usize)> {
    spec.arch
        .binary_convs()
        .into_iter()
        .map(|c| (c.name, c.ci, c.co, c.k))
        .collect()
}

/// Every tensor of the packed form of `meta`'s model, in forward order.
pub fn expected_tensors(meta: &ModelMeta) -> Vec<Expected> {
    let e = |name: String, dtype, shape: Vec<usize>, optional| Expected {
        name,
        dtype,
        shape,
        optional,
    };
    let mut out = Vec::new();
    for layer in meta.spec().arch.layers() {
        match layer {
            Layer::Conv(c) if c.is_binary() => {
                let bits = vec![c.co, c.k * c.k, words_per_tap(c.ci)];
                let name = &c.name;
                out.push(e(format!("{name}.sign"), DType::U32, bits.clone(), false));
                out.push(e(format!("{name}.nonzero"), DType::U32, bits, true));
                out.push(e(format!("{name}.alpha"), DType::F32, vec![c.co], false));
            }
            Layer::Conv(c) => out.push(e(
                format!("{}.weight", c.name),
                DType::F32,
                vec![c.co, c.ci, c.k, c.k],
                false,
            )),
            Layer::BatchNorm(bn) => {
                for field in BATCHNORM_FIELDS {
                    let name = format!("{}.{field}", bn.name);
                    out.push(e(name, DType::F32, vec![bn.c], false));
                }
            }
            Layer::Linear(l) => {
                let shape = vec![l.fout, l.fin];
                out.push(e(format!("{}.weight", l.name), DType::F32, shape, false));
                out.push(e(
                    format!("{}.bias", l.name),
                    DType::F32,
                    vec![l.fout],
                    false,
                ));
            }
        }
    }
    out
}

/// A packed model in memory: metadata and tensors by name.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedModel {
    pub meta: ModelMeta,
    pub tensors: BTreeMap<String, PackedTensor>,
    /// Where it came from, for error messages: the file path, or "(in memory)".
    pub origin: String,
}

impl PackedModel {
    /// A model built in memory (by `export`), checked like a loaded file.
    pub fn new(meta: ModelMeta, tensors: BTreeMap<String, PackedTensor>) -> Result<PackedModel> {
        let m = PackedModel {
            meta,
            tensors,
            origin: "(in memory)".into(),
        };
        m.meta.check().context("packed model metadata")?;
        m.validate()?;
        Ok(m)
    }

    /// Reads and checks a packed model file; every error names the file.
    pub fn load(path: &Path) -> Result<PackedModel> {
        let f = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!("{f}: no such file"),
            _ => anyhow!("cannot read {f}: {e}"),
        })?;
        Self::from_bytes(&bytes, &f)
    }

    /// Parses the bytes of a packed model file; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<PackedModel> {
        let (header_len, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{origin}: {}", describe_parse_error(&e, bytes)))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let meta = ModelMeta::from_metadata(&metadata, origin)?;
        // read_metadata has checked that the offsets tile the data section exactly.
        let data = &bytes[8 + header_len..];
        let mut tensors = BTreeMap::new();
        for (name, info) in header.tensors() {
            let raw = &data[info.data_offsets.0..info.data_offsets.1];
            let words = raw.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
            let data = match info.dtype {
                Dtype::F32 => PackedData::F32(words.map(f32::from_le_bytes).collect()),
                Dtype::U32 => PackedData::U32(words.map(u32::from_le_bytes).collect()),
                other => bail!(
                    "{origin}: tensor `{name}` has dtype {other:?}; a packed model holds F32 and \
                     U32 tensors only"
                ),
            };
            tensors.insert(
                name,
                PackedTensor {
                    shape: info.shape.clone(),
                    data,
                },
            );
        }
        let m = PackedModel {
            meta,
            tensors,
            origin: origin.to_string(),
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks the tensors against the model's list and reports every problem at once: missing,
    /// wrong dtype or shape, unexpected, non-finite values.
    pub fn validate(&self) -> Result<()> {
        let expected = expected_tensors(&self.meta);
        let mut problems = Vec::new();
        for e in &expected {
            let want = format!("{} {:?}", e.dtype.name(), e.shape);
            match self.tensors.get(&e.name) {
                None if e.optional => {}
                None => problems.push(format!("missing: {} ({want})", e.name)),
                Some(t) if t.dtype() != e.dtype || t.shape != e.shape => problems.push(format!(
                    "wrong shape or type: {}: expected {want}, found {} {:?}",
                    e.name,
                    t.dtype().name(),
                    t.shape
                )),
                Some(PackedTensor {
                    data: PackedData::F32(v),
                    ..
                }) if v.iter().any(|x| !x.is_finite()) => {
                    problems.push(format!("non-finite values: {}", e.name))
                }
                Some(_) => {}
            }
        }
        for name in self.tensors.keys() {
            if !expected.iter().any(|e| &e.name == name) {
                problems.push(format!("unexpected: {name}"));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        bail!(
            "{} does not match the packed form of {} ({} classes, input {:?}):\n  {}",
            self.origin,
            self.meta.kind.name(),
            self.meta.classes.len(),
            self.meta.input,
            problems.join("\n  ")
        )
    }

    fn get(&self, name: &str) -> Result<&PackedTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow!("{}: tensor `{name}` is missing", self.origin))
    }

    /// A float tensor's values.
    pub fn f32(&self, name: &str) -> Result<&[f32]> {
        match &self.get(name)?.data {
            PackedData::F32(v) => Ok(v),
            PackedData::U32(_) => bail!("{}: tensor `{name}` is u32, expected f32", self.origin),
        }
    }

    /// A u32 tensor's values (None when absent: the optional nonzero planes).
    pub fn u32(&self, name: &str) -> Result<Option<&[u32]>> {
        match self.tensors.get(name).map(|t| &t.data) {
            None => Ok(None),
            Some(PackedData::U32(v)) => Ok(Some(v)),
            Some(PackedData::F32(_)) => {
                bail!("{}: tensor `{name}` is f32, expected u32", self.origin)
            }
        }
    }

    /// The weights of binary conv `name` (with `ci` input channels) in the GPU kernels' layout
    /// [Co, k*k, Cw, 2]: (sign, nonzero) word pairs, the nonzero plane limited to the first `ci`
    /// channels (all of them when the file has none).
    pub fn interleaved_bits(&self, name: &str, ci: usize) -> Result<Vec<u32>> {
        let sign = self
            .u32(&format!("{name}.sign"))?
            .ok_or_else(|| anyhow!("{}: tensor `{name}.sign` is missing", self.origin))?;
        let nonzero = self.u32(&format!("{name}.nonzero"))?;
        let cw = words_per_tap(ci);
        let mask = |c: usize| -> u32 {
            let valid = (ci - 32 * c).min(32);
            if valid == 32 {
                u32::MAX
            } else {
                (1u32 << valid) - 1
            }
        };
        Ok(sign
            .iter()
            .enumerate()
            .flat_map(|(i, &s)| {
                let m = mask(i % cw);
                let nz = nonzero.map_or(m, |nz| nz[i] & m);
                [s & nz, nz]
            })
            .collect())
    }

    /// The file's bytes: a safetensors header (sorted keys, so the same model always gives the
    /// same bytes) and the tensors in name order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(self.meta.to_metadata()).expect("strings serialise"),
        );
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            let end = offset + t.bytes() as usize;
            let dtype = match t.dtype() {
                DType::F32 => "F32",
                DType::U32 => "U32",
            };
            header.insert(
                name.clone(),
                serde_json::json!({
                    "dtype": dtype,
                    "shape": t.shape,
                    "data_offsets": [offset, end],
                }),
            );
            offset = end;
        }
        let mut header = serde_json::to_vec(&header).expect("JSON values serialise");
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend((header.len() as u64).to_le_bytes());
        out.extend(header);
        for t in self.tensors.values() {
            out.extend(t.le_bytes());
        }
        out
    }

    /// Writes the model atomically to `path`; returns the file size in bytes.
    pub fn save(&self, path: &Path) -> Result<u64> {
        let bytes = self.to_bytes();
        write_atomic(path, &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Bytes of the packed binary conv weights (sign and nonzero planes).
    pub fn binary_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|(n, _)| n.ends_with(".sign") || n.ends_with(".nonzero"))
            .map(|(_, t)| t.bytes())
            .sum()
    }

    /// Bytes of every float tensor (stem, classifier, alpha, BatchNorms).
    pub fn float_bytes(&self) -> u64 {
        self.tensors
            .values()
            .filter(|t| t.dtype() == DType::F32)
            .map(PackedTensor::bytes)
            .sum()
    }
}

fn describe_parse_error(e: &SafeTensorError, bytes: &[u8]) -> String {
    let len = bytes.len();
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    match e {
        SafeTensorError::HeaderTooSmall => format!("not a safetensors file (only {len} bytes)"),
        SafeTensorError::InvalidHeaderLength => format!(
            "truncated or not a safetensors file: the header declares {} bytes, the file has {len}",
            header_len.unwrap_or(0).saturating_add(8)
        ),
        SafeTensorError::MetadataIncompleteBuffer => {
            format!("truncated: the tensors' data does not fill the file's {len} bytes as declared")
        }
        SafeTensorError::HeaderTooLarge
        | SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderDeserialization(_) => {
            format!("not a safetensors file ({e})")
        }
        _ => format!("invalid safetensors file: {e}"),
    }
}
