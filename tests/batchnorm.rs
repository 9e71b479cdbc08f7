//! BatchNorm kernels against the f64 CPU reference, the CPU backward against finite differences,
//! the running-statistics update (and its switch), and bit-for-bit determinism, for both kernel
//! variants (the GPU's and the software adapters' `*_walk` kernels) whatever the adapter.
mod common;
mod numeric;

use numeric::{assert_close64, f64s, numeric_grad, project, run};
use rbnn::gpu::{Gpu, KernelVariant, Tensor};
use rbnn::ops::batchnorm::{self as bn, cpu, BatchNorm, BnDims};
use rbnn::ops::channel_dot::{self, channel_dot_finish};
use rbnn::rng::Rng;

/// A layer's tensors on the GPU and their host values.
struct Layer {
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    mean: Tensor,
    rstd: Tensor,
    partials: Tensor,
    dot_partials: Tensor,
    host: [Vec<f32>; 4],
}

impl Layer {
    fn new(gpu: &Gpu, d: BnDims, rng: &mut Rng) -> Layer {
        let c = d.c;
        let host = [
            rng.uniform_vec(c, 0.5, 1.5),
            rng.normal_vec(c, 0.3),
            rng.normal_vec(c, 0.5),
            rng.uniform_vec(c, 0.5, 2.0),
        ];
        Layer {
            gamma: gpu.upload_f32("gamma", &[c], &host[0]),
            beta: gpu.upload_f32("beta", &[c], &host[1]),
            running_mean: gpu.upload_f32("running_mean", &[c], &host[2]),
            running_var: gpu.upload_f32("running_var", &[c], &host[3]),
            mean: gpu.tensor("mean", &[c]),
            rstd: gpu.tensor("rstd", &[c]),
            // Oversized on purpose: a shared workspace may be larger than one layer needs.
            // (The software variant's workspace is the larger one.)
            partials: gpu.tensor("partials", &[d.partials_len(KernelVariant::Software) + 5]),
            dot_partials: gpu.tensor("dot partials", &[d.dot_partials_len()]),
            host,
        }
    }
    fn bn(&self) -> BatchNorm<'_> {
        BatchNorm {
            gamma: &self.gamma,
            beta: &self.beta,
            running_mean: &self.running_mean,
            running_var: &self.running_var,
            mean: &self.mean,
            rstd: &self.rstd,
            partials: &self.partials,
            dot_partials: Some(&self.dot_partials),
        }
    }
    fn host64(&self) -> [Vec<f64>; 4] {
        self.host.clone().map(|v| f64s(&v))
    }
}

/// x with a per-channel offset several times its spread, where sum/sum-of-squares statistics
/// would lose digits.
fn input(d: BnDims, rng: &mut Rng) -> Vec<f32> {
    let offsets: Vec<f64> = (0..d.c).map(|_| rng.range(-4.0, 4.0)).collect();
    let mut x = Vec::with_capacity(d.total());
    for _ in 0..d.n {
        for off in &offsets {
            for _ in 0..d.hw {
                x.push((off + 0.7 * rng.normal()) as f32);
            }
        }
    }
    x
}

/// Both variants, whatever the adapter, so that each stays tested on lavapipe.
const VARIANTS: [KernelVariant; 2] = [KernelVariant::Gpu, KernelVariant::Software];

// Batch 1; odd spatial; BatchNorm1d; 2 chunks with a ragged last one; 258 chunks (more partials
// than the 256 lanes of the final stage); planes smaller than and not multiples of the 64 lanes
// of the software variant's walk (which then wraps over several samples per step).
const SHAPES: &[&[usize]] = &[
    &[1, 3, 5, 7],
    &[4, 13, 9, 11],
    &[7, 19],
    &[3, 5, 37, 41],
    &[1, 2, 1030, 1025],
    &[9, 6, 3, 5],
    &[5, 3, 10, 13],
];

