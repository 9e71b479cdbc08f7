// The gradient convolutions of the binary layers on tensor cores (cooperative matrices: f16
// operands, f32 accumulation), for adapters with 16x16x16 f16 -> f32 cooperative matrices and
// 32-lane subgroups (src/ops/conv_coop.rs checks both).
//
//   backward_data    dx[N,Ci,H,W]     GEMM rows = N*H*W (one stride phase), cols = Ci, red. = Co*kh*kw
//   backward_weight  dw[Co,Ci,kh,kw]  GEMM rows = Co, cols = Ci*kh*kw, reduction = N*OH*OW
//
// The same implicit GEMMs as the tiled kernels of conv.wgsl (read its header for the phases and
// the split reduction), with a 64x64 output tile per workgroup of 4 subgroups, each holding a
// 32x32 block as 2x2 accumulators of 16x16; the reduction is staged 32 at a time in workgroup
// memory as f16, and the result goes through workgroup memory to its NCHW / weight positions.
//
// Exactness. One operand of each GEMM is exact in f16: the signed weights sign(bw) in {-1, 0, 1}
// (backward_data, with the layer's scale |alpha_o| moved onto dy) and the binary activations in
// {-1, 0, 1} (backward_weight). The other, dy, is split into two f16 terms hi + lo of
// dy * SCALE, so a product carries about 22 significant bits (f32 has 24) wherever
// |dy| * SCALE is a normal f16 (|dy| between 6e-8 and 64); below that the absolute error stays
// under 6e-8 / SCALE. Accumulation is f32 as on the float path; the result is divided by SCALE.
enable f16;
enable wgpu_cooperative_matrix;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const WG: u32 = 128u;
const SCALE: f32 = 1024.0;
const INV_SCALE: f32 = 1.0 / 1024.0;

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
    // backward_weight: the reduction N*OH*OW.
    rows: u32,
    // backward_data: column tiles per phase. backward_weight: reduction elements per split.
    aux: u32,
}
var<immediate> p: Params;

// backward_data: dy, bw (= alpha_o * sign(w3)), dx, alpha. backward_weight: binary x, dy,
// partial (or dw).
@group(0) @binding(0) var<storage, read> in_a: array<f32>;
@group(0) @binding(1) var<storage, read> in_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;

// The dy operand as hi + lo, the exact operand, and the output tile (row-major, BM x BN).
var<workgroup> a_hi: array<f16, 2048>;
var<workgroup> a_lo: array<f16, 2048>;
var<workgroup> b_s: array<f16, 2048>;
var<workgroup> c_s: array<f32, 4096>;
// backward_weight: per tile column (ci * H * W, r - pad, c - pad, 1 if the column exists).
var<workgroup> col_info: array<vec4<i32>, 64>;

// hi keeps the top 11 significant bits of v * SCALE by masking (exact in f16 for normal
// magnitudes), so lo = v * SCALE - hi is exact in f32 and only lo is rounded. (Computing lo as
// v * SCALE - f32(f16(v * SCALE)) lost lo entirely on NVIDIA's Vulkan driver: relative errors of
// 2e-4, those of a single f16 term.)
fn split_hi_f32(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v * SCALE) & 0xffffe000u);
}

fn split_hi(v: f32) -> f16 {
    return f16(split_hi_f32(v));
}

fn split_lo(v: f32) -> f16 {
    return f16(v * SCALE - split_hi_f32(v));
}

