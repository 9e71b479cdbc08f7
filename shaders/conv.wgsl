// Float 2D convolution (NCHW activations, [Co, Ci, kh, kw] weights, zero padding, no bias) as
// implicit GEMM: the im2col matrix is gathered on the fly into workgroup memory, never stored.
//
//   forward          y[N,Co,OH,OW]  GEMM rows = N*OH*OW,  cols = Co,        reduction = Ci*kh*kw
//   backward_data    dx[N,Ci,H,W]   GEMM rows = N*H*W,    cols = Ci,        reduction = Co*kh*kw
//   backward_weight  dw[Co,Ci,kh,kw] GEMM rows = Co,      cols = Ci*kh*kw,  reduction = N*OH*OW
//
// Every entry point computes a BM x BN output tile per workgroup: the reduction is walked in
// slices of BK staged in workgroup memory (As: BK x BM, Bs: BK x BN, stored as vec4), and each
// invocation keeps a 4x4 register micro-tile, rows 4*tx..4*tx+3 and columns 4*ty..4*ty+3, so each
// step of the slice reads one vec4 of As and one of Bs for 16 multiply-adds.
//
// forward and backward_data walk the reduction tap-major (for each (r, c) tap, slices of BK
// channels): the spatial bounds test and the base address are computed once per tap, and the
// innermost loops contain no integer division (a layer with fewer channels than BK, like the
// 3-channel stem, pads each tap's slice with zeros: cheap beside the layers that matter).
// backward_data splits the input pixels into
// stride x stride phases (workgroup z), so each phase visits only the taps that reach it and
// stride 2 wastes no multiply-adds on taps that fall between output pixels.
// backward_weight splits its long reduction (N*OH*OW) into `splits` chunks (workgroup z) that
// write a partial buffer [splits, Co, Ci*kh*kw]; reduce_splits sums it in a fixed order, so the
// result is the same bits on every run (no atomics).
//
// Tile shapes are override constants chosen by src/ops/conv.rs; it checks the divisibility rules
// stated there (BM and BN multiples of 16, so each invocation loads at a fixed row or column).

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
// Invocations along the tile's rows and columns (4x4 outputs each) and in the whole workgroup.
override TX: u32 = BM / 4u;
override TY: u32 = BN / 4u;
override WG: u32 = TX * TY;
override A_SIZE: u32 = BK * BM;
override A_VEC4: u32 = A_SIZE / 4u;
override B_SIZE: u32 = BK * BN;
override B_VEC4: u32 = B_SIZE / 4u;

struct Params {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    // GEMM rows of the output (forward: N*OH*OW; backward_weight: the reduction N*OH*OW;
    // reduce_splits: the length of dw).
    rows: u32,
    // backward_data: column tiles per phase. backward_weight: reduction elements per split.
    // reduce_splits: number of splits.
    aux: u32,
}
var<immediate> p: Params;

// forward: x, w -> y. backward_data: dy, w -> dx. backward_weight: x, dy -> partial (or dw).
// reduce_splits: partial -> dw.
@group(0) @binding(0) var<storage, read> in_a: array<f32>;
@group(0) @binding(1) var<storage, read> in_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<vec4<f32>, A_VEC4>;
var<workgroup> Bs: array<vec4<f32>, B_VEC4>;
// backward_weight: per tile column (ci * H * W, r - pad, c - pad, 1 if the column exists).
var<workgroup> col_info: array<vec4<i32>, BN>;

// acc[i][j] += sum over the staged slice of As[k][4 tx + i] * Bs[k][4 ty + j].
fn multiply_slice(acc: ptr<function, array<vec4<f32>, 4>>, tx: u32, ty: u32) {
    for (var k = 0u; k < BK; k++) {
        let a = As[k * (BM / 4u) + tx];
        let b = Bs[k * (BN / 4u) + ty];
        (*acc)[0] = fma(vec4<f32>(a.x), b, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(a.y), b, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(a.z), b, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(a.w), b, (*acc)[3]);
    }
}

// a / d for a < 2^24 (checked by the host) without an integer division: a float estimate that
// is off by at most one, then corrected.
fn div_small(a: u32, d: u32, inv_d: f32) -> u32 {
    var q = u32(f32(a) * inv_d);
    if q * d > a {
        q -= 1u;
    }
    if (q + 1u) * d <= a {
        q += 1u;
    }
    return q;
}

