// Fully connected layer: y [N, OUT] = x [N, IN] W^T + b, W [OUT, IN], b [OUT], and its backward.
// Every reduction runs in a fixed order, so results are the same bits every run.
// #include "common/grid.wgsl"
// #include "common/workgroup_sum.wgsl"

struct Params {
    n: u32,
    in_features: u32,
    out_features: u32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;
@group(0) @binding(7) var<storage, read_write> db: array<f32>;

// One workgroup per sample (workgroup_id.x + workgroup_id.y * 65535): for each output, lane l sums
// x[k] * W[o, k] over k = l, l+256, ... in order, then common/workgroup_sum.wgsl. IN reaches
// 8192 while OUT is 10, so the parallelism is along IN.
@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.x + wg.y * 65535u;
    if row >= p.n {
        return;
    }
    let xo = row * p.in_features;
    for (var o = 0u; o < p.out_features; o++) {
        let wo = o * p.in_features;
        var s = 0.0;
        for (var k = l; k < p.in_features; k += 256u) {
            s += x[xo + k] * w[wo + k];
        }
        let total = workgroup_sum(l, vec4<f32>(s, 0.0, 0.0, 0.0)).x;
        if l == 0u {
            y[row * p.out_features + o] = total + b[o];
        }
    }
}

// dx [N, IN]: one lane per element, dx[n, k] = sum over o in order of dy[n, o] * W[o, k].
@compute @workgroup_size(256)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n * p.in_features {
        return;
    }
    let row = i / p.in_features;
    let k = i - row * p.in_features;
    var s = 0.0;
    for (var o = 0u; o < p.out_features; o++) {
        s += dy[row * p.out_features + o] * w[o * p.in_features + k];
    }
    dx[i] = s;
}

// dW [OUT, IN] and db [OUT]: one lane per (o, k) for k in 0..=IN (k = IN computes db[o]), each a
// sum over the samples in order; adjacent lanes read adjacent x.
@compute @workgroup_size(256)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let width = p.in_features + 1u;
    if i >= p.out_features * width {
        return;
    }
    let o = i / width;
    let k = i - o * width;
    var s = 0.0;
    if k < p.in_features {
        for (var r = 0u; r < p.n; r++) {
            s += dy[r * p.out_features + o] * x[r * p.in_features + k];
        }
        dw[o * p.in_features + k] = s;
    } else {
        for (var r = 0u; r < p.n; r++) {
            s += dy[r * p.out_features + o];
        }
        db[o] = s;
    }
}
