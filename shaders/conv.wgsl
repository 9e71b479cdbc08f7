// Float 2D convolution (NCHW activations, [Co, Ci, kh, kw] weights, zero padding, no bias).
//
// Two families of kernels. The direct kernels at the end of this file (direct, direct_weight) run
// kernels up to 3x3 with stride 1 or 2 on adapters with subgroups: see their section. Everything
// else runs the tiled implicit GEMMs below, where the im2col matrix is gathered on the fly into
// workgroup memory, never stored:
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

// ---- Direct kernels ----
//
// lavapipe (and CPUs generally) pay for every load that differs between lanes: each one becomes a
// loop over the 8 lanes, costing as much as dozens of multiply-adds, and workgroup memory is no
// cheaper than a buffer. These kernels therefore load each value once per group of 8 subgroup
// lanes and hand it to the other lanes with subgroupShuffle (one vector permute there, a register
// shuffle on GPUs), and keep their whole tile in registers: the tap geometry (DKH, DKW, DS,
// DPMOD) is compiled in, so every loop over taps and tile positions has a constant trip count and
// unrolls, and every register array index becomes a constant. (Accumulator arrays are sized
// exactly by the loops that index them, which makes drivers unroll those loops whatever their
// length.) A group is 8 consecutive lanes of one subgroup; a workgroup holds DIRECT_GROUPS of them.
//
//   direct         gather conv (forward) or scatter conv (DTRANSPOSED: the data gradient, any
//                  stride): lane = one of 8 output channels, register tile = 8x8 output pixels of
//                  one image. Per reduction channel: the lane's 3x3 weights (own loads), then the
//                  input window of the tile, each row loaded as segments of 8 columns (one value
//                  per lane) and broadcast tap by tap with shuffles.
//   direct_weight  lane = one of 8 input channels, register tile = 16 output channels x the taps.
//                  The group walks a chunk of 8-column strips of the output, row by row, keeping
//                  the input rows of the current taps (the lane's own channel) in registers; each
//                  output-gradient row is one load per channel, broadcast pixel by pixel. Chunks
//                  write a partial buffer that reduce_splits sums in a fixed order.
// The host (src/ops/conv.rs, direct_supported) guarantees stride 1 or 2 and kernels up to 3x3,
// which bounds every window: at most 7 * 2 + 3 = 17 rows and columns (3 segments of 8).

const DIRECT_GROUPS: u32 = 8u;
override DKH: u32 = 3u;
override DKW: u32 = 3u;
override DS: u32 = 1u;
override DTRANSPOSED: bool = false;
// The padding modulo the stride, for DTRANSPOSED: with it, which taps reach which outputs is known
// at compile time (the rest of the padding only moves the window, a runtime offset).
override DPMOD: i32 = 0;
override DKK: u32 = DKH * DKW;
override DCOLS: u32 = 7u * DS + DKW;

// Lane (0..8) within its group, the group's first subgroup lane, and the group's index in the
// workgroup.
struct GroupLane {
    lane: u32,
    base: u32,
    group: u32,
}

fn group_lane(sg_lane: u32, sg_id: u32, sg_size: u32) -> GroupLane {
    return GroupLane(sg_lane & 7u, sg_lane & ~7u, sg_id * (sg_size / 8u) + sg_lane / 8u);
}

// floor(a / b) for a > -64 b.
fn floor_div(a: i32, b: i32) -> i32 {
    return (a + 64 * b) / b - 64;
}

// First input row (or column) of the window that a tile starting at output row t0 reads.
fn window_origin(t0: u32, k: u32) -> i32 {
    if DTRANSPOSED {
        return i32(t0 / DS) + i32(p.pad / DS) + floor_div(DPMOD + 1 - i32(k), i32(DS));
    }
    return i32(t0 * DS) - i32(p.pad);
}

// Rows (or columns) of that window.
fn window_len(k: u32) -> u32 {
    if DTRANSPOSED {
        return u32(floor_div(7 + DPMOD, i32(DS)) - floor_div(DPMOD + 1 - i32(k), i32(DS)) + 1);
    }
    return 7u * DS + k;
}

