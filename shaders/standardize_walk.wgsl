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
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= p.len {
            break;
        }
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
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= p.len {
            break;
        }
        let a2 = (src[w.e] - mean) / sd;
        grad[w.e] = (grad[w.e] - gm - a2 * ga) / sd;
        walk_next(&w, p.rows, p.len);
    }
}
