// The gradient convolutions of the binary layers on tensor cores (cooperative matrices: f16
// operands, f32 accumulation), for adapters with 16x16x16 f16 -> f32 cooperative matrices and
// 32-lane subgroups (src/ops/conv_coop.rs checks both).
//
//   backward_data    dx[N,Ci,H,W]     GEMM rows = N*H*W (one stride phase), cols = Ci, red. = Co*kh*kw
//   backward_weight  dw[Co,Ci,kh,kw]  GEMM rows = Co, cols = Ci*kh*kw, reduction = N*OH*OW
//
// The same implicit GEMMs as the tiled kernels of conv_gemm.wgsl (read its header for the phases
// and the split reduction), with a 64x64 output tile per workgroup of 4 subgroups, each holding a
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
// #include "common/conv_params.wgsl"
// #include "common/conv_grad_geometry.wgsl"

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const WG: u32 = 128u;
const SCALE: f32 = 1024.0;
const INV_SCALE: f32 = 1.0 / 1024.0;

var<immediate> p: ConvParams;

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

// c += (hi + lo) b, the two f16 terms of the dy operand (lo first, the smaller term).
fn multiply_add_split(
    hi: coop_mat16x16<f16, A>,
    lo: coop_mat16x16<f16, A>,
    b: coop_mat16x16<f16, B>,
    c: coop_mat16x16<f32, C>,
) -> coop_mat16x16<f32, C> {
    return coopMultiplyAdd(hi, b, coopMultiplyAdd(lo, b, c));
}

// The subgroup's 32x32 block (rows rb.., columns cb..) of the output tile into c_s (row-major,
// BM x BN), then a barrier so the whole workgroup can read the tile.
fn store_tile(
    c00: coop_mat16x16<f32, C>,
    c01: coop_mat16x16<f32, C>,
    c10: coop_mat16x16<f32, C>,
    c11: coop_mat16x16<f32, C>,
    rb: u32,
    cb: u32,
) {
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
}

// Workgroup z = phase * column_tiles + column_tile, as in conv_gemm.wgsl's backward_data
// (common/conv_grad_geometry.wgsl).
// Staging: a (row m, k) at k * BM + m (column-major), b (k, column) at k * BN + column (row-major).
@compute @workgroup_size(128)
fn backward_data(ids: GemmIds) {
    let lid = ids.lid;
    let ph = data_grad_phase(p, ids, BM, BN);
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let ci_taps = p.ci * p.kh * p.kw;
    // The input pixel whose row this invocation stages, and the input channel of its column.
    let a_row = lid % BM;
    let a_k = lid / BM;
    let row = phase_row(p, ph, ph.m0 + a_row);
    let dy_img = row.pixel.x * p.co * ohw;
    let b_col = lid % BN;
    let b_k = lid / BN;
    let ci = ph.n0 + b_col;
    let col_ok = ci < p.ci;
    let w_row = ci * p.kh * p.kw;

    let sg = lid / 32u;
    let rb = (sg & 1u) * 32u;
    let cb = (sg >> 1u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();

    for (var r = first_phase_tap(p, ph.py); r < p.kh; r += p.stride) {
        for (var c = first_phase_tap(p, ph.px); c < p.kw; c += p.stride) {
            let tap = phase_tap(p, ph, row, r, c);
            let dy_base = dy_img + tap.dy_offset;
            let w_base = w_row + tap.w_offset;
            for (var co0 = 0u; co0 < p.co; co0 += BK) {
                for (var i = 0u; i < BK * BM / WG; i++) {
                    let k = a_k + i * (WG / BM);
                    let co = co0 + k;
                    var v = 0.0;
                    if tap.ok && co < p.co {
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
                    c00 = multiply_add_split(h0, l0, b0, c00);
                    c01 = multiply_add_split(h0, l0, b1, c01);
                    c10 = multiply_add_split(h1, l1, b0, c10);
                    c11 = multiply_add_split(h1, l1, b1, c11);
                }
                workgroupBarrier();
            }
        }
    }

    store_tile(c00, c01, c10, c11, rb, cb);

    // Every pixel of the phase is written, zero where no tap reaches it (dx is overwritten).
    // Invocation = one tile row (an input pixel), half of the columns.
    if !row.ok {
        return;
    }
    let x_base = phase_pixel_index(p, ph, row.pixel);
    for (var j = a_k; j < BN; j += WG / BM) {
        let ci_out = ph.n0 + j;
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
fn backward_weight(ids: GemmIds) {
    let lid = ids.lid;
    let tile = weight_grad_tile(p, ids, BM, BN);
    let ohw = p.oh * p.ow;
    let cols = p.ci * p.kh * p.kw;

    for (var j = lid; j < BN; j += WG) {
        col_info[j] = weight_grad_column(p, tile.n0 + j);
    }
    workgroupBarrier();

    let red_k = lid % BK;
    let lane_row = lid / BK;

    let sg = lid / 32u;
    let rb = (sg & 1u) * 32u;
    let cb = (sg >> 1u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();

    for (var k0 = tile.begin; k0 < tile.end; k0 += BK) {
        let m = k0 + red_k;
        let m_ok = m < tile.end;
        let img = m / ohw;
        let pix = m - img * ohw;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        let dy_base = img * p.co * ohw + pix;
        let x_img = img * p.ci * p.h * p.w;
        let iy0 = i32(oy * p.stride);
        let ix0 = i32(ox * p.stride);
        for (var i = 0u; i < BK * BM / WG; i++) {
            let row = lane_row + i * (WG / BK);
            let co = tile.m0 + row;
            var v = 0.0;
            if m_ok && co < p.co {
                v = in_b[dy_base + co * ohw];
            }
            a_hi[row * BK + red_k] = split_hi(v);
            a_lo[row * BK + red_k] = split_lo(v);
        }
        for (var i = 0u; i < BK * BN / WG; i++) {
            let j = lane_row + i * (WG / BK);
            let x_offset = weight_grad_tap(p, col_info[j], iy0, ix0);
            var v = 0.0;
            if m_ok && x_offset >= 0 {
                v = in_a[x_img + u32(x_offset)];
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
            c00 = multiply_add_split(h0, l0, b0, c00);
            c01 = multiply_add_split(h0, l0, b1, c01);
            c10 = multiply_add_split(h1, l1, b0, c10);
            c11 = multiply_add_split(h1, l1, b1, c11);
        }
        workgroupBarrier();
    }

    store_tile(c00, c01, c10, c11, rb, cb);

    // Invocation = one tile column, every other row.
    let out_base = ids.wid.z * p.co * cols;
    let j = lid % BN;
    let col = tile.n0 + j;
    if col >= cols {
        return;
    }
    for (var i = lid / BN; i < BM; i += WG / BN) {
        let co = tile.m0 + i;
        if co < p.co {
            out[out_base + co * cols + col] = c_s[i * BN + j] * INV_SCALE;
        }
    }
}