// Where output row t (0..8) of a tile meets tap r in the window, or -1 where it does not (a
// transposed conv with stride > 1 reaches each output from only some taps).
fn window_index(t: u32, r: u32, k: u32) -> i32 {
    if DTRANSPOSED {
        let num = i32(t) + DPMOD - i32(r);
        if num % i32(DS) != 0 {
            return -1;
        }
        return floor_div(num, i32(DS)) - floor_div(DPMOD + 1 - i32(k), i32(DS));
    }
    return i32(t * DS + r);
}

@compute @workgroup_size(64)
fn direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let gl = group_lane(sg_lane, sg_id, sg_size);
    var c_in = p.ci;
    var h_in = p.h;
    var w_in = p.w;
    var c_out = p.co;
    var h_out = p.oh;
    var w_out = p.ow;
    if DTRANSPOSED {
        c_in = p.co;
        h_in = p.oh;
        w_in = p.ow;
        c_out = p.ci;
        h_out = p.h;
        w_out = p.w;
    }
    let tiles_x = (w_out + 7u) / 8u;
    let tiles_y = (h_out + 7u) / 8u;
    let cblocks = (c_out + 7u) / 8u;
    let total = p.n * tiles_y * tiles_x * cblocks;
    let g = (wid.x + wid.y * nwg.x) * DIRECT_GROUPS + gl.group;
    let gc = min(g, total - 1u);
    let cb = gc % cblocks;
    var t = gc / cblocks;
    let tx0 = (t % tiles_x) * 8u;
    t /= tiles_x;
    let ty0 = (t % tiles_y) * 8u;
    let img = t / tiles_y;
    let oc = cb * 8u + gl.lane;
    let oc_ok = oc < c_out && g < total;
    let iy0 = window_origin(ty0, DKH);
    let ix0 = window_origin(tx0, DKW);
    let rows_len = window_len(DKH);
    let segs = (window_len(DKW) + 7u) / 8u;
    let in_plane = h_in * w_in;
    let in_img = img * c_in * in_plane;

    // acc[ty][tx]: output pixel (ty0 + ty, tx0 + tx) of channel oc.
    var acc: array<array<f32, 8>, 8>;
    for (var j = 0u; j < c_in; j++) {
        var wt: array<f32, 9>;
        for (var k = 0u; k < DKK; k++) {
            var wi = (oc * c_in + j) * DKK + k;
            if DTRANSPOSED {
                wi = (j * c_out + oc) * DKK + k;
            }
            wt[k] = select(0.0, in_b[select(0u, wi, oc_ok)], oc_ok);
        }
        let plane = in_img + j * in_plane;
        // rows[k][s]: input (iy0 + k, ix0 + 8 s + lane) of channel j.
        var rows: array<array<f32, 3>, 17>;
        for (var k = 0u; k < rows_len; k++) {
            let iy = iy0 + i32(k);
            let row_ok = iy >= 0 && iy < i32(h_in) && (DTRANSPOSED || k % DS < DKH);
            for (var s = 0u; s < segs; s++) {
                let ix = ix0 + i32(s * 8u + gl.lane);
                let ok = row_ok && ix >= 0 && ix < i32(w_in);
                let idx = plane + u32(iy) * w_in + u32(ix);
                rows[k][s] = select(0.0, in_a[select(0u, idx, ok)], ok);
            }
        }
        for (var ty = 0u; ty < 8u; ty++) {
            for (var tx = 0u; tx < 8u; tx++) {
                var a = acc[ty][tx];
                for (var r = 0u; r < DKH; r++) {
                    let k = window_index(ty, r, DKH);
                    for (var c = 0u; c < DKW; c++) {
                        let m = window_index(tx, c, DKW);
                        if k >= 0 && m >= 0 {
                            let v = subgroupShuffle(rows[k][m / 8], gl.base + u32(m & 7));
                            a = fma(v, wt[r * DKW + c], a);
                        }
                    }
                }
                acc[ty][tx] = a;
            }
        }
    }

    let out_plane = h_out * w_out;
    let out_base = (img * c_out + oc) * out_plane;
    for (var ty = 0u; ty < 8u; ty++) {
        for (var tx = 0u; tx < 8u; tx++) {
            let y = ty0 + ty;
            let x = tx0 + tx;
            if oc_ok && y < h_out && x < w_out {
                out[out_base + y * w_out + x] = acc[ty][tx];
            }
        }
    }
}

