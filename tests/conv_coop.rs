//! The tensor-core gradient convolutions (ops::conv_coop) against the f64 CPU reference, on
//! adapters that have them (skipped elsewhere, e.g. on lavapipe): stride 1 and 2, channel counts
//! that are not multiples of the 64-wide tiles, batches that leave partial tiles, a split weight
//! gradient, and dy spanning six orders of magnitude (the hi + lo f16 split must keep f32-like
//! precision over that range).
mod common;
use common::{assert_close, rel_l2};
use rbnn::ops::conv::{cpu, ConvShape};
use rbnn::ops::conv_coop;
use rbnn::rng::Rng;

fn shapes() -> Vec<ConvShape> {
    let sq = |n, ci, hw, co, stride| ConvShape {
        n,
        ci,
        h: hw,
        w: hw,
        co,
        kh: 3,
        kw: 3,
        stride,
        pad: 1,
    };
    vec![
        sq(2, 16, 8, 16, 1),
        sq(3, 40, 7, 24, 1),
        sq(2, 24, 9, 70, 2),
        sq(4, 64, 8, 64, 1),
        sq(2, 128, 4, 96, 1),
        sq(16, 32, 16, 32, 1),
        ConvShape {
            n: 2,
            ci: 33,
            h: 6,
            w: 5,
            co: 20,
            kh: 1,
            kw: 1,
            stride: 2,
            pad: 0,
        },
    ]
}

/// dy with magnitudes from 1e-6 to 1 (sign random).
fn wide_range(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let mag = 10f64.powf(-6.0 * rng.uniform()) as f32;
            if rng.below(2) == 0 {
                mag
            } else {
                -mag
            }
        })
        .collect()
}

fn ternary(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.below(3) as f32 - 1.0).collect()
}

#[test]
fn tensor_core_gradients_match_cpu() {
    let gpu = gpu_or_skip!();
    if !conv_coop::supported(gpu) {
        eprintln!(
            "skipped: {} has no usable cooperative matrices",
            gpu.info.name
        );
        return;
    }
    let mut rng = Rng::new(17);
    for s in shapes() {
        let dyv = wide_range(s.output_len(), &mut rng);
        let xv = ternary(s.input_len(), &mut rng);
        // bw = alpha_o * t with t ternary, some alpha negative.
        let alphav: Vec<f32> = (0..s.co)
            .map(|o| rng.uniform_vec(1, 0.2, 2.0)[0] * if o % 5 == 3 { -1.0 } else { 1.0 })
            .collect();
        let per_co = s.weight_len() / s.co;
        let bwv: Vec<f32> = ternary(s.weight_len(), &mut rng)
            .iter()
            .enumerate()
            .map(|(i, t)| alphav[i / per_co] * t)
            .collect();
        let dy = gpu.upload_f32("dy", &[s.output_len()], &dyv);
        let x = gpu.upload_f32("x", &[s.input_len()], &xv);
        let bw = gpu.upload_f32("bw", &[s.weight_len()], &bwv);
        let alpha = gpu.upload_f32("alpha", &[s.co], &alphav);
        let dx = gpu.upload_f32("dx", &[s.input_len()], &vec![f32::NAN; s.input_len()]);
        let dw = gpu.upload_f32("dw", &[s.weight_len()], &vec![f32::NAN; s.weight_len()]);
        let data = conv_coop::backward_data(gpu, &s, &dy, &bw, &alpha, &dx).unwrap();
        let weight = conv_coop::backward_weight(gpu, &s, &x, &dy, &dw).unwrap();
        let mut all = vec![&data];
        all.extend(weight.dispatches());
        gpu.run(&all).unwrap();
        let want_dx = cpu::backward_data(&s, &dyv, &bwv);
        let want_dw = cpu::backward_weight(&s, &xv, &dyv);
        // Sums of up to co*9 (dx) or n*oh*ow (dw) terms of size <= 2: f32 accumulation error
        // plus the split's ~2^-22 relative error per term.
        let terms_dx = (s.co * s.kh * s.kw) as f64;
        let terms_dw = (s.n * s.oh() * s.ow()) as f64;
        let got_dx = gpu.read_f32(&dx).unwrap();
        let got_dw = gpu.read_f32(&dw).unwrap();
        // One f16 term per dy value would give ~1e-4 here; hi + lo gives f32-like 1e-7.
        let (e_dx, e_dw) = (rel_l2(&got_dx, &want_dx), rel_l2(&got_dw, &want_dw));
        eprintln!("{s:?}: relative L2 error dx {e_dx:.1e}, dw {e_dw:.1e}");
        assert!(
            e_dx < 2e-6 && e_dw < 2e-6,
            "{s:?}: dx {e_dx:.1e}, dw {e_dw:.1e}"
        );
        assert_close(
            &format!("dx {s:?}"),
            &got_dx,
            &want_dx,
            1e-4,
            2e-7 * terms_dx,
        );
        assert_close(
            &format!("dw {s:?} ({} splits)", weight.splits()),
            &got_dw,
            &want_dw,
            1e-4,
            2e-7 * terms_dw,
        );
    }
}
