//! Pooling (shaders/pool.wgsl): global average pool [N, C, H, W] -> [N, C] (also resnet18's
//! `avg_pool2d(out, 4)` on its 4x4 maps and the ImageNet ResNets' 7x7 average pool on their 7x7
//! maps), 2x2 max pool with stride 2, and the k x k max pool with any stride and padding (the
//! ImageNet ResNets' 3x3/s2/p1), with their backwards.

use super::shape::{expect_shape, expect_u32};
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

fn nchw(x: &Tensor, what: &str) -> Result<[usize; 4]> {
    match *x.shape.as_slice() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!(
            "{what}: tensor {} must be [N, C, H, W], got {:?}",
            x.label,
            x.shape
        ),
    }
}

fn dispatch(
    gpu: &Gpu,
    entry: &str,
    buffers: &[&Tensor],
    s: [usize; 4],
    threads: usize,
) -> Result<Dispatch> {
    dispatch_window(gpu, entry, buffers, s, threads, None)
}

/// `dispatch` with the k x k max pool's window in the immediates.
fn dispatch_window(
    gpu: &Gpu,
    entry: &str,
    buffers: &[&Tensor],
    [n, c, h, w]: [usize; 4],
    threads: usize,
    window: Option<MaxPool>,
) -> Result<Dispatch> {
    let m = window.unwrap_or(MaxPool {
        kernel: 0,
        stride: 0,
        pad: 0,
    });
    let imm = Imm::new()
        .u(expect_u32(n * c, "pool planes")?)
        .u(h as u32)
        .u(w as u32)
        .u(expect_u32(threads, "pool elements")?)
        .u(m.kernel as u32)
        .u(m.stride as u32)
        .u(m.pad as u32);
    gpu.dispatch(
        &gpu.kernel("pool", entry, &[])?,
        buffers,
        imm.bytes(),
        grid_1d(threads, 256),
    )
}

/// y [N, C] = mean of x [N, C, H, W] over H, W. Overwrites `y`.
pub fn global_avg_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let s = nchw(x, "global_avg_forward x")?;
    expect_shape(y, &[s[0], s[1]], "global_avg_forward y")?;
    dispatch(gpu, "global_avg_forward", &[x, y], s, s[0] * s[1])
}

/// dx [N, C, H, W] = dy [N, C] / (H*W). Overwrites `dx`.
pub fn global_avg_backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    let s = nchw(dx, "global_avg_backward dx")?;
    expect_shape(dy, &[s[0], s[1]], "global_avg_backward dy")?;
    dispatch(gpu, "global_avg_backward", &[dy, dx], s, dx.len())
}

/// Output shape of the 2x2 stride-2 max pool (floor, as PyTorch).
pub fn max2_shape(x_shape: &[usize]) -> Vec<usize> {
    match *x_shape {
        [n, c, h, w] => vec![n, c, h / 2, w / 2],
        _ => x_shape.to_vec(),
    }
}

/// y [N, C, H/2, W/2] = max over each 2x2 window of x. Overwrites `y`.
pub fn max2_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let s = nchw(x, "max2_forward x")?;
    expect_shape(y, &max2_shape(&x.shape), "max2_forward y")?;
    dispatch(gpu, "max2_forward", &[x, y], s, y.len())
}

/// dx = dy routed to each window's argmax (first in row-major order on ties), 0 elsewhere;
/// `x` is the forward input. Overwrites `dx`.
pub fn max2_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    let s = nchw(x, "max2_backward x")?;
    expect_shape(dy, &max2_shape(&x.shape), "max2_backward dy")?;
    expect_shape(dx, &x.shape, "max2_backward dx")?;
    dispatch(gpu, "max2_backward", &[x, dy, dx], s, dx.len())
}

/// A k x k max pool window: kernel side, stride and zero padding (never a maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool {
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl MaxPool {
    /// Output side for an input side (floor, as PyTorch), or None when the window does not fit.
    pub fn output_size(self, size: usize) -> Option<usize> {
        (size + 2 * self.pad)
            .checked_sub(self.kernel)
            .filter(|_| self.stride > 0)
            .map(|d| d / self.stride + 1)
    }

    /// Output shape [N, C, OH, OW] for x [N, C, H, W]; an error names the tensor when the window
    /// does not fit or the padding is more than half the kernel (PyTorch's rule, which keeps
    /// every window on some input).
    pub fn output_shape(self, x: &Tensor) -> Result<Vec<usize>> {
        let [n, c, h, w] = nchw(x, "max pool x")?;
        if self.kernel == 0 || self.stride == 0 || 2 * self.pad > self.kernel {
            bail!(
                "max pool {self:?} on {}: kernel and stride must be positive, padding at most \
                 half the kernel",
                x.label
            );
        }
        match (self.output_size(h), self.output_size(w)) {
            (Some(oh), Some(ow)) => Ok(vec![n, c, oh, ow]),
            _ => bail!(
                "max pool {self:?}: the {h}x{w} map of {} is smaller than the window",
                x.label
            ),
        }
    }
}

