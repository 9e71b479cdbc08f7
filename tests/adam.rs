//! Adam over a parameter arena against the f64 CPU reference for three steps (bias corrections of
//! steps 1-3, new immediates per record), with parameter groups (learning-rate and weight-decay
//! scales, a frozen group), arena gaps that stay zero, and bad arguments as errors naming the
//! tensor or the limit. Also the grouped SGD step against its reference.
mod common;
mod numeric;

use numeric::{assert_close64, f64s};
use rbnn::gpu::{Gpu, Tensor};
use rbnn::ops::adam::{self, AdamStep};
use rbnn::ops::param_groups::{cpu::per_element, GroupScale, ParamGroups};
use rbnn::ops::sgd::{self, SgdStep};
use rbnn::rng::Rng;

/// Scales of four groups: plain, a scaled learning rate without decay, a frozen group (lr 0)
/// with a large decay scale (which then moves nothing), and a small learning rate.
const SCALES: [GroupScale; 4] = [
    GroupScale::ONE,
    GroupScale {
        lr: 3.0,
        decay: 0.0,
    },
    GroupScale {
        lr: 0.0,
        decay: 5.0,
    },
    GroupScale {
        lr: 0.25,
        decay: 1.0,
    },
];

/// An arena of tensors with odd sizes (so it has alignment gaps), its views, and the group of
/// every element: view i in group i % 4, the gaps in group 0.
struct TestArena {
    shapes: Vec<(String, Vec<usize>)>,
    group: Vec<u32>,
}

impl TestArena {
    fn new(gpu: &Gpu) -> TestArena {
        let shapes: Vec<(String, Vec<usize>)> = [
            vec![16usize, 3, 3, 3],
            vec![16],
            vec![10, 65],
            vec![1],
            vec![7, 1, 1],
        ]
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("p{i}"), s))
        .collect();
        let (whole, views) = gpu.arena("layout", &shapes).unwrap();
        let mut group = vec![0u32; whole.len()];
        for (i, v) in views.iter().enumerate() {
            let o = v.offset as usize / 4;
            group[o..o + v.len()].fill((i % SCALES.len()) as u32);
        }
        TestArena { shapes, group }
    }

    /// A new arena of this layout with random values in the views (gaps zero); returns the whole
    /// tensor and its host copy.
    fn random(&self, gpu: &Gpu, label: &str, rng: &mut Rng, std: f64) -> (Tensor, Vec<f32>) {
        let (whole, views) = gpu.arena(label, &self.shapes).unwrap();
        let mut host = vec![0f32; whole.len()];
        for v in &views {
            let vals = rng.normal_vec(v.len(), std);
            gpu.write(v, &vals);
            let o = v.offset as usize / 4;
            host[o..o + vals.len()].copy_from_slice(&vals);
        }
        (whole, host)
    }

    /// The groups of `SCALES` over this layout, their per-element scales, random parameters (std
    /// 0.5) and random gradients (std 1).
    fn grouped(&self, gpu: &Gpu, rng: &mut Rng) -> Grouped {
        let (params, w) = self.random(gpu, "params", rng, 0.5);
        let (grads, g) = self.random(gpu, "grads", rng, 1.0);
        Grouped {
            groups: ParamGroups::new(gpu, &self.group, &SCALES).unwrap(),
            scales: per_element(&self.group, &SCALES),
            params,
            w,
            grads,
            g,
        }
    }

    /// Elements that belong to no view (the gaps).
    fn gaps(&self, gpu: &Gpu) -> Vec<bool> {
        let (whole, views) = gpu.arena("layout", &self.shapes).unwrap();
        let mut gap = vec![true; whole.len()];
        for v in &views {
            let o = v.offset as usize / 4;
            gap[o..o + v.len()].fill(false);
        }
        gap
    }
}

/// What a grouped optimizer step test starts from (`TestArena::grouped`).
struct Grouped {
    groups: ParamGroups,
    scales: Vec<GroupScale>,
    params: Tensor,
    w: Vec<f32>,
    grads: Tensor,
    g: Vec<f32>,
}

fn record(gpu: &Gpu, d: &rbnn::gpu::Dispatch, immediates: &[u8]) {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        d.record_with(&mut pass, immediates);
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait().unwrap();
}

