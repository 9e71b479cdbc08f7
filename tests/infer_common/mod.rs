//! Helpers of tests/infer.rs and tests/predict.rs: models with random weights (not just their
//! initial values, so the BatchNorm folding and the rotation gate matter) and their metadata.
#![allow(dead_code)]

use rbnn::gpu::Gpu;
use rbnn::infer::export::export_params;
use rbnn::infer::{ModelMeta, PackedModel};
use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::rng::Rng;
use std::path::PathBuf;

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbnn-infer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Initialised weights, then theta ~ U(0.3, 2.8) (the gate |sin theta| well inside (0, 1)) and
/// random BatchNorm parameters and running statistics (gamma of both signs).
pub fn random_values(spec: &ModelSpec, seed: u64) -> Vec<(String, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    let mut values = spec.initialise(&mut rng);
    let bns: Vec<String> = spec
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(".running_mean").map(str::to_string))
        .collect();
    for (name, v) in values.iter_mut() {
        let n = v.len();
        let is_bn = |suffix: &str| {
            name.strip_suffix(suffix)
                .is_some_and(|p| bns.iter().any(|b| b == p))
        };
        if name.ends_with(".rotate") {
            *v = rng.uniform_vec(n, 0.3, 2.8);
        } else if is_bn(".weight") {
            *v = rng
                .uniform_vec(n, 0.5, 1.5)
                .into_iter()
                .map(|g| if rng.below(4) == 0 { -g } else { g })
                .collect();
        } else if is_bn(".bias") {
            *v = rng.normal_vec(n, 0.3);
        } else if is_bn(".running_mean") {
            *v = rng.normal_vec(n, 0.2);
        } else if is_bn(".running_var") {
            *v = rng.uniform_vec(n, 0.05, 0.5);
        }
    }
    values
}

pub fn random_params(gpu: &Gpu, kind: ModelKind, classes: usize, c: usize, seed: u64) -> Params {
    let spec = ModelSpec::new(kind, classes, c);
    let values = random_values(&spec, seed);
    let params = Params::new(gpu, spec).unwrap();
    params.upload(gpu, &values).unwrap();
    params
}

pub fn meta(kind: ModelKind, input: [usize; 3], classes: usize) -> ModelMeta {
    ModelMeta {
        kind,
        input,
        content: input[1].min(input[2]),
        mean: vec![0.5; input[0]],
        std: vec![0.25; input[0]],
        classes: (0..classes).map(|i| format!("class {i}")).collect(),
        dataset: "test".into(),
        source: "random weights".into(),
    }
}

/// A packed resnet20_1w1a with random weights for 1-channel 32x32 input and 10 classes.
pub fn packed_resnet20(gpu: &Gpu, seed: u64) -> PackedModel {
    let params = random_params(gpu, ModelKind::Resnet20, 10, 1, seed);
    export_params(gpu, &params, meta(ModelKind::Resnet20, [1, 32, 32], 10)).unwrap()
}
