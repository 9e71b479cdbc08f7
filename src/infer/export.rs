//! `rbnn export`: a trained model (a checkpoint, or `Params` on the GPU) -> the packed model
//! (infer::model).
//!
//! sign(w3) comes from the training code itself: each binary conv is built as a
//! `BinaryConv2d` over the model's parameters and its weight-side forward (standardisation,
//! rotation R1^T X R2, the |sin theta| gate, packing) runs on the GPU, exactly the dispatches a
//! training or evaluation forward records; the packed words are read back and split into the
//! sign plane and, where some w3 is exactly 0, the nonzero plane. The BatchNorms, the stem, the
//! classifier and alpha are copied (see infer::model on why BatchNorms are not folded).

use super::model::{ModelMeta, PackedModel, PackedTensor, BATCHNORM_FIELDS};
use crate::data::{self, DatasetKind};
use crate::gpu::{Dispatch, Gpu};
use crate::model::arch::{Conv, Layer};
use crate::model::{ModelKind, ModelSpec, Params};
use crate::ops::conv::ConvShape;
use crate::rbnn::binconv::words_per_tap;
use crate::rbnn::layer::{BinaryConv2d, BinaryConvTensors};
use crate::train::checkpoint;
use crate::train::trainer::restore;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The input geometry, normalisation and class names of a dataset (data::facts), for the
/// packed model's metadata. An image folder's and ImageNet's class names are read from the
/// folder (their sub-folders).
pub fn meta_for_dataset(
    kind: ModelKind,
    dataset: &str,
    data_path: Option<&str>,
    source: &str,
) -> Result<ModelMeta> {
    let ds: DatasetKind = dataset.parse()?;
    let facts = ds.facts();
    let classes = data::class_names(ds, data_path.map(Path::new))?;
    let meta = ModelMeta {
        kind,
        input: facts.input(),
        content: facts.content,
        mean: facts.mean.to_vec(),
        std: facts.std.to_vec(),
        classes,
        dataset: ds.to_string(),
        source: source.to_string(),
    };
    meta.check()?;
    Ok(meta)
}

/// The packed form of the model in `params` (uploaded to the GPU), described by `meta`.
pub fn export_params(gpu: &Gpu, params: &Params, meta: ModelMeta) -> Result<PackedModel> {
    let layers = params
        .spec
        .arch
        .binary_convs()
        .iter()
        .map(|conv| weight_side(gpu, params, conv))
        .collect::<Result<Vec<_>>>()?;
    let dispatches: Vec<&Dispatch> = layers
        .iter()
        .flat_map(|l| l.forward_weight_dispatches())
        .collect();
    gpu.run(&dispatches)?;
    export_with_layers(gpu, params, meta, &layers.iter().collect::<Vec<_>>())
}

/// The packed form of `params`, with sign(w3) read from `layers`: binary convs built over these
/// parameters whose weight-side forward has run since the parameters last changed (those of an
/// evaluation `Network` after a forward, say), matched to the model's binary convs by the name
/// of their weight tensor. `export_params` builds and runs its own.
pub fn export_with_layers(
    gpu: &Gpu,
    params: &Params,
    meta: ModelMeta,
    layers: &[&BinaryConv2d],
) -> Result<PackedModel> {
    let spec = &params.spec;
    if spec.kind != meta.kind
        || spec.classes != meta.classes.len()
        || spec.in_channels != meta.input[0]
    {
        bail!(
            "the parameters are {} with {} classes and {} input channels, the metadata says {} \
             with {} classes and {} channels",
            spec.kind.name(),
            spec.classes,
            spec.in_channels,
            meta.kind.name(),
            meta.classes.len(),
            meta.input[0]
        );
    }
    let host: HashMap<String, Vec<f32>> = params
        .download(gpu)?
        .into_iter()
        .map(|(name, _, values)| (name, values))
        .collect();
    let value = |name: &str| -> Result<Vec<f32>> {
        host.get(name)
            .cloned()
            .ok_or_else(|| anyhow!("model has no tensor {name}"))
    };
    let mut tensors = BTreeMap::new();
    for layer in spec.arch.layers() {
        match layer {
            Layer::Conv(c) if c.is_binary() => {
                let name = &c.name;
                let weight = format!("{name}.weight");
                let layer = layers
                    .iter()
                    .find(|l| l.tensors.weight.label == weight)
                    .ok_or_else(|| anyhow!("no layer computes the weight side of {name}"))?;
                let (sign, nonzero) = sign_planes(gpu, layer, &c)?;
                tensors.insert(format!("{name}.sign"), sign);
                if let Some(nz) = nonzero {
                    tensors.insert(format!("{name}.nonzero"), nz);
                }
                let a = format!("{name}.alpha");
                tensors.insert(a.clone(), PackedTensor::f32(&[c.co], value(&a)?));
            }
            Layer::Conv(c) => {
                let w = format!("{}.weight", c.name);
                tensors.insert(
                    w.clone(),
                    PackedTensor::f32(&[c.co, c.ci, c.k, c.k], value(&w)?),
                );
            }
            Layer::BatchNorm(bn) => {
                for field in BATCHNORM_FIELDS {
                    let t = format!("{}.{field}", bn.name);
                    tensors.insert(t.clone(), PackedTensor::f32(&[bn.c], value(&t)?));
                }
            }
            Layer::Linear(l) => {
                let (w, b) = (format!("{}.weight", l.name), format!("{}.bias", l.name));
                tensors.insert(w.clone(), PackedTensor::f32(&[l.fout, l.fin], value(&w)?));
                tensors.insert(b.clone(), PackedTensor::f32(&[l.fout], value(&b)?));
            }
        }
    }
    PackedModel::new(meta, tensors)
}

