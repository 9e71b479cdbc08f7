// The packed engine's other kernels (src/infer/kernels.rs). Activations are NCHW f32; bn [C, 4]
// holds a BatchNorm's (running_mean, running_var, gamma, beta), applied exactly as
// shaders/batchnorm.wgsl's normalize_running applies it (common/batchnorm_running.wgsl), so the
// packed engine and the float evaluation path give the same bits.
//
// Entry points:
//   mean_pack       x [N, C, H, W] -> bits [N, H, W, Cw, 2]: one workgroup per sample computes
//                   the sample's mean over C*H*W, then packs the signs of x - mean (= sign(a2) of
//                   the float layer, std > 0) as shaders/binconv.wgsl does
//                   (common/sign_bits.wgsl). The mean is summed in the same order as
//                   shaders/standardize.wgsl's activation_stats (256 strided lanes, then
//                   common/workgroup_sum.wgsl), so the same x gives the same mean bits as the
//                   float path.
//   batchnorm       io [N, C, H*W] in place: io = [hardtanh](BN(io)).
//   maxpool_batchnorm  x [N, C, H, W] -> out [N, C, H/2, W/2] = [hardtanh](BN(max2x2(x)))
//                   (the window of common/max_pool_window.wgsl, as shaders/pool.wgsl).
//   avgpool_batchnorm  x [N, C, H, W] -> out [N, C] = BN(mean_hw(x)) (the hw values summed in
//                   order by common/plane_sum.wgsl, as shaders/pool.wgsl's global_avg_forward).
// The elementwise entry points use a 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"
// #include "common/sign_bits.wgsl"
// #include "common/workgroup_sum.wgsl"
// #include "common/batchnorm_running.wgsl"
// #include "common/max_pool_window.wgsl"
// #include "common/plane_sum.wgsl"

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    cw: u32,
    // Invocations that do work (elementwise entry points).
    total: u32,
    hardtanh: u32,
    eps: f32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> bn: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> bits: array<u32>;
@group(0) @binding(5) var<storage, read_write> io: array<f32>;

const WG: u32 = 256u;

// [hardtanh](BN(v)) for channel c, written as normalize_running writes it.
fn finish(v: f32, c: u32) -> f32 {
    let rstd = running_rstd(bn[4u * c + 1u], p.eps);
    let y = batchnorm_apply(v, bn[4u * c], rstd, bn[4u * c + 2u], bn[4u * c + 3u]);
    if p.hardtanh == 1u {
        return clamp(y, -1.0, 1.0);
    }
    return y;
}

// One workgroup per sample (workgroup_id.x).
@compute @workgroup_size(256)
fn mean_pack(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let img = wid.x;
    let plane = p.h * p.w;
    let len = p.c * plane;
    let base = img * len;
    var s = 0.0;
    for (var j = tid; j < len; j += WG) {
        s += x[base + j];
    }
    let mean = workgroup_sum(tid, vec4<f32>(s, 0.0, 0.0, 0.0)).x / f32(len);
    // Word (c, pixel) with the pixel fastest, so the 32 reads of each lane are coalesced across
    // lanes.
    let words = p.cw * plane;
    for (var wd = tid; wd < words; wd += WG) {
        let pix = wd % plane;
        let c = wd / plane;
        let c0 = c * 32u;
        let count = min(32u, p.c - c0);
        var word = vec2<u32>(0u);
        for (var j = 0u; j < count; j++) {
            word |= sign_bits(x[base + (c0 + j) * plane + pix] - mean, j);
        }
        let o = ((img * plane + pix) * p.cw + c) * 2u;
        bits[o] = word.x;
        bits[o + 1u] = word.y;
    }
}

@compute @workgroup_size(256)
fn batchnorm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let c = (i / (p.h * p.w)) % p.c;
    io[i] = finish(io[i], c);
}

// One invocation per output element.
@compute @workgroup_size(256)
fn maxpool_batchnorm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let window = max_pool_window(i, p.h, p.w);
    let plane = window.x;
    let base = window.y;
    let m = max(max(x[base], x[base + 1u]), max(x[base + p.w], x[base + p.w + 1u]));
    out[i] = finish(m, plane % p.c);
}

// One invocation per (sample, channel).
@compute @workgroup_size(256)
fn avgpool_batchnorm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let hw = p.h * p.w;
    // The float path stores the mean before its BatchNorm reads it; the max (an identity on
    // finite values) keeps the division's multiply from being fused into the subtraction.
    out[i] = finish(max(plane_sum(i * hw, hw) / f32(hw), -3.4028235e38), i % p.c);
}