#[test]
fn forward_train_matches_cpu_and_updates_running_stats() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(11);
    for (shape, variant) in SHAPES.iter().flat_map(|s| VARIANTS.map(|v| (s, v))) {
        let d = BnDims::of(shape).unwrap();
        let layer = Layer::new(gpu, d, &mut rng);
        let xv = input(d, &mut rng);
        let x = gpu.upload_f32("x", shape, &xv);
        let y = gpu.tensor("y", shape);
        run(
            gpu,
            &bn::forward_train(gpu, variant, &layer.bn(), &x, &y, true).unwrap(),
        );

        let [g, b, rm, rv] = layer.host64();
        let p = cpu::Params {
            gamma: &g,
            beta: &b,
            running_mean: &rm,
            running_var: &rv,
        };
        let want = cpu::forward_train(&f64s(&xv), d, &p, bn::MOMENTUM as f64, bn::EPS as f64);
        let read = |t: &Tensor| f64s(&gpu.read_f32(t).unwrap());
        let tag = format!("{shape:?} {variant:?}");
        // f32 statistics over up to 1M elements: mean within 2e-6 of the offset-sized values,
        // rstd and y within 1e-4 relative.
        assert_close64(&format!("y {tag}"), &read(&y), &want.y, 1e-4, 1e-4);
        assert_close64(
            &format!("mean {tag}"),
            &read(&layer.mean),
            &want.mean,
            1e-6,
            2e-6,
        );
        assert_close64(
            &format!("rstd {tag}"),
            &read(&layer.rstd),
            &want.rstd,
            1e-4,
            0.0,
        );
        assert_close64(
            &format!("running_mean {tag}"),
            &read(&layer.running_mean),
            &want.running_mean,
            1e-6,
            1e-6,
        );
        assert_close64(
            &format!("running_var {tag}"),
            &read(&layer.running_var),
            &want.running_var,
            1e-5,
            0.0,
        );
    }
}

#[test]
fn forward_train_can_leave_running_stats_alone() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(12);
    let shape = [4, 13, 9, 11];
    for variant in VARIANTS {
        leaves_running_stats_alone(gpu, variant, &shape, &mut rng);
    }
}

fn leaves_running_stats_alone(gpu: &Gpu, variant: KernelVariant, shape: &[usize], rng: &mut Rng) {
    let d = BnDims::of(shape).unwrap();
    let layer = Layer::new(gpu, d, rng);
    let xv = input(d, rng);
    let x = gpu.upload_f32("x", shape, &xv);
    let (y_flag, y_imm) = (gpu.tensor("y", shape), gpu.tensor("y", shape));

    // By the flag.
    run(
        gpu,
        &bn::forward_train(gpu, variant, &layer.bn(), &x, &y_flag, false).unwrap(),
    );
    assert_eq!(gpu.read_f32(&layer.running_mean).unwrap(), layer.host[2]);
    assert_eq!(gpu.read_f32(&layer.running_var).unwrap(), layer.host[3]);

    // By recording the stats dispatch of an updating forward with other immediates.
    let ds = bn::forward_train(gpu, variant, &layer.bn(), &x, &y_imm, true).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        ds[0].record(&mut pass);
        ds[1].record_with(&mut pass, &bn::immediates(d, variant, false));
        ds[2].record(&mut pass);
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait().unwrap();
    assert_eq!(gpu.read_f32(&layer.running_mean).unwrap(), layer.host[2]);
    assert_eq!(gpu.read_f32(&layer.running_var).unwrap(), layer.host[3]);
    assert_eq!(
        gpu.read_f32(&y_flag).unwrap(),
        gpu.read_f32(&y_imm).unwrap()
    );
}

#[test]
fn forward_eval_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(13);
    for shape in [&[1usize, 3, 5, 7][..], &[3, 10], &[2, 17, 8, 8]] {
        let d = BnDims::of(shape).unwrap();
        let layer = Layer::new(gpu, d, &mut rng);
        let xv = input(d, &mut rng);
        let x = gpu.upload_f32("x", shape, &xv);
        let y = gpu.tensor("y", shape);
        run(gpu, &[bn::forward_eval(gpu, &layer.bn(), &x, &y).unwrap()]);
        let [g, b, rm, rv] = layer.host64();
        let p = cpu::Params {
            gamma: &g,
            beta: &b,
            running_mean: &rm,
            running_var: &rv,
        };
        let want = cpu::forward_eval(&f64s(&xv), d, &p, bn::EPS as f64);
        let got = f64s(&gpu.read_f32(&y).unwrap());
        assert_close64(&format!("eval y {shape:?}"), &got, &want, 1e-5, 1e-5);
    }
}

