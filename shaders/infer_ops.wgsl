// The packed engine's other kernels (src/infer/kernels.rs). Activations are NCHW f32; bn [C, 4]
// holds a BatchNorm's (running_mean, running_var, gamma, beta), applied exactly as
// shaders/batchnorm.wgsl's normalize_running applies it, so the packed engine and the float
// evaluation path give the same bits.
//
// Entry points:
//   mean_pack       x [N, C, H, W] -> bits [N, H, W, Cw, 2]: one workgroup per sample computes
//                   the sample's mean over C*H*W, then packs the signs of x - mean (= sign(a2) of
//                   the float layer, std > 0) as shaders/binconv.wgsl does (sign plane, nonzero
//                   plane, channel c -> bit c % 32 of word c / 32). The mean is summed in the same
//                   order as shaders/standardize.wgsl's activation_stats (256 strided lanes, then
//                   the same tree), so the same x gives the same mean bits as the float path.
//   batchnorm       io [N, C, H*W] in place: io = [hardtanh](BN(io)).
//   maxpool_batchnorm  x [N, C, H, W] -> out [N, C, H/2, W/2] = [hardtanh](BN(max2x2(x))).
//   avgpool_batchnorm  x [N, C, H, W] -> out [N, C] = BN(mean_hw(x)) (the hw values summed in
//                   order, as shaders/pool.wgsl's global_avg_forward).
// The elementwise entry points use a 1D grid: flat index = gid.x + gid.y * nwg.x * 256.

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
var<workgroup> red: array<f32, WG>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// [hardtanh](BN(v)) for channel c, written as normalize_running writes it.
fn finish(v: f32, c: u32) -> f32 {
    let rstd = 1.0 / sqrt(bn[4u * c + 1u] + p.eps);
    let y = (v - bn[4u * c]) * rstd * bn[4u * c + 2u] + bn[4u * c + 3u];
    if p.hardtanh == 1u {
        return clamp(y, -1.0, 1.0);
    }
    return y;
}

// (sign bit, nonzero bit) of v at bit position j; sign(0) = 0 as torch.sign.
fn sign_bits(v: f32, j: u32) -> vec2<u32> {
    return vec2<u32>(select(0u, 1u << j, v < 0.0), select(0u, 1u << j, v != 0.0));
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
    red[tid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if tid < k {
            red[tid] += red[tid + k];
        }
        workgroupBarrier();
    }
    let mean = red[0] / f32(len);
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
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let ox = i % ow;
    let t = i / ow;
    let oy = t % oh;
    let plane = t / oh;
    let base = (plane * p.h + 2u * oy) * p.w + 2u * ox;
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
    var s = 0.0;
    for (var k = 0u; k < hw; k++) {
        s += x[i * hw + k];
    }
    // The float path stores the mean before its BatchNorm reads it; the max (an identity on
    // finite values) keeps the division's multiply from being fused into the subtraction.
    out[i] = finish(max(s / f32(hw), -3.4028235e38), i % p.c);
}
