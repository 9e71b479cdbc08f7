// Float 2D convolution (as shaders/conv_gemm.wgsl: NCHW, [Co, Ci, kh, kw] weights, zero padding)
// on groups of 8 subgroup lanes (src/ops/conv/direct.rs), for kernels up to 3x3 with stride 1 or
// 2 on software adapters with subgroups (see common/lane_groups.wgsl for why). Each group keeps
// its whole tile in registers: the tap geometry (DKH, DKW, DS, DPMOD) is compiled in, so every
// loop over taps and tile positions has a constant trip count and unrolls, and every register
// array index becomes a constant. (Accumulator arrays are sized exactly by the loops that index
// them, which makes drivers unroll those loops whatever their length.)
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
//                  write a partial buffer that conv_gemm.wgsl's reduce_splits sums in a fixed
//                  order.
// The host (ops::conv::direct_supported) guarantees stride 1 or 2 and kernels up to 3x3, which
// bounds every window: at most 7 * 2 + 3 = 17 rows and columns (3 segments of 8).
// #include "common/conv_params.wgsl"
// #include "common/lane_groups.wgsl"
// #include "common/direct_window.wgsl"
// #include "common/weight_group.wgsl"

var<immediate> p: ConvParams;

// direct: x, w -> y, or (DTRANSPOSED) dy, w -> dx. direct_weight: x, dy -> partial (or dw).
@group(0) @binding(0) var<storage, read> in_a: array<f32>;
@group(0) @binding(1) var<storage, read> in_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn direct(ids: LaneIds) {
    let gl = group_lane(ids);
    let d = gather_dims();
    let tile = direct_tile(gl, p.n, d.c_out, d.h_out, d.w_out);
    let ty0 = tile.ty0;
    let tx0 = tile.tx0;
    let img = tile.img;
    let oc = tile.oc;
    let oc_ok = tile.ok;
    let iy0 = window_origin(ty0, DKH);
    let ix0 = window_origin(tx0, DKW);
    let rows_len = window_len(DKH);
    let segs = (window_len(DKW) + 7u) / 8u;
    let in_plane = d.h_in * d.w_in;
    let in_img = img * d.c_in * in_plane;

    // acc[ty][tx]: output pixel (ty0 + ty, tx0 + tx) of channel oc.
    var acc: array<array<f32, 8>, 8>;
    for (var j = 0u; j < d.c_in; j++) {
        var wt: array<f32, 9>;
        for (var k = 0u; k < DKK; k++) {
            var wi = (oc * d.c_in + j) * DKK + k;
            if DTRANSPOSED {
                wi = (j * d.c_out + oc) * DKK + k;
            }
            wt[k] = select(0.0, in_b[select(0u, wi, oc_ok)], oc_ok);
        }
        let plane = in_img + j * in_plane;
        // rows[k][s]: input (iy0 + k, ix0 + 8 s + lane) of channel j.
        var rows: array<array<f32, 3>, 17>;
        for (var k = 0u; k < rows_len; k++) {
            let iy = iy0 + i32(k);
            let row_ok = iy >= 0 && iy < i32(d.h_in) && (DTRANSPOSED || k % DS < DKH);
            for (var s = 0u; s < segs; s++) {
                let ix = ix0 + i32(s * 8u + gl.lane);
                let ok = row_ok && ix >= 0 && ix < i32(d.w_in);
                let idx = plane + u32(iy) * d.w_in + u32(ix);
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

    let out_plane = d.h_out * d.w_out;
    let out_base = (img * d.c_out + oc) * out_plane;
    for (var ty = 0u; ty < 8u; ty++) {
        for (var tx = 0u; tx < 8u; tx++) {
            let y = ty0 + ty;
            let x = tx0 + tx;
            if oc_ok && y < d.h_out && x < d.w_out {
                out[out_base + y * d.w_out + x] = acc[ty][tx];
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
fn direct_weight(ids: LaneIds) {
    let gl = group_lane(ids);
    let wg = weight_group(gl);
    let ohw = p.oh * p.ow;

    var acc: array<array<f32, 9>, 16>;
    for (var strip = wg.strip_begin; strip < wg.strip_end; strip++) {
        let img = strip / wg.strips_x;
        let x0 = (strip - img * wg.strips_x) * 8u;
        let plane = (img * p.ci + select(0u, wg.ci, wg.ci_ok)) * p.h * p.w;
        let ix0 = i32(x0 * DS) - i32(p.pad);
        let ox = x0 + gl.lane;
        let ox_ok = ox < p.ow;
        // win[r]: the input row tap row r reads for the current output row.
        var win: array<array<f32, 17>, 3>;
        for (var r = 0u; r < DKH; r++) {
            win[r] = weight_window_row(plane, i32(r) - i32(p.pad), ix0, wg.ci_ok);
        }
        for (var y = 0u; y < p.oh; y++) {
            let dy_row = img * p.co * ohw + y * p.ow + ox;
            for (var o = 0u; o < 16u; o++) {
                let ok = ox_ok && wg.o0 + o < p.co;
                let d = select(0.0, in_b[select(0u, dy_row + (wg.o0 + o) * ohw, ok)], ok);
                var a = acc[o];
                for (var px = 0u; px < 8u; px++) {
                    weight_taps(&a, subgroupShuffle(d, gl.base + px), px, &win);
                }
                acc[o] = a;
            }
            // Slide the window down DS rows: keep the rows still in reach, load the rest.
            for (var r = 0u; r < DKH; r++) {
                if r + DS < DKH {
                    win[r] = win[r + DS];
                } else {
                    win[r] = weight_window_row(plane, i32((y + 1u) * DS + r) - i32(p.pad), ix0, wg.ci_ok);
                }
            }
        }
    }
    store_weight_tile(wg, &acc);
}
