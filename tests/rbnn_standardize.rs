//! shaders/standardize.wgsl against the f64 reference: weight and activation standardisation,
//! sign(a2) with exact zeros, and the activation backward (ApproxSign with ta = max(t,1), a32),
//! the elementwise passes in both kernel variants (the GPU's and the software adapters'), and the
//! software adapters' one-pass activation statistics (activation_stats_walk).
mod common;
mod rbnn_common;

use common::assert_close;
use rbnn::gpu::KernelVariant;
use rbnn::rbnn::rotate::{WeightDims, WeightScratch};
use rbnn::rbnn::schedule::{self, cpu::activation_approx, cpu::approx_sign_grad};
use rbnn::rbnn::standardize::cpu::{standardize_rows, standardize_rows_backward, Standardized};
use rbnn::rbnn::standardize::{self, ActivationGrad, ActivationOutput, RowDims};
use rbnn::rng::Rng;
use rbnn_common::*;

/// Both variants, whatever the adapter, so that each stays tested on lavapipe.
const VARIANTS: [KernelVariant; 2] = [KernelVariant::Gpu, KernelVariant::Software];

/// The reference's (mean, std) per row, interleaved as the kernels write them ([rows, 2]).
fn mean_std_pairs(st: &Standardized) -> Vec<f64> {
    st.mean
        .iter()
        .zip(&st.std)
        .flat_map(|(m, s)| [*m, *s])
        .collect()
}

#[test]
fn weight_standardisation_and_channel_terms() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(11);
    // n = 27 (fewer than the 256 invocations) and n = 300 (more; a = 15, b = 20); 9 channels of
    // the shortest row, 2 (the software variant's workgroups of 8 channels, and one more). The
    // weights sit on an offset of 10 so the mean matters; theta includes 0 (sign(sin) = 0), pi/2
    // and negative angles.
    for ((co, n), variant) in [(5usize, 27usize), (3, 300), (9, 2)]
        .iter()
        .flat_map(|c| VARIANTS.map(|v| (*c, v)))
    {
        let d = WeightDims::new(co, n);
        let w: Vec<f64> = normal(&mut rng, co * n, 0.5)
            .iter()
            .map(|v| v + 10.0)
            .collect();
        let alpha = uniform(&mut rng, co, 0.5, 1.5);
        let mut theta = uniform(&mut rng, co, -3.0, 3.0);
        theta[0] = 0.0;
        theta[1] = std::f32::consts::FRAC_PI_2 as f64;
        let weight = gpu.upload_f32("weight", &[co, n], &common::f32s(&w));
        let alpha_t = gpu.upload_f32("alpha", &[co], &common::f32s(&alpha));
        let theta_t = gpu.upload_f32("rotate", &[co], &common::f32s(&theta));
        let s = WeightScratch::new(gpu, "test", d).unwrap();
        let dsp =
            standardize::weight_forward(gpu, variant, d, &weight, &alpha_t, &theta_t, &s).unwrap();
        gpu.run(&[&dsp]).unwrap();
        let want = standardize_rows(&w, n);
        // f32 inputs around 10 carry ~1e-6 absolute rounding; over std 0.5 that is ~2e-6.
        assert_close(
            "w2",
            &gpu.read_f32(&s.w2).unwrap(),
            &common::f32s(&want.out),
            1e-4,
            2e-5,
        );
        let stats = gpu.read_f32(&s.wstats).unwrap();
        let mut want_stats = Vec::new();
        for o in 0..co {
            let th = theta[o];
            want_stats.extend([
                want.std[o],
                alpha[o],
                th.sin().abs(),
                schedule::cpu::sign(th.sin()) * th.cos(),
            ]);
        }
        assert_close("wstats", &stats, &common::f32s(&want_stats), 1e-5, 1e-6);
        assert_eq!(stats[3], 0.0, "theta = 0: sign(sin) = 0");
    }
}

