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
// common/workgroup_sum.wgsl's. Software adapters run channel_dot_walk.wgsl's kernels instead.
// #include "common/channel_chunks.wgsl"
// #include "common/channel_dot_io.wgsl"
// #include "common/workgroup_sum.wgsl"

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

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.x;
    var s = 0.0;
    for (var q = l; q < p.chunks; q += WG) {
        s += partials_in[c * p.chunks + q];
    }
    let total = workgroup_sum(l, vec4<f32>(s, 0.0, 0.0, 0.0)).x;
    if l == 0u {
        write_dot(c, total);
    }
}
