//! The official ImageNet ResNets (docs/numerics.md section 7b): the state_dict names, shapes,
//! order and initialisation of the official `resnet18_1w1a` / `resnet34_1w1a` (their parameter
//! counts are checked in tests/arch.rs), the shapes through
//! them and the inputs the 7x7 average pool takes, and `rbnn step` of resnet18_1w1a_imagenet at
//! batch 2 on the software adapter. Packed-engine parity is in tests/infer.rs, training on a
//! streamed folder in tests/imagenet.rs.
mod common;

use common::err_text;
use rbnn::model::arch::Init;
use rbnn::model::{ModelKind, ModelSpec};
use rbnn::rng::Rng;
use rbnn::train::checkpoint::{read_safetensors, save_atomic, HostTensor, StateDict};
use std::process::Command;

#[test]
fn state_dicts_are_the_official_ones() {
    let spec = ModelSpec::new(ModelKind::Resnet18Imagenet, 1000, 3);
    let names: Vec<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
    let shape = |name: &str| {
        spec.find(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .shape
            .clone()
    };
    // Module definition order: stem, blocks (downsample last), bn2, fc, then the unused bn3.
    assert_eq!(
        &names[..10],
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer1.0.conv1.R1",
            "layer1.0.conv1.R2",
            "layer1.0.conv1.alpha",
            "layer1.0.conv1.rotate",
        ]
    );
    assert_eq!(
        &names[names.len() - 10..],
        [
            "bn2.weight",
            "bn2.bias",
            "bn2.running_mean",
            "bn2.running_var",
            "fc.weight",
            "fc.bias",
            "bn3.weight",
            "bn3.bias",
            "bn3.running_mean",
            "bn3.running_var",
        ]
    );
    assert_eq!(shape("conv1.weight"), [64, 3, 7, 7]);
    assert_eq!(shape("layer2.0.conv1.weight"), [128, 64, 3, 3]);
    assert_eq!(shape("layer2.0.downsample.0.weight"), [128, 64, 1, 1]);
    assert_eq!(shape("layer4.0.downsample.1.running_var"), [512]);
    assert_eq!(shape("layer4.1.conv2.alpha"), [512, 1, 1]);
    assert_eq!(shape("fc.weight"), [1000, 512]);
    assert_eq!(shape("bn3.weight"), [1000]);
    let i = names.iter().position(|n| *n == "layer2.0.bn2.running_var");
    assert_eq!(names[i.unwrap() + 1], "layer2.0.downsample.0.weight");
    // Only the stride-2 blocks have a downsample, and it is full precision (no R1, alpha...).
    let downsamples: Vec<&str> = names
        .iter()
        .filter(|n| n.ends_with("downsample.0.weight"))
        .copied()
        .collect();
    assert_eq!(
        downsamples,
        [
            "layer2.0.downsample.0.weight",
            "layer3.0.downsample.0.weight",
            "layer4.0.downsample.0.weight"
        ]
    );
    assert!(spec.find("layer2.0.downsample.0.R1").is_none());
    assert!(spec.find("conv1.alpha").is_none() && spec.find("fc.alpha").is_none());
    // bn3 is state only: SGD leaves it alone.
    assert!(names
        .iter()
        .filter(|n| n.starts_with("bn3."))
        .all(|n| !spec.find(n).unwrap().trainable));
    let spec34 = ModelSpec::new(ModelKind::Resnet34Imagenet, 1000, 3);
    assert_eq!(
        spec34.find("layer3.5.conv2.weight").unwrap().shape,
        [256, 256, 3, 3]
    );
    assert!(spec34.find("layer3.6.conv1.weight").is_none());

    // Initialisation: kaiming_normal convs, BatchNorm2d gamma 1e-8, bn2/bn3/fc PyTorch's defaults.
    let init = |name: &str| spec.find(name).unwrap().init;
    assert_eq!(init("conv1.weight"), Init::KaimingNormal);
    assert_eq!(init("layer3.0.downsample.0.weight"), Init::KaimingNormal);
    assert_eq!(init("layer1.1.conv2.weight"), Init::KaimingNormal);
    assert_eq!(init("bn1.weight"), Init::Const(1e-8));
    assert_eq!(init("layer3.0.downsample.1.weight"), Init::Const(1e-8));
    assert_eq!(init("bn2.weight"), Init::Const(1.0));
    assert_eq!(init("bn3.weight"), Init::Const(1.0));
    assert_eq!(init("fc.weight"), Init::DefaultUniform);
    let values = spec.initialise(&mut Rng::new(1));
    let conv1 = &values.iter().find(|(n, _)| n == "conv1.weight").unwrap().1;
    let var = conv1.iter().map(|v| (v * v) as f64).sum::<f64>() / conv1.len() as f64;
    // kaiming_normal with fan_in 3*7*7 = 147: variance 2/147.
    assert!(
        (var / (2.0 / 147.0) - 1.0).abs() < 0.05,
        "conv1 variance {var}"
    );
}