#[test]
fn activation_standardisation_and_sign_with_exact_zeros() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(12);
    // Rows of more than one software chunk (4096) too.
    let cases = [(1usize, 700usize), (3, 90), (2, 9000)];
    for ((rows, len), variant) in cases.iter().flat_map(|c| VARIANTS.map(|v| (*c, v))) {
        let d = RowDims { rows, len };
        let mut x = normal(&mut rng, rows * len, 1.5);
        // Sample 0 repeats 1, -1, 0, 0 (len is even, so as many 1 as -1): its sum is exact and
        // its mean exactly 0, so its zeros are exact zeros of x - mean, which sign maps to 0.
        for (j, v) in x[..len].iter_mut().enumerate() {
            *v = [1.0, -1.0, 0.0, 0.0][j % 4];
        }
        let xt = gpu.upload_f32("x", &[rows, len], &common::f32s(&x));
        let astats = gpu.tensor("astats", &[rows, 2]);
        let out = gpu.tensor("out", &[rows, len]);
        let stats = standardize::activation_stats(gpu, d, &xt, &astats).unwrap();
        let a2 = standardize::activation_output(
            gpu,
            variant,
            d,
            &xt,
            &astats,
            &out,
            ActivationOutput::Standardized,
        )
        .unwrap();
        gpu.run(&[&stats, &a2]).unwrap();
        let want = standardize_rows(&x, len);
        let got_stats = gpu.read_f32(&astats).unwrap();
        let want_stats = mean_std_pairs(&want);
        assert_close("astats", &got_stats, &common::f32s(&want_stats), 1e-5, 1e-6);
        assert_eq!(got_stats[0], 0.0, "sample 0 has mean exactly 0");
        assert_close(
            &format!("a2 {variant:?}"),
            &gpu.read_f32(&out).unwrap(),
            &common::f32s(&want.out),
            1e-5,
            1e-5,
        );

        let sign = standardize::activation_output(
            gpu,
            variant,
            d,
            &xt,
            &astats,
            &out,
            ActivationOutput::Sign,
        )
        .unwrap();
        gpu.run(&[&sign]).unwrap();
        let got = gpu.read_f32(&out).unwrap();
        // The signs of x - mean in f32, as the kernel computes them (no margin needed).
        let want: Vec<f32> = (0..rows * len)
            .map(|i| schedule::cpu::sign((x[i] as f32 - got_stats[2 * (i / len)]) as f64) as f32)
            .collect();
        assert_eq!(got, want);
        assert_eq!(&got[..4], &[1.0, -1.0, 0.0, 0.0], "sign(0) = 0");
    }
}

#[test]
fn activation_backward_matches_reference() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(13);
    // t < 1 gives ta = 1 (cut-off sqrt 2: about 16% of standardised values get no gradient); t > 1
    // narrows the window; a32 passes the gradient straight to the standardisation.
    let cases = [
        (2usize, 300usize, ActivationGrad::ApproxSign, 0.3f64),
        (1, 77, ActivationGrad::ApproxSign, 2.5),
        (3, 50, ActivationGrad::A32, 0.3),
        (2, 5000, ActivationGrad::ApproxSign, 1.5),
    ];
    // The GPU variant, the software variant of activation_backward, and the software adapters'
    // activation_backward_walk (which also writes the signs).
    let paths = [
        Some(KernelVariant::Gpu),
        Some(KernelVariant::Software),
        None,
    ];
    for ((rows, len, grad, t), path) in cases.iter().flat_map(|c| paths.map(|v| (*c, v))) {
        let d = RowDims { rows, len };
        let x = normal(&mut rng, rows * len, 2.0);
        let g = normal(&mut rng, rows * len, 1.0);
        let xt = gpu.upload_f32("x", &[rows, len], &common::f32s(&x));
        let dx = gpu.upload_f32("dx", &[rows, len], &common::f32s(&g));
        let astats = gpu.tensor("astats", &[rows, 2]);
        let sums = gpu.tensor("sums", &[rows, 2]);
        let signs = gpu.upload_f32("signs", &[rows, len], &vec![7.0; rows * len]);
        let stats = standardize::activation_stats(gpu, d, &xt, &astats).unwrap();
        let backward: Vec<_> = match path {
            Some(variant) => {
                standardize::activation_backward(gpu, variant, d, grad, &xt, &astats, &dx, &sums)
                    .unwrap()
                    .into()
            }
            None => {
                let partials = gpu.tensor("partials", &[standardize::walk_partials_len(d)]);
                standardize::activation_backward_walk(
                    gpu, d, grad, &xt, &astats, &dx, &signs, &partials, &sums,
                )
                .unwrap()
                .into()
            }
        };
        let imm = standardize::activation_backward_immediates(d, grad, t as f32);
        record_and_wait(gpu, |pass| {
            stats.record(pass);
            for b in &backward {
                b.record_with(pass, imm.bytes());
            }
        });
        let variant = path.map_or("walk".to_string(), |v| format!("{v:?}"));
        if path.is_none() {
            // The signs activation_output(Sign) writes (same expression), or untouched with a32.
            let got = gpu.read_f32(&signs).unwrap();
            let want = match grad {
                ActivationGrad::ApproxSign => {
                    let sign = standardize::activation_output(
                        gpu,
                        KernelVariant::Gpu,
                        d,
                        &xt,
                        &astats,
                        &signs,
                        ActivationOutput::Sign,
                    )
                    .unwrap();
                    gpu.run(&[&sign]).unwrap();
                    gpu.read_f32(&signs).unwrap()
                }
                ActivationGrad::A32 => vec![7.0; rows * len],
            };
            assert_eq!(got, want, "signs {grad:?} {rows}x{len}");
        }
        let st = standardize_rows(&x, len);
        let (ta, ka) = activation_approx(t);
        let g2: Vec<f64> = match grad {
            ActivationGrad::ApproxSign => g
                .iter()
                .zip(&st.out)
                .map(|(g, &a)| g * approx_sign_grad(a, ta, ka))
                .collect(),
            ActivationGrad::A32 => g.clone(),
        };
        let want = standardize_rows_backward(&st.out, &st.std, &g2, len);
        assert_close(
            &format!("dx {grad:?} t={t} {variant:?}"),
            &gpu.read_f32(&dx).unwrap(),
            &common::f32s(&want),
            1e-4,
            2e-5,
        );
    }
}

