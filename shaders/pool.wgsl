// Pooling over x [N, C, H, W], seen as P = N*C planes of H x W.
// - Global average pool: [P, H*W] -> [P]; one lane per plane sums its H*W values in order.
// - 2x2 max pool, stride 2: [P, H, W] -> [P, H/2, W/2] (floor, as PyTorch). The gradient goes to
//   the window's maximum; on ties to the first in row-major window order (strict >), as PyTorch.
//   The backward recomputes the argmax from x instead of saving indices.
// - k x k max pool with any stride and padding (the ImageNet ResNets' 3x3/s2/p1):
//   [P, H, W] -> [P, OH, OW], OH = (H + 2 pad - k) / stride + 1. Padding never wins; the first
//   maximum in row-major window order wins ties (strict >), as PyTorch's MaxPool2d. The backward
//   gives each input the sum, in row-major window order, of dy over the windows whose argmax it is.
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"
// #include "common/max_pool_window.wgsl"
// #include "common/plane_sum.wgsl"

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    total: u32,  // invocations that do work
    // The k x k max pool's window (0 for the other entry points).
    k: u32,
    stride: u32,
    pad: u32,
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

// Output side of the k x k pool along a side of `size`.
fn pooled(size: u32) -> u32 {
    return (size + 2u * p.pad - p.k) / p.stride + 1u;
}

// Index into x of the first maximum of window (plane, oy, ox); its taps inside the input only.
fn window_max_index(plane: u32, oy: u32, ox: u32) -> u32 {
    // Window rows/columns in padded coordinates oy*stride .. oy*stride + k - 1, clipped.
    let y0 = max(i32(oy * p.stride) - i32(p.pad), 0);
    let x0 = max(i32(ox * p.stride) - i32(p.pad), 0);
    let y1 = min(i32(oy * p.stride + p.k) - i32(p.pad), i32(p.h));
    let x1 = min(i32(ox * p.stride + p.k) - i32(p.pad), i32(p.w));
    var best = (plane * p.h + u32(y0)) * p.w + u32(x0);
    var top = x[best];
    for (var yy = y0; yy < y1; yy++) {
        for (var xx = x0; xx < x1; xx++) {
            let e = (plane * p.h + u32(yy)) * p.w + u32(xx);
            if x[e] > top {
                top = x[e];
                best = e;
            }
        }
    }
    return best;
}

// One lane per output element [plane, oy, ox].
@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let ow = pooled(p.w);
    let oh = pooled(p.h);
    let t = i / ow;
    out[i] = x[window_max_index(t / oh, t % oh, i % ow)];
}

// One lane per input element [plane, y, x]: the sum of dy over the windows (row-major) whose
// first maximum it is.
@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let ow = pooled(p.w);
    let oh = pooled(p.h);
    let xx = i % p.w;
    let t = i / p.w;
    let yy = t % p.h;
    let plane = t / p.h;
    // Windows o with o*stride <= y + pad <= o*stride + k - 1.
    let py = yy + p.pad;
    let px = xx + p.pad;
    let oy0 = select(0u, (py + 1u - p.k + p.stride - 1u) / p.stride, py + 1u > p.k);
    let ox0 = select(0u, (px + 1u - p.k + p.stride - 1u) / p.stride, px + 1u > p.k);
    let oy1 = min(py / p.stride + 1u, oh);
    let ox1 = min(px / p.stride + 1u, ow);
    var g = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            if window_max_index(plane, oy, ox) == i {
                g += dy[(plane * oh + oy) * ow + ox];
            }
        }
    }
    out[i] = g;
}
