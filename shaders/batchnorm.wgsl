// BatchNorm over x [N, C, HW] (BatchNorm2d; BatchNorm1d is HW = 1), PyTorch semantics.
//
// Per-channel reductions are deterministic two-stage fixed-order trees (no atomics), in the
// chunks of common/channel_chunks.wgsl: *_partials reduces chunk q of channel c, *_finish a
// channel's partials. The trees of sums are common/workgroup_sum.wgsl's.
// The forward carries (count, mean, M2) summaries combined with Chan's formula, which stays
// accurate when |mean| >> std (sum and sum-of-squares in f32 would cancel).
// 1D elementwise kernels: common/grid.wgsl.
// Software adapters run the *_walk kernels instead of stats_partials, normalize, grad_partials and
// grad_input (common/channel_walk.wgsl): workgroup (q, c) over chunk q of channel c, one partial
// per lane (p.chunks then counts the partials per channel: chunks * WALK_LANES), which the same
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
// #include "common/grid.wgsl"
// #include "common/channel_chunks.wgsl"
// #include "common/channel_walk.wgsl"
// #include "common/hardtanh.wgsl"
// #include "common/workgroup_sum.wgsl"
// #include "common/batchnorm_running.wgsl"

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    chunks: u32,     // partials per channel = ceil(M / CHUNK)
    total: u32,      // N*C*HW
    eps: f32,
    momentum: f32,
    update: u32,     // stats_finish: 1 = also update the running statistics
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mean_in: array<f32>;
@group(0) @binding(5) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(6) var<storage, read> dgamma_in: array<f32>;
@group(0) @binding(7) var<storage, read> dbeta_in: array<f32>;
@group(0) @binding(8) var<storage, read> partials_in: array<f32>;
@group(0) @binding(9) var<storage, read> running_mean_in: array<f32>;
@group(0) @binding(10) var<storage, read> running_var_in: array<f32>;
@group(0) @binding(11) var<storage, read_write> partials_out: array<f32>;
@group(0) @binding(12) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(13) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(14) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(15) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(16) var<storage, read_write> out: array<f32>;
@group(0) @binding(17) var<storage, read_write> dgamma_out: array<f32>;
@group(0) @binding(18) var<storage, read_write> dbeta_out: array<f32>;
@group(0) @binding(19) var<storage, read> res: array<f32>;
@group(0) @binding(20) var<storage, read_write> grad_out: array<f32>;

var<workgroup> stat: array<vec3<f32>, 256>;

// Chan et al.: combines two (count, mean, M2) summaries.
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if b.x == 0.0 {
        return a;
    }
    if a.x == 0.0 {
        return b;
    }
    let n = a.x + b.x;
    let d = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// Combines stat[0..256) into stat[0]; lane l holds stat[l] on entry.
fn stat_tree(l: u32) {
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if l < stride {
            stat[l] = merge(stat[l], stat[l + stride]);
        }
    }
}

// Workgroup (q, c): (count, mean, M2) of chunk q of channel c -> partials_out[(c*chunks + q)*3..].
@compute @workgroup_size(256)
fn stats_partials(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    var s = vec3<f32>(0.0);
    for (var k = 0u; k < PER_LANE; k++) {
        let j = chunk_element(wg.x, k, l);
        if j < m {
            s = welford(s, x[channel_element(c, j, p.c, p.hw)]);
        }
    }
    stat[l] = s;
    stat_tree(l);
    if l == 0u {
        let o = (c * p.chunks + wg.x) * 3u;
        partials_out[o] = stat[0].x;
        partials_out[o + 1u] = stat[0].y;
        partials_out[o + 2u] = stat[0].z;
    }
}