/// Runs forward_train then backward on the GPU; returns (y, mean, rstd, dx, dgamma, dbeta).
fn forward_backward(
    gpu: &Gpu,
    variant: KernelVariant,
    layer: &Layer,
    shape: &[usize],
    xv: &[f32],
    dyv: &[f32],
) -> [Vec<f32>; 6] {
    let c = shape[1];
    let x = gpu.upload_f32("x", shape, xv);
    let dy = gpu.upload_f32("dy", shape, dyv);
    let y = gpu.tensor("y", shape);
    let dx = gpu.tensor("dx", shape);
    let dgamma = gpu.tensor("dgamma", &[c]);
    let dbeta = gpu.tensor("dbeta", &[c]);
    let mut ds = bn::forward_train(gpu, variant, &layer.bn(), &x, &y, false).unwrap();
    ds.extend(bn::backward(gpu, variant, &layer.bn(), &x, &dy, &dx, &dgamma, &dbeta).unwrap());
    run(gpu, &ds);
    [&y, &layer.mean, &layer.rstd, &dx, &dgamma, &dbeta].map(|t| gpu.read_f32(t).unwrap())
}

#[test]
fn backward_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(14);
    for (shape, variant) in SHAPES.iter().flat_map(|s| VARIANTS.map(|v| (s, v))) {
        let d = BnDims::of(shape).unwrap();
        let layer = Layer::new(gpu, d, &mut rng);
        let xv = input(d, &mut rng);
        let dyv = rng.normal_vec(d.total(), 1.0);
        let [_, mean, rstd, dx, dgamma, dbeta] =
            forward_backward(gpu, variant, &layer, shape, &xv, &dyv);
        // The CPU backward from the GPU's saved statistics checks the backward kernels alone.
        let (want_dx, want_dgamma, want_dbeta) = cpu::backward(
            &f64s(&xv),
            &f64s(&dyv),
            d,
            &f64s(&layer.host[0]),
            &f64s(&mean),
            &f64s(&rstd),
        );
        let tag = format!("{shape:?} {variant:?}");
        assert_backward_close(
            &tag,
            d,
            [&dx, &dgamma, &dbeta],
            [&want_dx, &want_dgamma, &want_dbeta],
        );
        if variant == KernelVariant::Software {
            check_dot_partials(gpu, &layer, shape, &xv, &dx, &tag);
        }
    }
}

/// The backward's outputs against the CPU reference.
fn assert_backward_close(
    tag: &str,
    d: BnDims,
    [dx, dgamma, dbeta]: [&[f32]; 3],
    [want_dx, want_dgamma, want_dbeta]: [&[f64]; 3],
) {
    // dgamma and dbeta are sums of M = N*HW terms of size ~1 (|sum| ~ sqrt(M)): f32 error
    // grows like sqrt(M) * 6e-8 per level of the trees.
    let sum_tol = 1e-5 * (d.count() as f64).sqrt();
    assert_close64(
        &format!("dbeta {tag}"),
        &f64s(dbeta),
        want_dbeta,
        1e-5,
        sum_tol,
    );
    assert_close64(
        &format!("dgamma {tag}"),
        &f64s(dgamma),
        want_dgamma,
        1e-5,
        sum_tol,
    );
    assert_close64(&format!("dx {tag}"), &f64s(dx), want_dx, 1e-4, 1e-5);
}

