//! Pooling kernels against the f64 CPU references (max pool exactly, with many ties), and the CPU
//! backwards against finite differences.
mod common;
mod numeric;

use numeric::{assert_close64, f64s, numeric_grad, project};
use rbnn::ops::pool::{self, cpu, MaxPool};
use rbnn::rng::Rng;

#[test]
fn global_avg_matches_cpu() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(21);
    // Batch 1 with odd sizes; resnet18's 4x4 head (avg_pool2d(out, 4)); resnet20's 8x8 head.
    for shape in [[1usize, 3, 5, 7], [3, 17, 4, 4], [2, 64, 8, 8]] {
        let [n, c, h, w] = shape;
        let xv = rng.normal_vec(n * c * h * w, 1.0);
        let dyv = rng.normal_vec(n * c, 1.0);
        let x = gpu.upload_f32("x", &shape, &xv);
        let y = gpu.tensor("y", &[n, c]);
        let dy = gpu.upload_f32("dy", &[n, c], &dyv);
        let dx = gpu.tensor("dx", &shape);
        gpu.run(&[
            &pool::global_avg_forward(gpu, &x, &y).unwrap(),
            &pool::global_avg_backward(gpu, &dy, &dx).unwrap(),
        ])
        .unwrap();
        let tag = format!("{shape:?}");
        // An f32 sum of at most 64 terms of size ~1, then one division.
        let want_y = cpu::global_avg_forward(&f64s(&xv), n * c, h * w);
        assert_close64(
            &format!("gap y {tag}"),
            &f64s(&gpu.read_f32(&y).unwrap()),
            &want_y,
            1e-6,
            1e-6,
        );
        let want_dx = cpu::global_avg_backward(&f64s(&dyv), n * c, h * w);
        assert_close64(
            &format!("gap dx {tag}"),
            &f64s(&gpu.read_f32(&dx).unwrap()),
            &want_dx,
            1e-6,
            0.0,
        );
    }
}

#[test]
fn max2_matches_cpu_exactly_with_ties() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(22);
    // Odd H and W (the last row/column belongs to no window), batch 1, channel counts off 8/32.
    for shape in [[1usize, 3, 5, 7], [2, 13, 8, 6], [3, 7, 11, 9]] {
        let [n, c, h, w] = shape;
        // Four levels only: most windows hold ties, which must go to the first in row-major order.
        let xv: Vec<f32> = (0..n * c * h * w)
            .map(|_| rng.below(4) as f32 - 1.5)
            .collect();
        let oshape = pool::max2_shape(&shape);
        let dyv = rng.normal_vec(oshape.iter().product(), 1.0);
        let x = gpu.upload_f32("x", &shape, &xv);
        let y = gpu.tensor("y", &oshape);
        let dy = gpu.upload_f32("dy", &oshape, &dyv);
        let dx = gpu.tensor("dx", &shape);
        gpu.run(&[
            &pool::max2_forward(gpu, &x, &y).unwrap(),
            &pool::max2_backward(gpu, &x, &dy, &dx).unwrap(),
        ])
        .unwrap();
        let (planes, x64) = (n * c, f64s(&xv));
        let want_y = cpu::max2_forward(&x64, planes, h, w);
        assert_eq!(f64s(&gpu.read_f32(&y).unwrap()), want_y, "max2 y {shape:?}");
        let want_dx = cpu::max2_backward(&x64, &f64s(&dyv), planes, h, w);
        assert_eq!(
            f64s(&gpu.read_f32(&dx).unwrap()),
            want_dx,
            "max2 dx {shape:?}"
        );
    }
}

/// The ImageNet stem's 3x3/s2/p1, and other windows: stride 1, stride 3 with padding, 2x2/s2.
const WINDOWS: [MaxPool; 4] = [
    MaxPool {
        kernel: 3,
        stride: 2,
        pad: 1,
    },
    MaxPool {
        kernel: 3,
        stride: 1,
        pad: 1,
    },
    MaxPool {
        kernel: 5,
        stride: 3,
        pad: 2,
    },
    MaxPool {
        kernel: 2,
        stride: 2,
        pad: 0,
    },
];

