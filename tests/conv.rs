//! Float conv kernels against the CPU reference on awkward shapes, the CPU backward against
//! finite differences, and the determinism of the split weight gradient.
mod common;
use common::assert_close;
use rbnn::gpu::{Dispatch, Gpu};
use rbnn::ops::conv::{self, cpu, ConvShape, DirectLoads, Tiles};
use rbnn::rng::Rng;

/// [n, ci, h, w, co, kh, kw, stride, pad].
fn shape([n, ci, h, w, co, kh, kw, stride, pad]: [usize; 9]) -> ConvShape {
    ConvShape {
        n,
        ci,
        h,
        w,
        co,
        kh,
        kw,
        stride,
        pad,
    }
}

/// Batch 1, stride 2 (odd sizes: phases of different sizes) and 3, pad 0/1/2/3, 1x1, 3x3, 5x5,
/// 7x7 and 2x3 kernels, channel counts that are not multiples of any tile, 3x3 inputs, shapes with several
/// tiles along every GEMM dimension, and weight gradients split into several chunks.
fn awkward_shapes() -> Vec<ConvShape> {
    vec![
        shape([1, 3, 7, 5, 5, 3, 3, 1, 1]),
        shape([2, 5, 9, 9, 7, 3, 3, 2, 1]),
        shape([3, 4, 6, 7, 3, 1, 1, 2, 0]),
        shape([2, 3, 8, 6, 4, 5, 5, 1, 2]),
        shape([2, 6, 5, 7, 5, 2, 3, 2, 0]),
        shape([1, 2, 3, 3, 3, 3, 3, 1, 0]),
        shape([2, 3, 3, 3, 2, 3, 3, 2, 1]),
        shape([2, 20, 12, 11, 70, 3, 3, 1, 1]),
        shape([3, 70, 11, 10, 20, 3, 3, 2, 1]),
        shape([1, 3, 8, 7, 4, 3, 3, 3, 1]),
        shape([4, 4, 16, 16, 4, 3, 3, 1, 1]),
        // Stride 2 with padding 2 and a 17-wide input window per 8x8 output tile; 1x1 kernels
        // (stride 1, and stride 2 like resnet18's shortcuts); 3x3 with padding 2 (outputs larger
        // than the input).
        shape([2, 9, 10, 17, 12, 3, 3, 2, 2]),
        shape([1, 8, 8, 8, 9, 1, 1, 1, 0]),
        shape([2, 17, 9, 9, 33, 1, 1, 2, 0]),
        shape([1, 4, 5, 4, 3, 3, 3, 1, 2]),
        // The ImageNet stem's 7x7, stride 2, padding 3, on odd sides (3 channels, 64 outputs
        // there; 5 here); the ImageNet downsample's float 1x1 stride 2 at 64 -> 128 channels.
        shape([2, 3, 13, 11, 5, 7, 7, 2, 3]),
        shape([1, 64, 7, 7, 128, 1, 1, 2, 0]),
    ]
}

/// Shapes the vec4 direct kernels take (rows of input and output and the weights whole vec4s):
/// batch 1, 8x8 tiles that overhang the output in both directions, channel counts that are not
/// multiples of the 8 lanes or the 16-channel weight tiles, stride 2 (windows of 17 columns), 1x1
/// kernels at stride 1 and 2, the ResNet-20 shapes, and weight gradients split into chunks.
fn vec4_shapes() -> Vec<ConvShape> {
    vec![
        shape([1, 6, 12, 12, 10, 3, 3, 1, 1]),
        shape([2, 6, 12, 16, 10, 3, 3, 2, 1]),
        shape([3, 12, 16, 8, 8, 3, 3, 2, 1]),
        shape([2, 8, 8, 8, 16, 1, 1, 2, 0]),
        shape([1, 4, 4, 12, 5, 1, 1, 1, 0]),
        shape([2, 16, 32, 32, 16, 3, 3, 1, 1]),
        shape([2, 16, 32, 32, 32, 3, 3, 2, 1]),
        shape([5, 64, 8, 8, 64, 3, 3, 1, 1]),
    ]
}

