//! The packed engine's kernels (shaders/infer_ops.wgsl, shaders/infer_binconv.wgsl) against their
//! CPU references: packing exactly (bit for bit, exact zeros and channel tails included), the
//! fused conv's integer dot exactly and its f32 epilogue within 1e-5, pools and BatchNorms within
//! 1e-6 relative. Awkward shapes: channels not multiples of 32, odd sizes, stride 2, batch 1,
//! reductions of one and of several stages.
mod common;
mod numeric;

use rbnn::gpu::Gpu;
use rbnn::infer::kernels::{self, cpu, Epilogue, Residual};
use rbnn::ops::batchnorm::EPS;
use rbnn::ops::conv::ConvShape;
use rbnn::rng::Rng;

/// Integer-valued activations [n, c, h, w]; sample 0 sums to exactly 0, so its mean is 0 and its
/// zeros are exact zeros of x - mean (sign(0) = 0). Integer sums are exact in f32 and f64 alike.
fn activations(rng: &mut Rng, [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let len = c * h * w;
    let mut x: Vec<f32> = (0..n * len).map(|_| rng.below(5) as f32 - 2.0).collect();
    let rest: f32 = x[..len - 1].iter().sum();
    x[len - 1] = -rest;
    x
}

/// Ternary weights [co, ci, k, k] with about 20% zeros.
fn ternary_weights(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| match rng.below(5) {
            0 => 0.0,
            1 | 2 => -1.0,
            _ => 1.0,
        })
        .collect()
}

/// A random BatchNorm [c, 4] = (running_mean, running_var, gamma, beta), gamma of both signs.
fn batchnorm_terms(rng: &mut Rng, c: usize) -> Vec<f32> {
    (0..c)
        .flat_map(|_| {
            let gamma = rng.range(0.5, 1.5) * if rng.below(3) == 0 { -1.0 } else { 1.0 };
            [
                rng.range(-0.5, 0.5) as f32,
                rng.range(0.05, 2.0) as f32,
                gamma as f32,
                rng.range(-0.5, 0.5) as f32,
            ]
        })
        .collect()
}

/// Weights [co, ci, kh, kw] in the kernels' layout [co, kh*kw, Cw, 2].
fn pack_weights(tw: &[f64], s: &ConvShape) -> Vec<u32> {
    let taps = s.kh * s.kw;
    let cw = s.ci.div_ceil(32);
    let mut out = vec![0u32; s.co * taps * cw * 2];
    for o in 0..s.co {
        for c in 0..s.ci {
            for tap in 0..taps {
                let v = tw[(o * s.ci + c) * taps + tap];
                let word = ((o * taps + tap) * cw + c / 32) * 2;
                if v < 0.0 {
                    out[word] |= 1 << (c % 32);
                }
                if v != 0.0 {
                    out[word + 1] |= 1 << (c % 32);
                }
            }
        }
    }
    out
}

fn gpu() -> Option<&'static Gpu> {
    common::gpu()
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn mean_pack_equals_cpu_packing() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(1);
    for shape in [[3, 40, 5, 7], [1, 16, 4, 4], [2, 64, 3, 2]] {
        let [n, c, h, w] = shape;
        let x = activations(&mut rng, shape);
        let xt = gpu.upload_f32("x", &shape, &x);
        let bits = gpu.tensor("bits", &[kernels::packed_len(n, c, h, w)]);
        let d = kernels::mean_pack(gpu, &xt, &bits).unwrap();
        gpu.run(&[&d]).unwrap();
        let means = cpu::sample_means(&x, n);
        assert_eq!(means[0], 0.0);
        let want = cpu::pack_ternary(&cpu::signs(&x, &means), shape);
        assert!(cpu::signs(&x, &means).contains(&0.0), "exact zeros tested");
        assert_eq!(gpu.read_u32(&bits).unwrap(), want, "{shape:?}");
    }
}

struct ConvCase {
    s: ConvShape,
    residual: u8,
    hardtanh: bool,
    batchnorm: bool,
}

