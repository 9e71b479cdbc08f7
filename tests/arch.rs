//! The architecture descriptions (model::arch, model::zoo): every registered model describes a
//! consistent network, shapes are checked layer by layer with errors that name the layer, the
//! ImageNet ResNet-18 and -34 (lmbxmu/RBNN, imagenet/) have the official state_dict names,
//! shapes and counts, and the training graph names the pieces it has no kernel for yet.
mod common;

use rbnn::infer::ModelMeta;
use rbnn::model::arch::{Architecture, ConvKind, Head, Init, Layer, Pool, Shortcut, Unit};
use rbnn::model::network::{Mode, Network};
use rbnn::model::{ModelKind, ModelSpec, Params};
use std::collections::HashSet;

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn registered_models_describe_consistent_networks() {
    let mut names = HashSet::new();
    for kind in ModelKind::ALL {
        assert_eq!(ModelKind::parse(kind.name()).unwrap(), kind);
        assert!(
            names.insert(kind.name()),
            "{} registered twice",
            kind.name()
        );
        for (c, classes) in [(3, 10), (1, 100)] {
            let arch = kind.describe(classes, c);
            assert_eq!(arch.name, kind.name());
            assert_eq!((arch.in_channels(), arch.classes()), (c, classes));
            let side = kind.native_input_side();
            let trace = arch.trace([c, side, side]).unwrap();
            assert_eq!(
                trace.convs.len(),
                arch.layers()
                    .iter()
                    .filter(|l| matches!(l, Layer::Conv(_)))
                    .count()
            );
            // Every state_dict name appears once.
            let spec = ModelSpec::new(kind, classes, c);
            let mut seen = HashSet::new();
            for t in &spec.tensors {
                assert!(seen.insert(&t.name), "{}: {} twice", kind.name(), t.name);
            }
        }
    }
    assert!(ModelKind::parse("resnet21").is_err());
    // The shapes through resnet20: 16 channels at 32x32, 32 at 16x16, 64 at 8x8.
    let trace = ModelKind::Resnet20
        .describe(10, 3)
        .trace([3, 32, 32])
        .unwrap();
    assert_eq!(trace.features, [64, 8, 8]);
    assert_eq!(trace.convs[0].output, [16, 32, 32]);
    assert_eq!(trace.largest_activation(), 16 * 32 * 32);
    let resnet18 = ModelKind::Resnet18.describe(10, 3);
    let shortcut = resnet18.trace([3, 32, 32]).unwrap().convs;
    let shortcut = shortcut
        .iter()
        .find(|t| t.conv.name == "layer2.0.shortcut.0")
        .unwrap();
    assert_eq!(
        (shortcut.input, shortcut.output),
        ([64, 32, 32], [128, 16, 16])
    );
}

#[test]
fn shape_errors_name_the_layer() {
    let vgg = ModelKind::VggSmall.describe(10, 3);
    let e = err_text(vgg.trace([3, 16, 16]));
    assert!(
        e.contains("fc takes 8192 features, a 16x16 input gives 512 x 2 x 2"),
        "{e}"
    );
    let e = err_text(vgg.trace([1, 32, 32]));
    assert!(e.contains("conv0 takes 3 channels, its input has 1"), "{e}");
    // The packed model's metadata is checked against the description.
    let meta = ModelMeta {
        kind: ModelKind::VggSmall,
        input: [3, 24, 24],
        content: 24,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        classes: vec!["a".into(), "b".into()],
        dataset: "test".into(),
        source: "test".into(),
    };
    assert!(err_text(meta.check()).contains("fc takes 8192 features"));

    // A block whose shortcut does not fit, and an identity across a channel change.
    let mut arch = ModelKind::Resnet20.describe(10, 3);
    let Unit::Block(block) = &mut arch.body[3] else {
        panic!("resnet20's body is blocks")
    };
    block.shortcut = Shortcut::Identity;
    let e = err_text(arch.trace([3, 32, 32]));
    assert!(e.contains("the shortcut around layer2.0.conv1"), "{e}");
    let mut arch = ModelKind::Resnet18.describe(10, 3);
    let Head::PoolNormLinear { bn, .. } = &mut arch.head else {
        panic!("resnet18's head pools")
    };
    bn.c = 256;
    assert!(err_text(arch.trace([3, 32, 32]))
        .contains("bn2 normalises 256 channels, its input has 512"));
    let e = err_text(ModelKind::Resnet18.describe(10, 3).trace([3, 0, 4]));
    assert!(
        e.contains("the 0x4 input of conv1 is smaller than its 3x3 kernel"),
        "{e}"
    );
}

