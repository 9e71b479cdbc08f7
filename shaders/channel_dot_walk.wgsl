// The first stage of the per-channel dot products on software adapters
// (gpu::KernelVariant::Software; channel_dot.wgsl has the GPU variant and the `finish` both
// share, over the same immediates and bindings, common/channel_dot_io.wgsl): one partial per lane
// (common/channel_walk.wgsl), p.chunks = chunks * WALK_LANES partials per channel for `finish`.
// Compiled without runtime checks (gpu::kernel UNCHECKED_SHADERS): the host (ops::channel_dot)
// checks the lengths against [N, C, HW] with N, C, HW >= 1, and the walk touches only elements
// j < N*HW of channel c < C.
// #include "common/channel_walk.wgsl"
// #include "common/channel_dot_io.wgsl"

// Software adapters' partials: lane l of workgroup (q, c) -> partial q*WALK_LANES + l of c.
@compute @workgroup_size(64)
fn partials_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    let steps = walk_steps(w, p.n * p.hw);
    var s = 0.0;
    for (var k = 0u; k < steps; k++) {
        s += a[w.e] * b[w.e];
        walk_next(&w, p.c, p.hw);
    }
    partials_out[c * p.chunks + wg.x * WALK_LANES + l] = s;
}