// Workgroup z = phase * column_tiles + column_tile, as in conv.wgsl's backward_data.
// Staging: a (row m, k) at k * BM + m (column-major), b (k, column) at k * BN + column (row-major).
@compute @workgroup_size(128)
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
    let hp = select(0u, (p.h - py + s - 1u) / s, py < p.h);
    let wp = select(0u, (p.w - px + s - 1u) / s, px < p.w);
    let phase_pixels = max(hp * wp, 1u);
    let phase_rows = p.n * hp * wp;
    let m0 = (wid.x + wid.y * nwg.x) * BM;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let taps = p.kh * p.kw;

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

    let sg = lid / 32u;
    let rb = (sg & 1u) * 32u;
    let cb = (sg >> 1u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();

    for (var r = (py + p.pad) % s; r < p.kh; r += s) {
        let oy = i32(a) + (i32(py + p.pad) - i32(r)) / i32(s);
        for (var c = (px + p.pad) % s; c < p.kw; c += s) {
            let ox = i32(b) + (i32(px + p.pad) - i32(c)) / i32(s);
            let tap_ok = row_ok && oy >= 0 && oy < i32(p.oh) && ox >= 0 && ox < i32(p.ow);
            let dy_base = dy_img + u32(oy) * p.ow + u32(ox);
            let w_base = ci * taps + r * p.kw + c;
            for (var co0 = 0u; co0 < p.co; co0 += BK) {
                for (var i = 0u; i < BK * BM / WG; i++) {
                    let k = a_k + i * (WG / BM);
                    let co = co0 + k;
                    var v = 0.0;
                    if tap_ok && co < p.co {
                        v = in_a[dy_base + co * ohw] * abs(alpha[co]);
                    }
                    a_hi[k * BM + a_row] = split_hi(v);
                    a_lo[k * BM + a_row] = split_lo(v);
                }
                for (var i = 0u; i < BK * BN / WG; i++) {
                    let k = b_k + i * (WG / BN);
                    let co = co0 + k;
                    var v = 0.0;
                    if col_ok && co < p.co {
                        v = sign(in_b[co * ci_taps + w_base]);
                    }
                    b_s[k * BN + b_col] = f16(v);
                }
                workgroupBarrier();
                for (var kk = 0u; kk < BK; kk += 16u) {
                    let ia0 = kk * BM + rb;
                    let ia1 = kk * BM + rb + 16u;
                    let ib0 = kk * BN + cb;
                    let ib1 = kk * BN + cb + 16u;
                    let lda = BM;
                    let ldb = BN;
                    let h0 = coopLoad<coop_mat16x16<f16, A>>(&a_hi[ia0], lda);
                    let h1 = coopLoad<coop_mat16x16<f16, A>>(&a_hi[ia1], lda);
                    let l0 = coopLoad<coop_mat16x16<f16, A>>(&a_lo[ia0], lda);
                    let l1 = coopLoad<coop_mat16x16<f16, A>>(&a_lo[ia1], lda);
                    let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[ib0], ldb);
                    let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[ib1], ldb);
                    c00 = coopMultiplyAdd(l0, b0, c00);
                    c01 = coopMultiplyAdd(l0, b1, c01);
                    c10 = coopMultiplyAdd(l1, b0, c10);
                    c11 = coopMultiplyAdd(l1, b1, c11);
                    c00 = coopMultiplyAdd(h0, b0, c00);
                    c01 = coopMultiplyAdd(h0, b1, c01);
                    c10 = coopMultiplyAdd(h1, b0, c10);
                    c11 = coopMultiplyAdd(h1, b1, c11);
                }
                workgroupBarrier();
            }
        }
    }

    let ic00 = rb * BN + cb;
    let ic01 = rb * BN + cb + 16u;
    let ic10 = (rb + 16u) * BN + cb;
    let ic11 = (rb + 16u) * BN + cb + 16u;
    let ldc = BN;
    coopStoreT(c00, &c_s[ic00], ldc);
    coopStoreT(c01, &c_s[ic01], ldc);
    coopStoreT(c10, &c_s[ic10], ldc);
    coopStoreT(c11, &c_s[ic11], ldc);
    workgroupBarrier();

    // Every pixel of the phase is written, zero where no tap reaches it (dx is overwritten).
    // Invocation = one tile row (an input pixel), half of the columns.
    if !row_ok {
        return;
    }
    let x_base = img * p.ci * hw + (a * s + py) * p.w + b * s + px;
    for (var j = a_k; j < BN; j += WG / BM) {
        let ci_out = n0 + j;
        if ci_out < p.ci {
            out[x_base + ci_out * hw] = c_s[a_row * BN + j] * INV_SCALE;
        }
    }
}