#[test]
fn the_imagenet_resnets_are_descriptions_too() {
    // torchvision's float ResNet-18 / -34 (the same convs, BatchNorms and fc) have 11,689,512
    // and 21,797,672 parameters; RBNN adds bn2 (BatchNorm1d(512): 1,024), alpha and theta per
    // output channel of each binary conv, and the unused bn3 (2,000, not trained).
    for (kind, torchvision, binary_channels) in [
        (
            ModelKind::Resnet18Imagenet,
            11_689_512,
            2 * 64 * 2 + 2 * 128 * 2 + 2 * 256 * 2 + 2 * 512 * 2,
        ),
        (
            ModelKind::Resnet34Imagenet,
            21_797_672,
            3 * 64 * 2 + 4 * 128 * 2 + 6 * 256 * 2 + 3 * 512 * 2,
        ),
    ] {
        let (arch, name) = (kind.describe(1000, 3), kind.name());
        let trace = arch.trace([3, 224, 224]).unwrap();
        assert_eq!(trace.convs[0].output, [64, 112, 112], "{name}: stem");
        assert_eq!(
            trace.convs[1].input,
            [64, 56, 56],
            "{name}: after the max pool"
        );
        assert_eq!(
            trace.features,
            [512, 7, 7],
            "{name}: into the 7x7 average pool"
        );

        let tensors = arch.tensors();
        let get = |n: &str| {
            tensors
                .iter()
                .find(|t| t.name == n)
                .unwrap_or_else(|| panic!("{name}: no {n}"))
        };
        assert_eq!(get("conv1.weight").shape, vec![64, 3, 7, 7]);
        assert_eq!(get("layer1.0.conv1.R1").shape, vec![24, 24]);
        assert_eq!(
            get("layer2.0.downsample.0.weight").shape,
            vec![128, 64, 1, 1]
        );
        assert!(
            !tensors
                .iter()
                .any(|t| t.name == "layer2.0.downsample.0.alpha"),
            "float downsample"
        );
        assert_eq!(get("layer4.1.conv2.rotate").shape, vec![512, 1, 1, 1]);
        assert_eq!(get("fc.weight").shape, vec![1000, 512]);
        assert_eq!(get("bn3.running_var").shape, vec![1000]);
        assert!(!get("bn3.weight").trainable && !get("bn3.bias").trainable);
        assert_eq!(get("layer3.1.bn2.weight").init, Init::Const(1e-8));
        assert!(arch.batchnorm_names().contains(&"bn3".to_string()));

        let count = |keep: &dyn Fn(&str) -> bool| -> usize {
            tensors
                .iter()
                .filter(|t| keep(&t.name))
                .map(|t| t.shape.iter().product::<usize>())
                .sum()
        };
        let buffer = |n: &str| {
            n.ends_with("running_mean")
                || n.ends_with("running_var")
                || n.ends_with(".R1")
                || n.ends_with(".R2")
        };
        let trainable: usize = tensors
            .iter()
            .filter(|t| t.trainable)
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        assert_eq!(
            trainable,
            torchvision + 1024 + 2 * binary_channels,
            "{name}"
        );
        assert_eq!(count(&|n| !buffer(n)), trainable + 2000, "{name}: with bn3");
        // The packed form leaves bn3 out: it walks the layers the forward uses.
        assert!(!arch
            .layers()
            .iter()
            .any(|l| matches!(l, Layer::BatchNorm(bn) if bn.name == "bn3")));
    }
}

/// The training graph stops at the first piece it cannot build yet, naming it.
#[test]
fn unbuilt_pieces_are_named() {
    let gpu = gpu_or_skip!();
    let build = |arch: Architecture, input: [usize; 3]| {
        let spec = ModelSpec {
            kind: ModelKind::Resnet18,
            classes: arch.classes(),
            in_channels: arch.in_channels(),
            tensors: arch.tensors(),
            arch,
        };
        let params = Params::new(gpu, spec).unwrap();
        err_text(Network::new(gpu, &params, 2, Mode::Train, false, input))
    };
    // An average pool that leaves 1x1 but is not the whole map's mean (it pads).
    let mut arch = ModelKind::Resnet18Imagenet.describe(10, 3);
    let Head::PoolNormLinear { pool, .. } = &mut arch.head else {
        panic!("a pooling head")
    };
    *pool = Pool::Average {
        kernel: 7,
        stride: 7,
        pad: 1,
    };
    let e = build(arch, [3, 224, 224]);
    assert!(
        e.contains("no average pool 7x7/s7/p1 on a [512, 7, 7] map yet"),
        "{e}"
    );
    // A full-precision conv in the body, outside a shortcut.
    let mut arch = ModelKind::VggSmall.describe(10, 3);
    let Unit::Plain { conv, .. } = &mut arch.body[0] else {
        panic!("vgg_small's body is plain units")
    };
    conv.kind = ConvKind::Float;
    let e = build(arch, [3, 32, 32]);
    assert!(
        e.contains("full-precision convs only in the stem and shortcuts (conv1)"),
        "{e}"
    );
}
