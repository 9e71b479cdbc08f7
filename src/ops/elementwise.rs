//! Elementwise kernels (shaders/elementwise.wgsl): hardtanh, ReLU, residual add.
//! Software adapters (`KernelVariant::Software`) add vec4s (`add4`) where the length allows.

use crate::gpu::{grid_1d, Dispatch, Gpu, Imm, KernelVariant, Tensor};
use crate::ops::shape::expect_len;
use anyhow::Result;

fn unary(gpu: &Gpu, entry: &str, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let k = gpu.kernel("elementwise", entry, &[])?;
    let n = out.len();
    gpu.dispatch(
        &k,
        &[x, out],
        Imm::new().u(n as u32).bytes(),
        grid_1d(n, 256),
    )
}

fn binary(gpu: &Gpu, entry: &str, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let k = gpu.kernel("elementwise", entry, &[])?;
    let n = out.len();
    gpu.dispatch(
        &k,
        &[a, b, out],
        Imm::new().u(n as u32).bytes(),
        grid_1d(n, 256),
    )
}

/// y = clamp(x, -1, 1).
pub fn hardtanh_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    unary(gpu, "hardtanh_forward", x, y)
}

/// dx = dy where -1 < x < 1 (x is the forward input).
pub fn hardtanh_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    binary(gpu, "hardtanh_backward", x, dy, dx)
}

pub fn relu_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    unary(gpu, "relu_forward", x, y)
}

/// dx = dy where x > 0.
pub fn relu_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    binary(gpu, "relu_backward", x, dy, dx)
}

/// out = a + b; with `KernelVariant::Software` four floats per invocation when the length is a
/// multiple of 4 (the same sums, so the same bits).
pub fn add(
    gpu: &Gpu,
    variant: KernelVariant,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<Dispatch> {
    let n = out.len();
    if variant == KernelVariant::Gpu || !n.is_multiple_of(4) {
        return binary(gpu, "add", a, b, out);
    }
    expect_len(a, n, "add input")?;
    expect_len(b, n, "add input")?;
    let k = gpu.kernel("elementwise", "add4", &[])?;
    gpu.dispatch(
        &k,
        &[a, b, out],
        Imm::new().u((n / 4) as u32).bytes(),
        grid_1d(n / 4, 256),
    )
}

/// Plain-Rust references.
pub mod cpu {
    pub fn hardtanh_forward(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v.clamp(-1.0, 1.0)).collect()
    }
    pub fn hardtanh_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(dy)
            .map(|(&x, &g)| if x > -1.0 && x < 1.0 { g } else { 0.0 })
            .collect()
    }
    pub fn relu_forward(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v.max(0.0)).collect()
    }
    pub fn relu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(dy)
            .map(|(&x, &g)| if x > 0.0 { g } else { 0.0 })
            .collect()
    }
    pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }
}