#[test]
fn shapes_and_the_inputs_the_head_takes() {
    for kind in [ModelKind::Resnet18Imagenet, ModelKind::Resnet34Imagenet] {
        let arch = kind.describe(1000, 3);
        let trace = arch.trace([3, 224, 224]).unwrap();
        assert_eq!(trace.convs[0].output, [64, 112, 112]);
        // After the 3x3/s2/p1 max pool: 56x56 into layer1.
        assert_eq!(trace.convs[1].input, [64, 56, 56]);
        assert_eq!(trace.features, [512, 7, 7]);
        // AvgPool2d(7, stride=1) leaves 1x1 of a 7x7 map only: inputs 193..=224.
        assert_eq!(arch.trace([3, 193, 193]).unwrap().features, [512, 7, 7]);
        let e = err_text(arch.trace([3, 192, 192]));
        assert!(e.contains("average pool 7x7/s1/p0"), "{e}");
        let e = err_text(arch.trace([3, 225, 225]));
        assert!(e.contains("leaves 2x2 of the 8x8 map"), "{e}");
        assert_eq!(
            (kind.native_input_side(), kind.native_classes()),
            (224, 1000)
        );
    }
    assert_eq!(
        ModelKind::parse("resnet18_1w1a_imagenet").unwrap(),
        ModelKind::Resnet18Imagenet
    );
    // The CIFAR model keeps the official name it shares with the ImageNet one.
    assert_eq!(
        ModelKind::parse("resnet18_1w1a").unwrap(),
        ModelKind::Resnet18
    );
}

/// `rbnn step --model resnet18_1w1a_imagenet` at batch 2, 224x224, freshly initialised weights:
/// the entry point for comparing against the official code.
#[test]
fn rbnn_step_runs_resnet18_imagenet_at_batch_2() {
    let _ = gpu_or_skip!();
    let dir = std::env::temp_dir().join(format!("rbnn-imagenet-step-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (batch, out) = (dir.join("batch.safetensors"), dir.join("out.safetensors"));
    let mut rng = Rng::new(3);
    let mut b = StateDict::new();
    b.insert(
        "input",
        HostTensor::f32(&[2, 3, 224, 224], rng.normal_vec(2 * 3 * 224 * 224, 1.0)),
    );
    b.insert("target", HostTensor::i64(&[2], vec![7, 993]));
    save_atomic(&batch, &b, &Default::default()).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .args([
            "step",
            "--model",
            "resnet18_1w1a_imagenet",
            "--init-missing",
        ])
        .args(["--classes", "1000", "--epoch", "0", "--epochs", "150"])
        .arg("--weights")
        .arg(&batch)
        .arg("--batch")
        .arg(&batch)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (got, _) = read_safetensors(&out).unwrap();
    let logits = got.f32_shaped("logits", &[2, 1000]).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    // Gradients of the float stem, a float downsample, a binary conv and the classifier, all
    // finite and not all zero (a binary conv's latent weight gets none at theta = pi/2, where
    // the gate is 1: docs/numerics.md section 2; its alpha does).
    for name in [
        "grad.conv1.weight",
        "grad.layer2.0.downsample.0.weight",
        "grad.layer1.0.conv1.alpha",
        "grad.fc.weight",
    ] {
        let g = got.f32(name).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(g.iter().all(|v| v.is_finite()), "{name}");
        assert!(g.iter().any(|&v| v != 0.0), "{name} is all zero");
    }
    assert!(got.get("grad.bn3.weight").is_none(), "bn3 gets no gradient");
    let _ = std::fs::remove_dir_all(&dir);
}
