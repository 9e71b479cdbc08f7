// Per-channel dot products over [N, C, HW] tensors: out[c] = sum_{n,hw} a * b / div[c] (0 where
// div[c] == 0). Used for the gradient of the binary conv's per-channel scale alpha:
// dalpha_c = sum dy * (conv output before scaling) = sum dy * y / alpha_c.
//
// That sum cancels heavily (a BatchNorm follows the conv, which makes the loss nearly invariant
// to alpha: the true value is about eps/var of its terms), so it is summed directly rather than
// through the weight gradient (sum_k sign(w3) * dbw_k), which compounds two rounded reductions.
// (Compensated TwoSum summation would not survive here: WGSL cannot mark arithmetic as precise,
// and shader compilers such as Mesa's NIR legally simplify it away.)
// Deterministic two stages as in batchnorm.wgsl (common/channel_chunks.wgsl): `partials` reduces
// chunk q of channel c, `finish` combines a channel's chunks; the trees are
// common/workgroup_sum.wgsl's. Software adapters run `partials_walk` instead of `partials`
// (common/channel_walk.wgsl): one partial per lane, p.chunks = chunks * WALK_LANES partials per
// channel for `finish`.
// #include "common/channel_chunks.wgsl"
// #include "common/channel_walk.wgsl"
// #include "common/workgroup_sum.wgsl"

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    chunks: u32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials_out: array<f32>;
@group(0) @binding(3) var<storage, read> partials_in: array<f32>;
@group(0) @binding(4) var<storage, read> div: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn partials(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    var s = 0.0;
    for (var k = 0u; k < PER_LANE; k++) {
        let j = chunk_element(wg.x, k, l);
        if j < m {
            let e = channel_element(c, j, p.c, p.hw);
            s += a[e] * b[e];
        }
    }
    let total = workgroup_sum(l, vec4<f32>(s, 0.0, 0.0, 0.0)).x;
    if l == 0u {
        partials_out[c * p.chunks + wg.x] = total;
    }
}

// Software adapters' partials: lane l of workgroup (q, c) -> partial q*WALK_LANES + l of c.
@compute @workgroup_size(64)
fn partials_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var s = 0.0;
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        s += a[w.e] * b[w.e];
        walk_next(&w, p.c, p.hw);
    }
    partials_out[c * p.chunks + wg.x * WALK_LANES + l] = s;
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.x;
    var s = 0.0;
    for (var q = l; q < p.chunks; q += WG) {
        s += partials_in[c * p.chunks + q];
    }
    let total = workgroup_sum(l, vec4<f32>(s, 0.0, 0.0, 0.0)).x;
    if l == 0u {
        let d = div[c];
        out[c] = select(0.0, total / d, d != 0.0);
    }
}
