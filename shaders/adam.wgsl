// PyTorch Adam (L2 weight decay added to the gradient, no AMSGrad; docs/numerics.md section 9)
// over a whole parameter arena in one dispatch, with a learning-rate and a weight-decay
// multiplier per parameter group (common/param_groups.wgsl).
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"
// #include "common/param_groups.wgsl"

struct Adam {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    // 1 - beta1 and 1 - beta2, computed on the host in f64 (1 - beta2 in f32 would lose 5
    // digits: 1 - 0.999f32 is 0.00100005).
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    weight_decay: f32,
    // 1 - beta1^t and sqrt(1 - beta2^t) of this step t (1-based), computed on the host in f64.
    bias_correction1: f32,
    bias_correction2_sqrt: f32,
}
var<immediate> adam: Adam;

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg_sq: array<f32>;
// The group of each arena element, and each group's multipliers.
@group(0) @binding(4) var<storage, read> param_group: array<u32>;
@group(0) @binding(5) var<storage, read> group_scales: array<GroupScales>;

// g' = g + wd * w; m = beta1 * m + (1 - beta1) * g'; v = beta2 * v + (1 - beta2) * g'^2;
// w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), with lr and wd multiplied by the element's
// group scales. Both moments start at 0 (bias_correction1 is then 1 - beta1 at the first step).
@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= adam.n {
        return;
    }
    let scales = group_scales[param_group[i]];
    let w = param[i];
    let g = grad[i] + (adam.weight_decay * scales.decay) * w;
    let m = adam.beta1 * exp_avg[i] + adam.one_minus_beta1 * g;
    let v = adam.beta2 * exp_avg_sq[i] + adam.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let step_size = adam.lr * scales.lr / adam.bias_correction1;
    let denom = sqrt(v) / adam.bias_correction2_sqrt + adam.eps;
    param[i] = w - step_size * (m / denom);
}