// Tile rows are output channels, columns (ci, r, c) weight positions; workgroup z is the chunk
// [z * aux, (z + 1) * aux) of the reduction, written to dw (one chunk) or the partial slice z.
// Staging: a (row co, k) at co * BK + k (row-major), b (k, column) at column * BK + k
// (column-major): consecutive invocations fill consecutive reduction positions.
@compute @workgroup_size(128)
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

    let red_k = lid % BK;
    let lane_row = lid / BK;
    let r_begin = wid.z * p.aux;
    let r_end = min(r_begin + p.aux, p.rows);

    let sg = lid / 32u;
    let rb = (sg & 1u) * 32u;
    let cb = (sg >> 1u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();

    for (var k0 = r_begin; k0 < r_end; k0 += BK) {
        let m = k0 + red_k;
        let m_ok = m < r_end;
        let img = m / ohw;
        let pix = m - img * ohw;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        let dy_base = img * p.co * ohw + pix;
        let x_img = img * p.ci * hw;
        let iy0 = i32(oy * p.stride);
        let ix0 = i32(ox * p.stride);
        for (var i = 0u; i < BK * BM / WG; i++) {
            let row = lane_row + i * (WG / BK);
            let co = m0 + row;
            var v = 0.0;
            if m_ok && co < p.co {
                v = in_b[dy_base + co * ohw];
            }
            a_hi[row * BK + red_k] = split_hi(v);
            a_lo[row * BK + red_k] = split_lo(v);
        }
        for (var i = 0u; i < BK * BN / WG; i++) {
            let j = lane_row + i * (WG / BK);
            let info = col_info[j];
            let iy = iy0 + info.y;
            let ix = ix0 + info.z;
            var v = 0.0;
            if m_ok && info.w != 0 && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                v = in_a[x_img + u32(info.x) + u32(iy) * p.w + u32(ix)];
            }
            b_s[j * BK + red_k] = f16(v);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 16u) {
            let ia0 = rb * BK + kk;
            let ia1 = (rb + 16u) * BK + kk;
            let ib0 = cb * BK + kk;
            let ib1 = (cb + 16u) * BK + kk;
            let ld = BK;
            let h0 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[ia0], ld);
            let h1 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[ia1], ld);
            let l0 = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[ia0], ld);
            let l1 = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[ia1], ld);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&b_s[ib0], ld);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&b_s[ib1], ld);
            c00 = coopMultiplyAdd(l0, b0, c00);
            c01 = coopMultiplyAdd(l0, b1, c01);
            c10 = coopMultiplyAdd(l1, b0, c10);
            c11 = coopMultiplyAdd(l1, b1, c11);
            c00 = coopMultiplyAdd(h0, b0, c00);
            c01 = coopMultiplyAdd(h0, b1, c01);
            c10 = coopMultiplyAdd(h1, b0, c10);
            c11 = coopMultiplyAdd(h1, b1, c11);
        }
        workgroupBarrier();
    }

    let ic00 = rb * BN + cb;
    let ic01 = rb * BN + cb + 16u;
    let ic10 = (rb + 16u) * BN + cb;
    let ic11 = (rb + 16u) * BN + cb + 16u;
    let ldc = BN;
    coopStoreT(c00, &c_s[ic00], ldc);
    coopStoreT(c01, &c_s[ic01], ldc);
    coopStoreT(c10, &c_s[ic10], ldc);
    coopStoreT(c11, &c_s[ic11], ldc);
    workgroupBarrier();

    // Invocation = one tile column, every other row.
    let out_base = wid.z * p.co * cols;
    let j = lid % BN;
    let col = n0 + j;
    if col >= cols {
        return;
    }
    for (var i = lid / BN; i < BM; i += WG / BN) {
        let co = m0 + i;
        if co < p.co {
            out[out_base + co * cols + col] = c_s[i * BN + j] * INV_SCALE;
        }
    }
}