fn check_binconv(case: &ConvCase, seed: u64) {
    let Some(gpu) = gpu() else { return };
    let s = case.s;
    let mut rng = Rng::new(seed);
    let xshape = [s.n, s.ci, s.h, s.w];
    let x = activations(&mut rng, xshape);
    let tw = ternary_weights(&mut rng, s.weight_len());
    let alpha = rng.uniform_vec(s.co, 0.05, 0.3);
    let bn = batchnorm_terms(&mut rng, s.co);
    let yshape = [s.n, s.co, s.oh(), s.ow()];
    // Residual 1: identity of the output's shape; 2: option A from an input with co/2 channels
    // at the conv's input resolution.
    let rshape = match case.residual {
        1 => yshape.to_vec(),
        2 => vec![s.n, s.co / 2, s.h, s.w],
        _ => vec![1],
    };
    let r = rng.uniform_vec(rshape.iter().product(), -1.0, 1.0);

    let xt = gpu.upload_f32("x", &xshape, &x);
    let bits = gpu.tensor("bits", &[kernels::packed_len(s.n, s.ci, s.h, s.w)]);
    let wbits = pack_weights(&tw, &s);
    let wt = gpu.upload_u32("wbits", &[wbits.len()], &wbits);
    let alpha_t = gpu.upload_f32("alpha", &[s.co], &alpha);
    let bn_t = gpu.upload_f32("bn", &[s.co, 4], &bn);
    let rt = gpu.upload_f32("residual", &rshape, &r);
    let y = gpu.tensor("y", &yshape);
    let residual = match case.residual {
        1 => Residual::Identity(&rt),
        2 => Residual::OptionA(&rt),
        _ => Residual::None,
    };
    let e = Epilogue {
        alpha: &alpha_t,
        batchnorm: case.batchnorm.then_some(&bn_t),
        residual,
        hardtanh: case.hardtanh,
    };
    let pack = kernels::mean_pack(gpu, &xt, &bits).unwrap();
    let conv = kernels::binconv(gpu, &s, &bits, &wt, &e, &y).unwrap();
    gpu.run(&[&pack, &conv]).unwrap();
    let got = gpu.read_f32(&y).unwrap();

    let ta = cpu::signs(&x, &cpu::sample_means(&x, s.n));
    let r64 = numeric::f64s(&r);
    let res = match case.residual {
        1 => Some((&r64[..], None)),
        2 => Some((&r64[..], Some([s.co / 2, s.h, s.w]))),
        _ => None,
    };
    let bn64 = numeric::f64s(&bn);
    let want = cpu::binconv(
        &s,
        &ta,
        &tw,
        &numeric::f64s(&alpha),
        case.batchnorm.then_some(&bn64[..]),
        EPS as f64,
        res,
        case.hardtanh,
    );
    numeric::assert_close64(&format!("{s:?}"), &numeric::f64s(&got), &want, 1e-5, 1e-5);
}

#[test]
fn fused_binconv_option_a_stride_2_channel_tail() {
    let s = ConvShape {
        n: 2,
        ci: 40,
        h: 7,
        w: 6,
        co: 20,
        kh: 3,
        kw: 3,
        stride: 2,
        pad: 1,
    };
    check_binconv(
        &ConvCase {
            s,
            residual: 2,
            hardtanh: true,
            batchnorm: true,
        },
        2,
    );
}

#[test]
fn fused_binconv_identity_wide() {
    let s = ConvShape::square(1, 33, 5, 70, 3, 1, 1);
    check_binconv(
        &ConvCase {
            s,
            residual: 1,
            hardtanh: true,
            batchnorm: true,
        },
        3,
    );
}

#[test]
fn fused_binconv_one_by_one_stride_2_plain() {
    let s = ConvShape::square(3, 64, 5, 24, 1, 2, 0);
    check_binconv(
        &ConvCase {
            s,
            residual: 0,
            hardtanh: false,
            batchnorm: false,
        },
        4,
    );
}

