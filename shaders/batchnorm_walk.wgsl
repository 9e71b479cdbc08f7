// The BatchNorm kernels of software adapters (gpu::KernelVariant::Software; the GPU variant and
// the *_finish kernels are batchnorm.wgsl's, over the same immediates and bindings,
// common/batchnorm_io.wgsl). They replace stats_partials, normalize, grad_partials and
// grad_input (common/channel_walk.wgsl): workgroup (q, c) over chunk q of channel c, one partial
// per lane (p.chunks then counts the partials per channel: chunks * WALK_LANES), which the
// *_finish_walk kernels combine, one invocation per channel in a fixed order (lanes of a chunk,
// then chunks), without the barriers of a workgroup tree. normalize_walk and grad_input_walk
// compute what normalize and grad_input compute, with the same expressions.
// They also fuse the hardtanh that follows a BatchNorm in the binary blocks (and the residual
// add before it), saving the elementwise passes:
//   normalize_hardtanh_walk          out = hardtanh(BN(x) [+ res])
//   grad_partials_hardtanh_walk      the partials of g = hardtanh'(BN(x) [+ res]) * dy; with
//                                   res, g is also written to grad_out (the residual branch's
//                                   gradient, which grad_input_walk then reads as dy)
//   grad_input_hardtanh_walk         grad_input of g (no res), g recomputed from x and dy
// The `*_add_*` entry points take res; the others have none.
// grad_input_walk and grad_input_hardtanh_walk also write, per lane, the partial sums of dx * x
// over their elements to dot_out[c * p.chunks + q * WALK_LANES + l]: the partials of
// ops::channel_dot(dx, x) in the layout and order of channel_dot_walk.wgsl, which give the
// alpha gradient of a binary conv whose output x is (network.rs), without a pass of their own.
// Compiled without runtime checks (gpu::kernel UNCHECKED_SHADERS): every index is in range
// because the host (ops::batchnorm) checks every length against [N, C, HW] and N, C, HW >= 1,
// and the walk touches only elements j < N*HW of channel c < C.
// #include "common/channel_walk.wgsl"
// #include "common/batchnorm_running.wgsl"
// #include "common/hardtanh.wgsl"
// #include "common/batchnorm_io.wgsl"

// Channel c's saved batch statistics and affine parameters, loaded once per workgroup.
struct Affine {
    mean: f32,
    rstd: f32,
    gamma: f32,
    beta: f32,
}

fn affine(c: u32) -> Affine {
    return Affine(mean_in[c], rstd_in[c], gamma[c], beta[c]);
}

// BN(v) in channel a's training-mode affine map (normalize's expression).
fn bn(a: Affine, v: f32) -> f32 {
    return batchnorm_apply(v, a.mean, a.rstd, a.gamma, a.beta);
}

// The index of lane l's partial of workgroup (q, c): c * p.chunks + q * WALK_LANES + l.
fn lane_partial(wg: vec3<u32>, l: u32) -> u32 {
    return wg.y * p.chunks + wg.x * WALK_LANES + l;
}

// The lane's walk over chunk wg.x of channel wg.y.
fn lane_walk(wg: vec3<u32>, l: u32) -> ChannelWalk {
    return walk_start(wg.x, l, wg.y, p.c, p.hw);
}

fn write_grad_partial(i: u32, s: vec2<f32>) {
    partials_out[2u * i] = s.x;
    partials_out[2u * i + 1u] = s.y;
}

// Software adapters' stats_partials.
@compute @workgroup_size(64)
fn stats_partials_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    var s = vec3<f32>(0.0);
    for (var k = 0u; k < steps; k++) {
        s = welford(s, x[w.e]);
        walk_next(&w);
    }
    let o = lane_partial(wg, l) * 3u;
    partials_out[o] = s.x;
    partials_out[o + 1u] = s.y;
    partials_out[o + 2u] = s.z;
}

// Software adapters' stats_finish: invocation c merges channel c's partials.
@compute @workgroup_size(64)
fn stats_finish_walk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.c {
        return;
    }
    var t = vec3<f32>(0.0);
    for (var q = 0u; q < p.chunks / WALK_LANES; q++) {
        var s = vec3<f32>(0.0);
        for (var l = 0u; l < WALK_LANES; l++) {
            let o = (c * p.chunks + q * WALK_LANES + l) * 3u;
            s = merge(s, vec3<f32>(partials_in[o], partials_in[o + 1u], partials_in[o + 2u]));
        }
        t = merge(t, s);
    }
    write_stats(c, t);
}