#[test]
fn activation_stats_walk_matches_reference_and_repeats() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(14);
    // Batch 1, rows shorter than the 256 lanes (the shortest has 2 elements), odd lengths, rows of
    // many elements per lane (9000, 8193). The values sit on offsets several times
    // their spread, where sum/sum-of-squares statistics would lose digits.
    let cases = [
        (1usize, 4usize),
        (2, 9000),
        (3, 40),
        (1, 2),
        (3, 90),
        (2, 8193),
        (5, 77),
    ];
    for (rows, len) in cases {
        let d = RowDims { rows, len };
        let offsets: Vec<f64> = (0..rows).map(|_| rng.range(-20.0, 20.0)).collect();
        let mut x: Vec<f64> = normal(&mut rng, rows * len, 1.5)
            .iter()
            .enumerate()
            .map(|(i, v)| v + offsets[i / len])
            .collect();
        // Sample 0 repeats 1, -1, 0, 0 where its length is a multiple of 4: its mean is exactly 0
        // (as activation_stats', whose exact zeros of x - mean the 1-bit forward packs as 0).
        let exact = len % 4 == 0;
        if exact {
            for (j, v) in x[..len].iter_mut().enumerate() {
                *v = [1.0, -1.0, 0.0, 0.0][j % 4];
            }
        }
        let xt = gpu.upload_f32("x", &[rows, len], &common::f32s(&x));
        let astats = gpu.tensor("astats", &[rows, 2]);
        let partials = gpu.tensor("partials", &[standardize::walk_stats_partials_len(d)]);
        let stats = standardize::activation_stats_walk(gpu, d, &xt, &astats, &partials).unwrap();
        gpu.run(&stats.iter().collect::<Vec<_>>()).unwrap();
        let got = gpu.read_f32(&astats).unwrap();
        // The reference of the f32 inputs (their rounding is the kernel's business, not ours).
        let x32: Vec<f64> = common::f32s(&x).iter().map(|&v| v as f64).collect();
        let want = standardize_rows(&x32, len);
        let want_stats = mean_std_pairs(&want);
        // As activation_stats (activation_standardisation_and_sign_with_exact_zeros).
        assert_close(
            &format!("astats walk {rows}x{len}"),
            &got,
            &common::f32s(&want_stats),
            1e-5,
            1e-6,
        );
        if exact {
            assert_eq!(got[0], 0.0, "{rows}x{len}: sample 0 has mean exactly 0");
        }
        // The means have the bits of activation_stats' (the same sums in the same order; the
        // packed engine's signs of x - mean rely on them).
        let gpu_astats = gpu.tensor("gpu astats", &[rows, 2]);
        let gpu_stats = standardize::activation_stats(gpu, d, &xt, &gpu_astats).unwrap();
        gpu.run(&[&gpu_stats]).unwrap();
        let gpu_got = gpu.read_f32(&gpu_astats).unwrap();
        let means = |v: &[f32]| v.iter().step_by(2).map(|m| m.to_bits()).collect::<Vec<_>>();
        assert_eq!(means(&got), means(&gpu_got), "{rows}x{len}: means");
        // The same bits on a second run (fixed-order reductions).
        gpu.run(&stats.iter().collect::<Vec<_>>()).unwrap();
        let again = gpu.read_f32(&astats).unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            again.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "astats walk {rows}x{len} differ between runs"
        );
    }
}