#[test]
fn three_adam_steps_with_groups_match_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(71);
    let arena = TestArena::new(gpu);
    let Grouped {
        groups,
        scales,
        params,
        w,
        grads,
        ..
    } = arena.grouped(gpu, &mut rng);
    let (exp_avg, _) = gpu.arena("exp_avg", &arena.shapes).unwrap();
    let (exp_avg_sq, _) = gpu.arena("exp_avg_sq", &arena.shapes).unwrap();
    let len = params.len();
    let base = AdamStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
        step: 1,
    };
    let d = adam::step(gpu, &params, &grads, &exp_avg, &exp_avg_sq, &groups, &base).unwrap();
    let mut w64 = f64s(&w);
    let mut m64 = vec![0f64; len];
    let mut v64 = vec![0f64; len];
    for (t, lr) in [(1u64, 1e-2f32), (2, 5e-3), (3, 2e-2)] {
        let s = AdamStep {
            lr,
            step: t,
            ..base
        };
        // New gradients every step (the gaps stay zero).
        let (g_arena, g) = arena.random(gpu, "g", &mut rng, 1.0);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&g_arena.buffer, 0, &grads.buffer, 0, grads.bytes());
        gpu.queue.submit([encoder.finish()]);
        // The dispatch built once, recorded with this step's immediates.
        record(gpu, &d, &adam::step_immediates(len, &s));
        adam::cpu::step(&mut w64, &f64s(&g), &mut m64, &mut v64, &s, &scales);
        let got_w = f64s(&gpu.read_f32(&params).unwrap());
        let got_m = f64s(&gpu.read_f32(&exp_avg).unwrap());
        let got_v = f64s(&gpu.read_f32(&exp_avg_sq).unwrap());
        // A few f32 operations per element; the step is about lr per element, so an absolute
        // tolerance of 1e-6 is a relative 1e-4 of the smallest step (lr 5e-3 x scale 0.25).
        assert_close64(&format!("w after step {t}"), &got_w, &w64, 1e-6, 1e-6);
        assert_close64(&format!("m after step {t}"), &got_m, &m64, 1e-5, 1e-7);
        assert_close64(&format!("v after step {t}"), &got_v, &v64, 1e-5, 1e-9);
        // Continue from the GPU's f32 values, so only each step's rounding is compared.
        (w64, m64, v64) = (got_w, got_m, got_v);
    }
    // The frozen group (lr scale 0) did not move; the others did; the gaps are still zero.
    let w_now = gpu.read_f32(&params).unwrap();
    let gaps = arena.gaps(gpu);
    for i in 0..len {
        if gaps[i] {
            assert_eq!(w_now[i], 0.0, "gap element {i}");
        } else if arena.group[i] == 2 {
            assert_eq!(w_now[i], w[i], "frozen element {i}");
        } else {
            assert_ne!(w_now[i], w[i], "element {i} (group {})", arena.group[i]);
        }
    }
    assert!(gaps.iter().any(|&g| g), "the test arena should have gaps");
}

#[test]
fn the_first_adam_step_moves_each_weight_by_about_lr() {
    // Adam's defining property, independent of the reference: at step 1, m / sqrt(v) = sign(g)
    // (up to eps), so every weight moves by lr against its gradient, whatever the gradient's
    // scale.
    let gpu = gpu_or_skip!();
    let n = 1000;
    let mut rng = Rng::new(73);
    let w: Vec<f32> = rng.normal_vec(n, 1.0);
    let g: Vec<f32> = (0..n)
        .map(|i| (i as f32 - 500.0) * 10f32.powi(i as i32 % 7 - 3))
        .collect();
    let params = gpu.upload_f32("w", &[n], &w);
    let grads = gpu.upload_f32("g", &[n], &g);
    let m = gpu.tensor("m", &[n]);
    let v = gpu.tensor("v", &[n]);
    let groups = ParamGroups::uniform(gpu, n).unwrap();
    let s = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
    };
    let d = adam::step(gpu, &params, &grads, &m, &v, &groups, &s).unwrap();
    numeric::run(gpu, &[d]);
    let got = gpu.read_f32(&params).unwrap();
    for i in 0..n {
        let moved = (w[i] - got[i]) as f64;
        let want = 1e-3 * (g[i] as f64).signum() * if g[i] == 0.0 { 0.0 } else { 1.0 };
        assert!(
            (moved - want).abs() <= 2e-6,
            "element {i}: gradient {}, moved {moved}, want {want}",
            g[i]
        );
    }
}

