//! vgg_small_1w1a (docs/numerics.md section 7): conv0 (float 3x3, 128) -> bn0 -> hardtanh; five
//! binary 3x3 convs (128, 256, 256, 512, 512 channels), each -> [2x2 max pool after convs 1, 3
//! and 5] -> BatchNorm -> hardtanh; flatten (512 x 4 x 4: the input must be 32x32) -> fc.
//! Convs N(0, 2/(k*k*Co)), BatchNorm gamma 1, fc N(0, 0.01) with bias 0.

use crate::model::arch::{
    Architecture, BatchNorm, Conv, ConvKind, Head, Init, Linear, Stem, Unit, MAX_POOL_2X2,
};

pub const NAME: &str = "vgg_small_1w1a";

/// The official init of a k x k conv with `co` outputs: N(0, 2 / (k*k*co)).
fn conv_init(k: usize, co: usize) -> Init {
    Init::Normal((2.0 / (k * k * co) as f64).sqrt())
}

pub fn describe(classes: usize, in_channels: usize) -> Architecture {
    let channels = [128, 128, 256, 256, 512, 512];
    let body = (1..channels.len())
        .map(|i| {
            let (ci, co) = (channels[i - 1], channels[i]);
            Unit::Plain {
                conv: Conv::new(
                    ConvKind::Binary,
                    format!("conv{i}"),
                    ci,
                    co,
                    3,
                    1,
                    conv_init(3, co),
                ),
                pool: (i % 2 == 1).then_some(MAX_POOL_2X2),
                bn: BatchNorm::new(format!("bn{i}"), co, 1.0),
            }
        })
        .collect();
    Architecture {
        name: NAME,
        stem: Stem {
            conv: Conv::new(
                ConvKind::Float,
                "conv0",
                in_channels,
                128,
                3,
                1,
                conv_init(3, 128),
            ),
            bn: BatchNorm::new("bn0", 128, 1.0),
            hardtanh: true,
            pool: None,
        },
        body,
        head: Head::FlattenLinear {
            linear: Linear {
                name: "fc".into(),
                fin: 512 * 4 * 4,
                fout: classes,
                weight: Init::Normal(0.01),
                bias: Init::Const(0.0),
            },
        },
        unused: Vec::new(),
    }
}