@compute @workgroup_size(WG)
fn forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m0 = (wid.x + wid.y * nwg.x) * BM;
    let n0 = wid.z * BN;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let taps = p.kh * p.kw;
    let tx = lid % TX;
    let ty = lid / TX;

    // The output pixel whose im2col row this invocation gathers (the same in every slice).
    let a_row = lid % BM;
    let a_k = lid / BM;
    let m = m0 + a_row;
    let row_ok = m < p.rows;
    let img = m / ohw;
    let pix = m - img * ohw;
    let oy = pix / p.ow;
    let ox = pix - oy * p.ow;
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    let x_img = img * p.ci * hw;
    // The output channel whose weights this invocation gathers.
    let b_col = lid % BN;
    let b_k = lid / BN;
    let co = n0 + b_col;
    let col_ok = co < p.co;
    let w_row = co * p.ci * taps;

    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < p.kh; r++) {
        for (var c = 0u; c < p.kw; c++) {
            let iy = iy0 + i32(r);
            let ix = ix0 + i32(c);
            let tap_ok = row_ok && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            let x_base = x_img + u32(iy) * p.w + u32(ix);
            let w_base = w_row + r * p.kw + c;
            for (var ci0 = 0u; ci0 < p.ci; ci0 += BK) {
                for (var i = 0u; i < A_SIZE / WG; i++) {
                    let k = a_k + i * (WG / BM);
                    let ci = ci0 + k;
                    var v = 0.0;
                    if tap_ok && ci < p.ci {
                        v = in_a[x_base + ci * hw];
                    }
                    let ia = k * BM + a_row;
                    As[ia >> 2u][ia & 3u] = v;
                }
                for (var i = 0u; i < B_SIZE / WG; i++) {
                    let k = b_k + i * (WG / BN);
                    let ci = ci0 + k;
                    var v = 0.0;
                    if col_ok && ci < p.ci {
                        v = in_b[w_base + ci * taps];
                    }
                    let ib = k * BN + b_col;
                    Bs[ib >> 2u][ib & 3u] = v;
                }
                workgroupBarrier();
                multiply_slice(&acc, tx, ty);
                workgroupBarrier();
            }
        }
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * tx + i;
        if m >= p.rows {
            continue;
        }
        let img = m / ohw;
        let y_base = img * p.co * ohw + (m - img * ohw);
        for (var j = 0u; j < 4u; j++) {
            let co = n0 + 4u * ty + j;
            if co < p.co {
                out[y_base + co * ohw] = acc[i][j];
            }
        }
    }
}

// Workgroup z = phase * column_tiles + column_tile, phase = (py, px) with input pixels
// (iy, ix) = (a * stride + py, b * stride + px). Tap r reaches phase py exactly when
// (py + pad - r) is a multiple of the stride, and then oy = a + (py + pad - r) / stride.
@compute @workgroup_size(WG)
fn backward_data(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let s = p.stride;
    let phase = wid.z / p.aux;
    let n0 = (wid.z - phase * p.aux) * BN;
    let py = phase / s;
    let px = phase - py * s;
    // Rows and columns of the input that belong to this phase.
    let hp = select(0u, (p.h - py + s - 1u) / s, py < p.h);
    let wp = select(0u, (p.w - px + s - 1u) / s, px < p.w);
    let phase_pixels = max(hp * wp, 1u);
    let phase_rows = p.n * hp * wp;
    let m0 = (wid.x + wid.y * nwg.x) * BM;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let taps = p.kh * p.kw;
    let tx = lid % TX;
    let ty = lid / TX;

    let a_row = lid % BM;
    let a_k = lid / BM;
    let m = m0 + a_row;
    let row_ok = m < phase_rows;
    let img = m / phase_pixels;
    let pix = m - img * phase_pixels;
    let a = pix / max(wp, 1u);
    let b = pix - a * max(wp, 1u);
    let dy_img = img * p.co * ohw;
    let b_col = lid % BN;
    let b_k = lid / BN;
    let ci = n0 + b_col;
    let col_ok = ci < p.ci;
    let ci_taps = p.ci * taps;

    var acc: array<vec4<f32>, 4>;
    for (var r = (py + p.pad) % s; r < p.kh; r += s) {
        let oy = i32(a) + (i32(py + p.pad) - i32(r)) / i32(s);
        for (var c = (px + p.pad) % s; c < p.kw; c += s) {
            let ox = i32(b) + (i32(px + p.pad) - i32(c)) / i32(s);
            let tap_ok = row_ok && oy >= 0 && oy < i32(p.oh) && ox >= 0 && ox < i32(p.ow);
            let dy_base = dy_img + u32(oy) * p.ow + u32(ox);
            let w_base = ci * taps + r * p.kw + c;
            for (var co0 = 0u; co0 < p.co; co0 += BK) {
                for (var i = 0u; i < A_SIZE / WG; i++) {
                    let k = a_k + i * (WG / BM);
                    let co = co0 + k;
                    var v = 0.0;
                    if tap_ok && co < p.co {
                        v = in_a[dy_base + co * ohw];
                    }
                    let ia = k * BM + a_row;
                    As[ia >> 2u][ia & 3u] = v;
                }
                for (var i = 0u; i < B_SIZE / WG; i++) {
                    let k = b_k + i * (WG / BN);
                    let co = co0 + k;
                    var v = 0.0;
                    if col_ok && co < p.co {
                        v = in_b[co * ci_taps + w_base];
                    }
                    let ib = k * BN + b_col;
                    Bs[ib >> 2u][ib & 3u] = v;
                }
                workgroupBarrier();
                multiply_slice(&acc, tx, ty);
                workgroupBarrier();
            }
        }
    }

    // Every pixel of the phase is written, zero where no tap reaches it (dx is overwritten).
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * tx + i;
        if m >= phase_rows {
            continue;
        }
        let img = m / phase_pixels;
        let pix = m - img * phase_pixels;
        let a = pix / max(wp, 1u);
        let b = pix - a * max(wp, 1u);
        let x_base = img * p.ci * hw + (a * s + py) * p.w + b * s + px;
        for (var j = 0u; j < 4u; j++) {
            let ci = n0 + 4u * ty + j;
            if ci < p.ci {
                out[x_base + ci * hw] = acc[i][j];
            }
        }
    }
}