/// Elementwise tolerance for sums of `terms` products of values in [-1, 1]: f32 rounding grows
/// about like terms * 2^-24 for such sums; the bound leaves a wide margin over that.
fn check(what: &str, got: &[f32], want: &[f32], terms: usize) {
    assert_close(what, got, want, 1e-4, 1e-6 * terms as f64);
}

/// Random x, w, dy in [-1, 1] for `s` (host copies and tensors) and the output tensors.
struct Operands {
    xv: Vec<f32>,
    wv: Vec<f32>,
    dyv: Vec<f32>,
    x: rbnn::gpu::Tensor,
    w: rbnn::gpu::Tensor,
    dy: rbnn::gpu::Tensor,
    y: rbnn::gpu::Tensor,
    dx: rbnn::gpu::Tensor,
    dw: rbnn::gpu::Tensor,
}

fn operands(gpu: &Gpu, s: &ConvShape, rng: &mut Rng) -> Operands {
    let xv = rng.uniform_vec(s.input_len(), -1.0, 1.0);
    let wv = rng.uniform_vec(s.weight_len(), -1.0, 1.0);
    let dyv = rng.uniform_vec(s.output_len(), -1.0, 1.0);
    Operands {
        x: gpu.upload_f32("x", &[s.input_len()], &xv),
        w: gpu.upload_f32("w", &[s.weight_len()], &wv),
        dy: gpu.upload_f32("dy", &[s.output_len()], &dyv),
        y: gpu.tensor("y", &[s.output_len()]),
        dx: gpu.tensor("dx", &[s.input_len()]),
        dw: gpu.tensor("dw", &[s.weight_len()]),
        xv,
        wv,
        dyv,
    }
}

fn run_and_read(gpu: &Gpu, dispatches: &[&Dispatch], out: &rbnn::gpu::Tensor) -> Vec<f32> {
    // Garbage first: every kernel must overwrite its whole output.
    gpu.write(out, &vec![f32::NAN; out.len()]);
    gpu.run(dispatches).unwrap();
    gpu.read_f32(out).unwrap()
}

/// The default kernels (direct ones where `direct_supported` holds) and the tiled ones with their
/// default tiles, against the CPU.
#[test]
fn gpu_matches_cpu_on_awkward_shapes() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(7);
    for s in awkward_shapes() {
        let Operands {
            xv,
            wv,
            dyv,
            x,
            w,
            dy,
            y,
            dx,
            dw,
        } = operands(gpu, &s, &mut rng);

        let d = conv::forward(gpu, &s, &x, &w, &y).unwrap();
        let got = run_and_read(gpu, &[&d], &y);
        check(
            &format!("forward {s:?}"),
            &got,
            &cpu::forward(&s, &xv, &wv),
            s.ci * s.kh * s.kw,
        );

        let d = conv::backward_data(gpu, &s, &dy, &w, &dx).unwrap();
        let got = run_and_read(gpu, &[&d], &dx);
        check(
            &format!("backward_data {s:?}"),
            &got,
            &cpu::backward_data(&s, &dyv, &wv),
            s.co * s.kh * s.kw,
        );

        let bw = conv::backward_weight(gpu, &s, &x, &dy, &dw).unwrap();
        let got = run_and_read(gpu, &bw.dispatches(), &dw);
        let dw_want = cpu::backward_weight(&s, &xv, &dyv);
        check(
            &format!("backward_weight {s:?} ({} splits)", bw.splits()),
            &got,
            &dw_want,
            s.n * s.oh() * s.ow(),
        );

        let d = conv::forward_with(gpu, &s, Tiles::for_columns(s.co), &x, &w, &y).unwrap();
        check(
            &format!("tiled forward {s:?}"),
            &run_and_read(gpu, &[&d], &y),
            &cpu::forward(&s, &xv, &wv),
            s.ci * s.kh * s.kw,
        );
        let d =
            conv::backward_data_with(gpu, &s, Tiles::for_data_grad(s.ci, s.h * s.w), &dy, &w, &dx)
                .unwrap();
        check(
            &format!("tiled backward_data {s:?}"),
            &run_and_read(gpu, &[&d], &dx),
            &cpu::backward_data(&s, &dyv, &wv),
            s.co * s.kh * s.kw,
        );
        let bw = conv::backward_weight_with(gpu, &s, Tiles::for_weight_grad(s.co), &x, &dy, &dw)
            .unwrap();
        check(
            &format!("tiled backward_weight {s:?}"),
            &run_and_read(gpu, &bw.dispatches(), &dw),
            &dw_want,
            s.n * s.oh() * s.ow(),
        );
    }
}