// Workgroup c: batch mean and rstd = 1/sqrt(biased var + eps) of channel c; with p.update, also
// running = (1 - m) * running + m * batch value, the variance unbiased (M - 1 divisor).
@compute @workgroup_size(256)
fn stats_finish(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.x;
    var s = vec3<f32>(0.0);
    for (var q = l; q < p.chunks; q += WG) {
        let o = (c * p.chunks + q) * 3u;
        s = merge(s, vec3<f32>(partials_in[o], partials_in[o + 1u], partials_in[o + 2u]));
    }
    stat[l] = s;
    stat_tree(l);
    if l == 0u {
        let t = stat[0];
        mean_out[c] = t.y;
        rstd_out[c] = 1.0 / sqrt(t.z / t.x + p.eps);
        if p.update != 0u {
            let m = p.momentum;
            running_mean[c] = (1.0 - m) * running_mean[c] + m * t.y;
            running_var[c] = (1.0 - m) * running_var[c] + m * (t.z / (t.x - 1.0));
        }
    }
}

// out = (x - mean) * rstd * gamma + beta with the batch statistics.
@compute @workgroup_size(256)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let c = (i / p.hw) % p.c;
    out[i] = batchnorm_apply(x[i], mean_in[c], rstd_in[c], gamma[c], beta[c]);
}

// Inference: out = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
@compute @workgroup_size(256)
fn normalize_running(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let c = (i / p.hw) % p.c;
    let rstd = running_rstd(running_var_in[c], p.eps);
    out[i] = batchnorm_apply(x[i], running_mean_in[c], rstd, gamma[c], beta[c]);
}

// Workgroup (q, c): (sum dy, sum dy*(x - mean)) over chunk q of channel c -> partials_out[(c*chunks + q)*2..].
@compute @workgroup_size(256)
fn grad_partials(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.y;
    let m = p.n * p.hw;
    let mu = mean_in[c];
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < PER_LANE; k++) {
        let j = chunk_element(wg.x, k, l);
        if j < m {
            let e = channel_element(c, j, p.c, p.hw);
            let g = dy[e];
            s += vec2<f32>(g, g * (x[e] - mu));
        }
    }
    let total = workgroup_sum(l, vec4<f32>(s, 0.0, 0.0));
    if l == 0u {
        let o = (c * p.chunks + wg.x) * 2u;
        partials_out[o] = total.x;
        partials_out[o + 1u] = total.y;
    }
}

// Workgroup c: dbeta = sum dy, dgamma = sum dy * xhat (xhat = (x - mean) * rstd).
@compute @workgroup_size(256)
fn grad_finish(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.x;
    var s = vec2<f32>(0.0);
    for (var q = l; q < p.chunks; q += WG) {
        let o = (c * p.chunks + q) * 2u;
        s += vec2<f32>(partials_in[o], partials_in[o + 1u]);
    }
    let total = workgroup_sum(l, vec4<f32>(s, 0.0, 0.0));
    if l == 0u {
        dbeta_out[c] = total.x;
        dgamma_out[c] = total.y * rstd_in[c];
    }
}

// out = dx = gamma * rstd * (dy - (dbeta + xhat * dgamma) / M): the batch-statistics backward.
@compute @workgroup_size(256)
fn grad_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let c = (i / p.hw) % p.c;
    let r = rstd_in[c];
    let xhat = (x[i] - mean_in[c]) * r;
    let inv_m = 1.0 / f32(p.n * p.hw);
    out[i] = gamma[c] * r * (dy[i] - (dbeta_in[c] + xhat * dgamma_in[c]) * inv_m);
}

// Welford's update of the (count, mean, M2) summary s with the value v: one pass, no
// cancellation.
fn welford(s: vec3<f32>, v: f32) -> vec3<f32> {
    let count = s.x + 1.0;
    let d = v - s.y;
    let mean = s.y + d / count;
    return vec3<f32>(count, mean, s.z + d * (v - mean));
}

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
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let xhat = (x[w.e] - mu) * r;
        out[w.e] = gr * (dy[w.e] - (db + xhat * dg) * inv_m);
        walk_next(&w, p.c, p.hw);
    }
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
    for (var k = 0u; k < WALK_STEPS; k++) {
        if w.j >= m {
            break;
        }
        let v = x[w.e];
        let g = hardtanh_grad(batchnorm_apply(v, mu, r, ga, b), dy[w.e]);
        let xhat = (v - mu) * r;
        out[w.e] = gr * (g - (db + xhat * dg) * inv_m);
        walk_next(&w, p.c, p.hw);
    }
}