/// The software variant's dot partials give channel_dot(dx, x) through channel_dot_finish
/// (the alpha gradient of a binary conv before the BatchNorm), against the f64 reference on
/// the GPU's dx.
fn check_dot_partials(
    gpu: &Gpu,
    layer: &Layer,
    shape: &[usize],
    xv: &[f32],
    dx: &[f32],
    tag: &str,
) {
    let d = BnDims::of(shape).unwrap();
    let div = gpu.upload_f32("div", &[d.c], &vec![1.0; d.c]);
    let out = gpu.tensor("dot", &[d.c]);
    let finish = channel_dot_finish(gpu, shape, &layer.dot_partials, &div, &out).unwrap();
    run(gpu, &finish.dispatches);
    let ones = vec![1.0; d.c];
    let want = channel_dot::cpu::channel_dot(&f64s(dx), &f64s(xv), d.n, d.c, d.hw, &ones);
    // f32 sums of M terms of size up to ~|x| (offsets up to 4), as dgamma's.
    let tol = 5e-5 * (d.count() as f64).sqrt();
    let got = f64s(&gpu.read_f32(&out).unwrap());
    assert_close64(&format!("dot partials {tag}"), &got, &want, 1e-5, tol);
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut rng = Rng::new(15);
    for shape in [&[2usize, 3, 2, 3][..], &[4, 3], &[1, 2, 3, 1]] {
        let d = BnDims::of(shape).unwrap();
        let x: Vec<f64> = (0..d.total()).map(|_| rng.normal() + 0.5).collect();
        let r: Vec<f64> = (0..d.total()).map(|_| rng.normal()).collect();
        let gamma: Vec<f64> = (0..d.c).map(|_| rng.range(0.5, 1.5)).collect();
        let beta: Vec<f64> = (0..d.c).map(|_| rng.normal()).collect();
        let ones = vec![1.0; d.c];
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let p = cpu::Params {
                gamma,
                beta,
                running_mean: &ones,
                running_var: &ones,
            };
            project(&cpu::forward_train(x, d, &p, 0.1, 1e-5).y, &r)
        };
        let p = cpu::Params {
            gamma: &gamma,
            beta: &beta,
            running_mean: &ones,
            running_var: &ones,
        };
        let fwd = cpu::forward_train(&x, d, &p, 0.1, 1e-5);
        let (dx, dgamma, dbeta) = cpu::backward(&x, &r, d, &gamma, &fwd.mean, &fwd.rstd);
        let h = 1e-6;
        let tag = format!("{shape:?}");
        // Central differences in f64 with h = 1e-6: truncation ~h^2, rounding ~1e-16/h.
        let num_dx = numeric_grad(|v| loss(v, &gamma, &beta), &x, h);
        assert_close64(&format!("fd dx {tag}"), &dx, &num_dx, 1e-6, 1e-7);
        let num_dgamma = numeric_grad(|v| loss(&x, v, &beta), &gamma, h);
        assert_close64(
            &format!("fd dgamma {tag}"),
            &dgamma,
            &num_dgamma,
            1e-6,
            1e-7,
        );
        let num_dbeta = numeric_grad(|v| loss(&x, &gamma, v), &beta, h);
        assert_close64(&format!("fd dbeta {tag}"), &dbeta, &num_dbeta, 1e-6, 1e-7);
    }
}

#[test]
fn reductions_are_deterministic() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(16);
    let shape = [3, 5, 37, 41];
    let d = BnDims::of(&shape).unwrap();
    let layer = Layer::new(gpu, d, &mut rng);
    let xv = input(d, &mut rng);
    let dyv = rng.normal_vec(d.total(), 1.0);
    for variant in VARIANTS {
        let first = forward_backward(gpu, variant, &layer, &shape, &xv, &dyv);
        let second = forward_backward(gpu, variant, &layer, &shape, &xv, &dyv);
        for (i, (a, b)) in first.iter().zip(&second).enumerate() {
            let (a, b): (Vec<u32>, Vec<u32>) = (
                a.iter().map(|v| v.to_bits()).collect(),
                b.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(
                a, b,
                "output {i} of forward+backward differs between runs ({variant:?})"
            );
        }
    }
}

#[test]
fn training_rejects_one_value_per_channel() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(17);
    let d = BnDims::of(&[1, 5]).unwrap();
    let layer = Layer::new(gpu, d, &mut rng);
    let x = gpu.tensor("x", &[1, 5]);
    let y = gpu.tensor("y", &[1, 5]);
    let err = bn::forward_train(gpu, KernelVariant::Software, &layer.bn(), &x, &y, true)
        .err()
        .expect("BatchNorm1d training with batch 1 must fail");
    assert!(
        format!("{err:#}").contains("more than one value"),
        "{err:#}"
    );
    // Evaluation with batch 1 is fine.
    assert!(bn::forward_eval(gpu, &layer.bn(), &x, &y).is_ok());
}