// Software adapters' grad_finish: invocation c sums channel c's partials.
@compute @workgroup_size(64)
fn grad_finish_walk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.c {
        return;
    }
    var t = vec2<f32>(0.0);
    for (var q = 0u; q < p.chunks / WALK_LANES; q++) {
        var s = vec2<f32>(0.0);
        for (var l = 0u; l < WALK_LANES; l++) {
            let o = (c * p.chunks + q * WALK_LANES + l) * 2u;
            s += vec2<f32>(partials_in[o], partials_in[o + 1u]);
        }
        t += s;
    }
    write_grads(c, t);
}

// Software adapters' normalize.
@compute @workgroup_size(64)
fn normalize_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let a = affine(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    for (var k = 0u; k < steps; k++) {
        out[w.e] = bn(a, x[w.e]);
        walk_next(&w);
    }
}

// Software adapters: out = hardtanh(BN(x)).
@compute @workgroup_size(64)
fn normalize_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let a = affine(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    for (var k = 0u; k < steps; k++) {
        out[w.e] = hardtanh(bn(a, x[w.e]));
        walk_next(&w);
    }
}

// Software adapters: out = hardtanh(BN(x) + res).
@compute @workgroup_size(64)
fn normalize_add_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let a = affine(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    for (var k = 0u; k < steps; k++) {
        out[w.e] = hardtanh(bn(a, x[w.e]) + res[w.e]);
        walk_next(&w);
    }
}

// Software adapters' grad_partials.
@compute @workgroup_size(64)
fn grad_partials_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let mu = mean_in[wg.y];
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < steps; k++) {
        let g = dy[w.e];
        s += vec2<f32>(g, g * (x[w.e] - mu));
        walk_next(&w);
    }
    write_grad_partial(lane_partial(wg, l), s);
}

// Software adapters: grad_partials of g = hardtanh'(BN(x)) * dy.
@compute @workgroup_size(64)
fn grad_partials_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let a = affine(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < steps; k++) {
        let v = x[w.e];
        let g = hardtanh_grad(bn(a, v), dy[w.e]);
        s += vec2<f32>(g, g * (v - a.mean));
        walk_next(&w);
    }
    write_grad_partial(lane_partial(wg, l), s);
}

// Software adapters: grad_partials of g = hardtanh'(BN(x) + res) * dy, and grad_out = g.
@compute @workgroup_size(64)
fn grad_partials_add_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let a = affine(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < steps; k++) {
        let v = x[w.e];
        let g = hardtanh_grad(bn(a, v) + res[w.e], dy[w.e]);
        grad_out[w.e] = g;
        s += vec2<f32>(g, g * (v - a.mean));
        walk_next(&w);
    }
    write_grad_partial(lane_partial(wg, l), s);
}

// Channel c's values of grad_input, loaded once per workgroup.
struct InputGrad {
    mean: f32,
    rstd: f32,
    // gamma * rstd
    scale: f32,
    dbeta: f32,
    dgamma: f32,
    // 1 / M
    inv_m: f32,
}

fn input_grad_values(c: u32) -> InputGrad {
    let r = rstd_in[c];
    return InputGrad(mean_in[c], r, gamma[c] * r, dbeta_in[c], dgamma_in[c], 1.0 / f32(p.n * p.hw));
}

// grad_input's dx at x = v from the gradient g.
fn input_grad(q: InputGrad, v: f32, g: f32) -> f32 {
    let xhat = (v - q.mean) * q.rstd;
    return q.scale * (g - (q.dbeta + xhat * q.dgamma) * q.inv_m);
}

// Software adapters' grad_input.
@compute @workgroup_size(64)
fn grad_input_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let q = input_grad_values(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    var dot = 0.0;
    for (var k = 0u; k < steps; k++) {
        let v = x[w.e];
        let dx = input_grad(q, v, dy[w.e]);
        out[w.e] = dx;
        dot += dx * v;
        walk_next(&w);
    }
    dot_out[lane_partial(wg, l)] = dot;
}

// Software adapters: grad_input of g = hardtanh'(BN(x)) * dy.
@compute @workgroup_size(64)
fn grad_input_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let a = affine(wg.y);
    let q = input_grad_values(wg.y);
    var w = lane_walk(wg, l);
    let steps = walk_steps(w, p.n * p.hw);
    var dot = 0.0;
    for (var k = 0u; k < steps; k++) {
        let v = x[w.e];
        let g = hardtanh_grad(bn(a, v), dy[w.e]);
        let dx = input_grad(q, v, g);
        out[w.e] = dx;
        dot += dx * v;
        walk_next(&w);
    }
    dot_out[lane_partial(wg, l)] = dot;
}
