//! The option-A shortcut of resnet20 (shaders/shortcut.wgsl): the official
//! `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`, planes = the block's output
//! channels: x [N, C, H, W] -> y [N, C + 2*pad, ceil(H/2), ceil(W/2)], pad = (C_out - C) / 2
//! (e.g. 16 -> 32 channels pads 8 on each side).

use super::shape::{expect_shape, expect_u32};
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

/// y's shape for x [N, C, H, W] and the block's output channels.
pub fn output_shape(x_shape: &[usize], c_out: usize) -> Result<Vec<usize>> {
    match *x_shape {
        [n, c, h, w] if c_out >= c && (c_out - c).is_multiple_of(2) => {
            Ok(vec![n, c_out, h.div_ceil(2), w.div_ceil(2)])
        }
        _ => bail!(
            "option-A shortcut: x must be [N, C, H, W] with C_out - C even and >= 0, got x \
             {x_shape:?}, C_out {c_out}"
        ),
    }
}

fn dispatch(
    gpu: &Gpu,
    entry: &str,
    x_shape: &[usize],
    y_shape: &[usize],
    src: &Tensor,
    dst: &Tensor,
) -> Result<Dispatch> {
    let (c_in, c_out) = (x_shape[1], y_shape[1]);
    let imm = Imm::new()
        .u(c_in as u32)
        .u(x_shape[2] as u32)
        .u(x_shape[3] as u32)
        .u(c_out as u32)
        .u(y_shape[2] as u32)
        .u(y_shape[3] as u32)
        .u(((c_out - c_in) / 2) as u32)
        .u(expect_u32(dst.len(), "shortcut elements")?);
    gpu.dispatch(
        &gpu.kernel("shortcut", entry, &[])?,
        &[src, dst],
        imm.bytes(),
        grid_1d(dst.len(), 256),
    )
}

/// y = zero-channel-padded x[:, :, ::2, ::2]; the padding follows from y's channel count.
/// Overwrites `y`.
pub fn forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let c_out = y.shape.get(1).copied().unwrap_or(0);
    expect_shape(y, &output_shape(&x.shape, c_out)?, "shortcut y")?;
    dispatch(gpu, "forward", &x.shape, &y.shape, x, y)
}

/// dx = dy's matching channels at even (h, w), 0 elsewhere. Overwrites `dx`.
pub fn backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    let c_out = dy.shape.get(1).copied().unwrap_or(0);
    expect_shape(dy, &output_shape(&dx.shape, c_out)?, "shortcut dy")?;
    dispatch(gpu, "backward", &dx.shape, &dy.shape, dy, dx)
}

/// Plain-Rust references in f64.
pub mod cpu {
    /// x [n, c, h, w] -> [n, c + 2*pad, ceil(h/2), ceil(w/2)].
    pub fn forward(x: &[f64], [n, c, h, w]: [usize; 4], pad: usize) -> Vec<f64> {
        let (co, oh, ow) = (c + 2 * pad, h.div_ceil(2), w.div_ceil(2));
        let mut y = vec![0.0; n * co * oh * ow];
        for b in 0..n {
            for ci in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        y[((b * co + ci + pad) * oh + oy) * ow + ox] =
                            x[((b * c + ci) * h + 2 * oy) * w + 2 * ox];
                    }
                }
            }
        }
        y
    }

    /// dy [n, c + 2*pad, ceil(h/2), ceil(w/2)] -> dx [n, c, h, w].
    pub fn backward(dy: &[f64], [n, c, h, w]: [usize; 4], pad: usize) -> Vec<f64> {
        let (co, oh, ow) = (c + 2 * pad, h.div_ceil(2), w.div_ceil(2));
        let mut dx = vec![0.0; n * c * h * w];
        for b in 0..n {
            for ci in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        dx[((b * c + ci) * h + 2 * oy) * w + 2 * ox] =
                            dy[((b * co + ci + pad) * oh + oy) * ow + ox];
                    }
                }
            }
        }
        dx
    }
}
