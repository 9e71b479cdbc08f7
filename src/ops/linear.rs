//! Fully connected layer (shaders/linear.wgsl): y [N, OUT] = x [N, IN] W^T + b with W [OUT, IN]
//! (PyTorch's layout), b [OUT]. The classifiers here are 64->10, 512->10 and 8192->10.

use super::shape::{expect_shape, expect_u32};
use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, Tensor};
use anyhow::{bail, Result};

/// (N, IN, OUT) from x [N, IN] and W [OUT, IN].
fn dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    match (x.shape.as_slice(), w.shape.as_slice()) {
        (&[n, i], &[o, wi]) if i == wi => {
            expect_u32(n * i.max(o), "linear elements")?;
            expect_u32(o * (i + 1), "linear weight elements")?;
            Ok((n, i, o))
        }
        _ => bail!(
            "linear: x {} {:?} must be [N, IN] and W {} {:?} must be [OUT, IN]",
            x.label,
            x.shape,
            w.label,
            w.shape
        ),
    }
}

fn imm(n: usize, i: usize, o: usize) -> Imm {
    Imm::new().u(n as u32).u(i as u32).u(o as u32)
}

/// y = x W^T + b. Overwrites `y` [N, OUT].
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let (n, i, o) = dims(x, w)?;
    expect_shape(b, &[o], "linear bias")?;
    expect_shape(y, &[n, o], "linear y")?;
    // One workgroup per sample, split over y past the 65535 limit (the shader uses 65535 rows per
    // y step).
    let grid = if n <= 65535 {
        [n as u32, 1, 1]
    } else {
        [65535, n.div_ceil(65535) as u32, 1]
    };
    gpu.dispatch(
        &gpu.kernel("linear", "forward", &[])?,
        &[x, w, b, y],
        imm(n, i, o).bytes(),
        grid,
    )
}

/// Backward, two dispatches: [dx = dy W, (dW = dy^T x, db = column sums of dy)].
/// Overwrites `dx` [N, IN], `dw` [OUT, IN] and `db` [OUT].
pub fn backward(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (n, i, o) = dims(x, w)?;
    expect_shape(dy, &[n, o], "linear dy")?;
    expect_shape(dx, &[n, i], "linear dx")?;
    expect_shape(dw, &[o, i], "linear dW")?;
    expect_shape(db, &[o], "linear db")?;
    Ok(vec![
        gpu.dispatch(
            &gpu.kernel("linear", "backward_input", &[])?,
            &[w, dy, dx],
            imm(n, i, o).bytes(),
            grid_1d(n * i, 256),
        )?,
        gpu.dispatch(
            &gpu.kernel("linear", "backward_params", &[])?,
            &[x, dy, dw, db],
            imm(n, i, o).bytes(),
            grid_1d(o * (i + 1), 256),
        )?,
    ])
}

/// Plain-Rust references in f64.
pub mod cpu {
    /// y [n, o] = x [n, i] W^T + b.
    pub fn forward(x: &[f64], w: &[f64], b: &[f64], n: usize, i: usize, o: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * o];
        for r in 0..n {
            for c in 0..o {
                let dot: f64 = (0..i).map(|k| x[r * i + k] * w[c * i + k]).sum();
                y[r * o + c] = dot + b[c];
            }
        }
        y
    }

    /// (dx [n, i], dW [o, i], db [o]).
    pub fn backward(
        x: &[f64],
        w: &[f64],
        dy: &[f64],
        n: usize,
        i: usize,
        o: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; n * i];
        let mut dw = vec![0.0; o * i];
        let mut db = vec![0.0; o];
        for r in 0..n {
            for c in 0..o {
                let g = dy[r * o + c];
                db[c] += g;
                for k in 0..i {
                    dx[r * i + k] += g * w[c * i + k];
                    dw[c * i + k] += g * x[r * i + k];
                }
            }
        }
        (dx, dw, db)
    }
}