// Tile rows are output channels, columns are (ci, r, c) weight positions; workgroup z is the
// reduction chunk [z * aux, (z + 1) * aux) of the N*OH*OW output pixels. With one chunk the
// output is dw itself, else the slice z of the partial buffer.
@compute @workgroup_size(WG)
fn backward_weight(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let n0 = wid.x * BN;
    let m0 = wid.y * BM;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let taps = p.kh * p.kw;
    let cols = p.ci * taps;
    let tx = lid % TX;
    let ty = lid / TX;
    let inv_ohw = 1.0 / f32(ohw);
    let inv_ow = 1.0 / f32(p.ow);

    for (var j = lid; j < BN; j += WG) {
        let col = n0 + j;
        let ci = col / taps;
        let tap = col - ci * taps;
        let r = tap / p.kw;
        let c = tap - r * p.kw;
        col_info[j] = vec4<i32>(
            i32(ci * hw),
            i32(r) - i32(p.pad),
            i32(c) - i32(p.pad),
            select(0, 1, col < cols),
        );
    }
    workgroupBarrier();

    // This invocation gathers reduction element k0 + red_k of every slice.
    let red_k = lid % BK;
    let a_row = lid / BK;
    let b_col = lid / BK;
    let r_begin = wid.z * p.aux;
    let r_end = min(r_begin + p.aux, p.rows);

    var acc: array<vec4<f32>, 4>;
    for (var k0 = r_begin; k0 < r_end; k0 += BK) {
        let m = k0 + red_k;
        let m_ok = m < r_end;
        let img = div_small(m, ohw, inv_ohw);
        let pix = m - img * ohw;
        let oy = div_small(pix, p.ow, inv_ow);
        let ox = pix - oy * p.ow;
        let dy_base = img * p.co * ohw + pix;
        let x_img = img * p.ci * hw;
        let iy0 = i32(oy * p.stride);
        let ix0 = i32(ox * p.stride);
        for (var i = 0u; i < A_SIZE / WG; i++) {
            let row = a_row + i * (WG / BK);
            let co = m0 + row;
            var v = 0.0;
            if m_ok && co < p.co {
                v = in_b[dy_base + co * ohw];
            }
            let ia = red_k * BM + row;
                    As[ia >> 2u][ia & 3u] = v;
        }
        for (var i = 0u; i < B_SIZE / WG; i++) {
            let col = b_col + i * (WG / BK);
            let info = col_info[col];
            let iy = iy0 + info.y;
            let ix = ix0 + info.z;
            var v = 0.0;
            if m_ok && info.w != 0 && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                v = in_a[x_img + u32(info.x) + u32(iy) * p.w + u32(ix)];
            }
            let ib = red_k * BN + col;
                    Bs[ib >> 2u][ib & 3u] = v;
        }
        workgroupBarrier();
        multiply_slice(&acc, tx, ty);
        workgroupBarrier();
    }

    let out_base = wid.z * p.co * cols;
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + 4u * tx + i;
        if co >= p.co {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + 4u * ty + j;
            if col < cols {
                out[out_base + co * cols + col] = acc[i][j];
            }
        }
    }
}

// dw[i] = sum over splits s, in increasing s, of partial[s * rows + i].
@compute @workgroup_size(256)
fn reduce_splits(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.rows {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < p.aux; s++) {
        sum += in_a[s * p.rows + i];
    }
    out[i] = sum;
}

// The baseline the benchmark compares the tiled forward with: one output per invocation, no
// workgroup memory, a division per output.
@compute @workgroup_size(256)
fn forward_naive(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.rows {
        return;
    }
    let ohw = p.oh * p.ow;
    let pix = i % ohw;
    let co = (i / ohw) % p.co;
    let img = i / (ohw * p.co);
    let oy = pix / p.ow;
    let ox = pix % p.ow;
    var sum = 0.0;
    for (var ci = 0u; ci < p.ci; ci++) {
        for (var r = 0u; r < p.kh; r++) {
            let iy = i32(oy * p.stride + r) - i32(p.pad);
            for (var c = 0u; c < p.kw; c++) {
                let ix = i32(ox * p.stride + c) - i32(p.pad);
                if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                    let xv = in_a[((img * p.ci + ci) * p.h + u32(iy)) * p.w + u32(ix)];
                    sum += xv * in_b[((co * p.ci + ci) * p.kh + r) * p.kw + c];
                }
            }
        }
    }
    out[i] = sum;
}
