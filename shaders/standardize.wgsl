// Per-row standardisation of the RBNN layer (docs/numerics.md section 1, steps 1-2) and its
// backward:
// out_r = (x_r - mean(x_r)) / std(x_r - mean(x_r)), std unbiased (divides by len-1). Rows are the
// output channels of the weight (len = Ci*kh*kw) or the samples of the input (len = C*H*W).
//
// Statistics are two-pass (mean first, then the sum of squared deviations) in one workgroup per
// row, with per-invocation strided sums and a fixed tree over the 256 invocations
// (common/workgroup_sum.wgsl): the same inputs give the same bits on every run.
//
// Entry points:
//   weight_forward      weight, alpha, rotate -> w2, wstats [Co, 4]
//                       wstats_o = (std, alpha, |sin theta|, sign(sin theta) * cos theta)
//   activation_stats    x -> astats [N, 2] = (mean, std)
//   activation_output   x, astats -> out: mode 0 a2 = (x - mean) / std, mode 1 sign(x - mean)
//                       (= sign(a2) since std > 0; torch.sign semantics, sign(0) = 0)
//   activation_backward_sums   x, astats, grad -> grad, sums [N, 2]
//                       mode 0 (binary activations): grad <- grad * ApproxSign'(a2) with
//                       ta = max(t, 1), k = 1 (c1 = sqrt(2)*ta, t2 = ta^2); mode 1 (a32): grad kept.
//                       sums_s = (sum grad, sum grad * a2).
//   activation_backward_apply  x, astats, sums, grad -> grad
//                       dx = (g - sum(g)/m - a2 * sum(g*a2)/(m-1)) / std, in place.
// Software adapters run standardize_walk.wgsl's twins of activation_output and
// activation_backward_apply.
// #include "common/grid.wgsl"
// #include "common/workgroup_sum.wgsl"
// #include "common/standardize_io.wgsl"

const WG: u32 = 256u;

// (mean, unbiased std) of src[base .. base + len), two-pass.
fn row_stats(tid: u32, base: u32, len: u32) -> vec2<f32> {
    var s = 0.0;
    for (var j = tid; j < len; j += WG) {
        s += src[base + j];
    }
    let mean = workgroup_sum(tid, vec4<f32>(s, 0.0, 0.0, 0.0)).x / f32(len);
    var q = 0.0;
    for (var j = tid; j < len; j += WG) {
        let d = src[base + j] - mean;
        q += d * d;
    }
    let variance = workgroup_sum(tid, vec4<f32>(q, 0.0, 0.0, 0.0)).x / f32(len - 1u);
    return vec2<f32>(mean, sqrt(variance));
}

// One workgroup per output channel.
@compute @workgroup_size(256)
fn weight_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let o = wid.x;
    let tid = lid.x;
    let base = o * p.len;
    let ms = row_stats(tid, base, p.len);
    for (var j = tid; j < p.len; j += WG) {
        dst[base + j] = (src[base + j] - ms.x) / ms.y;
    }
    if tid == 0u {
        let theta = rotate[o];
        let s = sin(theta);
        stats_out[4u * o] = ms.y;
        stats_out[4u * o + 1u] = alpha[o];
        stats_out[4u * o + 2u] = abs(s);
        stats_out[4u * o + 3u] = sign(s) * cos(theta);
    }
}

// One workgroup per sample.
@compute @workgroup_size(256)
fn activation_stats(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let ms = row_stats(lid.x, wid.x * p.len, p.len);
    if lid.x == 0u {
        stats_out[2u * wid.x] = ms.x;
        stats_out[2u * wid.x + 1u] = ms.y;
    }
}

// One invocation per element; 1D grid (see gpu::grid_1d).
@compute @workgroup_size(256)
fn activation_output(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.rows * p.len {
        return;
    }
    let s = i / p.len;
    let d = src[i] - stats_in[2u * s];
    if p.mode == 0u {
        dst[i] = d / stats_in[2u * s + 1u];
    } else {
        dst[i] = sign(d);
    }
}

// One workgroup per sample.
@compute @workgroup_size(256)
fn activation_backward_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.x;
    let tid = lid.x;
    let base = s * p.len;
    let mean = stats_in[2u * s];
    let sd = stats_in[2u * s + 1u];
    var acc = vec2<f32>(0.0);
    for (var j = tid; j < p.len; j += WG) {
        let a2 = (src[base + j] - mean) / sd;
        var g = grad[base + j];
        if p.mode == 0u {
            g = max(p.c1 - p.t2 * abs(a2), 0.0) * g;
            grad[base + j] = g;
        }
        acc += vec2<f32>(g, g * a2);
    }
    let total = workgroup_sum(tid, vec4<f32>(acc, 0.0, 0.0));
    if tid == 0u {
        sums_out[2u * s] = total.x;
        sums_out[2u * s + 1u] = total.y;
    }
}

// One invocation per element; 1D grid.
@compute @workgroup_size(256)
fn activation_backward_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.rows * p.len {
        return;
    }
    let s = i / p.len;
    let sd = stats_in[2u * s + 1u];
    let a2 = (src[i] - stats_in[2u * s]) / sd;
    let gm = sums_in[2u * s] / f32(p.len);
    let ga = sums_in[2u * s + 1u] / f32(p.len - 1u);
    grad[i] = (grad[i] - gm - a2 * ga) / sd;
}
