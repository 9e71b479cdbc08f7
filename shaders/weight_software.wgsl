// The weight side of the RBNN layer on software adapters (gpu::KernelVariant::Software; host:
// src/rbnn/standardize.rs `weight_forward`, src/rbnn/rotate.rs `rotate_forward` and
// `weight_backward`): twins of standardize.wgsl's weight_forward and rotate.wgsl's
// rotate_forward and weight_backward, with the same formulas (see those headers), no workgroup
// memory and no barrier.
//
// On lavapipe a workgroup runs as 8-lane SIMD subgroups on one CPU thread; every storage load or
// store whose address is not built from constants and immediates alone is a loop over the lanes,
// and every workgroupBarrier switches between all of the workgroup's subgroups. The GPU kernels
// spend their time there: 256-invocation trees (9 barriers each) for the per-channel sums, and two
// loads per multiply-add in the rotation. The weight tensors are small (Co rows of n = Ci*kh*kw),
// so here one invocation does a whole channel, or a register tile of one:
//
//   weight_forward  one invocation per output channel o: the mean of the channel's n weights (an
//                   f32 sum of w_j - w_0, deviations of the order of the std rather than of the
//                   mean), the sum of squared deviations from it, then w2 and wstats_o. Serial
//                   sums in index order: the same bits on every run.
//   rotate_left     rotate_forward's first product, T_o = R1^T X_o [a, b], in 4 x 4 register
//                   tiles, one per invocation: for j = 0..a-1, R1[j, i..i+3] and X_o[j, m..m+3]
//                   (8 loads) feed 16 multiply-adds (the GPU kernel: 2 loads per multiply-add).
//                   T is parked in bw, which rotate_right overwrites.
//   rotate_right    the second product and the outputs: invocation (o, rows i..i+3) computes
//                   rw = T R2 on its 4 rows, 4 columns at a time (for m = 0..b-1, T[i..i+3, m]
//                   and R2[m, l..l+3]: 8 loads, 16 multiply-adds), writes rw and w3, and then,
//                   its rows of T no longer needed, bw = alpha_o sign(w3) over the same rows.
//                   Only the invocation that owns a row of T reads or overwrites it, so the
//                   in-place T needs neither a barrier nor a buffer of its own.
//   weight_backward one invocation per output channel: the GPU kernel's two passes, with the
//                   three channel sums (drotate, mean(dw2), sum(dw2 * w2)) accumulated serially
//                   in index order.
// Each product sums over j (or m) in increasing order, as the GPU kernel does. Tiles that
// overhang a or b clamp their load indices into the matrix and mask their stores, so every index
// is in range. 1D grid of 8-invocation workgroups (one subgroup each: small layers still spread
// over the CPU threads), split over x and y past 65535 workgroups (gpu::grid_1d).

// The bindings and immediates of rotate.wgsl (rotate::weight_backward_immediates records them for
// both variants), and weight_forward's own:
// #include "common/rotate_io.wgsl"

@group(0) @binding(14) var<storage, read> weight: array<f32>;
@group(0) @binding(15) var<storage, read> alpha: array<f32>;
@group(0) @binding(16) var<storage, read> theta: array<f32>;
@group(0) @binding(17) var<storage, read_write> wstats_out: array<f32>;
@group(0) @binding(18) var<storage, read_write> w2_out: array<f32>;

const WG: u32 = 8u;

