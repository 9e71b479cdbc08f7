// The BatchNorm kernels of software adapters (gpu::KernelVariant::Software; the GPU variant and
// the *_finish kernels are batchnorm.wgsl's, over the same immediates and bindings,
// common/batchnorm_io.wgsl). They replace stats_partials, normalize, grad_partials and
// grad_input (common/channel_walk.wgsl): workgroup (q, c) over chunk q of channel c, one partial
// per lane (p.chunks then counts the partials per channel: chunks * WALK_LANES), which the
// *_finish kernels combine. normalize_walk and grad_input_walk compute what normalize and
// grad_input compute, with the same expressions.
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

// Software adapters' stats_partials: lane l of workgroup (q, c) -> partial q*WALK_LANES + l of
// channel c.
@compute @workgroup_size(64)
fn stats_partials_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var s = vec3<f32>(0.0);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        s = welford(s, x[w.e]);
        walk_next(&w, p.c, p.hw);
    }
    let o = (c * p.chunks + wg.x * WALK_LANES + l) * 3u;
    partials_out[o] = s.x;
    partials_out[o + 1u] = s.y;
    partials_out[o + 2u] = s.z;
}

// Software adapters' normalize, over the chunks of channel c.
@compute @workgroup_size(64)
fn normalize_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let mean = mean_in[c];
    let rstd = rstd_in[c];
    let g = gamma[c];
    let b = beta[c];
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        out[w.e] = batchnorm_apply(x[w.e], mean, rstd, g, b);
        walk_next(&w, p.c, p.hw);
    }
}

// Software adapters' grad_partials: lane l of workgroup (q, c) -> partial q*WALK_LANES + l.
@compute @workgroup_size(64)
fn grad_partials_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    let mu = mean_in[c];
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let g = dy[w.e];
        s += vec2<f32>(g, g * (x[w.e] - mu));
        walk_next(&w, p.c, p.hw);
    }
    let o = (c * p.chunks + wg.x * WALK_LANES + l) * 2u;
    partials_out[o] = s.x;
    partials_out[o + 1u] = s.y;
}

// Software adapters' grad_input, over the chunks of channel c.
@compute @workgroup_size(64)
fn grad_input_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let r = rstd_in[c];
    let mu = mean_in[c];
    let gr = gamma[c] * r;
    let db = dbeta_in[c];
    let dg = dgamma_in[c];
    let inv_m = 1.0 / f32(p.n * p.hw);
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var dot = 0.0;
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let v = x[w.e];
        let xhat = (v - mu) * r;
        let dx = gr * (dy[w.e] - (db + xhat * dg) * inv_m);
        out[w.e] = dx;
        dot += dx * v;
        walk_next(&w, p.c, p.hw);
    }
    dot_out[c * p.chunks + wg.x * WALK_LANES + l] = dot;
}

// Software adapters: out = hardtanh(BN(x)).
@compute @workgroup_size(64)
fn normalize_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let mean = mean_in[c];
    let rstd = rstd_in[c];
    let g = gamma[c];
    let b = beta[c];
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        out[w.e] = hardtanh(batchnorm_apply(x[w.e], mean, rstd, g, b));
        walk_next(&w, p.c, p.hw);
    }
}

// Software adapters: out = hardtanh(BN(x) + res).
@compute @workgroup_size(64)
fn normalize_add_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let mean = mean_in[c];
    let rstd = rstd_in[c];
    let g = gamma[c];
    let b = beta[c];
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        out[w.e] = hardtanh(batchnorm_apply(x[w.e], mean, rstd, g, b) + res[w.e]);
        walk_next(&w, p.c, p.hw);
    }
}

// Software adapters: grad_partials of g = hardtanh'(BN(x)) * dy.
@compute @workgroup_size(64)
fn grad_partials_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    let mu = mean_in[c];
    let rstd = rstd_in[c];
    let ga = gamma[c];
    let b = beta[c];
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let v = x[w.e];
        let g = hardtanh_grad(batchnorm_apply(v, mu, rstd, ga, b), dy[w.e]);
        s += vec2<f32>(g, g * (v - mu));
        walk_next(&w, p.c, p.hw);
    }
    let o = (c * p.chunks + wg.x * WALK_LANES + l) * 2u;
    partials_out[o] = s.x;
    partials_out[o + 1u] = s.y;
}

// Software adapters: grad_partials of g = hardtanh'(BN(x) + res) * dy, and grad_out = g.
@compute @workgroup_size(64)
fn grad_partials_add_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    let mu = mean_in[c];
    let rstd = rstd_in[c];
    let ga = gamma[c];
    let b = beta[c];
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let v = x[w.e];
        let g = hardtanh_grad(batchnorm_apply(v, mu, rstd, ga, b) + res[w.e], dy[w.e]);
        grad_out[w.e] = g;
        s += vec2<f32>(g, g * (v - mu));
        walk_next(&w, p.c, p.hw);
    }
    let o = (c * p.chunks + wg.x * WALK_LANES + l) * 2u;
    partials_out[o] = s.x;
    partials_out[o + 1u] = s.y;
}

// Software adapters: grad_input of g = hardtanh'(BN(x)) * dy.
@compute @workgroup_size(64)
fn grad_input_hardtanh_walk(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let r = rstd_in[c];
    let mu = mean_in[c];
    let ga = gamma[c];
    let b = beta[c];
    let gr = ga * r;
    let db = dbeta_in[c];
    let dg = dgamma_in[c];
    let inv_m = 1.0 / f32(p.n * p.hw);
    let m = p.n * p.hw;
    var w = walk_start(wg.x, l, c, p.c, p.hw);
    var dot = 0.0;
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let v = x[w.e];
        let g = hardtanh_grad(batchnorm_apply(v, mu, r, ga, b), dy[w.e]);
        let xhat = (v - mu) * r;
        let dx = gr * (g - (db + xhat * dg) * inv_m);
        out[w.e] = dx;
        dot += dx * v;
        walk_next(&w, p.c, p.hw);
    }
    dot_out[c * p.chunks + wg.x * WALK_LANES + l] = dot;
}