/// The sign plane of a layer's packed sign(w3), and its nonzero plane when some w3 is exactly 0.
fn sign_planes(
    gpu: &Gpu,
    layer: &BinaryConv2d,
    conv: &Conv,
) -> Result<(PackedTensor, Option<PackedTensor>)> {
    let (name, ci, co, k) = (&conv.name, conv.ci, conv.co, conv.k);
    let s = &layer.shape;
    if (s.ci, s.co, s.kh, s.kw) != (ci, co, k, k) || layer.a32 {
        bail!("the layer given for {name} is not its binary {ci}->{co} {k}x{k} conv");
    }
    let wbits = layer
        .wbits
        .as_ref()
        .ok_or_else(|| anyhow!("binary conv {name} has no packed weights"))?;
    let words = gpu.read_u32(wbits)?;
    let shape = [co, k * k, words_per_tap(ci)];
    let sign: Vec<u32> = words.iter().step_by(2).copied().collect();
    let nonzero: Vec<u32> = words.iter().skip(1).step_by(2).copied().collect();
    // The nonzero word of a layer without zeros: every real channel of its 32.
    let all = |i: usize| {
        let valid = (ci - 32 * (i % shape[2])).min(32);
        if valid == 32 {
            u32::MAX
        } else {
            (1 << valid) - 1
        }
    };
    let has_zeros = nonzero.iter().enumerate().any(|(i, &nz)| nz != all(i));
    Ok((
        PackedTensor::u32(&shape, sign),
        has_zeros.then(|| PackedTensor::u32(&shape, nonzero)),
    ))
}

/// A binary conv over the model's parameters with a one-image, one-pixel input: only its
/// weight-side dispatches are run (they do not depend on the input).
fn weight_side(gpu: &Gpu, params: &Params, conv: &Conv) -> Result<BinaryConv2d> {
    let (name, ci, co, k, pad) = (&conv.name, conv.ci, conv.co, conv.k, conv.pad);
    let hw = k.saturating_sub(2 * pad).max(1);
    let s = ConvShape::square(1, ci, hw, co, k, 1, pad);
    let p = |field: &str| -> Result<_> { Ok(params.get(&format!("{name}.{field}"))?.clone()) };
    let tensors = BinaryConvTensors {
        weight: p("weight")?,
        alpha: p("alpha")?,
        rotate: p("rotate")?,
        r1: p("R1")?,
        r2: p("R2")?,
        weight_grad: None,
        alpha_grad: None,
        rotate_grad: None,
        x: gpu.try_tensor(&format!("{name}.export x"), &[1, ci, hw, hw])?,
        y: gpu.try_tensor(&format!("{name}.export y"), &[1, co, s.oh(), s.ow()])?,
        dy: None,
        dx: None,
    };
    BinaryConv2d::new(gpu, s, false, tensors).with_context(|| format!("exporting {name}"))
}

/// Overrides for checkpoints whose metadata lacks the model or dataset (converted official
/// ones), or to name the dataset's folder.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    pub model: Option<String>,
    pub dataset: Option<String>,
    pub data_path: Option<String>,
}

/// What an export produced, and how it compares with the float model.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub model: String,
    /// Bytes of the packed model file.
    pub packed_bytes: u64,
    /// Bytes of the sign (and nonzero) planes.
    pub binary_bytes: u64,
    /// Bytes of the float tensors kept (stem, classifier, alpha, BatchNorm).
    pub float_bytes: u64,
    pub binary_layers: usize,
    /// Latent weights of the binary convs.
    pub binary_weights: usize,
    /// Binary convs with an exact zero in w3 (stored with a nonzero plane).
    pub layers_with_zeros: usize,
    /// The model's tensors as f32 (parameters, running statistics, R1/R2; no optimizer state).
    pub float_model_bytes: u64,
    /// Bytes of the checkpoint file it came from.
    pub checkpoint_bytes: Option<u64>,
}

