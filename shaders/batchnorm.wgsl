// BatchNorm over x [N, C, HW] (BatchNorm2d; BatchNorm1d is HW = 1), PyTorch semantics.
//
// Per-channel reductions are deterministic two-stage fixed-order trees (no atomics), in the
// chunks of common/channel_chunks.wgsl: *_partials reduces chunk q of channel c, *_finish a
// channel's partials. The trees of sums are common/workgroup_sum.wgsl's.
// The forward carries (count, mean, M2) summaries combined with Chan's formula, which stays
// accurate when |mean| >> std (sum and sum-of-squares in f32 would cancel).
// 1D elementwise kernels: common/grid.wgsl.
// Software adapters run batchnorm_walk.wgsl's kernels instead (normalize_running is the same in
// both variants).
// #include "common/grid.wgsl"
// #include "common/channel_chunks.wgsl"
// #include "common/workgroup_sum.wgsl"
// #include "common/batchnorm_running.wgsl"
// #include "common/batchnorm_io.wgsl"

var<workgroup> stat: array<vec3<f32>, 256>;

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
        write_stats(c, stat[0]);
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
        write_grads(c, total.xy);
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
