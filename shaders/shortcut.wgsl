// Option-A shortcut of the CIFAR ResNets: y = x[:, :, ::2, ::2] with `pad` zero channels on each
// side of the channel dimension: x [N, C, H, W] -> y [N, C + 2*pad, ceil(H/2), ceil(W/2)].
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"

struct Params {
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    oh: u32,
    ow: u32,
    pad: u32,
    total: u32,  // invocations that do work
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

// dst[i] = src[j], or 0 where j < 0.
fn copy_or_zero(i: u32, j: i32) {
    var v = 0.0;
    if j >= 0 {
        v = src[u32(j)];
    }
    dst[i] = v;
}

// The element of x that output element i copies: (n, co - pad, 2 oy, 2 ox) for the channels
// co that come from x, -1 for the zero channels.
fn forward_source(i: u32) -> i32 {
    let e = nchw(i, p.c_out, p.oh, p.ow);
    if e.y < p.pad || e.y - p.pad >= p.c_in {
        return -1;
    }
    return i32(((e.x * p.c_in + e.y - p.pad) * p.h + 2u * e.z) * p.w + 2u * e.w);
}

// The element of dy that input-gradient element i takes: its channel in dy at even (y, x), -1
// (a zero gradient) at odd ones.
fn backward_source(i: u32) -> i32 {
    let e = nchw(i, p.c_in, p.h, p.w);
    if (e.z & 1u) != 0u || (e.w & 1u) != 0u {
        return -1;
    }
    return i32(((e.x * p.c_out + e.y + p.pad) * p.oh + e.z / 2u) * p.ow + e.w / 2u);
}

// One lane per output element; src = x, dst = y.
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i < p.total {
        copy_or_zero(i, forward_source(i));
    }
}

// One lane per input element; src = dy, dst = dx: dy's matching channel at even (y, x), else 0.
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i < p.total {
        copy_or_zero(i, backward_source(i));
    }
}