#[test]
fn max_pool_matches_cpu_exactly_with_ties() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(24);
    // Batch 1, odd and even sides, channel counts off 8/32, a map smaller than 2 windows.
    for m in WINDOWS {
        for shape in [
            [1usize, 3, 7, 5],
            [2, 13, 8, 6],
            [3, 5, 11, 12],
            [1, 2, 3, 3],
        ] {
            let [n, c, h, w] = shape;
            // Four levels, most of them negative: ties everywhere, and padding must never win.
            let xv: Vec<f32> = (0..n * c * h * w)
                .map(|_| rng.below(4) as f32 - 2.5)
                .collect();
            let x = gpu.upload_f32("x", &shape, &xv);
            let oshape = m.output_shape(&x).unwrap();
            let dyv = rng.normal_vec(oshape.iter().product(), 1.0);
            let y = gpu.tensor("y", &oshape);
            let dy = gpu.upload_f32("dy", &oshape, &dyv);
            let dx = gpu.tensor("dx", &shape);
            gpu.run(&[
                &pool::max_forward(gpu, m, &x, &y).unwrap(),
                &pool::max_backward(gpu, m, &x, &dy, &dx).unwrap(),
            ])
            .unwrap();
            let (planes, x64) = (n * c, f64s(&xv));
            let tag = format!("{m:?} {shape:?}");
            let want_y = cpu::max_forward(&x64, m, planes, h, w);
            assert_eq!(f64s(&gpu.read_f32(&y).unwrap()), want_y, "max y {tag}");
            // An input that is the maximum of up to 4 overlapping windows sums their dy in f32.
            let want_dx = cpu::max_backward(&x64, &f64s(&dyv), m, planes, h, w);
            assert_close64(
                &format!("max dx {tag}"),
                &f64s(&gpu.read_f32(&dx).unwrap()),
                &want_dx,
                1e-6,
                1e-6,
            );
        }
    }
}

#[test]
fn max_pool_window_errors_name_the_tensor() {
    let gpu = gpu_or_skip!();
    let x = gpu.tensor("stem_map", &[1, 2, 2, 2]);
    let too_small = MaxPool {
        kernel: 5,
        stride: 2,
        pad: 1,
    };
    let err = too_small.output_shape(&x).unwrap_err();
    assert!(format!("{err:#}").contains("stem_map"), "{err:#}");
    let too_much_pad = MaxPool {
        kernel: 3,
        stride: 2,
        pad: 2,
    };
    let err = too_much_pad.output_shape(&x).unwrap_err();
    assert!(format!("{err:#}").contains("padding"), "{err:#}");
}

#[test]
fn cpu_backwards_match_finite_differences() {
    let mut rng = Rng::new(23);
    let (planes, h, w) = (2, 5, 4);
    // Distinct continuous values: no window's argmax changes under a 1e-6 step.
    let x: Vec<f64> = (0..planes * h * w).map(|_| rng.normal()).collect();
    let r_gap: Vec<f64> = (0..planes).map(|_| rng.normal()).collect();
    let r_max: Vec<f64> = (0..planes * (h / 2) * (w / 2))
        .map(|_| rng.normal())
        .collect();
    let h_step = 1e-6;
    let num = numeric_grad(
        |v| project(&cpu::global_avg_forward(v, planes, h * w), &r_gap),
        &x,
        h_step,
    );
    assert_close64(
        "fd gap dx",
        &cpu::global_avg_backward(&r_gap, planes, h * w),
        &num,
        1e-6,
        1e-8,
    );
    let num = numeric_grad(
        |v| project(&cpu::max2_forward(v, planes, h, w), &r_max),
        &x,
        h_step,
    );
    assert_close64(
        "fd max2 dx",
        &cpu::max2_backward(&x, &r_max, planes, h, w),
        &num,
        1e-6,
        1e-8,
    );
    // Overlapping windows: an input can be the maximum of several, its gradient their sum.
    for m in WINDOWS {
        let (oh, ow) = (m.output_size(h).unwrap(), m.output_size(w).unwrap());
        let r: Vec<f64> = (0..planes * oh * ow).map(|_| rng.normal()).collect();
        let num = numeric_grad(
            |v| project(&cpu::max_forward(v, m, planes, h, w), &r),
            &x,
            h_step,
        );
        assert_close64(
            &format!("fd max {m:?} dx"),
            &cpu::max_backward(&x, &r, m, planes, h, w),
            &num,
            1e-6,
            1e-8,
        );
    }
}

#[test]
fn shape_errors_name_the_tensor() {
    let gpu = gpu_or_skip!();
    let x = gpu.tensor("feature_map", &[2, 3, 4, 4]);
    let y = gpu.tensor("pooled", &[2, 4]);
    let err = pool::global_avg_forward(gpu, &x, &y).err().unwrap();
    assert!(format!("{err:#}").contains("pooled"), "{err:#}");
}
