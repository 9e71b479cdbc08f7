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

// One lane per output element; src = x, dst = y.
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let e = nchw(i, p.c_out, p.oh, p.ow);
    let co = e.y;
    var v = 0.0;
    if co >= p.pad && co - p.pad < p.c_in {
        v = src[((e.x * p.c_in + co - p.pad) * p.h + 2u * e.z) * p.w + 2u * e.w];
    }
    dst[i] = v;
}

// One lane per input element; src = dy, dst = dx: dy's matching channel at even (y, x), else 0.
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let e = nchw(i, p.c_in, p.h, p.w);
    var g = 0.0;
    if (e.z & 1u) == 0u && (e.w & 1u) == 0u {
        g = src[((e.x * p.c_out + e.y + p.pad) * p.oh + e.z / 2u) * p.ow + e.w / 2u];
    }
    dst[i] = g;
}
