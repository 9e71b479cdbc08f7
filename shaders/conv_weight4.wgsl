// The direct weight gradient of software adapters with every buffer load a vec4: conv_direct.wgsl's
// direct_weight (same groups, same tiles, the same multiply-adds in the same order, so the same
// bits) where every row of the input and of dy is a whole number of vec4s (W and OW multiples of
// 4, ops::conv::direct::vec4_supported). On lavapipe every buffer load is a loop over the 8 lanes
// of a subgroup whether it reads one float or a vec4, so this kernel does 4x fewer of them:
//   - the input rows under the taps (the lane's own channel): DNV aligned vec4s from column
//     x0 * DS - pad - DOFF on, whose components DOFF .. DOFF + DCOLS are the window row;
//   - dy: the group's 16 output channels x 8 strip columns are 32 vec4s, 4 per lane (lane l
//     holds channel 4 q + l / 2, columns 4 (l % 2) .. +4 in slot q), handed to every lane with
//     lanes8 (common/lane_groups.wgsl) instead of shuffles.
// Needs subgroups of exactly 8 lanes (lanes8). Partial sums as direct_weight, summed by
// reduce_splits4: conv_gemm.wgsl's reduce_splits (the same sums in the same order) reading a vec4
// of the partials per load.
// #include "common/conv_params.wgsl"
// #include "common/lane_groups.wgsl"
// #include "common/direct_window.wgsl"
// #include "common/weight_group.wgsl"
// #include "common/grid.wgsl"

// (-pad) mod 4: the window's first column is component DOFF of its first aligned vec4.
override DOFF: u32 = 3u;
// Aligned vec4s per window row: ceil((DOFF + DCOLS) / 4).
override DNV: u32 = 3u;

var<immediate> p: ConvParams;

// direct_weight4: x, dy -> partial (or dw). reduce_splits4: partial, (unused) -> dw.
@group(0) @binding(0) var<storage, read> in_a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> in_b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Columns a0 + DOFF .. + DCOLS of row iy of the input plane that starts at vec4 `plane`: 0
// outside the input and where `valid` is false. a0 is a multiple of 4.
fn window_row4(plane: u32, iy: i32, a0: i32, valid: bool) -> array<f32, 17> {
    let row_ok = valid && iy >= 0 && iy < i32(p.h);
    var q: array<vec4<f32>, 5>;
    for (var v = 0u; v < DNV; v++) {
        let ix = a0 + 4 * i32(v);
        let ok = row_ok && ix >= 0 && ix < i32(p.w);
        q[v] = select(vec4<f32>(0.0), in_a[select(0u, plane + (u32(iy) * p.w + u32(ix)) / 4u, ok)], ok);
    }
    var row: array<f32, 17>;
    for (var m = 0u; m < DCOLS; m++) {
        row[m] = q[(DOFF + m) / 4u][(DOFF + m) % 4u];
    }
    return row;
}

@compute @workgroup_size(64)
fn direct_weight4(ids: LaneIds) {
    let gl = group_lane(ids);
    let wg = weight_group(gl);
    let ohw = p.oh * p.ow;
    // The lane's dy slots: channel wg.o0 + 4 q + lane / 2, columns 4 (lane % 2) .. + 4 of a strip.
    let dy_o = wg.o0 + gl.lane / 2u;
    let dy_x = 4u * (gl.lane % 2u);

    var acc: array<array<f32, 9>, 16>;
    for (var strip = wg.strip_begin; strip < wg.strip_end; strip++) {
        let img = strip / wg.strips_x;
        let x0 = (strip - img * wg.strips_x) * 8u;
        let plane = (img * p.ci + select(0u, wg.ci, wg.ci_ok)) * p.h * p.w / 4u;
        let a0 = i32(x0 * DS) - i32(p.pad) - i32(DOFF);
        let x_ok = x0 + dy_x < p.ow;
        // win[r]: the input row tap row r reads for the current output row.
        var win: array<array<f32, 17>, 3>;
        for (var r = 0u; r < DKH; r++) {
            win[r] = window_row4(plane, i32(r) - i32(p.pad), a0, wg.ci_ok);
        }
        for (var y = 0u; y < p.oh; y++) {
            let row = img * p.co * ohw + y * p.ow + x0 + dy_x;
            // all[q][l]: lane l's dy slot q, in every lane.
            var all: array<array<vec4<f32>, 8>, 4>;
            for (var q = 0u; q < 4u; q++) {
                let ok = x_ok && dy_o + 4u * q < p.co;
                all[q] = lanes8(select(vec4<f32>(0.0), in_b[select(0u, (row + (dy_o + 4u * q) * ohw) / 4u, ok)], ok));
            }
            // (Loops index arrays of their own length, which makes drivers unroll them.)
            for (var o = 0u; o < 16u; o++) {
                var a = acc[o];
                for (var px = 0u; px < 8u; px++) {
                    weight_taps(&a, all[o / 4u][2u * (o % 4u) + px / 4u][px % 4u], px, &win);
                }
                acc[o] = a;
            }
            // Slide the window down DS rows: keep the rows still in reach, load the rest.
            for (var r = 0u; r < DKH; r++) {
                if r + DS < DKH {
                    win[r] = win[r + DS];
                } else {
                    win[r] = window_row4(plane, i32((y + 1u) * DS + r) - i32(p.pad), a0, wg.ci_ok);
                }
            }
        }
    }
    store_weight_tile(wg, &acc);
}

// dw[i] = sum over splits s, in increasing s, of partial[s * rows + i], for the 4 outputs
// 4 v .. 4 v + 4 of invocation v (rows, the length of dw, is a multiple of 4).
@compute @workgroup_size(256)
fn reduce_splits4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = flat(gid, nwg);
    let quads = p.rows / 4u;
    if v >= quads {
        return;
    }
    var sum = vec4<f32>(0.0);
    for (var s = 0u; s < p.aux; s++) {
        sum += in_a[s * quads + v];
    }
    for (var c = 0u; c < 4u; c++) {
        out[4u * v + c] = sum[c];
    }
}
