// defines: Params, p, the bindings, write_stats and write_grads of the BatchNorm kernels (and
// welford, merge from common/moments.wgsl): batchnorm.wgsl (the GPU variant) and
// batchnorm_walk.wgsl (the software adapters' kernels), so that both read the same immediates
// and buffers and end their reductions alike.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    chunks: u32,     // partials per channel = ceil(M / CHUNK)
    total: u32,      // N*C*HW
    eps: f32,
    momentum: f32,
    update: u32,     // stats_finish: 1 = also update the running statistics
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mean_in: array<f32>;
@group(0) @binding(5) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(6) var<storage, read> dgamma_in: array<f32>;
@group(0) @binding(7) var<storage, read> dbeta_in: array<f32>;
@group(0) @binding(8) var<storage, read> partials_in: array<f32>;
@group(0) @binding(9) var<storage, read> running_mean_in: array<f32>;
@group(0) @binding(10) var<storage, read> running_var_in: array<f32>;
@group(0) @binding(11) var<storage, read_write> partials_out: array<f32>;
@group(0) @binding(12) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(13) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(14) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(15) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(16) var<storage, read_write> out: array<f32>;
@group(0) @binding(17) var<storage, read_write> dgamma_out: array<f32>;
@group(0) @binding(18) var<storage, read_write> dbeta_out: array<f32>;
@group(0) @binding(19) var<storage, read> res: array<f32>;
@group(0) @binding(20) var<storage, read_write> grad_out: array<f32>;
@group(0) @binding(21) var<storage, read_write> dot_out: array<f32>;

// #include "common/moments.wgsl"

// The end of stats_finish for channel c from its (count, mean, M2) summary t: batch mean and
// rstd = 1/sqrt(biased var + eps); with p.update, also running = (1 - m) * running + m * batch
// value, the variance unbiased (M - 1 divisor).
fn write_stats(c: u32, t: vec3<f32>) {
    mean_out[c] = t.y;
    rstd_out[c] = 1.0 / sqrt(t.z / t.x + p.eps);
    if p.update != 0u {
        let m = p.momentum;
        running_mean[c] = (1.0 - m) * running_mean[c] + m * t.y;
        running_var[c] = (1.0 - m) * running_var[c] + m * (t.z / (t.x - 1.0));
    }
}

// The end of grad_finish for channel c from (sum dy, sum dy * (x - mean)): dbeta and
// dgamma = sum dy * xhat.
fn write_grads(c: u32, total: vec2<f32>) {
    dbeta_out[c] = total.x;
    dgamma_out[c] = total.y * rstd_in[c];
}
