// The elementwise passes of the activation standardisation on software adapters
// (gpu::KernelVariant::Software): activation_output_walk and activation_backward_apply_walk
// compute what standardize.wgsl's activation_output and activation_backward_apply compute, with
// the same expressions and the same immediates and bindings (common/standardize_io.wgsl), over
// common/channel_walk.wgsl (a row being channel s of a [1, rows, len] tensor): workgroup (q, s)
// over chunk q of row s, its statistics loaded once.
// Compiled without runtime checks (gpu::kernel UNCHECKED_SHADERS): the host (rbnn::standardize)
// checks the lengths against [rows, len] with rows, len >= 1, and the walk touches only elements
// j < len of row s < rows.
// #include "common/channel_walk.wgsl"
// #include "common/standardize_io.wgsl"

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
        walk_next(&w, p.rows, p.len);
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
        walk_next(&w, p.rows, p.len);
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
        walk_next(&w, p.rows, p.len);
    }
    let o = (s * row_partials() + wg.x * WALK_LANES + l) * 2u;
    sums_out[o] = acc.x;
    sums_out[o + 1u] = acc.y;
}

// Partials per row of activation_backward_sums_walk.
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
