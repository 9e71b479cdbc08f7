// Option-A shortcut of the CIFAR ResNets: y = x[:, :, ::2, ::2] with `pad` zero channels on each
// side of the channel dimension: x [N, C, H, W] -> y [N, C + 2*pad, ceil(H/2), ceil(W/2)].
// 1D grid: flat index = gid.x + gid.y * nwg.x * 256 (see gpu::grid_1d).

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

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// One lane per output element; src = x, dst = y.
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let ox = i % p.ow;
    let t = i / p.ow;
    let oy = t % p.oh;
    let t2 = t / p.oh;
    let co = t2 % p.c_out;
    let n = t2 / p.c_out;
    var v = 0.0;
    if co >= p.pad && co - p.pad < p.c_in {
        v = src[((n * p.c_in + co - p.pad) * p.h + 2u * oy) * p.w + 2u * ox];
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
    let xx = i % p.w;
    let t = i / p.w;
    let yy = t % p.h;
    let t2 = t / p.h;
    let ci = t2 % p.c_in;
    let n = t2 / p.c_in;
    var g = 0.0;
    if (xx & 1u) == 0u && (yy & 1u) == 0u {
        g = src[((n * p.c_out + ci + p.pad) * p.oh + yy / 2u) * p.ow + xx / 2u];
    }
    dst[i] = g;
}