#[test]
fn grouped_sgd_steps_match_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(79);
    let arena = TestArena::new(gpu);
    let Grouped {
        groups,
        scales,
        params,
        w,
        grads,
        g,
    } = arena.grouped(gpu, &mut rng);
    let (bufs, _) = gpu.arena("momentum", &arena.shapes).unwrap();
    let len = params.len();
    let steps = [
        SgdStep {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.05,
            first_step: true,
        },
        SgdStep {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.05,
            first_step: false,
        },
    ];
    let d = sgd::step_grouped(gpu, &params, &grads, &bufs, &groups, &steps[0]).unwrap();
    let (mut w64, mut b64) = (f64s(&w), vec![0f64; len]);
    for s in &steps {
        record(gpu, &d, &sgd::step_immediates(len, s));
        sgd::cpu::step_grouped(&mut w64, &f64s(&g), &mut b64, s, &scales);
        let got_w = f64s(&gpu.read_f32(&params).unwrap());
        let got_b = f64s(&gpu.read_f32(&bufs).unwrap());
        assert_close64("grouped SGD w", &got_w, &w64, 1e-6, 1e-7);
        assert_close64("grouped SGD buf", &got_b, &b64, 1e-6, 1e-7);
        (w64, b64) = (got_w, got_b);
    }
    // Group 1 (no decay, lr x3) moved by exactly 3x what group 0's rule gives without decay.
    let first_group_1 = (0..len).find(|&i| arena.group[i] == 1).unwrap();
    let i = first_group_1;
    let expected_first = w[i] as f64 - 3.0 * 0.1 * g[i] as f64;
    let expected = expected_first - 3.0 * 0.05 * (0.9 * g[i] as f64 + g[i] as f64);
    assert!((w64[i] - expected).abs() < 1e-5, "{} vs {expected}", w64[i]);
}

#[test]
fn plain_sgd_is_the_grouped_step_with_scale_one() {
    // `sgd::step` (one group of scale 1: the official recipe) and a grouped step whose every
    // group has scale 1 give the same bits.
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(83);
    let arena = TestArena::new(gpu);
    let (pa, w) = arena.random(gpu, "pa", &mut rng, 0.5);
    let (grads, _) = arena.random(gpu, "grads", &mut rng, 1.0);
    let pb = gpu.upload_f32("pb", &pa.shape, &w);
    let ba = gpu.tensor("ba", &pa.shape);
    let bb = gpu.tensor("bb", &pa.shape);
    let s = SgdStep {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
        first_step: true,
    };
    let ones = ParamGroups::new(gpu, &arena.group, &[GroupScale::ONE; 4]).unwrap();
    let plain = sgd::step(gpu, &pa, &grads, &ba, &s).unwrap();
    let grouped = sgd::step_grouped(gpu, &pb, &grads, &bb, &ones, &s).unwrap();
    numeric::run(gpu, &[plain, grouped]);
    let (a, b) = (gpu.read_u32(&pa).unwrap(), gpu.read_u32(&pb).unwrap());
    assert_eq!(a, b);
    assert_ne!(gpu.read_f32(&pa).unwrap(), w, "the step moved nothing");
}

#[test]
fn bad_arguments_are_errors_naming_what_is_wrong() {
    let gpu = gpu_or_skip!();
    let p = gpu.tensor("params", &[10]);
    let g = gpu.tensor("grads", &[10]);
    let m = gpu.tensor("exp_avg", &[10]);
    let short = gpu.tensor("short exp_avg_sq", &[9]);
    let v = gpu.tensor("exp_avg_sq", &[10]);
    let groups = ParamGroups::uniform(gpu, 10).unwrap();
    let s = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
    };
    let err = |r: anyhow::Result<rbnn::gpu::Dispatch>| format!("{:#}", r.err().unwrap());
    let e = err(adam::step(gpu, &p, &g, &m, &short, &groups, &s));
    assert!(e.contains("short exp_avg_sq"), "{e}");
    let e = err(adam::step(
        gpu,
        &p,
        &g,
        &m,
        &v,
        &groups,
        &AdamStep { step: 0, ..s },
    ));
    assert!(e.contains("start at 1"), "{e}");
    let eleven = ParamGroups::uniform(gpu, 11).unwrap();
    let e = err(adam::step(gpu, &p, &g, &m, &v, &eleven, &s));
    assert!(e.contains("11 elements"), "{e}");
    let e = err(sgd::step_grouped(
        gpu,
        &p,
        &g,
        &m,
        &eleven,
        &SgdStep {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            first_step: true,
        },
    ));
    assert!(e.contains("11 elements"), "{e}");
    // Group indices past the scales, and negative or non-finite scales.
    let Err(e) = ParamGroups::new(gpu, &[0, 1, 2], &[GroupScale::ONE; 2]) else {
        panic!("group 2 of 2 accepted");
    };
    assert!(
        format!("{e:#}").contains("element 2 is in group 2"),
        "{e:#}"
    );
    for bad in [-1.0, f32::NAN, f32::INFINITY] {
        let scale = GroupScale {
            lr: bad,
            decay: 1.0,
        };
        assert!(ParamGroups::new(gpu, &[0], &[scale]).is_err(), "{bad}");
        let scale = GroupScale {
            lr: 1.0,
            decay: bad,
        };
        assert!(ParamGroups::new(gpu, &[0], &[scale]).is_err(), "{bad}");
    }
}