/// Runs the software adapters' fused BatchNorm -> [+ residual] -> hardtanh forward and backward;
/// returns (y, mean, rstd, dx, dgamma, dbeta, residual gradient or empty).
fn fused_forward_backward(
    gpu: &Gpu,
    layer: &Layer,
    shape: &[usize],
    xv: &[f32],
    residual: Option<&[f32]>,
    dyv: &[f32],
) -> [Vec<f32>; 7] {
    let c = shape[1];
    let x = gpu.upload_f32("x", shape, xv);
    let dy = gpu.upload_f32("dy", shape, dyv);
    let res = residual.map(|r| gpu.upload_f32("residual", shape, r));
    let res_grad = gpu.tensor("residual grad", shape);
    let y = gpu.tensor("y", shape);
    let dx = gpu.tensor("dx", shape);
    let dgamma = gpu.tensor("dgamma", &[c]);
    let dbeta = gpu.tensor("dbeta", &[c]);
    let mut ds = bn::forward_train_hardtanh(gpu, &layer.bn(), &x, res.as_ref(), &y, true).unwrap();
    let res_pair = res.as_ref().map(|r| (r, &res_grad));
    ds.extend(
        bn::backward_hardtanh(gpu, &layer.bn(), &x, res_pair, &dy, &dx, &dgamma, &dbeta).unwrap(),
    );
    run(gpu, &ds);
    let read = |t: &Tensor| gpu.read_f32(t).unwrap();
    [
        read(&y),
        read(&layer.mean),
        read(&layer.rstd),
        read(&dx),
        read(&dgamma),
        read(&dbeta),
        if residual.is_some() {
            read(&res_grad)
        } else {
            Vec::new()
        },
    ]
}

#[test]
fn fused_hardtanh_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(18);
    for (shape, with_residual) in SHAPES.iter().flat_map(|s| [(s, false), (s, true)]) {
        let d = BnDims::of(shape).unwrap();
        let layer = Layer::new(gpu, d, &mut rng);
        let xv = input(d, &mut rng);
        let residual = with_residual.then(|| rng.normal_vec(d.total(), 0.5));
        let dyv = rng.normal_vec(d.total(), 1.0);
        let [y, mean, rstd, dx, dgamma, dbeta, res_grad] =
            fused_forward_backward(gpu, &layer, shape, &xv, residual.as_deref(), &dyv);
        let [g, b, rm, rv] = layer.host64();
        let p = cpu::Params {
            gamma: &g,
            beta: &b,
            running_mean: &rm,
            running_var: &rv,
        };
        let res64 = residual.as_deref().map(f64s);
        let want = cpu::forward_train_hardtanh(
            &f64s(&xv),
            d,
            &p,
            res64.as_deref(),
            bn::MOMENTUM as f64,
            bn::EPS as f64,
        );
        let tag = format!("{shape:?} residual {with_residual}");
        // As forward_train_matches_cpu: y within 1e-4, the statistics as there.
        assert_close64(&format!("y {tag}"), &f64s(&y), &want.y, 1e-4, 1e-4);
        assert_close64(&format!("mean {tag}"), &f64s(&mean), &want.mean, 1e-6, 2e-6);
        assert_close64(&format!("rstd {tag}"), &f64s(&rstd), &want.rstd, 1e-4, 0.0);
        // The backward from the GPU's saved statistics, as backward_matches_cpu.
        let (want_dx, want_dgamma, want_dbeta, want_g) = cpu::backward_hardtanh(
            &f64s(&xv),
            &f64s(&dyv),
            d,
            &g,
            &b,
            &f64s(&mean),
            &f64s(&rstd),
            res64.as_deref(),
        );
        assert_backward_close(
            &tag,
            d,
            [&dx, &dgamma, &dbeta],
            [&want_dx, &want_dgamma, &want_dbeta],
        );
        check_dot_partials(gpu, &layer, shape, &xv, &dx, &tag);
        if with_residual {
            // dy or 0, element by element (no value sits within f32 rounding of the bounds).
            assert_close64(
                &format!("residual grad {tag}"),
                &f64s(&res_grad),
                &want_g,
                0.0,
                0.0,
            );
        }
        // The clamp is active on part of the elements, else this would test little.
        let clamped = want.y.iter().filter(|v| v.abs() == 1.0).count();
        assert!(
            clamped > 0 && clamped < want.y.len() || want.y.len() < 40,
            "{tag}: {clamped} of {} clamped",
            want.y.len()
        );
    }
}