#[test]
fn batchnorms_and_pools_equal_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(5);
    let shape = [2, 3, 5, 7];
    let [n, c, h, w] = shape;
    let x = rng.normal_vec(n * c * h * w, 2.0);
    // Negative gammas too: a pool before a BatchNorm with gamma < 0 must stay a max pool.
    let bn = batchnorm_terms(&mut rng, c);
    let (x64, bn64, eps) = (numeric::f64s(&x), numeric::f64s(&bn), EPS as f64);
    let bn_t = gpu.upload_f32("bn", &[c, 4], &bn);
    for ht in [false, true] {
        let io = gpu.upload_f32("io", &shape, &x);
        let d = kernels::batchnorm(gpu, &io, &bn_t, ht).unwrap();
        gpu.run(&[&d]).unwrap();
        let want = cpu::batchnorm_all(&x64, c, h * w, &bn64, eps, ht);
        let got = numeric::f64s(&gpu.read_f32(&io).unwrap());
        numeric::assert_close64("batchnorm", &got, &want, 1e-5, 1e-5);

        let xt = gpu.upload_f32("x", &shape, &x);
        let out = gpu.tensor("pooled", &[n, c, h / 2, w / 2]);
        let d = kernels::maxpool_batchnorm(gpu, &xt, &bn_t, ht, &out).unwrap();
        gpu.run(&[&d]).unwrap();
        let want = cpu::maxpool_batchnorm(&x64, shape, &bn64, eps, ht);
        let got = numeric::f64s(&gpu.read_f32(&out).unwrap());
        numeric::assert_close64("maxpool_batchnorm", &got, &want, 1e-5, 1e-5);
    }
    let xt = gpu.upload_f32("x", &shape, &x);
    let out = gpu.tensor("avg", &[n, c]);
    let d = kernels::avgpool_batchnorm(gpu, &xt, &bn_t, &out).unwrap();
    gpu.run(&[&d]).unwrap();
    let want = cpu::avgpool_batchnorm(&x64, c, h * w, &bn64, eps);
    let got = numeric::f64s(&gpu.read_f32(&out).unwrap());
    numeric::assert_close64("avgpool_batchnorm", &got, &want, 1e-5, 1e-5);
}

#[test]
fn shape_errors_name_the_tensor() {
    let Some(gpu) = gpu() else { return };
    let x = gpu.tensor("activations", &[2, 3, 4, 4]);
    let bits = gpu.tensor("too few bits", &[7]);
    let e = err_text(kernels::mean_pack(gpu, &x, &bits));
    assert!(e.contains("too few bits"), "{e}");
    let s = ConvShape::square(2, 3, 4, 8, 3, 2, 1);
    let res = gpu.tensor("odd residual", &[2, 3, 4, 4]);
    let alpha = gpu.tensor("alpha", &[8]);
    let abits = gpu.tensor("abits", &[kernels::packed_len(2, 3, 4, 4)]);
    let wbits = gpu.tensor("wbits", &[8 * 9 * 2]);
    let y = gpu.tensor("y", &[2, 8, 2, 2]);
    let ep = Epilogue {
        alpha: &alpha,
        batchnorm: None,
        residual: Residual::OptionA(&res),
        hardtanh: true,
    };
    let e = err_text(kernels::binconv(gpu, &s, &abits, &wbits, &ep, &y));
    assert!(e.contains("option-A residual"), "{e}");
}

#[test]
fn fused_binconv_multi_stage_reductions() {
    // 100 channels: 4 words per tap, stages of 12 word pairs (3 stages); 500 channels: 16 words
    // per tap, stages of 16 (9 stages).
    for (ci, seed) in [(100, 6), (500, 7)] {
        let s = ConvShape {
            n: 2,
            ci,
            h: 4,
            w: 5,
            co: 40,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
        };
        check_binconv(
            &ConvCase {
                s,
                residual: 1,
                hardtanh: false,
                batchnorm: true,
            },
            seed,
        );
    }
}