// Columns ix0 .. ix0 + DCOLS of row iy of the input plane starting at `plane`: 0 outside the
// input, where `valid` is false, and at columns no tap reads (stride 2, 1-wide kernels).
fn weight_window_row(plane: u32, iy: i32, ix0: i32, valid: bool) -> array<f32, 17> {
    var row: array<f32, 17>;
    let row_ok = valid && iy >= 0 && iy < i32(p.h);
    for (var m = 0u; m < DCOLS; m++) {
        let ix = ix0 + i32(m);
        let ok = row_ok && ix >= 0 && ix < i32(p.w) && m % DS < DKW;
        row[m] = select(0.0, in_a[select(0u, plane + u32(iy) * p.w + u32(ix), ok)], ok);
    }
    return row;
}

@compute @workgroup_size(64)
fn direct_weight(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let gl = group_lane(sg_lane, sg_id, sg_size);
    let iblocks = (p.ci + 7u) / 8u;
    let oblocks = (p.co + 15u) / 16u;
    let strips_x = (p.ow + 7u) / 8u;
    let strips = p.n * strips_x;
    // aux: strips per chunk.
    let chunks = (strips + p.aux - 1u) / p.aux;
    let total = chunks * oblocks * iblocks;
    let g = (wid.x + wid.y * nwg.x) * DIRECT_GROUPS + gl.group;
    let gc = min(g, total - 1u);
    let ib = gc % iblocks;
    let t = gc / iblocks;
    let ob = t % oblocks;
    let chunk = t / oblocks;
    let ci = ib * 8u + gl.lane;
    let ci_ok = ci < p.ci;
    let o0 = ob * 16u;
    let ohw = p.oh * p.ow;

    var acc: array<array<f32, 9>, 16>;
    let strip_end = min(strips, (chunk + 1u) * p.aux);
    for (var strip = chunk * p.aux; strip < strip_end; strip++) {
        let img = strip / strips_x;
        let x0 = (strip - img * strips_x) * 8u;
        let plane = (img * p.ci + select(0u, ci, ci_ok)) * p.h * p.w;
        let ix0 = i32(x0 * DS) - i32(p.pad);
        let ox = x0 + gl.lane;
        let ox_ok = ox < p.ow;
        // win[r]: the input row tap row r reads for the current output row.
        var win: array<array<f32, 17>, 3>;
        for (var r = 0u; r < DKH; r++) {
            win[r] = weight_window_row(plane, i32(r) - i32(p.pad), ix0, ci_ok);
        }
        for (var y = 0u; y < p.oh; y++) {
            let dy_row = img * p.co * ohw + y * p.ow + ox;
            for (var o = 0u; o < 16u; o++) {
                let ok = ox_ok && o0 + o < p.co;
                let d = select(0.0, in_b[select(0u, dy_row + (o0 + o) * ohw, ok)], ok);
                var a = acc[o];
                for (var px = 0u; px < 8u; px++) {
                    let dv = subgroupShuffle(d, gl.base + px);
                    for (var r = 0u; r < DKH; r++) {
                        for (var c = 0u; c < DKW; c++) {
                            a[r * DKW + c] = fma(dv, win[r][px * DS + c], a[r * DKW + c]);
                        }
                    }
                }
                acc[o] = a;
            }
            // Slide the window down DS rows: keep the rows still in reach, load the rest.
            for (var r = 0u; r < DKH; r++) {
                if r + DS < DKH {
                    win[r] = win[r + DS];
                } else {
                    win[r] = weight_window_row(plane, i32((y + 1u) * DS + r) - i32(p.pad), ix0, ci_ok);
                }
            }
        }
    }

    let cols = p.ci * DKK;
    let out_base = chunk * p.co * cols;
    for (var o = 0u; o < 16u; o++) {
        if ci_ok && o0 + o < p.co && g < total {
            for (var k = 0u; k < DKK; k++) {
                out[out_base + (o0 + o) * cols + ci * DKK + k] = acc[o][k];
            }
        }
    }
}
