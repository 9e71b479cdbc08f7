//! SGD over a parameter arena against the f64 CPU reference for two steps (the first one
//! creating the momentum buffer), new immediates per record, arena gaps, `fill`, and
//! `find_nonfinite` against its reference.
mod common;
mod numeric;

use numeric::{assert_close64, f64s};
use rbnn::ops::sgd::{self, cpu, SgdStep};
use rbnn::rng::Rng;

#[test]
fn two_steps_match_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(61);
    // Odd sizes so the arena has alignment gaps between its views.
    let shapes: Vec<(String, Vec<usize>)> =
        [vec![16usize, 3, 3, 3], vec![16], vec![10, 65], vec![1]]
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("p{i}"), s))
            .collect();
    let (params, pviews) = gpu.arena("params", &shapes).unwrap();
    let (grads, gviews) = gpu.arena("grads", &shapes).unwrap();
    let (bufs, bviews) = gpu.arena("momentum", &shapes).unwrap();
    let len = params.len();
    // Host copies of whole arenas: the gaps stay zero; views get random values.
    let mut w = vec![0f32; len];
    let mut buf_garbage = vec![0f32; len];
    for (pv, bv) in pviews.iter().zip(&bviews) {
        let vals = rng.normal_vec(pv.len(), 0.5);
        gpu.write(pv, &vals);
        let o = pv.offset as usize / 4;
        w[o..o + vals.len()].copy_from_slice(&vals);
        // The first step must ignore whatever the momentum buffer held.
        let garbage = rng.normal_vec(bv.len(), 10.0);
        gpu.write(bv, &garbage);
        buf_garbage[o..o + garbage.len()].copy_from_slice(&garbage);
    }
    let steps = [
        SgdStep {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            first_step: true,
        },
        SgdStep {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
            first_step: false,
        },
    ];
    let d = sgd::step(gpu, &params, &grads, &bufs, &steps[0]).unwrap();
    let mut w64 = f64s(&w);
    let mut buf64 = f64s(&buf_garbage);
    for s in &steps {
        let mut g = vec![0f32; len];
        for gv in &gviews {
            let vals = rng.normal_vec(gv.len(), 1.0);
            gpu.write(gv, &vals);
            let o = gv.offset as usize / 4;
            g[o..o + vals.len()].copy_from_slice(&vals);
        }
        // The dispatch built once, recorded with this step's immediates.
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            d.record_with(&mut pass, &sgd::step_immediates(len, s));
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.wait().unwrap();
        // The f32 values the GPU starts from, so only this step's rounding is compared.
        cpu::step(&mut w64, &f64s(&g), &mut buf64, s);
        let got_w = f64s(&gpu.read_f32(&params).unwrap());
        let got_b = f64s(&gpu.read_f32(&bufs).unwrap());
        // A few f32 operations per element.
        assert_close64(
            &format!("w after first={}", s.first_step),
            &got_w,
            &w64,
            1e-6,
            1e-7,
        );
        assert_close64(
            &format!("buf after first={}", s.first_step),
            &got_b,
            &buf64,
            1e-6,
            1e-7,
        );
        w64 = got_w;
        buf64 = got_b;
    }
    // Gaps between the views are still zero.
    let mut covered = vec![false; len];
    for v in &pviews {
        let o = v.offset as usize / 4;
        covered[o..o + v.len()].iter_mut().for_each(|c| *c = true);
    }
    let p = gpu.read_f32(&params).unwrap();
    assert!(covered.iter().zip(&p).all(|(&c, &v)| c || v == 0.0));
    assert!(
        covered.iter().any(|&c| !c),
        "the test arena should have gaps"
    );
}

#[test]
fn fill_sets_every_element() {
    let gpu = gpu_or_skip!();
    let t = gpu.upload_f32("t", &[70_001], &vec![3.0; 70_001]);
    numeric::run(gpu, &[sgd::fill_f32(gpu, &t, -0.5).unwrap()]);
    assert!(gpu.read_f32(&t).unwrap().iter().all(|&v| v == -0.5));
    numeric::run(gpu, &[sgd::fill(gpu, &t, 7).unwrap()]);
    assert!(gpu.read_u32(&t).unwrap().iter().all(|&v| v == 7));
}

#[test]
fn mismatched_arenas_are_rejected() {
    let gpu = gpu_or_skip!();
    let a = gpu.tensor("params", &[10]);
    let b = gpu.tensor("grads", &[11]);
    let s = SgdStep {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
        first_step: true,
    };
    let err = sgd::step(gpu, &a, &b, &a, &s).err().unwrap();
    assert!(format!("{err:#}").contains("grads"), "{err:#}");
}

#[test]
fn find_nonfinite_flags_nan_and_infinity_anywhere() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(67);
    let flag = gpu.tensor("nonfinite flag", &[1]);
    // Lengths that are not multiples of the workgroup, and one past a 65,535-workgroup row of the
    // 1D grid (so the y dimension is used).
    for len in [1usize, 1000, 65_535 * 256 + 300] {
        let base: Vec<f32> = rng.normal_vec(len, 3.0);
        let mut cases = vec![("finite", base.clone())];
        // Largest finite values and subnormals are finite.
        let mut extremes = base.clone();
        extremes[0] = f32::MAX;
        extremes[len / 2] = -f32::MAX;
        extremes[len - 1] = f32::from_bits(1);
        cases.push(("extremes", extremes));
        let large = len > 1 << 20;
        for (what, value) in [
            ("NaN", f32::NAN),
            ("+inf", f32::INFINITY),
            ("-inf", f32::NEG_INFINITY),
            ("negative NaN", f32::from_bits(0xffc0_0001)),
        ] {
            // The large case only where the grid's second row matters (slow on a CPU adapter).
            let places = if large {
                vec![len - 1]
            } else {
                vec![0, len / 3, len - 1]
            };
            for at in places {
                let mut x = base.clone();
                x[at] = value;
                cases.push((what, x));
            }
        }
        let t = gpu.tensor("checked", &[len]);
        let d = sgd::find_nonfinite(gpu, &t, &flag).unwrap();
        for (what, x) in cases {
            gpu.write(&t, &x);
            gpu.write(&flag, &[0u32]);
            gpu.run(&[&d]).unwrap();
            let got = gpu.read_u32(&flag).unwrap()[0];
            assert_eq!(got == 1, cpu::any_nonfinite(&x), "{what}, length {len}");
            assert!(got <= 1, "{what}: flag {got}");
        }
    }
    // A wrong flag tensor is refused by name.
    let t = gpu.tensor("checked", &[4]);
    let Err(e) = sgd::find_nonfinite(gpu, &t, &gpu.tensor("two words", &[2])) else {
        panic!("a flag of two words was accepted");
    };
    assert!(format!("{e:#}").contains("two words"), "{e:#}");
}