/// The direct kernels run on software adapters with subgroups of a multiple of 8 lanes where the
/// kernel is at most 3x3 with stride 1 or 2 (so the tests above exercise them on lavapipe), and
/// never outside those shapes or on a GPU.
#[test]
fn direct_kernels_cover_the_model_shapes() {
    let gpu = gpu_or_skip!();
    let sizes = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    let subgroups = gpu.is_software()
        && gpu.features.contains(wgpu::Features::SUBGROUP)
        && sizes.0 >= 8
        && sizes.0 % 8 == 0
        && sizes.1 % 8 == 0
        && sizes.1 <= 64;
    for s in [
        shape([32, 16, 32, 32, 16, 3, 3, 1, 1]),
        shape([32, 16, 32, 32, 32, 3, 3, 2, 1]),
        shape([32, 256, 8, 8, 512, 1, 1, 2, 0]),
        shape([32, 3, 32, 32, 64, 3, 3, 1, 1]),
    ] {
        assert_eq!(conv::direct_supported(gpu, &s), subgroups, "{s:?}");
    }
    for s in [
        shape([1, 3, 8, 7, 4, 3, 3, 3, 1]),
        shape([2, 3, 8, 6, 4, 5, 5, 1, 2]),
        shape([1, 3, 32, 32, 64, 7, 7, 2, 3]),
    ] {
        assert!(!conv::direct_supported(gpu, &s), "{s:?}");
    }
}

/// Other tile shapes than the defaults (the benchmark tries them), including a reduction slice
/// of 8, on a shape with several tiles in every dimension; and the naive baseline.
#[test]
fn other_tiles_and_naive_forward_match_cpu() {
    let gpu = gpu_or_skip!();
    let s = shape([2, 37, 9, 10, 45, 3, 3, 1, 1]);
    let mut rng = Rng::new(11);
    let xv = rng.uniform_vec(s.input_len(), -1.0, 1.0);
    let wv = rng.uniform_vec(s.weight_len(), -1.0, 1.0);
    let dyv = rng.uniform_vec(s.output_len(), -1.0, 1.0);
    let x = gpu.upload_f32("x", &[s.input_len()], &xv);
    let w = gpu.upload_f32("w", &[s.weight_len()], &wv);
    let dy = gpu.upload_f32("dy", &[s.output_len()], &dyv);
    let y = gpu.tensor("y", &[s.output_len()]);
    let dx = gpu.tensor("dx", &[s.input_len()]);
    let dw = gpu.tensor("dw", &[s.weight_len()]);
    let y_want = cpu::forward(&s, &xv, &wv);
    let dx_want = cpu::backward_data(&s, &dyv, &wv);
    let dw_want = cpu::backward_weight(&s, &xv, &dyv);
    let k = s.ci * s.kh * s.kw;
    for t in [
        Tiles {
            bm: 64,
            bn: 64,
            bk: 8,
        },
        Tiles {
            bm: 32,
            bn: 32,
            bk: 16,
        },
        Tiles {
            bm: 128,
            bn: 32,
            bk: 8,
        },
    ] {
        let d = conv::forward_with(gpu, &s, t, &x, &w, &y).unwrap();
        check(
            &format!("forward {t:?}"),
            &run_and_read(gpu, &[&d], &y),
            &y_want,
            k,
        );
        let d = conv::backward_data_with(gpu, &s, t, &dy, &w, &dx).unwrap();
        check(
            &format!("backward_data {t:?}"),
            &run_and_read(gpu, &[&d], &dx),
            &dx_want,
            s.co * 9,
        );
        let bw = conv::backward_weight_with(gpu, &s, t, &x, &dy, &dw).unwrap();
        let got = run_and_read(gpu, &bw.dispatches(), &dw);
        check(&format!("backward_weight {t:?}"), &got, &dw_want, s.n * 90);
    }
    let d = conv::forward_naive(gpu, &s, &x, &w, &y).unwrap();
    check("forward_naive", &run_and_read(gpu, &[&d], &y), &y_want, k);
}

