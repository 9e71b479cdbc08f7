//! The whole BinaryConv2d on the GPU (forward and backward recorded in one pass, as a training
//! step does) against the f64 reference layer: output and every gradient, binary and a32, on
//! awkward shapes, with exact zeros in x - mean; and run-to-run determinism.
mod common;
mod rbnn_common;

use common::assert_close;
use rbnn::gpu::Gpu;
use rbnn::ops::conv::ConvShape;
use rbnn::rbnn::layer::cpu::{self, Quantizer};
use rbnn::rbnn::{BinaryConv2d, BinaryConvTensors};
use rbnn::rng::Rng;
use rbnn_common::*;

struct Outputs {
    y: Vec<f32>,
    dx: Vec<f32>,
    weight: Vec<f32>,
    alpha: Vec<f32>,
    rotate: Vec<f32>,
}

fn run(gpu: &Gpu, layer: &BinaryConv2d, t: f32, k: f32) -> Outputs {
    record_and_wait(gpu, |pass| {
        layer.record_forward(pass);
        layer.record_backward(pass, t, k);
    });
    let l = &layer.tensors;
    Outputs {
        y: gpu.read_f32(&l.y).unwrap(),
        dx: gpu.read_f32(l.dx.as_ref().unwrap()).unwrap(),
        weight: gpu.read_f32(l.weight_grad.as_ref().unwrap()).unwrap(),
        alpha: gpu.read_f32(l.alpha_grad.as_ref().unwrap()).unwrap(),
        rotate: gpu.read_f32(l.rotate_grad.as_ref().unwrap()).unwrap(),
    }
}

/// Compares with a tolerance relative to the largest reference value (f32 sums of O(n) terms).
fn close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(what, got, &common::f32s(want), rel, rel * scale);
}

fn check(s: ConvShape, a32: bool, t: f64, k: f64, seed: u64) {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let mut rng = Rng::new(seed);
    let p = random_params(&mut rng, &s);
    let mut x = normal(&mut rng, s.input_len(), 1.0);
    // Sample 0 repeats 1, -1, 0, 0 (as many 1 as -1): its mean is exactly 0 in f32 and f64, so
    // x - mean has exact zeros, which the 1-bit forward and the float backward both treat as 0.
    let plane = s.ci * s.h * s.w;
    for (j, v) in x[..plane].iter_mut().enumerate() {
        *v = [1.0, -1.0, 0.0, 0.0][j % 4];
    }
    let dy = normal(&mut rng, s.output_len(), 1.0);
    let t_ = BinaryConvTensors::allocate(gpu, "layer", &s).unwrap();
    for (tensor, data) in [
        (&t_.weight, &p.weight),
        (&t_.alpha, &p.alpha),
        (&t_.rotate, &p.rotate),
        (&t_.r1, &p.r1),
        (&t_.r2, &p.r2),
        (&t_.x, &x),
        (t_.dy.as_ref().unwrap(), &dy),
    ] {
        gpu.write(tensor, &common::f32s(data));
    }
    let layer = BinaryConv2d::new(gpu, s, a32, t_).unwrap();
    let got = run(gpu, &layer, t as f32, k as f32);

    let f = cpu::forward(&s, a32, &p, &x, Quantizer::Sign, None);
    let g = cpu::backward(&s, a32, &p, &f, &dy, t, k);
    // Signs are compared exactly, so the data must keep w3 and the nonzero a2 clear of 0.
    let nonzero_a2: Vec<f64> = f.a2.iter().copied().filter(|v| *v != 0.0).collect();
    assert!(
        margin(&f.w3) > 1e-4 && margin(&nonzero_a2) > 1e-4,
        "{s:?}: test data too close to 0"
    );
    if !a32 {
        assert!(f.ba.contains(&0.0));
    }
    let what = format!("{s:?} a32={a32}");
    close(&format!("{what} y"), &got.y, &f.y, 1e-5);
    close(&format!("{what} dx"), &got.dx, &g.x, 1e-4);
    close(&format!("{what} dweight"), &got.weight, &g.weight, 1e-4);
    close(&format!("{what} dalpha"), &got.alpha, &g.alpha, 1e-4);
    close(&format!("{what} drotate"), &got.rotate, &g.rotate, 1e-4);

    // Same inputs, same bits: no atomics, fixed reduction orders.
    let again = run(gpu, &layer, t as f32, k as f32);
    assert!(got.y == again.y && got.dx == again.dx && got.weight == again.weight);
    assert!(got.alpha == again.alpha && got.rotate == again.rotate);

    // An evaluation layer (no gradients, no backward scratch) over the same parameters and input
    // computes the same output.
    let l = &layer.tensors;
    let eval = BinaryConv2d::new(
        gpu,
        s,
        a32,
        BinaryConvTensors {
            weight: l.weight.clone(),
            alpha: l.alpha.clone(),
            rotate: l.rotate.clone(),
            r1: l.r1.clone(),
            r2: l.r2.clone(),
            weight_grad: None,
            alpha_grad: None,
            rotate_grad: None,
            x: l.x.clone(),
            y: gpu.tensor("eval y", &[s.output_len()]),
            dy: None,
            dx: None,
        },
    )
    .unwrap();
    assert!(!eval.has_backward() && eval.scratch_bytes() < layer.scratch_bytes());
    record_and_wait(gpu, |pass| {
        eval.record_forward(pass);
        eval.record_backward(pass, t as f32, k as f32);
    });
    assert_eq!(gpu.read_f32(&eval.tensors.y).unwrap(), got.y);
}

#[test]
fn gradients_all_or_none() {
    let gpu = gpu_or_skip!();
    let s = ConvShape::square(1, 3, 4, 2, 3, 1, 1);
    let mut t = BinaryConvTensors::allocate(gpu, "partial", &s).unwrap();
    t.dx = None;
    let err = BinaryConv2d::new(gpu, s, false, t)
        .err()
        .expect("a partial set must fail");
    assert!(format!("{err:#}").contains("all together"), "{err:#}");
}

#[test]
fn binary_layer_strided_batch_one() {
    // Batch 1, stride 2, Ci = 35 (not a multiple of 32), n = 315 -> a = 15, b = 21; t < 1.
    check(ConvShape::square(1, 35, 7, 5, 3, 2, 1), false, 0.4, 2.5, 1);
}

#[test]
fn binary_layer_one_by_one() {
    // A 1x1 kernel (n = 20 -> 4 x 5), 33 output channels; t > 1.
    check(ConvShape::square(3, 20, 5, 33, 1, 1, 0), false, 2.0, 1.0, 6);
}

#[test]
fn a32_layer() {
    // Full-precision activations: float conv forward, no ApproxSign on the activation side.
    check(ConvShape::square(2, 6, 6, 8, 3, 1, 1), true, 0.4, 2.5, 3);
}