/// y [N, C, OH, OW] = the maximum of each window of x (the first one on ties). Overwrites `y`.
pub fn max_forward(gpu: &Gpu, m: MaxPool, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let s = nchw(x, "max_forward x")?;
    expect_shape(y, &m.output_shape(x)?, "max_forward y")?;
    dispatch_window(gpu, "max_forward", &[x, y], s, y.len(), Some(m))
}

/// dx = the sum of dy over the windows whose first maximum each input is, 0 elsewhere; `x` is the
/// forward input. Overwrites `dx`.
pub fn max_backward(
    gpu: &Gpu,
    m: MaxPool,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    let s = nchw(x, "max_backward x")?;
    expect_shape(dy, &m.output_shape(x)?, "max_backward dy")?;
    expect_shape(dx, &x.shape, "max_backward dx")?;
    dispatch_window(gpu, "max_backward", &[x, dy, dx], s, dx.len(), Some(m))
}

/// Plain-Rust references in f64; `planes` = N*C.
pub mod cpu {
    use super::MaxPool;

    /// Index into x of the first maximum of window (plane, oy, ox), its taps inside the input
    /// only, in row-major order.
    fn window_argmax(
        x: &[f64],
        m: MaxPool,
        [plane, h, w]: [usize; 3],
        oy: usize,
        ox: usize,
    ) -> usize {
        let rows = (oy * m.stride).saturating_sub(m.pad)..(oy * m.stride + m.kernel - m.pad).min(h);
        let cols = (ox * m.stride).saturating_sub(m.pad)..(ox * m.stride + m.kernel - m.pad).min(w);
        let mut best: Option<usize> = None;
        for y in rows {
            for xx in cols.clone() {
                let e = (plane * h + y) * w + xx;
                if best.is_none_or(|b| x[e] > x[b]) {
                    best = Some(e);
                }
            }
        }
        best.expect("every window holds an input (padding at most half the kernel)")
    }

    /// (OH, OW) of the pool on h x w.
    fn out_dims(m: MaxPool, h: usize, w: usize) -> (usize, usize) {
        (
            m.output_size(h).expect("window fits"),
            m.output_size(w).expect("window fits"),
        )
    }

    pub fn max_forward(x: &[f64], m: MaxPool, planes: usize, h: usize, w: usize) -> Vec<f64> {
        let (oh, ow) = out_dims(m, h, w);
        let mut y = Vec::with_capacity(planes * oh * ow);
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    y.push(x[window_argmax(x, m, [p, h, w], oy, ox)]);
                }
            }
        }
        y
    }

    pub fn max_backward(
        x: &[f64],
        dy: &[f64],
        m: MaxPool,
        planes: usize,
        h: usize,
        w: usize,
    ) -> Vec<f64> {
        let (oh, ow) = out_dims(m, h, w);
        let mut dx = vec![0.0; x.len()];
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    dx[window_argmax(x, m, [p, h, w], oy, ox)] += dy[(p * oh + oy) * ow + ox];
                }
            }
        }
        dx
    }

    pub fn global_avg_forward(x: &[f64], planes: usize, hw: usize) -> Vec<f64> {
        (0..planes)
            .map(|p| x[p * hw..(p + 1) * hw].iter().sum::<f64>() / hw as f64)
            .collect()
    }

    pub fn global_avg_backward(dy: &[f64], planes: usize, hw: usize) -> Vec<f64> {
        (0..planes * hw).map(|i| dy[i / hw] / hw as f64).collect()
    }

    /// Index into x of the maximum of output (plane, oy, ox)'s window; first on ties.
    fn argmax(x: &[f64], plane: usize, h: usize, w: usize, oy: usize, ox: usize) -> usize {
        let mut best = (plane * h + 2 * oy) * w + 2 * ox;
        for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
            let e = (plane * h + 2 * oy + dy) * w + 2 * ox + dx;
            if x[e] > x[best] {
                best = e;
            }
        }
        best
    }

    pub fn max2_forward(x: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
        let (oh, ow) = (h / 2, w / 2);
        let mut y = Vec::with_capacity(planes * oh * ow);
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    y.push(x[argmax(x, p, h, w, oy, ox)]);
                }
            }
        }
        y
    }

    pub fn max2_backward(x: &[f64], dy: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
        let (oh, ow) = (h / 2, w / 2);
        let mut dx = vec![0.0; x.len()];
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    dx[argmax(x, p, h, w, oy, ox)] = dy[(p * oh + oy) * ow + ox];
                }
            }
        }
        dx
    }
}