#[test]
fn bad_shapes_and_tiles_are_errors() {
    let gpu = gpu_or_skip!();
    let s = shape([1, 2, 4, 4, 3, 3, 3, 1, 1]);
    let x = gpu.tensor("x", &[s.input_len()]);
    let w = gpu.tensor("w", &[s.weight_len()]);
    let y = gpu.tensor("y", &[s.output_len()]);
    let wrong = gpu.tensor("wrong", &[s.output_len() + 1]);
    assert!(conv::forward(gpu, &s, &x, &w, &wrong).is_err());
    let too_big = shape([1, 2, 2, 2, 3, 5, 5, 1, 1]);
    assert!(conv::forward(gpu, &too_big, &x, &w, &y).is_err());
    let bad_tiles = Tiles {
        bm: 48,
        bn: 64,
        bk: 16,
    };
    assert!(conv::forward_with(gpu, &s, bad_tiles, &x, &w, &y).is_err());
}

/// On adapters with subgroups of exactly 8 lanes (lavapipe) the vec4 direct kernels run these
/// shapes and give the scalar direct kernels' bits exactly (the same multiply-adds in the same
/// order), which match the CPU; elsewhere they are not used and `*_direct` runs the scalar
/// kernels or refuses.
#[test]
fn vec4_direct_kernels_equal_the_scalar_ones_bit_for_bit() {
    let gpu = gpu_or_skip!();
    let bits = |v: Vec<f32>| v.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let mut rng = Rng::new(11);
    let mut took_vec4 = 0;
    for s in vec4_shapes() {
        let eights = gpu.info.subgroup_min_size == 8 && gpu.info.subgroup_max_size == 8;
        assert_eq!(
            conv::vec4_supported(gpu, &s),
            conv::direct_supported(gpu, &s) && eights,
            "{s:?}"
        );
        let ops = operands(gpu, &s, &mut rng);
        let (x, w, dy, y, dx, dw) = (&ops.x, &ops.w, &ops.dy, &ops.y, &ops.dx, &ops.dw);
        if !conv::direct_supported(gpu, &s) {
            assert!(conv::forward_direct(gpu, &s, DirectLoads::Vec4, x, w, y).is_err());
            continue;
        }
        took_vec4 += usize::from(conv::vec4_supported(gpu, &s));
        let mut outputs = Vec::new();
        for loads in [DirectLoads::Vec4, DirectLoads::Scalar] {
            let f = conv::forward_direct(gpu, &s, loads, x, w, y).unwrap();
            let d = conv::backward_data_direct(gpu, &s, loads, dy, w, dx).unwrap();
            let bw = conv::backward_weight_direct(gpu, &s, loads, x, dy, dw).unwrap();
            outputs.push([
                run_and_read(gpu, &[&f], y),
                run_and_read(gpu, &[&d], dx),
                run_and_read(gpu, &bw.dispatches(), dw),
            ]);
        }
        let [scalar_y, scalar_dx, scalar_dw] = outputs.pop().unwrap();
        let [y4, dx4, dw4] = outputs.pop().unwrap();
        check(
            &format!("forward {s:?}"),
            &y4,
            &cpu::forward(&s, &ops.xv, &ops.wv),
            s.ci * s.kh * s.kw,
        );
        check(
            &format!("backward_data {s:?}"),
            &dx4,
            &cpu::backward_data(&s, &ops.dyv, &ops.wv),
            s.co * s.kh * s.kw,
        );
        check(
            &format!("backward_weight {s:?}"),
            &dw4,
            &cpu::backward_weight(&s, &ops.xv, &ops.dyv),
            s.n * s.oh() * s.ow(),
        );
        assert!(bits(y4) == bits(scalar_y), "forward {s:?}: vec4 != scalar");
        assert!(
            bits(dx4) == bits(scalar_dx),
            "backward_data {s:?}: vec4 != scalar"
        );
        assert!(
            bits(dw4) == bits(scalar_dw),
            "backward_weight {s:?}: vec4 != scalar"
        );
    }
    if gpu.info.subgroup_min_size == 8 && gpu.info.subgroup_max_size == 8 && gpu.is_software() {
        assert_eq!(
            took_vec4,
            vec4_shapes().len(),
            "every shape should take the vec4 kernels"
        );
    }
}

