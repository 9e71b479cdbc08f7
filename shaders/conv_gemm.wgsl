// Float 2D convolution (NCHW activations, [Co, Ci, kh, kw] weights, zero padding, no bias) as
// tiled implicit GEMMs (src/ops/conv/gemm.rs), where the im2col matrix is gathered on the fly into
// workgroup memory, never stored. (shaders/conv_direct.wgsl holds the subgroup kernels that
// software adapters run instead.)
//
//   forward          y[N,Co,OH,OW]  GEMM rows = N*OH*OW,  cols = Co,        reduction = Ci*kh*kw
//   backward_data    dx[N,Ci,H,W]   GEMM rows = N*H*W,    cols = Ci,        reduction = Co*kh*kw
//   backward_weight  dw[Co,Ci,kh,kw] GEMM rows = Co,      cols = Ci*kh*kw,  reduction = N*OH*OW
//
// Every entry point computes a BM x BN output tile per workgroup (common/gemm_tile.wgsl): the
// reduction is walked in slices of BK staged in workgroup memory (As: BK x BM, Bs: BK x BN,
// stored as vec4), and each invocation keeps a 4x4 register micro-tile, rows 4*tx..4*tx+3 and
// columns 4*ty..4*ty+3, so each step of the slice reads one vec4 of As and one of Bs for 16
// multiply-adds.
//
// forward and backward_data walk the reduction tap-major (for each (r, c) tap, slices of BK
// channels): the spatial bounds test and the base address are computed once per tap, and the
// innermost loops contain no integer division (a layer with fewer channels than BK, like the
// 3-channel stem, pads each tap's slice with zeros: cheap beside the layers that matter).
// backward_data splits the input pixels into
// stride x stride phases (workgroup z; common/conv_grad_geometry.wgsl), so each phase visits only
// the taps that reach it and stride 2 wastes no multiply-adds on taps that fall between output
// pixels. backward_weight splits its long reduction (N*OH*OW) into `splits` chunks (workgroup z)
// that write a partial buffer [splits, Co, Ci*kh*kw]; reduce_splits sums it in a fixed order, so
// the result is the same bits on every run (no atomics). (conv_direct.wgsl's weight gradient
// uses reduce_splits too.)
//
// Tile shapes are override constants chosen by src/ops/conv/gemm.rs; it checks the divisibility
// rules stated there (BM and BN multiples of 16, so each invocation loads at a fixed row or
// column).
// #include "common/conv_params.wgsl"
// #include "common/conv_grad_geometry.wgsl"
// #include "common/gemm_tile.wgsl"
// #include "common/grid.wgsl"

override A_VEC4: u32 = A_SIZE / 4u;
override B_VEC4: u32 = B_SIZE / 4u;

var<immediate> p: ConvParams;

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

// Stages the slice of channels c0 .. c0 + BK of one tap (forward, backward_data) and multiplies
// it into acc. Invocation lid stages row lid % BM of A, element k = in_a[a_base + (c0 + k) *
// a_stride], and column lid % BN of B, element k = in_b[b_base + (c0 + k) * b_stride]; each is 0
// where its row or column is out of range (a_ok, b_ok) or c0 + k reaches `channels`. Call from
// uniform control flow (it has barriers).
fn multiply_tap_slice(
    acc: ptr<function, array<vec4<f32>, 4>>,
    lid: u32,
    c0: u32,
    channels: u32,
    a_ok: bool,
    a_base: u32,
    a_stride: u32,
    b_ok: bool,
    b_base: u32,
    b_stride: u32,
) {
    let a_row = lid % BM;
    let a_k = lid / BM;
    for (var i = 0u; i < A_SIZE / WG; i++) {
        let k = a_k + i * (WG / BM);
        let c = c0 + k;
        var v = 0.0;
        if a_ok && c < channels {
            v = in_a[a_base + c * a_stride];
        }
        let ia = k * BM + a_row;
        As[ia >> 2u][ia & 3u] = v;
    }
    let b_col = lid % BN;
    let b_k = lid / BN;
    for (var i = 0u; i < B_SIZE / WG; i++) {
        let k = b_k + i * (WG / BN);
        let c = c0 + k;
        var v = 0.0;
        if b_ok && c < channels {
            v = in_b[b_base + c * b_stride];
        }
        let ib = k * BN + b_col;
        Bs[ib >> 2u][ib & 3u] = v;
    }
    workgroupBarrier();
    multiply_slice(acc, lid % TX, lid / TX);
    workgroupBarrier();
}

// out[base + (col0 + j) * stride] = acc[i][j] for the columns col0 + j below `cols`: row i of an
// invocation's micro-tile (columns col0 .. col0 + 3).
fn store_micro_row(
    acc: ptr<function, array<vec4<f32>, 4>>,
    i: u32,
    base: u32,
    col0: u32,
    cols: u32,
    stride: u32,
) {
    for (var j = 0u; j < 4u; j++) {
        if col0 + j < cols {
            out[base + (col0 + j) * stride] = (*acc)[i][j];
        }
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
    let m = m0 + lid % BM;
    let row_ok = m < p.rows;
    let img = m / ohw;
    let pix = m - img * ohw;
    let oy = pix / p.ow;
    let ox = pix - oy * p.ow;
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    let x_img = img * p.ci * hw;
    // The output channel whose weights this invocation gathers.
    let co = n0 + lid % BN;
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
                multiply_tap_slice(&acc, lid, ci0, p.ci, tap_ok, x_base, hw, col_ok, w_base, taps);
            }
        }
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * tx + i;
        if m < p.rows {
            let img = m / ohw;
            store_micro_row(&acc, i, img * p.co * ohw + (m - img * ohw), n0 + 4u * ty, p.co, ohw);
        }
    }
}

