// The rotated, adjustable weight of the RBNN layer (docs/numerics.md section 1, steps 3-6), the
// weight-side backward, and the per-channel diagnostics of the rotation.
//
// X_o is row o of w2 [Co, n] viewed as an a x b row-major matrix (n = a*b).
//
// Entry points:
//   rotate_forward   w2, R1, R2, wstats -> rw, w3, bw
//       rw_o = R1^T X_o R2; w3 = w2 + |sin theta_o| * (rw - w2); bw = alpha_o * sign(w3).
//       One workgroup per (block of `rb` rows of rw_o, o): all channels in one dispatch.
//       T = R1[:, rows]^T X_o (rb x b) is staged in workgroup memory, then T R2.
//   weight_backward  dbw, w2, rw, w3, wstats -> dweight, drotate
//       dbw = conv weight gradient against the unscaled dy (dL/dsign(w3) = alpha_o * dbw);
//       dalpha comes from ops::channel_dot (sum dy * y / alpha, in compensated precision: the
//       route through dbw, sum sign(w3) * dbw, loses it to cancellation).
//       dw3 = max(0, k * (sqrt(2)*t - t^2 * |w3|)) * alpha_o * dbw   (ApproxSign)
//       drotate_o = sum dw3 * (rw - w2) * sign(sin theta_o) * cos theta_o   (rw constant)
//       dw2 = (1 - |sin theta_o|) * dw3, then back through the standardisation:
//       dweight = (dw2 - mean(dw2) - w2 * sum(dw2 * w2) / (n-1)) / std_o.
//       One workgroup per output channel; fixed-tree sums (common/workgroup_sum.wgsl).
//   diagnostics      w2, w3 -> diag [Co, 4] = (#(sign(w3) != sign(w2)), sum |w3|, sum w3^2,
//       #(w3 != 0)) per channel, one workgroup per channel.
//
// wstats_o = (std, alpha, |sin theta|, sign(sin theta) * cos theta) from standardize.wgsl.
// #include "common/workgroup_sum.wgsl"
// #include "common/rotate_io.wgsl"

@group(0) @binding(13) var<storage, read_write> diag: array<f32>;

const WG: u32 = 256u;
// rb * b floats of T; src/rbnn/rotate.rs picks rb so that it fits.
const T_CAP: u32 = 4096u;
var<workgroup> tbuf: array<f32, T_CAP>;

@compute @workgroup_size(256)
fn rotate_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let a = p.a;
    let b = p.b;
    let o = wid.y;
    let i0 = wid.x * p.rb;
    let rows = min(p.rb, a - i0);
    let xo = o * a * b;
    // T[r, m] = sum_j R1[j, i0 + r] * X_o[j, m]
    for (var e = lid.x; e < rows * b; e += WG) {
        let r = e / b;
        let m = e - r * b;
        var acc = 0.0;
        for (var j = 0u; j < a; j++) {
            acc += r1[j * a + i0 + r] * w2[xo + j * b + m];
        }
        tbuf[e] = acc;
    }
    workgroupBarrier();
    let alpha = wstats[4u * o + 1u];
    let gate = wstats[4u * o + 2u];
    // rw[i0 + r, l] = sum_m T[r, m] * R2[m, l]
    for (var e = lid.x; e < rows * b; e += WG) {
        let r = e / b;
        let l = e - r * b;
        var v = 0.0;
        for (var m = 0u; m < b; m++) {
            v += tbuf[r * b + m] * r2[m * b + l];
        }
        let f = xo + (i0 + r) * b + l;
        let x2 = w2[f];
        let w3 = x2 + gate * (v - x2);
        rw_out[f] = v;
        w3_out[f] = w3;
        bw_out[f] = alpha * sign(w3);
    }
}

@compute @workgroup_size(256)
fn weight_backward(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let o = wid.x;
    let n = p.a * p.b;
    let base = o * n;
    let sd = wstats[4u * o];
    let alpha = wstats[4u * o + 1u];
    let gate = wstats[4u * o + 2u];
    let gate_slope = wstats[4u * o + 3u];
    var acc = vec4<f32>(0.0);
    for (var j = tid; j < n; j += WG) {
        acc += vec4<f32>(weight_grad_element(base + j, alpha, gate), 0.0);
    }
    let total = workgroup_sum(tid, acc);
    if tid == 0u {
        drotate[o] = total.x * gate_slope;
    }
    let gm = total.y / f32(n);
    let gw = total.z / f32(n - 1u);
    for (var j = tid; j < n; j += WG) {
        let i = base + j;
        dweight[i] = (dweight[i] - gm - w2[i] * gw) / sd;
    }
}

@compute @workgroup_size(256)
fn diagnostics(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let o = wid.x;
    let n = p.a * p.b;
    let base = o * n;
    var acc = vec4<f32>(0.0);
    for (var j = tid; j < n; j += WG) {
        let w3 = w3_in[base + j];
        let flip = select(0.0, 1.0, sign(w3) != sign(w2[base + j]));
        acc += vec4<f32>(flip, abs(w3), w3 * w3, select(0.0, 1.0, w3 != 0.0));
    }
    let total = workgroup_sum(tid, acc);
    if tid == 0u {
        diag[4u * o] = total.x;
        diag[4u * o + 1u] = total.y;
        diag[4u * o + 2u] = total.z;
        diag[4u * o + 3u] = total.w;
    }
}