/// Two runs of the split weight gradient give the same bits (fixed-order sums, no atomics).
#[test]
fn weight_grad_is_deterministic() {
    let gpu = gpu_or_skip!();
    let s = shape([8, 16, 16, 16, 16, 3, 3, 1, 1]);
    let mut rng = Rng::new(3);
    let x = gpu.upload_f32(
        "x",
        &[s.input_len()],
        &rng.uniform_vec(s.input_len(), -1.0, 1.0),
    );
    let dy = gpu.upload_f32(
        "dy",
        &[s.output_len()],
        &rng.uniform_vec(s.output_len(), -1.0, 1.0),
    );
    let dw = gpu.tensor("dw", &[s.weight_len()]);
    let bw = conv::backward_weight(gpu, &s, &x, &dy, &dw).unwrap();
    assert!(bw.splits() > 1, "the shape should split the reduction");
    let first: Vec<u32> = run_and_read(gpu, &bw.dispatches(), &dw)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let second: Vec<u32> = run_and_read(gpu, &bw.dispatches(), &dw)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(first, second);
}

/// The CPU backward against central differences of the f64 CPU forward, for the loss
/// L = sum(y * r) with a random r (so dL/dy = r).
#[test]
fn cpu_backward_matches_finite_differences() {
    let mut rng = Rng::new(5);
    for s in [
        shape([1, 2, 4, 5, 2, 3, 3, 2, 1]),
        shape([2, 2, 3, 3, 3, 2, 3, 1, 0]),
        shape([1, 3, 5, 4, 2, 1, 1, 2, 0]),
        // The ImageNet stem's 7x7/s2/p3 (padding wider than some outputs' windows reach).
        shape([1, 2, 6, 5, 2, 7, 7, 2, 3]),
    ] {
        let x: Vec<f64> = (0..s.input_len()).map(|_| rng.range(-1.0, 1.0)).collect();
        let w: Vec<f64> = (0..s.weight_len()).map(|_| rng.range(-1.0, 1.0)).collect();
        let r: Vec<f64> = (0..s.output_len()).map(|_| rng.range(-1.0, 1.0)).collect();
        let loss = |x: &[f64], w: &[f64]| -> f64 {
            cpu::forward_f64(&s, x, w)
                .iter()
                .zip(&r)
                .map(|(y, r)| y * r)
                .sum()
        };
        let h = 1e-3;
        let fd = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| -> f32 {
            let mut plus = v.to_vec();
            let mut minus = v.to_vec();
            plus[i] += h;
            minus[i] -= h;
            ((f(&plus) - f(&minus)) / (2.0 * h)) as f32
        };
        let fd_dx: Vec<f32> = (0..x.len())
            .map(|i| fd(&x, i, &|xp| loss(xp, &w)))
            .collect();
        let fd_dw: Vec<f32> = (0..w.len())
            .map(|i| fd(&w, i, &|wp| loss(&x, wp)))
            .collect();
        let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let (xf, wf, rf) = (f32s(&x), f32s(&w), f32s(&r));
        // The loss is linear in x and in w, so central differences are exact up to rounding.
        assert_close(
            &format!("dx {s:?}"),
            &cpu::backward_data(&s, &rf, &wf),
            &fd_dx,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("dw {s:?}"),
            &cpu::backward_weight(&s, &xf, &rf),
            &fd_dw,
            1e-5,
            1e-5,
        );
    }
}