// Workgroup z = phase * column_tiles + column_tile (see common/conv_grad_geometry.wgsl).
@compute @workgroup_size(WG)
fn backward_data(ids: GemmIds) {
    let lid = ids.lid;
    let ph = data_grad_phase(p, ids, BM, BN);
    // The input pixel whose row this invocation gathers, and the input channel of its column.
    let row = phase_row(p, ph, ph.m0 + lid % BM);
    let ohw = p.oh * p.ow;
    let dy_img = row.pixel.x * p.co * ohw;
    let ci = ph.n0 + lid % BN;
    let w_row = ci * p.kh * p.kw;
    let ci_taps = p.ci * p.kh * p.kw;

    var acc: array<vec4<f32>, 4>;
    for (var r = first_phase_tap(p, ph.py); r < p.kh; r += p.stride) {
        for (var c = first_phase_tap(p, ph.px); c < p.kw; c += p.stride) {
            let tap = phase_tap(p, ph, row, r, c);
            for (var co0 = 0u; co0 < p.co; co0 += BK) {
                let dy_base = dy_img + tap.dy_offset;
                let w_base = w_row + tap.w_offset;
                let col_ok = ci < p.ci;
                multiply_tap_slice(&acc, lid, co0, p.co, tap.ok, dy_base, ohw, col_ok, w_base, ci_taps);
            }
        }
    }

    // Every pixel of the phase is written, zero where no tap reaches it (dx is overwritten).
    let hw = p.h * p.w;
    let tx = lid % TX;
    let ty = lid / TX;
    for (var i = 0u; i < 4u; i++) {
        let out_row = phase_row(p, ph, ph.m0 + 4u * tx + i);
        if out_row.ok {
            let x_base = phase_pixel_index(p, ph, out_row.pixel);
            store_micro_row(&acc, i, x_base, ph.n0 + 4u * ty, p.ci, hw);
        }
    }
}

// Tile rows are output channels, columns are (ci, r, c) weight positions; workgroup z is the
// reduction chunk [z * aux, (z + 1) * aux) of the N*OH*OW output pixels. With one chunk the
// output is dw itself, else the slice z of the partial buffer.
@compute @workgroup_size(WG)
fn backward_weight(ids: GemmIds) {
    let lid = ids.lid;
    let tile = weight_grad_tile(p, ids, BM, BN);
    let ohw = p.oh * p.ow;
    let cols = p.ci * p.kh * p.kw;
    let tx = lid % TX;
    let ty = lid / TX;
    let inv_ohw = 1.0 / f32(ohw);
    let inv_ow = 1.0 / f32(p.ow);

    for (var j = lid; j < BN; j += WG) {
        col_info[j] = weight_grad_column(p, tile.n0 + j);
    }
    workgroupBarrier();

    // This invocation gathers reduction element k0 + red_k of every slice.
    let red_k = lid % BK;
    let a_row = lid / BK;
    let b_col = lid / BK;

    var acc: array<vec4<f32>, 4>;
    for (var k0 = tile.begin; k0 < tile.end; k0 += BK) {
        let m = k0 + red_k;
        let m_ok = m < tile.end;
        let img = div_small(m, ohw, inv_ohw);
        let pix = m - img * ohw;
        let oy = div_small(pix, p.ow, inv_ow);
        let ox = pix - oy * p.ow;
        let dy_base = img * p.co * ohw + pix;
        let x_img = img * p.ci * p.h * p.w;
        let iy0 = i32(oy * p.stride);
        let ix0 = i32(ox * p.stride);
        for (var i = 0u; i < A_SIZE / WG; i++) {
            let row = a_row + i * (WG / BK);
            let co = tile.m0 + row;
            var v = 0.0;
            if m_ok && co < p.co {
                v = in_b[dy_base + co * ohw];
            }
            let ia = red_k * BM + row;
            As[ia >> 2u][ia & 3u] = v;
        }
        for (var i = 0u; i < B_SIZE / WG; i++) {
            let col = b_col + i * (WG / BK);
            let x_offset = weight_grad_tap(p, col_info[col], iy0, ix0);
            var v = 0.0;
            if m_ok && x_offset >= 0 {
                v = in_a[x_img + u32(x_offset)];
            }
            let ib = red_k * BN + col;
            Bs[ib >> 2u][ib & 3u] = v;
        }
        workgroupBarrier();
        multiply_slice(&acc, tx, ty);
        workgroupBarrier();
    }

    let out_base = ids.wid.z * p.co * cols;
    for (var i = 0u; i < 4u; i++) {
        let co = tile.m0 + 4u * tx + i;
        if co < p.co {
            store_micro_row(&acc, i, out_base + co * cols, tile.n0 + 4u * ty, cols, 1u);
        }
    }
}

// dw[i] = sum over splits s, in increasing s, of partial[s * rows + i].
@compute @workgroup_size(256)
fn reduce_splits(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(gid, nwg);
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
    let i = flat(gid, nwg);
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
