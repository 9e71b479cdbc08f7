//! The model specs against the official layout: resnet20_1w1a's names and shapes equal the
//! state_dict of the official code (tests/golden), and every model builds on the GPU.
mod common;

use rbnn::model::network::{Mode, Network};
use rbnn::model::{ModelKind, ModelSpec, Params};
use rbnn::rng::Rng;
use rbnn::train::checkpoint::read_safetensors;

#[test]
fn resnet20_names_and_shapes_match_the_official_state_dict() {
    let file = common::golden_file("resnet20_1w1a", "weights.safetensors");
    let (official, _) = read_safetensors(&file).unwrap();
    let spec = ModelSpec::new(ModelKind::Resnet20, 10, 3);
    let ours: Vec<(String, Vec<usize>)> = spec
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let theirs: Vec<(String, Vec<usize>)> = official
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (n.to_string(), t.shape.clone()))
        .collect();
    let mut a = ours.clone();
    a.sort();
    let mut b = theirs;
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn initialisation_follows_the_official_models() {
    let mut rng = Rng::new(1);
    let spec = ModelSpec::new(ModelKind::Resnet20, 10, 3);
    let values = spec.initialise(&mut rng);
    let get = |n: &str| &values.iter().find(|(name, _)| name == n).unwrap().1;
    assert!(get("layer1.0.bn1.weight").iter().all(|&g| g == 1e-8));
    assert!(get("bn2.weight").iter().all(|&g| g == 1.0));
    assert!(get("layer1.0.conv1.rotate")
        .iter()
        .all(|&t| (t - std::f32::consts::FRAC_PI_2).abs() < 1e-7));
    // alpha = mean |W| of PyTorch's default U(-1/sqrt(144), 1/sqrt(144)) init: about 1/24.
    let alpha = get("layer1.0.conv1.alpha");
    assert!(
        alpha.iter().all(|&a| (a - 1.0 / 24.0).abs() < 0.01),
        "{alpha:?}"
    );
    // R1 orthogonal.
    let r1 = get("layer1.0.conv1.R1");
    for i in 0..12 {
        for j in 0..12 {
            let d: f32 = (0..12).map(|k| r1[i * 12 + k] * r1[j * 12 + k]).sum();
            assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
        }
    }
    // Parameter counts of the official models (trainable, as their `test` helper counts them,
    // plus alpha and theta per channel of each binary conv).
    let count = |k| -> usize {
        ModelSpec::new(k, 10, 3)
            .tensors
            .iter()
            .filter(|t| t.trainable)
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    };
    let r20 = count(ModelKind::Resnet20);
    assert!((270_000..280_000).contains(&r20), "resnet20 has {r20}");
    let r18 = count(ModelKind::Resnet18);
    assert!(
        (11_100_000..11_300_000).contains(&r18),
        "resnet18 has {r18}"
    );
}

#[test]
fn every_model_builds_for_training_and_evaluation() {
    let gpu = gpu_or_skip!();
    for kind in ModelKind::ALL {
        for (c, classes) in [(3, 10), (1, 100)] {
            let spec = ModelSpec::new(kind, classes, c);
            let params = Params::new(gpu, spec).unwrap();
            for mode in [Mode::Train, Mode::Eval] {
                let side = kind.native_input_side();
                let net = Network::new(gpu, &params, 2, mode, false, [c, side, side])
                    .unwrap_or_else(|e| panic!("{} {mode:?}: {e:#}", kind.name()));
                assert_eq!(net.logits.shape, vec![2, classes]);
            }
        }
    }
}
