// PyTorch SGD with momentum and weight decay (dampening 0, no Nesterov) over a whole parameter
// arena in one dispatch, with a learning-rate and a weight-decay multiplier per parameter group,
// `fill` (set a tensor to a constant, e.g. to zero it inside a pass), and `find_nonfinite` (flag
// NaN or infinity anywhere in an arena).
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"
// #include "common/param_groups.wgsl"

struct Sgd {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    first_step: u32,  // 1: buf = g' (PyTorch creates the momentum buffer from the first gradient)
}
var<immediate> sgd: Sgd;

struct Fill {
    n: u32,
    bits: u32,  // the value's 32 bits (f32 or u32)
}
var<immediate> fill_params: Fill;

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> momentum_buf: array<f32>;
@group(0) @binding(3) var<storage, read_write> words: array<u32>;
@group(0) @binding(4) var<storage, read> checked: array<f32>;
@group(0) @binding(5) var<storage, read_write> nonfinite_flag: array<atomic<u32>>;
// The group of each arena element, and each group's multipliers.
@group(0) @binding(6) var<storage, read> param_group: array<u32>;
@group(0) @binding(7) var<storage, read> group_scales: array<GroupScales>;

struct Check {
    n: u32,
}
var<immediate> check_params: Check;

// g' = g + wd * w; buf = momentum * buf + g' (buf = g' at the first step); w -= lr * buf, with
// lr and wd multiplied by the element's group scales.
@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= sgd.n {
        return;
    }
    let scales = group_scales[param_group[i]];
    let w = param[i];
    let g = grad[i] + (sgd.weight_decay * scales.decay) * w;
    var b = g;
    if sgd.first_step == 0u {
        b = sgd.momentum * momentum_buf[i] + g;
    }
    momentum_buf[i] = b;
    param[i] = w - (sgd.lr * scales.lr) * b;
}

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= fill_params.n {
        return;
    }
    words[i] = fill_params.bits;
}

// nonfinite_flag[0] |= 1 when some checked[i] (i < n) is NaN or infinite: all exponent bits set.
// An integer OR, so the result does not depend on the order of the threads.
@compute @workgroup_size(256)
fn find_nonfinite(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= check_params.n {
        return;
    }
    if (bitcast<u32>(checked[i]) & 0x7f800000u) == 0x7f800000u {
        atomicOr(&nonfinite_flag[0], 1u);
    }
}
