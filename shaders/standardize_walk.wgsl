// The per-sample passes of the activation standardisation on software adapters
// (gpu::KernelVariant::Software), over common/channel_walk.wgsl (a row being channel s of a
// [1, rows, len] tensor: workgroup (q, s) over chunk q of row s, its statistics loaded once), with
// the immediates and bindings of standardize.wgsl (common/standardize_io.wgsl):
//   activation_stats_walk + activation_stats_finish_walk
//       standardize.wgsl's activation_stats in one pass over x and without barriers: lane t of
//       SUM_LANES = 256 per row (four workgroups of 64) takes elements t, t + 256, ... of the row
//       in that order, as an invocation of activation_stats does, keeping their plain sum and
//       their Welford (count, mean, M2) summary (common/moments.wgsl). The finish adds the 256
//       sums in common/workgroup_sum.wgsl's tree, sequentially, so the mean = sum / len has the
//       bits of activation_stats' and of the packed engine's (infer_ops.wgsl mean_pack, whose
//       signs of x - mean must match the float path's), and merges the summaries in lane order
//       into M2, whose unbiased std divides by len - 1 as there (its rounding differs from the
//       two-pass sum of squares).
//   activation_output_walk, activation_backward_apply_walk
//       what activation_output and activation_backward_apply compute, with the same expressions.
//   activation_backward_sums_walk + activation_backward_sums_finish_walk
//       activation_backward_sums as per-lane partials summed per row in order; in mode 0 it also
//       writes sign(x - mean) (see below).
// Compiled without runtime checks (gpu::kernel UNCHECKED_SHADERS): the host (rbnn::standardize)
// checks the lengths against [rows, len] with rows, len >= 1, and the walk touches only elements
// j < len of row s < rows.
// #include "common/channel_walk.wgsl"
// #include "common/standardize_io.wgsl"
// #include "common/moments.wgsl"
// #include "common/workgroup_sum.wgsl"

// The index of lane l's partial of workgroup (q, s) (row_partials per row).
fn row_partial(wg: vec3<u32>, l: u32) -> u32 {
    return wg.y * row_partials() + wg.x * WALK_LANES + l;
}

// Software adapters' activation_stats, first stage: lane t = 64 * wg.x + l of row s = wg.y ->
// sums_out[(s * SUM_LANES + t) * 4..] = (count, mean, M2, sum) of elements t, t + SUM_LANES, ...
// of the row, in one pass.
@compute @workgroup_size(64)
fn activation_stats_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let t = wg.x * 64u + l;
    let base = wg.y * p.len;
    var m = vec3<f32>(0.0);
    var sum = 0.0;
    for (var j = t; j < p.len; j += SUM_LANES) {
        let v = src[base + j];
        m = welford(m, v);
        sum += v;
    }
    let o = (wg.y * SUM_LANES + t) * 4u;
    sums_out[o] = m.x;
    sums_out[o + 1u] = m.y;
    sums_out[o + 2u] = m.z;
    sums_out[o + 3u] = sum;
}

// Invocation s < rows: stats_out[2s..] = (mean, unbiased std) of row s from its lanes' partials
// (sums_in, as activation_stats_walk wrote them): the sums added in workgroup_sum's tree (lane i
// adding lane i + h for h = 128, 64, ..., 1: the same additions in the same order), the
// summaries merged in lane order.
@compute @workgroup_size(64)
fn activation_stats_finish_walk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if s >= p.rows {
        return;
    }
    var sums: array<f32, SUM_LANES>;
    var t = vec3<f32>(0.0);
    for (var i = 0u; i < SUM_LANES; i++) {
        let o = (s * SUM_LANES + i) * 4u;
        t = merge(t, vec3<f32>(sums_in[o], sums_in[o + 1u], sums_in[o + 2u]));
        sums[i] = sums_in[o + 3u];
    }
    for (var h = SUM_LANES / 2u; h > 0u; h >>= 1u) {
        for (var i = 0u; i < h; i++) {
            sums[i] += sums[i + h];
        }
    }
    stats_out[2u * s] = sums[0] / f32(p.len);
    stats_out[2u * s + 1u] = sqrt(t.z / f32(p.len - 1u));
}

// Software adapters' activation_output: workgroup (q, s) over chunk q of row s.
@compute @workgroup_size(64)
fn activation_output_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let s = wg.y;
    let mean = stats_in[2u * s];
    let sd = stats_in[2u * s + 1u];
    var w = walk_start(wg.x, l, s, p.rows, p.len);
    let steps = walk_steps(w, p.len);
    for (var k = 0u; k < steps; k++) {
        let d = src[w.e] - mean;
        if p.mode == 0u {
            dst[w.e] = d / sd;
        } else {
            dst[w.e] = sign(d);
        }
        walk_next(&w);
    }
}

// Software adapters' activation_backward_apply: workgroup (q, s) over chunk q of row s.
@compute @workgroup_size(64)
fn activation_backward_apply_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let s = wg.y;
    let mean = stats_in[2u * s];
    let sd = stats_in[2u * s + 1u];
    let gm = sums_in[2u * s] / f32(p.len);
    let ga = sums_in[2u * s + 1u] / f32(p.len - 1u);
    var w = walk_start(wg.x, l, s, p.rows, p.len);
    let steps = walk_steps(w, p.len);
    for (var k = 0u; k < steps; k++) {
        let a2 = (src[w.e] - mean) / sd;
        grad[w.e] = (grad[w.e] - gm - a2 * ga) / sd;
        walk_next(&w);
    }
}

// Software adapters' activation_backward_sums, as per-lane partials: lane l of workgroup (q, s)
// -> sums_out[((s * partials) + q*WALK_LANES + l) * 2..] = (sum g, sum g * a2) over its elements
// (partials = WALK_LANES per chunk of the row). In mode 0 (binary activations) grad <- grad *
// ApproxSign'(a2) as there, and dst = sign(x - mean), what activation_output writes in mode 1
// (the weight gradient's activations), so that this pass replaces that one.
@compute @workgroup_size(64)
fn activation_backward_sums_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let s = wg.y;
    let mean = stats_in[2u * s];
    let sd = stats_in[2u * s + 1u];
    var w = walk_start(wg.x, l, s, p.rows, p.len);
    let steps = walk_steps(w, p.len);
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < steps; k++) {
        let d = src[w.e] - mean;
        let a2 = d / sd;
        var g = grad[w.e];
        if p.mode == 0u {
            g = max(p.c1 - p.t2 * abs(a2), 0.0) * g;
            grad[w.e] = g;
            dst[w.e] = sign(d);
        }
        acc += vec2<f32>(g, g * a2);
        walk_next(&w);
    }
    let o = row_partial(wg, l) * 2u;
    sums_out[o] = acc.x;
    sums_out[o + 1u] = acc.y;
}

// Partials per row of activation_stats_walk and activation_backward_sums_walk.
fn row_partials() -> u32 {
    return (p.len + WALK_LANES * WALK_STEPS - 1u) / (WALK_LANES * WALK_STEPS) * WALK_LANES;
}

// Invocation s < rows: sums_out[2s..] = the sums of row s's partials (sums_in), in order.
@compute @workgroup_size(64)
fn activation_backward_sums_finish_walk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if s >= p.rows {
        return;
    }
    let count = row_partials();
    var t = vec2<f32>(0.0);
    for (var i = 0u; i < count; i++) {
        let o = (s * count + i) * 2u;
        t += vec2<f32>(sums_in[o], sums_in[o + 1u]);
    }
    sums_out[2u * s] = t.x;
    sums_out[2u * s + 1u] = t.y;
}
