// defines: hardtanh, hardtanh_grad: hardtanh and its backward, written once for the elementwise
// kernels (elementwise.wgsl) and the software adapters' BatchNorm + hardtanh kernels
// (batchnorm.wgsl *_hardtanh_walk), so both give the same bits.

fn hardtanh(v: f32) -> f32 {
    return clamp(v, -1.0, 1.0);
}

// dL/dx from dL/dy = g at the forward input x: g where -1 < x < 1, else 0 (PyTorch's
// hardtanh_backward zeroes the gradient at the bounds themselves).
fn hardtanh_grad(x: f32, g: f32) -> f32 {
    return select(0.0, g, x > -1.0 && x < 1.0);
}