fn invocation(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Indices start .. start+3, clamped to last.
fn clamped4(start: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(start) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

@compute @workgroup_size(8)
fn weight_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = invocation(gid, nwg);
    if o >= p.co {
        return;
    }
    let n = p.a * p.b;
    let base = o * n;
    let first = weight[base];
    var s = 0.0;
    for (var e = base; e < base + n; e++) {
        s += weight[e] - first;
    }
    let mean = first + s / f32(n);
    var q = 0.0;
    for (var e = base; e < base + n; e++) {
        let d = weight[e] - mean;
        q += d * d;
    }
    let sd = sqrt(q / f32(n - 1u));
    for (var e = base; e < base + n; e++) {
        w2_out[e] = (weight[e] - mean) / sd;
    }
    let th = theta[o];
    let sn = sin(th);
    wstats_out[4u * o] = sd;
    wstats_out[4u * o + 1u] = alpha[o];
    wstats_out[4u * o + 2u] = abs(sn);
    wstats_out[4u * o + 3u] = sign(sn) * cos(th);
}

@compute @workgroup_size(8)
fn rotate_left(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = p.a;
    let b = p.b;
    let row_tiles = (a + 3u) / 4u;
    let col_tiles = (b + 3u) / 4u;
    let id = invocation(gid, nwg);
    if id >= p.co * row_tiles * col_tiles {
        return;
    }
    let o = id / (row_tiles * col_tiles);
    let tile = id - o * row_tiles * col_tiles;
    let i0 = (tile / col_tiles) * 4u;
    let m0 = (tile - (tile / col_tiles) * col_tiles) * 4u;
    let xo = o * a * b;
    let i = clamped4(i0, a - 1u);
    let m = clamped4(m0, b - 1u);
    // t_r = T[i0 + r, m0 .. m0+3]
    var t0 = vec4<f32>(0.0);
    var t1 = vec4<f32>(0.0);
    var t2 = vec4<f32>(0.0);
    var t3 = vec4<f32>(0.0);
    for (var j = 0u; j < a; j++) {
        let rj = j * a;
        let ri = vec4<f32>(r1[rj + i.x], r1[rj + i.y], r1[rj + i.z], r1[rj + i.w]);
        let xj = xo + j * b;
        let xv = vec4<f32>(w2[xj + m.x], w2[xj + m.y], w2[xj + m.z], w2[xj + m.w]);
        t0 += ri.x * xv;
        t1 += ri.y * xv;
        t2 += ri.z * xv;
        t3 += ri.w * xv;
    }
    let rows = min(4u, a - i0);
    let cols = min(4u, b - m0);
    let f = xo + i0 * b + m0;
    park_row(f, t0, cols);
    if rows > 1u {
        park_row(f + b, t1, cols);
    }
    if rows > 2u {
        park_row(f + 2u * b, t2, cols);
    }
    if rows > 3u {
        park_row(f + 3u * b, t3, cols);
    }
}

// T[f .. f+cols) = v[0 .. cols), in bw.
fn park_row(f: u32, v: vec4<f32>, cols: u32) {
    for (var c = 0u; c < 4u; c++) {
        if c < cols {
            bw_out[f + c] = v[c];
        }
    }
}

@compute @workgroup_size(8)
fn rotate_right(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = p.a;
    let b = p.b;
    let row_tiles = (a + 3u) / 4u;
    let id = invocation(gid, nwg);
    if id >= p.co * row_tiles {
        return;
    }
    let o = id / row_tiles;
    let i0 = (id - o * row_tiles) * 4u;
    let rows = min(4u, a - i0);
    let xo = o * a * b;
    // Where rows i0 .. i0+3 of T (clamped to a-1) start.
    let t = xo + clamped4(i0, a - 1u) * b;
    let gate = wstats[4u * o + 2u];
    for (var l0 = 0u; l0 < b; l0 += 4u) {
        let l = clamped4(l0, b - 1u);
        // v_r = rw[i0 + r, l0 .. l0+3]
        var v0 = vec4<f32>(0.0);
        var v1 = vec4<f32>(0.0);
        var v2 = vec4<f32>(0.0);
        var v3 = vec4<f32>(0.0);
        for (var m = 0u; m < b; m++) {
            let rm = m * b;
            let rv = vec4<f32>(r2[rm + l.x], r2[rm + l.y], r2[rm + l.z], r2[rm + l.w]);
            v0 += bw_out[t.x + m] * rv;
            v1 += bw_out[t.y + m] * rv;
            v2 += bw_out[t.z + m] * rv;
            v3 += bw_out[t.w + m] * rv;
        }
        let cols = min(4u, b - l0);
        let f = xo + i0 * b + l0;
        finish_row(f, v0, cols, gate);
        if rows > 1u {
            finish_row(f + b, v1, cols, gate);
        }
        if rows > 2u {
            finish_row(f + 2u * b, v2, cols, gate);
        }
        if rows > 3u {
            finish_row(f + 3u * b, v3, cols, gate);
        }
    }
    // Every row of T this invocation owns is consumed: bw replaces it.
    let alpha_o = wstats[4u * o + 1u];
    let end = xo + (i0 + rows) * b;
    for (var e = xo + i0 * b; e < end; e++) {
        bw_out[e] = alpha_o * sign(w3_out[e]);
    }
}

// rw and w3 = w2 + |sin theta| (rw - w2) at [f .. f+cols) from v[0 .. cols).
fn finish_row(f: u32, v: vec4<f32>, cols: u32, gate: f32) {
    for (var c = 0u; c < 4u; c++) {
        if c < cols {
            let x2 = w2[f + c];
            rw_out[f + c] = v[c];
            w3_out[f + c] = x2 + gate * (v[c] - x2);
        }
    }
}

@compute @workgroup_size(8)
fn weight_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = invocation(gid, nwg);
    if o >= p.co {
        return;
    }
    let n = p.a * p.b;
    let base = o * n;
    let sd = wstats[4u * o];
    let alpha_o = wstats[4u * o + 1u];
    let gate = wstats[4u * o + 2u];
    let gate_slope = wstats[4u * o + 3u];
    var acc = vec3<f32>(0.0);
    for (var i = base; i < base + n; i++) {
        acc += weight_grad_element(i, alpha_o, gate);
    }
    drotate[o] = acc.x * gate_slope;
    let gm = acc.y / f32(n);
    let gw = acc.z / f32(n - 1u);
    for (var i = base; i < base + n; i++) {
        dweight[i] = (dweight[i] - gm - w2[i] * gw) / sd;
    }
}
