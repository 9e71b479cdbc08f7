// Pooling over x [N, C, H, W], seen as P = N*C planes of H x W.
// - Global average pool: [P, H*W] -> [P]; one lane per plane sums its H*W values in order.
// - 2x2 max pool, stride 2: [P, H, W] -> [P, H/2, W/2] (floor, as PyTorch). The gradient goes to
//   the window's maximum; on ties to the first in row-major window order (strict >), as PyTorch.
//   The backward recomputes the argmax from x instead of saving indices.
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"
// #include "common/max_pool_window.wgsl"
// #include "common/plane_sum.wgsl"

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    total: u32,  // invocations that do work
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// out[plane] = mean of x over the plane.
@compute @workgroup_size(256)
fn global_avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let hw = p.h * p.w;
    out[i] = plane_sum(i * hw, hw) / f32(hw);
}

// out = dx = dy[plane] / (H*W) for every element of the plane.
@compute @workgroup_size(256)
fn global_avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let hw = p.h * p.w;
    out[i] = dy[i / hw] / f32(hw);
}

// Row-major index 0..3 of the maximum of the 2x2 window whose top-left is x[base].
fn window_argmax(base: u32) -> u32 {
    var best = x[base];
    var arg = 0u;
    let v1 = x[base + 1u];
    if v1 > best {
        best = v1;
        arg = 1u;
    }
    let v2 = x[base + p.w];
    if v2 > best {
        best = v2;
        arg = 2u;
    }
    if x[base + p.w + 1u] > best {
        arg = 3u;
    }
    return arg;
}

// One lane per output element [plane, oy, ox].
@compute @workgroup_size(256)
fn max2_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let base = max_pool_window(i, p.h, p.w).y;
    let a = window_argmax(base);
    out[i] = x[base + (a >> 1u) * p.w + (a & 1u)];
}

// One lane per input element [plane, y, x]: dy of its window if it is the window's argmax, else 0
// (also 0 for the last row/column of odd sizes, which no window covers).
@compute @workgroup_size(256)
fn max2_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let ow = p.w / 2u;
    let oh = p.h / 2u;
    let xx = i % p.w;
    let t = i / p.w;
    let yy = t % p.h;
    let plane = t / p.h;
    let ox = xx / 2u;
    let oy = yy / 2u;
    var g = 0.0;
    if ox < ow && oy < oh {
        let base = (plane * p.h + 2u * oy) * p.w + 2u * ox;
        if window_argmax(base) == (yy & 1u) * 2u + (xx & 1u) {
            g = dy[(plane * oh + oy) * ow + ox];
        }
    }
    out[i] = g;
}
