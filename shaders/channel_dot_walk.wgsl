// The per-channel dot products on software adapters (gpu::KernelVariant::Software;
// channel_dot.wgsl has the GPU variant, over the same immediates and bindings,
// common/channel_dot_io.wgsl): `partials_walk` keeps one partial per lane
// (common/channel_walk.wgsl), p.chunks = chunks * WALK_LANES partials per channel, and
// `finish_walk` sums a channel's partials in one invocation, lanes of a chunk then chunks, in
// that order (no barrier).
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
        walk_next(&w);
    }
    partials_out[c * p.chunks + wg.x * WALK_LANES + l] = s;
}

// Invocation c: out[c] = the sum of channel c's partials / div[c].
@compute @workgroup_size(64)
fn finish_walk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.c {
        return;
    }
    var t = 0.0;
    for (var q = 0u; q < p.chunks / WALK_LANES; q++) {
        var s = 0.0;
        for (var l = 0u; l < WALK_LANES; l++) {
            s += partials_in[c * p.chunks + q * WALK_LANES + l];
        }
        t += s;
    }
    write_dot(c, t);
}
