// The direct gather convolution of software adapters with every buffer access a vec4:
// conv_direct.wgsl's `direct` (forward, or DTRANSPOSED the data gradient; same tiles, the same
// multiply-adds in the same order, so the same bits) where every row of the input and the output
// is a whole number of vec4s and the weights are too (ops::conv::direct::vec4_supported). On
// lavapipe every buffer access is a loop over the 8 lanes of a subgroup whether it moves one
// float or a vec4, so:
//   - the tile's input window (rows x DNV aligned vec4s per channel, the window's first column
//     at component DOFF) is loaded as slots of 8 lanes (slot q * 8 + lane = window row
//     slot / DNV, vec4 slot % DNV), DROUNDS vec4 loads per lane and channel instead of one float
//     per window column and row, and handed to every lane with lanes8 instead of shuffles;
//   - the lane's taps come from the (at most 3) aligned vec4s that hold them;
//   - each output row of 8 pixels is stored as 2 vec4s.
// Needs subgroups of exactly 8 lanes (lanes8).
// #include "common/conv_params.wgsl"
// #include "common/lane_groups.wgsl"
// #include "common/direct_window.wgsl"

// window_origin(tx0, DKW) mod 4 (the host knows it from the padding: tx0 is a multiple of 8).
override DOFF: u32 = 3u;
// Aligned vec4s per window row (ceil((DOFF + window columns) / 4)), and the vec4 loads per lane
// that cover the window's rows x DNV slots (ceil(rows * DNV / 8)).
override DNV: u32 = 4u;
override DROUNDS: u32 = 5u;

var<immediate> p: ConvParams;

// x, w -> y, or (DTRANSPOSED) dy, w -> dx.
@group(0) @binding(0) var<storage, read> in_a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> in_b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

// The DKK floats of in_b from float index `base` on, read as the aligned vec4s that hold them
// (indices past the end are clamped: the values they give are never picked).
fn taps_at(base: u32) -> array<f32, 9> {
    let q = base / 4u;
    let sh = base % 4u;
    let last = arrayLength(&in_b) - 1u;
    var e: array<f32, 12>;
    for (var i = 0u; i < (DKK + 6u) / 4u; i++) {
        let v = in_b[min(q + i, last)];
        e[4u * i] = v.x;
        e[4u * i + 1u] = v.y;
        e[4u * i + 2u] = v.z;
        e[4u * i + 3u] = v.w;
    }
    var w: array<f32, 9>;
    for (var k = 0u; k < DKK; k++) {
        w[k] = select(select(e[k], e[k + 1u], sh == 1u), select(e[k + 2u], e[k + 3u], sh == 3u), sh >= 2u);
    }
    return w;
}

@compute @workgroup_size(64)
fn direct4(ids: LaneIds) {
    let gl = group_lane(ids);
    let d = gather_dims();
    let tile = direct_tile(gl, p.n, d.c_out, d.h_out, d.w_out);
    let iy0 = window_origin(tile.ty0, DKH);
    let a0 = window_origin(tile.tx0, DKW) - i32(DOFF);
    let rows_len = window_len(DKH);
    let in_plane = d.h_in * d.w_in;
    let in_img = tile.img * d.c_in * in_plane;

    // The lane's window slots: the vec4 index within a channel plane, and whether it is inside.
    var at: array<u32, 11>;
    var inside: array<bool, 11>;
    for (var q = 0u; q < DROUNDS; q++) {
        let slot = q * 8u + gl.lane;
        let k = slot / DNV;
        let iy = iy0 + i32(k);
        let ix = a0 + 4 * i32(slot % DNV);
        let ok = k < rows_len && iy >= 0 && iy < i32(d.h_in) && ix >= 0 && ix < i32(d.w_in);
        inside[q] = ok;
        at[q] = select(0u, (u32(iy) * d.w_in + u32(ix)) / 4u, ok);
    }

    // acc[ty][tx]: output pixel (ty0 + ty, tx0 + tx) of channel oc.
    var acc: array<array<f32, 8>, 8>;
    for (var j = 0u; j < d.c_in; j++) {
        var wbase = (tile.oc * d.c_in + j) * DKK;
        if DTRANSPOSED {
            wbase = (j * d.c_out + tile.oc) * DKK;
        }
        let wt = taps_at(select(0u, wbase, tile.ok));
        let plane = (in_img + j * in_plane) / 4u;
        var win: array<vec4<f32>, 11>;
        for (var q = 0u; q < DROUNDS; q++) {
            win[q] = select(vec4<f32>(0.0), in_a[plane + at[q]], inside[q]);
        }
        for (var ty = 0u; ty < 8u; ty++) {
            for (var tx = 0u; tx < 8u; tx++) {
                var a = acc[ty][tx];
                for (var r = 0u; r < DKH; r++) {
                    let k = window_index(ty, r, DKH);
                    for (var c = 0u; c < DKW; c++) {
                        let m = window_index(tx, c, DKW);
                        if k >= 0 && m >= 0 {
                            let e = DOFF + u32(m);
                            let slot = u32(k) * DNV + e / 4u;
                            let v = lanes8(win[slot / 8u])[slot % 8u][e % 4u];
                            a = fma(v, wt[r * DKW + c], a);
                        }
                    }
                }
                acc[ty][tx] = a;
            }
        }
    }

    let out_base = (tile.img * d.c_out + tile.oc) * d.h_out * d.w_out;
    for (var ty = 0u; ty < 8u; ty++) {
        let y = tile.ty0 + ty;
        for (var h = 0u; h < 2u; h++) {
            let x = tile.tx0 + 4u * h;
            if tile.ok && y < d.h_out && x < d.w_out {
                let t = acc[ty];
                out[(out_base + y * d.w_out + x) / 4u] = vec4<f32>(t[4u * h], t[4u * h + 1u], t[4u * h + 2u], t[4u * h + 3u]);
            }
        }
    }
}