#[test]
fn cpu_fused_hardtanh_backward_matches_finite_differences() {
    let mut rng = Rng::new(19);
    for (shape, with_residual) in [(&[2usize, 3, 2, 3][..], false), (&[3, 2, 5, 1], true)] {
        let d = BnDims::of(shape).unwrap();
        let x: Vec<f64> = (0..d.total()).map(|_| rng.normal() + 0.5).collect();
        let res: Vec<f64> = (0..d.total()).map(|_| 0.5 * rng.normal()).collect();
        let residual = with_residual.then_some(&res[..]);
        let r: Vec<f64> = (0..d.total()).map(|_| rng.normal()).collect();
        let gamma: Vec<f64> = (0..d.c).map(|_| rng.range(0.5, 1.5)).collect();
        let beta: Vec<f64> = (0..d.c).map(|_| 0.3 * rng.normal()).collect();
        let ones = vec![1.0; d.c];
        let forward = |x: &[f64], gamma: &[f64], beta: &[f64], residual: Option<&[f64]>| {
            let p = cpu::Params {
                gamma,
                beta,
                running_mean: &ones,
                running_var: &ones,
            };
            cpu::forward_train_hardtanh(x, d, &p, residual, 0.1, 1e-5)
        };
        let fwd = forward(&x, &gamma, &beta, residual);
        let (dx, dgamma, dbeta, g) =
            cpu::backward_hardtanh(&x, &r, d, &gamma, &beta, &fwd.mean, &fwd.rstd, residual);
        let tag = format!("{shape:?} residual {with_residual}");
        // Finite differences are meaningless across the clamp's kinks: keep every
        // pre-clamp value well away from them, and some clamped and some not.
        let inner = fwd.y.iter().filter(|v| v.abs() < 1.0).count();
        assert!(inner > 0 && inner < fwd.y.len(), "{tag}: {inner} inside");
        let h = 1e-6;
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64], residual: Option<&[f64]>| {
            project(&forward(x, gamma, beta, residual).y, &r)
        };
        let p = cpu::Params {
            gamma: &gamma,
            beta: &beta,
            running_mean: &ones,
            running_var: &ones,
        };
        let z = cpu::forward_train(&x, d, &p, 0.1, 1e-5).y;
        for (e, z) in z.iter().enumerate() {
            let u = z + residual.map_or(0.0, |r| r[e]);
            assert!(
                (u.abs() - 1.0).abs() > 1e-4,
                "{tag}: pre-clamp value {e} = {u}"
            );
        }
        let num_dx = numeric_grad(|v| loss(v, &gamma, &beta, residual), &x, h);
        assert_close64(&format!("fd dx {tag}"), &dx, &num_dx, 1e-6, 1e-7);
        let num_dgamma = numeric_grad(|v| loss(&x, v, &beta, residual), &gamma, h);
        assert_close64(
            &format!("fd dgamma {tag}"),
            &dgamma,
            &num_dgamma,
            1e-6,
            1e-7,
        );
        let num_dbeta = numeric_grad(|v| loss(&x, &gamma, v, residual), &beta, h);
        assert_close64(&format!("fd dbeta {tag}"), &dbeta, &num_dbeta, 1e-6, 1e-7);
        if with_residual {
            let num_dres = numeric_grad(|v| loss(&x, &gamma, &beta, Some(v)), &res, h);
            assert_close64(&format!("fd dresidual {tag}"), &g, &num_dres, 1e-6, 1e-7);
        }
    }
}