impl ExportReport {
    pub fn new(packed: &PackedModel, checkpoint_bytes: Option<u64>) -> ExportReport {
        let spec: ModelSpec = packed.meta.spec();
        let binary_convs = spec.arch.binary_convs();
        let binary_weights = binary_convs.iter().map(|c| c.ci * c.co * c.k * c.k).sum();
        ExportReport {
            model: packed.meta.kind.name().to_string(),
            packed_bytes: packed.to_bytes().len() as u64,
            binary_bytes: packed.binary_bytes(),
            float_bytes: packed.float_bytes(),
            binary_layers: binary_convs.len(),
            binary_weights,
            layers_with_zeros: packed
                .tensors
                .keys()
                .filter(|n| n.ends_with(".nonzero"))
                .count(),
            float_model_bytes: spec
                .tensors
                .iter()
                .map(|t| t.shape.iter().product::<usize>() as u64 * 4)
                .sum(),
            checkpoint_bytes,
        }
    }

    /// A few lines for the terminal: sizes and ratios.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "packed {}: {} ({:.1}x smaller than its {} of float tensors)\n",
            self.model,
            human(self.packed_bytes),
            self.float_model_bytes as f64 / self.packed_bytes as f64,
            human(self.float_model_bytes)
        );
        s += &format!(
            "  {} binary convs, {} weights: {} of sign bits ({:.1}x smaller than {} as f32)\n",
            self.binary_layers,
            thousands(self.binary_weights),
            human(self.binary_bytes),
            (self.binary_weights as f64 * 4.0) / self.binary_bytes as f64,
            human(self.binary_weights as u64 * 4)
        );
        if self.layers_with_zeros > 0 {
            s += &format!(
                "  {} of them have exact zeros in w3 and carry a nonzero plane too\n",
                self.layers_with_zeros
            );
        }
        s += &format!(
            "  float tensors kept (stem, classifier, alpha, BatchNorm): {}\n",
            human(self.float_bytes)
        );
        if let Some(c) = self.checkpoint_bytes {
            s += &format!(
                "  the training checkpoint (with optimizer state) is {}: {:.1}x the packed file\n",
                human(c),
                c as f64 / self.packed_bytes as f64
            );
        }
        s
    }
}

/// 1234567 as "1,234,567".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Bytes as B, KiB or MiB.
pub fn human(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.2} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// `rbnn export`: loads a training checkpoint, packs it and writes `out`.
pub fn export_checkpoint(
    gpu: &Gpu,
    path: &Path,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    let f = path.display();
    let ck = checkpoint::load(path)?;
    let info = ck.info().ok();
    let config = info.as_ref().map(|i| &i.config);
    if config.is_some_and(|c| c.a32) {
        bail!(
            "{f} was trained with --a32 (full-precision activations); the packed engine runs \
             1-bit activations only"
        );
    }
    let model = opts
        .model
        .clone()
        .or_else(|| config.map(|c| c.model.clone()))
        .or_else(|| ck.metadata.get(checkpoint::keys::MODEL).cloned())
        .ok_or_else(|| anyhow!("{f} does not say which model it holds; pass --model"))?;
    let kind = ModelKind::parse(&model)?;
    checkpoint::check_model(&ck.metadata, kind.name(), path)?;
    let (dataset, data_path) = match (&opts.dataset, config) {
        (Some(d), _) => (d.clone(), opts.data_path.clone()),
        (None, Some(c)) => (
            c.dataset.clone(),
            opts.data_path.clone().or(c.data_path.clone()),
        ),
        (None, None) => bail!(
            "{f} does not say which dataset it was trained on (its class names and \
             normalisation go into the packed model); pass --dataset"
        ),
    };
    let source = match &info {
        Some(i) => format!(
            "{f} (epoch {}, best test top-1 {:.2}%)",
            i.epoch, i.best_top1
        ),
        None => f.to_string(),
    };
    let meta = meta_for_dataset(kind, &dataset, data_path.as_deref(), &source)?;
    let spec = ModelSpec::new(kind, meta.classes.len(), meta.input[0]);
    let mut params = Params::new(gpu, spec)?;
    restore(gpu, &mut params, &ck.state, path).with_context(|| {
        format!(
            "{} with {} classes and {} input channel(s) (dataset {dataset})",
            kind.name(),
            meta.classes.len(),
            meta.input[0]
        )
    })?;
    let packed = export_params(gpu, &params, meta)?;
    packed.save(out)?;
    let checkpoint_bytes = std::fs::metadata(path).map(|m| m.len()).ok();
    Ok(ExportReport::new(&packed, checkpoint_bytes))
}
