//! shaders/binconv.wgsl: packing equals the CPU packing bit for bit, and the XOR-popcount
//! convolution equals the float convolution of the same -1/0/+1 values exactly, borders, channel
//! tails (Ci not a multiple of 32) and exact zeros (sign(0) = 0) included, for the direct kernel
//! (where the adapter has subgroups) and the tiled one; the software adapters' vec4 packing of
//! the activations (planes of 36 and 40 pixels below; the others take the scalar kernel) too.
mod common;

use rbnn::gpu::KernelVariant;
use rbnn::ops::conv::cpu as conv_ref;
use rbnn::ops::conv::ConvShape;
use rbnn::rbnn::binconv;
use rbnn::rbnn::binconv::cpu::{pack_activations, pack_weights};
use rbnn::rbnn::schedule::cpu::sign;
use rbnn::rng::Rng;

fn check(s: ConvShape, seed: u64) {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let mut rng = Rng::new(seed);
    // Activations from a small set that includes each sample's mean, so x - mean has many exact
    // zeros; weights normal with ~10% exact zeros.
    let levels = [-2.0f32, -1.0, 0.0, 0.5, 1.0];
    let x: Vec<f32> = (0..s.input_len())
        .map(|_| levels[rng.below(levels.len())])
        .collect();
    let means: Vec<f32> = (0..s.n).map(|i| levels[(i + 2) % levels.len()]).collect();
    let astats: Vec<f32> = means.iter().flat_map(|&m| [m, 1.0]).collect();
    let w3: Vec<f32> = rng
        .normal_vec(s.weight_len(), 1.0)
        .into_iter()
        .map(|v| if v.abs() < 0.12 { 0.0 } else { v })
        .collect();
    let alpha = rng.uniform_vec(s.co, 0.5, 1.5);

    let xt = gpu.upload_f32("x", &[s.input_len()], &x);
    let st = gpu.upload_f32("astats", &[s.n, 2], &astats);
    let w3t = gpu.upload_f32("w3", &[s.weight_len()], &w3);
    let abits = gpu.tensor("abits", &[binconv::activation_bits_len(&s)]);
    let wbits = gpu.tensor("wbits", &[binconv::weight_bits_len(&s)]);
    let y = gpu.tensor("y", &[s.output_len()]);
    let ones = gpu.upload_f32("ones", &[s.co], &vec![1.0; s.co]);
    let alpha_t = gpu.upload_f32("alpha", &[s.co], &alpha);
    let pa = binconv::pack_activations(gpu, KernelVariant::Gpu, &s, &xt, &st, &abits).unwrap();
    let pw = binconv::pack_weights(gpu, &s, &w3t, &wbits).unwrap();
    let conv_raw = binconv::binconv(gpu, &s, &abits, &wbits, &ones, &y).unwrap();
    gpu.write(&y, &vec![f32::NAN; y.len()]);
    gpu.run(&[&pa, &pw, &conv_raw]).unwrap();

    // The values whose signs are packed: x - mean in f32, as the kernel computes them.
    let plane = s.ci * s.h * s.w;
    let centred: Vec<f32> = (0..x.len()).map(|i| x[i] - means[i / plane]).collect();
    assert_eq!(
        gpu.read_u32(&abits).unwrap(),
        pack_activations(&s, &centred),
        "{s:?} abits"
    );
    assert_eq!(
        gpu.read_u32(&wbits).unwrap(),
        pack_weights(&s, &w3),
        "{s:?} wbits"
    );

    // The software adapters' packing (vec4 reads where H*W % 4 == 0, else the same kernel) writes
    // the same bits; NaN first so every word must be written.
    gpu.write(&abits, &vec![f32::NAN; abits.len()]);
    let pa4 = binconv::pack_activations(gpu, KernelVariant::Software, &s, &xt, &st, &abits);
    gpu.run(&[&pa4.unwrap()]).unwrap();
    assert_eq!(
        gpu.read_u32(&abits).unwrap(),
        pack_activations(&s, &centred),
        "{s:?} abits, software variant"
    );

    let ba: Vec<f64> = centred.iter().map(|&v| sign(v as f64)).collect();
    let bw: Vec<f64> = w3.iter().map(|&v| sign(v as f64)).collect();
    assert!(
        ba.contains(&0.0) && bw.contains(&0.0),
        "the data must hold exact zeros"
    );
    let raw = conv_ref::forward_f64(&s, &ba, &bw);
    let got = gpu.read_f32(&y).unwrap();
    assert_eq!(got, common::f32s(&raw), "{s:?}: integer counts");

    // The tiled kernel (adapters without subgroups) gives the same integers; NaN first so every
    // output must be written.
    gpu.write(&y, &vec![f32::NAN; y.len()]);
    let tiled = binconv::binconv_tiled(gpu, &s, &abits, &wbits, &ones, &y).unwrap();
    gpu.run(&[&tiled]).unwrap();
    assert_eq!(
        gpu.read_f32(&y).unwrap(),
        common::f32s(&raw),
        "{s:?}: tiled kernel"
    );

    let conv = binconv::binconv(gpu, &s, &abits, &wbits, &alpha_t, &y).unwrap();
    gpu.run(&[&conv]).unwrap();
    let plane_out = s.oh() * s.ow();
    let want: Vec<f32> = raw
        .iter()
        .enumerate()
        .map(|(i, &r)| alpha[(i / plane_out) % s.co] * r as f32)
        .collect();
    assert_eq!(gpu.read_f32(&y).unwrap(), want, "{s:?}: alpha scaling");
}

#[test]
fn strided_padded_and_channel_tails() {
    // Ci = 35 (one full word and a 3-channel tail), stride 2, padding 1, batch 1.
    check(ConvShape::square(1, 35, 7, 5, 3, 2, 1), 1);
    // One input channel (31 empty bits per word).
    check(ConvShape::square(2, 1, 5, 3, 3, 1, 1), 2);
    // Padding 2 > kernel radius: whole rows and columns of taps outside the image.
    check(ConvShape::square(2, 67, 6, 33, 3, 1, 2), 3);
    // A 17x17 stride-2 output: 8x8 tiles that overhang it, input windows 17 columns wide.
    check(ConvShape::square(1, 20, 33, 9, 3, 2, 1), 7);
}

#[test]
fn one_by_one_and_wide_outputs() {
    // 1x1 stride 2 (the resnet18 shortcut) with exactly one word per tap; Co = 70 spans two
    // 64-wide column tiles.
    check(ConvShape::square(3, 32, 5, 70, 1, 2, 0), 4);
    // The resnet20 first stage's 16 channels (16-wide tiles), more pixels than one 64-row tile.
    check(ConvShape::square(2, 16, 9, 16, 3, 1, 1), 5);
    // A non-square input and kernel.
    check(
        ConvShape {
            n: 2,
            ci: 40,
            h: 5,
            w: 8,
            co: 20,
            kh: 3,
            kw: 2,
            stride: 1,
            pad: 1,
        },
        6,
    );
}
